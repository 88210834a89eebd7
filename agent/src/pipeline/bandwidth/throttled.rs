//! A byte stream whose writes are paced by the [`LinkCap`] in force: the
//! TCP stream under the collector channel's TLS, so the cap counts every
//! byte on the wire (TLS records, HTTP/2 frames, gRPC messages). Reads
//! pass through untouched.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::LinkCap;
use super::bucket::TokenBucket;

pub struct Throttled<S> {
    inner: S,
    /// `None`: writes pass through (connections outside the data channel).
    cap: Option<Arc<LinkCap>>,
    bucket: TokenBucket,
    /// Set while waiting for tokens.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Throttled<S> {
    pub fn new(inner: S, cap: Option<Arc<LinkCap>>) -> Self {
        Self {
            inner,
            cap,
            bucket: TokenBucket::new(),
            sleep: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(cap) = this.cap.clone() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        let Some(rate) = cap.current().bytes_per_s() else {
            this.sleep = None;
            this.bucket.reset();
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
            cap.add_sent(n);
            return Poll::Ready(Ok(n));
        };
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            let now = Instant::now();
            match this.bucket.grant(now, rate, buf.len()) {
                Ok(n) => {
                    let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
                    this.bucket.consume(written);
                    cap.add_sent(written);
                    return Poll::Ready(Ok(written));
                }
                Err(wait) => this.sleep = Some(Box::pin(tokio::time::sleep_until(now + wait))),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Rate, UploadConfig};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cap(limit: Rate) -> Arc<LinkCap> {
        let upload = UploadConfig {
            default_limit: limit,
            windows: Vec::new(),
        };
        Arc::new(LinkCap::new(upload, chrono_tz::UTC))
    }

    /// Writes `total` bytes through a capped pipe on tokio's paused clock;
    /// returns the virtual time taken.
    async fn timed_write(limit: Rate, total: usize) -> (Duration, u64) {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let cap = cap(limit);
        let mut w = Throttled::new(a, Some(cap.clone()));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0usize;
            loop {
                let n = b.read(&mut buf).await.unwrap();
                if n == 0 {
                    break got;
                }
                got += n;
            }
        });
        let t0 = Instant::now();
        let data = vec![7u8; total];
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        let elapsed = t0.elapsed();
        assert_eq!(reader.await.unwrap(), total);
        (elapsed, cap.sent_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_paced_to_the_cap() {
        let rate = 250_000u64; // 2 Mbit/s
        let total = 1_000_000usize;
        let (elapsed, sent) = timed_write(Rate::BytesPerSec(rate), total).await;
        assert_eq!(sent, total as u64, "every byte counted");
        // One burst (16 KiB) may go at once; the rest at the rate.
        let floor = (total as f64 - 16_384.0) / rate as f64;
        let secs = elapsed.as_secs_f64();
        assert!(secs >= floor, "{secs}s < {floor}s");
        assert!(
            secs <= floor + 0.1,
            "{secs}s: the writer was held back too long"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_writes_do_not_wait() {
        let (elapsed, sent) = timed_write(Rate::Unlimited, 1_000_000).await;
        assert_eq!(sent, 1_000_000);
        assert_eq!(elapsed, Duration::ZERO);
    }
}
