//! Connection bookkeeping: for every open client connection, whether it is busy with a request
//! or waiting (for its first request head, or idle between requests), since when, and — at the
//! connection limit — which waiting connection to shed so a new client gets in.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const NONE: u64 = u64::MAX;

/// Why the server closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No complete request head within `--header-timeout`.
    HeaderTimeout,
    /// Idle between requests longer than `--idle-timeout`.
    IdleTimeout,
    /// Shed at the connection limit (the oldest waiting connection) or for lack of descriptors.
    Shed,
    /// A new connection closed at once: at the limit with every connection busy.
    Refused,
}

impl Closed {
    pub const ALL: [Closed; 4] = [
        Closed::HeaderTimeout,
        Closed::IdleTimeout,
        Closed::Shed,
        Closed::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Shed => "shed",
            Closed::Refused => "refused",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The connection limits (`--header-timeout`, `--idle-timeout`, the effective connection cap).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Milliseconds since the registry was created.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn now_ms(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(NONE - 1)
    }
    pub fn instant(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// One client connection's state, shared by its driver task, its socket wrapper and the
/// request service.
#[derive(Debug)]
pub struct Conn {
    accepted: u64,
    inflight: AtomicU32,
    served: AtomicU64,
    idle_since: AtomicU64,
    head_started: AtomicU64,
    shed: AtomicBool,
    /// Woken when the deadline may have moved or the connection was shed.
    pub wake: Notify,
}

impl Conn {
    fn new(now: u64) -> Self {
        Self {
            accepted: now,
            inflight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(NONE),
            shed: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Bytes arrived: while no request is in flight they begin a request head.
    fn on_read(&self, now: u64) {
        if self.inflight.load(Ordering::Acquire) == 0
            && self
                .head_started
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// A complete request head arrived; the guard ends the request when dropped.
    pub fn begin_request(self: &Arc<Self>, clock: Clock) -> RequestGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
        self.wake.notify_one();
        RequestGuard {
            conn: self.clone(),
            clock,
        }
    }

    pub fn is_busy(&self) -> bool {
        self.inflight.load(Ordering::Acquire) > 0
    }

    /// Bytes of a request head have arrived (and no request is in flight).
    pub fn has_partial_head(&self) -> bool {
        !self.is_busy() && self.head_started.load(Ordering::Acquire) != NONE
    }

    pub fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Acquire)
    }

    /// When this connection's current wait began (`None` while busy): connect, for a
    /// connection that has not sent a request yet; else the first byte of the next head, or
    /// the end of the last request.
    fn waiting_since(&self) -> Option<u64> {
        if self.is_busy() {
            return None;
        }
        if self.served.load(Ordering::Acquire) == 0 {
            return Some(self.accepted);
        }
        match self.head_started.load(Ordering::Acquire) {
            NONE => Some(self.idle_since.load(Ordering::Acquire)),
            t => Some(t),
        }
    }

    /// When the connection must be closed unless something changes, and why.
    pub fn deadline(&self, limits: &Limits) -> Option<(u64, Closed)> {
        if self.is_busy() {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE / 2);
        if self.served.load(Ordering::Acquire) == 0 {
            return Some((
                self.accepted.saturating_add(ms(limits.header_timeout)),
                Closed::HeaderTimeout,
            ));
        }
        match self.head_started.load(Ordering::Acquire) {
            NONE => Some((
                self.idle_since
                    .load(Ordering::Acquire)
                    .saturating_add(ms(limits.idle_timeout)),
                Closed::IdleTimeout,
            )),
            t => Some((
                t.saturating_add(ms(limits.header_timeout)),
                Closed::HeaderTimeout,
            )),
        }
    }
}

/// Ends a request (response produced, or the request dropped) when dropped.
#[derive(Debug)]
pub struct RequestGuard {
    conn: Arc<Conn>,
    clock: Clock,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.conn;
        c.served.fetch_add(1, Ordering::AcqRel);
        c.idle_since.store(self.clock.now_ms(), Ordering::Release);
        c.inflight.fetch_sub(1, Ordering::AcqRel);
        c.wake.notify_one();
    }
}

/// Every open connection, by id.
#[derive(Debug)]
pub struct Registry {
    pub clock: Clock,
    pub limits: Limits,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Sockets not yet closed: the registered connections plus the shed ones whose task has
    /// not ended yet.
    sockets: AtomicUsize,
}

/// What [`Registry::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    /// Serve it; `shed` is true when an older waiting connection was shed to make room.
    Admitted {
        id: u64,
        conn: Arc<Conn>,
        shed: bool,
    },
    /// At the limit with every connection busy.
    Refused,
}

impl Registry {
    pub fn new(limits: Limits) -> Self {
        Self {
            clock: Clock(Instant::now()),
            limits,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            sockets: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Register a new connection, shedding the oldest waiting one at the limit.
    pub fn admit(&self) -> Admission {
        let now = self.clock.now_ms();
        let mut conns = self.lock();
        let mut shed = false;
        if conns.len() >= self.limits.max_connections {
            if Self::shed_oldest_locked(&mut conns) {
                shed = true;
            } else {
                return Admission::Refused;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(now));
        conns.insert(id, conn.clone());
        self.sockets.fetch_add(1, Ordering::AcqRel);
        Admission::Admitted { id, conn, shed }
    }

    /// Shed the connection that has waited longest for a request head (or idled longest);
    /// false when every connection is busy.
    pub fn shed_oldest(&self) -> bool {
        Self::shed_oldest_locked(&mut self.lock())
    }

    fn shed_oldest_locked(conns: &mut HashMap<u64, Arc<Conn>>) -> bool {
        let victim = conns
            .iter()
            .filter_map(|(id, c)| c.waiting_since().map(|t| (t, *id)))
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some(c) = conns.remove(&id) {
            c.shed.store(true, Ordering::Release);
            c.wake.notify_one();
        }
        true
    }

    /// Forget a connection: its driver ended and its socket is closed.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.sockets.fetch_sub(1, Ordering::AcqRel);
    }

    /// Client sockets still open (shed ones included until their task ends).
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Acquire)
    }
}

/// A client socket that tells its [`Conn`] when bytes arrive.
#[derive(Debug)]
pub struct TrackedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    clock: Clock,
}

impl TrackedIo {
    pub fn new(inner: TcpStream, conn: Arc<Conn>, clock: Clock) -> Self {
        Self { inner, conn, clock }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read(this.clock.now_ms());
        }
        r
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: max,
        }
    }

    #[test]
    fn at_the_limit_the_oldest_waiting_connection_is_shed() {
        let r = Registry::new(limits(2));
        let Admission::Admitted { conn: a, .. } = r.admit() else {
            panic!()
        };
        let Admission::Admitted { conn: b, .. } = r.admit() else {
            panic!()
        };
        // `a` is busy with a request: `b` goes.
        let guard = a.begin_request(r.clock);
        let Admission::Admitted { shed, .. } = r.admit() else {
            panic!()
        };
        assert!(shed);
        assert!(b.is_shed() && !a.is_shed());
        assert_eq!(r.open(), 2);
        drop(guard);
        assert!(!a.is_busy());
    }

    #[test]
    fn all_busy_refuses() {
        let r = Registry::new(limits(1));
        let Admission::Admitted { conn: a, .. } = r.admit() else {
            panic!()
        };
        let _g = a.begin_request(r.clock);
        assert!(matches!(r.admit(), Admission::Refused));
        assert!(!r.shed_oldest());
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let l = limits(8);
        let c = Arc::new(Conn::new(1000));
        assert_eq!(c.deadline(&l), Some((11_000, Closed::HeaderTimeout)));
        let g = c.begin_request(Clock(Instant::now()));
        assert_eq!(c.deadline(&l), None);
        drop(g);
        let (at, why) = c.deadline(&l).unwrap();
        assert_eq!(why, Closed::IdleTimeout);
        c.on_read(at - 59_000);
        assert_eq!(c.deadline(&l), Some((at - 49_000, Closed::HeaderTimeout)));
    }
}
