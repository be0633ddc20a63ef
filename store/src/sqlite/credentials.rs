//! [`CredentialStore`] on SQLite: the `credentials` table.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{ms, ts, write_transaction, SqliteStore};
use crate::{CredentialRecord, CredentialStore, StoreError};
use jiff::Timestamp;

const COLUMNS: &str = "username, role, secret_hash, issued_ms, rotated_ms, revoked_ms";

fn record(row: &Row<'_>) -> rusqlite::Result<CredentialRecord> {
    let role: String = row.get(1)?;
    Ok(CredentialRecord {
        username: row.get(0)?,
        role: role
            .parse()
            .map_err(|e: cleanfleet_identity::IdentityError| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
            })?,
        secret_hash: row.get(2)?,
        issued_at: ts(row.get(3)?),
        rotated_at: ts(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(ts),
    })
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn add_credential(&self, r: CredentialRecord) -> Result<(), StoreError> {
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let inserted = tx.execute(
                &format!(
                    "INSERT INTO credentials ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                          ON CONFLICT (username) DO NOTHING"
                ),
                params![
                    r.username,
                    r.role.as_str(),
                    r.secret_hash,
                    ms(r.issued_at),
                    ms(r.rotated_at),
                    r.revoked_at.map(ms)
                ],
            )?;
            tx.commit()?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "{:?} already has a credential (revoked ones are not issued again)",
                    r.username
                )));
            }
            Ok(())
        })
        .await
    }

    async fn credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        self.with_reader(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM credentials ORDER BY username"
            ))?;
            let rows = statement.query_map([], record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn credential(&self, username: &str) -> Result<Option<CredentialRecord>, StoreError> {
        let username = username.to_owned();
        self.with_reader(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM credentials WHERE username = ?1"
                ))?
                .query_row([username], record)
                .optional()?)
        })
        .await
    }

    async fn rotate_credential(
        &self,
        username: &str,
        secret_hash: String,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let changed = tx.execute(
                "UPDATE credentials SET secret_hash = ?2, rotated_ms = ?3
                 WHERE username = ?1 AND revoked_ms IS NULL",
                params![username, secret_hash, ms(at)],
            )?;
            tx.commit()?;
            Ok(changed == 1)
        })
        .await
    }

    async fn revoke_credential(&self, username: &str, at: Timestamp) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let changed = tx.execute(
                "UPDATE credentials SET revoked_ms = ?2 WHERE username = ?1 AND revoked_ms IS NULL",
                params![username, ms(at)],
            )?;
            tx.commit()?;
            Ok(changed == 1)
        })
        .await
    }
}
