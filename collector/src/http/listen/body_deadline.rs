//! A request body that must arrive whole within a deadline.
//!
//! `tower_http`'s body timeout is reset by every frame, so a body sent a
//! byte every few seconds would never end; this one counts from the
//! request's start. Past the deadline the body fails, the handler's
//! extractor answers an error and the connection is not reused.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use futures::Stream;
use tokio::time::Sleep;

/// Replaces `req`'s body with one that fails after `within`.
pub fn bounded(req: Request, within: Duration) -> Request {
    req.map(|body| {
        Body::from_stream(Deadline {
            inner: body.into_data_stream(),
            timer: Box::pin(tokio::time::sleep(within)),
            done: false,
        })
    })
}

struct Deadline<S> {
    inner: S,
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received within http.body_read_timeout",
            )))));
        }
        let next = Pin::new(&mut this.inner).poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            this.done = true;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_fails_at_the_deadline() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let req = Request::new(Body::from_stream(rx));
        let req = bounded(req, Duration::from_secs(10));
        let feeder = tokio::spawn(async move {
            for _ in 0..100 {
                if tx.unbounded_send(Ok(Bytes::from_static(b"x"))).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let e = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("body_read_timeout"), "{e}");
        feeder.abort();
    }
}
