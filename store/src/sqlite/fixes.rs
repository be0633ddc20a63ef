//! Where fixes live. A device-hour's fixes are rows of `fixes` while the hour takes new ones
//! (`open_fix_hours` lists it, with when it last took one) and one compressed block of
//! `fix_blocks` ([`fix_block`](super::fix_block)) once it has been settled for a while:
//! rows cost about a hundred bytes a fix, blocks a few.
//!
//! **Each device-hour's fixes are all rows or all one block, never both**: a message with a
//! fix of a compacted hour opens that hour's block back into rows before its fixes are
//! inserted, so the insert path's duplicate and conflict checks only ever look at rows, and
//! compaction moves an hour's rows whole.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use cleanfleet_model::Fix;

use super::fix_block::{self, StoredFix};
use super::{fix_from_row, ms, FIX_COLUMNS};
use crate::{StoreError, COVERAGE_CHUNK_MS};

/// A block holds one device's fixes of one hour: the coverage stage's chunk.
const BLOCK_MS: i64 = COVERAGE_CHUNK_MS;

pub(super) fn hour_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(BLOCK_MS)
}

impl From<fix_block::BlockError> for StoreError {
    fn from(e: fix_block::BlockError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

fn stored_fix_from_row(r: &Row) -> rusqlite::Result<StoredFix> {
    Ok(StoredFix {
        fix: fix_from_row(r)?,
        received_ms: r.get(14)?,
        source_key: r.get(15)?,
    })
}

/// Stores a fix as a row unless its device time has one; returns whether it did.
pub(super) fn insert_row(
    tx: &Transaction,
    key: i64,
    fix: &Fix,
    received_ms: i64,
    source_key: i64,
) -> Result<bool, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO fixes (device_key, time_ms, seq, lat, lon, speed_kmh, heading_deg,
                 hdop, satellites, work_flags, water_tank_ratio, load_kg, odometer_m,
                 lifter_cycles, sos, received_ms, source_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            key,
            ms(fix.time),
            fix.seq.map(|s| s as i64),
            fix.lat,
            fix.lon,
            fix.speed_kmh,
            fix.heading_deg,
            fix.hdop,
            fix.satellites,
            super::work_flags(&fix.work),
            fix.water_tank_ratio,
            fix.load_kg,
            fix.odometer_m,
            fix.lifter_cycles.map(|c| c as i64),
            fix.sos,
            received_ms,
            source_key
        ])?;
    Ok(inserted > 0)
}

/// Makes a device-hour open for new fixes, `received_ms` the time it took the latest: a
/// compacted hour's block goes back into rows.
fn open_hour(tx: &Transaction, key: i64, hour: i64, received_ms: i64) -> Result<(), StoreError> {
    let block: Option<Vec<u8>> = tx
        .prepare_cached(
            "DELETE FROM fix_blocks WHERE device_key = ?1 AND hour = ?2 RETURNING block",
        )?
        .query_row(params![key, hour], |r| r.get(0))
        .optional()?;
    if let Some(block) = block {
        for f in fix_block::decode(&block)? {
            insert_row(tx, key, &f.fix, f.received_ms, f.source_key)?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO open_fix_hours (device_key, hour, received_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT DO UPDATE SET received_ms = max(received_ms, excluded.received_ms)",
    )?
    .execute(params![key, hour, received_ms])?;
    Ok(())
}

/// How stale the receive time `open_fix_hours` holds for an hour may be: an hour is compacted
/// after `COMPACT_WHEN_QUIET` without a message, give or take this.
const RECEIVED_REFRESH_MS: i64 = 30_000;

/// Open hours the writer remembers at most: a process that stores fixes and never sees a
/// compaction (nothing compacts, or only it stores) forgets them all beyond this rather than
/// grow; forgetting costs one look per hour again.
const MAX_KNOWN_OPEN_HOURS: usize = 100_000;

/// The device-hours the writer knows to be open, and the receive time it last recorded for
/// each, as of the store's compaction generation it read: a message for one of them costs no
/// statement. Any compaction or pruning (by any process) bumps the generation and so empties
/// it.
#[derive(Default)]
pub(super) struct OpenHours {
    generation: i64,
    known: HashMap<(i64, i64), i64>,
}

/// [`OpenHours`] within one write transaction; put back only once it committed.
pub(super) struct BatchHours {
    generation: i64,
    known: HashMap<(i64, i64), i64>,
}

impl OpenHours {
    pub(super) fn begin(&mut self, tx: &Transaction) -> Result<BatchHours, StoreError> {
        let generation: i64 =
            tx.query_row("SELECT generation FROM fix_compactions", [], |r| r.get(0))?;
        let mut known = std::mem::take(&mut self.known);
        if generation != self.generation || known.len() > MAX_KNOWN_OPEN_HOURS {
            known.clear();
        }
        Ok(BatchHours { generation, known })
    }

    pub(super) fn committed(&mut self, batch: BatchHours) {
        self.generation = batch.generation;
        self.known = batch.known;
    }
}

impl BatchHours {
    /// Makes a device-hour open for new fixes before they are checked against what is stored.
    pub(super) fn open(
        &mut self,
        tx: &Transaction,
        key: i64,
        hour: i64,
        received_ms: i64,
    ) -> Result<(), StoreError> {
        match self.known.get(&(key, hour)) {
            Some(&recorded) if received_ms < recorded + RECEIVED_REFRESH_MS => Ok(()),
            _ => {
                open_hour(tx, key, hour, received_ms)?;
                self.known.insert((key, hour), received_ms);
                Ok(())
            }
        }
    }
}

/// Every writer's [`OpenHours`] is stale after this.
fn bump_generation(tx: &Transaction) -> Result<(), StoreError> {
    tx.execute("UPDATE fix_compactions SET generation = generation + 1", [])?;
    Ok(())
}

/// One device's fixes with `from_ms <= time < to_ms`, in time order, at most `limit`.
pub(super) fn between(
    conn: &Connection,
    key: i64,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<StoredFix>, StoreError> {
    if from_ms >= to_ms || limit == 0 {
        return Ok(Vec::new());
    }
    let mut out: Vec<StoredFix> = conn
        .prepare_cached(&format!(
            "SELECT {FIX_COLUMNS}, received_ms, source_key FROM fixes
             WHERE device_key = ?1 AND time_ms >= ?2 AND time_ms < ?3
             ORDER BY time_ms LIMIT ?4"
        ))?
        .query_map(
            params![key, from_ms, to_ms, limit.min(i64::MAX as usize) as i64],
            stored_fix_from_row,
        )?
        .collect::<Result<_, _>>()?;
    // Blocks in hour order: once they gave `limit` fixes, later ones cannot be among the
    // first `limit` of the range.
    let mut stmt = conn.prepare_cached(
        "SELECT block FROM fix_blocks
         WHERE device_key = ?1 AND hour >= ?2 AND hour <= ?3 AND first_ms < ?5 AND last_ms >= ?4
         ORDER BY hour",
    )?;
    let mut blocks = stmt.query(params![
        key,
        hour_of(from_ms),
        hour_of(to_ms - 1),
        from_ms,
        to_ms
    ])?;
    let mut from_blocks = 0;
    while from_blocks < limit {
        let Some(row) = blocks.next()? else { break };
        let block: Vec<u8> = row.get(0)?;
        for f in fix_block::decode(&block)? {
            let t = ms(f.fix.time);
            if t >= from_ms && t < to_ms {
                out.push(f);
                from_blocks += 1;
            }
        }
    }
    out.sort_by_key(|f| f.fix.time);
    out.truncate(limit);
    Ok(out)
}

/// The device's newest fix (by device time).
pub(super) fn newest(conn: &Connection, key: i64) -> Result<Option<StoredFix>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {FIX_COLUMNS}, received_ms, source_key FROM fixes WHERE device_key = ?1
             ORDER BY time_ms DESC LIMIT 1"
        ))?
        .query_row([key], stored_fix_from_row)
        .optional()?;
    let block: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT last_ms, block FROM fix_blocks WHERE device_key = ?1
             ORDER BY hour DESC LIMIT 1",
        )?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match (row, block) {
        (Some(row), Some((last_ms, _))) if ms(row.fix.time) > last_ms => Ok(Some(row)),
        (row, Some((_, block))) => {
            let newest = fix_block::decode(&block)?
                .into_iter()
                .max_by_key(|f| f.fix.time);
            Ok(newest.into_iter().chain(row).max_by_key(|f| f.fix.time))
        }
        (row, None) => Ok(row),
    }
}

/// Whether any device has a fix with `from_ms <= time < to_ms`.
pub(super) fn any_between(conn: &Connection, from_ms: i64, to_ms: i64) -> Result<bool, StoreError> {
    let in_rows: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM devices d WHERE EXISTS (SELECT 1 FROM fixes
                 WHERE device_key = d.device_key AND time_ms >= ?1 AND time_ms < ?2))",
        )?
        .query_row(params![from_ms, to_ms], |r| r.get(0))?;
    if in_rows || from_ms >= to_ms {
        return Ok(in_rows);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT first_ms, last_ms, block FROM fix_blocks
         WHERE hour >= ?1 AND hour <= ?2 AND first_ms < ?4 AND last_ms >= ?3",
    )?;
    let mut blocks = stmt.query(params![
        hour_of(from_ms),
        hour_of(to_ms - 1),
        from_ms,
        to_ms
    ])?;
    while let Some(row) = blocks.next()? {
        let (first_ms, last_ms): (i64, i64) = (row.get(0)?, row.get(1)?);
        if first_ms >= from_ms || last_ms < to_ms {
            return Ok(true); // an end of the block lies inside the range
        }
        let block: Vec<u8> = row.get(2)?;
        if fix_block::decode(&block)?.iter().any(|f| {
            let t = ms(f.fix.time);
            t >= from_ms && t < to_ms
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Fixes stored, and the oldest and newest device time among them.
pub(super) fn census(conn: &Connection) -> Result<(u64, Option<i64>, Option<i64>), StoreError> {
    let (rows, rows_oldest, rows_newest): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT count(*), min(time_ms), max(time_ms) FROM fixes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (in_blocks, blocks_oldest, blocks_newest): (i64, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT coalesce(sum(fixes), 0), min(first_ms), max(last_ms) FROM fix_blocks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
    let oldest = rows_oldest.into_iter().chain(blocks_oldest).min();
    let newest = rows_newest.into_iter().chain(blocks_newest).max();
    Ok(((rows + in_blocks) as u64, oldest, newest))
}

/// Moves the rows of at most `limit` device-hours that ended by `ended_by_ms` and took no fix
/// since `quiet_since_ms` into blocks; returns the fixes moved.
pub(super) fn compact(
    tx: &Transaction,
    ended_by_ms: i64,
    quiet_since_ms: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    let hours: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT device_key, hour FROM open_fix_hours
             WHERE hour < ?1 AND received_ms < ?2 ORDER BY hour, device_key LIMIT ?3",
        )?
        .query_map(
            params![ended_by_ms.div_euclid(BLOCK_MS), quiet_since_ms, limit],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut moved = 0;
    if !hours.is_empty() {
        bump_generation(tx)?;
    }
    for (key, hour) in hours {
        let (from_ms, to_ms) = (hour * BLOCK_MS, (hour + 1) * BLOCK_MS);
        let rows = between(tx, key, from_ms, to_ms, usize::MAX)?;
        tx.prepare_cached("DELETE FROM open_fix_hours WHERE device_key = ?1 AND hour = ?2")?
            .execute(params![key, hour])?;
        if rows.is_empty() {
            continue;
        }
        let (first_ms, last_ms) = (ms(rows[0].fix.time), ms(rows[rows.len() - 1].fix.time));
        tx.prepare_cached(
            "INSERT INTO fix_blocks (device_key, hour, fixes, first_ms, last_ms, block)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET fixes = excluded.fixes, first_ms = excluded.first_ms,
                 last_ms = excluded.last_ms, block = excluded.block",
        )?
        .execute(params![
            key,
            hour,
            rows.len() as i64,
            first_ms,
            last_ms,
            fix_block::encode(&rows)?
        ])?;
        tx.prepare_cached(
            "DELETE FROM fixes WHERE device_key = ?1 AND time_ms >= ?2 AND time_ms < ?3",
        )?
        .execute(params![key, from_ms, to_ms])?;
        moved += rows.len() as u64;
    }
    Ok(moved)
}

/// Deletes the fixes with a device time before `before_ms`; returns how many.
pub(super) fn prune(tx: &Transaction, before_ms: i64) -> Result<u64, StoreError> {
    let cut_hour = hour_of(before_ms);
    bump_generation(tx)?;
    let mut deleted = tx.execute("DELETE FROM fixes WHERE time_ms < ?1", [before_ms])? as u64;
    tx.execute("DELETE FROM open_fix_hours WHERE hour < ?1", [cut_hour])?;
    deleted += tx.query_row(
        "SELECT coalesce(sum(fixes), 0) FROM fix_blocks WHERE hour < ?1",
        [cut_hour],
        |r| r.get::<_, i64>(0),
    )? as u64;
    tx.execute("DELETE FROM fix_blocks WHERE hour < ?1", [cut_hour])?;
    // The hour of the cut keeps its later fixes.
    let cut: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT device_key, block FROM fix_blocks WHERE hour = ?1 AND first_ms < ?2",
        )?
        .query_map(params![cut_hour, before_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (key, block) in cut {
        let (kept, gone): (Vec<StoredFix>, Vec<StoredFix>) = fix_block::decode(&block)?
            .into_iter()
            .partition(|f| ms(f.fix.time) >= before_ms);
        deleted += gone.len() as u64;
        match kept.first() {
            None => tx
                .prepare_cached("DELETE FROM fix_blocks WHERE device_key = ?1 AND hour = ?2")?
                .execute(params![key, cut_hour])?,
            Some(first) => tx
                .prepare_cached(
                    "UPDATE fix_blocks SET fixes = ?3, first_ms = ?4, block = ?5
                     WHERE device_key = ?1 AND hour = ?2",
                )?
                .execute(params![
                    key,
                    cut_hour,
                    kept.len() as i64,
                    ms(first.fix.time),
                    fix_block::encode(&kept)?
                ])?,
        };
    }
    Ok(deleted)
}
