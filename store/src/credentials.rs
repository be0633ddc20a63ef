//! Issuing, rotating and revoking broker credentials over a [`CredentialStore`]: what
//! `cleanfleet devices` and the admin API both call. A secret is returned once, when it is
//! made; the store keeps only its hash.

use std::collections::BTreeMap;

use cleanfleet_identity::{check_username, hash_secret, new_secret, IdentityError, Role};
use jiff::Timestamp;

use crate::{CredentialRecord, CredentialStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Username(#[from] IdentityError),
    #[error("{0:?} has no live credential (never issued, or revoked)")]
    NoLiveCredential(String),
    #[error("{username:?} holds a credential as {held}, not {asked}")]
    OtherRole {
        username: String,
        held: Role,
        asked: Role,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues a credential for `username`; returns its secret. [`StoreError::Conflict`] if the
/// username has one, even revoked.
pub async fn issue<S: CredentialStore + ?Sized>(
    store: &S,
    role: Role,
    username: &str,
    now: Timestamp,
) -> Result<String, CredentialError> {
    check_username(username, role)?;
    let secret = new_secret();
    store
        .add_credential(CredentialRecord {
            username: username.to_owned(),
            role,
            secret_hash: hash_secret(&secret),
            issued_at: now,
            rotated_at: now,
            revoked_at: None,
        })
        .await?;
    Ok(secret)
}

/// Replaces the secret of `username`'s live credential; returns the new one.
pub async fn rotate<S: CredentialStore + ?Sized>(
    store: &S,
    username: &str,
    now: Timestamp,
) -> Result<String, CredentialError> {
    let secret = new_secret();
    if !store
        .rotate_credential(username, hash_secret(&secret), now)
        .await?
    {
        return Err(CredentialError::NoLiveCredential(username.to_owned()));
    }
    Ok(secret)
}

/// Revokes `username`'s credential for good.
pub async fn revoke<S: CredentialStore + ?Sized>(
    store: &S,
    username: &str,
    now: Timestamp,
) -> Result<(), CredentialError> {
    if !store.revoke_credential(username, now).await? {
        return Err(CredentialError::NoLiveCredential(username.to_owned()));
    }
    Ok(())
}

/// Secrets for every one of `devices`: issued, or rotated where a credential exists (the
/// demo and load runs own their devices and make new secrets each run). Revoked devices
/// and devices issued under another kind are refused.
pub async fn provision<S: CredentialStore + ?Sized>(
    store: &S,
    devices: impl IntoIterator<Item = (Role, String)>,
    now: Timestamp,
) -> Result<BTreeMap<String, String>, CredentialError> {
    let mut secrets = BTreeMap::new();
    for (role, username) in devices {
        let secret = match issue(store, role, &username, now).await {
            Ok(secret) => secret,
            Err(CredentialError::Store(StoreError::Conflict(_))) => {
                let held = store
                    .credential(&username)
                    .await?
                    .map(|c| c.role)
                    .ok_or_else(|| CredentialError::NoLiveCredential(username.clone()))?;
                if held != role {
                    return Err(CredentialError::OtherRole {
                        username,
                        held,
                        asked: role,
                    });
                }
                rotate(store, &username, now).await?
            }
            Err(e) => return Err(e),
        };
        secrets.insert(username, secret);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use cleanfleet_identity::verify_secret;
    use cleanfleet_model::DeviceKind;

    use super::*;
    use crate::{SqliteConfig, SqliteStore};

    #[tokio::test]
    async fn provisioning_issues_then_rotates_and_refuses_the_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("s.sqlite"))).unwrap();
        let now = Timestamp::now();
        let sweeper = Role::Device(DeviceKind::Sweeper);
        let fleet = || [(sweeper, "sw-01".to_owned()), (sweeper, "sw-02".to_owned())];
        let first = provision(&store, fleet(), now).await.unwrap();
        let second = provision(&store, fleet(), now).await.unwrap();
        let stored = store.credential("sw-01").await.unwrap().unwrap();
        assert!(verify_secret(&second["sw-01"], &stored.secret_hash));
        assert!(
            !verify_secret(&first["sw-01"], &stored.secret_hash),
            "rotated"
        );
        // Another kind under the same name is not quietly re-issued.
        let as_bin = [(Role::Device(DeviceKind::Bin), "sw-01".to_owned())];
        assert!(matches!(
            provision(&store, as_bin, now).await,
            Err(CredentialError::OtherRole { .. })
        ));
        revoke(&store, "sw-02", now).await.unwrap();
        assert!(provision(&store, fleet(), now).await.is_err());
        assert!(matches!(
            revoke(&store, "sw-02", now).await,
            Err(CredentialError::NoLiveCredential(_))
        ));
        assert!(matches!(
            issue(&store, sweeper, "cleanfleet-ingest", now).await,
            Err(CredentialError::Username(_))
        ));
    }
}
