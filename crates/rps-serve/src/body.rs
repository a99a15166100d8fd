//! The request body with a deadline (`--body-timeout`): a client that announces more bytes than
//! it sends gets 408 `body_timeout`, a client error, instead of holding the request until the
//! server's own timeout answers 503.

use axum::BoxError;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// How far the reading of one request body got (shared with the handlers and the timeout
/// middleware through the request's extensions).
#[derive(Debug, Default)]
pub struct BodyWatch {
    polled: AtomicBool,
    done: AtomicBool,
    timed_out: AtomicBool,
    received: AtomicU64,
}

impl BodyWatch {
    /// The body is being read and has not ended: the client is still sending.
    pub fn is_reading(&self) -> bool {
        self.polled.load(Ordering::Acquire) && !self.done.load(Ordering::Acquire)
    }

    /// The body deadline passed before the body ended.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }
}

/// Reading the body took longer than `--body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (--body-timeout)")]
pub struct BodyTimeout(pub Duration);

/// A body that fails with [`BodyTimeout`] once its deadline passes.
pub struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    watch: Arc<BodyWatch>,
}

impl DeadlineBody {
    /// Wrap `inner`; the deadline runs from now.
    pub fn new(inner: Body, timeout: Duration, watch: Arc<BodyWatch>) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            watch,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.watch.timed_out() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
        }
        this.watch.polled.store(true, Ordering::Release);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.watch
                        .received
                        .fetch_add(data.len() as u64, Ordering::AcqRel);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.watch.done.store(true, Ordering::Release);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.watch.done.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.watch.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
