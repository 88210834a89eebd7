//! The login form, in the dashboard's frame and language. Its fields
//! (`name`, `password`, `next`, the page to return to, and `csrf`, the
//! login form's CSRF value) are posted to `POST /login`
//! ([`crate::http::auth::login`]).

use axum::http::Uri;
use maud::{Markup, html};

use super::i18n::{Lang, T};
use super::layout::{self, Chrome, Nav};

/// The whole page; `wrong` adds the refusal message.
pub fn page(lang: Lang, uri: &Uri, next: &str, csrf: &str, wrong: bool) -> Markup {
    let chrome = Chrome {
        lang,
        session: None,
        active: Nav::None,
        uri,
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
            @if wrong {
                p.error role="alert" { (lang.t(T::LoginWrong)) }
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
        let html = page(Lang::Pt, &uri, "/m/1?a=\"x\"", "c0ffee", true).into_string();
        assert!(
            html.contains(r#"name="next" value="/m/1?a=&quot;x&quot;""#),
            "{html}"
        );
        assert!(html.contains("Nome ou senha incorretos."));
        assert!(html.contains(r#"name="name""#) && html.contains(r#"name="password""#));
        assert!(html.contains(r#"name="csrf" value="c0ffee""#), "{html}");
        let en = page(Lang::En, &uri, "/", "c0ffee", false).into_string();
        assert!(en.contains("Log in") && !en.contains("role=\"alert\""));
    }
}
