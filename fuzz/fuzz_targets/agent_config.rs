//! The agent's configuration parser (`AgentConfig::parse`). The file is
//! local and written by municipal IT, so it is not hostile (lower priority
//! than the other targets), but a typo must be an error message, never a
//! panic.
//!
//! Input: any bytes; those that are UTF-8 are parsed.
//!
//! Asserts: never panics, and what is accepted can be used as the agent
//! uses it: derived paths, plan version, the next run time of its schedule
//! (`Schedule::next_after`, never before now) and the jittered heartbeat
//! wait.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_agent::config::AgentConfig;
use transmissor_agent::heartbeat::jittered;
use transmissor_agent::schedule::Schedule;

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
    if let Some(schedule) = Schedule::from_config(&cfg.schedule) {
        let now = chrono::Utc::now();
        assert!(schedule.next_after(now) >= now);
    }
    for r in [-1.0, 0.0, 1.0] {
        let _ = jittered(cfg.heartbeat.interval, r);
    }
});
