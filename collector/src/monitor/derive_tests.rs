//! Table-driven tests of [`derive`] and [`transitions`], on a São Paulo
//! calendar with an injected clock.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::America::Sao_Paulo;
use transmissor_plan::{PecVersion, Schedule};

use super::*;

/// Local São Paulo time (UTC−3) as UTC.
fn sp(s: &str) -> DateTime<Utc> {
    let local: NaiveDateTime = s.parse().unwrap();
    Sao_Paulo
        .from_local_datetime(&local)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn pec(s: &str) -> PecVersion {
    s.parse().unwrap()
}

fn daily(jitter: Duration) -> Schedule {
    Schedule::new("0 2 * * *", jitter).unwrap()
}

/// An agent that is fine at `now`: online, one daily job committed today.
fn healthy(now: DateTime<Utc>) -> MunicipalityFacts {
    MunicipalityFacts {
        ibge: "3550308".into(),
        enrolled_at: sp("2026-01-05T09:00:00"),
        last_heartbeat: Some(now - TimeDelta::seconds(30)),
        heartbeat_interval: Duration::from_secs(60),
        cert_not_after: Some(now + TimeDelta::days(60)),
        pec_version: Some(pec("5.5.28")),
        jobs: vec![JobFacts {
            job: "atendimentos".into(),
            schedule: Some(daily(Duration::ZERO)),
            last_commit: Some(now - TimeDelta::minutes(1)),
            latest_rows: Some(1000),
            row_history: vec![1000; 10],
            ..JobFacts::default()
        }],
        ..MunicipalityFacts::default()
    }
}

fn fleet() -> FleetFacts {
    FleetFacts {
        newest_pec: Some(pec("5.5.28")),
        minimum_pec: None,
    }
}

fn run(facts: &MunicipalityFacts, now: DateTime<Utc>) -> Health {
    derive(facts, &fleet(), &Thresholds::default(), Sao_Paulo, now)
}

/// One case of lateness for the daily 02:00 job.
struct DataCase {
    name: &'static str,
    now: &'static str,
    last_commit: Option<&'static str>,
    /// (state, the slot named by the reason).
    want: (DataState, Option<&'static str>),
}

#[test]
fn late_and_missing_on_a_business_calendar() {
    use DataState::{Late, Missing, OnTime};
    let cases = [
        DataCase {
            name: "committed today",
            now: "2026-03-13T10:00:00",
            last_commit: Some("2026-03-13T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "not started yet, within the grace",
            now: "2026-03-13T03:59:00",
            last_commit: Some("2026-03-12T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "never started, past the grace",
            now: "2026-03-13T04:01:00",
            last_commit: Some("2026-03-12T02:10:00"),
            want: (Late, Some("2026-03-13T02:00:00")),
        },
        DataCase {
            name: "never committed anything",
            now: "2026-03-13T04:01:00",
            last_commit: None,
            want: (Missing, Some("2026-03-12T02:00:00")),
        },
        DataCase {
            name: "friday slot checked on saturday, committed",
            now: "2026-03-14T10:00:00",
            last_commit: Some("2026-03-13T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "friday slot checked on saturday, never ran",
            now: "2026-03-14T01:00:00",
            last_commit: Some("2026-03-12T02:10:00"),
            want: (Late, Some("2026-03-13T02:00:00")),
        },
        DataCase {
            name: "friday slot checked on monday, never ran",
            now: "2026-03-16T01:00:00",
            last_commit: Some("2026-03-12T02:10:00"),
            want: (Missing, Some("2026-03-13T02:00:00")),
        },
        DataCase {
            name: "friday committed, monday within the grace",
            now: "2026-03-16T03:59:00",
            last_commit: Some("2026-03-13T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "friday committed, monday past the grace",
            now: "2026-03-16T04:01:00",
            last_commit: Some("2026-03-13T02:10:00"),
            want: (Late, Some("2026-03-16T02:00:00")),
        },
        DataCase {
            name: "holiday monday (7 Sep) is not expected",
            now: "2026-09-07T12:00:00",
            last_commit: Some("2026-09-04T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "tuesday after a holiday monday, before its slot",
            now: "2026-09-08T01:00:00",
            last_commit: Some("2026-09-04T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "tuesday after a holiday monday, never ran",
            now: "2026-09-08T04:01:00",
            last_commit: Some("2026-09-04T02:10:00"),
            want: (Late, Some("2026-09-08T02:00:00")),
        },
        DataCase {
            name: "after carnival",
            now: "2026-02-18T01:00:00",
            last_commit: Some("2026-02-13T02:10:00"),
            want: (OnTime, None),
        },
        DataCase {
            name: "just before the missing threshold",
            now: "2026-03-14T01:59:00",
            last_commit: Some("2026-03-12T02:10:00"),
            want: (Late, Some("2026-03-13T02:00:00")),
        },
        DataCase {
            name: "at the missing threshold",
            now: "2026-03-14T02:00:00",
            last_commit: Some("2026-03-12T02:10:00"),
            want: (Missing, Some("2026-03-13T02:00:00")),
        },
        DataCase {
            name: "yesterday missed, today's slot within the grace",
            now: "2026-03-13T03:00:00",
            last_commit: Some("2026-03-11T02:10:00"),
            want: (Missing, Some("2026-03-12T02:00:00")),
        },
    ];
    for c in cases {
        let now = sp(c.now);
        let mut facts = healthy(now);
        facts.jobs[0].last_commit = c.last_commit.map(sp);
        let h = run(&facts, now);
        assert_eq!(h.data, c.want.0, "{}: {:?}", c.name, h.reasons);
        let slot = h.reasons.iter().find_map(|r| match r {
            Reason::Late { slot, .. } | Reason::Missing { slot, .. } => Some(*slot),
            _ => None,
        });
        assert_eq!(slot, c.want.1.map(sp), "{}", c.name);
        assert_eq!(h.overall, Overall::from(c.want.0), "{}", c.name);
    }
}

#[test]
fn expectations_start_with_the_plan_and_the_enrollment() {
    let now = sp("2026-03-13T10:00:00");
    type Edit = fn(&mut MunicipalityFacts);
    let cases: [(&str, Edit, DataState); 5] = [
        ("no commit", |_| {}, DataState::Missing),
        (
            "job new since this morning",
            |f| f.jobs[0].expected_since = Some(sp("2026-03-13T03:00:00")),
            DataState::OnTime,
        ),
        (
            "job new since yesterday",
            |f| f.jobs[0].expected_since = Some(sp("2026-03-12T12:00:00")),
            DataState::Late,
        ),
        (
            "enrolled this morning",
            |f| f.enrolled_at = sp("2026-03-13T03:00:00"),
            DataState::OnTime,
        ),
        (
            "not scheduled",
            |f| f.jobs[0].schedule = None,
            DataState::OnTime,
        ),
    ];
    for (name, change, want) in cases {
        let mut facts = healthy(now);
        facts.jobs[0].last_commit = None;
        change(&mut facts);
        assert_eq!(run(&facts, now).data, want, "{name}");
    }
}

#[test]
fn jitter_moves_the_deadline() {
    let mut facts = healthy(sp("2026-03-13T04:30:00"));
    facts.jobs[0].schedule = Some(daily(Duration::from_secs(45 * 60)));
    facts.jobs[0].last_commit = Some(sp("2026-03-12T02:40:00"));
    for (now, want) in [
        ("2026-03-13T04:44:00", DataState::OnTime),
        ("2026-03-13T04:46:00", DataState::Late),
    ] {
        facts.last_heartbeat = Some(sp(now));
        assert_eq!(run(&facts, sp(now)).data, want, "{now}");
    }
}

#[test]
fn data_is_the_worst_job() {
    let now = sp("2026-03-13T10:00:00");
    let mut facts = healthy(now);
    let mut late = facts.jobs[0].clone();
    late.job = "vacinas".into();
    late.last_commit = Some(sp("2026-03-12T02:10:00"));
    let mut missing = facts.jobs[0].clone();
    missing.job = "procedimentos".into();
    missing.last_commit = Some(sp("2026-03-11T02:10:00"));
    facts.jobs.push(late);
    let h = run(&facts, now);
    assert_eq!(h.data, DataState::Late);
    facts.jobs.push(missing);
    let h = run(&facts, now);
    assert_eq!(h.data, DataState::Missing);
    let jobs: Vec<_> = h.reasons.iter().filter_map(Reason::job).collect();
    assert_eq!(jobs, ["vacinas", "procedimentos"]);
}

#[test]
fn connectivity() {
    let now = sp("2026-03-13T10:00:00");
    let cases = [
        (
            "online",
            Some(now - TimeDelta::seconds(30)),
            Connectivity::Online,
        ),
        (
            "ten intervals",
            Some(now - TimeDelta::minutes(10)),
            Connectivity::Online,
        ),
        (
            "offline",
            Some(now - TimeDelta::minutes(11)),
            Connectivity::Offline,
        ),
        (
            "thirty days",
            Some(now - TimeDelta::days(30)),
            Connectivity::Offline,
        ),
        (
            "inactive",
            Some(now - TimeDelta::days(31)),
            Connectivity::Inactive,
        ),
        (
            "clock ahead",
            Some(now + TimeDelta::minutes(5)),
            Connectivity::Online,
        ),
        ("never", None, Connectivity::Never),
    ];
    for (name, hb, want) in cases {
        let mut facts = healthy(now);
        facts.last_heartbeat = hb;
        let h = run(&facts, now);
        assert_eq!(h.connectivity, want, "{name}");
        assert_eq!(h.overall, Overall::from(want), "{name}");
        let reason = h.reasons.first().cloned();
        let want_reason = match (want, hb) {
            (Connectivity::Offline, Some(since)) => Some(Reason::Offline { since }),
            (Connectivity::Inactive, Some(since)) => Some(Reason::Inactive { since }),
            (Connectivity::Never, _) => Some(Reason::Never {
                enrolled_at: facts.enrolled_at,
            }),
            _ => None,
        };
        assert_eq!(reason, want_reason, "{name}");
    }
}

#[test]
fn failing_carries_the_error() {
    let now = sp("2026-03-13T10:00:00");
    let commit = sp("2026-03-13T02:10:00");
    let attempt = |at: &str, outcome, error: Option<&str>| Attempt {
        at: sp(at),
        outcome,
        error: error.map(str::to_string),
    };
    let cases = [
        (
            "failed after the commit",
            attempt(
                "2026-03-13T08:00:00",
                Outcome::Failed,
                Some("connection reset"),
            ),
            Some(Reason::Failing {
                job: "atendimentos".into(),
                outcome: Outcome::Failed,
                error: Some("connection reset".into()),
            }),
        ),
        (
            "refused, no text",
            attempt("2026-03-13T08:00:00", Outcome::Refused, Some("  ")),
            Some(Reason::Failing {
                job: "atendimentos".into(),
                outcome: Outcome::Refused,
                error: None,
            }),
        ),
        (
            "failed before the commit",
            attempt("2026-03-13T01:00:00", Outcome::Aborted, Some("cancelled")),
            None,
        ),
        (
            "still running",
            attempt("2026-03-13T08:00:00", Outcome::Open, None),
            None,
        ),
        (
            "the commit itself",
            attempt("2026-03-13T02:10:00", Outcome::Committed, None),
            None,
        ),
    ];
    for (name, a, want) in cases {
        let mut facts = healthy(now);
        facts.jobs[0].last_commit = Some(commit);
        facts.jobs[0].last_attempt = Some(a);
        let h = run(&facts, now);
        assert_eq!(h.reasons.first(), want.as_ref(), "{name}");
        let state = if want.is_some() {
            HealthState::Failing
        } else {
            HealthState::Ok
        };
        assert_eq!(h.health, state, "{name}");
        assert_eq!(h.overall, Overall::from(state), "{name}");
    }

    // Error texts from agents are cut.
    let mut facts = healthy(now);
    facts.jobs[0].last_attempt = Some(Attempt {
        at: now,
        outcome: Outcome::Failed,
        error: Some("x".repeat(2000)),
    });
    let h = run(&facts, now);
    let Some(Reason::Failing { error: Some(e), .. }) = h.reasons.first() else {
        panic!("{h:?}");
    };
    assert_eq!(e.chars().count(), MAX_TEXT_CHARS + 1);
}

#[test]
fn every_degraded_reason() {
    let now = sp("2026-03-13T10:00:00");
    type Edit = fn(&mut MunicipalityFacts, &mut FleetFacts);
    let cases: [(&str, Edit, Option<Reason>); 13] = [
        ("healthy", |_, _| {}, None),
        (
            "row drop",
            |f, _| f.jobs[0].latest_rows = Some(120),
            Some(Reason::RowAnomaly {
                job: "atendimentos".into(),
                latest: 120,
                usual: 1000,
                runs: 10,
            }),
        ),
        (
            "schema drift",
            |f, _| f.schema_drift = vec!["atendimentos lacks 2 columns: a, b".into()],
            Some(Reason::SchemaDrift {
                text: "atendimentos lacks 2 columns: a, b".into(),
            }),
        ),
        (
            "certificate expiring",
            |f, _| f.cert_not_after = Some(sp("2026-03-15T10:00:00")),
            Some(Reason::CertExpiring {
                at: sp("2026-03-15T10:00:00"),
            }),
        ),
        (
            "certificate fine in four days",
            |f, _| f.cert_not_after = Some(sp("2026-03-17T10:00:00")),
            None,
        ),
        (
            "certificate expired",
            |f, _| f.cert_not_after = Some(sp("2026-03-13T09:00:00")),
            Some(Reason::CertExpired {
                at: sp("2026-03-13T09:00:00"),
            }),
        ),
        (
            "plan refused",
            |f, _| f.plan_refusal = Some("signed by an unknown key".into()),
            Some(Reason::PlanRefused {
                text: "signed by an unknown key".into(),
            }),
        ),
        (
            "plan expired",
            |f, _| f.plan_expired = true,
            Some(Reason::PlanExpired),
        ),
        (
            "pec behind the newest",
            |f, _| f.pec_version = Some(pec("5.3.7")),
            Some(Reason::PecBehind {
                have: pec("5.3.7"),
                expected: pec("5.5.28"),
            }),
        ),
        (
            "pec behind the newest, above the minimum",
            |f, fleet| {
                f.pec_version = Some(pec("5.3.7"));
                fleet.minimum_pec = Some(pec("5.3"));
            },
            None,
        ),
        (
            "pec behind the minimum",
            |f, fleet| {
                f.pec_version = Some(pec("5.2.40"));
                fleet.minimum_pec = Some(pec("5.3"));
            },
            Some(Reason::PecBehind {
                have: pec("5.2.40"),
                expected: pec("5.3"),
            }),
        ),
        ("pec unknown", |f, _| f.pec_version = None, None),
        (
            "pec ahead of the fleet's record",
            |f, _| f.pec_version = Some(pec("5.10")),
            None,
        ),
    ];
    for (name, change, want) in cases {
        let mut facts = healthy(now);
        let mut fl = fleet();
        change(&mut facts, &mut fl);
        let h = derive(&facts, &fl, &Thresholds::default(), Sao_Paulo, now);
        assert_eq!(
            h.reasons,
            want.iter().cloned().collect::<Vec<_>>(),
            "{name}"
        );
        let (health, overall) = match want {
            Some(_) => (HealthState::Degraded, Overall::Degraded),
            None => (HealthState::Ok, Overall::Ok),
        };
        assert_eq!((h.health, h.overall), (health, overall), "{name}");
        assert_eq!(
            (h.connectivity, h.data),
            (Connectivity::Online, DataState::OnTime),
            "{name}"
        );
    }
}

#[test]
fn overall_is_the_worst_axis() {
    let now = sp("2026-03-13T10:00:00");
    let mut facts = healthy(now);
    facts.plan_expired = true;
    facts.jobs[0].last_commit = Some(sp("2026-03-12T02:10:00"));
    facts.jobs[0].last_attempt = Some(Attempt {
        at: sp("2026-03-13T02:20:00"),
        outcome: Outcome::Failed,
        error: Some("disk full".into()),
    });
    let h = run(&facts, now);
    assert_eq!(
        (h.connectivity, h.data, h.health, h.overall),
        (
            Connectivity::Online,
            DataState::Late,
            HealthState::Failing,
            Overall::Failing
        )
    );
    facts.last_heartbeat = Some(now - TimeDelta::hours(1));
    assert_eq!(run(&facts, now).overall, Overall::Offline);
    facts.last_heartbeat = None;
    let h = run(&facts, now);
    assert_eq!(h.overall, Overall::Never);
    let kinds: Vec<_> = h.reasons.iter().map(Reason::axis).collect();
    assert_eq!(
        kinds,
        [Axis::Connectivity, Axis::Data, Axis::Health, Axis::Health]
    );
}

#[test]
fn reason_texts() {
    let slot = Utc.with_ymd_and_hms(2026, 3, 13, 5, 0, 0).unwrap();
    let cases = [
        (
            Reason::Late {
                job: "vacinas".into(),
                slot,
                last_commit: None,
            },
            "job vacinas: late, nothing committed since the 2026-03-13 05:00 UTC slot (never committed)",
            "rotina vacinas: atrasada, nada recebido desde o horário de 13/03/2026 05:00 UTC (nenhum envio concluído)",
        ),
        (
            Reason::RowAnomaly {
                job: "vacinas".into(),
                latest: 120,
                usual: 1000,
                runs: 14,
            },
            "job vacinas: rows 120 against a usual 1,000 (median of 14 runs)",
            "rotina vacinas: 120 linhas contra 1.000 habituais (mediana de 14 envios)",
        ),
        (
            Reason::Failing {
                job: "vacinas".into(),
                outcome: Outcome::Refused,
                error: None,
            },
            "job vacinas: last attempt refused: no error text",
            "rotina vacinas: a última tentativa foi recusada: sem mensagem de erro",
        ),
        (
            Reason::PecBehind {
                have: pec("5.3.7"),
                expected: pec("5.5"),
            },
            "pec 5.3.7 is behind 5.5",
            "PEC 5.3.7 desatualizado (esperado 5.5 ou mais novo)",
        ),
        (
            Reason::PlanRefused {
                text: String::new(),
            },
            "plan refused",
            "plano recusado",
        ),
        (
            Reason::Offline { since: slot },
            "no heartbeat since 2026-03-13 05:00 UTC",
            "sem sinal do agente desde 13/03/2026 05:00 UTC",
        ),
    ];
    for (r, en, pt) in cases {
        assert_eq!(r.to_string(), en);
        assert_eq!(r.pt_br(), pt);
    }
}

#[test]
fn health_round_trips_as_json() {
    let now = sp("2026-03-13T10:00:00");
    let mut facts = healthy(now);
    facts.pec_version = Some(pec("5.3.7"));
    facts.plan_expired = true;
    facts.jobs[0].last_commit = None;
    let h = run(&facts, now);
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["data"], "missing");
    assert_eq!(json["reasons"][1]["kind"], "plan_expired");
    assert_eq!(json["reasons"][2]["have"], "5.3.7");
    let back: Health = serde_json::from_value(json).unwrap();
    assert_eq!(back, h);
}

#[test]
fn transitions_only_on_change() {
    let now = sp("2026-03-13T10:00:00");
    let at = now;
    let ok = run(&healthy(now), now);

    // First derivation: every axis, from nothing.
    let first = transitions(None, &ok, at);
    let names: Vec<_> = first
        .iter()
        .map(|t| (t.change.axis(), t.change.before(), t.change.after()))
        .collect();
    assert_eq!(
        names,
        [
            (Axis::Connectivity, None, "online"),
            (Axis::Data, None, "on_time"),
            (Axis::Health, None, "ok"),
            (Axis::Overall, None, "ok"),
        ]
    );
    assert_eq!(first[0].reason, "first seen: online");

    // Unchanged: nothing.
    assert!(transitions(Some(&ok), &ok, at).is_empty());

    // Late: data and overall change, with the reason.
    let mut facts = healthy(now);
    facts.jobs[0].last_commit = Some(sp("2026-03-12T02:10:00"));
    let late = run(&facts, now);
    let ts = transitions(Some(&ok), &late, at);
    assert_eq!(
        ts.iter().map(|t| t.change).collect::<Vec<_>>(),
        [
            Change::Data {
                from: Some(DataState::OnTime),
                to: DataState::Late
            },
            Change::Overall {
                from: Some(Overall::Ok),
                to: Overall::Late
            },
        ]
    );
    assert!(
        ts[0].reason.starts_with("job atendimentos: late"),
        "{}",
        ts[0].reason
    );
    assert_eq!(ts[0].reason, ts[1].reason);
    assert!(
        ts[0]
            .reason_pt_br
            .starts_with("rotina atendimentos: atrasada")
    );

    // Another late job: a reason change alone is no transition.
    let mut two = facts.clone();
    let mut other = two.jobs[0].clone();
    other.job = "vacinas".into();
    two.jobs.push(other);
    let late_two = run(&two, now);
    assert_ne!(late.reasons, late_two.reasons);
    assert!(transitions(Some(&late), &late_two, at).is_empty());

    // Recovery.
    let back = transitions(Some(&late), &ok, at);
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].reason, "back to on_time");
    assert_eq!(back[0].reason_pt_br, "voltou a em dia");

    // Stored as a flat record.
    let json = serde_json::to_value(&back[0]).unwrap();
    assert_eq!(json["axis"], "data");
    assert_eq!(json["from"], "late");
    assert_eq!(json["to"], "on_time");
    let again: Transition = serde_json::from_value(json).unwrap();
    assert_eq!(again, back[0]);
}
