//! The embedded MQTT broker (`cleanfleet-broker`), logging clients in against the store's
//! credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cleanfleet_broker::{AuthUnavailable, Authenticator, BrokerConfig, BrokerHandle};
use cleanfleet_identity::{verify_secret, Principal, Role, SecretFingerprint};
use cleanfleet_store::{CredentialRecord, CredentialStore};

/// The ingest service running in the same process: it logs in with a secret made for this
/// run, which is never stored.
#[derive(Clone)]
pub struct LocalService {
    pub username: String,
    pub secret: String,
}

impl LocalService {
    /// `username` (a service name) with a fresh secret.
    pub fn ingest(username: &str) -> Self {
        LocalService {
            username: username.to_owned(),
            secret: cleanfleet_identity::new_secret(),
        }
    }
}

/// Logs in the store's live credentials, and the in-process ingest.
pub struct StoreAuthenticator<S> {
    store: Arc<S>,
    /// The in-process service's username and its secret's fingerprint.
    local: Option<(String, SecretFingerprint)>,
    /// Per username, the fingerprint of the password that last matched and the hash it
    /// matched: the broker checks every live connection again each minute, and an unchanged
    /// hash needs no second PBKDF2 (10,000 devices would cost seconds of CPU a minute).
    verified: Mutex<HashMap<String, (SecretFingerprint, String)>>,
}

impl<S> StoreAuthenticator<S> {
    pub fn new(store: Arc<S>, local: Option<LocalService>) -> Self {
        StoreAuthenticator {
            store,
            local: local.map(|l| (l.username, SecretFingerprint::of(&l.secret))),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// `username`'s credential unless it is revoked.
    async fn live(&self, username: &str) -> Result<Option<CredentialRecord>, AuthUnavailable>
    where
        S: CredentialStore,
    {
        let record = self
            .store
            .credential(username)
            .await
            .map_err(|e| AuthUnavailable(e.to_string()))?;
        Ok(record.filter(|r| r.revoked_at.is_none()))
    }

    fn known(&self, username: &str, password: &str, hash: &str) -> bool {
        let verified = self.verified.lock().expect("cache lock poisoned");
        verified
            .get(username)
            .is_some_and(|(p, h)| h == hash && p.matches(password))
    }
}

#[async_trait]
impl<S: CredentialStore> Authenticator for StoreAuthenticator<S> {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, AuthUnavailable> {
        if let Some((_, fingerprint)) = self.local.as_ref().filter(|(name, _)| name == username) {
            if fingerprint.matches(password) {
                return Ok(Some(Principal {
                    username: username.to_owned(),
                    role: Role::Ingest,
                }));
            }
        }
        let Some(record) = self.live(username).await? else {
            return Ok(None);
        };
        let valid = self.known(username, password, &record.secret_hash) || {
            let (secret, hash) = (password.to_owned(), record.secret_hash.clone());
            // PBKDF2 is deliberate work: off the async threads.
            let valid = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
                .await
                .map_err(|e| AuthUnavailable(e.to_string()))?;
            if valid {
                self.verified.lock().expect("cache lock poisoned").insert(
                    username.to_owned(),
                    (SecretFingerprint::of(password), record.secret_hash.clone()),
                );
            }
            valid
        };
        Ok(valid.then_some(Principal {
            username: record.username,
            role: record.role,
        }))
    }

    async fn certified(&self, username: &str) -> Result<Option<Principal>, AuthUnavailable> {
        Ok(self.live(username).await?.map(|r| Principal {
            username: r.username,
            role: r.role,
        }))
    }
}

/// Starts the broker on the current runtime; it runs until the handle is dropped.
pub async fn start<S: CredentialStore>(
    config: &BrokerConfig,
    store: Arc<S>,
    local: Option<LocalService>,
    registry: &prometheus::Registry,
) -> anyhow::Result<BrokerHandle> {
    let authenticator = Arc::new(StoreAuthenticator::new(store, local));
    Ok(cleanfleet_broker::start(config.clone(), authenticator, registry).await?)
}
