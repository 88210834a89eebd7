//! `transmissor-agent doctor` (issue #12), the preflight checklist municipal
//! IT runs after installing. Built so far: the check that the agent's
//! database role cannot write.
//!
//! | module           | responsibility                                               |
//! |------------------|--------------------------------------------------------------|
//! | [`write_access`] | everything the source role could write, and the SQL that fixes it |

pub mod write_access;
