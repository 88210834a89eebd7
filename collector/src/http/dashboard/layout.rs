//! The frame of every page: head (stylesheet, script, the session's CSRF
//! token for the script's writes), navigation, language switch, the
//! operator's name and logout, the time-zone note.

use axum::http::Uri;
use maud::{DOCTYPE, Markup, html};

use super::i18n::{Lang, T};
use crate::operators::session::Session;

/// The navigation entry of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Failures,
    /// A page that is not in the navigation (a municipality, the login).
    None,
}

/// Who is looking, in which language, at which page.
pub struct Chrome<'a> {
    pub lang: Lang,
    pub session: Option<&'a Session>,
    pub active: Nav,
    pub uri: &'a Uri,
}

/// The same page in the other language.
pub fn switch_href(uri: &Uri, to: Lang) -> String {
    let mut pairs: Vec<(String, String)> = super::query_pairs(uri)
        .into_iter()
        .filter(|(k, _)| k != "lang")
        .collect();
    pairs.push(("lang".into(), to.code().into()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{}?{query}", uri.path())
}

fn other(lang: Lang) -> Lang {
    match lang {
        Lang::Pt => Lang::En,
        Lang::En => Lang::Pt,
    }
}

/// A whole page around `body`.
pub fn page(chrome: &Chrome<'_>, title: &str, body: Markup) -> Markup {
    let lang = chrome.lang;
    let current = |nav: Nav| (chrome.active == nav).then_some("page");
    html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t(T::Brand)) }
                link rel="icon" href=(super::assets::ICON_PATH) type="image/svg+xml";
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                script src=(super::assets::JS_PATH) defer {}
                @if let Some(s) = chrome.session {
                    meta name="csrf-token" content=(s.csrf);
                }
            }
            body {
                header.top {
                    a.brand href="/" { (lang.t(T::Brand)) }
                    @if chrome.session.is_some() {
                        nav {
                            a href="/" aria-current=[current(Nav::Overview)] { (lang.t(T::NavOverview)) }
                            a href="/failures" aria-current=[current(Nav::Failures)] { (lang.t(T::NavFailures)) }
                        }
                    }
                    div.who {
                        a href=(switch_href(chrome.uri, other(lang))) hreflang=(other(lang).html_lang()) {
                            (lang.t(T::OtherLang))
                        }
                        @if let Some(s) = chrome.session {
                            span.user { (s.name) " (" (lang.role(s.role)) ")" }
                            button type="button" data-logout hidden { (lang.t(T::Logout)) }
                        }
                    }
                }
                main { (body) }
                footer { (lang.t(T::TimesNote)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_keeps_the_query() {
        let uri: Uri = "/?state=failing&lang=en&q=s%C3%A3o".parse().unwrap();
        assert_eq!(
            switch_href(&uri, Lang::Pt),
            "/?state=failing&q=s%C3%A3o&lang=pt"
        );
        let uri: Uri = "/failures".parse().unwrap();
        assert_eq!(switch_href(&uri, Lang::En), "/failures?lang=en");
    }
}
