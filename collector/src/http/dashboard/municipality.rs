//! `GET /m/{ibge}`: one municipality: the three axes and overall with
//! their reasons, charts of rows and duration per day, its state history,
//! recent errors in full, recent transmissions, run requests (with a "run
//! now" form for operators), and its agents (with a revoke button for
//! operators).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::Viewer;
use super::chart::{self, Labels, Point};
use super::i18n::{Lang, T};
use super::layout::{self, Nav};
use crate::health::read;
use crate::health::view::{AgentRow, MunicipalityDetail, TransmissionRow};
use crate::http::error::ApiError;
use crate::http::router::HttpState;
use crate::operators::Role;

/// `GET /m/{ibge}`.
pub async fn page(
    State(state): State<HttpState>,
    viewer: Viewer,
    Path(ibge): Path<String>,
) -> Result<Response, ApiError> {
    let chrome = viewer.chrome(Nav::None);
    let lang = viewer.lang;
    let found = if ibge.len() == 7 && ibge.bytes().all(|b| b.is_ascii_digit()) {
        read::municipality(&state.web_pool, &ibge).await?
    } else {
        None
    };
    let Some(detail) = found else {
        let body = html! {
            h1 { (lang.t(T::NotFound)) }
            p { (lang.t(T::NotFoundText)) }
            p { a href="/" { (lang.t(T::Back)) } }
        };
        let page = layout::page(&chrome, lang.t(T::NotFound), body);
        return Ok(viewer.respond(StatusCode::NOT_FOUND, page));
    };
    let can_act = viewer.authed.0.role.allows(Role::Operator);
    let body = render(&detail, lang, Utc::now(), can_act);
    let page = layout::page(&chrome, &detail.municipality.name, body);
    Ok(viewer.respond(StatusCode::OK, page))
}

/// The page's body; `can_act` (operators) adds the "run now" form and a
/// revoke form per active agent.
pub fn render(d: &MunicipalityDetail, lang: Lang, now: DateTime<Utc>, can_act: bool) -> Markup {
    let m = &d.municipality;
    html! {
        header.muni {
            h1 #municipality-name { (m.name) }
            p.sub { (m.uf) " · " (lang.t(T::Ibge)) " " (m.ibge) }
            p {
                span class={ "b big s-" (m.overall.as_str()) } { (lang.state(m.overall)) }
                " " (lang.t(T::Since)) " " (lang.time(m.since))
                " (" (lang.relative(m.since, now)) ")"
            }
            dl.axes {
                div { dt { (lang.t(T::AxisConnectivity)) } dd { (lang.state_name(m.connectivity.as_str())) } }
                div { dt { (lang.t(T::AxisData)) } dd { (lang.state_name(m.data.as_str())) } }
                div { dt { (lang.t(T::AxisHealth)) } dd { (lang.state_name(m.health.as_str())) } }
                div { dt { (lang.t(T::ColLastSuccess)) } dd {
                    @if let Some(t) = m.last_success { (lang.time(t)) } @else { (lang.t(T::Never)) }
                } }
            }
            h2 { (lang.t(T::Reasons)) }
            @if m.reasons.is_empty() {
                p.empty { (lang.t(T::NoReasons)) }
            } @else {
                ul.reasons {
                    @for r in &m.reasons {
                        li class={ "s-" (r.severity().as_str()) } { (lang.reason(r)) }
                    }
                }
            }
        }
        (run_requests(d, lang, can_act))
        (charts(d, lang))
        (history(d, lang))
        (errors(&d.recent_errors, lang))
        section {
            h2 { (lang.t(T::RecentTransmissions)) }
            @if d.recent_transmissions.is_empty() {
                p.empty { (lang.t(T::NoTransmissions)) }
            } @else {
                div.scroll { (transmissions(&d.recent_transmissions, lang)) }
            }
        }
        section #agents {
            h2 { (lang.t(T::Agents)) }
            @if d.agents.is_empty() {
                p.empty { (lang.t(T::NoAgents)) }
            }
            @for a in &d.agents {
                (agent(a, lang, now, can_act))
            }
        }
    }
}

/// Operators' run requests, and the form to make one.
fn run_requests(d: &MunicipalityDetail, lang: Lang, can_act: bool) -> Markup {
    if !can_act && d.run_requests.is_empty() {
        return html! {};
    }
    let m = &d.municipality;
    html! {
        section #run-now {
            h2 { (lang.t(T::RunNow)) }
            @if can_act {
                // Sent by the script with the session's CSRF token (the API
                // wants it in a header); hidden until the script shows it.
                form.act hidden data-post={ "/api/v1/municipalities/" (m.ibge) "/run-requests" }
                    data-confirm=(lang.t(T::RunNowConfirm)) data-done=(lang.t(T::RunNowDone))
                    data-failed=(lang.t(T::RunNowFailed)) {
                    label {
                        span { (lang.t(T::RunJob)) }
                        select name="job" {
                            option value="" { (lang.t(T::AllJobs)) }
                            @for j in &m.jobs { option value=(j.job) { (j.job) } }
                        }
                    }
                    button type="submit" { (lang.t(T::RunNowButton)) }
                    output {}
                }
                p.hint { (lang.t(T::RunNowHint)) }
            }
            @if !d.run_requests.is_empty() {
                div.scroll {
                    table #run-requests {
                        caption { (lang.t(T::RunRequests)) }
                        thead { tr {
                            th { (lang.t(T::ColWhen)) }
                            th { (lang.t(T::ColJob)) }
                            th { (lang.t(T::ColRequestedBy)) }
                            th { (lang.t(T::ColStatus)) }
                        } }
                        tbody {
                            @for r in &d.run_requests {
                                tr data-status=(r.status) {
                                    td.nowrap { (lang.time(r.requested_at)) }
                                    td { (r.job.as_deref().unwrap_or(lang.t(T::AllJobs))) }
                                    td { (r.requested_by) }
                                    td {
                                        @match r.status.as_str() {
                                            "taken" => {
                                                span.b.s-ok { (lang.t(T::RequestTaken)) }
                                                @if let Some(t) = r.taken_at { " " (lang.time(t)) }
                                            }
                                            "expired" => span.b.s-missing { (lang.t(T::RequestExpired)) },
                                            _ => span.b.s-late { (lang.t(T::RequestPending)) },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn charts(d: &MunicipalityDetail, lang: Lang) -> Markup {
    if d.daily.is_empty() {
        return html! { section.charts { p.empty { (lang.t(T::ChartEmpty)) } } };
    }
    let failed = lang.t(T::FailedDay);
    let note = |failures: i64| {
        if failures > 0 {
            format!(" ({failed})")
        } else {
            String::new()
        }
    };
    let rows: Vec<Point> = d
        .daily
        .iter()
        .map(|p| Point {
            value: p.rows as f64,
            title: format!(
                "{}: {} {}{}",
                lang.day(p.day),
                lang.number(p.rows),
                lang.t(T::ColRows).to_lowercase(),
                note(p.failed)
            ),
            flagged: p.failed > 0,
        })
        .collect();
    let secs: Vec<Point> = d
        .daily
        .iter()
        .map(|p| Point {
            value: p.seconds,
            title: format!(
                "{}: {}{}",
                lang.day(p.day),
                lang.seconds(p.seconds),
                note(p.failed)
            ),
            flagged: p.failed > 0,
        })
        .collect();
    let (first, last) = (
        d.daily.first().map(|p| lang.day(p.day)).unwrap_or_default(),
        d.daily.last().map(|p| lang.day(p.day)).unwrap_or_default(),
    );
    let max_rows = d.daily.iter().map(|p| p.rows).max().unwrap_or(0);
    let max_secs = d.daily.iter().map(|p| p.seconds).fold(0.0, f64::max);
    html! {
        section.charts {
            figure #chart-rows {
                figcaption { (lang.t(T::ChartRows)) }
                (chart::bars(lang.t(T::ChartRows), &rows, &Labels {
                    top: lang.number(max_rows),
                    start: first.clone(),
                    end: last.clone(),
                }))
            }
            figure #chart-duration {
                figcaption { (lang.t(T::ChartDuration)) }
                (chart::line(lang.t(T::ChartDuration), &secs, &Labels {
                    top: lang.seconds(max_secs),
                    start: first,
                    end: last,
                }))
            }
        }
    }
}

fn history(d: &MunicipalityDetail, lang: Lang) -> Markup {
    html! {
        section #history {
            h2 { (lang.t(T::History)) }
            @if d.history.is_empty() {
                p.empty { (lang.t(T::NoHistory)) }
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th { (lang.t(T::ColWhen)) }
                            th { (lang.t(T::ColAxis)) }
                            th { (lang.t(T::ColChange)) }
                            th { (lang.t(T::ColReason)) }
                        } }
                        tbody {
                            @for h in &d.history {
                                tr {
                                    td.nowrap { (lang.time(h.at)) }
                                    td { (lang.axis(&h.axis)) }
                                    td.nowrap {
                                        @if let Some(from) = &h.from { (lang.state_name(from)) " → " }
                                        span class={ "s-" (h.to) } { (lang.state_name(&h.to)) }
                                    }
                                    td { @match lang { Lang::Pt => (h.reason_pt_br), Lang::En => (h.reason) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Failed or aborted transmissions with their errors in full (also used by
/// the failures page).
pub fn errors(rows: &[TransmissionRow], lang: Lang) -> Markup {
    html! {
        section #errors {
            h2 { (lang.t(T::RecentErrors)) }
            @if rows.is_empty() {
                p.empty { (lang.t(T::NoErrors)) }
            }
            @for t in rows {
                article.err {
                    p {
                        strong { (t.job) } " · "
                        span class={ "b s-" (outcome_class(&t.state)) } { (lang.outcome(&t.state)) }
                        " · " (lang.time(t.started_at)) " · #" (t.id)
                    }
                    pre { (t.error.as_deref().unwrap_or(lang.t(T::NoErrorText))) }
                }
            }
        }
    }
}

/// A transmission outcome's colour class.
pub fn outcome_class(state: &str) -> &'static str {
    match state {
        "committed" => "ok",
        "open" => "late",
        _ => "failing",
    }
}

fn transmissions(rows: &[TransmissionRow], lang: Lang) -> Markup {
    let dash = lang.t(T::Unknown);
    html! {
        table #transmissions {
            thead { tr {
                th { (lang.t(T::ColStarted)) }
                th { (lang.t(T::ColJob)) }
                th { (lang.t(T::ColOutcome)) }
                th { (lang.t(T::ColRows)) }
                th { (lang.t(T::ColDuration)) }
                th { (lang.t(T::ColBytes)) }
                th { (lang.t(T::ColTarget)) }
                th { (lang.t(T::ColMode)) }
                th { (lang.t(T::ColPlan)) }
                th { (lang.t(T::ColAgent)) }
            } }
            tbody {
                @for t in rows {
                    tr {
                        td.nowrap { (lang.time(t.started_at)) }
                        td { (t.job) }
                        td { span class={ "b s-" (outcome_class(&t.state)) } { (lang.outcome(&t.state)) } }
                        td.n { (lang.number(t.rows)) }
                        td.n { @if let Some(s) = t.duration_seconds { (lang.seconds(s)) } @else { (dash) } }
                        td.n.nowrap { (lang.bytes(t.raw_bytes)) " / " (lang.bytes(t.compressed_bytes)) }
                        td { (t.target) }
                        td { (t.mode) }
                        td { (t.plan_version) }
                        td { (t.agent_version) }
                    }
                }
            }
        }
    }
}

/// The agent's last doctor run: when, the counts, and each check that did
/// not pass (`check: code`).
fn doctor(a: &AgentRow, lang: Lang, now: DateTime<Utc>) -> Markup {
    let Some(d) = a.doctor.as_deref() else {
        return html! { (lang.t(T::DoctorNever)) };
    };
    let class = match d.worst.as_str() {
        "pass" => "s-ok",
        "warn" => "s-degraded",
        _ => "s-failing",
    };
    html! {
        span.b.(class) { (d.worst) } " "
        @if let Some(t) = d.ran_at { (lang.time(t)) " (" (lang.relative(t, now)) ") " }
        span title=(lang.t(T::DoctorCounts)) { (d.passed) " / " (d.warnings) " / " (d.failures) }
        @if !d.problems.is_empty() {
            ul.problems { @for p in &d.problems { li { code { (p.check) ": " (p.code) } " (" (p.outcome) ")" } } }
        }
    }
}

fn agent(a: &AgentRow, lang: Lang, now: DateTime<Utc>, can_act: bool) -> Markup {
    let dash = lang.t(T::Unknown);
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| dash.to_string());
    let when = |v: Option<DateTime<Utc>>| {
        v.map_or_else(
            || dash.to_string(),
            |t| format!("{} ({})", lang.time(t), lang.relative(t, now)),
        )
    };
    let spool = match (a.spool_used_bytes, a.spool_limit_bytes) {
        (Some(u), Some(l)) if l > 0 => format!(
            "{} / {} ({}%)",
            lang.bytes(u),
            lang.bytes(l),
            (u as f64 / l as f64 * 100.0).round()
        ),
        (Some(u), _) => lang.bytes(u),
        _ => dash.to_string(),
    };
    let cert_class = a.cert_not_after.and_then(|c| {
        if c <= now {
            Some("expired")
        } else if (c - now).num_days() < 30 {
            Some("soon")
        } else {
            None
        }
    });
    html! {
        article.agent data-agent=(a.id) {
            h3 { code { (a.id) } @if a.revoked_at.is_some() { " " span.b.s-never { (lang.t(T::RevokedAt)) } } }
            dl.kv {
                dt { (lang.t(T::AgentVersion)) } dd { (text(&a.version)) }
                dt { (lang.t(T::PecVersion)) } dd { (text(&a.pec_version)) }
                dt { (lang.t(T::PlanVersion)) } dd { @if let Some(v) = a.plan_version { (v) } @else { (dash) } }
                dt { (lang.t(T::PlanStatus)) } dd { (text(&a.plan_status)) }
                dt { (lang.t(T::JobSource)) } dd { (text(&a.job_source)) }
                dt { (lang.t(T::CertExpiry)) } dd class=[cert_class] { (when(a.cert_not_after)) }
                dt { (lang.t(T::LastHeartbeat)) } dd { (when(a.last_heartbeat)) }
                dt { (lang.t(T::Hostname)) } dd { (text(&a.hostname)) }
                dt { (lang.t(T::Os)) } dd { (text(&a.os)) }
                dt { (lang.t(T::Spool)) } dd { (spool) }
                dt { (lang.t(T::Doctor)) } dd.doctor { (doctor(a, lang, now)) }
                dt { (lang.t(T::EnrolledAt)) } dd { (lang.time(a.enrolled_at)) }
                @if let Some(r) = a.revoked_at {
                    dt { (lang.t(T::RevokedAt)) } dd { (lang.time(r)) }
                }
            }
            @if can_act && a.revoked_at.is_none() {
                form.act hidden data-post={ "/api/v1/agents/" (a.id) "/revoke" }
                    data-confirm=(lang.t(T::RevokeConfirm)) data-done=(lang.t(T::RevokeDone))
                    data-failed=(lang.t(T::RevokeFailed)) {
                    label {
                        span { (lang.t(T::RevokeReason)) }
                        input name="reason" maxlength="200" required;
                    }
                    button.danger type="submit" { (lang.t(T::Revoke)) }
                    output {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::view::{DailyPoint, HistoryEntry};
    use crate::monitor::Overall;

    fn now() -> DateTime<Utc> {
        "2025-03-10T18:00:00Z".parse().unwrap()
    }

    fn tx(error: Option<&str>) -> TransmissionRow {
        TransmissionRow {
            id: 42,
            ibge: "3550308".into(),
            name: "<script>x</script>".into(),
            job: "cad".into(),
            target: "t_cad".into(),
            mode: "append".into(),
            state: if error.is_some() {
                "failed"
            } else {
                "committed"
            }
            .into(),
            started_at: now(),
            finished_at: None,
            duration_seconds: Some(2.5),
            rows: 10,
            raw_bytes: 2048,
            compressed_bytes: 512,
            plan_version: "3".into(),
            agent_version: "0.1.0".into(),
            error: error.map(str::to_string),
        }
    }

    fn detail() -> MunicipalityDetail {
        let m = super::super::overview::tests::sample_row(
            "3550308",
            "<script>alert(1)</script>",
            Overall::Failing,
        );
        MunicipalityDetail {
            municipality: m,
            history: vec![HistoryEntry {
                at: now(),
                axis: "data".into(),
                from: Some("on_time".into()),
                to: "late".into(),
                reason: "job cad: late".into(),
                reason_pt_br: "rotina cad: atrasada".into(),
            }],
            daily: (0..90)
                .map(|i| DailyPoint {
                    day: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
                        + chrono::Duration::days(i),
                    rows: i * 10,
                    seconds: i as f64,
                    committed: 1,
                    failed: i64::from(i == 5),
                })
                .collect(),
            recent_transmissions: vec![tx(None)],
            recent_errors: vec![tx(Some("ERROR: <relation> \"x\"\n  line 2"))],
            agents: vec![AgentRow {
                id: uuid::Uuid::nil(),
                ibge: "3550308".into(),
                name: "x".into(),
                hostname: Some("ubs".into()),
                os: None,
                version: Some("0.1.0".into()),
                pec_version: None,
                job_source: None,
                plan_version: Some(3),
                plan_status: Some("refused: <bad>".into()),
                cert_not_after: None,
                last_heartbeat: None,
                enrolled_at: now(),
                revoked_at: None,
                spool_used_bytes: Some(1024 * 1024),
                spool_limit_bytes: Some(100 * 1024 * 1024),
                doctor: None,
            }],
            run_requests: vec![crate::run_requests::RunRequestRow {
                id: 7,
                ibge: "3550308".into(),
                job: None,
                requested_by: "operator:<ana> (web)".into(),
                requested_at: now(),
                expires_at: now(),
                taken_at: Some(now()),
                taken_by: None,
                status: "taken".into(),
            }],
        }
    }

    #[test]
    fn the_page_escapes_and_shows_everything() {
        let html = render(&detail(), Lang::Pt, now(), false).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<pre>ERROR: &lt;relation&gt; &quot;x&quot;\n  line 2</pre>"));
        assert!(html.contains(r#"<span class="b s-failing">falhou</span>"#));
        assert!(html.contains("refused: &lt;bad&gt;"));
        assert!(html.contains("em dia → "), "{html}");
        assert!(html.contains("rotina cad: atrasada"));
        assert!(html.contains(r#"id="chart-rows""#) && html.contains(r#"id="chart-duration""#));
        assert_eq!(html.matches("<rect").count(), 90);
        assert!(html.contains("1,0 MiB / 100,0 MiB (1%)"), "{html}");
        assert!(!html.contains("data-post"), "viewers get no forms");
        assert!(
            html.contains("operator:&lt;ana&gt; (web)") && html.contains("recebido pelo agente")
        );
    }

    #[test]
    fn english_and_the_operator_forms() {
        let html = render(&detail(), Lang::En, now(), true).into_string();
        assert!(html.contains("State history") && html.contains("job cad: late"));
        assert!(html.contains("on time → "), "{html}");
        assert!(
            html.contains(
                r#"data-post="/api/v1/agents/00000000-0000-0000-0000-000000000000/revoke""#
            )
        );
        assert!(html.contains(r#"data-post="/api/v1/municipalities/3550308/run-requests""#));
        assert!(html.contains("Every job") && html.contains("taken by the agent"));
    }
}
