//! The agent's configuration parser (`AgentConfig::parse`). The file is
//! local and written by municipal IT, so it is not hostile (lower priority
//! than the other targets), but a typo must be an error message, never a
//! panic.
//!
//! Input: any bytes; those that are UTF-8 are parsed.
//!
//! Asserts: never panics, and what is accepted can be used as the agent
//! uses it: derived paths, plan version, the next run time of its schedule
//! (`Timing::next_after`, after now; `latest_at_or_before`, not after) and the jittered heartbeat
//! wait.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_agent::config::AgentConfig;
use transmissor_agent::heartbeat::jittered;
use transmissor_agent::schedule::Timing;

fuzz_target!(|input: &[u8]| {
    let Ok(s) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(cfg) = AgentConfig::parse(s) else {
        return;
    };
    let _ = cfg.spool_dir();
    let _ = cfg.cert_file();
    let _ = cfg.key_file();
    let _ = cfg.ca_file();
    let _ = cfg.plan_version();
    if let Some(timing) = Timing::from_config(&cfg.schedule) {
        let now = chrono::Utc::now();
        let tz = cfg.schedule.timezone.0;
        if let Some(next) = timing.next_after(now, tz) {
            assert!(next > now);
        }
        if let Some(last) = timing.latest_at_or_before(now, tz) {
            assert!(last <= now);
        }
    }
    for r in [-1.0, 0.0, 1.0] {
        let _ = jittered(cfg.heartbeat.interval, r);
    }
});
