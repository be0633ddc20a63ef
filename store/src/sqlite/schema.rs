//! Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
//! Never edit a released migration: append a new one.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: the foundation schema. Device data is keyed by (device_key, device time) so that
    // redelivered and retransmitted messages are stored once.
    r#"
    CREATE TABLE devices (
        device_key        INTEGER PRIMARY KEY,
        device_id         TEXT NOT NULL UNIQUE,
        kind              TEXT NOT NULL,
        first_received_ms INTEGER NOT NULL,
        last_received_ms  INTEGER NOT NULL
    );
    CREATE INDEX devices_by_kind ON devices (kind, device_id);

    CREATE TABLE fixes (
        device_key       INTEGER NOT NULL,
        time_ms          INTEGER NOT NULL,
        seq              INTEGER,
        lat              REAL NOT NULL,
        lon              REAL NOT NULL,
        speed_kmh        REAL,
        heading_deg      REAL,
        hdop             REAL,
        satellites       INTEGER,
        work_flags       INTEGER NOT NULL,
        water_tank_ratio REAL,
        load_kg          REAL,
        odometer_m       REAL,
        lifter_cycles    INTEGER,
        sos              INTEGER,
        received_ms      INTEGER NOT NULL,
        PRIMARY KEY (device_key, time_ms)
    ) WITHOUT ROWID;

    CREATE TABLE bin_readings (
        device_key    INTEGER NOT NULL,
        time_ms       INTEGER NOT NULL,
        seq           INTEGER,
        fill_ratio    REAL NOT NULL,
        temperature_c REAL,
        tilted        INTEGER,
        lid_open      INTEGER,
        battery_ratio REAL,
        received_ms   INTEGER NOT NULL,
        PRIMARY KEY (device_key, time_ms)
    ) WITHOUT ROWID;

    CREATE TABLE toilet_readings (
        device_key  INTEGER NOT NULL,
        time_ms     INTEGER NOT NULL,
        seq         INTEGER,
        nh3_mg_m3   REAL,
        h2s_mg_m3   REAL,
        occupancy   INTEGER,
        footfall    INTEGER,
        water_m3    REAL,
        power_kwh   REAL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (device_key, time_ms)
    ) WITHOUT ROWID;

    CREATE TABLE weighbridge_tickets (
        device_key  INTEGER NOT NULL,
        ticket_id   TEXT NOT NULL,
        vehicle_id  TEXT NOT NULL,
        time_in_ms  INTEGER NOT NULL,
        time_out_ms INTEGER NOT NULL,
        gross_kg    REAL NOT NULL,
        tare_kg     REAL NOT NULL,
        net_kg      REAL NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (device_key, ticket_id)
    ) WITHOUT ROWID;

    CREATE TABLE inspection_samples (
        device_key   INTEGER NOT NULL,
        sample_id    TEXT NOT NULL,
        time_ms      INTEGER NOT NULL,
        lat          REAL NOT NULL,
        lon          REAL NOT NULL,
        grams        REAL NOT NULL,
        area_m2      REAL NOT NULL,
        inspector    TEXT NOT NULL,
        litter_count INTEGER,
        photo_ref    TEXT,
        received_ms  INTEGER NOT NULL,
        PRIMARY KEY (device_key, sample_id)
    ) WITHOUT ROWID;

    CREATE TABLE status_changes (
        device_key  INTEGER NOT NULL,
        time_ms     INTEGER NOT NULL,
        state       TEXT NOT NULL,
        firmware    TEXT,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (device_key, time_ms, state)
    ) WITHOUT ROWID;

    CREATE TABLE dead_letters (
        id                INTEGER PRIMARY KEY,
        digest            BLOB NOT NULL UNIQUE,
        topic             TEXT NOT NULL,
        reason            TEXT NOT NULL,
        detail            TEXT NOT NULL,
        payload           BLOB NOT NULL,
        first_received_ms INTEGER NOT NULL,
        last_received_ms  INTEGER NOT NULL,
        times_seen        INTEGER NOT NULL
    );
    CREATE INDEX dead_letters_by_reason ON dead_letters (reason, id);
    "#,
    // 2: coverage. A chunk is one device's fixes in one hour; `version` counts the writes
    // that touched it (or its context), `computed_version` the version its passes were
    // computed from. Passes are replaced whole per chunk.
    r#"
    CREATE TABLE coverage_chunks (
        device_key       INTEGER NOT NULL,
        hour             INTEGER NOT NULL,
        version          INTEGER NOT NULL,
        computed_version INTEGER NOT NULL,
        PRIMARY KEY (device_key, hour)
    ) WITHOUT ROWID;
    CREATE INDEX coverage_chunks_stale ON coverage_chunks (hour, device_key)
        WHERE version <> computed_version;

    CREATE TABLE passes (
        device_key    INTEGER NOT NULL,
        hour          INTEGER NOT NULL,
        n             INTEGER NOT NULL,
        segment       INTEGER NOT NULL,
        forward       INTEGER NOT NULL,
        from_m        REAL NOT NULL,
        to_m          REAL NOT NULL,
        start_ms      INTEGER NOT NULL,
        end_ms        INTEGER NOT NULL,
        work          TEXT NOT NULL,
        invalid       TEXT,
        max_speed_kmh REAL NOT NULL,
        PRIMARY KEY (device_key, hour, n)
    ) WITHOUT ROWID;
    CREATE INDEX passes_by_start ON passes (start_ms);

    CREATE TABLE coverage_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 3: broker credentials, one per username (a device id or a service's name); the secret
    // only as its hash. A revoked row stays, so that its username is never issued again.
    r#"
    CREATE TABLE credentials (
        username    TEXT PRIMARY KEY,
        role        TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        issued_ms   INTEGER NOT NULL,
        rotated_ms  INTEGER NOT NULL,
        revoked_ms  INTEGER
    );
    "#,
    // 4: provenance. Each record names the source that first stored it (0: stored before
    // this migration); `device_day_sources` indexes which sources delivered a device's records
    // on which UTC day, so that a report can say what it rests on without reading records.
    // `credentials_version` changes with every credential write, from any process, so that a
    // writer knows when its cached sources may be stale.
    r#"
    CREATE TABLE sources (
        source_key    INTEGER PRIMARY KEY,
        trust         TEXT NOT NULL,
        via           TEXT NOT NULL,
        principal     TEXT NOT NULL,
        -- The credential's issue or rotation time; 0 for none (not NULL: NULLs are all
        -- distinct to UNIQUE, and every upsert would add a row).
        credential_ms INTEGER NOT NULL,
        UNIQUE (trust, via, principal, credential_ms)
    );
    INSERT INTO sources (source_key, trust, via, principal, credential_ms)
        VALUES (0, 'unknown', '', '', 0);
    ALTER TABLE fixes ADD COLUMN source_key INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE bin_readings ADD COLUMN source_key INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE toilet_readings ADD COLUMN source_key INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE weighbridge_tickets ADD COLUMN source_key INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inspection_samples ADD COLUMN source_key INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE status_changes ADD COLUMN source_key INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE device_day_sources (
        device_key INTEGER NOT NULL,
        day        INTEGER NOT NULL,
        source_key INTEGER NOT NULL,
        PRIMARY KEY (device_key, day, source_key)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO device_day_sources
        SELECT DISTINCT device_key, time_ms / 86400000, 0 FROM fixes;
    INSERT OR IGNORE INTO device_day_sources
        SELECT DISTINCT device_key, time_ms / 86400000, 0 FROM bin_readings;
    INSERT OR IGNORE INTO device_day_sources
        SELECT DISTINCT device_key, time_ms / 86400000, 0 FROM toilet_readings;
    INSERT OR IGNORE INTO device_day_sources
        SELECT DISTINCT device_key, time_out_ms / 86400000, 0 FROM weighbridge_tickets;
    INSERT OR IGNORE INTO device_day_sources
        SELECT DISTINCT device_key, time_ms / 86400000, 0 FROM inspection_samples;
    INSERT OR IGNORE INTO device_day_sources
        SELECT DISTINCT device_key, time_ms / 86400000, 0 FROM status_changes;
    CREATE TABLE credentials_version (version INTEGER NOT NULL);
    INSERT INTO credentials_version VALUES (0);
    CREATE TRIGGER credentials_inserted AFTER INSERT ON credentials
        BEGIN UPDATE credentials_version SET version = version + 1; END;
    CREATE TRIGGER credentials_updated AFTER UPDATE ON credentials
        BEGIN UPDATE credentials_version SET version = version + 1; END;
    CREATE TRIGGER credentials_deleted AFTER DELETE ON credentials
        BEGIN UPDATE credentials_version SET version = version + 1; END;
    "#,
    // 5: dead letters capped by size, per device and in total. `kept_bytes` is what a dead
    // letter takes (payload, topic, detail); `dead_letter_usage` sums it by scope
    // (`device:<id>`, `device:` for topics that name none, and `total`) and counts what was
    // not kept because a cap was reached. Dead letters from before have no device.
    r#"
    ALTER TABLE dead_letters ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE dead_letters ADD COLUMN kept_bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE dead_letters SET kept_bytes = length(payload) + length(CAST(topic AS BLOB))
        + length(CAST(detail AS BLOB));
    -- The device a kept letter's topic names: its fourth level (cleanfleet/v1/kind/id/...).
    UPDATE dead_letters SET device_id = parsed.device
    FROM (
        SELECT id AS letter,
               CASE WHEN topic LIKE 'cleanfleet/%/%/%/%' AND instr(r3, '/') > 1
                    THEN substr(r3, 1, instr(r3, '/') - 1) ELSE '' END AS device
        FROM (SELECT id, topic, substr(r2, instr(r2, '/') + 1) AS r3
              FROM (SELECT id, topic, substr(r1, instr(r1, '/') + 1) AS r2
                    FROM (SELECT id, topic, substr(topic, instr(topic, '/') + 1) AS r1
                          FROM dead_letters)))
    ) AS parsed
    WHERE dead_letters.id = parsed.letter;
    CREATE TABLE dead_letter_usage (
        scope          TEXT PRIMARY KEY,
        bytes          INTEGER NOT NULL,
        not_kept       INTEGER NOT NULL,
        not_kept_bytes INTEGER NOT NULL
    );
    INSERT INTO dead_letter_usage (scope, bytes, not_kept, not_kept_bytes)
        SELECT 'device:' || device_id, sum(kept_bytes), 0, 0 FROM dead_letters
        GROUP BY device_id;
    INSERT INTO dead_letter_usage (scope, bytes, not_kept, not_kept_bytes)
        SELECT 'total', coalesce(sum(kept_bytes), 0), 0, 0 FROM dead_letters;
    "#,
    // 6: materialised day state. `segment_days` holds each segment's status and work on a
    // local day of the city, for segments with passes that day (any other segment's status is
    // that of no passes); `stale_segment_days` the (day, segment) pairs whose passes changed
    // since their row was computed, `version` counting the changes. `passes_by_segment` reads
    // one segment's passes of a day. Rows come from passes stored from now on: the coverage
    // basis names the time zone since, so an older store's passes are all computed again.
    r#"
    CREATE TABLE segment_days (
        day             TEXT NOT NULL,
        segment         INTEGER NOT NULL,
        covered         INTEGER NOT NULL,
        mechanised      INTEGER NOT NULL,
        deep_cleaned    INTEGER NOT NULL,
        covered_ratio   REAL NOT NULL,
        missed          TEXT,
        working_passes  INTEGER NOT NULL,
        valid_passes    INTEGER NOT NULL,
        valid_mileage_m REAL NOT NULL,
        PRIMARY KEY (day, segment)
    ) WITHOUT ROWID;
    CREATE TABLE stale_segment_days (
        day     TEXT NOT NULL,
        segment INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (day, segment)
    ) WITHOUT ROWID;
    CREATE INDEX passes_by_segment ON passes (segment, start_ms);
    "#,
    // 7: materialised vehicles' days. `vehicle_days` holds a device's work on a local day of
    // the city in each section it drove in ('' outside every section) on each class of road,
    // with its runs of overspeed work there as a JSON array of [start_ms, end_ms];
    // `stale_vehicle_days` the (day, device) pairs whose passes changed since their rows were
    // computed. Sections come from the city's zones: `coverage_meta`'s `vehicle_day_sections`
    // names those the rows were cut by, and other zones (or none recorded, as in an older
    // store) make every device's day with passes stale again.
    r#"
    CREATE TABLE vehicle_days (
        day                   TEXT NOT NULL,
        device_key            INTEGER NOT NULL,
        section               TEXT NOT NULL,
        road_class            TEXT NOT NULL,
        passes                INTEGER NOT NULL,
        working_passes        INTEGER NOT NULL,
        valid_passes          INTEGER NOT NULL,
        mileage_m             REAL NOT NULL,
        working_mileage_m     REAL NOT NULL,
        valid_mileage_m       REAL NOT NULL,
        working_s             REAL NOT NULL,
        max_working_speed_kmh REAL,
        overspeed_runs        TEXT NOT NULL,
        PRIMARY KEY (day, device_key, section, road_class)
    ) WITHOUT ROWID;
    CREATE TABLE stale_vehicle_days (
        day        TEXT NOT NULL,
        device_key INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        PRIMARY KEY (day, device_key)
    ) WITHOUT ROWID;
    "#,
    // 8: when a chunk's oldest fixes not yet in its passes were stored (NULL: its passes are
    // current, or it went stale before this migration), so the stage can say how long fixes
    // wait for their passes.
    r#"
    ALTER TABLE coverage_chunks ADD COLUMN stale_since_ms INTEGER;
    "#,
    // 9: compacted fixes. A device-hour's fixes are rows of `fixes` while it is listed in
    // `open_fix_hours` (with the receive time of its latest message), and one compressed
    // block of `fix_blocks` (`sqlite::fix_block`, first and last device time beside it) once
    // compacted; never both. `fix_compactions` counts the transactions that closed or deleted
    // open hours (writers cache which hours are open until it changes). The fixes stored
    // before are open hours.
    r#"
    CREATE TABLE fix_blocks (
        device_key INTEGER NOT NULL,
        hour       INTEGER NOT NULL,
        fixes      INTEGER NOT NULL,
        first_ms   INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        block      BLOB NOT NULL,
        PRIMARY KEY (device_key, hour)
    );
    CREATE INDEX fix_blocks_by_hour ON fix_blocks (hour);
    CREATE TABLE open_fix_hours (
        device_key  INTEGER NOT NULL,
        hour        INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (device_key, hour)
    ) WITHOUT ROWID;
    CREATE INDEX open_fix_hours_by_hour ON open_fix_hours (hour);
    CREATE TABLE fix_compactions (generation INTEGER NOT NULL);
    INSERT INTO fix_compactions VALUES (0);
    INSERT INTO open_fix_hours (device_key, hour, received_ms)
        SELECT device_key, time_ms / 3600000, max(received_ms) FROM fixes
        WHERE time_ms >= 0 GROUP BY device_key, time_ms / 3600000;
    "#,
    // 10: a contractor's assessment reads of vehicles' days which devices worked in its
    // sections and the days with overspeed work, each from an index of its own (the primary
    // key's columns are in every entry of a WITHOUT ROWID table's index), not all of a
    // quarter's rows.
    r#"
    CREATE INDEX vehicle_days_by_section ON vehicle_days (section, day, device_key, passes);
    CREATE INDEX vehicle_days_overspeeding ON vehicle_days (day, device_key, section,
        road_class, overspeed_runs) WHERE overspeed_runs != '[]';
    "#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to `version` (tests build older files with it).
pub(super) fn migrate_to(conn: &mut Connection, version: usize) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    // IMMEDIATE takes the write lock before reading the version, so two processes opening a
    // new file at once cannot both run the same migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (index, sql) in MIGRATIONS[..version]
        .iter()
        .enumerate()
        .skip(found as usize)
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tracing::info!(version = index + 1, "applied store migration");
    }
    tx.commit()?;
    Ok(())
}
