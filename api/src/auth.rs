//! Who may ask what. Every request but health, readiness and metrics carries a token
//! (`Authorization: Bearer <token>` or `X-API-Key: <token>`); the config holds only its
//! SHA-256. Roles: `admin` everything; `dispatcher` reads everything; `inspector` reads and
//! submits samples; `contractor` (bound to one contractor id) sees only its own sections'
//! coverage, samples, inspections and scores, the devices its sections list (their work,
//! tracks and overflow alerts), and nothing of the city's bin list or operations (dead
//! letters, ingest); `broker` (an external broker) asks the MQTT hooks and nothing else.
//! Broker credentials are the admin's alone.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Dispatcher,
    Inspector,
    Contractor,
    /// An external broker (EMQX) asking the MQTT login and authorization hooks, nothing else.
    Broker,
}

/// One API token as configured: its SHA-256 (hex), never the token itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, for logs.
    pub name: String,
    pub role: Role,
    /// The contractor a `contractor` token speaks for.
    #[serde(default)]
    pub contractor: Option<String>,
    /// An `inspector` token's app (or scale): the device id its samples are stored under.
    /// Default `app-` and the token's name. The inspector is the token's name.
    #[serde(default)]
    pub device: Option<String>,
    /// `sha256sum` of the token, 64 hex digits.
    pub sha256: String,
}

/// `[api.auth]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Default true. Off, every request is an admin's (for a closed network only).
    pub enabled: bool,
    pub tokens: Vec<TokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            tokens: Vec::new(),
        }
    }
}

/// The SHA-256 of a token, as the config stores it.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub contractor: Option<String>,
    /// An inspector's app: the device its samples are stored under.
    pub device: Option<String>,
    /// Named by a token (`false` when authentication is off): what it submits is stored
    /// with the token as its provenance.
    pub authenticated: bool,
}

impl Principal {
    /// The contractor whose data alone this principal may see; `None` for city staff.
    pub fn contractor(&self) -> Option<&str> {
        match self.role {
            Role::Contractor => self.contractor.as_deref(),
            _ => None,
        }
    }
}

/// The tokens by their hash; checked once at start.
#[derive(Debug, Clone)]
pub struct Authenticator {
    enabled: bool,
    by_hash: Arc<HashMap<String, Principal>>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Authenticator, String> {
        let mut by_hash = HashMap::new();
        for t in &config.tokens {
            let hex = t.sha256.to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "[api.auth] token {:?}: sha256 must be 64 hex digits",
                    t.name
                ));
            }
            if (t.role == Role::Contractor) != t.contractor.is_some() {
                return Err(format!(
                    "[api.auth] token {:?}: a contractor token names its contractor, and only it does",
                    t.name
                ));
            }
            let device = match (t.role, &t.device) {
                (Role::Inspector, Some(d)) => Some(d.clone()),
                (Role::Inspector, None) => Some(format!("app-{}", t.name)),
                (_, Some(_)) => {
                    return Err(format!(
                        "[api.auth] token {:?}: only an inspector token names a device",
                        t.name
                    ))
                }
                (_, None) => None,
            };
            if let Some(d) = device
                .as_deref()
                .filter(|d| !cleanfleet_model::is_valid_device_id(d))
            {
                return Err(format!(
                    "[api.auth] token {:?}: {d:?} is not a device id (1-64 of A-Z a-z 0-9 _ . -); name the inspector's app with device",
                    t.name
                ));
            }
            let principal = Principal {
                name: t.name.clone(),
                role: t.role,
                contractor: t.contractor.clone(),
                device,
                authenticated: true,
            };
            if by_hash.insert(hex, principal).is_some() {
                return Err(format!(
                    "[api.auth] token {:?}: the same token twice",
                    t.name
                ));
            }
        }
        Ok(Authenticator {
            enabled: config.enabled,
            by_hash: Arc::new(by_hash),
        })
    }

    fn principal(&self, request: &Request) -> Option<Principal> {
        if !self.enabled {
            return Some(Principal {
                name: "anonymous (auth disabled)".into(),
                role: Role::Admin,
                contractor: None,
                device: None,
                authenticated: false,
            });
        }
        let headers = request.headers();
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))?;
        self.by_hash.get(&token_sha256(token.trim())).cloned()
    }
}

/// Paths anyone may read: probes and metrics.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// What a contractor may read (its own part of it: the handlers restrict the scope).
const CONTRACTOR_PATHS: [&str; 11] = [
    "/api/v1/assessment",
    "/api/v1/bins/alerts",
    "/api/v1/coverage",
    "/api/v1/devices",
    "/api/v1/vehicles",
    "/api/v1/passes",
    "/api/v1/samples",
    "/api/v1/inspections",
    "/api/v1/zones",
    "/api/v1/segments",
    "/api/v1/openapi.json",
];

/// What a role may reach at all; finer limits (a contractor's own data) are in the handlers.
fn allowed(role: Role, method: &Method, path: &str) -> bool {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    // Credentials are the admin's alone, even to list; the broker hooks the broker's.
    if under("/api/v1/credentials") {
        return role == Role::Admin;
    }
    if under("/api/v1/mqtt") {
        return matches!(role, Role::Admin | Role::Broker) && method == Method::POST;
    }
    // Matching a track reads nothing of anyone's: every role may check a track.
    if method == Method::POST && path == "/api/v1/match" {
        return role != Role::Broker;
    }
    let reading = method == Method::GET || method == Method::HEAD;
    match role {
        Role::Admin => true,
        Role::Broker => false,
        Role::Dispatcher => reading,
        Role::Inspector => reading || (method == Method::POST && path == "/api/v1/samples"),
        Role::Contractor => reading && CONTRACTOR_PATHS.iter().any(|p| under(p)),
    }
}

/// Middleware: 401 without a valid token, 403 outside the role; else the request carries
/// its [`Principal`].
pub async fn authenticate(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if is_open(&path) {
        return next.run(request).await;
    }
    let Some(principal) = auth.principal(&request) else {
        return ApiError::Unauthorized.into_response();
    };
    if !allowed(principal.role, request.method(), &path) {
        return ApiError::Forbidden(format!(
            "a {} token may not {} {path}",
            serde_json::to_value(principal.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            request.method()
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_reach_what_they_should() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(allowed(Role::Admin, &post, "/api/v1/anything"));
        assert!(allowed(Role::Dispatcher, &get, "/api/v1/dead-letters"));
        assert!(!allowed(Role::Dispatcher, &post, "/api/v1/samples"));
        assert!(allowed(Role::Inspector, &post, "/api/v1/samples"));
        assert!(!allowed(Role::Inspector, &post, "/api/v1/coverage"));
        for path in [
            "/api/v1/coverage",
            "/api/v1/coverage/segments",
            "/api/v1/passes",
            "/api/v1/inspections/failed-samples",
            "/api/v1/segments/3",
            "/api/v1/zones",
        ] {
            assert!(allowed(Role::Contractor, &get, path), "{path}");
        }
        for path in [
            "/api/v1/vehicles",
            "/api/v1/devices/sw-01",
            "/api/v1/vehicles/sw-01/track",
            "/api/v1/bins/alerts",
        ] {
            assert!(allowed(Role::Contractor, &get, path), "{path}");
        }
        for path in [
            "/api/v1/dead-letters",
            "/api/v1/ingest/stats",
            "/api/v1/bins",
            "/api/v1/coverage-x",
        ] {
            assert!(!allowed(Role::Contractor, &get, path), "{path}");
        }
        assert!(!allowed(Role::Contractor, &post, "/api/v1/samples"));
        // Credentials: the admin's alone; the MQTT hooks: the broker's (and the admin's).
        for role in [
            Role::Dispatcher,
            Role::Inspector,
            Role::Contractor,
            Role::Broker,
        ] {
            assert!(!allowed(role, &get, "/api/v1/credentials"), "{role:?}");
            assert!(
                !allowed(role, &post, "/api/v1/credentials/sw-1/rotate"),
                "{role:?}"
            );
        }
        assert!(allowed(
            Role::Admin,
            &post,
            "/api/v1/credentials/sw-1/revoke"
        ));
        assert!(allowed(Role::Broker, &post, "/api/v1/mqtt/authorize"));
        assert!(!allowed(
            Role::Dispatcher,
            &post,
            "/api/v1/mqtt/authenticate"
        ));
        assert!(!allowed(Role::Broker, &get, "/api/v1/coverage"));
        assert!(!allowed(Role::Broker, &post, "/api/v1/match"));
    }

    #[test]
    fn tokens_are_checked_and_stored_hashed() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let token = |role, contractor: Option<&str>, sha256: &str| TokenConfig {
            name: "t".into(),
            role,
            contractor: contractor.map(str::to_owned),
            device: None,
            sha256: sha256.into(),
        };
        let good = token_sha256("secret");
        let config = |tokens| AuthConfig {
            enabled: true,
            tokens,
        };
        assert!(Authenticator::new(&config(vec![token(Role::Admin, None, &good)])).is_ok());
        assert!(Authenticator::new(&config(vec![token(Role::Admin, None, "xyz")])).is_err());
        assert!(Authenticator::new(&config(vec![token(Role::Contractor, None, &good)])).is_err());
        assert!(
            Authenticator::new(&config(vec![token(Role::Admin, Some("acme"), &good)])).is_err()
        );
        let twice = vec![
            token(Role::Admin, None, &good),
            token(Role::Dispatcher, None, &good),
        ];
        assert!(Authenticator::new(&config(twice)).is_err());
    }
}
