//! People on the collector's HTTP side in tests: operators added with the
//! real CLI, logins over HTTPS, waiting for the listener.

use anyhow::{Context, Result};

use crate::stack::Stack;

/// Waits until the HTTP side accepts connections (it binds once the
/// collector is assembled, after the gRPC port the harness waits for).
pub async fn wait_http(addr: std::net::SocketAddr) -> Result<()> {
    let up = crate::pg::wait_until(std::time::Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    anyhow::ensure!(up, "the http side never listened on {addr}");
    Ok(())
}

/// `transmissor-collector operator add` with the password in the environment.
pub fn add_operator(stack: &Stack, name: &str, role: &str, password: &str) -> Result<()> {
    let out = std::process::Command::new(crate::procs::bin("transmissor-collector")?)
        .args(["operator", "add", "--config"])
        .arg(&stack.collector_config)
        .args([name, "--role", role])
        .env("TRANSMISSOR_OPERATOR_PASSWORD", password)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The login form's CSRF pair: `GET /login` sets a cookie and puts the
/// same value in the form's `csrf` field. Returns (`name=value` cookie,
/// value).
pub async fn login_form(
    http: std::net::SocketAddr,
    trust: &std::path::Path,
) -> Result<(String, String)> {
    let page = crate::http::get(http, "/login", Some(trust)).await?;
    login_pair(&page)
}

/// The CSRF pair of a `GET /login` answer.
pub fn login_pair(page: &crate::http::Response) -> Result<(String, String)> {
    anyhow::ensure!(page.status == 200, "GET /login: {page:?}");
    let cookie = page
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| v.strip_prefix("__Host-transmissor_login="))
        .and_then(|v| v.split(';').next())
        .context("GET /login set no login CSRF cookie")?
        .to_string();
    let field = page
        .body
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("the login form has no csrf field")?
        .to_string();
    anyhow::ensure!(field == cookie, "form field {field} != cookie {cookie}");
    Ok((format!("__Host-transmissor_login={cookie}"), field))
}

/// Posts the login form (after `GET /login` for its CSRF pair) with `name`
/// and `password` as given (URL-encoded here).
pub async fn post_login(
    http: std::net::SocketAddr,
    trust: &std::path::Path,
    name: &str,
    password: &str,
) -> Result<crate::http::Response> {
    post_login_from(None, http, trust, name, password).await
}

/// [`post_login`] from the source address `from`.
pub async fn post_login_from(
    from: Option<std::net::IpAddr>,
    http: std::net::SocketAddr,
    trust: &std::path::Path,
    name: &str,
    password: &str,
) -> Result<crate::http::Response> {
    let page = crate::http::request_from(from, http, "GET", "/login", &[], "", Some(trust)).await?;
    let (cookie, csrf) = login_pair(&page)?;
    let body = format!(
        "name={}&password={}&csrf={}",
        form_encode(name),
        form_encode(password),
        form_encode(&csrf)
    );
    crate::http::request_from(
        from,
        http,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
        ],
        &body,
        Some(trust),
    )
    .await
}

/// Logs in; returns the session cookie (`name=value`).
pub async fn login(
    http: std::net::SocketAddr,
    trust: &std::path::Path,
    name: &str,
    password: &str,
) -> Result<Option<String>> {
    let r = post_login(http, trust, name, password).await?;
    if r.status != 303 {
        assert_eq!(r.status, 401, "{r:?}");
        return Ok(None);
    }
    let set = r
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("__Host-transmissor_session="))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    Ok(Some(set.split(';').next().unwrap_or_default().to_string()))
}

/// `application/x-www-form-urlencoded` for one value: every byte but
/// letters, digits and `-._~` as `%XX`.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
