//! The store: where accepted device data and dead letters are kept durably.
//!
//! The seam between the stages and a backend is one small trait per role: [`IngestSink`]
//! (ingestion), [`DeviceReads`], [`Readings`], [`CoverageQueue`] and [`PassReads`] (the coverage
//! stage's work and its passes), [`DayRecords`] (materialised days), [`Maintenance`],
//! [`ProvenanceStore`], [`CredentialStore`]; [`Store`] is a backend with all of them. A caller
//! takes the roles it uses. The embedded default is [`SqliteStore`]; a server backend
//! (InfluxDB for telemetry, PostgreSQL for state) implements the same traits and passes the
//! same conformance suite (module `conformance`), so callers do not change.
//! **A `write_batch` that returned `Ok` is durable**: ingestion acknowledges MQTT messages only
//! after it. **Writes are idempotent**: a record is keyed by device and device time (or ticket
//! / sample id), so a redelivered or retransmitted message is stored once.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod credentials;
mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use cleanfleet_identity::Role;
use cleanfleet_model::{
    BinReading, Decoded, DeviceId, DeviceKind, DeviceState, Fix, InspectionSample, InvalidReason,
    RejectReason, ToiletReading, WorkType,
};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

pub use sqlite::{DeadLetterCaps, SqliteConfig, SqliteStore, Synchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer held the store for longer than the store waits (a backend that is
    /// busy, locked or restarting): the same call may succeed later.
    #[error("the store is busy: {0}")]
    Busy(String),
    /// Any other failure of the backend, named (`sqlite`, ...) with its own error.
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the database schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("a store worker thread failed: {0}")]
    Worker(String),
    #[error("the store is closed")]
    Closed,
    /// Stored data that cannot be read back (a damaged file, or one written by a build
    /// that encoded it differently).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The record exists already (a credential for the same username, revoked or not).
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy(_))
    }
}

/// How a message reached the store: its records' provenance is recorded from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Over MQTT through ingest. `broker` names the broker (its URL); `binds_logins`: it lets
    /// a login publish only under its own device id, as the embedded broker and the shipped
    /// Mosquitto and EMQX configurations do.
    Mqtt { broker: String, binds_logins: bool },
    /// Submitted over the HTTP API with the named token; `None`: authentication is off.
    Api { token: Option<String> },
}

/// One MQTT message (or an API submission) as ingestion hands it to the store.
#[derive(Debug, Clone)]
pub enum IngestItem {
    Accepted {
        message: Decoded,
        received: Timestamp,
        /// Shared by the messages of one connection.
        delivery: std::sync::Arc<Delivery>,
    },
    Rejected {
        topic: String,
        payload: Vec<u8>,
        reason: RejectReason,
        detail: String,
        received: Timestamp,
    },
}

/// What one `write_batch` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// New rows of device data (fixes, readings, tickets, samples, status changes).
    pub records_inserted: u64,
    pub fixes_inserted: u64,
    /// Records already stored (redelivery, device retransmit): not stored again.
    pub duplicate_records: u64,
    /// Rejected messages kept; a dead letter seen before only has its count raised.
    pub dead_letters_inserted: u64,
    /// Rejected messages not kept because a dead-letter cap was reached (counted by the
    /// store too: [`StoreStats::dead_letters_not_kept`]).
    pub dead_letters_not_kept: u64,
    /// Fixes of accepted messages refused because a fix of the same device and time at
    /// another place is stored: each kept as a dead letter of its own (`conflicting_fix`).
    pub conflicting_fixes: u64,
}

/// A device and its latest known state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeviceSummary {
    pub device_id: String,
    pub kind: DeviceKind,
    /// When ingestion first and last received a message from it.
    pub first_received: Timestamp,
    pub last_received: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    /// The fix with the latest device time (vehicles, wearables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_fix: Option<Fix>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_bin_reading: Option<BinReading>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_toilet_reading: Option<ToiletReading>,
}

/// A page of devices, ordered by id.
#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    pub kinds: Vec<DeviceKind>,
    /// Return devices whose id sorts after this (keyset pagination).
    pub after: Option<String>,
    pub limit: u32,
    /// Only these devices (a contractor's own); `None`: all.
    pub only: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub reason: Option<RejectReason>,
    /// Return dead letters with a smaller id (newest first, keyset pagination).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub reason: String,
    pub detail: String,
    pub payload: Vec<u8>,
    pub first_received: Timestamp,
    pub last_received: Timestamp,
    pub times_seen: u64,
}

/// Row counts of what the store holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct StoreStats {
    pub devices: u64,
    pub fixes: u64,
    pub bin_readings: u64,
    pub toilet_readings: u64,
    pub weighbridge_tickets: u64,
    pub inspection_samples: u64,
    pub status_changes: u64,
    pub dead_letters: u64,
    /// Dead letters (distinct messages) by reject reason.
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    /// What the kept dead letters take (payload, topic, detail), bytes.
    pub dead_letter_bytes: u64,
    /// Rejected messages not kept since the store was created: a dead-letter cap was
    /// reached (`[store.dead_letters]`).
    pub dead_letters_not_kept: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_fix: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_fix: Option<Timestamp>,
}

pub use cleanfleet_model::{COVERAGE_CHUNK_MS, COVERAGE_CONTEXT_MS};

/// How long after its hour ended a device-hour's fixes stay rows: the hour and the context
/// the coverage stage reads with it are read and rewritten most while they are recent.
pub const COMPACT_AFTER: SignedDuration = SignedDuration::from_mins(15);
/// How long a device-hour must have taken no message before it is compacted: a device
/// that backfills an hour is still sending it.
pub const COMPACT_WHEN_QUIET: SignedDuration = SignedDuration::from_mins(2);

/// How far the coverage stage has got: passes are a function of the stored fixes once it
/// has caught up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct CoverageBacklog {
    /// Chunks (one device's hour) whose fixes changed since their passes were computed.
    pub stale_chunks: u64,
    /// The start of the oldest of them: every pass before it is current with the stored
    /// fixes. Absent when none is stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_from: Option<Timestamp>,
    /// When the oldest fixes not yet in passes were stored: how long matching is behind.
    /// Absent when none is stale (or the stale chunks predate this record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<Timestamp>,
    /// Segments' days whose passes changed since their status was stored: day reports are
    /// current once it is 0.
    pub stale_segment_days: u64,
    /// Vehicles' days whose passes changed since their rows were stored: per-vehicle reports
    /// and assessments are current once it is 0.
    pub stale_vehicle_days: u64,
}

impl CoverageBacklog {
    /// Nothing stale: passes and every day's rows are current with the stored fixes.
    pub fn is_current(&self) -> bool {
        self.stale_chunks == 0 && self.stale_segment_days == 0 && self.stale_vehicle_days == 0
    }
}

/// A segment's status and work on a local day of the city, as the coverage stage stores it
/// (materialised from the passes that start that day; `cleanfleet-reports` computes it).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDayRecord {
    pub day: Date,
    pub segment: u32,
    pub covered: bool,
    pub mechanised: bool,
    pub deep_cleaned: bool,
    pub covered_ratio: f64,
    /// Why it is not covered (`not_visited`, `partial`, ...); `None` when covered.
    pub missed: Option<String>,
    /// Passes with the tools on.
    pub working_passes: u32,
    pub valid_passes: u32,
    pub valid_mileage_m: f64,
}

/// A segment's day whose passes changed since its status was stored; `version` is what its
/// new status must be computed from (a later change makes it stale again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSegmentDay {
    pub day: Date,
    pub segment: u32,
    pub version: i64,
}

/// A vehicle's (or crew wearable's) work on a local day of the city in one section on one
/// class of road, as the
/// coverage stage stores it (materialised from its passes that start that day;
/// `cleanfleet-reports` computes it). Sections are the city's zones when it was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleDayRecord {
    pub day: Date,
    pub device_id: DeviceId,
    /// The section of the segments driven; `None`: outside every section.
    pub section: Option<String>,
    /// Their road class: `I`, `II`, `III` or `IV`.
    pub road_class: String,
    /// Every traversal matched to the road, tools on or off.
    pub passes: u32,
    /// Traversals with the tools on.
    pub working_passes: u32,
    pub valid_passes: u32,
    pub mileage_m: f64,
    pub working_mileage_m: f64,
    pub valid_mileage_m: f64,
    /// Time the working passes took, seconds.
    pub working_s: f64,
    /// `None` without working passes.
    pub max_working_speed_kmh: Option<f64>,
    /// Runs of overspeed work among its passes here, as (start of the first pass, end of the
    /// last), by start.
    pub overspeed_runs: Vec<(Timestamp, Timestamp)>,
}

/// The runs of overspeed work of a stored vehicle's day in one section on one class of road
/// ([`VehicleDayRecord`]'s, without its sums).
#[derive(Debug, Clone, PartialEq)]
pub struct OverspeedDayRecord {
    pub day: Date,
    pub device_id: DeviceId,
    /// `None`: outside every section.
    pub section: Option<String>,
    /// Never empty.
    pub runs: Vec<(Timestamp, Timestamp)>,
}

/// A vehicle's day whose passes changed since its rows were stored; `version` is what its
/// new rows must be computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleVehicleDay {
    pub day: Date,
    pub device_id: String,
    pub version: i64,
}

/// One device's hour whose passes are missing or older than its fixes.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageChunk {
    pub device_id: String,
    pub kind: DeviceKind,
    pub start: Timestamp,
    /// The fixes' version the passes will be computed from.
    pub version: i64,
    /// When the oldest fixes not yet in the chunk's passes were stored (`None`: unknown).
    pub stale_since: Option<Timestamp>,
    /// When the store listed the chunk as stale: fixes stored later may be missing from
    /// passes computed for this version, and count as waiting from then.
    pub listed_at: Timestamp,
}

impl CoverageChunk {
    pub fn end(&self) -> Timestamp {
        self.start + SignedDuration::from_millis(COVERAGE_CHUNK_MS)
    }
}

/// A work pass as stored (`cleanfleet-coverage` computes them): a traversal of a segment of
/// the road network in one direction, with its work type and, when it does not count, why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PassRecord {
    /// The vehicle (or crew wearable) that drove it.
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    /// The road segment (`/api/v1/segments/{id}`).
    pub segment: u32,
    /// Driven from the segment's `from_node` to its `to_node`; `false`: the other way.
    pub forward: bool,
    /// Where the covered part starts, metres along the segment in the driving direction,
    /// from the node the pass entered the segment at (0 ≤ `from_m` ≤ `to_m` ≤ its length).
    pub from_m: f64,
    /// Where it ends, metres, in the same measure as `from_m`.
    pub to_m: f64,
    /// When the vehicle was at `from_m` (device time, RFC 3339, UTC).
    pub start: Timestamp,
    /// When it was at `to_m`.
    pub end: Timestamp,
    pub work: WorkType,
    /// Why the pass does not count; absent when it counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<InvalidReason>,
    /// The highest speed reported (or, without one, driven) during the pass, km/h.
    pub max_speed_kmh: f64,
}

/// How far a stored record can be trusted to come from the device it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// The broker admitted the publisher with the device's own live credential and lets a
    /// login publish only under its own id: the record is the device's.
    Credential,
    /// Submitted over the API with an authenticated token (an inspector's app).
    Token,
    /// Only the topic names the device: it had no live credential of its kind on record, or
    /// the broker is not configured to bind topics to logins.
    TopicOnly,
    /// Submitted over the API with authentication off.
    Unauthenticated,
    /// Stored before provenance was recorded (schema version 3 or older).
    Unknown,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Credential => "credential",
            Trust::Token => "token",
            Trust::TopicOnly => "topic_only",
            Trust::Unauthenticated => "unauthenticated",
            Trust::Unknown => "unknown",
        }
    }

    /// Whether a login or token vouches for the record.
    pub fn is_verified(self) -> bool {
        matches!(self, Trust::Credential | Trust::Token)
    }
}

impl std::str::FromStr for Trust {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Trust::Credential,
            Trust::Token,
            Trust::TopicOnly,
            Trust::Unauthenticated,
            Trust::Unknown,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown trust {s:?}"))
    }
}

/// Who delivered a stored record: its provenance. Every record has exactly one, that of the
/// delivery that first stored it (a redelivery changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub struct Source {
    /// Stable id of this source in the store.
    pub id: i64,
    pub trust: Trust,
    /// The broker's URL (MQTT), `api`, or empty when unknown.
    pub via: String,
    /// The login that delivered it: the device id (MQTT) or the API token's name; empty when
    /// unknown or unauthenticated.
    pub principal: String,
    /// For `credential`: which secret of the device's credential, by when it was issued or
    /// last rotated (`cleanfleet devices list`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_issued: Option<Timestamp>,
}

/// Consecutive records of one device and stream, in time order, delivered by one source.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SourceRun {
    /// `fixes`, `reading`, `ticket`, `sample` or `status`.
    pub stream: String,
    /// Device time of the run's first and last record.
    pub first: Timestamp,
    pub last: Timestamp,
    pub records: u64,
    pub source: Source,
}

/// The store's role for provenance: which login or token delivered the records.
#[async_trait]
pub trait ProvenanceStore: Send + Sync + 'static {
    /// Every record of one device timed in `from..to`, as runs of one source per stream (a
    /// run ends where the next record has another source): each record's source is the run's
    /// it falls in.
    async fn provenance(
        &self,
        device_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<SourceRun>, StoreError>;
    /// The sources of the records of these devices on the UTC days that `from..to` touches,
    /// each with its device, by device id. Cheap: read from a per-day index, not the records.
    async fn device_sources(
        &self,
        devices: Vec<String>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, Source)>, StoreError>;
}

/// An inspector's sample as stored, with the device that sent it and its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub device_id: String,
    pub sample: InspectionSample,
    pub source: Source,
}

/// A broker credential as stored: the secret only as its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// The device id, or a service's name (`cleanfleet-...`).
    pub username: String,
    pub role: Role,
    /// `$7$` PBKDF2-SHA512 (`cleanfleet_identity::hash_secret`).
    pub secret_hash: String,
    pub issued_at: Timestamp,
    /// When the secret was last replaced; `issued_at` until then.
    pub rotated_at: Timestamp,
    /// A revoked credential logs nobody in and its username is not issued again.
    pub revoked_at: Option<Timestamp>,
}

/// The store's role for identity: broker credentials, issued, rotated and revoked.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Adds a credential; [`StoreError::Conflict`] if the username has one, even revoked.
    async fn add_credential(&self, record: CredentialRecord) -> Result<(), StoreError>;
    /// Every credential, revoked ones too, by username.
    async fn credentials(&self) -> Result<Vec<CredentialRecord>, StoreError>;
    async fn credential(&self, username: &str) -> Result<Option<CredentialRecord>, StoreError>;
    /// Replaces the secret of a live credential: the old one stops working at once. Returns
    /// false when there is no live credential of that username.
    async fn rotate_credential(
        &self,
        username: &str,
        secret_hash: String,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Revokes a live credential; false when there is none.
    async fn revoke_credential(&self, username: &str, at: Timestamp) -> Result<bool, StoreError>;
}

/// The store's role for ingestion: device data in, durably.
#[async_trait]
pub trait IngestSink: Send + Sync + 'static {
    /// Write one batch atomically and durably; idempotent per record.
    async fn write_batch(&self, items: Vec<IngestItem>) -> Result<WriteReport, StoreError>;
}

/// The store's role for what devices sent: their state, tracks and dead letters.
#[async_trait]
pub trait DeviceReads: Send + Sync + 'static {
    async fn devices(&self, query: DeviceQuery) -> Result<Vec<DeviceSummary>, StoreError>;
    async fn device(&self, device_id: &str) -> Result<Option<DeviceSummary>, StoreError>;
    /// Fixes of one device with `from <= time < to`, in device-time order, at most `limit`.
    async fn track(
        &self,
        device_id: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<Fix>, StoreError>;
    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Whether any device sent a fix or reading timed in `from..to`: the platform was
    /// receiving then.
    async fn received_any(&self, from: Timestamp, to: Timestamp) -> Result<bool, StoreError>;
}

/// The store's role for readings the reports use: inspectors' samples and bins' fill.
#[async_trait]
pub trait Readings: Send + Sync + 'static {
    /// Inspectors' samples taken in `from..to`, by time, with the device that sent each.
    async fn samples(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredSample>, StoreError>;
    /// Smart bins' readings taken in `from..to`, by bin and time, each with its bin's id;
    /// each bin's from its last reading at or below `emptied_fill_ratio` before `from` (looked
    /// for back to `from - lookback`), so that an overflow open at `from` is seen whole.
    async fn bin_readings(
        &self,
        from: Timestamp,
        to: Timestamp,
        emptied_fill_ratio: f64,
        lookback: SignedDuration,
    ) -> Result<Vec<BinReading>, StoreError>;
    /// Whether a device already sent a sample with this id.
    async fn sample_exists(&self, device_id: &str, sample_id: &str) -> Result<bool, StoreError>;
}

/// The store's role for the coverage stage's work: which device-hours are stale, and
/// their passes replaced.
#[async_trait]
pub trait CoverageQueue: Send + Sync + 'static {
    /// Records the road network coverage is computed on; when it differs from the last one,
    /// forgets every pass and segment's and vehicle's day and makes every chunk stale.
    /// Returns whether it did.
    async fn use_coverage_network(&self, network_id: &str) -> Result<bool, StoreError>;
    /// Stale chunks, those whose fixes have waited longest first (then the oldest hour): a
    /// device that sends often cannot keep the others' chunks waiting.
    async fn stale_chunks(&self, limit: u32) -> Result<Vec<CoverageChunk>, StoreError>;
    /// Resolves once fixes stored through this handle (this process) may have made chunks
    /// stale since it last resolved; at once if they did meanwhile. Writes by other processes
    /// do not wake it: a coverage stage beside a separate ingest looks on its poll interval.
    async fn coverage_work(&self);
    /// How far the coverage stage has got.
    async fn coverage_backlog(&self) -> Result<CoverageBacklog, StoreError>;
    /// Replaces the chunk's passes and records the version they were computed from; the
    /// chunk stays stale if fixes landed in it meanwhile. Every segment's day (local in
    /// `time_zone`) that an old or a new pass starts in becomes stale, and so does the
    /// device's day, in the same commit.
    async fn put_passes(
        &self,
        chunk: CoverageChunk,
        passes: Vec<PassRecord>,
        time_zone: &TimeZone,
    ) -> Result<(), StoreError>;
}

/// The store's role for reading passes.
#[async_trait]
pub trait PassReads: Send + Sync + 'static {
    /// Passes starting in `from..to`, of one device or all, by start time.
    async fn passes(
        &self,
        from: Timestamp,
        to: Timestamp,
        device_id: Option<String>,
    ) -> Result<Vec<PassRecord>, StoreError>;
    /// Passes of `segments` starting in `from..to`, by start time (then device, then order
    /// in the chunk, as [`PassReads::passes`]).
    async fn segment_passes(
        &self,
        segments: Vec<u32>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<PassRecord>, StoreError>;
}

/// The store's role for materialised days: each segment's and vehicle's day, stale until
/// computed from its passes.
#[async_trait]
pub trait DayRecords: Send + Sync + 'static {
    /// Stale segments' days, oldest day first.
    async fn stale_segment_days(&self, limit: u32) -> Result<Vec<StaleSegmentDay>, StoreError>;
    /// Stores the status of segments' days computed for `computed` (a row per segment's day
    /// with passes; a stale one without is left with none) and makes each fresh unless its
    /// passes changed again since its version.
    async fn put_segment_days(
        &self,
        rows: Vec<SegmentDayRecord>,
        computed: Vec<StaleSegmentDay>,
    ) -> Result<(), StoreError>;
    /// The stored segments' days of `first..=last`, by day and segment; with `segments`,
    /// only theirs.
    async fn segment_days(
        &self,
        first: Date,
        last: Date,
        segments: Option<Vec<u32>>,
    ) -> Result<Vec<SegmentDayRecord>, StoreError>;
    /// Records the sections vehicles' days are cut by (an identity of the city's zones); when
    /// it differs from the last one, forgets every vehicle's day and makes each (local day in
    /// `time_zone`, device) with passes stale. Returns whether it did.
    async fn use_vehicle_day_sections(
        &self,
        sections_id: &str,
        time_zone: &TimeZone,
    ) -> Result<bool, StoreError>;
    /// Stale vehicles' days, oldest day first.
    async fn stale_vehicle_days(&self, limit: u32) -> Result<Vec<StaleVehicleDay>, StoreError>;
    /// Replaces the rows of each vehicle's day `computed` with those of `rows` for it (none:
    /// no passes) and makes each fresh unless its passes changed again since its version.
    async fn put_vehicle_days(
        &self,
        rows: Vec<VehicleDayRecord>,
        computed: Vec<StaleVehicleDay>,
    ) -> Result<(), StoreError>;
    /// The stored vehicles' days of `first..=last`, by day, device (in the store's order),
    /// section (outside every section first) and road class.
    async fn vehicle_days(
        &self,
        first: Date,
        last: Date,
    ) -> Result<Vec<VehicleDayRecord>, StoreError>;
    /// The runs of overspeed work of the stored vehicles' days of `first..=last` that have
    /// some, in the order of [`DayRecords::vehicle_days`].
    async fn overspeed_days(
        &self,
        first: Date,
        last: Date,
    ) -> Result<Vec<OverspeedDayRecord>, StoreError>;
    /// The devices with passes in one of `sections` (by id) on a day of `first..=last`, by
    /// id.
    async fn devices_with_passes_in(
        &self,
        first: Date,
        last: Date,
        sections: Vec<String>,
    ) -> Result<Vec<String>, StoreError>;
}

/// The store's role for upkeep: retention, compaction, liveness and shutdown.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Delete device data whose device time is before `before`; returns rows deleted.
    async fn prune(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// Moves settled device data into its compact form, at most `limit` device-hours of it
    /// (SQLite: the fixes of an hour that ended [`COMPACT_AFTER`] before `now` and took no
    /// message for [`COMPACT_WHEN_QUIET`], into one compressed block); returns the fixes
    /// moved. Readers see the same records before and after.
    async fn compact(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
    /// Cheap liveness check for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Flush everything to the backing files and refuse further writes.
    async fn close(&self) -> Result<(), StoreError>;
}

/// A whole backend: every role. Callers that need one role take that trait (`Arc<dyn
/// IngestSink>`, ...); a deployment may serve the roles from different backends (telemetry
/// in one, state in another) behind one `Store`. Every backend passes the `conformance`
/// suite.
pub trait Store:
    IngestSink
    + DeviceReads
    + Readings
    + CoverageQueue
    + PassReads
    + DayRecords
    + Maintenance
    + ProvenanceStore
    + CredentialStore
{
}

impl<T> Store for T where
    T: IngestSink
        + DeviceReads
        + Readings
        + CoverageQueue
        + PassReads
        + DayRecords
        + Maintenance
        + ProvenanceStore
        + CredentialStore
{
}
