use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The embedded broker's Prometheus metrics (bounded labels; never a device id).
#[derive(Clone)]
pub struct BrokerMetrics {
    pub connections: IntGauge,
    pub sessions: IntGauge,
    pub queued_bytes: IntGauge,
    pub read_ahead_bytes: IntGauge,
    /// Connections closed before or at CONNECT, by reason.
    pub connections_refused: IntCounterVec,
    /// Live connections closed by the broker, by reason.
    pub connections_closed: IntCounterVec,
    /// PUBLISH packets refused (the connection is closed), by reason.
    pub publishes_refused: IntCounterVec,
    pub subscriptions_refused: IntCounter,
    pub messages_received: IntCounter,
    pub messages_delivered: IntCounter,
    pub messages_unrouted: IntCounter,
    pub qos0_dropped: IntCounter,
    /// Times a publisher was left unacknowledged because a queue was full.
    pub publisher_waits: IntCounter,
}

impl BrokerMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let by_reason =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["reason"]);
        let m = BrokerMetrics {
            connections: IntGauge::new("cleanfleet_broker_connections", "Open MQTT connections")?,
            sessions: IntGauge::new(
                "cleanfleet_broker_sessions",
                "MQTT sessions kept (connected or persistent)",
            )?,
            queued_bytes: IntGauge::new(
                "cleanfleet_broker_queued_bytes",
                "Bytes (topic + payload) queued or in flight to subscribers",
            )?,
            read_ahead_bytes: IntGauge::new(
                "cleanfleet_broker_read_ahead_bytes",
                "Bytes of packets read ahead from publishers waiting for room",
            )?,
            connections_refused: by_reason(
                "cleanfleet_broker_connections_refused_total",
                "Connections refused at CONNECT or before, by reason",
            )?,
            connections_closed: by_reason(
                "cleanfleet_broker_connections_closed_total",
                "Live connections closed by the broker, by reason",
            )?,
            publishes_refused: by_reason(
                "cleanfleet_broker_publishes_refused_total",
                "PUBLISH packets refused (and their connection closed), by reason",
            )?,
            subscriptions_refused: IntCounter::new(
                "cleanfleet_broker_subscriptions_refused_total",
                "Subscription filters refused (SUBACK failure)",
            )?,
            messages_received: IntCounter::new(
                "cleanfleet_broker_messages_received_total",
                "PUBLISH packets accepted from clients",
            )?,
            messages_delivered: IntCounter::new(
                "cleanfleet_broker_messages_delivered_total",
                "Messages written to subscribers (resends included)",
            )?,
            messages_unrouted: IntCounter::new(
                "cleanfleet_broker_messages_unrouted_total",
                "Accepted messages no subscription matched",
            )?,
            qos0_dropped: IntCounter::new(
                "cleanfleet_broker_qos0_dropped_total",
                "QoS 0 copies not queued for want of room (never acknowledged)",
            )?,
            publisher_waits: IntCounter::new(
                "cleanfleet_broker_publisher_waits_total",
                "Publishes held unacknowledged until a full queue had room",
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.sessions.clone()))?;
        registry.register(Box::new(m.queued_bytes.clone()))?;
        registry.register(Box::new(m.read_ahead_bytes.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        registry.register(Box::new(m.connections_closed.clone()))?;
        registry.register(Box::new(m.publishes_refused.clone()))?;
        registry.register(Box::new(m.subscriptions_refused.clone()))?;
        registry.register(Box::new(m.messages_received.clone()))?;
        registry.register(Box::new(m.messages_delivered.clone()))?;
        registry.register(Box::new(m.messages_unrouted.clone()))?;
        registry.register(Box::new(m.qos0_dropped.clone()))?;
        registry.register(Box::new(m.publisher_waits.clone()))?;
        Ok(m)
    }

    pub fn refused(&self, reason: &str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }
}
