//! The dashboard: server-rendered HTML (maud, escaped by default), no
//! JavaScript build chain; a small vendored stylesheet and script only
//! enhance it (live filtering, the logout and revoke buttons). Every page
//! needs a session (viewer suffices); a browser without one is sent to
//! `/login?next=<page>` (303) instead of a JSON 401.
//!
//! | module                 | responsibility                                            |
//! |------------------------|-----------------------------------------------------------|
//! | [`layout`]             | the page frame: head, navigation, language switch, footer |
//! | [`overview`]           | `GET /`: counts per state, filters, the municipality table |
//! | [`municipality`]       | `GET /m/{ibge}`: axes, reasons, charts, history, errors, agent |
//! | [`failures`]           | `GET /failures`: recent failed transmissions everywhere   |
//! | [`login`]              | the login form (served by [`super::auth`])                |
//! | [`chart`]              | inline SVG sparkline, bars and line                       |
//! | [`i18n`]               | Portuguese and English: the one table of strings, times   |
//! | [`assets`]             | `/static/dashboard.{css,js}`, `/static/favicon.svg`       |
//!
//! Routes: `GET /` (query string: [`OverviewQuery`](crate::health::view::OverviewQuery)),
//! `GET /m/{ibge}`, `GET /failures`, `GET /static/{file}`; any page takes
//! `?lang=pt|en`, remembered in the `lang` cookie.

pub mod assets;
pub mod chart;
pub mod failures;
pub mod i18n;
pub mod layout;
pub mod login;
pub mod municipality;
pub mod overview;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::Markup;

use self::i18n::Lang;
use super::auth::Authed;
use super::router::HttpState;

/// The dashboard's routes (merged into the main router).
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/m/{ibge}", get(municipality::page))
        .route("/failures", get(failures::page))
        .route("/static/dashboard.css", get(assets::css))
        .route("/static/dashboard.js", get(assets::js))
        .route("/static/favicon.svg", get(assets::icon))
}

/// A logged-in person looking at a page, in their language. Without a
/// session the request is redirected to the login form (303), which comes
/// back here afterwards.
pub struct Viewer {
    pub authed: Authed,
    pub lang: Lang,
    /// `?lang=` was given: remember it in the cookie.
    pub remember_lang: bool,
    /// The page's path and query (for the language switch).
    pub uri: Uri,
}

impl FromRequestParts<HttpState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let (lang, remember_lang) = lang_of(&parts.headers, &parts.uri);
        match Authed::from_request_parts(parts, state).await {
            Ok(authed) => Ok(Self {
                authed,
                lang,
                remember_lang,
                uri: parts.uri.clone(),
            }),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(to_login(&parts.uri)),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// 303 to `/login?next=<path and query>`.
fn to_login(uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/login?{query}")) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The query string's pairs (empty when absent or malformed).
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// The page's language and whether the query string chose it.
pub(crate) fn lang_of(headers: &HeaderMap, uri: &Uri) -> (Lang, bool) {
    if let Some(lang) = query_pairs(uri)
        .iter()
        .find(|(k, _)| k == "lang")
        .and_then(|(_, v)| Lang::parse(v))
    {
        return (lang, true);
    }
    let cookie = super::auth::cookie(headers, i18n::COOKIE).and_then(|v| Lang::parse(&v));
    (cookie.unwrap_or_default(), false)
}

/// An HTML page with the dashboard's headers: no caching (it shows a
/// session's data), a strict content security policy (own scripts and
/// styles only), and the language cookie when `?lang=` chose it.
pub(crate) fn respond(status: StatusCode, lang: Lang, remember: bool, page: Markup) -> Response {
    let mut r = (status, Html(page.into_string())).into_response();
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if remember {
        let cookie = format!(
            "{}={}; Path=/; SameSite=Lax; Max-Age=31536000",
            i18n::COOKIE,
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(SET_COOKIE, v);
        }
    }
    r
}

impl Viewer {
    /// [`respond`] in this viewer's language.
    pub fn respond(&self, status: StatusCode, page: Markup) -> Response {
        respond(status, self.lang, self.remember_lang, page)
    }

    /// What the layout needs to know about the viewer.
    pub fn chrome(&self, active: layout::Nav) -> layout::Chrome<'_> {
        layout::Chrome {
            lang: self.lang,
            session: Some(&self.authed.0),
            active,
            uri: &self.uri,
        }
    }
}

/// Where to go after logging in: a same-site path (`/...`, not `//...` nor
/// `/\...`) of visible ASCII (it becomes a `Location` header), else `/`.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_same_site_path_only() {
        assert_eq!(safe_next(Some("/m/3550308?lang=en")), "/m/3550308?lang=en");
        assert_eq!(safe_next(Some("/")), "/");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "evil",
            "",
            "/\r\nSet-Cookie: x=y",
            "/é",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn unauthenticated_pages_go_to_login_with_next() {
        let uri: Uri = "/m/3550308?lang=en".parse().unwrap();
        let r = to_login(&uri);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[LOCATION],
            "/login?next=%2Fm%2F3550308%3Flang%3Den"
        );
    }

    #[test]
    fn lang_from_query_then_cookie() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/?lang=en".parse().unwrap();
        assert_eq!(lang_of(&headers, &uri), (Lang::En, true));
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(lang_of(&headers, &uri), (Lang::Pt, false));
        headers.insert("cookie", HeaderValue::from_static("a=b; lang=en"));
        assert_eq!(lang_of(&headers, &uri), (Lang::En, false));
        let uri: Uri = "/?lang=pt".parse().unwrap();
        assert_eq!(lang_of(&headers, &uri), (Lang::Pt, true));
    }
}
