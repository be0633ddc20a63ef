use cleanfleet_model::RejectReason;

use crate::conformance::{fixes_in, runs_of, t, Backend, RECEIVED};
use crate::{ProvenanceStore, Trust};

use super::*;

/// A store file of its own in a directory that does not exist yet.
struct SqliteBackend {
    dir: tempfile::TempDir,
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;
    fn open(&self) -> SqliteStore {
        SqliteStore::open(SqliteConfig::new(self.dir.path().join("sub/store.sqlite"))).unwrap()
    }
}

fn fresh_backend() -> SqliteBackend {
    SqliteBackend {
        dir: tempfile::tempdir().unwrap(),
    }
}

mod conformance {
    crate::store_conformance_suite!(super::fresh_backend);
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(SqliteConfig::new(dir.path().join("sub/store.sqlite"))).unwrap()
}

#[test]
fn schema_newer_than_the_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    drop(SqliteStore::open(SqliteConfig::new(&path)).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open(SqliteConfig::new(&path)),
        Err(StoreError::SchemaTooNew { found: 99, .. })
    ));
}

#[tokio::test]
async fn records_stored_before_provenance_are_of_unknown_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 3).unwrap();
        conn.execute_batch(
            "INSERT INTO devices (device_key, device_id, kind, first_received_ms, last_received_ms)
                 VALUES (1, 'sw-old', 'sweeper', 0, 0);
             INSERT INTO fixes (device_key, time_ms, lat, lon, work_flags, received_ms)
                 VALUES (1, 1763708400000, 32.0, 120.9, 0, 1763708400000);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let day = (t("2025-11-21T00:00:00Z"), t("2025-11-22T00:00:00Z"));
    let runs = store.provenance("sw-old", day.0, day.1).await.unwrap();
    assert_eq!(runs_of(&runs), vec![("fixes", 1, Trust::Unknown, "", None)]);
    let sources = store
        .device_sources(vec!["sw-old".into()], day.0, day.1)
        .await
        .unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].1.trust, Trust::Unknown);
}

#[tokio::test]
async fn dead_letters_beyond_their_caps_are_counted_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SqliteConfig::new(dir.path().join("store.sqlite"));
    config.dead_letter_caps = DeadLetterCaps {
        per_device_bytes: 3_000,
        total_bytes: 5_000,
    };
    let store = SqliteStore::open(config).unwrap();
    let junk = |device: &str, n: u8| IngestItem::Rejected {
        topic: format!("cleanfleet/v1/sweeper/{device}/fixes"),
        payload: vec![n; 1_000],
        reason: RejectReason::MalformedJson,
        detail: "junk".into(),
        received: t(RECEIVED),
    };
    let each = 1_000 + "cleanfleet/v1/sweeper/sw-1/fixes".len() as u64 + 4;
    // Two of sw-1's fit its 3,000 bytes, the third does not; sw-2's two fill the total up to
    // where sw-3's first does not fit either.
    let report = store
        .write_batch(vec![junk("sw-1", 1), junk("sw-1", 2), junk("sw-1", 3)])
        .await
        .unwrap();
    assert_eq!(
        (report.dead_letters_inserted, report.dead_letters_not_kept),
        (2, 1)
    );
    let report = store
        .write_batch(vec![junk("sw-2", 1), junk("sw-2", 2), junk("sw-3", 1)])
        .await
        .unwrap();
    assert_eq!(
        (report.dead_letters_inserted, report.dead_letters_not_kept),
        (2, 1)
    );
    // One kept before is only counted again, even over the cap.
    let report = store.write_batch(vec![junk("sw-1", 1)]).await.unwrap();
    assert_eq!(
        (report.dead_letters_inserted, report.dead_letters_not_kept),
        (0, 0)
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.dead_letters, 4);
    assert_eq!(stats.dead_letter_bytes, 4 * each);
    assert_eq!(stats.dead_letters_not_kept, 2);
    let letters = store
        .dead_letters(DeadLetterQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        letters.iter().map(|l| l.times_seen).sum::<u64>(),
        5,
        "{letters:?}"
    );
    // Pruned dead letters free their room; what was not kept stays counted.
    store.prune(t("2026-11-22T00:00:00Z")).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.dead_letters, stats.dead_letter_bytes), (0, 0));
    assert_eq!(stats.dead_letters_not_kept, 2);
    let report = store.write_batch(vec![junk("sw-3", 1)]).await.unwrap();
    assert_eq!(report.dead_letters_inserted, 1);
}

/// Dead letters kept before the caps existed are counted for the devices their topics name.
#[test]
fn dead_letters_from_before_the_caps_are_counted_by_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 4).unwrap();
        conn.execute_batch(
            "INSERT INTO dead_letters (digest, topic, reason, detail, payload, first_received_ms,
                 last_received_ms, times_seen)
             VALUES (x'01', 'cleanfleet/v1/sweeper/sw-1/fixes', 'malformed_json', 'EOF', x'7b7b',
                     0, 0, 1),
                    (x'02', 'cleanfleet/v1/bin/bin-3/reading', 'malformed_json', '−', x'7b',
                     0, 0, 1),
                    (x'03', 'elsewhere', 'unknown_topic', 'no', x'00', 0, 0, 1);",
        )
        .unwrap();
    }
    let _store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let conn = Connection::open(&path).unwrap();
    let usage: Vec<(String, i64)> = conn
        .prepare("SELECT scope, bytes FROM dead_letter_usage ORDER BY scope")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let sw1 = 32 + 3 + 2;
    let bin3 = 31 + "−".len() as i64 + 1;
    let none = 9 + 2 + 1;
    assert_eq!(
        usage,
        vec![
            ("device:".into(), none),
            ("device:bin-3".into(), bin3),
            ("device:sw-1".into(), sw1),
            ("total".into(), sw1 + bin3 + none),
        ]
    );
}

fn fix_rows(store: &SqliteStore) -> i64 {
    let conn = Connection::open(store.path()).unwrap();
    conn.query_row("SELECT count(*) FROM fixes", [], |r| r.get(0))
        .unwrap()
}

/// A settled device-hour becomes one block and its rows go (the conformance suite checks that
/// readers see the same).
#[tokio::test]
async fn settled_hours_are_compacted_an_hour_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write_batch(vec![
            fixes_in("sw-1", 5, &[0, 10, 59]),
            fixes_in("sw-1", 6, &[0, 10, 59]),
            fixes_in("sw-1", 7, &[0, 10, 59]),
            fixes_in("sw-2", 7, &[5]),
        ])
        .await
        .unwrap();
    // Received at 08:00: at 08:10 hours 5 and 6 ended more than 15 min ago, 7 did not.
    let compact = |now: &str, limit| store.compact(t(now), limit);
    assert_eq!(compact("2026-11-21T08:10:00Z", 100).await.unwrap(), 6);
    assert_eq!(fix_rows(&store), 4);
    assert_eq!(compact("2026-11-21T09:00:00Z", 1).await.unwrap(), 3);
    assert_eq!(compact("2026-11-21T09:00:00Z", 100).await.unwrap(), 1);
    assert_eq!(compact("2026-11-21T09:00:00Z", 100).await.unwrap(), 0);
    assert_eq!(fix_rows(&store), 0);
}

#[tokio::test]
async fn an_hour_still_taking_messages_is_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write_batch(vec![fixes_in("sw-1", 6, &[0, 10])])
        .await
        .unwrap();
    // The hour ended long ago, but its last message came a minute ago: a backfill.
    assert_eq!(
        store.compact(t("2026-11-21T08:01:00Z"), 100).await.unwrap(),
        0
    );
    assert_eq!(
        store.compact(t("2026-11-21T08:03:00Z"), 100).await.unwrap(),
        2
    );
}

#[tokio::test]
async fn a_compaction_by_another_process_reopens_the_hour_for_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = open(&dir);
    let other = open(&dir);
    ingest
        .write_batch(vec![fixes_in("sw-1", 6, &[0, 1])])
        .await
        .unwrap();
    assert_eq!(
        other.compact(t("2026-11-21T09:00:00Z"), 100).await.unwrap(),
        2
    );
    // `ingest` knew the hour open; the compaction it did not do tells it otherwise.
    let late = ingest
        .write_batch(vec![fixes_in("sw-1", 6, &[1, 2])])
        .await
        .unwrap();
    assert_eq!((late.fixes_inserted, late.duplicate_records), (1, 1));
    assert_eq!(fix_rows(&ingest), 3);
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    assert_eq!(
        ingest.track("sw-1", day.0, day.1, 100).await.unwrap().len(),
        3
    );
    assert_eq!(
        other.compact(t("2026-11-21T09:00:00Z"), 100).await.unwrap(),
        3
    );
    assert_eq!(ingest.stats().await.unwrap().fixes, 3);
}

/// Vehicles' days with overspeed work and who worked in a section are each read from one
/// index alone, not looked up row by row in their table, and unsorted (the devices of a
/// section are few: they are told apart in a temporary tree).
#[tokio::test]
async fn report_reads_use_their_covering_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let conn = Connection::open(store.path()).unwrap();
    let reads: [(String, &[&dyn rusqlite::ToSql], &str); 2] = [
        (
            overspeed_days_sql(),
            params!["2026-11-01", "2026-11-30"],
            "vehicle_days_overspeeding",
        ),
        (
            DEVICES_IN_SECTION_SQL.to_owned(),
            params!["S1", "2026-11-01", "2026-11-30"],
            "vehicle_days_by_section",
        ),
    ];
    for (sql, params, index) in reads {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let covering = format!("USING COVERING INDEX {index}");
        assert!(
            plan.iter().any(|step| step.contains(&covering)),
            "{sql}: {plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|step| step.contains("TEMP B-TREE FOR ORDER BY")),
            "{sql}: {plan:?}"
        );
    }
}
