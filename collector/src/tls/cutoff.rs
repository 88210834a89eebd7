//! Idle and age cut-offs for a connection's byte stream.
//!
//! [`Cutoff`] ends a connection that moved no byte (in either direction)
//! for its idle time, or that reached its maximum age: reads then return
//! end-of-file and writes fail, so the HTTP/2 or HTTP/1 server above closes
//! it. [`Guarded`] applies one to any stream. Progress costs one clock read;
//! the timer is re-armed only when it fires.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When a connection is cut: after `idle` without progress, or at `max_age`.
#[derive(Debug)]
pub struct Cutoff {
    idle: Option<Duration>,
    end_of_life: Option<Instant>,
    last_progress: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl Cutoff {
    /// No cut-off at all.
    pub fn none() -> Self {
        Self::new(None, None)
    }

    pub fn new(idle: Option<Duration>, max_age: Option<Duration>) -> Self {
        let now = Instant::now();
        let mut c = Self {
            idle,
            end_of_life: max_age.map(|a| now + a),
            last_progress: now,
            timer: None,
            expired: false,
        };
        c.timer = c.deadline().map(|d| Box::pin(tokio::time::sleep_until(d)));
        c
    }

    /// Cuts idle connections after `idle` from now on (a connection found to
    /// need it only after its handshake).
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = Some(idle);
        self.last_progress = Instant::now();
        if let Some(d) = self.deadline() {
            match &mut self.timer {
                Some(t) => t.as_mut().reset(d),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(d))),
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let idle = self.idle.map(|i| self.last_progress + i);
        match (idle, self.end_of_life) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes moved: the idle time starts again.
    pub fn progress(&mut self) {
        if self.idle.is_some() {
            self.last_progress = Instant::now();
        }
    }

    /// Whether the connection is to be cut; otherwise the timer is armed to
    /// wake `cx` when it may be.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        while timer.as_mut().poll(cx).is_ready() {
            match self
                .idle
                .map(|i| self.last_progress + i)
                .into_iter()
                .chain(self.end_of_life)
                .min()
            {
                Some(d) if d > Instant::now() => timer.as_mut().reset(d),
                _ => {
                    self.expired = true;
                    return true;
                }
            }
        }
        false
    }
}

/// A stream under a [`Cutoff`].
#[derive(Debug)]
pub struct Guarded<S> {
    pub inner: S,
    pub cutoff: Cutoff,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_read_cut(&mut this.cutoff, Pin::new(&mut this.inner), cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        poll_write_cut(&mut this.cutoff, Pin::new(&mut this.inner), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A read under `cutoff`: end-of-file once cut.
pub fn poll_read_cut<S: AsyncRead>(
    cutoff: &mut Cutoff,
    inner: Pin<&mut S>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if cutoff.poll_expired(cx) {
        return Poll::Ready(Ok(()));
    }
    let before = buf.filled().len();
    let r = inner.poll_read(cx, buf);
    if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
        cutoff.progress();
    }
    r
}

/// A write under `cutoff`: fails once cut.
pub fn poll_write_cut<S: AsyncWrite>(
    cutoff: &mut Cutoff,
    inner: Pin<&mut S>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    if cutoff.poll_expired(cx) {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle or too old",
        )));
    }
    let r = inner.poll_write(cx, buf);
    if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
        cutoff.progress();
    }
    r
}

/// A vectored write under `cutoff`: fails once cut.
pub fn poll_write_vectored_cut<S: AsyncWrite>(
    cutoff: &mut Cutoff,
    inner: Pin<&mut S>,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    if cutoff.poll_expired(cx) {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle or too old",
        )));
    }
    let r = inner.poll_write_vectored(cx, bufs);
    if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
        cutoff.progress();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_reads_end_of_file_and_a_busy_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut g = Guarded {
            inner: a,
            cutoff: Cutoff::new(Some(Duration::from_secs(10)), None),
        };
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(6)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        }
        // Nothing for 10 s: cut.
        assert_eq!(g.read(&mut buf).await.unwrap(), 0);
        assert!(g.write_all(b"y").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_maximum_age_cuts_a_busy_stream() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut g = Guarded {
            inner: a,
            cutoff: Cutoff::new(Some(Duration::from_secs(10)), Some(Duration::from_secs(20))),
        };
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(g.read(&mut buf).await.unwrap(), 0);
    }
}
