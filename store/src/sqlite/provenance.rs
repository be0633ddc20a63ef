//! Provenance on SQLite: each record's `source_key`, the `sources` it points at, and the
//! `device_day_sources` index. The writer resolves a message's source once per device and
//! credential version, and notes a (device, day, source) once per process: nearly nothing is
//! added to a commit.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use cleanfleet_model::{DeviceKind, Stream};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::{fixes, ms, ts, SqliteStore};
use crate::{Delivery, ProvenanceStore, Source, SourceRun, StoreError, Trust};

const DAY_MS: i64 = 86_400_000;

/// `sources.credential_ms` of a source that is no credential's.
const NO_CREDENTIAL: i64 = 0;

/// The UTC day a record's device time falls on, as `device_day_sources` keys it (the
/// migration computes the same with SQLite's integer division).
pub(super) fn utc_day(time_ms: i64) -> i64 {
    time_ms / DAY_MS
}

/// What the writer has resolved and noted, valid for one `credentials_version`. Entries are
/// added only after their transaction committed, so a rolled-back batch leaves none behind.
#[derive(Default)]
pub(super) struct SourceCache {
    credentials_version: i64,
    sources: HashMap<(Delivery, String, DeviceKind), i64>,
    noted_days: HashSet<(i64, i64, i64)>,
}

/// A cache is dropped whole rather than grow without bound (a year of a large city's
/// device-days).
const MAX_NOTED_DAYS: usize = 1_000_000;

/// One batch's view of the cache: what it resolves or notes is kept apart until commit.
pub(super) struct BatchSources<'c> {
    cache: &'c SourceCache,
    credentials_version: i64,
    new_sources: HashMap<(Delivery, String, DeviceKind), i64>,
    new_days: HashSet<(i64, i64, i64)>,
}

impl SourceCache {
    pub(super) fn begin<'c>(
        &'c mut self,
        tx: &Transaction,
    ) -> Result<BatchSources<'c>, StoreError> {
        let version: i64 =
            tx.query_row("SELECT version FROM credentials_version", [], |r| r.get(0))?;
        if version != self.credentials_version || self.noted_days.len() > MAX_NOTED_DAYS {
            // A credential changed (here or in another process): a device's source may be
            // another now. Days already noted stay noted in the table; noting again is cheap.
            self.sources.clear();
            self.noted_days.clear();
            self.credentials_version = version;
        }
        Ok(BatchSources {
            cache: self,
            credentials_version: version,
            new_sources: HashMap::new(),
            new_days: HashSet::new(),
        })
    }

    /// Keeps what a committed batch resolved.
    pub(super) fn committed(&mut self, batch: BatchOutcome) {
        if batch.credentials_version == self.credentials_version {
            self.sources.extend(batch.new_sources);
            self.noted_days.extend(batch.new_days);
        }
    }
}

/// What a batch resolved, to be kept once it committed.
pub(super) struct BatchOutcome {
    credentials_version: i64,
    new_sources: HashMap<(Delivery, String, DeviceKind), i64>,
    new_days: HashSet<(i64, i64, i64)>,
}

impl BatchSources<'_> {
    pub(super) fn finish(self) -> BatchOutcome {
        BatchOutcome {
            credentials_version: self.credentials_version,
            new_sources: self.new_sources,
            new_days: self.new_days,
        }
    }

    /// The source of a message of `device_id` (of `kind`) delivered so, received at
    /// `received`.
    pub(super) fn source(
        &mut self,
        tx: &Transaction,
        delivery: &Delivery,
        device_id: &str,
        kind: DeviceKind,
        received: Timestamp,
    ) -> Result<i64, StoreError> {
        let key = (delivery.clone(), device_id.to_owned(), kind);
        if let Some(&k) = self.cache.sources.get(&key).or(self.new_sources.get(&key)) {
            return Ok(k);
        }
        // Whether the resolution holds for every later message too: not when it rests on
        // a revoked credential, whose messages count as its only if received before.
        let mut lasting = true;
        let (trust, via, principal, credential_ms) = match delivery {
            Delivery::Mqtt {
                broker,
                binds_logins,
            } => {
                let credential: Option<(i64, Option<i64>)> = if *binds_logins {
                    tx.prepare_cached(
                        "SELECT rotated_ms, revoked_ms FROM credentials
                         WHERE username = ?1 AND role = ?2",
                    )?
                    .query_row(params![device_id, kind.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?
                } else {
                    None
                };
                let live = match credential {
                    Some((rotated, None)) => Some(rotated),
                    Some((rotated, Some(revoked))) => {
                        lasting = false;
                        (ms(received) < revoked).then_some(rotated)
                    }
                    None => None,
                };
                match live {
                    Some(rotated) => (Trust::Credential, broker.as_str(), device_id, rotated),
                    None => (Trust::TopicOnly, broker.as_str(), device_id, NO_CREDENTIAL),
                }
            }
            Delivery::Api { token: Some(name) } => {
                (Trust::Token, "api", name.as_str(), NO_CREDENTIAL)
            }
            Delivery::Api { token: None } => (Trust::Unauthenticated, "api", "", NO_CREDENTIAL),
        };
        let k: i64 = tx
            .prepare_cached(
                "INSERT INTO sources (trust, via, principal, credential_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (trust, via, principal, credential_ms)
                     DO UPDATE SET trust = excluded.trust
                 RETURNING source_key",
            )?
            .query_row(
                params![trust.as_str(), via, principal, credential_ms],
                |r| r.get(0),
            )?;
        if lasting {
            self.new_sources.insert(key, k);
        }
        Ok(k)
    }

    /// Notes that `device_key` has a record from `source_key` timed at `time_ms`.
    pub(super) fn note_day(
        &mut self,
        tx: &Transaction,
        device_key: i64,
        time_ms: i64,
        source_key: i64,
    ) -> Result<(), StoreError> {
        let key = (device_key, utc_day(time_ms), source_key);
        if self.cache.noted_days.contains(&key) || self.new_days.contains(&key) {
            return Ok(());
        }
        tx.prepare_cached(
            "INSERT INTO device_day_sources (device_key, day, source_key) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![key.0, key.1, key.2])?;
        self.new_days.insert(key);
        Ok(())
    }
}

const SOURCE_COLUMNS: &str = "src.source_key, src.trust, src.via, src.principal, src.credential_ms";

/// A `sources` row read with [`SOURCE_COLUMNS`] starting at column `at`.
pub(super) fn source_from_row(r: &Row, at: usize) -> rusqlite::Result<Source> {
    let trust: String = r.get(at + 1)?;
    Ok(Source {
        id: r.get(at)?,
        trust: trust.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(at + 1, rusqlite::types::Type::Text, e.into())
        })?,
        via: r.get(at + 2)?,
        principal: r.get(at + 3)?,
        credential_issued: Some(r.get::<_, i64>(at + 4)?)
            .filter(|&t| t != NO_CREDENTIAL)
            .map(ts),
    })
}

/// The tables of device records besides fixes (`fixes` keeps those), each with its stream
/// and the column of its device time.
const RECORD_TABLES: [(&str, Stream, &str); 5] = [
    ("bin_readings", Stream::Reading, "time_ms"),
    ("toilet_readings", Stream::Reading, "time_ms"),
    ("weighbridge_tickets", Stream::Ticket, "time_out_ms"),
    ("inspection_samples", Stream::Sample, "time_ms"),
    ("status_changes", Stream::Status, "time_ms"),
];

fn runs(
    conn: &Connection,
    device_key: i64,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<SourceRun>, StoreError> {
    let mut runs = Runs {
        conn,
        out: Vec::new(),
        sources: HashMap::new(),
    };
    let fixes = fixes::between(conn, device_key, ms(from), ms(to), usize::MAX)?;
    runs.add(
        Stream::Fixes,
        fixes.iter().map(|f| Ok((ms(f.fix.time), f.source_key))),
    )?;
    for (table, stream, time) in RECORD_TABLES {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {time}, source_key FROM {table}
             WHERE device_key = ?1 AND {time} >= ?2 AND {time} < ?3
             ORDER BY {time}"
        ))?;
        let records = stmt.query_map(params![device_key, ms(from), ms(to)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        runs.add(stream, records.map(|r| r.map_err(StoreError::from)))?;
    }
    Ok(runs.out)
}

/// Runs of records of one source, stream by stream.
struct Runs<'c> {
    conn: &'c Connection,
    out: Vec<SourceRun>,
    sources: HashMap<i64, Source>,
}

impl Runs<'_> {
    /// Adds one stream's records, (device time, source key) in time order.
    fn add(
        &mut self,
        stream: Stream,
        records: impl Iterator<Item = Result<(i64, i64), StoreError>>,
    ) -> Result<(), StoreError> {
        let mut current: Option<SourceRun> = None;
        for record in records {
            let (at, key) = record?;
            match &mut current {
                Some(run) if run.source.id == key => {
                    run.last = ts(at);
                    run.records += 1;
                }
                _ => {
                    let source = match self.sources.entry(key) {
                        std::collections::hash_map::Entry::Occupied(known) => known.get().clone(),
                        std::collections::hash_map::Entry::Vacant(new) => new
                            .insert(
                                self.conn
                                    .prepare_cached(&format!(
                                        "SELECT {SOURCE_COLUMNS} FROM sources src
                                         WHERE source_key = ?1"
                                    ))?
                                    .query_row([key], |r| source_from_row(r, 0))?,
                            )
                            .clone(),
                    };
                    self.out.extend(current.take());
                    current = Some(SourceRun {
                        stream: stream.as_str().to_owned(),
                        first: ts(at),
                        last: ts(at),
                        records: 1,
                        source,
                    });
                }
            }
        }
        self.out.extend(current);
        Ok(())
    }
}

#[async_trait]
impl ProvenanceStore for SqliteStore {
    async fn provenance(
        &self,
        device_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<SourceRun>, StoreError> {
        let device_id = device_id.to_owned();
        self.with_reader(move |conn| {
            let key: Option<i64> = conn
                .prepare_cached("SELECT device_key FROM devices WHERE device_id = ?1")?
                .query_row([&device_id], |r| r.get(0))
                .optional()?;
            match key {
                Some(key) => runs(conn, key, from, to),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    async fn device_sources(
        &self,
        devices: Vec<String>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, Source)>, StoreError> {
        self.with_reader(move |conn| {
            let (first_day, last_day) = (utc_day(ms(from)), utc_day(ms(to) - 1));
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT DISTINCT {SOURCE_COLUMNS}
                 FROM devices d
                 JOIN device_day_sources dds ON dds.device_key = d.device_key
                 JOIN sources src ON src.source_key = dds.source_key
                 WHERE d.device_id = ?1 AND dds.day BETWEEN ?2 AND ?3
                 ORDER BY src.source_key"
            ))?;
            let mut devices = devices;
            devices.sort();
            devices.dedup();
            let mut out = Vec::new();
            for device in devices {
                let sources = stmt
                    .query_map(params![device, first_day, last_day], |r| {
                        source_from_row(r, 0)
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                out.extend(sources.into_iter().map(|s| (device.clone(), s)));
            }
            Ok(out)
        })
        .await
    }
}
