use cleanfleet_model::{RejectReason, Stream};
use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

/// Ingestion's Prometheus metrics. Cloning shares the same series.
#[derive(Clone)]
pub struct IngestMetrics {
    pub accepted_messages: IntCounterVec,
    pub rejected_messages: IntCounterVec,
    pub records: IntCounter,
    pub fixes: IntCounter,
    pub duplicate_records: IntCounter,
    pub conflicting_fixes: IntCounter,
    pub dead_letters_not_kept: IntCounter,
    pub batch_size: Histogram,
    pub commit_duration: Histogram,
    pub queue_depth: IntGauge,
    pub broker_reconnects: IntCounter,
    pub broker_sessions_lost: IntCounter,
    pub broker_connected: IntGauge,
    pub store_errors: IntCounter,
    pub fixes_compacted: IntCounter,
}

impl IngestMetrics {
    /// Messages committed (accepted or dead-lettered) by this process so far.
    pub fn messages_committed(&self) -> u64 {
        let sum = |vec: &IntCounterVec| -> u64 {
            vec.collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .map(|m| m.get_counter().get_value() as u64)
                .sum()
        };
        sum(&self.accepted_messages) + sum(&self.rejected_messages)
    }

    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = IngestMetrics {
            accepted_messages: IntCounterVec::new(
                Opts::new(
                    "cleanfleet_ingest_accepted_messages_total",
                    "MQTT messages accepted and committed, by stream",
                ),
                &["stream"],
            )?,
            rejected_messages: IntCounterVec::new(
                Opts::new(
                    "cleanfleet_ingest_rejected_messages_total",
                    "MQTT messages rejected into the dead-letter store, by reason",
                ),
                &["reason"],
            )?,
            records: IntCounter::new(
                "cleanfleet_ingest_records_total",
                "New records stored (fixes, readings, tickets, samples, status changes)",
            )?,
            fixes: IntCounter::new("cleanfleet_ingest_fixes_total", "New GPS fixes stored")?,
            duplicate_records: IntCounter::new(
                "cleanfleet_ingest_duplicate_records_total",
                "Records received again (redelivery, retransmit) and not stored twice",
            )?,
            conflicting_fixes: IntCounter::new(
                "cleanfleet_ingest_conflicting_fixes_total",
                "Fixes of accepted messages refused because the device's fix of that time is \
                 stored at another place (each kept as a conflicting_fix dead letter)",
            )?,
            dead_letters_not_kept: IntCounter::new(
                "cleanfleet_ingest_dead_letters_not_kept_total",
                "Rejected messages counted but not kept: a dead-letter cap was reached",
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "cleanfleet_ingest_batch_size_messages",
                    "Messages per committed batch",
                )
                .buckets(exponential_buckets(1.0, 2.0, 14)?),
            )?,
            commit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "cleanfleet_ingest_commit_duration_seconds",
                    "Time to validate and durably commit one batch",
                )
                .buckets(exponential_buckets(0.0005, 2.0, 14)?),
            )?,
            queue_depth: IntGauge::new(
                "cleanfleet_ingest_queue_depth_messages",
                "Messages received and waiting to be committed",
            )?,
            broker_reconnects: IntCounter::new(
                "cleanfleet_ingest_broker_reconnects_total",
                "Times the connection to the broker was lost",
            )?,
            broker_sessions_lost: IntCounter::new(
                "cleanfleet_ingest_broker_sessions_lost_total",
                "Reconnects on which the broker no longer had ingest's persistent session",
            )?,
            broker_connected: IntGauge::new(
                "cleanfleet_ingest_broker_connected",
                "1 while connected to the broker",
            )?,
            store_errors: IntCounter::new(
                "cleanfleet_ingest_store_errors_total",
                "Failed batch commits (retried; nothing is acked until one succeeds)",
            )?,
            fixes_compacted: IntCounter::new(
                "cleanfleet_ingest_fixes_compacted_total",
                "Fixes of settled device-hours moved into compressed blocks",
            )?,
        };
        registry.register(Box::new(m.accepted_messages.clone()))?;
        registry.register(Box::new(m.rejected_messages.clone()))?;
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.fixes.clone()))?;
        registry.register(Box::new(m.duplicate_records.clone()))?;
        registry.register(Box::new(m.conflicting_fixes.clone()))?;
        registry.register(Box::new(m.dead_letters_not_kept.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        registry.register(Box::new(m.commit_duration.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.broker_reconnects.clone()))?;
        registry.register(Box::new(m.broker_sessions_lost.clone()))?;
        registry.register(Box::new(m.broker_connected.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.fixes_compacted.clone()))?;
        // Every bounded label value exists from the start, so dashboards show zeros, not gaps.
        for reason in RejectReason::ALL {
            m.rejected_messages.with_label_values(&[reason.as_str()]);
        }
        for stream in Stream::ALL {
            m.accepted_messages.with_label_values(&[stream.as_str()]);
        }
        Ok(m)
    }
}
