use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cleanfleet_model::{decode, Clock, Limits};
use cleanfleet_store::{IngestItem, Store, StoreError};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::{BrokerConfig, IngestConfig, IngestError, IngestMetrics};

/// Payloads larger than any we accept are still read off the wire (and dead-lettered) up to
/// this size, so that one oversize message cannot wedge the session by failing the connection
/// and being redelivered for ever. Brokers should refuse larger ones.
const HARD_MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;
/// How much of an oversize payload the dead-letter store keeps.
const OVERSIZE_KEPT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub messages_committed: u64,
    pub messages_acked: u64,
}

/// A publish and the connection it arrived on: an ack is only meaningful on that connection.
struct Received {
    publish: Publish,
    connection: u64,
}

/// Run ingestion until `shutdown` is cancelled, then drain: everything received is committed
/// and acked, then the client disconnects.
pub async fn run(
    config: IngestConfig,
    broker: BrokerConfig,
    store: Arc<dyn Store>,
    metrics: IngestMetrics,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<IngestSummary, IngestError> {
    let mut options = broker.mqtt_options(&config.client_id)?;
    options.set_manual_acks(true);
    options.set_max_packet_size(
        HARD_MAX_PACKET_BYTES.max(config.max_payload_bytes * 2),
        64 * 1024,
    );
    // At most one ack per packet id (u16) can wait in the request channel, so queueing an ack
    // never blocks, even while the event loop itself waits on a full queue. The channel does
    // not preallocate.
    let cap = usize::from(u16::MAX) + 64;
    let (client, eventloop) = AsyncClient::new(options, cap);
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let connection = Arc::new(AtomicU64::new(0));
    let batcher_done = CancellationToken::new();

    info!(url = %broker.url, client_id = %config.client_id, filter = %config.topic_filter, "ingest starting");
    let batcher = Batcher {
        client: client.clone(),
        connection: connection.clone(),
        store,
        metrics: metrics.clone(),
        clock,
        limits: config.limits(),
        batch_max_messages: config.batch_max_messages,
        shutdown: shutdown.clone(),
    };
    let batcher = tokio::spawn(batcher.run(rx, batcher_done.clone()));
    let pump = EventPump {
        eventloop,
        client,
        tx: Some(tx),
        connection,
        metrics,
        topic_filter: config.topic_filter,
    };
    pump.run(shutdown, batcher_done).await;
    batcher
        .await
        .unwrap_or_else(|e| panic!("ingest batch task panicked: {e}"))
}

struct EventPump {
    eventloop: EventLoop,
    client: AsyncClient,
    /// `None` once intake has stopped.
    tx: Option<mpsc::Sender<Received>>,
    connection: Arc<AtomicU64>,
    metrics: IngestMetrics,
    topic_filter: String,
}

impl EventPump {
    async fn run(mut self, shutdown: CancellationToken, batcher_done: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let event = tokio::select! {
                biased;
                _ = batcher_done.cancelled() => break,
                _ = shutdown.cancelled(), if self.tx.is_some() => {
                    info!("ingest: intake stopped, draining");
                    self.tx = None;
                    continue;
                }
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let Some(tx) = &self.tx else {
                        // Not acked: the broker redelivers it to the next session.
                        continue;
                    };
                    let received = Received {
                        publish,
                        connection: self.connection.load(Ordering::SeqCst),
                    };
                    if tx.send(received).await.is_err() {
                        self.tx = None;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    self.connection.fetch_add(1, Ordering::SeqCst);
                    self.metrics.broker_connected.set(1);
                    backoff = Duration::from_millis(100);
                    info!(
                        session_present = ack.session_present,
                        "ingest connected to broker"
                    );
                    if !ack.session_present {
                        // A new session has no subscription; a resumed one keeps it.
                        if let Err(e) = self
                            .client
                            .try_subscribe(self.topic_filter.clone(), QoS::AtLeastOnce)
                        {
                            error!(error = %e, "ingest could not queue its subscription");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    debug!(?ack, "subscribed");
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        error!(filter = %self.topic_filter, "the broker refused the subscription");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // Acks queued for the lost connection are void; its messages come again.
                    self.connection.fetch_add(1, Ordering::SeqCst);
                    self.metrics.broker_connected.set(0);
                    self.metrics.broker_reconnects.inc();
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "ingest lost the broker");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = batcher_done.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.disconnect().await;
    }

    /// Send the last acks and a clean DISCONNECT, waiting a bounded time.
    async fn disconnect(mut self) {
        if self.metrics.broker_connected.get() == 0 {
            return;
        }
        if self.client.try_disconnect().is_err() {
            return;
        }
        let flushed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if flushed.is_err() {
            warn!("ingest: the broker did not take the disconnect within 5 s");
        }
        self.metrics.broker_connected.set(0);
        info!("ingest disconnected");
    }
}

/// Validates, commits and then acknowledges batches of received messages.
struct Batcher {
    client: AsyncClient,
    connection: Arc<AtomicU64>,
    store: Arc<dyn Store>,
    metrics: IngestMetrics,
    clock: Arc<dyn Clock>,
    limits: Limits,
    batch_max_messages: usize,
    shutdown: CancellationToken,
}

impl Batcher {
    /// Runs until the queue is closed and empty; cancels `done` when it returns.
    async fn run(
        self,
        mut rx: mpsc::Receiver<Received>,
        done: CancellationToken,
    ) -> Result<IngestSummary, IngestError> {
        let _done = done.drop_guard();
        let metrics = &self.metrics;
        let mut summary = IngestSummary::default();
        let mut batch: Vec<Received> = Vec::with_capacity(self.batch_max_messages);
        // Group commit: take whatever has arrived (at least one message). While one batch
        // commits, the next accumulates, so batches grow with load without a linger timer,
        // which would only stall a broker that holds back deliveries until we ack.
        while rx.recv_many(&mut batch, self.batch_max_messages).await > 0 {
            metrics.queue_depth.set(rx.len() as i64);
            let started = Instant::now();
            let items: Vec<IngestItem> = batch
                .iter()
                .map(|r| classify(&r.publish, self.clock.now(), &self.limits))
                .collect();
            let span = tracing::debug_span!("commit", messages = items.len());
            commit(&*self.store, &items, metrics, &self.shutdown)
                .instrument(span)
                .await?;
            metrics
                .commit_duration
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(batch.len() as f64);
            count_outcomes(&items, metrics);
            summary.messages_committed += batch.len() as u64;
            let connection = self.connection.load(Ordering::SeqCst);
            for received in batch.drain(..) {
                if received.connection != connection {
                    continue;
                }
                // Cannot block for long: the request channel has room for every packet id.
                if self.client.ack(&received.publish).await.is_err() {
                    break;
                }
                summary.messages_acked += 1;
            }
        }
        info!(
            committed = summary.messages_committed,
            acked = summary.messages_acked,
            "ingest drained"
        );
        Ok(summary)
    }
}

/// Commit one batch, retrying on failure: its messages stay unacked until it succeeds.
async fn commit(
    store: &dyn Store,
    items: &[IngestItem],
    metrics: &IngestMetrics,
    shutdown: &CancellationToken,
) -> Result<(), IngestError> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.write_batch(items.to_vec()).await {
            Ok(report) => {
                metrics.records.inc_by(report.records_inserted);
                metrics.fixes.inc_by(report.fixes_inserted);
                metrics.duplicate_records.inc_by(report.duplicate_records);
                return Ok(());
            }
            Err(StoreError::Closed) => return Err(IngestError::StoreClosed),
            Err(e) if shutdown.is_cancelled() => return Err(IngestError::StoreAtShutdown(e)),
            Err(e) => {
                metrics.store_errors.inc();
                error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "batch commit failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn count_outcomes(items: &[IngestItem], metrics: &IngestMetrics) {
    for item in items {
        match item {
            IngestItem::Accepted { message, .. } => metrics
                .accepted_messages
                .with_label_values(&[message.body.stream().as_str()])
                .inc(),
            IngestItem::Rejected { reason, .. } => metrics
                .rejected_messages
                .with_label_values(&[reason.as_str()])
                .inc(),
        }
    }
}

/// Validate one publish into what the store keeps: its records, or a dead letter.
fn classify(publish: &Publish, received: jiff::Timestamp, limits: &Limits) -> IngestItem {
    match decode(&publish.topic, &publish.payload, received, limits) {
        Ok(message) => IngestItem::Accepted { message, received },
        Err(rejection) => {
            let kept = publish
                .payload
                .len()
                .min(OVERSIZE_KEPT_BYTES.max(limits.max_payload_bytes));
            let detail = if kept < publish.payload.len() {
                format!("{} (first {kept} bytes kept)", rejection.detail)
            } else {
                rejection.detail
            };
            IngestItem::Rejected {
                topic: publish.topic.clone(),
                payload: publish.payload[..kept].to_vec(),
                reason: rejection.reason,
                detail,
                received,
            }
        }
    }
}
