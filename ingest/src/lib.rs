//! Ingestion: MQTT messages in, durable store batches out.
//!
//! One task drives the MQTT event loop and forwards publishes into a bounded queue; a second
//! task takes batches from the queue, validates each message, commits the batch (accepted
//! records and dead letters together) and only then acknowledges the messages.
//! **Acks only after a durable write**: a message whose batch did not commit is never acked,
//! so the broker redelivers it (persistent session, QoS 1) and the idempotent store keeps one
//! copy. **Backpressure, not memory**: when the store is slow the queue fills, the event-loop
//! task stops reading from the broker, and the broker holds the rest.

mod broker;
mod config;
mod metrics;
mod pipeline;

pub use broker::{BrokerAddress, BrokerConfig};
pub use config::IngestConfig;
pub use metrics::IngestMetrics;
pub use pipeline::{run, IngestSummary};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid broker URL {url:?}: {why}")]
    BrokerUrl { url: String, why: String },
    #[error("cannot set up TLS for the broker: {0}")]
    BrokerTls(String),
    #[error(
        "the store failed while shutting down; unacknowledged messages stay with the broker: {0}"
    )]
    StoreAtShutdown(#[source] cleanfleet_store::StoreError),
    #[error("the store is closed")]
    StoreClosed,
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
}
