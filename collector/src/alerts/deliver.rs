//! Posting to one webhook: a worker per webhook sends its queue in order,
//! retrying with exponential backoff and full jitter.
//!
//! Connection errors, timeouts, 408, 429 and 5xx are retried (a 429's or
//! 503's `Retry-After` in seconds is honoured, up to
//! [`MAX_RETRY_AFTER`]); any other answer is final. Redirects are not
//! followed. The URL is a secret: it is never logged, and errors are
//! stripped of it.
//!
//! HTTPS uses rustls with ring and the operating system's trust store
//! (`rustls-platform-verifier`; on Linux the CA bundle of the
//! `ca-certificates` package). Proxies from `HTTPS_PROXY`/`HTTP_PROXY`/
//! `NO_PROXY` are honoured.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::AlertStats;
use super::message::Outgoing;
use super::policy::Kind;

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// Bytes of a refusal's body kept for the log.
const MAX_REFUSAL_TEXT: usize = 200;

/// One webhook, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub name: String,
    pub url: Url,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Error)]
pub(crate) enum DeliveryError {
    #[error("the webhook answered {status}: {text}")]
    Refused { status: StatusCode, text: String },
    #[error("gave up after {attempts} attempts, the last: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("stopped before delivery")]
    Stopped,
}

/// The client shared by every webhook.
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("transmissor-collector/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends what arrives on `queue`, in order, until it closes; `abort` ends
/// it at once (what is left is counted as dropped).
pub(crate) async fn worker(
    hook: Webhook,
    client: reqwest::Client,
    mut queue: mpsc::Receiver<Outgoing>,
    stats: Arc<AlertStats>,
    abort: CancellationToken,
) {
    while let Some(msg) = queue.recv().await {
        let result = tokio::select! {
            biased;
            () = abort.cancelled() => Err(DeliveryError::Stopped),
            r = deliver(&hook, &client, &msg, &stats, &abort) => r,
        };
        match result {
            Ok(attempts) => {
                stats.count_sent(msg.kind);
                if msg.kind == Kind::Digest {
                    tracing::info!(webhook = %hook.name, count = msg.count, attempts, "alert digest sent");
                } else {
                    tracing::debug!(webhook = %hook.name, kind = msg.kind.as_str(), ibge = msg.ibge.as_deref(), attempts, "alert sent");
                }
            }
            Err(DeliveryError::Stopped) => {
                queue.close();
                let mut left = 1;
                while queue.try_recv().is_ok() {
                    left += 1;
                }
                stats.count_dropped(left);
                tracing::warn!(webhook = %hook.name, messages = left, "alerts stopped before these were delivered");
                return;
            }
            Err(error) => {
                stats.count_failed();
                tracing::error!(webhook = %hook.name, kind = msg.kind.as_str(), ibge = msg.ibge.as_deref(), count = msg.count, %error, "alert not delivered");
            }
        }
    }
}

/// Posts `msg` until it is accepted or attempts run out; the number of
/// attempts it took.
async fn deliver(
    hook: &Webhook,
    client: &reqwest::Client,
    msg: &Outgoing,
    stats: &AlertStats,
    abort: &CancellationToken,
) -> Result<u32, DeliveryError> {
    let attempts = hook.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let sent = client
            .post(hook.url.clone())
            .timeout(hook.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(msg.body.clone())
            .send()
            .await;
        let (last, retry_after) = match sent {
            Ok(resp) if resp.status().is_success() => return Ok(attempt),
            Ok(resp) => {
                let status = resp.status();
                if !retryable(status) {
                    let text = refusal_text(resp).await;
                    return Err(DeliveryError::Refused { status, text });
                }
                (format!("answered {status}"), retry_after(resp.headers()))
            }
            Err(e) => (describe(e), None),
        };
        if attempt >= attempts {
            return Err(DeliveryError::GaveUp { attempts, last });
        }
        let wait = retry_after.unwrap_or_else(|| backoff(hook, attempt));
        tracing::warn!(webhook = %hook.name, kind = msg.kind.as_str(), attempt, retry_in = ?wait, error = %last, "alert delivery failed; will retry");
        stats.count_retry();
        tokio::select! {
            () = abort.cancelled() => return Err(DeliveryError::Stopped),
            () = tokio::time::sleep(wait) => {}
        }
        attempt += 1;
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// `Retry-After` in seconds (the HTTP-date form is not used by webhook
/// services and falls back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Full jitter: a random wait below `retry_initial × 2^(attempt-1)`,
/// capped at `retry_max`.
fn backoff(hook: &Webhook, attempt: u32) -> Duration {
    let ceiling = hook
        .retry_initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(hook.retry_max);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// An error with its causes, without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of a refusal's body (Slack says why: `invalid_payload`,
/// `channel_is_archived`), on one line.
async fn refusal_text(resp: reqwest::Response) -> String {
    let bytes = resp.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REFUSAL_TEXT)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Webhook {
        Webhook {
            name: "t".into(),
            url: Url::parse("http://127.0.0.1:9/").unwrap(),
            timeout: Duration::from_secs(1),
            max_attempts: 6,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(8),
        }
    }

    #[test]
    fn alerts_backoff_is_capped_full_jitter() {
        let h = hook();
        for attempt in 1..=10u32 {
            let ceiling = Duration::from_secs(1 << (attempt - 1).min(3));
            for _ in 0..50 {
                assert!(backoff(&h, attempt) <= ceiling, "attempt {attempt}");
            }
        }
    }

    #[test]
    fn alerts_retry_after_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
        assert!(retryable(StatusCode::BAD_GATEWAY));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::NOT_FOUND));
        assert!(!retryable(StatusCode::BAD_REQUEST));
    }
}
