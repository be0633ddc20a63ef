//! The embedded backend: one SQLite file in WAL mode. One writer connection commits whole
//! batches in a transaction; a small pool of reader connections serves the API concurrently.
//! All SQLite calls run on Tokio's blocking threads, never on the async workers.

mod credentials;
mod fix_block;
mod fixes;
mod provenance;
mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cleanfleet_model::{
    is_valid_device_id, BinReading, Body, Decoded, DeviceId, DeviceKind, DeviceState, Fix,
    FixBatch, InspectionSample, InvalidReason, RejectReason, ToiletReading, WorkState, WorkType,
    SAME_PLACE_M, TOPIC_PREFIX,
};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Deserialize;

use crate::{
    CoverageBacklog, CoverageChunk, CoverageQueue, DayRecords, DeadLetter, DeadLetterQuery,
    DeviceQuery, DeviceReads, DeviceSummary, IngestItem, IngestSink, Maintenance,
    OverspeedDayRecord, PassReads, PassRecord, Readings, SegmentDayRecord, StaleSegmentDay,
    StaleVehicleDay, StoreError, StoreStats, StoredSample, VehicleDayRecord, WriteReport,
    COMPACT_AFTER, COMPACT_WHEN_QUIET, COVERAGE_CHUNK_MS, COVERAGE_CONTEXT_MS,
};

/// SQLite's `synchronous` setting. `full` survives power loss after a commit; `normal` survives
/// a process crash but may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    Normal,
    #[default]
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Reader connections kept open for the API.
    pub max_idle_readers: usize,
    pub dead_letter_caps: DeadLetterCaps,
}

/// How much the dead-letter store keeps: a rejected message beyond a cap is counted (by
/// scope, in `dead_letter_usage`, and in [`WriteReport::dead_letters_not_kept`]) but not
/// kept. Sizes count payload, topic and detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterCaps {
    /// Per device named by the topic (topics naming none share one). Default 16 MiB.
    pub per_device_bytes: u64,
    /// All dead letters together. Default 1 GiB.
    pub total_bytes: u64,
}

impl Default for DeadLetterCaps {
    fn default() -> Self {
        DeadLetterCaps {
            per_device_bytes: 16 << 20,
            total_bytes: 1 << 30,
        }
    }
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::default(),
            max_idle_readers: 4,
            dead_letter_caps: DeadLetterCaps::default(),
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    /// `None` once closed.
    writer: Mutex<Option<Connection>>,
    idle_readers: Mutex<Vec<Connection>>,
    closed: std::sync::atomic::AtomicBool,
    /// Taken only under the writer's lock.
    sources: Mutex<provenance::SourceCache>,
    /// Taken only under the writer's lock.
    open_hours: Mutex<fixes::OpenHours>,
    /// Signalled after a commit that stored fixes (made coverage chunks stale).
    coverage_work: tokio::sync::Notify,
}

/// A transaction that takes the write lock when it begins. A deferred one would start as a
/// reader and fail at once with "database is locked" when it tries to write after another
/// process (ingest beside a separate coverage stage) committed meanwhile: SQLite cannot wait
/// for a lock on a snapshot that is already stale. Begun immediately, it waits for the other
/// writer (`busy_timeout`).
fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
}

fn open_connection(config: &SqliteConfig) -> Result<Connection, StoreError> {
    let conn = Connection::open(&config.path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match config.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    Ok(conn)
}

impl SqliteStore {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut writer = open_connection(&config)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                config,
                writer: Mutex::new(Some(writer)),
                idle_readers: Mutex::new(Vec::new()),
                closed: Default::default(),
                sources: Default::default(),
                open_hours: Default::default(),
                coverage_work: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.config.path
    }

    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || {
            let mut guard = inner.writer.lock().expect("writer lock poisoned");
            let conn = guard.as_mut().ok_or(StoreError::Closed)?;
            f(conn)
        })
        .await
    }

    async fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || {
            if inner.is_closed() {
                return Err(StoreError::Closed);
            }
            let pooled = inner.idle_readers.lock().expect("pool lock poisoned").pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.config)?,
            };
            let result = f(&conn);
            let mut idle = inner.idle_readers.lock().expect("pool lock poisoned");
            // A reader that was busy while the store closed is not kept.
            if idle.len() < inner.config.max_idle_readers && !inner.is_closed() {
                idle.push(conn);
            }
            result
        })
        .await
    }
}

impl Inner {
    /// Readers ask this instead of the writer's lock, which a commit holds.
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

const BRUSH: i64 = 1;
const VACUUM: i64 = 2;
const WATER_PUMP: i64 = 4;
const SPRAY: i64 = 8;

fn work_flags(w: &WorkState) -> i64 {
    [
        (w.brush, BRUSH),
        (w.vacuum, VACUUM),
        (w.water_pump, WATER_PUMP),
        (w.spray, SPRAY),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, bit)| bit)
    .sum()
}

fn work_state(flags: i64) -> WorkState {
    WorkState {
        brush: flags & BRUSH != 0,
        vacuum: flags & VACUUM != 0,
        water_pump: flags & WATER_PUMP != 0,
        spray: flags & SPRAY != 0,
    }
}

/// The device time that keys a status change: a last will carries none, so its receive time.
fn status_time(message: &Decoded, received: Timestamp) -> Option<(Timestamp, DeviceState)> {
    match &message.body {
        Body::Status(s) => Some((s.time.unwrap_or(received), s.state)),
        _ => None,
    }
}

fn write_items(
    tx: &Transaction,
    sources: &mut provenance::BatchSources,
    hours: &mut fixes::BatchHours,
    caps: &DeadLetterCaps,
    items: &[IngestItem],
) -> Result<WriteReport, StoreError> {
    let mut report = WriteReport::default();
    for item in items {
        match item {
            IngestItem::Accepted {
                message,
                received,
                delivery,
            } => {
                let key = upsert_device(tx, message, *received)?;
                let source =
                    sources.source(tx, delivery, &message.device_id, message.kind, *received)?;
                let inserted = insert_body(tx, hours, key, source, message, *received)?;
                for time_ms in &inserted.times_ms {
                    sources.note_day(tx, key, *time_ms, source)?;
                }
                report.records_inserted += inserted.records;
                report.fixes_inserted += inserted.fixes;
                let conflicts = inserted.conflicts.len() as u64;
                report.duplicate_records +=
                    record_count(&message.body) - inserted.records - conflicts;
                report.conflicting_fixes += conflicts;
                for (fix, apart_m) in inserted.conflicts {
                    // Kept apart as the message it would have been alone, with the reason.
                    let topic = format!(
                        "{TOPIC_PREFIX}/{}/{}/fixes",
                        message.kind.as_str(),
                        message.device_id
                    );
                    let time = fix.time;
                    let payload = serde_json::to_vec(&FixBatch {
                        device_id: Some(message.device_id.clone()),
                        fixes: vec![fix],
                    })
                    .expect("a fix serializes");
                    let detail = format!(
                        "fixes: another fix of {time} is stored {apart_m:.1} m away (of two \
                         places at one time the one of smaller latitude, then longitude, is kept)"
                    );
                    report.count(insert_dead_letter(
                        tx,
                        caps,
                        &topic,
                        &payload,
                        RejectReason::ConflictingFix,
                        &detail,
                        *received,
                    )?);
                }
            }
            IngestItem::Rejected {
                topic,
                payload,
                reason,
                detail,
                received,
            } => {
                report.count(insert_dead_letter(
                    tx, caps, topic, payload, *reason, detail, *received,
                )?);
            }
        }
    }
    Ok(report)
}

/// What became of a rejected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadLetterOutcome {
    Kept,
    /// The same topic and payload was kept before: its count and times were updated.
    SeenBefore,
    /// A cap was reached: counted, not kept.
    NotKept,
}

impl WriteReport {
    fn count(&mut self, outcome: DeadLetterOutcome) {
        match outcome {
            DeadLetterOutcome::Kept => self.dead_letters_inserted += 1,
            DeadLetterOutcome::SeenBefore => {}
            DeadLetterOutcome::NotKept => self.dead_letters_not_kept += 1,
        }
    }
}

/// The device a dead letter's topic names (`cleanfleet/v1/{kind}/{id}/...`), or "".
fn topic_device(topic: &str) -> &str {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("cleanfleet"), Some(_), Some(_), Some(id)) if is_valid_device_id(id) => id,
        _ => "",
    }
}

/// Keeps a rejected message unless it was kept before or a cap is reached.
fn insert_dead_letter(
    tx: &Transaction,
    caps: &DeadLetterCaps,
    topic: &str,
    payload: &[u8],
    reason: RejectReason,
    detail: &str,
    received: Timestamp,
) -> Result<DeadLetterOutcome, StoreError> {
    let digest =
        xxhash_rust::xxh3::xxh3_128(&[topic.as_bytes(), b"\0", payload].concat()).to_be_bytes();
    let seen = tx
        .prepare_cached(
            "UPDATE dead_letters SET
                 times_seen = times_seen + 1,
                 first_received_ms = min(first_received_ms, ?2),
                 last_received_ms = max(last_received_ms, ?2)
             WHERE digest = ?1",
        )?
        .execute(params![&digest[..], ms(received)])?;
    if seen > 0 {
        return Ok(DeadLetterOutcome::SeenBefore);
    }
    let device = topic_device(topic);
    let bytes = (payload.len() + topic.len() + detail.len()) as i64;
    let scopes = [format!("device:{device}"), "total".to_owned()];
    let mut used = tx.prepare_cached("SELECT bytes FROM dead_letter_usage WHERE scope = ?1")?;
    let mut used = |scope: &str| -> Result<i64, StoreError> {
        Ok(used
            .query_row([scope], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    };
    let fits = used(&scopes[0])? + bytes <= caps.per_device_bytes as i64
        && used(&scopes[1])? + bytes <= caps.total_bytes as i64;
    let mut usage = tx.prepare_cached(
        "INSERT INTO dead_letter_usage (scope, bytes, not_kept, not_kept_bytes)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (scope) DO UPDATE SET
             bytes = bytes + excluded.bytes,
             not_kept = not_kept + excluded.not_kept,
             not_kept_bytes = not_kept_bytes + excluded.not_kept_bytes",
    )?;
    if !fits {
        for scope in &scopes {
            usage.execute(params![scope, 0, 1, bytes])?;
        }
        return Ok(DeadLetterOutcome::NotKept);
    }
    tx.prepare_cached(
        "INSERT INTO dead_letters (digest, topic, reason, detail, payload,
             first_received_ms, last_received_ms, times_seen, device_id, kept_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7, ?8)",
    )?
    .execute(params![
        &digest[..],
        topic,
        reason.as_str(),
        detail,
        payload,
        ms(received),
        device,
        bytes
    ])?;
    for scope in &scopes {
        usage.execute(params![scope, bytes, 0, 0])?;
    }
    Ok(DeadLetterOutcome::Kept)
}

/// What one message's records did to the store.
struct Inserted {
    /// New rows of device data.
    records: u64,
    fixes: u64,
    /// Device times of the new rows.
    times_ms: Vec<i64>,
    /// Fixes of the same device time at two places: the one not kept (the new one, or the
    /// stored one it replaced), with how far apart the two are.
    conflicts: Vec<(Fix, f64)>,
}

fn record_count(body: &Body) -> u64 {
    match body {
        Body::Fixes(f) => f.len() as u64,
        _ => 1,
    }
}

fn upsert_device(tx: &Transaction, m: &Decoded, received: Timestamp) -> Result<i64, StoreError> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO devices (device_id, kind, first_received_ms, last_received_ms)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (device_id) DO UPDATE SET
                 first_received_ms = min(first_received_ms, excluded.first_received_ms),
                 last_received_ms = max(last_received_ms, excluded.last_received_ms)
             RETURNING device_key",
        )?
        .query_row(params![m.device_id, m.kind.as_str(), ms(received)], |r| {
            r.get(0)
        })?)
}

/// Insert the records of one message.
fn insert_body(
    tx: &Transaction,
    open_hours: &mut fixes::BatchHours,
    key: i64,
    source: i64,
    m: &Decoded,
    received: Timestamp,
) -> Result<Inserted, StoreError> {
    let rec = ms(received);
    let inserted = match &m.body {
        Body::Fixes(fixes) => {
            // The hours the fixes fall in take rows (a compacted one opens again) before any
            // fix is checked against what is stored.
            let hours: BTreeSet<i64> = fixes.iter().map(|f| fixes::hour_of(ms(f.time))).collect();
            for hour in hours {
                open_hours.open(tx, key, hour, rec)?;
            }
            let mut n = 0;
            // Replacing fixes too: their row has the new delivery's source.
            let mut times_ms = Vec::new();
            let mut conflicts = Vec::new();
            // Hours whose own fixes change, and hours that hold them as context.
            let (mut own_hours, mut context_hours) = (BTreeSet::new(), BTreeSet::new());
            let insert = |f: &Fix| fixes::insert_row(tx, key, f, rec, source);
            for f in fixes {
                if insert(f)? {
                    n += 1;
                    let t = ms(f.time);
                    times_ms.push(t);
                    own_hours.insert(t.div_euclid(COVERAGE_CHUNK_MS));
                    for around in [t - COVERAGE_CONTEXT_MS, t + COVERAGE_CONTEXT_MS] {
                        context_hours.insert(around.div_euclid(COVERAGE_CHUNK_MS));
                    }
                } else {
                    // A redelivery is the same fix again; another place is a conflict. Of
                    // the two, the one with the smaller (lat, lon) is kept and the other
                    // becomes the dead letter, whichever arrived first: what is stored does
                    // not depend on arrival order.
                    let stored: Fix = tx
                        .prepare_cached(&format!(
                            "SELECT {FIX_COLUMNS} FROM fixes WHERE device_key = ?1 AND time_ms = ?2"
                        ))?
                        .query_row(params![key, ms(f.time)], fix_from_row)?;
                    let apart_m = f.apart_m(stored.lat, stored.lon);
                    if apart_m <= SAME_PLACE_M {
                        // A redelivery.
                    } else if f
                        .lat
                        .total_cmp(&stored.lat)
                        .then(f.lon.total_cmp(&stored.lon))
                        == std::cmp::Ordering::Less
                    {
                        tx.prepare_cached(
                            "DELETE FROM fixes WHERE device_key = ?1 AND time_ms = ?2",
                        )?
                        .execute(params![key, ms(f.time)])?;
                        insert(f)?;
                        let t = ms(f.time);
                        times_ms.push(t);
                        own_hours.insert(t.div_euclid(COVERAGE_CHUNK_MS));
                        for around in [t - COVERAGE_CONTEXT_MS, t + COVERAGE_CONTEXT_MS] {
                            context_hours.insert(around.div_euclid(COVERAGE_CHUNK_MS));
                        }
                        conflicts.push((stored, apart_m));
                    } else {
                        conflicts.push((f.clone(), apart_m));
                    }
                }
            }
            let stored_ms = ms(Timestamp::now());
            let mut stale = tx.prepare_cached(
                "INSERT INTO coverage_chunks (device_key, hour, version, computed_version,
                     stale_since_ms)
                 VALUES (?1, ?2, 1, 0, ?3)
                 ON CONFLICT DO UPDATE SET version = version + 1,
                     stale_since_ms = CASE WHEN version = computed_version
                         THEN excluded.stale_since_ms ELSE stale_since_ms END",
            )?;
            for hour in &own_hours {
                stale.execute(params![key, hour, stored_ms])?;
            }
            // An hour without fixes of its own has no passes (no pass spans a whole hour of
            // silence): context alone makes only a chunk that exists stale. A live vehicle
            // thus does not make the next hour's chunk in the last minutes of each hour.
            let mut stale_context = tx.prepare_cached(
                "UPDATE coverage_chunks SET version = version + 1,
                     stale_since_ms = CASE WHEN version = computed_version
                         THEN ?3 ELSE stale_since_ms END
                 WHERE device_key = ?1 AND hour = ?2",
            )?;
            for hour in context_hours.difference(&own_hours) {
                stale_context.execute(params![key, hour, stored_ms])?;
            }
            return Ok(Inserted {
                records: n,
                fixes: n,
                times_ms,
                conflicts,
            });
        }
        Body::Bin(r) => tx
            .prepare_cached(
                "INSERT INTO bin_readings (device_key, time_ms, seq, fill_ratio, temperature_c,
                     tilted, lid_open, battery_ratio, received_ms, source_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                key,
                ms(r.time),
                r.seq.map(|s| s as i64),
                r.fill_ratio,
                r.temperature_c,
                r.tilted,
                r.lid_open,
                r.battery_ratio,
                rec,
                source
            ])?,
        Body::Toilet(r) => tx
            .prepare_cached(
                "INSERT INTO toilet_readings (device_key, time_ms, seq, nh3_mg_m3, h2s_mg_m3,
                     occupancy, footfall, water_m3, power_kwh, received_ms, source_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                key,
                ms(r.time),
                r.seq.map(|s| s as i64),
                r.nh3_mg_m3,
                r.h2s_mg_m3,
                r.occupancy,
                r.footfall,
                r.water_m3,
                r.power_kwh,
                rec,
                source
            ])?,
        Body::Ticket(t) => tx
            .prepare_cached(
                "INSERT INTO weighbridge_tickets (device_key, ticket_id, vehicle_id, time_in_ms,
                     time_out_ms, gross_kg, tare_kg, net_kg, received_ms, source_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                key,
                t.ticket_id,
                t.vehicle_id,
                ms(t.time_in),
                ms(t.time_out),
                t.gross_kg,
                t.tare_kg,
                t.net_kg,
                rec,
                source
            ])?,
        Body::Sample(s) => tx
            .prepare_cached(
                "INSERT INTO inspection_samples (device_key, sample_id, time_ms, lat, lon, grams,
                     area_m2, inspector, litter_count, photo_ref, received_ms, source_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                key,
                s.sample_id,
                ms(s.time),
                s.lat,
                s.lon,
                s.grams,
                s.area_m2,
                s.inspector,
                s.litter_count,
                s.photo_ref,
                rec,
                source
            ])?,
        Body::Status(s) => {
            let (time, state) = status_time(m, received).expect("status body");
            tx.prepare_cached(
                "INSERT INTO status_changes (device_key, time_ms, state, firmware, received_ms,
                     source_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                key,
                ms(time),
                state.as_str(),
                s.firmware,
                rec,
                source
            ])?
        }
    };
    let time = match &m.body {
        Body::Fixes(_) => unreachable!("fixes returned above"),
        Body::Bin(r) => r.time,
        Body::Toilet(r) => r.time,
        Body::Ticket(t) => t.time_out,
        Body::Sample(s) => s.time,
        Body::Status(_) => status_time(m, received).expect("status body").0,
    };
    Ok(Inserted {
        records: inserted as u64,
        fixes: 0,
        times_ms: if inserted > 0 {
            vec![ms(time)]
        } else {
            Vec::new()
        },
        conflicts: Vec::new(),
    })
}

const FIX_COLUMNS: &str = "time_ms, seq, lat, lon, speed_kmh, heading_deg, hdop, satellites,
    work_flags, water_tank_ratio, load_kg, odometer_m, lifter_cycles, sos";

fn fix_from_row(r: &Row) -> rusqlite::Result<Fix> {
    Ok(Fix {
        time: ts(r.get(0)?),
        seq: r.get::<_, Option<i64>>(1)?.map(|s| s as u64),
        lat: r.get(2)?,
        lon: r.get(3)?,
        speed_kmh: r.get(4)?,
        heading_deg: r.get(5)?,
        hdop: r.get(6)?,
        satellites: r.get(7)?,
        work: work_state(r.get(8)?),
        water_tank_ratio: r.get(9)?,
        load_kg: r.get(10)?,
        odometer_m: r.get(11)?,
        lifter_cycles: r.get::<_, Option<i64>>(12)?.map(|c| c as u64),
        sos: r.get(13)?,
    })
}

const BIN_READING_COLUMNS: &str =
    "time_ms, seq, fill_ratio, temperature_c, tilted, lid_open, battery_ratio";

/// A bin reading from a row of a device id (or NULL) and [`BIN_READING_COLUMNS`].
fn bin_reading_row(r: &rusqlite::Row) -> rusqlite::Result<BinReading> {
    Ok(BinReading {
        device_id: r.get(0)?,
        time: ts(r.get(1)?),
        seq: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
        fill_ratio: r.get(3)?,
        temperature_c: r.get(4)?,
        tilted: r.get(5)?,
        lid_open: r.get(6)?,
        battery_ratio: r.get(7)?,
    })
}

fn summarize(conn: &Connection, key: i64, row: DeviceRow) -> Result<DeviceSummary, StoreError> {
    let status = conn
        .prepare_cached(
            "SELECT time_ms, state, firmware FROM status_changes WHERE device_key = ?1
             ORDER BY time_ms DESC, state DESC LIMIT 1",
        )?
        .query_row([key], |r| {
            Ok((
                ts(r.get(0)?),
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    let mut summary = DeviceSummary {
        device_id: row.device_id,
        kind: row.kind,
        first_received: ts(row.first_received_ms),
        last_received: ts(row.last_received_ms),
        status: status.as_ref().map(|(_, s, _)| {
            if s == "online" {
                DeviceState::Online
            } else {
                DeviceState::Offline
            }
        }),
        status_time: status.as_ref().map(|(t, _, _)| *t),
        firmware: status.and_then(|(_, _, f)| f),
        latest_fix: None,
        latest_bin_reading: None,
        latest_toilet_reading: None,
    };
    match row.kind {
        k if k.reports_fixes() => {
            summary.latest_fix = fixes::newest(conn, key)?.map(|f| f.fix);
        }
        DeviceKind::Bin => {
            summary.latest_bin_reading = conn
                .prepare_cached(&format!(
                    "SELECT NULL, {BIN_READING_COLUMNS} FROM bin_readings
                     WHERE device_key = ?1 ORDER BY time_ms DESC LIMIT 1"
                ))?
                .query_row([key], bin_reading_row)
                .optional()?;
        }
        DeviceKind::Toilet => {
            summary.latest_toilet_reading = conn
                .prepare_cached(
                    "SELECT time_ms, seq, nh3_mg_m3, h2s_mg_m3, occupancy, footfall, water_m3,
                         power_kwh FROM toilet_readings WHERE device_key = ?1
                     ORDER BY time_ms DESC LIMIT 1",
                )?
                .query_row([key], |r| {
                    Ok(ToiletReading {
                        device_id: None,
                        time: ts(r.get(0)?),
                        seq: r.get::<_, Option<i64>>(1)?.map(|s| s as u64),
                        nh3_mg_m3: r.get(2)?,
                        h2s_mg_m3: r.get(3)?,
                        occupancy: r.get(4)?,
                        footfall: r.get(5)?,
                        water_m3: r.get(6)?,
                        power_kwh: r.get(7)?,
                    })
                })
                .optional()?;
        }
        _ => {}
    }
    Ok(summary)
}

struct DeviceRow {
    device_id: String,
    kind: DeviceKind,
    first_received_ms: i64,
    last_received_ms: i64,
}

const DEVICE_COLUMNS: &str = "device_key, device_id, kind, first_received_ms, last_received_ms";

fn device_row(r: &Row) -> rusqlite::Result<(i64, DeviceRow)> {
    let kind: String = r.get(2)?;
    let kind = kind.parse().map_err(|()| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown device kind {kind:?}").into(),
        )
    })?;
    Ok((
        r.get(0)?,
        DeviceRow {
            device_id: r.get(1)?,
            kind,
            first_received_ms: r.get(3)?,
            last_received_ms: r.get(4)?,
        },
    ))
}

/// A pass's columns as [`pass_row`] reads them (`p`: passes).
const PASS_COLUMNS: &str = "p.device_key, p.segment, p.forward, p.from_m, p.to_m, p.start_ms,
    p.end_ms, p.work, p.invalid, p.max_speed_kmh";

fn pass_row(r: &Row, devices: &DeviceIds) -> rusqlite::Result<PassRecord> {
    Ok(PassRecord {
        device_id: devices.of_column(r, 0)?,
        segment: r.get(1)?,
        forward: r.get(2)?,
        from_m: r.get(3)?,
        to_m: r.get(4)?,
        start: ts(r.get(5)?),
        end: ts(r.get(6)?),
        work: named_column(r, 7, WorkType::parse)?,
        invalid: match r.get_ref(8)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(named_column(r, 8, InvalidReason::parse)?),
        },
        max_speed_kmh: r.get(9)?,
    })
}

/// A text column holding one of an enum's names (`parse` gives `None` for others).
fn named_column<T>(r: &Row, column: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text = text_column(r, column)?;
    parse(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("unknown name {text:?}").into(),
        )
    })
}

/// A text column, borrowed from the row.
fn text_column<'r>(r: &'r Row, column: usize) -> rusqlite::Result<&'r str> {
    Ok(r.get_ref(column)?.as_str()?)
}

/// A local day stored as `YYYY-MM-DD`.
fn date_column(r: &Row, column: usize) -> rusqlite::Result<Date> {
    parse_date(text_column(r, column)?, column)
}

fn parse_date(text: &str, column: usize) -> rusqlite::Result<Date> {
    text.parse().map_err(|e: jiff::Error| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

/// A day column of rows in day order, parsed once per day.
#[derive(Default)]
struct DayColumn {
    last: Option<(String, Date)>,
}

impl DayColumn {
    fn get(&mut self, r: &Row, column: usize) -> rusqlite::Result<Date> {
        let text = text_column(r, column)?;
        match &self.last {
            Some((last, day)) if last == text => Ok(*day),
            _ => {
                let day = parse_date(text, column)?;
                self.last = Some((text.to_owned(), day));
                Ok(day)
            }
        }
    }
}

/// Makes the device's `days` stale: its passes there changed.
fn mark_vehicle_days_stale(
    tx: &Transaction,
    device_key: i64,
    days: &BTreeSet<Date>,
) -> Result<(), StoreError> {
    let mut stale = tx.prepare_cached(
        "INSERT INTO stale_vehicle_days (day, device_key, version) VALUES (?1, ?2, 1)
         ON CONFLICT (day, device_key) DO UPDATE SET version = version + 1",
    )?;
    for day in days {
        stale.execute(params![day.to_string(), device_key])?;
    }
    Ok(())
}

/// The section column of a vehicle's day (empty: outside every section).
fn section_column(r: &Row, column: usize) -> rusqlite::Result<Option<String>> {
    let section = text_column(r, column)?;
    Ok((!section.is_empty()).then(|| section.to_owned()))
}

/// Every device's id by its key, read once for a query of many rows instead of a join.
struct DeviceIds(HashMap<i64, DeviceId>);

fn device_ids(conn: &Connection) -> Result<DeviceIds, StoreError> {
    Ok(DeviceIds(
        conn.prepare_cached("SELECT device_key, device_id FROM devices")?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?.into())))?
            .collect::<Result<_, _>>()?,
    ))
}

impl DeviceIds {
    /// The id of one device alone (none if it is unknown).
    fn one(conn: &Connection, device_id: &str) -> Result<DeviceIds, StoreError> {
        Ok(DeviceIds(
            conn.prepare_cached("SELECT device_key FROM devices WHERE device_id = ?1")?
                .query_row([device_id], |r| r.get(0))
                .optional()?
                .map(|key| (key, DeviceId::from(device_id)))
                .into_iter()
                .collect(),
        ))
    }

    fn of(&self, device_key: i64) -> Result<DeviceId, StoreError> {
        self.0
            .get(&device_key)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("no device with key {device_key}")))
    }

    /// The id of the device whose key is in `column`.
    fn of_column(&self, r: &Row, column: usize) -> rusqlite::Result<DeviceId> {
        let device_key = r.get(column)?;
        self.0.get(&device_key).cloned().ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                column,
                rusqlite::types::Type::Integer,
                format!("no device with key {device_key}").into(),
            )
        })
    }
}

/// Vehicles' days with overspeed work in a range of days.
fn overspeed_days_sql() -> String {
    format!(
        "SELECT day, device_key, section, overspeed_runs FROM vehicle_days
         WHERE day >= ?1 AND day <= ?2 AND overspeed_runs != '{NO_RUNS}'
         ORDER BY day, device_key, section, road_class"
    )
}

/// The devices with passes in a section on a range of days.
const DEVICES_IN_SECTION_SQL: &str = "SELECT DISTINCT device_key FROM vehicle_days
     WHERE section = ?1 AND day >= ?2 AND day <= ?3 AND passes > 0";

/// How a vehicle's day without overspeed work stores its runs.
const NO_RUNS: &str = "[]";

/// Runs of overspeed work as stored: a JSON array of `[start_ms, end_ms]`.
fn runs_column(r: &Row, column: usize) -> rusqlite::Result<Vec<(Timestamp, Timestamp)>> {
    let text = text_column(r, column)?;
    if text == NO_RUNS {
        return Ok(Vec::new());
    }
    let runs: Vec<(i64, i64)> = serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(runs.into_iter().map(|(a, b)| (ts(a), ts(b))).collect())
}

fn count(conn: &Connection, table: &str) -> Result<u64, StoreError> {
    Ok(
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e.to_string())
            }
            _ => StoreError::Backend {
                backend: "sqlite",
                source: Box::new(e),
            },
        }
    }
}

#[async_trait]
impl IngestSink for SqliteStore {
    async fn write_batch(&self, items: Vec<IngestItem>) -> Result<WriteReport, StoreError> {
        let inner = self.inner.clone();
        self.with_writer(move |conn| {
            let mut cache = inner.sources.lock().expect("source cache lock poisoned");
            let tx = write_transaction(conn)?;
            let mut sources = cache.begin(&tx)?;
            let mut open_hours = inner.open_hours.lock().expect("open hours lock poisoned");
            let mut hours = open_hours.begin(&tx)?;
            let report = write_items(
                &tx,
                &mut sources,
                &mut hours,
                &inner.config.dead_letter_caps,
                &items,
            )?;
            let outcome = sources.finish();
            tx.commit()?;
            cache.committed(outcome);
            open_hours.committed(hours);
            if report.fixes_inserted > 0 {
                // One permit is kept when nobody waits: a wake-up is never lost.
                inner.coverage_work.notify_one();
            }
            Ok(report)
        })
        .await
    }
}

#[async_trait]
impl DeviceReads for SqliteStore {
    async fn devices(&self, query: DeviceQuery) -> Result<Vec<DeviceSummary>, StoreError> {
        self.with_reader(move |conn| {
            let kinds: Vec<&str> = query.kinds.iter().map(|k| k.as_str()).collect();
            let placeholders = |n: usize| vec!["?"; n].join(", ");
            let kind_filter = if kinds.is_empty() {
                String::new()
            } else {
                format!("AND kind IN ({})", placeholders(kinds.len()))
            };
            let id_filter = match &query.only {
                None => String::new(),
                Some(ids) => format!("AND device_id IN ({})", placeholders(ids.len())),
            };
            let sql = format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id > ? {kind_filter} {id_filter}
                 ORDER BY device_id LIMIT ?"
            );
            let mut values: Vec<rusqlite::types::Value> =
                vec![query.after.unwrap_or_default().into()];
            values.extend(kinds.iter().map(|k| k.to_string().into()));
            values.extend(query.only.into_iter().flatten().map(Into::into));
            values.push(i64::from(query.limit).into());
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), device_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(key, row)| summarize(conn, key, row))
                .collect()
        })
        .await
    }

    async fn device(&self, device_id: &str) -> Result<Option<DeviceSummary>, StoreError> {
        let device_id = device_id.to_owned();
        self.with_reader(move |conn| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"
                ))?
                .query_row([device_id], device_row)
                .optional()?;
            row.map(|(key, row)| summarize(conn, key, row)).transpose()
        })
        .await
    }

    async fn track(
        &self,
        device_id: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<Fix>, StoreError> {
        let device_id = device_id.to_owned();
        self.with_reader(move |conn| {
            let key: Option<i64> = conn
                .prepare_cached("SELECT device_key FROM devices WHERE device_id = ?1")?
                .query_row([&device_id], |r| r.get(0))
                .optional()?;
            let Some(key) = key else {
                return Ok(Vec::new());
            };
            Ok(fixes::between(conn, key, ms(from), ms(to), limit as usize)?
                .into_iter()
                .map(|f| f.fix)
                .collect())
        })
        .await
    }

    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        self.with_reader(move |conn| {
            let letters = conn
                .prepare_cached(
                    "SELECT id, topic, reason, detail, payload, first_received_ms,
                         last_received_ms, times_seen
                     FROM dead_letters
                     WHERE id < ?1 AND (?2 IS NULL OR reason = ?2)
                     ORDER BY id DESC LIMIT ?3",
                )?
                .query_map(
                    params![
                        query.before_id.unwrap_or(i64::MAX),
                        query.reason.map(|r| r.as_str()),
                        query.limit
                    ],
                    |r| {
                        Ok(DeadLetter {
                            id: r.get(0)?,
                            topic: r.get(1)?,
                            reason: r.get(2)?,
                            detail: r.get(3)?,
                            payload: r.get(4)?,
                            first_received: ts(r.get(5)?),
                            last_received: ts(r.get(6)?),
                            times_seen: r.get::<_, i64>(7)? as u64,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(letters)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with_reader(|conn| {
            let mut by_reason = BTreeMap::new();
            let mut stmt =
                conn.prepare_cached("SELECT reason, count(*) FROM dead_letters GROUP BY reason")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                by_reason.insert(r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64);
            }
            let (dead_letter_bytes, dead_letters_not_kept): (i64, i64) = conn
                .query_row(
                    "SELECT bytes, not_kept FROM dead_letter_usage WHERE scope = 'total'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .unwrap_or((0, 0));
            let (dead_letter_bytes, dead_letters_not_kept) =
                (dead_letter_bytes as u64, dead_letters_not_kept as u64);
            let (fix_count, oldest, newest) = fixes::census(conn)?;
            Ok(StoreStats {
                devices: count(conn, "devices")?,
                fixes: fix_count,
                bin_readings: count(conn, "bin_readings")?,
                toilet_readings: count(conn, "toilet_readings")?,
                weighbridge_tickets: count(conn, "weighbridge_tickets")?,
                inspection_samples: count(conn, "inspection_samples")?,
                status_changes: count(conn, "status_changes")?,
                dead_letters: count(conn, "dead_letters")?,
                dead_letters_by_reason: by_reason,
                dead_letter_bytes,
                dead_letters_not_kept,
                oldest_fix: oldest.map(ts),
                newest_fix: newest.map(ts),
            })
        })
        .await
    }

    async fn received_any(&self, from: Timestamp, to: Timestamp) -> Result<bool, StoreError> {
        self.with_reader(move |conn| {
            // Device by device, each a primary-key range; stops at the first that reported.
            let any = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM devices d WHERE
                       EXISTS (SELECT 1 FROM bin_readings WHERE device_key = d.device_key
                               AND time_ms >= ?1 AND time_ms < ?2)
                       OR EXISTS (SELECT 1 FROM toilet_readings WHERE device_key = d.device_key
                               AND time_ms >= ?1 AND time_ms < ?2))",
                )?
                .query_row(params![ms(from), ms(to)], |r| r.get(0))?;
            Ok(any || fixes::any_between(conn, ms(from), ms(to))?)
        })
        .await
    }
}

#[async_trait]
impl Readings for SqliteStore {
    async fn samples(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredSample>, StoreError> {
        self.with_reader(move |conn| {
            let samples = conn
                .prepare_cached(
                    "SELECT d.device_id, s.sample_id, s.time_ms, s.lat, s.lon, s.grams, s.area_m2,
                         s.inspector, s.litter_count, s.photo_ref, src.source_key, src.trust,
                         src.via, src.principal, src.credential_ms
                     FROM inspection_samples s JOIN devices d USING (device_key)
                         JOIN sources src ON src.source_key = s.source_key
                     WHERE s.time_ms >= ?1 AND s.time_ms < ?2
                     ORDER BY s.time_ms, d.device_id, s.sample_id",
                )?
                .query_map(params![ms(from), ms(to)], |r| {
                    let device_id: String = r.get(0)?;
                    Ok(StoredSample {
                        device_id: device_id.clone(),
                        source: provenance::source_from_row(r, 10)?,
                        sample: InspectionSample {
                            device_id: Some(device_id),
                            sample_id: r.get(1)?,
                            time: ts(r.get(2)?),
                            lat: r.get(3)?,
                            lon: r.get(4)?,
                            grams: r.get(5)?,
                            area_m2: r.get(6)?,
                            inspector: r.get(7)?,
                            litter_count: r.get(8)?,
                            photo_ref: r.get(9)?,
                        },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(samples)
        })
        .await
    }

    async fn bin_readings(
        &self,
        from: Timestamp,
        to: Timestamp,
        emptied_fill_ratio: f64,
        lookback: SignedDuration,
    ) -> Result<Vec<BinReading>, StoreError> {
        let earliest = from - lookback;
        self.with_reader(move |conn| {
            // Bin by bin, so that each range is a primary-key range.
            let readings = conn
                .prepare_cached(&format!(
                    "SELECT d.device_id, {BIN_READING_COLUMNS}
                     FROM devices d JOIN bin_readings b
                       ON b.device_key = d.device_key AND b.time_ms < ?2 AND b.time_ms >= coalesce(
                            (SELECT max(e.time_ms) FROM bin_readings e
                             WHERE e.device_key = d.device_key AND e.time_ms >= ?4
                               AND e.time_ms < ?1 AND e.fill_ratio <= ?3),
                            ?1)
                     WHERE d.kind = 'bin'
                     ORDER BY d.device_id, b.time_ms"
                ))?
                .query_map(
                    params![ms(from), ms(to), emptied_fill_ratio, ms(earliest)],
                    bin_reading_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(readings)
        })
        .await
    }

    async fn sample_exists(&self, device_id: &str, sample_id: &str) -> Result<bool, StoreError> {
        let (device_id, sample_id) = (device_id.to_owned(), sample_id.to_owned());
        self.with_reader(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM inspection_samples s JOIN devices d USING (device_key)
                     WHERE d.device_id = ?1 AND s.sample_id = ?2",
                )?
                .exists(params![device_id, sample_id])?)
        })
        .await
    }
}

#[async_trait]
impl CoverageQueue for SqliteStore {
    async fn use_coverage_network(&self, network_id: &str) -> Result<bool, StoreError> {
        let network_id = network_id.to_owned();
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT value FROM coverage_meta WHERE key = 'network'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let changed = current.as_deref() != Some(network_id.as_str());
            if changed {
                tx.execute("DELETE FROM passes", [])?;
                for table in [
                    "segment_days",
                    "stale_segment_days",
                    "vehicle_days",
                    "stale_vehicle_days",
                ] {
                    tx.execute(&format!("DELETE FROM {table}"), [])?;
                }
                // A version no computation can have: every chunk is stale.
                tx.execute(
                    "UPDATE coverage_chunks SET computed_version = -1,
                         stale_since_ms = coalesce(stale_since_ms, ?1)",
                    [ms(Timestamp::now())],
                )?;
                tx.execute(
                    "INSERT INTO coverage_meta (key, value) VALUES ('network', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [&network_id],
                )?;
            }
            tx.commit()?;
            Ok(changed && current.is_some())
        })
        .await
    }

    async fn stale_chunks(&self, limit: u32) -> Result<Vec<CoverageChunk>, StoreError> {
        self.with_reader(move |conn| {
            let listed_at = ts(ms(Timestamp::now()));
            let chunks = conn
                .prepare_cached(
                    "SELECT d.device_id, d.kind, c.hour, c.version, c.stale_since_ms
                     FROM coverage_chunks c JOIN devices d USING (device_key)
                     WHERE c.version <> c.computed_version
                     ORDER BY c.stale_since_ms, c.hour, c.device_key LIMIT ?1",
                )?
                .query_map([limit], |r| {
                    let kind: String = r.get(1)?;
                    Ok(CoverageChunk {
                        device_id: r.get(0)?,
                        kind: kind.parse().map_err(|_| {
                            rusqlite::Error::InvalidColumnType(
                                1,
                                "kind".into(),
                                rusqlite::types::Type::Text,
                            )
                        })?,
                        start: ts(r.get::<_, i64>(2)? * COVERAGE_CHUNK_MS),
                        version: r.get(3)?,
                        stale_since: r.get::<_, Option<i64>>(4)?.map(ts),
                        listed_at,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(chunks)
        })
        .await
    }

    async fn coverage_work(&self) {
        self.inner.coverage_work.notified().await
    }

    async fn coverage_backlog(&self) -> Result<CoverageBacklog, StoreError> {
        self.with_reader(|conn| {
            let (n, oldest, waiting_since): (i64, Option<i64>, Option<i64>) = conn.query_row(
                "SELECT count(*), min(hour), min(stale_since_ms) FROM coverage_chunks
                 WHERE version <> computed_version",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(CoverageBacklog {
                stale_chunks: n as u64,
                stale_from: oldest.map(|hour| ts(hour * COVERAGE_CHUNK_MS)),
                waiting_since: waiting_since.map(ts),
                stale_segment_days: count(conn, "stale_segment_days")?,
                stale_vehicle_days: count(conn, "stale_vehicle_days")?,
            })
        })
        .await
    }

    async fn put_passes(
        &self,
        chunk: CoverageChunk,
        passes: Vec<PassRecord>,
        time_zone: &TimeZone,
    ) -> Result<(), StoreError> {
        let time_zone = time_zone.clone();
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let key: i64 = tx.query_row(
                "SELECT device_key FROM devices WHERE device_id = ?1",
                [&chunk.device_id],
                |r| r.get(0),
            )?;
            let hour = ms(chunk.start).div_euclid(COVERAGE_CHUNK_MS);
            // The segments' days of the old passes and the new: their status changes.
            let day = |start_ms: i64| time_zone.to_datetime(ts(start_ms)).date();
            let mut changed: BTreeSet<(Date, u32)> = tx
                .prepare_cached(
                    "SELECT segment, start_ms FROM passes WHERE device_key = ?1 AND hour = ?2",
                )?
                .query_map(params![key, hour], |r| {
                    Ok((day(r.get(1)?), r.get::<_, u32>(0)?))
                })?
                .collect::<Result<_, _>>()?;
            changed.extend(passes.iter().map(|p| (day(ms(p.start)), p.segment)));
            let device_days: BTreeSet<Date> = changed.iter().map(|(day, _)| *day).collect();
            tx.execute(
                "DELETE FROM passes WHERE device_key = ?1 AND hour = ?2",
                params![key, hour],
            )?;
            {
                let mut stale = tx.prepare_cached(
                    "INSERT INTO stale_segment_days (day, segment, version) VALUES (?1, ?2, 1)
                     ON CONFLICT (day, segment) DO UPDATE SET version = version + 1",
                )?;
                for (day, segment) in &changed {
                    stale.execute(params![day.to_string(), segment])?;
                }
                mark_vehicle_days_stale(&tx, key, &device_days)?;
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO passes (device_key, hour, n, segment, forward, from_m, to_m,
                         start_ms, end_ms, work, invalid, max_speed_kmh)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?;
                for (n, p) in passes.iter().enumerate() {
                    insert.execute(params![
                        key,
                        hour,
                        n as i64,
                        p.segment,
                        p.forward,
                        p.from_m,
                        p.to_m,
                        ms(p.start),
                        ms(p.end),
                        p.work.as_str(),
                        p.invalid.map(InvalidReason::as_str),
                        p.max_speed_kmh
                    ])?;
                }
            }
            // Fixes that landed after the chunk was listed may be missing from these passes:
            // they wait from then.
            tx.execute(
                "UPDATE coverage_chunks SET computed_version = ?3,
                     stale_since_ms = CASE WHEN version = ?3 THEN NULL ELSE ?4 END
                 WHERE device_key = ?1 AND hour = ?2",
                params![key, hour, chunk.version, ms(chunk.listed_at)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl PassReads for SqliteStore {
    async fn passes(
        &self,
        from: Timestamp,
        to: Timestamp,
        device_id: Option<String>,
    ) -> Result<Vec<PassRecord>, StoreError> {
        self.with_reader(move |conn| {
            // One device's passes need its id alone, not the fleet's (the coverage stage reads
            // a vehicle's day at a time).
            let devices = match &device_id {
                Some(id) => DeviceIds::one(conn, id)?,
                None => device_ids(conn)?,
            };
            let pass_row = |r: &Row| pass_row(r, &devices);
            let passes = match device_id {
                // One device's: a range of the primary key (its chunks' hours; a pass starts
                // in its chunk's hour, the hour either side is margin), not the whole fleet's.
                Some(device_id) => conn
                    .prepare_cached(&format!(
                        "SELECT {PASS_COLUMNS} FROM devices d JOIN passes p USING (device_key)
                         WHERE d.device_id = ?3 AND p.hour >= ?4 AND p.hour <= ?5
                           AND p.start_ms >= ?1 AND p.start_ms < ?2
                         ORDER BY p.start_ms, p.n"
                    ))?
                    .query_map(
                        params![
                            ms(from),
                            ms(to),
                            device_id,
                            ms(from).div_euclid(COVERAGE_CHUNK_MS) - 1,
                            ms(to).div_euclid(COVERAGE_CHUNK_MS) + 1
                        ],
                        pass_row,
                    )?
                    .collect::<Result<Vec<_>, _>>()?,
                None => conn
                    .prepare_cached(&format!(
                        "SELECT {PASS_COLUMNS} FROM passes p JOIN devices d USING (device_key)
                         WHERE p.start_ms >= ?1 AND p.start_ms < ?2
                         ORDER BY p.start_ms, d.device_id, p.n"
                    ))?
                    .query_map(params![ms(from), ms(to)], pass_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(passes)
        })
        .await
    }

    async fn segment_passes(
        &self,
        segments: Vec<u32>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<PassRecord>, StoreError> {
        self.with_reader(move |conn| {
            let devices = device_ids(conn)?;
            let mut select = conn.prepare_cached(&format!(
                "SELECT {PASS_COLUMNS}, p.n FROM passes p
                 WHERE p.segment = ?1 AND p.start_ms >= ?2 AND p.start_ms < ?3"
            ))?;
            let mut passes = Vec::new();
            for segment in segments {
                let rows = select.query_map(params![segment, ms(from), ms(to)], |r| {
                    Ok((pass_row(r, &devices)?, r.get::<_, i64>(10)?))
                })?;
                for row in rows {
                    passes.push(row?);
                }
            }
            passes.sort_by(|(a, an), (b, bn)| {
                (a.start, &a.device_id, an).cmp(&(b.start, &b.device_id, bn))
            });
            Ok(passes.into_iter().map(|(p, _)| p).collect())
        })
        .await
    }
}

#[async_trait]
impl DayRecords for SqliteStore {
    async fn stale_segment_days(&self, limit: u32) -> Result<Vec<StaleSegmentDay>, StoreError> {
        self.with_reader(move |conn| {
            let stale = conn
                .prepare_cached(
                    "SELECT day, segment, version FROM stale_segment_days
                     ORDER BY day, segment LIMIT ?1",
                )?
                .query_map([limit], |r| {
                    Ok(StaleSegmentDay {
                        day: date_column(r, 0)?,
                        segment: r.get(1)?,
                        version: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(stale)
        })
        .await
    }

    async fn put_segment_days(
        &self,
        rows: Vec<SegmentDayRecord>,
        computed: Vec<StaleSegmentDay>,
    ) -> Result<(), StoreError> {
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            {
                let mut forget =
                    tx.prepare_cached("DELETE FROM segment_days WHERE day = ?1 AND segment = ?2")?;
                let mut fresh = tx.prepare_cached(
                    "DELETE FROM stale_segment_days WHERE day = ?1 AND segment = ?2
                       AND version = ?3",
                )?;
                for c in &computed {
                    forget.execute(params![c.day.to_string(), c.segment])?;
                    fresh.execute(params![c.day.to_string(), c.segment, c.version])?;
                }
                let mut insert = tx.prepare_cached(
                    "INSERT INTO segment_days (day, segment, covered, mechanised, deep_cleaned,
                         covered_ratio, missed, working_passes, valid_passes, valid_mileage_m)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (day, segment) DO UPDATE SET
                         covered = excluded.covered, mechanised = excluded.mechanised,
                         deep_cleaned = excluded.deep_cleaned,
                         covered_ratio = excluded.covered_ratio, missed = excluded.missed,
                         working_passes = excluded.working_passes,
                         valid_passes = excluded.valid_passes,
                         valid_mileage_m = excluded.valid_mileage_m",
                )?;
                for r in &rows {
                    insert.execute(params![
                        r.day.to_string(),
                        r.segment,
                        r.covered,
                        r.mechanised,
                        r.deep_cleaned,
                        r.covered_ratio,
                        r.missed,
                        r.working_passes,
                        r.valid_passes,
                        r.valid_mileage_m
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn segment_days(
        &self,
        first: Date,
        last: Date,
        segments: Option<Vec<u32>>,
    ) -> Result<Vec<SegmentDayRecord>, StoreError> {
        self.with_reader(move |conn| {
            let wanted = segments.map(|segments| segments.into_iter().collect::<HashSet<u32>>());
            let mut select = conn.prepare_cached(
                "SELECT day, segment, covered, mechanised, deep_cleaned, covered_ratio,
                     missed, working_passes, valid_passes, valid_mileage_m
                 FROM segment_days WHERE day >= ?1 AND day <= ?2 ORDER BY day, segment",
            )?;
            let mut rows = select.query(params![first.to_string(), last.to_string()])?;
            let mut days = DayColumn::default();
            let mut records = Vec::new();
            while let Some(r) = rows.next()? {
                let segment: u32 = r.get(1)?;
                if wanted.as_ref().is_some_and(|w| !w.contains(&segment)) {
                    continue;
                }
                records.push(SegmentDayRecord {
                    day: days.get(r, 0)?,
                    segment,
                    covered: r.get(2)?,
                    mechanised: r.get(3)?,
                    deep_cleaned: r.get(4)?,
                    covered_ratio: r.get(5)?,
                    missed: r.get(6)?,
                    working_passes: r.get(7)?,
                    valid_passes: r.get(8)?,
                    valid_mileage_m: r.get(9)?,
                });
            }
            Ok(records)
        })
        .await
    }

    async fn use_vehicle_day_sections(
        &self,
        sections_id: &str,
        time_zone: &TimeZone,
    ) -> Result<bool, StoreError> {
        let (sections_id, time_zone) = (sections_id.to_owned(), time_zone.clone());
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT value FROM coverage_meta WHERE key = 'vehicle_day_sections'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let changed = current.as_deref() != Some(sections_id.as_str());
            if changed {
                tx.execute("DELETE FROM vehicle_days", [])?;
                // Each device's hours that passes start in, and the local days they touch.
                let mut days: BTreeMap<i64, BTreeSet<Date>> = BTreeMap::new();
                {
                    let mut hours = tx.prepare(
                        "SELECT DISTINCT device_key,
                             start_ms - ((start_ms % ?1) + ?1) % ?1 FROM passes",
                    )?;
                    let mut rows = hours.query([COVERAGE_CHUNK_MS])?;
                    while let Some(row) = rows.next()? {
                        let (key, start): (i64, i64) = (row.get(0)?, row.get(1)?);
                        let of_device = days.entry(key).or_default();
                        for at in [start, start + COVERAGE_CHUNK_MS - 1] {
                            of_device.insert(time_zone.to_datetime(ts(at)).date());
                        }
                    }
                }
                for (key, days) in &days {
                    mark_vehicle_days_stale(&tx, *key, days)?;
                }
                tx.execute(
                    "INSERT INTO coverage_meta (key, value) VALUES ('vehicle_day_sections', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [&sections_id],
                )?;
            }
            tx.commit()?;
            Ok(changed && current.is_some())
        })
        .await
    }

    async fn stale_vehicle_days(&self, limit: u32) -> Result<Vec<StaleVehicleDay>, StoreError> {
        self.with_reader(move |conn| {
            let stale = conn
                .prepare_cached(
                    "SELECT s.day, d.device_id, s.version
                     FROM stale_vehicle_days s JOIN devices d USING (device_key)
                     ORDER BY s.day, s.device_key LIMIT ?1",
                )?
                .query_map([limit], |r| {
                    Ok(StaleVehicleDay {
                        day: date_column(r, 0)?,
                        device_id: r.get(1)?,
                        version: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(stale)
        })
        .await
    }

    async fn put_vehicle_days(
        &self,
        rows: Vec<VehicleDayRecord>,
        computed: Vec<StaleVehicleDay>,
    ) -> Result<(), StoreError> {
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            {
                let mut key_of =
                    tx.prepare_cached("SELECT device_key FROM devices WHERE device_id = ?1")?;
                let mut keys: BTreeMap<&str, i64> = BTreeMap::new();
                for device in computed
                    .iter()
                    .map(|c| c.device_id.as_str())
                    .chain(rows.iter().map(|r| r.device_id.as_str()))
                {
                    if !keys.contains_key(device) {
                        keys.insert(device, key_of.query_row([device], |r| r.get(0))?);
                    }
                }
                let mut forget = tx.prepare_cached(
                    "DELETE FROM vehicle_days WHERE day = ?1 AND device_key = ?2",
                )?;
                let mut fresh = tx.prepare_cached(
                    "DELETE FROM stale_vehicle_days WHERE day = ?1 AND device_key = ?2
                       AND version = ?3",
                )?;
                for c in &computed {
                    let key = keys[c.device_id.as_str()];
                    forget.execute(params![c.day.to_string(), key])?;
                    fresh.execute(params![c.day.to_string(), key, c.version])?;
                }
                let mut insert = tx.prepare_cached(
                    "INSERT INTO vehicle_days (day, device_key, section, road_class, passes,
                         working_passes, valid_passes, mileage_m, working_mileage_m,
                         valid_mileage_m, working_s, max_working_speed_kmh, overspeed_runs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (day, device_key, section, road_class) DO UPDATE SET
                         passes = excluded.passes, working_passes = excluded.working_passes,
                         valid_passes = excluded.valid_passes, mileage_m = excluded.mileage_m,
                         working_mileage_m = excluded.working_mileage_m,
                         valid_mileage_m = excluded.valid_mileage_m,
                         working_s = excluded.working_s,
                         max_working_speed_kmh = excluded.max_working_speed_kmh,
                         overspeed_runs = excluded.overspeed_runs",
                )?;
                for r in &rows {
                    let runs: Vec<(i64, i64)> = r
                        .overspeed_runs
                        .iter()
                        .map(|&(a, b)| (ms(a), ms(b)))
                        .collect();
                    insert.execute(params![
                        r.day.to_string(),
                        keys[r.device_id.as_str()],
                        r.section.as_deref().unwrap_or(""),
                        r.road_class,
                        r.passes,
                        r.working_passes,
                        r.valid_passes,
                        r.mileage_m,
                        r.working_mileage_m,
                        r.valid_mileage_m,
                        r.working_s,
                        r.max_working_speed_kmh,
                        serde_json::to_string(&runs).expect("numbers serialise"),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn vehicle_days(
        &self,
        first: Date,
        last: Date,
    ) -> Result<Vec<VehicleDayRecord>, StoreError> {
        self.with_reader(move |conn| {
            let device_ids = device_ids(conn)?;
            // In the primary key's order: no sort.
            let mut select = conn.prepare_cached(
                "SELECT day, device_key, section, road_class, passes, working_passes,
                     valid_passes, mileage_m, working_mileage_m, valid_mileage_m, working_s,
                     max_working_speed_kmh, overspeed_runs
                 FROM vehicle_days WHERE day >= ?1 AND day <= ?2
                 ORDER BY day, device_key, section, road_class",
            )?;
            let mut rows = select.query(params![first.to_string(), last.to_string()])?;
            let mut days = DayColumn::default();
            let mut records = Vec::new();
            while let Some(r) = rows.next()? {
                records.push(VehicleDayRecord {
                    day: days.get(r, 0)?,
                    device_id: device_ids.of(r.get(1)?)?,
                    section: section_column(r, 2)?,
                    road_class: r.get(3)?,
                    passes: r.get(4)?,
                    working_passes: r.get(5)?,
                    valid_passes: r.get(6)?,
                    mileage_m: r.get(7)?,
                    working_mileage_m: r.get(8)?,
                    valid_mileage_m: r.get(9)?,
                    working_s: r.get(10)?,
                    max_working_speed_kmh: r.get(11)?,
                    overspeed_runs: runs_column(r, 12)?,
                });
            }
            Ok(records)
        })
        .await
    }

    async fn overspeed_days(
        &self,
        first: Date,
        last: Date,
    ) -> Result<Vec<OverspeedDayRecord>, StoreError> {
        self.with_reader(move |conn| {
            let device_ids = device_ids(conn)?;
            // From the partial index `vehicle_days_overspeeding` alone (migration 10).
            let mut select = conn.prepare_cached(&overspeed_days_sql())?;
            let mut rows = select.query(params![first.to_string(), last.to_string()])?;
            let mut days = DayColumn::default();
            let mut records = Vec::new();
            while let Some(r) = rows.next()? {
                records.push(OverspeedDayRecord {
                    day: days.get(r, 0)?,
                    device_id: device_ids.of(r.get(1)?)?,
                    section: section_column(r, 2)?,
                    runs: runs_column(r, 3)?,
                });
            }
            Ok(records)
        })
        .await
    }

    async fn devices_with_passes_in(
        &self,
        first: Date,
        last: Date,
        sections: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.with_reader(move |conn| {
            let device_ids = device_ids(conn)?;
            // A range of the index `vehicle_days_by_section` per section (migration 10).
            let mut select = conn.prepare_cached(DEVICES_IN_SECTION_SQL)?;
            let mut devices = BTreeSet::new();
            for section in sections.iter().filter(|s| !s.is_empty()) {
                let mut rows =
                    select.query(params![section, first.to_string(), last.to_string()])?;
                while let Some(r) = rows.next()? {
                    devices.insert(device_ids.of(r.get(0)?)?);
                }
            }
            Ok(devices.into_iter().map(String::from).collect())
        })
        .await
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let mut deleted = 0;
            let hour = ms(before).div_euclid(COVERAGE_CHUNK_MS);
            deleted += tx.execute("DELETE FROM passes WHERE hour < ?1", [hour])? as u64;
            tx.execute("DELETE FROM coverage_chunks WHERE hour < ?1", [hour])?;
            // Days before the UTC day before `before` are over in every time zone.
            let over = before
                .to_zoned(TimeZone::UTC)
                .date()
                .yesterday()
                .map_or_else(|_| String::new(), |d| d.to_string());
            for table in [
                "segment_days",
                "stale_segment_days",
                "vehicle_days",
                "stale_vehicle_days",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE day < ?1"), [&over])?;
            }
            // A day partly kept keeps its index entries.
            tx.execute(
                "DELETE FROM device_day_sources WHERE day < ?1",
                [provenance::utc_day(ms(before))],
            )?;
            deleted += fixes::prune(&tx, ms(before))?;
            for (table, column) in [
                ("bin_readings", "time_ms"),
                ("toilet_readings", "time_ms"),
                ("status_changes", "time_ms"),
                ("inspection_samples", "time_ms"),
                ("weighbridge_tickets", "time_out_ms"),
                ("dead_letters", "last_received_ms"),
            ] {
                deleted += tx.execute(
                    &format!("DELETE FROM {table} WHERE {column} < ?1"),
                    [ms(before)],
                )? as u64;
            }
            // What the dead letters left take, by scope; what was not kept stays counted.
            tx.execute_batch(
                "UPDATE dead_letter_usage SET bytes = 0;
                 INSERT INTO dead_letter_usage (scope, bytes, not_kept, not_kept_bytes)
                     SELECT 'device:' || device_id, sum(kept_bytes), 0, 0 FROM dead_letters
                     WHERE true GROUP BY device_id
                     ON CONFLICT (scope) DO UPDATE SET bytes = excluded.bytes;
                 INSERT INTO dead_letter_usage (scope, bytes, not_kept, not_kept_bytes)
                     SELECT 'total', coalesce(sum(kept_bytes), 0), 0, 0 FROM dead_letters
                     WHERE true
                     ON CONFLICT (scope) DO UPDATE SET bytes = excluded.bytes;",
            )?;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    async fn compact(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.with_writer(move |conn| {
            let tx = write_transaction(conn)?;
            let moved = fixes::compact(
                &tx,
                ms(now - COMPACT_AFTER),
                ms(now - COMPACT_WHEN_QUIET),
                limit,
            )?;
            tx.commit()?;
            Ok(moved)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            inner
                .closed
                .store(true, std::sync::atomic::Ordering::Release);
            inner
                .idle_readers
                .lock()
                .expect("pool lock poisoned")
                .clear();
            let writer = inner.writer.lock().expect("writer lock poisoned").take();
            if let Some(conn) = writer {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                conn.close().map_err(|(_, e)| e)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
