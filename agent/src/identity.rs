//! Who this agent is, and keeping it so: the identity on disk, enrollment,
//! the collector's pin, the live TLS credentials, renewal and the clock it
//! is timed on.
//!
//! | module          | responsibility                                                   |
//! |-----------------|------------------------------------------------------------------|
//! | [`anchors`]     | of the collector's trust bundle, exactly the pinned root (and retired CAs) |
//! | [`store`]       | key, certificate chain, trust bundle and agent.json on disk (re-exported here) |
//! | [`enroll`]      | one-time token → key generated here, CSR, identity stored         |
//! | [`pin`]         | verifying the collector by the token's CA pin (enrollment only)   |
//! | [`credentials`] | hot-swappable client certificate and trust bundle for rustls      |
//! | [`renew`]       | renewal at 50–75% of the lifetime, timed on the collector's clock |
//! | [`clock`]       | offset to the collector's clock, on the monotonic clock           |

pub mod anchors;
pub mod clock;
pub mod credentials;
pub mod enroll;
pub mod pin;
pub mod renew;
pub mod store;
#[cfg(test)]
pub(crate) mod testpki;

pub use store::*;
