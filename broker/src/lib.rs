//! cleanfleet's embedded MQTT broker (MQTT 3.1.1, QoS 0 and 1), for the single-machine default.
//!
//! Why not rumqttd: it cannot say who may publish where (any logged-in client could publish
//! as any device), and under a backlog it skips queued messages it had acknowledged. This
//! broker is small and does only what cleanfleet needs, with the packet codec of rumqttc:
//!
//! - **Every client logs in** ([`Authenticator`]); there is no anonymous access. A client's
//!   rights are its [`Principal`]'s: a device publishes only under its own kind and id,
//!   subscribes to nothing and must use its id as the client id; only ingest subscribes.
//!   Live connections are checked again every `recheck_credentials_s`, so a revoked or
//!   rotated credential loses its connections too.
//! - **Nothing acknowledged is dropped**: a QoS 1 message is acknowledged once it is queued
//!   for every matching session, and the queues have byte budgets per session and in
//!   total. When one is full the publisher is not acknowledged and its connection is not
//!   read until there is room: the device keeps the message in its own buffer.
//! - **Bounded**: connections, packet size, queue bytes and in-flight windows have limits
//!   in [`BrokerConfig`]; a client that does not send CONNECT in time is closed.
//!
//! Not supported: QoS 2 (refused), retained messages (the flag is ignored), MQTT 5 (use
//! Mosquitto or EMQX, configured as in `deploy/`), TLS (put the broker behind one, or use
//! Mosquitto at scale).

mod connection;
mod metrics;
mod router;
mod tls;
pub mod topic;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cleanfleet_identity::Principal;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

pub use metrics::BrokerMetrics;
pub use router::QueueLimits;
use router::Router;
pub use tls::BrokerTls;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr} for MQTT (is another broker running?): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid broker setting: {0}")]
    Config(String),
    #[error("cannot register the broker's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub use cleanfleet_identity::{AuthUnavailable, Authenticator};

/// `[embedded_broker]` in the config file. Defaults are documented on each field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Default `127.0.0.1:1883`.
    pub listen: SocketAddr,
    /// Default 10100: a 10,000-device fleet plus ingest and tools. Further connections are
    /// closed at once.
    pub max_connections: usize,
    /// A larger PUBLISH closes the connection (counted, logged). Default 1048576 (1 MiB);
    /// ingest itself dead-letters anything above `[ingest] max_payload_bytes`.
    pub max_payload_bytes: usize,
    /// QoS 1 messages sent to one subscriber and not yet acknowledged. Ingest acknowledges a
    /// batch after its commit, so this bounds its commit batches. Default 1000.
    pub max_inflight: usize,
    /// Bytes (topic + payload) queued or in flight for one session before its publishers
    /// wait. Default 67108864 (64 MiB).
    pub session_queue_bytes: usize,
    /// The same over all sessions. Default 268435456 (256 MiB).
    pub total_queue_bytes: usize,
    /// While publishers wait for room, the broker reads a little of each one's later packets
    /// ahead (to answer its pings); this is the budget for that over all connections, at
    /// most 64 KiB of it per connection. When it is spent, waiting connections are not read
    /// at all. Default 33554432 (32 MiB).
    pub read_ahead_bytes: usize,
    /// A connection that has not sent CONNECT by then is closed. Default 10 s.
    pub connect_timeout_s: u64,
    /// Live connections' credentials are checked again this often. Default 60 s.
    pub recheck_credentials_s: u64,
    /// MQTT over TLS on a second listener, with optional client certificates; none by
    /// default.
    pub tls: Option<BrokerTls>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_connections: 10_100,
            max_payload_bytes: 1024 * 1024,
            max_inflight: 1000,
            session_queue_bytes: 64 * 1024 * 1024,
            total_queue_bytes: 256 * 1024 * 1024,
            read_ahead_bytes: 32 * 1024 * 1024,
            connect_timeout_s: 10,
            recheck_credentials_s: 60,
            tls: None,
        }
    }
}

impl BrokerConfig {
    pub fn check(&self) -> Result<(), BrokerError> {
        let positive = [
            ("max_connections", self.max_connections),
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_inflight", self.max_inflight),
            ("session_queue_bytes", self.session_queue_bytes),
            ("total_queue_bytes", self.total_queue_bytes),
            ("read_ahead_bytes", self.read_ahead_bytes),
            ("connect_timeout_s", self.connect_timeout_s as usize),
            ("recheck_credentials_s", self.recheck_credentials_s as usize),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(BrokerError::Config(format!("{name} must be above 0")));
        }
        if self.max_inflight > usize::from(u16::MAX) {
            return Err(BrokerError::Config(
                "max_inflight must be at most 65535".into(),
            ));
        }
        if self.session_queue_bytes < self.max_payload_bytes {
            return Err(BrokerError::Config(
                "session_queue_bytes must hold at least one message of max_payload_bytes".into(),
            ));
        }
        if self.total_queue_bytes < self.session_queue_bytes {
            return Err(BrokerError::Config(
                "total_queue_bytes must be at least session_queue_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// What every connection shares.
struct Shared {
    config: BrokerConfig,
    router: Mutex<Router>,
    /// Signalled whenever queue bytes are freed: waiting publishers try again.
    room: Notify,
    /// Bytes of packets read ahead from waiting publishers, over all connections.
    read_ahead: AtomicUsize,
    authenticator: Arc<dyn Authenticator>,
    metrics: BrokerMetrics,
    shutdown: CancellationToken,
    /// Cancelled when the broker takes no more messages (it is shutting down).
    intake_closed: CancellationToken,
}

/// A running broker; it stops when dropped or on [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the TLS listener is, when `[embedded_broker.tls]` has one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Closes every connection of `username` now (its credential was revoked or rotated in
    /// this process); new logins are checked against the store anyway.
    pub fn disconnect_user(&self, username: &str) -> usize {
        self.shared
            .router
            .lock()
            .expect("router lock poisoned")
            .kick_user(username)
    }

    /// Takes no more messages: a client that publishes is disconnected unacknowledged (it
    /// keeps the message and sends it again to the next broker). Subscribers still get what
    /// is queued; see [`BrokerHandle::drained`].
    pub fn close_intake(&self) {
        // Under the router's lock: no message is acknowledged after this returns.
        self.shared
            .router
            .lock()
            .expect("router lock poisoned")
            .close();
        self.shared.intake_closed.cancel();
    }

    /// Waits until every queued message was acknowledged by its subscriber, or `timeout`;
    /// returns the bytes still queued. With the intake closed, the broker can then stop
    /// without losing anything it acknowledged.
    pub async fn drained(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let queued = self.queued_bytes();
            if queued == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.queued_bytes();
            }
        }
    }

    /// Bytes of packets read ahead from publishers waiting for room: at most
    /// `read_ahead_bytes` plus one packet per waiting connection.
    pub fn read_ahead_bytes(&self) -> usize {
        self.shared.read_ahead.load(Ordering::Relaxed)
    }

    /// Bytes queued or in flight to subscribers.
    pub fn queued_bytes(&self) -> usize {
        self.shared
            .router
            .lock()
            .expect("router lock poisoned")
            .queued_bytes()
    }

    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// Binds `config.listen` (port 0: any free port) and serves MQTT on the current Tokio
/// runtime until the handle is dropped. Metrics go to `registry`.
pub async fn start(
    config: BrokerConfig,
    authenticator: Arc<dyn Authenticator>,
    registry: &prometheus::Registry,
) -> Result<BrokerHandle, BrokerError> {
    config.check()?;
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let (listener, local_addr) = bind(config.listen).await?;
    let tls_listener = match (&config.tls, acceptor) {
        (Some(tls), Some(acceptor)) => Some((bind(tls.listen).await?, acceptor)),
        _ => None,
    };
    let shared = Arc::new(Shared {
        router: Mutex::new(Router::new(QueueLimits {
            session_bytes: config.session_queue_bytes,
            total_bytes: config.total_queue_bytes,
            max_inflight: config.max_inflight,
        })),
        room: Notify::new(),
        read_ahead: AtomicUsize::new(0),
        authenticator,
        metrics: BrokerMetrics::register(registry)?,
        shutdown: CancellationToken::new(),
        intake_closed: CancellationToken::new(),
        config,
    });
    // One limit for both listeners.
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let tls_addr = tls_listener.as_ref().map(|((_, addr), _)| *addr);
    if let Some(((listener, tls_addr), acceptor)) = tls_listener {
        tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            slots.clone(),
            shared.clone(),
        ));
        tracing::info!(%tls_addr, "embedded MQTT broker listening for TLS");
    }
    tokio::spawn(accept_loop(listener, None, slots, shared.clone()));
    tracing::info!(%local_addr, "embedded MQTT broker listening");
    Ok(BrokerHandle {
        local_addr,
        tls_addr,
        shared,
    })
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BrokerError> {
    let listen = |source| BrokerError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slots: Arc<Semaphore>,
    shared: Arc<Shared>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.refused("connection_limit");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            shared.metrics.connections.inc();
            match tls {
                None => connection::serve(stream, peer, &shared).await,
                Some(acceptor) => serve_tls(acceptor, stream, peer, &shared).await,
            }
            shared.metrics.connections.dec();
            drop(slot);
        });
    }
}

/// A TLS handshake (within `connect_timeout_s`), then MQTT as on the plain listener, with a
/// verified client certificate's name as the proof of who the client is.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) {
    let timeout = Duration::from_secs(shared.config.connect_timeout_s);
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "MQTT TLS handshake failed");
            return shared.metrics.refused("tls");
        }
        Err(_) => return shared.metrics.refused("connect_timeout"),
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let proof = match certificate {
        None => connection::Proof::None,
        Some(certificate) => match tls::certificate_name(certificate) {
            Some(name) => connection::Proof::Certificate(name),
            None => {
                tracing::warn!(%peer, "MQTT client certificate without a common name refused");
                return shared.metrics.refused("tls");
            }
        },
    };
    let (reader, writer) = tokio::io::split(stream);
    connection::serve_io(Box::new(reader), Box::new(writer), peer, proof, shared).await
}
