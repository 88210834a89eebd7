//! Logging in and out, and who is calling: the session cookie becomes an
//! [`Authed`] (or a 401 in the one error shape); roles and the CSRF token
//! are checked by [`Authed::require`] and [`Authed::require_write`].

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::dashboard;
use super::error::ApiError;
use super::router::HttpState;
use crate::operators::session::{self, COOKIE as SESSION_COOKIE, Session};
use crate::operators::{OperatorError, Role};

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
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
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
}

/// `GET /login[?next=/page]`: the form, in the dashboard's language.
pub async fn login_page(headers: HeaderMap, uri: Uri) -> Response {
    let (lang, remember) = dashboard::lang_of(&headers, &uri);
    let next = dashboard::query_pairs(&uri)
        .into_iter()
        .find_map(|(k, v)| (k == "next").then_some(v));
    let next = dashboard::safe_next(next.as_deref());
    let page = dashboard::login::page(lang, &uri, next, false);
    dashboard::respond(StatusCode::OK, lang, remember, page)
}

/// `POST /login`: a new session at every login (the old cookie, if any, is
/// replaced), or 401 with the form again.
pub async fn login(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        session::logout(&state.web_pool, &old).await?;
    }
    let opened = session::login(
        &state.web_pool,
        &form.name,
        &form.password,
        state.session_lifetime,
        "http",
    )
    .await
    .map_err(|e| match e {
        OperatorError::Database(db) => ApiError::database(&db),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let next = dashboard::safe_next(form.next.as_deref());
    let Some(new) = opened else {
        tracing::warn!(name = %form.name.chars().take(63).collect::<String>(), "login refused");
        let (lang, _) = dashboard::lang_of(&headers, &uri);
        let page = dashboard::login::page(lang, &uri, next, true);
        return Ok(dashboard::respond(
            StatusCode::UNAUTHORIZED,
            lang,
            false,
            page,
        ));
    };
    let mut conn = state.web_pool.acquire().await?;
    crate::audit::record(
        &mut conn,
        crate::audit::Event {
            actor: crate::audit::web_operator(&new.session.name),
            action: crate::audit::action::OPERATOR_LOGIN,
            ..Default::default()
        },
    )
    .await?;
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        new.token,
        state.session_lifetime.as_secs()
    );
    Ok(([(SET_COOKIE, cookie)], Redirect::to(next)).into_response())
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
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}
