//! `Plan::parse`: the typed result, and errors naming the line and field.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{ColumnPolicy, DocError, JobMode, PecVersion, Plan, Scope};

const BASE: &str = r#"format = 1
version = 42
issued_at = 2026-11-30T12:00:00Z
expires_at = 2027-03-01T00:00:00Z
scope = ["3550308", "3304557"]
description = "test"

[[jobs]]
name = "equipes"
target = "tb_dim_equipe"
mode = "snapshot"
sql = "SELECT * FROM tb_dim_equipe"
schedule = { cron = "0 3 * * 1-5", jitter = "30m" }

[[jobs]]
name = "atendimentos"
target = "tb_fat_atendimento_individual"
mode = "append"
sql = """
SELECT * FROM tb_fat_atendimento_individual
"""
schedule = { cron = "30 2 * * 1-5", jitter = "45m" }
pec_version = { min = "5.3.7", below = "5.5" }
[jobs.columns]
nu_cpf_cidadao = "pseudonymise"
nu_cns = "drop"
"#;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `BASE` with `from` replaced by `to` (which must be there).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?}");
    BASE.replacen(from, to, 1)
}

fn err(text: &str) -> DocError {
    match Plan::parse(text.as_bytes()) {
        Ok(_) => panic!("parsed:\n{text}"),
        Err(e) => e,
    }
}

fn assert_err(text: &str, line: usize, field: &str, message_part: &str) {
    let e = err(text);
    assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
    assert!(e.message.contains(message_part), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("line {line}, {field}: ")),
        "{e}"
    );
}

#[test]
fn parses_the_base_plan() {
    let plan = Plan::parse(BASE.as_bytes()).unwrap();
    assert_eq!(plan.format, 1);
    assert_eq!(plan.version, 42);
    assert_eq!(plan.issued_at, utc("2026-11-30T12:00:00Z"));
    assert_eq!(plan.expires_at, utc("2027-03-01T00:00:00Z"));
    assert_eq!(plan.description.as_deref(), Some("test"));
    assert!(matches!(&plan.scope, Scope::Municipalities(s) if s.len() == 2));
    assert!(plan.applies_to("3550308"));
    assert!(!plan.applies_to("5300108"));
    assert!(!plan.is_expired(utc("2027-02-28T23:59:59Z")));
    assert!(plan.is_expired(utc("2027-03-01T00:00:00Z")));

    let a = plan.job("atendimentos").unwrap();
    assert_eq!(a.mode, JobMode::Append);
    assert_eq!(a.mode.name(), "append");
    assert_eq!(a.sql.trim(), "SELECT * FROM tb_fat_atendimento_individual");
    assert_eq!(a.schedule.jitter, Duration::from_secs(45 * 60));
    assert_eq!(a.schedule.cron.to_string(), "30 2 * * 1-5");
    assert_eq!(a.columns["nu_cpf_cidadao"], ColumnPolicy::Pseudonymise);
    assert_eq!(a.columns["nu_cns"], ColumnPolicy::Drop);
    let v = |s: &str| s.parse::<PecVersion>().unwrap();
    assert!(a.runs_on(Some(&v("5.4.1"))));
    assert!(!a.runs_on(Some(&v("5.5.28"))));
    assert!(!a.runs_on(None));

    let e = plan.job("equipes").unwrap();
    assert_eq!(e.mode, JobMode::Snapshot);
    assert!(e.runs_on(None));
    assert!(e.columns.is_empty());
    assert!(plan.job("nope").is_none());
}

#[test]
fn scope_all_and_no_jobs() {
    let text = "format = 1\nversion = 1\nissued_at = 2026-11-30T12:00:00-03:00\n\
                expires_at = 2026-12-30T12:00:00-03:00\nscope = \"all\"\n";
    let plan = Plan::parse(text.as_bytes()).unwrap();
    assert_eq!(plan.scope, Scope::All);
    assert!(plan.applies_to("1234567"));
    assert!(plan.jobs.is_empty());
    assert_eq!(plan.issued_at, utc("2026-11-30T15:00:00Z"));
}

#[test]
fn bad_cron() {
    let e = err(&with("30 2 * * 1-5", "61 2 * * *"));
    assert_eq!(
        e.to_string(),
        "line 22, jobs[1].schedule.cron: \"61 2 * * *\" is not a valid cron expression: \
         minute 61 is out of range 0-59"
    );
}

#[test]
fn bad_jitter() {
    assert_err(
        &with("jitter = \"45m\"", "jitter = \"45 minutos\""),
        22,
        "jobs[1].schedule.jitter",
        "is not a duration",
    );
    assert_err(
        &with("jitter = \"45m\"", "jitter = \"13h\""),
        22,
        "jobs[1].schedule.jitter",
        "12h maximum",
    );
    assert!(Plan::parse(with("jitter = \"45m\"", "jitter = \"12h\"").as_bytes()).is_ok());
}

#[test]
fn unknown_fields() {
    assert_err(
        &with("mode = \"append\"", "mode = \"append\"\nmodo = \"x\""),
        19,
        "jobs[1].modo",
        "unknown field",
    );
    assert_err(
        &with("jitter = \"30m\" }", "jitter = \"30m\", every = 2 }"),
        13,
        "jobs[0].schedule.every",
        "unknown field",
    );
    assert_err(
        &with("description", "descricao"),
        6,
        "descricao",
        "unknown field",
    );
}

#[test]
fn missing_and_mistyped_fields() {
    let e = err(&with("target = \"tb_dim_equipe\"\n", ""));
    assert!(e.message.contains("missing field `target`"), "{e}");
    assert!(e.field.starts_with("jobs[0]"), "{e}");
    assert_err(&with("version = 42", "version = \"42\""), 2, "version", "");
    assert_err(
        &with("version = 42", "version = 0"),
        2,
        "version",
        "positive",
    );
    assert_err(
        &with("format = 1", "format = 2"),
        1,
        "format",
        "not supported",
    );
}

#[test]
fn versions_cannot_reach_the_maximum() {
    assert_err(
        &with("version = 42", "version = 9223372036854775807"),
        2,
        "version",
        "at most 9007199254740992",
    );
    assert_err(
        &with("version = 42", "version = 9007199254740993"),
        2,
        "version",
        "2^53",
    );
    let at_bound = with("version = 42", "version = 9007199254740992");
    assert_eq!(Plan::parse(at_bound.as_bytes()).unwrap().version, 1 << 53);
}

#[test]
fn toml_syntax_error_has_a_line() {
    let e = err(&with("mode = \"append\"", "mode = \"append"));
    assert_eq!(e.line, 18, "{e}");
}

#[test]
fn duplicate_job_name() {
    assert_err(
        &with("name = \"atendimentos\"", "name = \"equipes\""),
        16,
        "jobs[1].name",
        "already used on line 9",
    );
}

#[test]
fn bad_names() {
    assert_err(
        &with("name = \"equipes\"", "name = \"Equipes\""),
        9,
        "jobs[0].name",
        "not a valid name",
    );
    assert_err(
        &with("target = \"tb_dim_equipe\"", "target = \"public.tb\""),
        10,
        "jobs[0].target",
        "not a valid name",
    );
}

#[test]
fn bad_scope() {
    assert_err(
        &with("\"3304557\"]", "\"3304557\", \"330455\"]"),
        5,
        "scope[2]",
        "7 digits",
    );
    assert_err(
        &with(
            "scope = [\"3550308\", \"3304557\"]",
            "scope = [\n  \"3550308\",\n  \"3550309\",\n]",
        ),
        7,
        "scope[1]",
        "check digit",
    );
    assert_err(
        &with("\"3304557\"]", "\"3550308\"]"),
        5,
        "scope[1]",
        "listed twice",
    );
    assert_err(
        &with("scope = [\"3550308\", \"3304557\"]", "scope = []"),
        5,
        "scope",
        "at least one",
    );
    assert_err(
        &with("scope = [\"3550308\", \"3304557\"]", "scope = \"todos\""),
        5,
        "scope",
        "\"all\"",
    );
}

#[test]
fn dates() {
    assert_err(
        &with(
            "expires_at = 2027-03-01T00:00:00Z",
            "expires_at = 2026-11-30T12:00:00Z",
        ),
        4,
        "expires_at",
        "must be after issued_at 2026-11-30T12:00:00Z",
    );
    assert_err(
        &with(
            "issued_at = 2026-11-30T12:00:00Z",
            "issued_at = 2026-11-30T12:00:00",
        ),
        3,
        "issued_at",
        "offset",
    );
}

#[test]
fn upsert_jobs() {
    let upsert = "mode = \"upsert\"\nkey = [\"co_seq_fat_atd_ind\"]\n\
                  watermark = \"dt_final_atendimento\"\nlookback = \"2d\"";
    let plan = Plan::parse(with("mode = \"append\"", upsert).as_bytes()).unwrap();
    let JobMode::Upsert(u) = &plan.jobs[1].mode else {
        panic!("not upsert: {:?}", plan.jobs[1].mode);
    };
    assert_eq!(u.key, ["co_seq_fat_atd_ind"]);
    assert_eq!(u.watermark, "dt_final_atendimento");
    assert_eq!(u.lookback, std::time::Duration::from_secs(2 * 86400));
    assert!(u.reconcile.is_none());
    let reconciled = format!("{upsert}\nreconcile = {{ cron = \"0 3 * * 0\" }}");
    let plan = Plan::parse(with("mode = \"append\"", &reconciled).as_bytes()).unwrap();
    let JobMode::Upsert(u) = &plan.jobs[1].mode else {
        panic!("not upsert");
    };
    assert!(u.reconcile.is_some());
    assert_err(
        &with(
            "mode = \"append\"",
            &format!("{upsert}\nreconcile = {{ cron = \"61 3 * * 0\" }}"),
        ),
        22,
        "jobs[1].reconcile.cron",
        "not a valid cron expression",
    );
    // A missing part is named.
    assert_err(
        &with("mode = \"append\"", "mode = \"upsert\"\nkey = [\"id\"]"),
        18,
        "jobs[1].mode",
        "needs watermark",
    );
    assert_err(
        &with("mode = \"append\"", &upsert.replace("\"2d\"", "\"2 dias\"")),
        21,
        "jobs[1].lookback",
        "not a duration",
    );
    assert_err(
        &with("mode = \"append\"", &upsert.replace("\"2d\"", "\"31d\"")),
        21,
        "jobs[1].lookback",
        "30-day maximum",
    );
}

#[test]
fn upsert_fields_on_other_modes() {
    assert_err(
        &with(
            "mode = \"snapshot\"",
            "mode = \"snapshot\"\nkey = [\"co_seq_dim_equipe\"]",
        ),
        12,
        "jobs[0].key",
        "only for mode \"upsert\"",
    );
    assert_err(
        &with("mode = \"append\"", "mode = \"append\"\nlookback = \"1d\""),
        19,
        "jobs[1].lookback",
        "only for mode \"upsert\"",
    );
    assert_err(
        &with("mode = \"append\"", "mode = \"merge\""),
        18,
        "jobs[1].mode",
        "not one of",
    );
}

#[test]
fn bad_pec_range() {
    assert_err(
        &with(
            "min = \"5.3.7\", below = \"5.5\"",
            "min = \"5.5\", below = \"5.3.7\"",
        ),
        23,
        "jobs[1].pec_version",
        "min 5.5 must be below 5.3.7",
    );
    assert_err(
        &with(
            "min = \"5.3.7\", below = \"5.5\"",
            "min = \"5.5\", below = \"5.5.0\"",
        ),
        23,
        "jobs[1].pec_version",
        "must be below",
    );
    assert_err(
        &with("min = \"5.3.7\"", "min = \"v5.3\""),
        23,
        "jobs[1].pec_version.min",
        "not a PEC version",
    );
    assert_err(
        &with(
            "pec_version = { min = \"5.3.7\", below = \"5.5\" }",
            "pec_version = {}",
        ),
        23,
        "jobs[1].pec_version",
        "give min, below or both",
    );
    let only_min = with("min = \"5.3.7\", below = \"5.5\"", "min = \"5.3.7\"");
    let plan = Plan::parse(only_min.as_bytes()).unwrap();
    assert!(
        plan.jobs[1].runs_on(Some(&"6.0".parse().unwrap())),
        "no upper bound"
    );
}

#[test]
fn columns() {
    assert_err(
        &with("nu_cns = \"drop\"", "nu_cns = \"hash\""),
        26,
        "jobs[1].columns.nu_cns",
        "not one of send, pseudonymise, drop",
    );
    let long = "c".repeat(64);
    assert_err(
        &with("nu_cns = \"drop\"", &format!("{long} = \"drop\"")),
        26,
        &format!("jobs[1].columns.{long}"),
        "1 to 63 bytes",
    );
    let any_case = with("nu_cns = \"drop\"", "\"NU_CNS\" = \"send\"");
    let plan = Plan::parse(any_case.as_bytes()).unwrap();
    assert_eq!(plan.jobs[1].columns["NU_CNS"], ColumnPolicy::Send);
}

#[test]
fn sql_limits() {
    assert_err(
        &with("sql = \"SELECT * FROM tb_dim_equipe\"", "sql = \"  \""),
        12,
        "jobs[0].sql",
        "empty",
    );
    let big = format!("sql = \"{}\"", "x".repeat((1 << 20) + 1));
    assert_err(
        &with("sql = \"SELECT * FROM tb_dim_equipe\"", &big),
        12,
        "jobs[0].sql",
        "1 MiB",
    );
}

#[test]
fn at_most_200_jobs() {
    let mut text = String::from(
        "format = 1\nversion = 1\nissued_at = 2026-11-30T12:00:00Z\n\
         expires_at = 2027-03-01T00:00:00Z\nscope = \"all\"\n",
    );
    for i in 0..201 {
        text.push_str(&format!(
            "[[jobs]]\nname = \"j{i}\"\ntarget = \"t\"\nmode = \"snapshot\"\n\
             sql = \"SELECT 1\"\nschedule = {{ cron = \"0 3 * * *\" }}\n"
        ));
    }
    let e = err(&text);
    assert_eq!(e.field, "jobs[200]", "{e}");
    assert_eq!(e.line, 6 + 200 * 6, "{e}");
}

#[test]
fn not_utf8() {
    let mut bytes = BASE.as_bytes().to_vec();
    bytes[BASE.find("test").unwrap()] = 0xff;
    let e = Plan::parse(&bytes).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[test]
fn example_plan_parses() {
    let plan = Plan::parse(include_bytes!("../examples/pec-reference.plan.toml")).unwrap();
    assert!(plan.jobs.len() >= 3);
    assert!(plan.jobs.iter().any(|j| j.pec_version.is_some()));
    assert!(plan.jobs.iter().all(|j| !j.schedule.jitter.is_zero()));
}
