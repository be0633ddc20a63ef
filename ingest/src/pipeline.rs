use std::sync::Arc;
use std::time::Duration;

use cleanfleet_model::{decode, Clock, Limits, RejectReason};
use cleanfleet_store::{Delivery, IngestItem, IngestSink, StoreError};
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
/// Of an oversize payload the dead-letter store keeps the first bytes, enough to see what it
/// was: kept whole, 600 unique junk messages of 1 MB filled 150 MB of dead letters.
const OVERSIZE_KEPT_BYTES: usize = 4 * 1024;

/// Decoded batches waiting for the commit in progress, each of at most this share of
/// `batch_max_messages`: the decoder keeps taking what arrives and the next commit takes
/// them together, and what waits decoded is at most one commit's worth.
const DECODED_BATCHES: usize = 16;

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
    store: Arc<dyn IngestSink>,
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
    // never fails. The channel does not preallocate.
    let cap = usize::from(u16::MAX) + 64;
    let (client, eventloop) = AsyncClient::new(options, cap);
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    // Committed batches go back to the event-loop task, which alone acks them: it also runs
    // rumqttc's reconnect, so it knows for sure which connection an ack would go out on.
    let (committed_tx, committed_rx) = mpsc::unbounded_channel();

    info!(url = %broker.url, client_id = %config.client_id, filter = %config.topic_filter, "ingest starting");
    let (decoded_tx, decoded_rx) = mpsc::channel(DECODED_BATCHES);
    let batch_max_messages = config.batch_max_messages.max(1);
    let decoder = Decoder {
        metrics: metrics.clone(),
        clock,
        limits: config.limits(),
        delivery: Arc::new(Delivery::Mqtt {
            broker: broker.url.clone(),
            binds_logins: broker.binds_logins,
        }),
        decode_max_messages: batch_max_messages.div_ceil(DECODED_BATCHES),
    };
    let committer = Committer {
        store,
        metrics: metrics.clone(),
        batch_max_messages,
        shutdown: shutdown.clone(),
        committed: committed_tx,
    };
    let decoder = tokio::spawn(decoder.run(rx, decoded_tx));
    let committer = tokio::spawn(committer.run(decoded_rx));
    let pump = EventPump {
        eventloop,
        client,
        tx: Some(tx),
        connection: 0,
        metrics,
        topic_filter: config.topic_filter,
        acked: 0,
    };
    let acked = pump.run(shutdown, committed_rx).await;
    let mut summary = committer
        .await
        .unwrap_or_else(|e| panic!("ingest commit task panicked: {e}"))?;
    decoder
        .await
        .unwrap_or_else(|e| panic!("ingest decode task panicked: {e}"));
    summary.messages_acked = acked;
    info!(
        committed = summary.messages_committed,
        acked = summary.messages_acked,
        "ingest drained"
    );
    Ok(summary)
}

/// Drives the MQTT event loop: forwards publishes to the decoder, acks committed batches,
/// (re)subscribes, and reconnects with backoff.
struct EventPump {
    eventloop: EventLoop,
    client: AsyncClient,
    /// `None` once intake has stopped.
    tx: Option<mpsc::Sender<Received>>,
    /// Counts connections; a publish is acked only on the connection it arrived on.
    connection: u64,
    metrics: IngestMetrics,
    topic_filter: String,
    acked: u64,
}

impl EventPump {
    /// Returns the number of messages acked, once the committer has finished and the last acks
    /// and a DISCONNECT have gone out.
    async fn run(
        mut self,
        shutdown: CancellationToken,
        mut committed: mpsc::UnboundedReceiver<Vec<Received>>,
    ) -> u64 {
        let mut backoff = Duration::from_millis(100);
        loop {
            let event = tokio::select! {
                biased;
                batch = committed.recv() => match batch {
                    Some(batch) => {
                        self.ack(batch);
                        continue;
                    }
                    // The committer has finished: everything it committed is acked.
                    None => break,
                },
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
                        connection: self.connection,
                    };
                    if tx.send(received).await.is_err() {
                        self.tx = None;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    self.connection += 1;
                    backoff = Duration::from_millis(100);
                    if self.connection > 1 && !ack.session_present {
                        // The broker forgot the persistent session (restarted without
                        // persistence): what it queued for ingest while the link was down is
                        // gone from the broker's side.
                        self.metrics.broker_sessions_lost.inc();
                        warn!(
                            "the broker lost ingest's session on reconnect: messages it held for ingest meanwhile may be lost"
                        );
                    } else {
                        info!(
                            session_present = ack.session_present,
                            "ingest connected to broker"
                        );
                    }
                    // Also on a resumed session: if the link dropped before the broker took
                    // the first SUBSCRIBE, the session exists without the subscription.
                    // Subscribing again is harmless.
                    if let Err(e) = self
                        .client
                        .try_subscribe(self.topic_filter.clone(), QoS::AtLeastOnce)
                    {
                        error!(error = %e, "ingest could not queue its subscription");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    if refused {
                        // Not ready: connected, but nothing will arrive.
                        self.metrics.broker_connected.set(0);
                        error!(filter = %self.topic_filter, "the broker refused the subscription");
                    } else {
                        self.metrics.broker_connected.set(1);
                        debug!(filter = %self.topic_filter, "subscribed");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // rumqttc dropped the acks still queued for the lost connection; acks for
                    // its messages from now on would reach the next one: skip them, the
                    // broker redelivers those messages.
                    self.connection += 1;
                    self.metrics.broker_connected.set(0);
                    self.metrics.broker_reconnects.inc();
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "ingest lost the broker");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let acked = self.acked;
        self.disconnect().await;
        acked
    }

    fn ack(&mut self, batch: Vec<Received>) {
        for received in batch {
            if received.connection != self.connection {
                continue;
            }
            // Cannot fail for capacity: the request channel has room for every packet id.
            if self.client.try_ack(&received.publish).is_ok() {
                self.acked += 1;
            }
        }
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

/// Validates received messages into what the store keeps, while the batch before commits:
/// decoding and committing overlap.
struct Decoder {
    metrics: IngestMetrics,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// What every message's provenance is recorded from.
    delivery: Arc<Delivery>,
    decode_max_messages: usize,
}

/// Received messages and what the store keeps of each, in the same order.
struct Decoded {
    received: Vec<Received>,
    items: Vec<IngestItem>,
}

impl Decoder {
    /// Runs until the queue is closed and empty, or the committer has stopped.
    async fn run(self, mut rx: mpsc::Receiver<Received>, decoded: mpsc::Sender<Decoded>) {
        let mut batch: Vec<Received> = Vec::with_capacity(self.decode_max_messages);
        while rx.recv_many(&mut batch, self.decode_max_messages).await > 0 {
            self.metrics.queue_depth.set(rx.len() as i64);
            let items = batch
                .iter()
                .map(|r| classify(&r.publish, self.clock.now(), &self.limits, &self.delivery))
                .collect();
            let received =
                std::mem::replace(&mut batch, Vec::with_capacity(self.decode_max_messages));
            if decoded.send(Decoded { received, items }).await.is_err() {
                break;
            }
        }
    }
}

/// Commits decoded messages, then hands them back for acking.
struct Committer {
    store: Arc<dyn IngestSink>,
    metrics: IngestMetrics,
    batch_max_messages: usize,
    shutdown: CancellationToken,
    committed: mpsc::UnboundedSender<Vec<Received>>,
}

impl Committer {
    /// Runs until the decoder has finished and everything it decoded is committed.
    async fn run(self, mut decoded: mpsc::Receiver<Decoded>) -> Result<IngestSummary, IngestError> {
        let metrics = &self.metrics;
        let mut summary = IngestSummary::default();
        let mut carried: Option<Decoded> = None;
        // Group commit: whatever was decoded while the previous batch committed (at least
        // one message, at most `batch_max_messages`), so batches grow with load without a
        // linger timer, which would only stall a broker that holds back deliveries until we
        // ack.
        loop {
            let Some(mut batch) = (match carried.take() {
                Some(batch) => Some(batch),
                None => decoded.recv().await,
            }) else {
                break;
            };
            while let Ok(more) = decoded.try_recv() {
                if batch.received.len() + more.received.len() > self.batch_max_messages {
                    carried = Some(more);
                    break;
                }
                batch.received.extend(more.received);
                batch.items.extend(more.items);
            }
            let started = Instant::now();
            let span = tracing::debug_span!("commit", messages = batch.items.len());
            commit(&*self.store, &batch.items, metrics, &self.shutdown)
                .instrument(span)
                .await?;
            metrics
                .commit_duration
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(batch.received.len() as f64);
            count_outcomes(&batch.items, metrics);
            summary.messages_committed += batch.received.len() as u64;
            if self.committed.send(batch.received).is_err() {
                break;
            }
        }
        Ok(summary)
    }
}

/// Commit one batch, retrying on failure: its messages stay unacked until it succeeds.
async fn commit(
    store: &dyn IngestSink,
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
                metrics.conflicting_fixes.inc_by(report.conflicting_fixes);
                if report.dead_letters_not_kept > 0 {
                    metrics
                        .dead_letters_not_kept
                        .inc_by(report.dead_letters_not_kept);
                    warn!(
                        not_kept = report.dead_letters_not_kept,
                        "rejected messages not kept: a dead-letter cap ([store.dead_letters]) is reached"
                    );
                }
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
fn classify(
    publish: &Publish,
    received: jiff::Timestamp,
    limits: &Limits,
    delivery: &Arc<Delivery>,
) -> IngestItem {
    match decode(&publish.topic, &publish.payload, received, limits) {
        Ok(message) => IngestItem::Accepted {
            message,
            received,
            delivery: delivery.clone(),
        },
        Err(rejection) => {
            let size = publish.payload.len();
            let kept = match rejection.reason {
                RejectReason::OversizePayload => size.min(OVERSIZE_KEPT_BYTES),
                _ => size,
            };
            let detail = if kept < size {
                format!(
                    "{} (the first {kept} of {size} bytes kept)",
                    rejection.detail
                )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversize_payload_is_dead_lettered_with_its_first_bytes_only() {
        let limits = Limits::default();
        let received = jiff::Timestamp::now();
        let delivery = Arc::new(Delivery::Mqtt {
            broker: "mqtt://test".into(),
            binds_logins: true,
        });
        let junk = vec![b'x'; limits.max_payload_bytes + 1];
        let publish = Publish::new("cleanfleet/v1/sweeper/sw-1/fixes", QoS::AtLeastOnce, junk);
        let IngestItem::Rejected {
            payload,
            reason,
            detail,
            ..
        } = classify(&publish, received, &limits, &delivery)
        else {
            panic!("accepted junk");
        };
        assert_eq!(reason, RejectReason::OversizePayload);
        assert_eq!(payload.len(), OVERSIZE_KEPT_BYTES);
        assert!(
            detail.contains("the first 4096 of 262145 bytes kept"),
            "{detail}"
        );
        // Other rejections keep their whole payload (it is within the size limit).
        let bad = Publish::new(
            "cleanfleet/v1/sweeper/sw-1/fixes",
            QoS::AtLeastOnce,
            vec![b'{'; 9000],
        );
        let IngestItem::Rejected { payload, .. } = classify(&bad, received, &limits, &delivery)
        else {
            panic!("accepted malformed JSON");
        };
        assert_eq!(payload.len(), 9000);
    }
}
