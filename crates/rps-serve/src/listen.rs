//! The accept loop and the per-connection driver (HTTP/1.1 over hyper), in place of
//! `axum::serve`, which has no header, idle or connection limits: a header-read timeout, an idle
//! keep-alive timeout, a connection cap that sheds the oldest waiting connection, back-off
//! instead of a busy loop when descriptors run out, and a graceful drain on shutdown.

use crate::conns::{Admission, Closed, Conn, Registry, TrackedIo};
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rustix::io::Errno;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_service::Service as _;

/// hyper's own limits, above ours (module `routes`: 8 KiB URI, 100 headers, 32 KiB of headers,
/// answered as JSON): beyond them hyper answers 431 / 414 / 400 itself, with an empty body.
const HYPER_MAX_HEADERS: usize = 200;
const HYPER_MAX_BUF: usize = 64 * 1024;

/// Shed connections whose sockets may still be closing before the accept loop waits for them.
const CLOSING_SLACK: usize = 16;
/// Pause after an accept error other than a failed handshake (no busy loop).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one warning per this interval for repeated accept errors.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Rate-limits a repeated warning, counting what it left out.
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(suppressed since the last one)` when a warning may be logged now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Accept and serve connections until `shutdown` completes, then stop accepting, let
/// in-flight requests finish and close idle connections.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    router: Router,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .half_close(true)
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF);
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut throttle = Throttle {
        last: None,
        suppressed: 0,
    };
    tokio::pin!(shutdown);
    let socket_cap = registry.limits.max_connections + CLOSING_SLACK;
    loop {
        // Shed connections close when their task next runs: wait (briefly) for them before
        // taking another descriptor.
        for _ in 0..100 {
            if registry.sockets() <= socket_cap {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                accept_failed(&e, &state, &registry, &mut throttle).await;
                continue;
            }
        };
        match registry.admit() {
            Admission::Refused => {
                state.metrics.conn_closed(Closed::Refused);
                drop(stream);
            }
            Admission::Admitted { id, conn, shed } => {
                state
                    .metrics
                    .connections_open
                    .store(registry.open() as u64, Ordering::Relaxed);
                if shed {
                    state.metrics.conn_closed(Closed::Shed);
                }
                let driver = Driver {
                    state: state.clone(),
                    registry: registry.clone(),
                    router: router.clone(),
                    http: http.clone(),
                    id,
                    conn,
                };
                let (stop, done) = (stop_rx.clone(), done_tx.clone());
                tokio::spawn(async move {
                    driver.run(stream, stop).await;
                    drop(done);
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    // Every driver holds a sender: this ends when the last connection closed.
    let _ = done_rx.recv().await;
}

/// An accept error: out of descriptors → shed the oldest waiting connection and back off;
/// a handshake the client aborted → carry on; anything else → back off. Warnings are
/// throttled so a flood of errors does not flood the log.
async fn accept_failed(
    e: &std::io::Error,
    state: &AppState,
    registry: &Registry,
    throttle: &mut Throttle,
) {
    let errno = Errno::from_io_error(e);
    if matches!(
        errno,
        Some(Errno::CONNABORTED | Errno::CONNRESET | Errno::PROTO | Errno::PERM)
    ) {
        tracing::debug!(error = %e, "accept: handshake failed");
        return;
    }
    state.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
    let out_of_fds = matches!(
        errno,
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    );
    if out_of_fds && registry.shed_oldest() {
        state.metrics.conn_closed(Closed::Shed);
    }
    if let Some(suppressed) = throttle.ready() {
        tracing::warn!(
            error = %e,
            suppressed,
            open = registry.open(),
            "accept failed; backing off (lower --max-connections or raise the open-file limit)"
        );
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Serves one connection and enforces its header and idle deadlines.
struct Driver {
    state: Arc<AppState>,
    registry: Arc<Registry>,
    router: Router,
    http: Arc<http1::Builder>,
    id: u64,
    conn: Arc<Conn>,
}

impl Driver {
    async fn run(self, stream: tokio::net::TcpStream, stop: watch::Receiver<bool>) {
        // The socket is closed when `serve` returns; then the connection is forgotten.
        self.serve(stream, stop).await;
        self.registry.remove(self.id);
        self.state
            .metrics
            .connections_open
            .store(self.registry.open() as u64, Ordering::Relaxed);
    }

    async fn serve(&self, stream: tokio::net::TcpStream, mut stop: watch::Receiver<bool>) {
        let _ = stream.set_nodelay(true);
        let clock = self.registry.clock;
        let limits = self.registry.limits;
        let io = TokioIo::new(TrackedIo::new(stream, self.conn.clone(), clock));
        let (conn, router) = (self.conn.clone(), self.router.clone());
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = conn.begin_request(clock);
            let mut router = router.clone();
            async move {
                let resp = router.call(req.map(Body::new)).await;
                drop(guard);
                resp
            }
        });
        let connection = self.http.serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        loop {
            let deadline = self.conn.deadline(&limits);
            let sleep = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(clock.instant(at).into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = connection.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = sleep => {
                    if let Some((at, why)) = self.conn.deadline(&limits)
                        && at <= clock.now_ms()
                    {
                        tracing::debug!(reason = why.as_str(), "closing the connection");
                        self.state.metrics.conn_closed(why);
                        break;
                    }
                }
                () = self.conn.wake.notified() => {
                    if self.conn.is_shed() {
                        tracing::debug!("connection shed at the connection limit");
                        break;
                    }
                }
                _ = stop.changed(), if !draining => {
                    // Shutdown: finish the request in flight, then close; close at once when
                    // the connection is idle (no request, no partial head).
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                    if !self.conn.is_busy() && !self.conn.has_partial_head() {
                        break;
                    }
                }
            }
        }
    }
}
