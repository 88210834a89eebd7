//! `GET /failures`: the most recent failed or aborted transmissions across
//! the country, newest first, each with its municipality and error in full.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::Viewer;
use super::i18n::{Lang, T};
use super::layout::{self, Nav};
use super::municipality::outcome_class;
use crate::health::read;
use crate::health::view::TransmissionRow;
use crate::http::error::ApiError;
use crate::http::router::HttpState;

/// How many failures the page shows.
pub const LIMIT: i64 = 200;

/// `GET /failures`.
pub async fn page(State(state): State<HttpState>, viewer: Viewer) -> Result<Response, ApiError> {
    let rows = read::failures(&state.web_pool, LIMIT).await?;
    let lang = viewer.lang;
    let page = layout::page(
        &viewer.chrome(Nav::Failures),
        lang.t(T::FailuresTitle),
        render(&rows, lang),
    );
    Ok(viewer.respond(StatusCode::OK, page))
}

pub fn render(rows: &[TransmissionRow], lang: Lang) -> Markup {
    html! {
        h1 { (lang.t(T::FailuresTitle)) }
        @if rows.is_empty() {
            p.empty { (lang.t(T::NoFailures)) }
        }
        ol.failures #failures {
            @for t in rows {
                li.err {
                    p {
                        a href={ "/m/" (t.ibge) } { (t.name) } " · "
                        strong { (t.job) } " · "
                        span class={ "b s-" (outcome_class(&t.state)) } { (lang.outcome(&t.state)) }
                        " · " time { (lang.time(t.started_at)) }
                        @if let Some(s) = t.duration_seconds { " · " (lang.seconds(s)) }
                        " · #" (t.id)
                    }
                    pre { (t.error.as_deref().unwrap_or(lang.t(T::NoErrorText))) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_link_their_municipality_and_escape_errors() {
        let now = "2025-03-10T18:00:00Z".parse().unwrap();
        let row = TransmissionRow {
            id: 7,
            ibge: "3550308".into(),
            name: "São <Paulo>".into(),
            job: "cad".into(),
            target: "t".into(),
            mode: "append".into(),
            state: "aborted".into(),
            started_at: now,
            finished_at: None,
            duration_seconds: None,
            rows: 0,
            raw_bytes: 0,
            compressed_bytes: 0,
            plan_version: "1".into(),
            agent_version: "0.1.0".into(),
            error: Some("<img src=x onerror=alert(1)>".into()),
        };
        let html = render(&[row], Lang::Pt).into_string();
        assert!(
            html.contains(r#"<a href="/m/3550308">São &lt;Paulo&gt;</a>"#),
            "{html}"
        );
        assert!(html.contains("<pre>&lt;img src=x onerror=alert(1)&gt;</pre>"));
        assert!(html.contains("10/03/2025 15:00"));
        let en = render(&[], Lang::En).into_string();
        assert!(en.contains("No recent failure."));
    }
}
