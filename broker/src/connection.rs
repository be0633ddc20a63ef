//! One client connection: log-in, then packets in and out until it ends. The session state
//! lives in the [`Router`](crate::router::Router); this is the I/O around it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{Error as CodecError, Protocol};
use rumqttc::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PubAck, Publish, QoS, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::router::{Refused, Router};
use crate::{topic, Principal, Shared};

/// Room for a PUBLISH's fixed header, topic and packet id beyond its payload.
const HEADER_ROOM_BYTES: usize = 2 + 65_535 + 2 + 5;
/// A CONNECT is small (client id, login, a will): nothing larger is read before log-in.
const MAX_CONNECT_BYTES: usize = 64 * 1024;
/// A client that asks for no keep-alive is still closed after this long without a packet.
const IDLE_WITHOUT_KEEP_ALIVE: Duration = Duration::from_secs(600);
/// While a publish waits for room, at most this much of the client's next packets is read
/// ahead (to find and answer its pings), and only while the broker's `read_ahead_bytes`
/// are not spent; then reading stops.
const READ_AHEAD_PER_CONNECTION_BYTES: usize = 64 * 1024;
/// Outgoing packets are written in pieces of about this size.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

enum ReadError {
    Closed,
    TooLarge(usize),
    Protocol(CodecError),
}

/// How a logged-in connection ended. Only a connection lost without DISCONNECT publishes
/// its will: not one the broker closed for a newer connection of the same client (its
/// "offline" would land after the new one's "online") or for a revoked credential.
#[derive(PartialEq, Eq)]
enum End {
    Graceful,
    Lost,
    Kicked,
}

/// A connection's two directions, over TCP or TLS.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How a connection proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    /// Nothing yet: the CONNECT's username and password decide.
    None,
    /// A client certificate the TLS layer verified against `client_ca_file`, naming this
    /// username (its subject's common name): no password needed.
    Certificate(String),
}

async fn read_packet(
    reader: &mut Reader,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Packet, ReadError> {
    // Cancel-safe: whatever was read stays in `buf` for the next call.
    loop {
        match Packet::read(buf, max_packet) {
            Ok(packet) => return Ok(packet),
            Err(CodecError::InsufficientBytes(more)) => buf.reserve(more),
            Err(CodecError::PayloadSizeLimitExceeded(size)) => {
                return Err(ReadError::TooLarge(size))
            }
            Err(e) => return Err(ReadError::Protocol(e)),
        }
        if reader.read_buf(buf).await.map_err(|_| ReadError::Closed)? == 0 {
            return Err(ReadError::Closed);
        }
    }
}

async fn write_packets(
    writer: &mut Writer,
    packets: impl IntoIterator<Item = Packet>,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    for packet in packets {
        packet
            .write(&mut out, usize::MAX)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if out.len() >= WRITE_CHUNK_BYTES {
            writer.write_all(&out).await?;
            out.clear();
        }
    }
    writer.write_all(&out).await
}

fn lock(shared: &Shared) -> MutexGuard<'_, Router> {
    shared.router.lock().expect("router lock poisoned")
}

/// Publishers waiting for room try again.
fn freed(shared: &Shared, bytes: usize) {
    if bytes > 0 {
        shared.room.notify_waiters();
        shared
            .metrics
            .queued_bytes
            .set(lock(shared).queued_bytes() as i64);
    }
}

pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let (reader, writer) = stream.into_split();
    serve_io(
        Box::new(reader),
        Box::new(writer),
        peer,
        Proof::None,
        shared,
    )
    .await
}

/// Serves one client on any transport, from its CONNECT on.
pub(crate) async fn serve_io(
    mut reader: Reader,
    mut writer: Writer,
    peer: SocketAddr,
    proof: Proof,
    shared: &Shared,
) {
    let mut buf = BytesMut::with_capacity(4096);
    let connect_timeout = Duration::from_secs(shared.config.connect_timeout_s);
    let first = tokio::time::timeout(
        connect_timeout,
        read_packet(&mut reader, &mut buf, MAX_CONNECT_BYTES),
    );
    let refuse = |code: ConnectReturnCode| Packet::ConnAck(ConnAck::new(code, false));
    let connect = match first.await {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Err(ReadError::Closed)) => return,
        Ok(Err(ReadError::Protocol(CodecError::InvalidProtocolLevel(_)))) => {
            // MQTT 3.1 or 5: say so, so that a client can fall back to 3.1.1.
            shared.metrics.refused("protocol_version");
            let _ = write_packets(
                &mut writer,
                [refuse(ConnectReturnCode::RefusedProtocolVersion)],
            )
            .await;
            return;
        }
        Ok(_) => return shared.metrics.refused("protocol"),
        Err(_) => return shared.metrics.refused("connect_timeout"),
    };
    let principal = match log_in(&connect, &proof, shared, peer).await {
        Ok(principal) => principal,
        Err((code, reason)) => {
            shared.metrics.refused(reason);
            let _ = write_packets(&mut writer, [refuse(code)]).await;
            return;
        }
    };
    let client_id = connect.client_id.clone();
    let attached = {
        let mut router = lock(shared);
        let attached = router.connect(&client_id, &principal.username, connect.clean_session);
        shared.metrics.sessions.set(router.sessions() as i64);
        attached
    };
    freed(shared, attached.freed);
    let accepted = Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        attached.session_present,
    ));
    let end = match write_packets(&mut writer, [accepted]).await {
        Ok(()) => {
            let max_packet = shared.config.max_payload_bytes + HEADER_ROOM_BYTES;
            let mut link = Link {
                shared,
                principal: &principal,
                login: match &proof {
                    Proof::Certificate(_) => Login::Certificate,
                    Proof::None => Login::Password(
                        connect
                            .login
                            .as_ref()
                            .map(|l| l.password.as_str())
                            .unwrap_or(""),
                    ),
                },
                client_id: &client_id,
                connection: attached.connection,
                kick: attached.kick,
                wake: attached.wake,
                reader,
                writer,
                buf,
                max_packet,
                held: VecDeque::new(),
                held_bytes: 0,
            };
            link.run(connect.keep_alive).await
        }
        Err(_) => End::Lost,
    };
    let released = {
        let mut router = lock(shared);
        let released = router.disconnected(&client_id, attached.connection);
        shared.metrics.sessions.set(router.sessions() as i64);
        released
    };
    freed(shared, released);
    if end == End::Lost {
        if let Some(will) = connect.last_will {
            publish_will(shared, will);
        }
    }
}

/// Who the CONNECT's login is, and whether it may connect as it asks.
async fn log_in(
    connect: &Connect,
    proof: &Proof,
    shared: &Shared,
    peer: SocketAddr,
) -> Result<Principal, (ConnectReturnCode, &'static str)> {
    if connect.protocol != Protocol::V4 {
        return Err((
            ConnectReturnCode::RefusedProtocolVersion,
            "protocol_version",
        ));
    }
    let checked = match (proof, &connect.login) {
        // The certificate names the device; a username, if sent, must be the same.
        (Proof::Certificate(name), login) => {
            if login.as_ref().is_some_and(|l| &l.username != name) {
                tracing::warn!(%peer, certificate = %name, "MQTT username differs from the client certificate's name");
                return Err((ConnectReturnCode::BadUserNamePassword, "bad_credentials"));
            }
            shared.authenticator.certified(name).await
        }
        (Proof::None, Some(login)) => {
            shared
                .authenticator
                .authenticate(&login.username, &login.password)
                .await
        }
        (Proof::None, None) => {
            tracing::warn!(%peer, client_id = %connect.client_id, "MQTT connect without credentials refused");
            return Err((ConnectReturnCode::BadUserNamePassword, "no_credentials"));
        }
    };
    let principal = match checked {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            tracing::warn!(%peer, client_id = %connect.client_id, "MQTT login refused: unknown, revoked or wrong secret");
            return Err((ConnectReturnCode::BadUserNamePassword, "bad_credentials"));
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "MQTT login could not be checked");
            return Err((ConnectReturnCode::ServiceUnavailable, "auth_unavailable"));
        }
    };
    // Certificates are for devices: a service (ingest) logs in with its secret, so that a
    // device CA cannot mint a reader of every device's data.
    if matches!(proof, Proof::Certificate(_))
        && !matches!(principal.role, cleanfleet_identity::Role::Device(_))
    {
        tracing::warn!(%peer, username = %principal.username, "MQTT client certificate of a service refused");
        return Err((ConnectReturnCode::NotAuthorized, "certificate_role"));
    }
    if !principal.may_use_client_id(&connect.client_id) {
        tracing::warn!(%peer, username = %principal.username, client_id = %connect.client_id, "MQTT client id refused: a device connects with its own id");
        return Err((ConnectReturnCode::BadClientId, "client_id"));
    }
    if let Some(will) = &connect.last_will {
        if will.qos == QoS::ExactlyOnce
            || !topic::is_valid_name(&will.topic)
            || !principal.may_publish(&will.topic)
        {
            tracing::warn!(%peer, username = %principal.username, topic = %will.topic, "MQTT will refused");
            return Err((ConnectReturnCode::NotAuthorized, "will_topic"));
        }
    }
    Ok(principal)
}

/// A will goes out like any message, but nobody waits for it: with no room (or the broker
/// closing) it is dropped; it was never acknowledged to anyone.
fn publish_will(shared: &Shared, will: LastWill) {
    let payload = Bytes::copy_from_slice(&will.message);
    let routed = lock(shared).route(&will.topic, &payload, will.qos);
    match routed {
        Ok(r) if r.sessions == 0 => shared.metrics.messages_unrouted.inc(),
        Ok(_) => shared.metrics.messages_received.inc(),
        Err(Refused::Full | Refused::Closed) => shared.metrics.qos0_dropped.inc(),
    }
}

/// What a live connection is checked again with.
enum Login<'a> {
    Password(&'a str),
    Certificate,
}

struct Link<'a> {
    shared: &'a Shared,
    principal: &'a Principal,
    login: Login<'a>,
    client_id: &'a str,
    connection: u64,
    kick: CancellationToken,
    wake: Arc<Notify>,
    reader: Reader,
    writer: Writer,
    buf: BytesMut,
    max_packet: usize,
    /// Packets read while a publish waited for room, handled in order once it is done.
    held: VecDeque<Packet>,
    held_bytes: usize,
}

/// A connection that ends with packets still held gives their bytes back to the budget.
impl Drop for Link<'_> {
    fn drop(&mut self) {
        let held = self.held_bytes;
        if held > 0 {
            self.release_held(held);
        }
    }
}

/// Why writing stopped.
enum WriteStop {
    Failed,
    Kicked,
    Shutdown,
}

impl Link<'_> {
    async fn run(&mut self, keep_alive_s: u16) -> End {
        let idle = match keep_alive_s {
            0 => IDLE_WITHOUT_KEEP_ALIVE,
            s => Duration::from_secs(u64::from(s)) * 3 / 2,
        };
        let mut deadline = Instant::now() + idle;
        let recheck_every = Duration::from_secs(self.shared.config.recheck_credentials_s);
        let mut recheck = tokio::time::interval_at(Instant::now() + recheck_every, recheck_every);
        let mut outgoing = Vec::new();
        loop {
            if let Some(packet) = self.held.pop_front() {
                self.release_held(packet.size());
                if let Some(end) = self.handle(packet).await {
                    return end;
                }
                deadline = Instant::now() + idle;
                continue;
            }
            outgoing.clear();
            let released =
                lock(self.shared).take_outgoing(self.client_id, self.connection, &mut outgoing);
            freed(self.shared, released);
            if !outgoing.is_empty() {
                let n = outgoing.len() as u64;
                if let Err(stop) = self.write(outgoing.drain(..).map(Packet::Publish)).await {
                    return self.stopped(stop);
                }
                self.shared.metrics.messages_delivered.inc_by(n);
            }
            tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => return End::Graceful,
                _ = self.kick.cancelled() => return self.closed("kicked", End::Kicked),
                packet = read_packet(&mut self.reader, &mut self.buf, self.max_packet) => {
                    let packet = match packet {
                        Ok(packet) => packet,
                        Err(e) => return self.read_failed(e),
                    };
                    if let Some(end) = self.handle(packet).await {
                        return end;
                    }
                    // Whatever else already arrived (a subscriber's burst of PUBACKs after
                    // its commit) is handled before writing, so that the freed window goes
                    // out in one write instead of one per acknowledgement.
                    if let Some(end) = self.handle_buffered().await {
                        return end;
                    }
                    deadline = Instant::now() + idle;
                }
                _ = self.wake.notified() => {}
                _ = recheck.tick() => {
                    let authenticator = &self.shared.authenticator;
                    let username = &self.principal.username;
                    let still = match self.login {
                        Login::Password(password) => {
                            authenticator.authenticate(username, password).await
                        }
                        Login::Certificate => authenticator.certified(username).await,
                    };
                    // A store that cannot answer for a moment is no reason to drop a device.
                    if matches!(still, Ok(ref p) if p.as_ref() != Some(self.principal)) {
                        tracing::warn!(username = %self.principal.username, "MQTT credential revoked or rotated: connection closed");
                        return self.closed("credential", End::Kicked);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return self.closed("keep_alive", End::Lost);
                }
            }
        }
    }

    /// Writes, giving up when the connection is kicked or the broker stops: a client that
    /// stops reading cannot pin its task.
    async fn write(&mut self, packets: impl IntoIterator<Item = Packet>) -> Result<(), WriteStop> {
        tokio::select! {
            written = write_packets(&mut self.writer, packets) => {
                written.map_err(|_| WriteStop::Failed)
            }
            _ = self.kick.cancelled() => Err(WriteStop::Kicked),
            _ = self.shared.shutdown.cancelled() => Err(WriteStop::Shutdown),
        }
    }

    fn stopped(&self, stop: WriteStop) -> End {
        match stop {
            WriteStop::Failed => End::Lost,
            WriteStop::Kicked => self.closed("kicked", End::Kicked),
            WriteStop::Shutdown => End::Graceful,
        }
    }

    /// Handles the complete packets already read, without waiting for more.
    async fn handle_buffered(&mut self) -> Option<End> {
        loop {
            let packet = match Packet::read(&mut self.buf, self.max_packet) {
                Ok(packet) => packet,
                Err(CodecError::InsufficientBytes(_)) => return None,
                Err(CodecError::PayloadSizeLimitExceeded(size)) => {
                    return Some(self.read_failed(ReadError::TooLarge(size)))
                }
                Err(e) => return Some(self.read_failed(ReadError::Protocol(e))),
            };
            if let Some(end) = self.handle(packet).await {
                return Some(end);
            }
        }
    }

    fn read_failed(&self, error: ReadError) -> End {
        match error {
            ReadError::Closed => End::Lost,
            ReadError::TooLarge(size) => {
                tracing::warn!(username = %self.principal.username, size, limit = self.shared.config.max_payload_bytes, "MQTT packet over the size limit: connection closed");
                self.refused_publish("oversize")
            }
            ReadError::Protocol(e) => {
                tracing::warn!(username = %self.principal.username, error = %e, "malformed MQTT packet: connection closed");
                self.closed("malformed", End::Lost)
            }
        }
    }

    fn closed(&self, reason: &str, end: End) -> End {
        self.shared
            .metrics
            .connections_closed
            .with_label_values(&[reason])
            .inc();
        end
    }

    fn refused_publish(&self, reason: &str) -> End {
        self.shared
            .metrics
            .publishes_refused
            .with_label_values(&[reason])
            .inc();
        self.closed("publish_refused", End::Lost)
    }

    fn settle(&self, pkid: u16) {
        let released = lock(self.shared).acked(self.client_id, self.connection, pkid);
        freed(self.shared, released);
    }

    /// Handles one packet; `Some` when the connection ends.
    async fn handle(&mut self, packet: Packet) -> Option<End> {
        let reply = match packet {
            Packet::Publish(publish) => return self.publish(publish).await,
            Packet::PubAck(ack) => {
                self.settle(ack.pkid);
                return None;
            }
            Packet::Subscribe(subscribe) => {
                let codes = subscribe
                    .filters
                    .iter()
                    .map(|f| self.subscribe(&f.path, f.qos))
                    .collect();
                Packet::SubAck(SubAck::new(subscribe.pkid, codes))
            }
            Packet::Unsubscribe(unsubscribe) => {
                let mut router = lock(self.shared);
                for filter in &unsubscribe.topics {
                    router.unsubscribe(self.client_id, filter);
                }
                Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))
            }
            Packet::PingReq => Packet::PingResp,
            Packet::Disconnect => return Some(End::Graceful),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                return Some(self.refused_publish("qos2"));
            }
            _ => return Some(self.closed("protocol", End::Lost)),
        };
        self.write([reply])
            .await
            .err()
            .map(|stop| self.stopped(stop))
    }

    fn subscribe(&self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        let valid = match topic::shared(filter) {
            Some((_, inner)) => topic::is_valid_filter(inner),
            None => topic::is_valid_filter(filter) && !filter.starts_with("$share/"),
        };
        if !valid || !self.principal.may_subscribe(filter) {
            tracing::warn!(username = %self.principal.username, %filter, "MQTT subscription refused");
            self.shared.metrics.subscriptions_refused.inc();
            return SubscribeReasonCode::Failure;
        }
        let granted = if qos == QoS::AtMostOnce {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        lock(self.shared).subscribe(self.client_id, filter, granted);
        SubscribeReasonCode::Success(granted)
    }

    /// Queues a message for its subscribers, waiting (unacknowledged) while a queue is full;
    /// then acknowledges it. While it waits the client's pings are answered, so that it does
    /// not take the wait for a dead broker; any other packet is held until the wait is over.
    async fn publish(&mut self, publish: Publish) -> Option<End> {
        let refuse = |reason: &str, why: &str| {
            tracing::warn!(username = %self.principal.username, topic = %publish.topic, "MQTT publish refused: {why}; connection closed");
            Some(self.refused_publish(reason))
        };
        if publish.qos == QoS::ExactlyOnce {
            return refuse("qos2", "QoS 2 is not supported");
        }
        if !topic::is_valid_name(&publish.topic) {
            return refuse("invalid_topic", "a topic name has no wildcards");
        }
        if publish.payload.len() > self.shared.config.max_payload_bytes {
            return refuse("oversize", "the payload is over max_payload_bytes");
        }
        if !self.principal.may_publish(&publish.topic) {
            return refuse(
                "not_owner",
                "a device publishes only under its own kind and id",
            );
        }
        // Its own copy: a slice of the read buffer would keep the whole buffer alive.
        let payload = Bytes::copy_from_slice(&publish.payload);
        let mut waited = false;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let routed = lock(self.shared).route(&publish.topic, &payload, publish.qos);
            match routed {
                Ok(routed) => {
                    let metrics = &self.shared.metrics;
                    metrics.messages_received.inc();
                    if routed.sessions == 0 && routed.dropped_qos0 == 0 {
                        metrics.messages_unrouted.inc();
                    }
                    metrics.qos0_dropped.inc_by(routed.dropped_qos0 as u64);
                    metrics
                        .queued_bytes
                        .set(lock(self.shared).queued_bytes() as i64);
                    break;
                }
                // Unacknowledged, the device keeps it for the broker that comes next.
                Err(Refused::Closed) => return Some(self.closed("shutting_down", End::Lost)),
                Err(Refused::Full) => {
                    if !waited {
                        self.shared.metrics.publisher_waits.inc();
                        waited = true;
                    }
                    if let Some(end) = self.wait_for_room(room).await {
                        return Some(end);
                    }
                }
            }
        }
        if publish.qos == QoS::AtLeastOnce {
            let ack = Packet::PubAck(PubAck::new(publish.pkid));
            if let Err(stop) = self.write([ack]).await {
                return Some(self.stopped(stop));
            }
        }
        None
    }

    fn may_read_ahead(&self) -> bool {
        self.held_bytes < READ_AHEAD_PER_CONNECTION_BYTES
            && self.shared.read_ahead.load(Ordering::Relaxed) < self.shared.config.read_ahead_bytes
    }

    fn hold(&mut self, packet: Packet) {
        let size = packet.size();
        self.held_bytes += size;
        self.held.push_back(packet);
        let total = self.shared.read_ahead.fetch_add(size, Ordering::Relaxed) + size;
        self.shared.metrics.read_ahead_bytes.set(total as i64);
    }

    fn release_held(&mut self, size: usize) {
        self.held_bytes -= size;
        let total = self.shared.read_ahead.fetch_sub(size, Ordering::Relaxed) - size;
        self.shared.metrics.read_ahead_bytes.set(total as i64);
    }

    /// Until `room` is signalled: answers pings, settles acknowledgements, holds other
    /// packets (while [`Link::may_read_ahead`]: the budget is checked before a packet is
    /// read, so each waiting connection may pass it by one packet). `Some` when the
    /// connection ends meanwhile.
    async fn wait_for_room(
        &mut self,
        mut room: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Option<End> {
        loop {
            tokio::select! {
                biased;
                _ = self.shared.intake_closed.cancelled() => {
                    return Some(self.closed("shutting_down", End::Lost));
                }
                _ = self.shared.shutdown.cancelled() => return Some(End::Graceful),
                _ = self.kick.cancelled() => return Some(self.closed("kicked", End::Kicked)),
                _ = &mut room => return None,
                packet = read_packet(&mut self.reader, &mut self.buf, self.max_packet),
                    if self.may_read_ahead() =>
                {
                    match packet {
                        Ok(Packet::PingReq) => {
                            if let Err(stop) = self.write([Packet::PingResp]).await {
                                return Some(self.stopped(stop));
                            }
                        }
                        Ok(Packet::PubAck(ack)) => self.settle(ack.pkid),
                        Ok(other) => self.hold(other),
                        Err(e) => return Some(self.read_failed(e)),
                    }
                }
            }
        }
    }
}
