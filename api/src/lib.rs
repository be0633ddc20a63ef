//! The HTTP API. Handlers are thin: parse and check the request, ask the store, shape JSON.
//! Errors become responses in one place (`error.rs`); a 5xx body never carries internals.

mod auth;
mod bins;
mod brief;
mod coverage;
mod credentials;
mod error;
mod extract;
mod inspection;
mod matching;
mod metrics;
mod routes;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use cleanfleet_ingest::IngestMetrics;
use cleanfleet_model::Clock;
use cleanfleet_store::{CredentialStore, ProvenanceStore, Store};
use serde::Deserialize;

pub use auth::{token_sha256, AuthConfig, Principal, Role, TokenConfig};
pub use brief::{contractor_brief, ContractorBrief};
pub use cleanfleet_reports::CoverageContext;
pub use error::{ApiError, ErrorBody};
pub use metrics::ApiMetrics;
pub use routes::{probe_routes, ApiDoc, Probes};
pub use server::{serve, ConnectionLimits};

/// `[api]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    pub auth: AuthConfig,
    /// `[api.connections]`: how many at once, and how long a slow client may take.
    pub connections: ConnectionLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth: AuthConfig::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// The same store's provenance role.
    pub provenance: Arc<dyn ProvenanceStore>,
    /// The same store's broker credentials (the admin's `/api/v1/credentials`, an external
    /// broker's authorization hook).
    pub credentials: Arc<dyn CredentialStore>,
    /// Checks broker logins for an external broker's authentication hook.
    pub mqtt_logins: Arc<dyn cleanfleet_identity::Authenticator>,
    pub clock: Arc<dyn Clock>,
    /// Everything `/metrics` exposes.
    pub registry: prometheus::Registry,
    /// Present when ingestion runs in this process: readiness and statistics use it.
    pub ingest: Option<IngestMetrics>,
    /// The road network and rules the coverage endpoints judge by; without it they are 503.
    pub coverage: Option<Arc<CoverageContext>>,
}

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Auth(String),
}

/// The API's routes behind authentication, with request metrics.
pub fn router(state: ApiState, auth: &AuthConfig) -> Result<Router, RouterError> {
    let metrics = ApiMetrics::register(&state.registry)?;
    let authenticator = auth::Authenticator::new(auth).map_err(RouterError::Auth)?;
    Ok(routes::routes()
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        )))
}
