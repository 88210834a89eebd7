//! Logging in and out, and who is calling: the session cookie becomes an
//! [`Authed`] (or a 401 in the one error shape); roles and the CSRF token
//! are checked by [`Authed::require`] and [`Authed::require_write`].
//!
//! A login is, in order: the body within 1 KiB (the router's limit, 413),
//! the source's and the name's budgets ([`LoginGuard::admit`], 429 with
//! `Retry-After`), the login form's own CSRF pair (a `__Host-` cookie set
//! by `GET /login` echoed in the form's `csrf` field, 403), then the
//! password on the bounded hashing pool (503 when its queue is full).
//! Failed logins are audited with the name made printable.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::dashboard;
use super::dashboard::login::Notice;
use super::error::ApiError;
use super::router::HttpState;
use crate::operators::guard::{LoginGuard, Refusal, printable_name};
use crate::operators::session::{self, COOKIE as SESSION_COOKIE, Session};
use crate::operators::{OperatorError, Role};

/// The login form's CSRF cookie (a random value the form echoes): a
/// cross-site page can neither read it nor, with `__Host-`, set it.
pub const LOGIN_CSRF_COOKIE: &str = "__Host-transmissor_login";

/// How long a login form stays usable.
const LOGIN_CSRF_SECONDS: u64 = 3600;

/// The caller's session.
pub struct Authed(pub Session);

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

impl FromRequestParts<HttpState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        // Only a token of the shape this collector issues reaches the
        // database (a flood of made-up cookies costs no query).
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Err(ApiError::unauthenticated());
        };
        match session::lookup(&state.web_pool, &token, state.session_idle).await? {
            Some(s) => Ok(Self(s)),
            None => Err(ApiError::unauthenticated()),
        }
    }
}

impl Authed {
    /// Refuses a caller whose role does not include `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.0.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {needed} role; {} is {}",
                self.0.name, self.0.role
            )))
        }
    }

    /// For writes: the role, and the session's CSRF token echoed in the
    /// `X-CSRF-Token` header (a cross-site form cannot set it).
    pub fn require_write(&self, needed: Role, headers: &HeaderMap) -> Result<(), ApiError> {
        self.require(needed)?;
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if session::same_token(sent, &self.0.csrf) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "missing or wrong CSRF token (send the session's token in X-CSRF-Token)",
            ))
        }
    }

    /// The audit log's actor for this operator.
    pub fn actor(&self) -> String {
        crate::audit::web_operator(&self.0.name)
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    /// The page to return to (a same-site path; anything else means `/`).
    #[serde(default)]
    next: Option<String>,
    /// The value of the login form's CSRF cookie.
    #[serde(default)]
    csrf: String,
}

/// A fresh login CSRF value, or the browser's own when it has a sound one
/// (several tabs on the login form all work).
fn login_csrf(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, LOGIN_CSRF_COOKIE) {
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => (v, false),
        _ => (hex::encode(rand::random::<[u8; 32]>()), true),
    }
}

fn login_csrf_cookie(value: &str) -> String {
    format!(
        "{LOGIN_CSRF_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={LOGIN_CSRF_SECONDS}"
    )
}

/// `GET /login[?next=/page]`: the form, in the dashboard's language, with
/// its CSRF value (in the form and in a cookie).
pub async fn login_page(headers: HeaderMap, uri: Uri) -> Response {
    let (lang, remember) = dashboard::lang_of(&headers, &uri);
    let next = dashboard::query_pairs(&uri)
        .into_iter()
        .find_map(|(k, v)| (k == "next").then_some(v));
    let next = dashboard::safe_next(next.as_deref());
    let (csrf, fresh) = login_csrf(&headers);
    let page = dashboard::login::page(lang, &uri, next, &csrf, Notice::None);
    let mut r = dashboard::respond(StatusCode::OK, lang, remember, page);
    if let (true, Ok(v)) = (fresh, HeaderValue::from_str(&login_csrf_cookie(&csrf))) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

/// An answer that says when to try again: the form again for a browser
/// (it asks for HTML), the one JSON error shape otherwise.
fn retry_later(
    status: StatusCode,
    code: &'static str,
    message: &str,
    after: u64,
    (headers, uri, form): (&HeaderMap, &Uri, &LoginForm),
) -> Response {
    let html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut r = if html {
        let (lang, _) = dashboard::lang_of(headers, uri);
        let notice = if status == StatusCode::TOO_MANY_REQUESTS {
            Notice::Throttled
        } else {
            Notice::Busy
        };
        let next = dashboard::safe_next(form.next.as_deref());
        let (csrf, fresh) = login_csrf(headers);
        let page = dashboard::login::page(lang, uri, next, &csrf, notice);
        let mut r = dashboard::respond(status, lang, false, page);
        if let (true, Ok(v)) = (fresh, HeaderValue::from_str(&login_csrf_cookie(&csrf))) {
            r.headers_mut().append(SET_COOKIE, v);
        }
        r
    } else {
        ApiError::new(status, code, message).into_response()
    };
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(after.max(1)));
    r
}

/// `POST /login`: a new session at every login (the old cookie, if any, is
/// replaced), or 401 with the form again; 429 over a budget, 403 without
/// the form's CSRF value, 503 when the hashing pool is full.
pub async fn login(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let guard: &LoginGuard = &state.logins;
    if let Err(Refusal::Throttled { retry_after, .. }) = guard.admit(peer.ip(), &form.name) {
        return Ok(retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many logins from this address or for this name; try again later",
            retry_after.as_secs(),
            (&headers, &uri, &form),
        ));
    }
    let sent = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if sent.is_empty() || !session::same_token(&sent, &form.csrf) {
        return Err(ApiError::forbidden(
            "the login form's CSRF value is missing or wrong: load GET /login and post its form",
        ));
    }
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        session::logout(&state.web_pool, &old).await?;
    }
    let source = peer.ip().to_string();
    let opened = session::login(
        &state.web_pool,
        guard,
        &form.name,
        &form.password,
        state.session_lifetime,
        &source,
    )
    .await;
    let opened = match opened {
        Ok(o) => o,
        Err(OperatorError::Busy) => {
            return Ok(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "too many logins are being checked; try again in a moment",
                1,
                (&headers, &uri, &form),
            ));
        }
        Err(OperatorError::Database(db)) => return Err(ApiError::database(&db)),
        Err(other) => return Err(ApiError::bad_request(other.to_string())),
    };
    let next = dashboard::safe_next(form.next.as_deref());
    let Some(new) = opened else {
        guard.failed();
        let name = printable_name(&form.name);
        tracing::warn!(%name, %source, "login refused");
        let mut conn = state.web_pool.acquire().await?;
        crate::audit::record(
            &mut conn,
            crate::audit::Event {
                actor: crate::audit::ANONYMOUS_WEB.to_string(),
                action: crate::audit::action::OPERATOR_LOGIN_FAILED,
                source_addr: Some(source),
                detail: serde_json::json!({ "name": name }),
                ..Default::default()
            },
        )
        .await?;
        let (lang, _) = dashboard::lang_of(&headers, &uri);
        let page = dashboard::login::page(lang, &uri, next, &form.csrf, Notice::Wrong);
        return Ok(dashboard::respond(
            StatusCode::UNAUTHORIZED,
            lang,
            false,
            page,
        ));
    };
    guard.succeeded(&form.name);
    let mut conn = state.web_pool.acquire().await?;
    crate::audit::record(
        &mut conn,
        crate::audit::Event {
            actor: crate::audit::web_operator(&new.session.name),
            action: crate::audit::action::OPERATOR_LOGIN,
            source_addr: Some(source),
            ..Default::default()
        },
    )
    .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        new.token,
        state.session_lifetime.as_secs()
    );
    // The login form's CSRF value has served: a new form gets a new one.
    let spent =
        format!("{LOGIN_CSRF_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut r = Redirect::to(next).into_response();
    for c in [cookie, spent] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(SET_COOKIE, v);
        }
    }
    Ok(r)
}

/// `POST /logout`: ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authed.require_write(Role::Viewer, &headers)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        session::logout(&state.web_pool, &token).await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}
