//! People on the collector's HTTP side in tests: operators added with the
//! real CLI, logins over HTTPS, waiting for the listener.

use anyhow::Result;

use crate::http::request;
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

/// Logs in; returns the session cookie (`name=value`).
pub async fn login(
    http: std::net::SocketAddr,
    trust: &std::path::Path,
    name: &str,
    password: &str,
) -> Result<Option<String>> {
    let r = request(
        http,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("name={name}&password={password}"),
        Some(trust),
    )
    .await?;
    if r.status != 303 {
        assert_eq!(r.status, 401, "{r:?}");
        return Ok(None);
    }
    let set = r.header("set-cookie").unwrap_or_default().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    Ok(Some(set.split(';').next().unwrap_or_default().to_string()))
}
