//! The HTTP server loop: a bounded number of connections, header-read and request timeouts.
//!
//! axum's own `serve` keeps every accepted connection for as long as the client likes: 20,000
//! idle connections exhausted the process's file descriptors (the embedded broker's too), and
//! a client that sent its headers slowly held its connection for a minute. Here a connection
//! that has not sent its request headers within `header_read_timeout_s` is closed, a request
//! that takes longer than `request_timeout_s` is answered 503, and at `max_connections` a new
//! connection takes the place of the one idle longest (none idle: it is closed at once), so
//! an attacker's idle connections cannot lock a dispatcher out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::ApiError;

/// `[api]` connection limits. Defaults are documented on each field.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Open HTTP connections at most; a new one then replaces the one idle longest.
    /// Default 1024.
    pub max_connections: usize,
    /// A connection must send a request's headers within this (the first request, and each
    /// next one on a kept-alive connection). Default 10 s.
    pub header_read_timeout_s: u64,
    /// A request (its body read and its answer made) taking longer is answered 503.
    /// Default 120 s.
    pub request_timeout_s: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_read_timeout_s: 10,
            request_timeout_s: 120,
        }
    }
}

impl ConnectionLimits {
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_s", self.header_read_timeout_s),
            ("request_timeout_s", self.request_timeout_s),
        ] {
            if value == 0 {
                return Err(format!("[api] {name} must be above 0"));
            }
        }
        Ok(())
    }
}

struct ServerMetrics {
    connections: IntGauge,
    closed: IntCounterVec,
}

impl ServerMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ServerMetrics {
            connections: IntGauge::new("cleanfleet_api_connections", "Open HTTP connections")?,
            closed: IntCounterVec::new(
                Opts::new(
                    "cleanfleet_api_connections_closed_total",
                    "HTTP connections the server closed to stay within its limits, by reason",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.closed.clone()))?;
        Ok(m)
    }
}

struct Slot {
    /// Requests in progress on the connection.
    busy: usize,
    idle_since: Instant,
    close: CancellationToken,
}

/// The open connections and whether each is doing anything.
#[derive(Default)]
struct Slots {
    open: Mutex<HashMap<u64, Slot>>,
    next: AtomicU64,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.open.lock().expect("slots lock poisoned")
    }

    /// A slot for a new connection: at the limit, the one idle longest is closed for it;
    /// `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, CancellationToken, bool)> {
        let mut open = self.lock();
        let mut evicted = false;
        if open.len() >= max {
            let idlest = open
                .iter()
                .filter(|(_, s)| s.busy == 0)
                .min_by_key(|(_, s)| s.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(slot) = open.remove(&idlest) {
                slot.close.cancel();
            }
            evicted = true;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        open.insert(
            id,
            Slot {
                busy: 0,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        Some((id, close, evicted))
    }

    fn begin(&self, id: u64) {
        if let Some(slot) = self.lock().get_mut(&id) {
            slot.busy += 1;
        }
    }

    fn end(&self, id: u64) {
        if let Some(slot) = self.lock().get_mut(&id) {
            slot.busy -= 1;
            if slot.busy == 0 {
                slot.idle_since = Instant::now();
            }
        }
    }

    fn release(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Marks a connection busy while a request is answered, its response body included (a
/// slow download is not idle).
struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Busy {
    fn new(slots: Arc<Slots>, id: u64) -> Self {
        slots.begin(id);
        Busy { slots, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slots.end(self.id);
    }
}

/// A response body that keeps its connection [`Busy`] until it is sent or dropped.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Gives the connection's slot back however its task ends.
struct Held {
    slots: Arc<Slots>,
    metrics: Arc<ServerMetrics>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.slots.release(self.id);
        self.metrics.connections.dec();
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then finishes the requests
/// in progress. Connection metrics go to `registry`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    registry: &Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    limits.check().map_err(std::io::Error::other)?;
    let metrics = Arc::new(ServerMetrics::register(registry).map_err(std::io::Error::other)?);
    let slots = Arc::new(Slots::default());
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks as we go.
        while connections.try_join_next().is_some() {}
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some((id, close, evicted)) = slots.admit(limits.max_connections) else {
            metrics.closed.with_label_values(&["all_busy"]).inc();
            continue; // dropping the stream closes it
        };
        if evicted {
            metrics.closed.with_label_values(&["idle_evicted"]).inc();
        }
        let _ = stream.set_nodelay(true);
        let (router, slots, metrics, shutdown) = (
            router.clone(),
            slots.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        connections.spawn(async move {
            metrics.connections.inc();
            let held = Held {
                slots: slots.clone(),
                metrics,
                id,
            };
            serve_connection(stream, router, limits, &slots, id, close, shutdown).await;
            drop(held);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: ConnectionLimits,
    slots: &Arc<Slots>,
    id: u64,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let request_timeout = Duration::from_secs(limits.request_timeout_s);
    let slots_for_requests = slots.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = Busy::new(slots_for_requests.clone(), id);
        let answer = router.clone().oneshot(request);
        async move {
            let response = match tokio::time::timeout(request_timeout, answer).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => ApiError::Unavailable(format!(
                    "the request took longer than {} s (request_timeout_s)",
                    request_timeout.as_secs()
                ))
                .into_response(),
            };
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
        }
    });
    // HTTP/1.1 only: its header timer runs from the connection's first moment (hyper-util's
    // version sniffing would let a client that sends nothing wait forever).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_s));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = close.cancelled() => {} // replaced by a newer connection: dropped, closed
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_longest_idle_connection_makes_room_and_busy_ones_stay() {
        let slots = Slots::default();
        let (a, close_a, _) = slots.admit(2).unwrap();
        let (b, close_b, _) = slots.admit(2).unwrap();
        slots.begin(a);
        // a is busy, b idle: b goes.
        let (_, _, evicted) = slots.admit(2).unwrap();
        assert!(evicted && close_b.is_cancelled() && !close_a.is_cancelled());
        let _ = b;
        // Now a and the new one; make both busy: nobody can be evicted.
        let ids: Vec<u64> = slots.lock().keys().copied().collect();
        for id in &ids {
            if *id != a {
                slots.begin(*id);
            }
        }
        assert!(slots.admit(2).is_none());
        slots.end(a);
        assert!(slots.admit(2).is_some());
        assert!(close_a.is_cancelled());
    }
}
