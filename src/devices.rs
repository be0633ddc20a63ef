//! Device credentials: issued, rotated and revoked (`cleanfleet devices`, the demo's fleet).
//! A secret is shown once, when it is made; the store keeps only its hash.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use cleanfleet_identity::{check_username, hash_secret, new_secret, Role};
use cleanfleet_store::{CredentialRecord, CredentialStore, StoreError};
use jiff::Timestamp;

/// Issues a credential for `username`; returns its secret.
pub async fn add<S: CredentialStore + ?Sized>(
    store: &S,
    role: Role,
    username: &str,
    now: Timestamp,
) -> anyhow::Result<String> {
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
) -> anyhow::Result<String> {
    let secret = new_secret();
    if !store
        .rotate_credential(username, hash_secret(&secret), now)
        .await?
    {
        bail!("{username:?} has no live credential (never issued, or revoked)");
    }
    Ok(secret)
}

/// Revokes `username`'s credential for good.
pub async fn revoke<S: CredentialStore + ?Sized>(
    store: &S,
    username: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    if !store.revoke_credential(username, now).await? {
        bail!("{username:?} has no live credential (never issued, or revoked already)");
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
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut secrets = BTreeMap::new();
    for (role, username) in devices {
        let secret = match add(store, role, &username, now).await {
            Ok(secret) => secret,
            Err(e) if matches!(e.downcast_ref(), Some(StoreError::Conflict(_))) => {
                let existing = store
                    .credential(&username)
                    .await?
                    .context("a conflicting credential exists")?;
                if existing.role != role {
                    bail!(
                        "{username:?} holds a credential as {}, not {role}",
                        existing.role
                    );
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
    use cleanfleet_store::{SqliteConfig, SqliteStore};

    use super::*;

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
        assert!(provision(&store, as_bin, now).await.is_err());
        revoke(&store, "sw-02", now).await.unwrap();
        assert!(provision(&store, fleet(), now).await.is_err());
        assert!(revoke(&store, "sw-02", now).await.is_err());
        assert!(add(&store, sweeper, "cleanfleet-ingest", now)
            .await
            .is_err());
    }
}
