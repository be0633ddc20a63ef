use cleanfleet_model::Limits;
use jiff::SignedDuration;
use serde::Deserialize;

/// Ingestion settings (`[ingest]` in the config file). Defaults are documented on each field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Stable MQTT client id: the broker keeps this session's messages while ingest is down.
    /// Default `cleanfleet-ingest`.
    pub client_id: String,
    /// Default `cleanfleet/v1/#`. Several ingest processes share the load with a shared
    /// subscription, e.g. `$share/cleanfleet/cleanfleet/v1/#` (MQTT 5 brokers, EMQX, Mosquitto).
    pub topic_filter: String,
    /// Most messages committed in one store transaction: a batch is whatever has arrived
    /// while the previous one committed, up to this. Default 512.
    pub batch_max_messages: usize,
    /// Messages received but not yet decoded; when full, ingest stops reading from the
    /// broker. Default 4096. (At most `batch_max_messages` more wait decoded, and as many
    /// are being committed.)
    pub queue_capacity: usize,
    /// Larger payloads are dead-lettered as `oversize_payload`. Default 262144 (256 KiB).
    pub max_payload_bytes: usize,
    /// Default 3600.
    pub max_fixes_per_message: usize,
    /// How far a device clock may run ahead. Default 300 s.
    pub max_future_s: i64,
    /// How late buffered data may arrive. Default 2592000 s (30 days).
    pub max_age_s: i64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = Limits::default();
        IngestConfig {
            client_id: "cleanfleet-ingest".into(),
            topic_filter: "cleanfleet/v1/#".into(),
            batch_max_messages: 512,
            queue_capacity: 4096,
            max_payload_bytes: limits.max_payload_bytes,
            max_fixes_per_message: limits.max_fixes_per_message,
            max_future_s: limits.max_future.as_secs(),
            max_age_s: limits.max_age.as_secs(),
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.max_payload_bytes,
            max_fixes_per_message: self.max_fixes_per_message,
            max_future: SignedDuration::from_secs(self.max_future_s),
            max_age: SignedDuration::from_secs(self.max_age_s),
        }
    }
}
