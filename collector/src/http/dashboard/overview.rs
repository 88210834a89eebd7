//! `GET /`: counts per state (links that filter), the filter form, and the
//! table of municipalities. Filtering and sorting happen on the server from
//! the query string ([`OverviewQuery`]), so they work without JavaScript;
//! the script only hides rows as one types. Each row is kept small (classes,
//! no inline styles) since the table holds all 5,570 municipalities.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, Render, html};

use super::Viewer;
use super::chart;
use super::i18n::{Lang, T};
use super::layout::{self, Nav};
use crate::health::read;
use crate::health::view::{MunicipalityRow, Overview, OverviewQuery, SortKey};
use crate::http::error::ApiError;
use crate::http::router::HttpState;
use crate::monitor::Overall;

/// The 27 federative units, as the UF filter offers them.
pub const UFS: [&str; 27] = [
    "AC", "AL", "AM", "AP", "BA", "CE", "DF", "ES", "GO", "MA", "MG", "MS", "MT", "PA", "PB", "PE",
    "PI", "PR", "RJ", "RN", "RO", "RR", "RS", "SC", "SE", "SP", "TO",
];

/// Every overall state, best first.
pub const STATES: [Overall; 8] = Overall::ALL;

/// Certificates expiring within this many days are highlighted.
const CERT_WARN_DAYS: i64 = 30;

const KEYS: [&str; 6] = ["state", "uf", "q", "sort", "desc", "lang"];

/// The overview's filter from a query string: empty values (an untouched
/// form field) and unknown keys are ignored; a bad value is an error.
pub fn parse_query(raw: Option<&str>) -> Result<OverviewQuery, String> {
    let pairs: Vec<(String, String)> = match raw {
        Some(raw) => serde_urlencoded::from_str(raw).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, v)| !v.trim().is_empty() && KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect();
    let text = serde_urlencoded::to_string(&kept).map_err(|e| e.to_string())?;
    let mut q: OverviewQuery = serde_urlencoded::from_str(&text).map_err(|e| e.to_string())?;
    q.uf = q.uf.map(|u| u.to_ascii_uppercase());
    Ok(q)
}

/// The query string of a filter (`?state=failing&sort=name`), without the
/// language (the cookie keeps it); empty for the default view.
pub fn query_string(q: &OverviewQuery) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(s) = q.state {
        pairs.push(("state", s.as_str().into()));
    }
    if let Some(u) = &q.uf {
        pairs.push(("uf", u.clone()));
    }
    if let Some(text) = &q.q {
        pairs.push(("q", text.clone()));
    }
    if let Some(s) = q.sort {
        pairs.push(("sort", sort_name(s).into()));
    }
    if q.desc {
        pairs.push(("desc", "true".into()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    format!(
        "?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    )
}

fn sort_name(s: SortKey) -> &'static str {
    match s {
        SortKey::State => "state",
        SortKey::Uf => "uf",
        SortKey::Name => "name",
        SortKey::LastSuccess => "last_success",
        SortKey::Rows => "rows",
        SortKey::CertExpiry => "cert_expiry",
    }
}

/// `GET /`.
pub async fn page(
    State(state): State<HttpState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let chrome = viewer.chrome(Nav::Overview);
    let lang = viewer.lang;
    let query = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => {
            let body = html! {
                h1 { (lang.t(T::BadQuery)) }
                p.error { (e) }
                p { a href="/" { (lang.t(T::Back)) } }
            };
            let page = layout::page(&chrome, lang.t(T::BadQuery), body);
            return Ok(viewer.respond(StatusCode::BAD_REQUEST, page));
        }
    };
    let overview = read::overview(&state.web_pool, &query).await?;
    let body = render(&overview, &query, lang, Utc::now());
    let page = layout::page(&chrome, lang.t(T::OverviewTitle), body);
    Ok(viewer.respond(StatusCode::OK, page))
}

/// The page's body.
pub fn render(ov: &Overview, q: &OverviewQuery, lang: Lang, now: DateTime<Utc>) -> Markup {
    html! {
        h1 { (lang.t(T::OverviewTitle)) }
        (chips(ov, q, lang))
        (filters(q, lang))
        p.count {
            strong #shown data-total=(ov.rows.len()) { (lang.number(ov.rows.len() as i64)) }
            " " (lang.t(T::Of)) " "
            span #total { (lang.number(ov.total as i64)) }
            " " (lang.t(T::MunicipalitiesWord)) " " (lang.t(T::Shown))
            @if let Some(t) = ov.evaluated_at {
                " · " (lang.t(T::EvaluatedAt)) " " (lang.time(t))
            }
        }
        (table(ov, q, lang, now))
    }
}

fn chips(ov: &Overview, q: &OverviewQuery, lang: Lang) -> Markup {
    let with_state = |state: Option<Overall>| {
        let q = OverviewQuery { state, ..q.clone() };
        format!("/{}", query_string(&q))
    };
    html! {
        nav.chips aria-label=(lang.t(T::FilterState)) {
            a.chip.all href=(with_state(None)) aria-current=[q.state.is_none().then_some("true")]
                data-state="all" data-count=(ov.total) {
                span { (lang.t(T::All)) } b { (lang.number(ov.total as i64)) }
            }
            @for c in &ov.counts {
                a class={ "chip s-" (c.state.as_str()) } href=(with_state(Some(c.state)))
                    aria-current=[(q.state == Some(c.state)).then_some("true")]
                    data-state=(c.state.as_str()) data-count=(c.count) {
                    span { (lang.state(c.state)) } b { (lang.number(c.count as i64)) }
                }
            }
        }
    }
}

fn filters(q: &OverviewQuery, lang: Lang) -> Markup {
    html! {
        form.filters method="get" action="/" role="search" {
            label {
                span { (lang.t(T::FilterState)) }
                select name="state" {
                    option value="" { (lang.t(T::All)) }
                    @for s in STATES {
                        option value=(s.as_str()) selected[q.state == Some(s)] { (lang.state(s)) }
                    }
                }
            }
            label {
                span { (lang.t(T::FilterUf)) }
                select name="uf" {
                    option value="" { (lang.t(T::All)) }
                    @for uf in UFS {
                        option value=(uf) selected[q.uf.as_deref() == Some(uf)] { (uf) }
                    }
                }
            }
            label.grow {
                span { (lang.t(T::FilterQ)) }
                input type="search" name="q" value=[q.q.as_deref()] data-filter="municipalities"
                    autocomplete="off" maxlength="100";
            }
            @if let Some(s) = q.sort {
                input type="hidden" name="sort" value=(sort_name(s));
            }
            @if q.desc {
                input type="hidden" name="desc" value="true";
            }
            button type="submit" { (lang.t(T::FilterSubmit)) }
            a.clear href="/" { (lang.t(T::FilterClear)) }
        }
    }
}

/// A column header that sorts by `key` (again: the other direction).
fn sort_header(q: &OverviewQuery, key: SortKey, label: &str) -> Markup {
    let current = q.sort.unwrap_or_default() == key;
    let next = OverviewQuery {
        sort: Some(key),
        desc: current && !q.desc,
        ..q.clone()
    };
    let sort = match (current, q.desc) {
        (false, _) => None,
        (true, false) => Some("ascending"),
        (true, true) => Some("descending"),
    };
    html! {
        th aria-sort=[sort] {
            a href={ "/" (query_string(&next)) } {
                (label)
                @if let Some(s) = sort {
                    span.arrow { @if s == "ascending" { " ▲" } @else { " ▼" } }
                }
            }
        }
    }
}

fn table(ov: &Overview, q: &OverviewQuery, lang: Lang, now: DateTime<Utc>) -> Markup {
    let spark_label = lang.t(T::SparkLabel);
    let mut rows = String::with_capacity(ov.rows.len() * 900);
    for r in &ov.rows {
        row(r, lang, now, spark_label).render_to(&mut rows);
    }
    html! {
        // Not in a scrolling box: the sticky header follows the page.
        table.ov #municipalities {
                thead {
                    tr {
                        (sort_header(q, SortKey::State, lang.t(T::ColState)))
                        (sort_header(q, SortKey::Uf, lang.t(T::ColUf)))
                        (sort_header(q, SortKey::Name, lang.t(T::ColName)))
                        (sort_header(q, SortKey::LastSuccess, lang.t(T::ColLastSuccess)))
                        (sort_header(q, SortKey::Rows, lang.t(T::ColRows)))
                        th { (lang.t(T::ColTrend)) }
                        th { (lang.t(T::ColAgent)) }
                        th { (lang.t(T::ColPec)) }
                        (sort_header(q, SortKey::CertExpiry, lang.t(T::ColCert)))
                    }
                }
                tbody { (PreEscaped(rows)) }
        }
        @if ov.rows.is_empty() {
            p.empty { (lang.t(T::NoRows)) }
        }
    }
}

/// One municipality's row: state badge (first reason as its title), UF,
/// name, last success, rows, sparkline, versions, certificate expiry.
fn row(r: &MunicipalityRow, lang: Lang, now: DateTime<Utc>, spark_label: &str) -> Markup {
    let reason = r.reasons.first().map(|x| lang.reason(x));
    let agent = r.agent.as_ref();
    let dash = lang.t(T::Unknown);
    let cert = agent.and_then(|a| a.cert_not_after);
    let cert_class = cert.and_then(|c| {
        if c <= now {
            Some("expired")
        } else if (c - now).num_days() < CERT_WARN_DAYS {
            Some("soon")
        } else {
            None
        }
    });
    html! {
        tr {
            td { span class={ "b s-" (r.overall.as_str()) } title=[reason] { (lang.state(r.overall)) } }
            td { (r.uf) }
            td { a href={ "/m/" (r.ibge) } { (r.name) } }
            td {
                @if let Some(t) = r.last_success {
                    (lang.relative(t, now)) small { (lang.time(t)) }
                } @else {
                    (lang.t(T::Never))
                }
            }
            td.n { @if let Some(n) = r.last_rows { (lang.number(n)) } @else { (dash) } }
            td { (chart::sparkline(&r.daily_rows, spark_label)) }
            td { (agent.and_then(|a| a.version.as_deref()).unwrap_or(dash)) }
            td { (agent.and_then(|a| a.pec_version.as_deref()).unwrap_or(dash)) }
            td class=[cert_class] title=[cert.map(|c| lang.relative(c, now))] {
                @if let Some(c) = cert {
                    (lang.day(c.with_timezone(&chrono_tz::America::Sao_Paulo).date_naive()))
                } @else {
                    (dash)
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::health::view::{AgentSummary, StateCount};
    use crate::monitor::{Connectivity, DataState, HealthState, Reason};

    pub(crate) fn sample_row(ibge: &str, name: &str, overall: Overall) -> MunicipalityRow {
        let now: DateTime<Utc> = "2025-03-10T15:00:00Z".parse().unwrap();
        MunicipalityRow {
            ibge: ibge.into(),
            name: name.into(),
            uf: "SP",
            overall,
            connectivity: Connectivity::Online,
            data: DataState::OnTime,
            health: HealthState::Failing,
            since: now,
            evaluated_at: now,
            reasons: vec![Reason::PlanRefused {
                text: "<b>bad</b>".into(),
            }],
            last_success: Some(now - chrono::Duration::hours(3)),
            last_rows: Some(12_345),
            daily_rows: vec![1, 2, 3],
            agent: Some(AgentSummary {
                id: uuid::Uuid::nil(),
                version: Some("0.1.0".into()),
                pec_version: Some("5.3.21".into()),
                plan_version: Some(3),
                cert_not_after: Some(now + chrono::Duration::days(10)),
                last_heartbeat: Some(now),
            }),
            jobs: vec![],
        }
    }

    fn overview(rows: Vec<MunicipalityRow>) -> Overview {
        Overview {
            counts: STATES
                .iter()
                .map(|s| StateCount {
                    state: *s,
                    count: rows.iter().filter(|r| r.overall == *s).count() as u64,
                })
                .collect(),
            total: rows.len() as u64,
            rows,
            evaluated_at: None,
        }
    }

    fn now() -> DateTime<Utc> {
        "2025-03-10T18:00:00Z".parse().unwrap()
    }

    #[test]
    fn names_and_reasons_are_escaped() {
        let ov = overview(vec![sample_row(
            "3550308",
            "<script>alert(1)</script>",
            Overall::Failing,
        )]);
        let html = render(&ov, &OverviewQuery::default(), Lang::Pt, now()).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("plano recusado: &lt;b&gt;bad&lt;/b&gt;"));
        assert!(html.contains(r#"<a href="/m/3550308">"#));
    }

    #[test]
    fn portuguese_and_english() {
        let ov = overview(vec![sample_row("3550308", "São Paulo", Overall::Offline)]);
        let pt = render(&ov, &OverviewQuery::default(), Lang::Pt, now()).into_string();
        assert!(
            pt.contains("Municípios") && pt.contains("sem contato"),
            "{pt}"
        );
        assert!(
            pt.contains("há 6 h") && pt.contains("10/03/2025 09:00"),
            "{pt}"
        );
        assert!(pt.contains("12.345"));
        let en = render(&ov, &OverviewQuery::default(), Lang::En, now()).into_string();
        assert!(
            en.contains("Municipalities") && en.contains(">offline<"),
            "{en}"
        );
        assert!(
            en.contains("6 h ago") && en.contains("2025-03-10 09:00"),
            "{en}"
        );
        assert!(en.contains("12,345"));
    }

    #[test]
    fn counts_rows_and_the_expiring_certificate() {
        let ov = overview(vec![
            sample_row("3550308", "A", Overall::Ok),
            sample_row("3304557", "B", Overall::Failing),
        ]);
        let html = render(&ov, &OverviewQuery::default(), Lang::Pt, now()).into_string();
        assert_eq!(html.matches("<tr>").count(), 3, "header and two rows");
        assert!(
            html.contains(r#"data-state="failing" data-count="1""#),
            "{html}"
        );
        assert!(
            html.contains(r#"data-state="all" data-count="2""#),
            "{html}"
        );
        assert!(html.contains(r#"class="soon""#), "{html}");
        assert!(!html.contains("style="));
    }

    #[test]
    fn the_query_string_round_trips() {
        let q = OverviewQuery {
            state: Some(Overall::Failing),
            uf: Some("SP".into()),
            q: Some("são & co".into()),
            sort: Some(SortKey::LastSuccess),
            desc: true,
            lang: None,
        };
        let s = query_string(&q);
        assert_eq!(
            s,
            "?state=failing&uf=SP&q=s%C3%A3o+%26+co&sort=last_success&desc=true"
        );
        let back = parse_query(s.strip_prefix('?')).unwrap();
        assert_eq!(query_string(&back), s);
        assert_eq!(query_string(&OverviewQuery::default()), "");
    }

    #[test]
    fn an_untouched_form_and_unknown_keys_are_ignored() {
        let q = parse_query(Some("state=&uf=sp&q=&foo=1&lang=en")).unwrap();
        assert_eq!((q.state, q.uf.as_deref(), q.q), (None, Some("SP"), None));
        assert_eq!(q.lang.as_deref(), Some("en"));
        assert!(parse_query(Some("state=bogus")).is_err());
        assert!(parse_query(None).is_ok());
    }

    #[test]
    fn headers_sort_and_toggle() {
        let ov = overview(vec![sample_row("3550308", "A", Overall::Ok)]);
        let q = OverviewQuery {
            state: Some(Overall::Ok),
            sort: Some(SortKey::Name),
            ..Default::default()
        };
        let html = render(&ov, &q, Lang::En, now()).into_string();
        assert!(
            html.contains(r#"href="/?state=ok&amp;sort=name&amp;desc=true""#),
            "{html}"
        );
        assert!(html.contains(r#"href="/?state=ok&amp;sort=uf""#), "{html}");
        assert!(html.contains(r#"aria-sort="ascending""#));
    }

    #[test]
    fn all_municipalities_render_quickly() {
        let rows: Vec<MunicipalityRow> = (0..5570)
            .map(|i| sample_row(&format!("35{i:05}"), &format!("M {i}"), Overall::Ok))
            .collect();
        let ov = overview(rows);
        let start = std::time::Instant::now();
        let html = render(&ov, &OverviewQuery::default(), Lang::Pt, now()).into_string();
        let took = start.elapsed();
        assert_eq!(html.matches("<tr>").count(), 5571);
        // Generous, for a debug build on a shared machine; it is a few
        // tens of milliseconds in practice.
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        assert!(
            html.len() / 5570 < 1200,
            "{} bytes per row",
            html.len() / 5570
        );
    }
}
