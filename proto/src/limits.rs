//! Size limits shared by agent and collector. gRPC's 4 MiB default is never
//! relied upon: both sides set their limits explicitly from these values.

/// Default raw (uncompressed) size at which the agent cuts a batch.
pub const DEFAULT_BATCH_RAW_BYTES: u64 = 4 * 1024 * 1024;

/// Largest raw batch the collector accepts by default. A zstd frame that
/// declares (or would produce) more is refused before any allocation.
pub const DEFAULT_MAX_BATCH_RAW_BYTES: u64 = 64 * 1024 * 1024;

/// Largest encoded gRPC message either side accepts by default. A batch is
/// compressed, so this is well above the compressed size of a maximal batch
/// of ordinary rows, yet bounded.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Largest zstd window (log2) the collector lets a frame use: 2^27 = 128 MiB
/// of decoder memory at most, whatever a frame header asks for.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 27;

/// Largest signed plan or plan-key list envelope (the plan crate refuses a
/// bigger one before parsing it).
pub const MAX_PLAN_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// Largest `AgentLifecycle` answer: a plan envelope and a few key lists.
pub const LIFECYCLE_MAX_ENCODED_BYTES: usize = MAX_PLAN_ENVELOPE_BYTES + 1024 * 1024;
