//! The HTTP server every service runs its API (and `/metrics`) on.
//!
//! `axum::serve` has no header-read, idle or request timeout and no
//! connection cap: a client sending one header line every few seconds kept a
//! connection (and its task) forever. This server accepts at most
//! `HTTP_MAX_CONNECTIONS` at once (further clients wait in the kernel's
//! backlog), watches each connection's traffic, cuts one whose request head
//! has not arrived within `HTTP_HEADER_READ_TIMEOUT_SECONDS`, closes one left
//! idle for `HTTP_IDLE_TIMEOUT_SECONDS`, and answers `503` with a problem
//! body for a request still running after `HTTP_REQUEST_TIMEOUT_SECONDS`
//! (which also bounds a slowly sent body: extractors read it inside the
//! handler).
//!
//! The verdict on a connection ([`Activity::verdict`]) is pure and unit
//! tested; the I/O around it is proven by the services' slow-client tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::config::{Reader, Source};
use crate::problem::Problem;

/// The server's limits (`HTTP_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`: from a request's first byte to its
    /// complete head.
    pub header_read_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_SECONDS`: from a complete head to the response.
    pub request_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECONDS`: a keep-alive connection without traffic.
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections served at once.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            // Longer than the 60 s idle timeout of common load balancers and
            // ingress controllers, so they close first and never reuse a
            // connection this side is closing.
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

impl ServerLimits {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let d = Self::default();
        let seconds = |r: &mut Reader<S>, var: &str, default: Duration| {
            let v = r.parse(var, default.as_secs());
            if v == 0 {
                r.invalid(var, "0", "must be at least 1 second");
                return default;
            }
            Duration::from_secs(v)
        };
        let header_read_timeout =
            seconds(r, "HTTP_HEADER_READ_TIMEOUT_SECONDS", d.header_read_timeout);
        let request_timeout = seconds(r, "HTTP_REQUEST_TIMEOUT_SECONDS", d.request_timeout);
        let idle_timeout = seconds(r, "HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout);
        let mut max_connections = r.parse("HTTP_MAX_CONNECTIONS", d.max_connections);
        if max_connections == 0 {
            r.invalid("HTTP_MAX_CONNECTIONS", "0", "must be at least 1");
            max_connections = d.max_connections;
        }
        Self {
            header_read_timeout,
            request_timeout,
            idle_timeout,
            max_connections,
        }
    }

    /// How often a connection's watchdog looks: a fraction of the shorter
    /// timeout, so a cut lands at most a quarter late.
    fn tick(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Milliseconds since the process's first connection; 0 means "never".
fn now_ms() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    EPOCH.elapsed().as_millis() as u64 + 1
}

/// What one connection has been doing, updated by its I/O and its requests.
#[derive(Debug, Default)]
pub struct Activity {
    /// Last byte read or written, or request finished.
    last: AtomicU64,
    /// First byte of a request head read while no request was running; 0
    /// when none is being read.
    head_since: AtomicU64,
    /// Requests handed to the service and not answered yet.
    in_flight: AtomicUsize,
}

/// What a connection's watchdog does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// No traffic and no request for the idle timeout: close gracefully.
    Idle,
    /// A request head has been arriving for longer than the header timeout:
    /// cut the connection.
    SlowHead,
}

impl Activity {
    fn new(now: u64) -> Self {
        Self {
            last: AtomicU64::new(now),
            // A fresh connection is waiting for its first head.
            head_since: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn read(&self, now: u64) {
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self
                .head_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self, now: u64) {
        self.last.store(now, Ordering::Relaxed);
    }

    fn request_started(&self, now: u64) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }

    fn request_finished(&self, now: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Pure: what the watchdog should do at `now` under `limits`. A running
    /// request is never cut here (the request timeout answers it).
    pub fn verdict(&self, now: u64, limits: &ServerLimits) -> Verdict {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Keep;
        }
        let head_since = self.head_since.load(Ordering::Relaxed);
        if head_since != 0
            && now.saturating_sub(head_since) > limits.header_read_timeout.as_millis() as u64
        {
            return Verdict::SlowHead;
        }
        let last = self.last.load(Ordering::Relaxed);
        if head_since == 0 && now.saturating_sub(last) > limits.idle_timeout.as_millis() as u64 {
            return Verdict::Idle;
        }
        Verdict::Keep
    }
}

/// A TCP stream that reports its traffic to an [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(now_ms());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote(now_ms());
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote(now_ms());
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request as running until dropped (answered or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished(now_ms());
    }
}

/// `503` for a request still running after `limit`.
async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            connection_cut("request_timeout");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
            )
            .detail(format!(
                "the request did not complete within {} s",
                limit.as_secs()
            ))
            .retry_after(Duration::from_secs(1))
            .into_response()
        }
    }
}

fn connection_cut(reason: &str) {
    crate::metrics::shared()
        .http_connections_cut
        .get_or_create(&crate::metrics::CutLabels {
            reason: reason.into(),
        })
        .inc();
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then
/// stops accepting, lets running requests finish (each is bounded by the
/// request timeout) and returns. Handlers see the peer as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        request_timeout(limits.request_timeout, req, next)
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let open = crate::metrics::shared().http_connections_open.clone();
    loop {
        // At the cap, stop accepting: clients queue in the kernel's backlog
        // instead of each costing a task and buffers here.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            // Out of file descriptors or an aborted handshake: the listener
            // itself is fine; pause briefly so EMFILE does not spin.
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        let open = open.clone();
        open.inc();
        connections.spawn(async move {
            connection(stream, peer, app, limits, stop).await;
            open.dec();
            drop(slot);
        });
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(now_ms()));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            activity.request_started(now_ms());
            let guard = InFlight(activity.clone());
            let call = app.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let response = call.await;
                drop(guard);
                response
            }
        })
    };
    // HTTP/1.1 only, as before: clients and ingresses reach the services
    // over it, and the watchdog's notion of "a request head" is HTTP/1's.
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut watchdog = tokio::time::interval(limits.tick());
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = watchdog.tick(), if !closing => match activity.verdict(now_ms(), &limits) {
                Verdict::Keep => {}
                Verdict::Idle => {
                    connection_cut("idle");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                Verdict::SlowHead => {
                    connection_cut("header_timeout");
                    tracing::info!(%peer, timeout_s = limits.header_read_timeout.as_secs(), "cut a connection whose request head did not arrive in time");
                    return;
                }
            },
            changed = stop.changed(), if !closing => {
                closing = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10,
        }
    }

    #[test]
    fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let a = Activity::new(1_000);
        assert_eq!(a.verdict(10_000, &limits()), Verdict::Keep);
        assert_eq!(a.verdict(11_001, &limits()), Verdict::SlowHead);
    }

    #[test]
    fn bytes_trickling_in_do_not_extend_the_header_timeout() {
        let a = Activity::new(1_000);
        for t in (2_000..11_000).step_by(1_000) {
            a.read(t);
        }
        assert_eq!(a.verdict(11_500, &limits()), Verdict::SlowHead);
    }

    #[test]
    fn a_running_request_is_never_cut_by_the_watchdog() {
        let a = Activity::new(1_000);
        a.read(1_010);
        a.request_started(1_020);
        assert_eq!(a.verdict(1_000_000, &limits()), Verdict::Keep);
    }

    #[test]
    fn an_answered_connection_goes_idle_then_closes_after_the_idle_timeout() {
        let a = Activity::new(1_000);
        a.read(1_010);
        a.request_started(1_020);
        a.wrote(1_030);
        a.request_finished(1_040);
        assert_eq!(a.verdict(60_000, &limits()), Verdict::Keep);
        assert_eq!(a.verdict(76_041, &limits()), Verdict::Idle);
    }

    #[test]
    fn the_next_request_on_a_kept_alive_connection_gets_its_own_header_timeout() {
        let a = Activity::new(1_000);
        a.request_started(1_020);
        a.request_finished(1_040);
        a.read(50_000);
        assert_eq!(a.verdict(59_000, &limits()), Verdict::Keep);
        assert_eq!(a.verdict(60_001, &limits()), Verdict::SlowHead);
    }

    #[test]
    fn limits_are_read_and_zero_is_refused_by_name() {
        let mut r = Reader::new([
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "3"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "0"),
        ]);
        let l = ServerLimits::read(&mut r);
        assert_eq!(l.header_read_timeout, Duration::from_secs(3));
        assert_eq!(l.request_timeout, Duration::from_secs(60));
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains("HTTP_MAX_CONNECTIONS"), "{err}");
        assert!(err.contains("HTTP_IDLE_TIMEOUT_SECONDS"), "{err}");
    }
}
