//! Property tests of the agent's configuration parser (`AgentConfig::parse`).
//!
//! - Arbitrary strings, and random edits of a valid config, never panic the
//!   parser.
//! - A valid config with an unknown key inserted anywhere in any section
//!   (top level, `[agent]`, `[source]`, `[collector]`, `[spool]`, `[retry]`,
//!   `[schedule]`, `[heartbeat]`, `[upload]`, `[[jobs]]`) is refused with an error that
//!   names that key.
//! - Arbitrary strings in every duration field and every size field either
//!   parse (to exactly what `humantime` / `bytesize` read them as) or are
//!   refused; nothing panics. A refusal of a value those crates accept can
//!   only be a range check, and its message names the field.
//! - (ignored until fixed) every `schedule.every` / `heartbeat.interval` the
//!   parser accepts can be used without panicking.
//!
//! Bounded case counts so the file runs in a few seconds in CI.

use std::time::Duration;

use bytesize::ByteSize;
use proptest::prelude::*;
use transmissor_agent::config::{AgentConfig, ConfigError};
use transmissor_agent::heartbeat::jittered;
use transmissor_agent::schedule::Timing;

/// A valid config with every section present (the unit tests' sample in
/// `agent/src/config_tests.rs`, plus `[retry]` and `[heartbeat]`), as
/// (table header, entries); the header `""` is the top level.
fn sample() -> Vec<(&'static str, Vec<(String, String)>)> {
    let s = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        ("", vec![s("version", "1")]),
        (
            "[agent]",
            vec![s("state_dir", r#""/tmp/transmissor-test""#)],
        ),
        (
            "[source]",
            vec![
                s("host", r#""127.0.0.1""#),
                s("dbname", r#""esus""#),
                s("user", r#""leitor""#),
                s("password_env", r#""PGPASS_TEST""#),
                s("statement_timeout", r#""30s""#),
            ],
        ),
        (
            "[collector]",
            vec![
                s("endpoint", r#""https://127.0.0.1:7443""#),
                s("ca_file", r#""ca.pem""#),
                s("cert_file", r#""agent.pem""#),
                s("key_file", r#""agent.key""#),
            ],
        ),
        ("[spool]", vec![s("batch_raw_bytes", r#""1MiB""#)]),
        (
            "[retry]",
            vec![s("initial", r#""500ms""#), s("max", r#""60s""#)],
        ),
        (
            "[schedule]",
            vec![s("daily_at", r#"["02:30"]"#), s("weekdays_only", "true")],
        ),
        ("[heartbeat]", vec![s("interval", r#""60s""#)]),
        (
            "[upload]",
            vec![
                s("limit", r#""unlimited""#),
                s(
                    "bandwidth",
                    r#"[{ from = "07:00", to = "18:00", limit = "2 Mbit/s" }]"#,
                ),
            ],
        ),
        (
            "[[jobs]]",
            vec![
                s("name", r#""visitas""#),
                s("mode", r#""snapshot""#),
                s("target", r#""tb_visitas""#),
                s("query", r#""SELECT 1 AS x""#),
            ],
        ),
    ]
}

/// The fields each section knows (an inserted key must not be one of them).
fn known_keys(header: &str) -> &'static [&'static str] {
    match header {
        "" => &[
            "version",
            "agent",
            "source",
            "collector",
            "spool",
            "retry",
            "schedule",
            "heartbeat",
            "upload",
            "jobs",
        ],
        "[agent]" => &["state_dir", "ibge"],
        "[source]" => &[
            "host",
            "port",
            "dbname",
            "user",
            "password_file",
            "password_env",
            "connect_timeout",
            "statement_timeout",
            "lock_timeout",
        ],
        "[collector]" => &[
            "endpoint",
            "server_name",
            "ca_file",
            "cert_file",
            "key_file",
            "in_flight",
            "connect_timeout",
            "request_timeout",
            "max_message_bytes",
        ],
        "[spool]" => &["dir", "max_bytes", "batch_raw_bytes", "zstd_level"],
        "[retry]" => &["initial", "max", "give_up_after"],
        "[schedule]" => &["daily_at", "timezone", "weekdays_only", "every"],
        "[heartbeat]" => &["interval"],
        "[upload]" => &["limit", "bandwidth"],
        "[[jobs]]" => &["name", "mode", "target", "query"],
        other => panic!("unknown section {other}"),
    }
}

fn all_known_keys() -> Vec<&'static str> {
    sample()
        .iter()
        .flat_map(|(h, _)| known_keys(h).iter().copied())
        .collect()
}

fn render(sections: &[(&str, Vec<(String, String)>)]) -> String {
    let mut out = String::new();
    for (header, entries) in sections {
        if !header.is_empty() {
            out.push_str(header);
            out.push('\n');
        }
        for (k, v) in entries {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

/// A TOML basic string holding `s` exactly.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The sample with `key = value` set in `header` (replaced or added).
fn with_entry(header: &str, key: &str, value: String) -> String {
    let mut sections = sample();
    let (_, entries) = sections.iter_mut().find(|(h, _)| *h == header).unwrap();
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = value,
        None => entries.push((key.to_string(), value)),
    }
    render(&sections)
}

#[test]
fn sample_is_valid() {
    AgentConfig::parse(&render(&sample())).unwrap();
}

/// An unknown key: arbitrary bare keys, near misses of real field names
/// (typos, other case, `-` for `_`), and quoted keys with any characters.
fn unknown_key() -> impl Strategy<Value = (String, String)> {
    let near_miss =
        (prop::sample::select(all_known_keys()), 0..4usize).prop_map(|(k, how)| match how {
            0 => format!("{k}s"),
            1 => k.to_uppercase(),
            2 => k.replace('_', "-"),
            _ => k[..k.len() - 1].to_string(),
        });
    prop_oneof![
        "[A-Za-z0-9_-]{1,24}".prop_map(|k| (k.clone(), k)),
        near_miss.prop_map(|k| (k.clone(), k)),
        any::<String>()
            .prop_filter("non-empty", |k| !k.is_empty())
            .prop_map(|k| (toml_string(&k), k)),
    ]
    .prop_filter("bare keys must be non-empty", |(toml, _)| !toml.is_empty())
}

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<String>().prop_map(|s| toml_string(&s)),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1.5".to_string()),
        Just("[1, 2, 3]".to_string()),
        Just(r#"{ a = 1, b = "x" }"#.to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ]
}

/// Duration fields: (section, key, what the parsed config holds).
type DurationField = (
    &'static str,
    &'static str,
    fn(&AgentConfig) -> Option<Duration>,
);

fn duration_fields() -> Vec<DurationField> {
    fn f(
        section: &'static str,
        key: &'static str,
        get: fn(&AgentConfig) -> Option<Duration>,
    ) -> DurationField {
        (section, key, get)
    }
    vec![
        f("[source]", "connect_timeout", |c| {
            Some(c.source.connect_timeout)
        }),
        f("[source]", "statement_timeout", |c| {
            Some(c.source.statement_timeout)
        }),
        f("[source]", "lock_timeout", |c| Some(c.source.lock_timeout)),
        f("[collector]", "connect_timeout", |c| {
            Some(c.collector.connect_timeout)
        }),
        f("[collector]", "request_timeout", |c| {
            Some(c.collector.request_timeout)
        }),
        f("[retry]", "initial", |c| Some(c.retry.initial)),
        f("[retry]", "max", |c| Some(c.retry.max)),
        f("[retry]", "give_up_after", |c| Some(c.retry.give_up_after)),
        f("[schedule]", "every", |c| c.schedule.every),
        f("[heartbeat]", "interval", |c| Some(c.heartbeat.interval)),
    ]
}

type SizeField = (&'static str, &'static str, fn(&AgentConfig) -> ByteSize);

fn size_fields() -> Vec<SizeField> {
    fn f(section: &'static str, key: &'static str, get: fn(&AgentConfig) -> ByteSize) -> SizeField {
        (section, key, get)
    }
    vec![
        f("[spool]", "max_bytes", |c| c.spool.max_bytes),
        f("[spool]", "batch_raw_bytes", |c| c.spool.batch_raw_bytes),
        f("[collector]", "max_message_bytes", |c| {
            c.collector.max_message_bytes
        }),
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,24}(\\.[0-9]{0,12})? ?(ns|us|µs|ms|s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|week|weeks|M|month|months|y|year|years|x|)",
        "( ?[0-9]{1,21} ?(ns|us|ms|s|m|h|d|w|M|y|S|MS|é)){1,5}",
        Just("0".to_string()),
        Just(String::new()),
    ]
}

fn size_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,24}(\\.[0-9]{0,20})?[ \t]{0,2}(b|B|k|K|kb|KB|kib|KiB|m|MB|MiB|mib|g|GiB|t|TiB|p|PiB|e|EiB|eb|zb|Kio|)",
        "[.0-9eE+-]{0,30}",
        Just(String::new()),
    ]
}

/// `text` with a few characters deleted, inserted or replaced.
fn mutated(text: String) -> impl Strategy<Value = String> {
    let n = text.chars().count();
    proptest::collection::vec((0..=n, 0..3u8, any::<char>()), 1..8).prop_map(move |edits| {
        let mut chars: Vec<char> = text.chars().collect();
        for (pos, op, c) in edits {
            let pos = pos.min(chars.len());
            match op {
                0 if pos < chars.len() => {
                    chars.remove(pos);
                }
                1 if pos < chars.len() => chars[pos] = c,
                _ => chars.insert(pos, c),
            }
        }
        chars.into_iter().collect()
    })
}

fn toml_syntax_char() -> impl Strategy<Value = char> {
    prop::sample::select(
        "[]{}=\"'.,#\n\\ \t0123456789abcxyz_-:+"
            .chars()
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = AgentConfig::parse(&s);
    }

    #[test]
    fn toml_like_text_never_panics(
        s in proptest::collection::vec(toml_syntax_char(), 0..200)
            .prop_map(|v| v.into_iter().collect::<String>())
    ) {
        let _ = AgentConfig::parse(&s);
    }

    #[test]
    fn edited_sample_never_panics(s in mutated(render(&sample()))) {
        let _ = AgentConfig::parse(&s);
    }

    #[test]
    fn unknown_key_in_any_section_is_refused_by_name(
        section in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        (toml_key, key) in unknown_key(),
        value in toml_value(),
    ) {
        let mut sections = sample();
        let s = section.index(sections.len());
        let header = sections[s].0;
        prop_assume!(!known_keys(header).contains(&key.as_str()));
        let entries = &mut sections[s].1;
        let i = at.index(entries.len() + 1);
        entries.insert(i, (toml_key, value));
        let text = render(&sections);
        match AgentConfig::parse(&text) {
            Ok(_) => prop_assert!(false, "accepted unknown key {:?} in {:?}:\n{}", key, header, text),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    msg.contains(&format!("unknown field `{key}`")),
                    "unknown key {:?} in {:?}: error does not name it: {}\n{}",
                    key, header, msg, text
                );
            }
        }
    }

    #[test]
    fn duration_fields_parse_or_refuse(
        field in any::<prop::sample::Index>(),
        text in duration_text(),
    ) {
        let fields = duration_fields();
        let (header, key, get) = fields[field.index(fields.len())];
        let res = AgentConfig::parse(&with_entry(header, key, toml_string(&text)));
        let name = format!("{}.{key}", header.trim_matches(['[', ']']));
        match (humantime::parse_duration(&text), res) {
            (Ok(d), Ok(c)) => prop_assert_eq!(get(&c), Some(d), "{} = {:?}", name, text),
            (Ok(_), Err(ConfigError::Invalid(msg))) => prop_assert!(
                msg.contains(&name),
                "{} = {:?} refused by a check that does not name it: {}", name, text, msg
            ),
            (Ok(d), Err(e)) => prop_assert!(false, "{} = {:?} ({:?}) refused: {}", name, text, d, e),
            (Err(_), Ok(_)) => prop_assert!(false, "{} = {:?} accepted", name, text),
            (Err(_), Err(_)) => {}
        }
    }

    #[test]
    fn size_fields_parse_or_refuse(
        field in any::<prop::sample::Index>(),
        text in size_text(),
    ) {
        let fields = size_fields();
        let (header, key, get) = fields[field.index(fields.len())];
        let res = AgentConfig::parse(&with_entry(header, key, toml_string(&text)));
        let name = format!("{}.{key}", header.trim_matches(['[', ']']));
        match (text.parse::<ByteSize>(), res) {
            (Ok(b), Ok(c)) => prop_assert_eq!(get(&c), b, "{} = {:?}", name, text),
            (Ok(_), Err(ConfigError::Invalid(msg))) => prop_assert!(
                msg.contains(&name),
                "{} = {:?} refused by a check that does not name it: {}", name, text, msg
            ),
            (Ok(b), Err(e)) => prop_assert!(false, "{} = {:?} ({}) refused: {}", name, text, b, e),
            (Err(_), Ok(_)) => prop_assert!(false, "{} = {:?} accepted", name, text),
            (Err(_), Err(_)) => {}
        }
    }

    #[test]
    fn integer_sizes_and_durations_never_panic(
        field in any::<prop::sample::Index>(),
        n in prop_oneof![any::<i64>(), -2048i64..2048],
    ) {
        let sizes = size_fields();
        let durations = duration_fields();
        let i = field.index(sizes.len() + durations.len());
        let (header, key) = if i < sizes.len() {
            (sizes[i].0, sizes[i].1)
        } else {
            (durations[i - sizes.len()].0, durations[i - sizes.len()].1)
        };
        let res = AgentConfig::parse(&with_entry(header, key, n.to_string()));
        if n < 0 {
            prop_assert!(res.is_err(), "{}.{} = {} accepted", header, key, n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Values the parser accepts must not panic where they are used: the
    /// next run time (`Schedule::next_after`, chrono date arithmetic) and the
    /// heartbeat wait (`heartbeat::jittered`, `Duration::mul_f64`). Huge
    /// values (e.g. `every = "300000y"`, found by this property) are now
    /// refused by the parser's range checks.
    #[test]
    fn accepted_schedule_and_heartbeat_durations_are_usable(
        every in prop_oneof![duration_text(), "[1-9][0-9]{0,14}(y|M|w|d|h)"],
        interval in prop_oneof![duration_text(), "[1-9][0-9]{0,14}(y|M|w|d|h)"],
    ) {
        let text = with_entry("[schedule]", "every", toml_string(&every));
        if let Ok(c) = AgentConfig::parse(&text) {
            let timing = Timing::from_config(&c.schedule).unwrap();
            let now = chrono::Utc::now();
            let tz = c.schedule.timezone.0;
            // Only panics are checked here, and that slots are ordered.
            if let Some(next) = timing.next_after(now, tz) {
                prop_assert!(next > now);
            }
            if let Some(last) = timing.latest_at_or_before(now, tz) {
                prop_assert!(last <= now);
            }
        }
        let text = with_entry("[heartbeat]", "interval", toml_string(&interval));
        if let Ok(c) = AgentConfig::parse(&text) {
            for r in [-1.0, 0.0, 1.0] {
                let _ = jittered(c.heartbeat.interval, r);
            }
        }
    }
}
