//! Message bodies: Slack's `text` + `attachments`, or a generic JSON
//! object. Portuguese first, English after (the central team is
//! Brazilian); times in Brasília time, plus UTC in the JSON.
//!
//! Generic JSON, one municipality (`kind`: `transition` or `reminder`;
//! `url` is null without `dashboard_url`; a reminder's `at` is when the
//! state began):
//!
//! ```json
//! {"kind": "transition", "ibge": "3550308", "name": "São Paulo", "uf": "SP",
//!  "from": "ok", "to": "failing", "at": "2026-12-01T13:00:00Z",
//!  "reason": "…", "reason_pt_br": "…", "url": "https://central.example/m/3550308"}
//! ```
//!
//! A digest (`municipalities`: the first [`DIGEST_LISTED`], as above;
//! `from`/`to`: the earliest and latest `at`):
//!
//! ```json
//! {"kind": "digest", "count": 300, "transitions": 300, "reminders": 0,
//!  "by_state": {"offline": 300}, "by_uf": {"SP": 120, "MG": 80},
//!  "municipalities": [ … ], "from": "…", "to": "…"}
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::config::Format;
use super::event::AlertEvent;
use super::policy::{Item, Kind, Out};
use crate::monitor::Overall;

/// Municipalities listed by name in a digest.
pub const DIGEST_LISTED: usize = 20;

/// A rendered message, ready to post.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub kind: Kind,
    pub body: Bytes,
    /// The municipality (not for digests), for logs.
    pub ibge: Option<String>,
    /// Municipality messages it stands for (1 unless a digest).
    pub count: usize,
}

pub(crate) fn render(out: &Out, format: Format, dashboard: Option<&str>) -> Outgoing {
    let (kind, ibge, count, body) = match out {
        Out::One(item) => {
            let body = match format {
                Format::Slack => slack_one(item, dashboard),
                Format::Json => json_one(item, dashboard),
            };
            (item.kind, Some(item.event.ibge.clone()), 1, body)
        }
        Out::Digest(items) => {
            let body = match format {
                Format::Slack => slack_digest(items, dashboard),
                Format::Json => json_digest(items, dashboard),
            };
            (Kind::Digest, None, items.len(), body)
        }
    };
    Outgoing {
        kind,
        body: Bytes::from(body.to_string()),
        ibge,
        count,
    }
}

fn color(state: Overall) -> &'static str {
    match state {
        Overall::Ok => "#2eb886",
        Overall::Degraded => "#e3b341",
        Overall::Late => "#f2994a",
        Overall::Failing => "#d92d20",
        Overall::Missing => "#8e44ad",
        Overall::Offline => "#444444",
        Overall::Inactive => "#888888",
        Overall::Never => "#bbbbbb",
    }
}

fn emoji(state: Overall) -> &'static str {
    match state {
        Overall::Ok => "✅",
        Overall::Degraded => "🟡",
        Overall::Late => "🟠",
        Overall::Failing => "🔴",
        Overall::Missing => "🟣",
        Overall::Offline => "⚫",
        Overall::Inactive | Overall::Never => "⚪",
    }
}

/// Slack reads `&`, `<` and `>` as markup (links, mentions): texts that
/// come from agents or the registry are escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn brasilia(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::America::Sao_Paulo)
        .format("%d/%m/%Y %H:%M (Brasília)")
        .to_string()
}

fn place(e: &AlertEvent) -> String {
    format!("{}/{} ({})", esc(&e.name), esc(&e.uf), esc(&e.ibge))
}

/// The one-line summary: `🔴 São Paulo/SP (3550308): com falha — failing (era: ok)`.
fn headline(item: &Item) -> String {
    let e = &item.event;
    let before = match e.from {
        Some(f) => format!("era: {}", f.pt_br()),
        None => "primeira avaliação".to_string(),
    };
    match (item.kind, e.to) {
        (Kind::Reminder, to) => format!(
            "{} Lembrete: {} continua {} desde {} — reminder: still {}",
            emoji(to),
            place(e),
            to.pt_br(),
            brasilia(e.at),
            to.as_str()
        ),
        (_, Overall::Ok) => format!(
            "{} {}: voltou ao normal — back to ok ({before})",
            emoji(Overall::Ok),
            place(e)
        ),
        (_, to) => format!(
            "{} {}: {} — {} ({before})",
            emoji(to),
            place(e),
            to.pt_br(),
            to.as_str()
        ),
    }
}

fn both(state: Overall) -> String {
    if state.pt_br() == state.as_str() {
        state.as_str().to_string()
    } else {
        format!("{} / {}", state.pt_br(), state.as_str())
    }
}

fn slack_one(item: &Item, dashboard: Option<&str>) -> Value {
    let e = &item.event;
    let text = headline(item);
    let mut fields = vec![json!({"title": "Estado / State", "value": both(e.to), "short": true})];
    fields.push(json!({
        "title": "Antes / Before",
        "value": e.from.map_or_else(|| "primeira avaliação / first evaluation".to_string(), both),
        "short": true,
    }));
    fields.push(json!({"title": "IBGE", "value": esc(&e.ibge), "short": true}));
    fields.push(json!({"title": "Desde / Since", "value": brasilia(e.at), "short": true}));
    let mut attachment = json!({
        "color": color(e.to),
        "fallback": text,
        "title": format!("{}/{} — {}", esc(&e.name), esc(&e.uf), e.to.pt_br()),
        "text": format!("{}\n_{}_", esc(&e.reason_pt_br), esc(&e.reason)),
        "fields": fields,
        "footer": "transmissor",
        "ts": e.at.timestamp(),
    });
    if let Some(url) = e.url(dashboard) {
        attachment["title_link"] = Value::String(url);
    }
    json!({"text": text, "attachments": [attachment]})
}

fn json_one(item: &Item, dashboard: Option<&str>) -> Value {
    let e = &item.event;
    json!({
        "kind": item.kind.as_str(),
        "ibge": e.ibge,
        "name": e.name,
        "uf": e.uf,
        "from": e.from,
        "to": e.to,
        "at": e.at,
        "reason": e.reason,
        "reason_pt_br": e.reason_pt_br,
        "url": e.url(dashboard),
    })
}

/// Counts and span of a digest.
struct Summary {
    transitions: usize,
    reminders: usize,
    /// Worst first.
    by_state: BTreeMap<std::cmp::Reverse<Overall>, usize>,
    by_uf: BTreeMap<String, usize>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

fn summarize(items: &[Item]) -> Summary {
    let mut s = Summary {
        transitions: 0,
        reminders: 0,
        by_state: BTreeMap::new(),
        by_uf: BTreeMap::new(),
        first: None,
        last: None,
    };
    for item in items {
        let e = &item.event;
        match item.kind {
            Kind::Reminder => s.reminders += 1,
            _ => s.transitions += 1,
        }
        *s.by_state.entry(std::cmp::Reverse(e.to)).or_default() += 1;
        *s.by_uf.entry(e.uf.clone()).or_default() += 1;
        s.first = Some(s.first.map_or(e.at, |f| f.min(e.at)));
        s.last = Some(s.last.map_or(e.at, |l| l.max(e.at)));
    }
    s
}

fn slack_digest(items: &[Item], dashboard: Option<&str>) -> Value {
    let s = summarize(items);
    let worst = s.by_state.keys().next().map_or(Overall::Ok, |r| r.0);
    let span = match (s.first, s.last) {
        (Some(f), Some(l)) if f != l => format!(" entre {} e {}", brasilia(f), brasilia(l)),
        (Some(f), _) => format!(" em {}", brasilia(f)),
        _ => String::new(),
    };
    let text = format!(
        "{} Resumo: {} alertas ({} mudanças de estado, {} lembretes){span} — digest: {} alerts ({} transitions, {} reminders)",
        emoji(worst),
        items.len(),
        s.transitions,
        s.reminders,
        items.len(),
        s.transitions,
        s.reminders
    );
    let states: Vec<String> = s
        .by_state
        .iter()
        .map(|(state, n)| format!("{} {}: {n}", emoji(state.0), both(state.0)))
        .collect();
    let mut ufs: Vec<(&String, &usize)> = s.by_uf.iter().collect();
    ufs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let ufs: Vec<String> = ufs
        .iter()
        .map(|(uf, n)| format!("{}: {n}", esc(uf)))
        .collect();
    let mut listed: Vec<String> = items
        .iter()
        .take(DIGEST_LISTED)
        .map(|item| {
            let e = &item.event;
            let name = match e.url(dashboard) {
                Some(url) => format!("<{url}|{}/{}>", esc(&e.name), esc(&e.uf)),
                None => format!("{}/{}", esc(&e.name), esc(&e.uf)),
            };
            let what = match (item.kind, e.from) {
                (Kind::Reminder, _) => format!("ainda {}", e.to.pt_br()),
                (_, Some(f)) => format!("{} (era: {})", e.to.pt_br(), f.pt_br()),
                (_, None) => e.to.pt_br().to_string(),
            };
            format!("• {name} ({}): {what}", esc(&e.ibge))
        })
        .collect();
    if items.len() > DIGEST_LISTED {
        let more = items.len() - DIGEST_LISTED;
        listed.push(format!("… e mais {more} / and {more} more"));
    }
    json!({
        "text": text,
        "attachments": [
            {
                "color": color(worst),
                "fallback": text,
                "title": "Por estado / By state",
                "text": states.join("\n"),
            },
            {
                "color": color(worst),
                "title": "Por UF / By UF",
                "text": ufs.join(" · "),
            },
            {
                "color": color(worst),
                "title": format!("Municípios (primeiros {DIGEST_LISTED}) / Municipalities (first {DIGEST_LISTED})"),
                "text": listed.join("\n"),
                "footer": "transmissor",
                "ts": s.last.map(|l| l.timestamp()),
            },
        ],
    })
}

fn json_digest(items: &[Item], dashboard: Option<&str>) -> Value {
    let s = summarize(items);
    let by_state: BTreeMap<&str, usize> = s
        .by_state
        .iter()
        .map(|(state, n)| (state.0.as_str(), *n))
        .collect();
    let municipalities: Vec<Value> = items
        .iter()
        .take(DIGEST_LISTED)
        .map(|item| json_one(item, dashboard))
        .collect();
    json!({
        "kind": Kind::Digest.as_str(),
        "count": items.len(),
        "transitions": s.transitions,
        "reminders": s.reminders,
        "by_state": by_state,
        "by_uf": s.by_uf,
        "municipalities": municipalities,
        "from": s.first,
        "to": s.last,
    })
}
