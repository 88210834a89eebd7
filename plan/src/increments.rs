//! How far plan versions and key-list serials may move.
//!
//! Versions and serials only go up, and agents and the collector refuse
//! anything at or below what they hold. Unbounded, one signed document
//! with `version = 9223372036854775807` (by a stolen plan key, or a typo)
//! would block every later publication for good. So:
//!
//! - a version or serial is at most [`MAX_NUMBER`] (2^53: exact in every
//!   JSON reader and in PostgreSQL's `bigint`);
//! - each step up is at most [`MAX_STEP`] (1,000,000) above the previous
//!   one the reader holds (for a fresh agent: the floor of the signed key
//!   list, or 0).
//!
//! A counter that moves by one per publication never meets either bound;
//! a hostile jump of a million still leaves 9·10^9 publications of room,
//! and the root-signed key list can raise the floor past it.

/// The largest plan version or key-list serial.
pub const MAX_NUMBER: u64 = 1 << 53;

/// The largest step from one version (or serial) to the next.
pub const MAX_STEP: u64 = 1_000_000;

/// Whether `next` jumps more than [`MAX_STEP`] above `previous`.
pub fn jumps_too_far(previous: u64, next: u64) -> bool {
    next > previous.saturating_add(MAX_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert!(!jumps_too_far(0, 1));
        assert!(!jumps_too_far(0, MAX_STEP));
        assert!(jumps_too_far(0, MAX_STEP + 1));
        assert!(jumps_too_far(5, i64::MAX as u64));
        assert!(!jumps_too_far(u64::MAX, u64::MAX));
    }
}
