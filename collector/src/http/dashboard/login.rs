//! The login form, in the dashboard's frame and language. Its fields
//! (`name`, `password`, `next`, the page to return to, and `csrf`, the
//! login form's CSRF value) are posted to `POST /login`
//! ([`crate::http::auth::login`]).

use axum::http::Uri;
use maud::{Markup, html};

use super::i18n::{Lang, T};
use super::layout::{self, Chrome, Nav};

/// What the form says above nothing, or why the last attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    None,
    /// Wrong name or password.
    Wrong,
    /// Over the source's or the name's budget (429).
    Throttled,
    /// The hashing pool's queue was full (503).
    Busy,
}

/// The whole page, with `notice` under the form.
pub fn page(lang: Lang, uri: &Uri, next: &str, csrf: &str, notice: Notice) -> Markup {
    let chrome = Chrome {
        lang,
        session: None,
        active: Nav::None,
        uri,
    };
    let message = match notice {
        Notice::None => None,
        Notice::Wrong => Some(T::LoginWrong),
        Notice::Throttled => Some(T::LoginThrottled),
        Notice::Busy => Some(T::LoginBusy),
    };
    let body = html! {
        section.login {
            h1 { (lang.t(T::LoginTitle)) }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                input type="hidden" name="csrf" value=(csrf);
                label {
                    span { (lang.t(T::LoginName)) }
                    input name="name" autocomplete="username" required autofocus;
                }
                label {
                    span { (lang.t(T::LoginPassword)) }
                    input name="password" type="password" autocomplete="current-password" required;
                }
                button type="submit" { (lang.t(T::LoginSubmit)) }
            }
            @if let Some(m) = message {
                p.error role="alert" { (lang.t(m)) }
            }
        }
    };
    layout::page(&chrome, lang.t(T::LoginTitle), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_keeps_next_escaped() {
        let uri: Uri = "/login".parse().unwrap();
        let html = page(Lang::Pt, &uri, "/m/1?a=\"x\"", "c0ffee", Notice::Wrong).into_string();
        assert!(
            html.contains(r#"name="next" value="/m/1?a=&quot;x&quot;""#),
            "{html}"
        );
        assert!(html.contains("Nome ou senha incorretos."));
        assert!(html.contains(r#"name="name""#) && html.contains(r#"name="password""#));
        assert!(html.contains(r#"name="csrf" value="c0ffee""#), "{html}");
        let en = page(Lang::En, &uri, "/", "c0ffee", Notice::None).into_string();
        assert!(en.contains("Log in") && !en.contains("role=\"alert\""));
        let busy = page(Lang::En, &uri, "/", "c0ffee", Notice::Throttled).into_string();
        assert!(busy.contains("Too many attempts"), "{busy}");
    }
}
