//! What every backend of the store must do, as one suite of tests that each backend runs
//! (`store_conformance_suite!`, after quickwit's `metastore_test_suite!`): the contract of
//! the role traits, written once. A new backend (InfluxDB, PostgreSQL) is done when it
//! passes it; the SQLite backend runs it in its own tests.
//!
//! Behaviour particular to one backend (SQLite's schema migrations, when it compacts an
//! hour, which index a query uses) is tested beside that backend, not here.

use std::sync::Arc;

use cleanfleet_model::{decode, DeviceKind, DeviceState, Limits, RejectReason, WorkType};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::{
    CoverageBacklog, CoverageChunk, CoverageQueue, CredentialRecord, CredentialStore, DayRecords,
    DeadLetterQuery, Delivery, DeviceQuery, DeviceReads, IngestItem, IngestSink, Maintenance,
    OverspeedDayRecord, PassReads, PassRecord, ProvenanceStore, Readings, SegmentDayRecord,
    SourceRun, StaleVehicleDay, Store, StoreError, Trust, VehicleDayRecord,
};

/// A backend under test. Each test takes a fresh one (an empty store of its own); `open`
/// gives another handle on that same store each time: after `close`, a restart; while
/// another is open, a second process.
pub trait Backend: Send + Sync + 'static {
    type Store: Store + Clone;
    fn open(&self) -> Self::Store;
}

/// Runs the whole suite for a backend: `store_conformance_suite!(path::to::fresh_backend);`
/// in a test module, where `fresh_backend()` returns a new [`Backend`].
#[macro_export]
macro_rules! store_conformance_suite {
    ($fresh:path) => {
        $crate::store_conformance_suite!(@each $fresh;
            batch_is_stored_once_and_duplicates_are_counted,
            latest_state_follows_device_time_not_arrival_order,
            any_arrival_order_gives_the_same_contents,
            devices_page_by_id_and_filter_by_kind,
            track_is_a_half_open_time_range,
            data_survives_close_and_reopen,
            prune_deletes_only_older_data,
            dead_letters_filter_and_page_newest_first,
            new_fixes_make_their_hours_stale_and_passes_replace_them,
            a_device_that_sends_often_does_not_starve_the_others,
            another_road_network_forgets_every_pass,
            bin_readings_of_a_range_by_bin_and_time,
            a_fix_at_a_stored_time_elsewhere_is_a_dead_letter_not_a_duplicate,
            of_two_places_at_one_time_the_same_is_kept_whatever_the_order,
            credentials_are_issued_once_rotated_and_revoked_for_good,
            every_record_names_the_login_that_delivered_it,
            a_sample_over_the_api_names_its_token,
            a_source_is_stored_once_however_often_it_is_resolved,
            after_revocation_a_late_message_does_not_keep_the_credential_cached,
            one_vehicles_passes_are_the_fleets_of_that_vehicle,
            changed_passes_make_their_segments_local_days_stale_until_computed,
            changed_passes_make_their_vehicles_local_days_stale_until_computed,
            fixes_into_a_compacted_hour_are_judged_as_before,
            prune_cuts_through_a_compacted_hour,
            segment_passes_come_by_start_then_device_id,
            compaction_changes_nothing_readers_see,
        );
    };
    (@each $fresh:path; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::conformance::$test($fresh).await
            }
        )+
    };
}

pub fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub const RECEIVED: &str = "2026-11-21T08:00:00Z";

pub const BROKER: &str = "mqtt://broker.test:1883";

pub fn delivered(topic: &str, payload: &str, delivery: Delivery) -> IngestItem {
    IngestItem::Accepted {
        message: decode(topic, payload.as_bytes(), t(RECEIVED), &Limits::default()).unwrap(),
        received: t(RECEIVED),
        delivery: Arc::new(delivery),
    }
}

pub fn accepted(topic: &str, payload: &str) -> IngestItem {
    delivered(
        topic,
        payload,
        Delivery::Mqtt {
            broker: BROKER.into(),
            binds_logins: true,
        },
    )
}

pub fn fixes(device: &str, minutes: &[u32]) -> IngestItem {
    fixes_in(device, 7, minutes)
}

/// A sweeper's fixes at `minutes` of `hour` on 2026-11-21 (UTC).
pub fn fixes_in(device: &str, hour: u32, minutes: &[u32]) -> IngestItem {
    let fixes: Vec<String> = minutes
        .iter()
        .map(|m| {
            format!(
                r#"{{"time":"2026-11-21T{hour:02}:{m:02}:00Z","seq":{m},"lat":32.0{m:02},"lon":120.9,"speed_kmh":6,"work":{{"brush":true}}}}"#
            )
        })
        .collect();
    accepted(
        &format!("cleanfleet/v1/sweeper/{device}/fixes"),
        &format!(r#"{{"fixes":[{}]}}"#, fixes.join(",")),
    )
}

pub fn rejected(payload: &str) -> IngestItem {
    IngestItem::Rejected {
        topic: "cleanfleet/v1/sweeper/sw-1/fixes".into(),
        payload: payload.as_bytes().to_vec(),
        reason: RejectReason::MalformedJson,
        detail: "EOF".into(),
        received: t(RECEIVED),
    }
}

pub async fn batch_is_stored_once_and_duplicates_are_counted<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    let report = store
        .write_batch(vec![fixes("sw-1", &[1, 2, 3]), rejected("{")])
        .await
        .unwrap();
    assert_eq!(report.fixes_inserted, 3);
    assert_eq!(report.records_inserted, 3);
    assert_eq!(report.duplicate_records, 0);
    assert_eq!(report.dead_letters_inserted, 1);

    let again = store
        .write_batch(vec![fixes("sw-1", &[2, 3, 4]), rejected("{")])
        .await
        .unwrap();
    assert_eq!(again.fixes_inserted, 1);
    assert_eq!(again.duplicate_records, 2);
    assert_eq!(again.dead_letters_inserted, 0);

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.fixes, 4);
    assert_eq!(stats.devices, 1);
    assert_eq!(stats.dead_letters, 1);
    assert_eq!(stats.dead_letters_by_reason["malformed_json"], 1);
    let letters = store
        .dead_letters(DeadLetterQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(letters[0].times_seen, 2);
    assert_eq!(letters[0].payload, b"{");
}

pub async fn latest_state_follows_device_time_not_arrival_order<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store.write_batch(vec![fixes("sw-1", &[30])]).await.unwrap();
    store
        .write_batch(vec![fixes("sw-1", &[10, 20])])
        .await
        .unwrap();
    let d = store.device("sw-1").await.unwrap().unwrap();
    assert_eq!(d.latest_fix.unwrap().time, t("2026-11-21T07:30:00Z"));
    assert_eq!(d.kind, DeviceKind::Sweeper);
}

pub async fn any_arrival_order_gives_the_same_contents<B: Backend>(fresh: impl Fn() -> B) {
    let items = vec![
        fixes("sw-1", &[1, 5]),
        fixes("sw-2", &[2]),
        fixes("sw-1", &[3, 1]),
        accepted(
            "cleanfleet/v1/bin/b-1/reading",
            r#"{"time":"2026-11-21T07:00:00Z","fill_ratio":0.4}"#,
        ),
        accepted(
            "cleanfleet/v1/bin/b-1/reading",
            r#"{"time":"2026-11-21T06:00:00Z","fill_ratio":0.9}"#,
        ),
        accepted(
            "cleanfleet/v1/bin/b-1/status",
            r#"{"state":"online","time":"2026-11-21T05:00:00Z"}"#,
        ),
        accepted(
            "cleanfleet/v1/bin/b-1/status",
            r#"{"state":"offline","time":"2026-11-21T07:30:00Z"}"#,
        ),
    ];
    let mut outcomes = Vec::new();
    // Forward, reversed, and one batch per message, each once and with everything repeated.
    for variant in 0..4 {
        let backend = fresh();
        let store = backend.open();
        let mut order = items.clone();
        if variant % 2 == 1 {
            order.reverse();
        }
        let repeats = if variant >= 2 { 2 } else { 1 };
        for _ in 0..repeats {
            for item in &order {
                store.write_batch(vec![item.clone()]).await.unwrap();
            }
        }
        let devices = store
            .devices(DeviceQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let track = store
            .track(
                "sw-1",
                t("2026-11-21T00:00:00Z"),
                t("2026-11-22T00:00:00Z"),
                100,
            )
            .await
            .unwrap();
        let mut stats = store.stats().await.unwrap();
        stats.dead_letters_by_reason.clear();
        outcomes.push((devices, track, stats));
    }
    for o in &outcomes[1..] {
        assert_eq!(o, &outcomes[0]);
    }
    let (devices, track, _) = &outcomes[0];
    assert_eq!(
        track.iter().map(|f| f.seq.unwrap()).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
    let bin = devices.iter().find(|d| d.device_id == "b-1").unwrap();
    assert_eq!(bin.latest_bin_reading.as_ref().unwrap().fill_ratio, 0.4);
    assert_eq!(bin.status, Some(DeviceState::Offline));
}

pub async fn devices_page_by_id_and_filter_by_kind<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![
            fixes("sw-3", &[1]),
            fixes("sw-1", &[1]),
            fixes("sw-2", &[1]),
            accepted(
                "cleanfleet/v1/bin/b-1/reading",
                r#"{"time":"2026-11-21T07:00:00Z","fill_ratio":0.4}"#,
            ),
        ])
        .await
        .unwrap();
    let page = |after: Option<&str>, kinds: Vec<DeviceKind>| {
        let store = store.clone();
        let after = after.map(str::to_owned);
        async move {
            store
                .devices(DeviceQuery {
                    kinds,
                    after,
                    limit: 2,
                    only: None,
                })
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.device_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, vec![]).await, ["b-1", "sw-1"]);
    assert_eq!(page(Some("sw-1"), vec![]).await, ["sw-2", "sw-3"]);
    assert_eq!(
        page(None, vec![DeviceKind::Sweeper]).await,
        ["sw-1", "sw-2"]
    );
    assert_eq!(
        page(None, vec![DeviceKind::Bin, DeviceKind::Toilet]).await,
        ["b-1"]
    );
    let only = |ids: &[&str], after: Option<&str>| {
        let store = store.clone();
        let query = DeviceQuery {
            kinds: vec![DeviceKind::Sweeper],
            after: after.map(str::to_owned),
            limit: 1,
            only: Some(ids.iter().map(|&d| d.to_owned()).collect()),
        };
        async move {
            store
                .devices(query)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.device_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only(&["sw-3", "b-1", "sw-1"], None).await, ["sw-1"]);
    assert_eq!(only(&["sw-3", "b-1", "sw-1"], Some("sw-1")).await, ["sw-3"]);
    assert!(
        only(&[], None).await.is_empty(),
        "nothing listed, nothing seen"
    );
}

pub async fn track_is_a_half_open_time_range<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![fixes("sw-1", &[1, 2, 3, 4])])
        .await
        .unwrap();
    let track = store
        .track(
            "sw-1",
            t("2026-11-21T07:02:00Z"),
            t("2026-11-21T07:04:00Z"),
            10,
        )
        .await
        .unwrap();
    assert_eq!(track.len(), 2);
    assert!(track[0].work.brush);
    assert!(store
        .track(
            "nobody",
            t("2026-11-21T07:00:00Z"),
            t("2026-11-22T00:00:00Z"),
            10
        )
        .await
        .unwrap()
        .is_empty());
}

pub async fn data_survives_close_and_reopen<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![fixes("sw-1", &[1, 2])])
        .await
        .unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.write_batch(vec![fixes("sw-1", &[3])]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));
    drop(store);
    let reopened = backend.open();
    assert_eq!(reopened.stats().await.unwrap().fixes, 2);
}

pub async fn prune_deletes_only_older_data<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![fixes("sw-1", &[1, 2, 3])])
        .await
        .unwrap();
    let deleted = store.prune(t("2026-11-21T07:02:00Z")).await.unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.stats().await.unwrap().fixes, 2);
}

pub async fn dead_letters_filter_and_page_newest_first<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    let mut items: Vec<IngestItem> = (0..5).map(|i| rejected(&format!("{{{i}"))).collect();
    if let IngestItem::Rejected { reason, .. } = &mut items[4] {
        *reason = RejectReason::OutOfRange;
    }
    store.write_batch(items).await.unwrap();
    let first = store
        .dead_letters(DeadLetterQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    // Ids are the store's own; only their order is the contract (newest first, here the
    // order of the batch).
    let payloads = |letters: &[crate::DeadLetter]| -> Vec<String> {
        letters
            .iter()
            .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
            .collect()
    };
    assert_eq!(payloads(&first), ["{4", "{3"]);
    let next = store
        .dead_letters(DeadLetterQuery {
            limit: 10,
            before_id: Some(first[1].id),
            reason: Some(RejectReason::MalformedJson),
        })
        .await
        .unwrap();
    assert_eq!(payloads(&next), ["{2", "{1", "{0"]);
    let out_of_range = store
        .dead_letters(DeadLetterQuery {
            limit: 10,
            before_id: None,
            reason: Some(RejectReason::OutOfRange),
        })
        .await
        .unwrap();
    assert_eq!(out_of_range.len(), 1);
}

pub fn pass(device: &str, start: &str, segment: u32) -> PassRecord {
    PassRecord {
        device_id: device.into(),
        segment,
        forward: true,
        from_m: 0.0,
        to_m: 100.0,
        start: t(start),
        end: t(start) + jiff::SignedDuration::from_secs(60),
        work: WorkType::Sweep,
        invalid: None,
        max_speed_kmh: 6.0,
    }
}

pub async fn new_fixes_make_their_hours_stale_and_passes_replace_them<B: Backend>(
    fresh: impl Fn() -> B,
) {
    let backend = fresh();
    let store = backend.open();
    // 07:01–07:03 are context of hour 06, which has fixes of its own (06:58); 07:55 is
    // context of 08:00, which has none yet.
    // The store keeps milliseconds.
    let before = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    store
        .write_batch(vec![fixes_in("sw-1", 6, &[58]), fixes("sw-1", &[1, 2, 3])])
        .await
        .unwrap();
    let stored = Timestamp::now();
    let stale = store.stale_chunks(10).await.unwrap();
    let waiting_since = stale[0].stale_since.expect("when the fixes were stored");
    assert!(
        (before..=stored).contains(&waiting_since),
        "{before} ≤ {waiting_since} ≤ {stored}"
    );
    assert_eq!(stale.len(), 2, "hours 06 and 07: {stale:?}");
    assert_eq!(
        store.coverage_backlog().await.unwrap(),
        CoverageBacklog {
            stale_chunks: 2,
            stale_from: Some(t("2026-11-21T06:00:00Z")),
            waiting_since: Some(waiting_since),
            stale_segment_days: 0,
            stale_vehicle_days: 0,
        }
    );
    assert_eq!(
        stale.iter().map(|c| c.start).collect::<Vec<_>>(),
        [t("2026-11-21T06:00:00Z"), t("2026-11-21T07:00:00Z")]
    );
    assert_eq!(stale[1].kind, DeviceKind::Sweeper);
    let seven = stale[1].clone();

    // A duplicate changes nothing; passes for the version read make the chunk fresh.
    store.write_batch(vec![fixes("sw-1", &[2])]).await.unwrap();
    store
        .put_passes(
            seven.clone(),
            vec![pass("sw-1", "2026-11-21T07:01:00Z", 5)],
            &TimeZone::UTC,
        )
        .await
        .unwrap();
    let stale = store.stale_chunks(10).await.unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].start, t("2026-11-21T06:00:00Z"));
    assert_eq!(stale[0].stale_since, Some(waiting_since), "still waiting");

    // A late fix makes the hour stale again; passes computed from the old version leave it
    // stale, and replace rather than add.
    store.write_batch(vec![fixes("sw-1", &[30])]).await.unwrap();
    store
        .put_passes(
            seven.clone(),
            vec![pass("sw-1", "2026-11-21T07:02:00Z", 6)],
            &TimeZone::UTC,
        )
        .await
        .unwrap();
    let stale = store.stale_chunks(10).await.unwrap();
    let again = stale.iter().find(|c| c.start == seven.start).unwrap();
    assert!(again.version > seven.version);
    assert_eq!(
        again.stale_since,
        Some(seven.listed_at),
        "the late fix may be missing from passes of the version listed before it: it waits \
         from the listing"
    );
    store
        .put_passes(
            again.clone(),
            vec![pass("sw-1", "2026-11-21T07:02:00Z", 6)],
            &TimeZone::UTC,
        )
        .await
        .unwrap();
    assert!(
        !store
            .stale_chunks(10)
            .await
            .unwrap()
            .iter()
            .any(|c| c.start == seven.start),
        "current"
    );
    let from = t("2026-11-21T00:00:00Z");
    let to = t("2026-11-22T00:00:00Z");
    let passes = store.passes(from, to, None).await.unwrap();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].segment, 6);
    let stale_hours = || async {
        let chunks = store.stale_chunks(10).await.unwrap();
        chunks.iter().map(|c| c.start).collect::<Vec<_>>()
    };
    store.write_batch(vec![fixes("sw-1", &[55])]).await.unwrap();
    assert!(
        !stale_hours().await.contains(&t("2026-11-21T08:00:00Z")),
        "an hour without fixes of its own has no passes to compute"
    );
    store
        .write_batch(vec![fixes_in("sw-1", 8, &[2])])
        .await
        .unwrap();
    let eight = store.stale_chunks(10).await.unwrap();
    let eight = eight.iter().find(|c| c.start == t("2026-11-21T08:00:00Z"));
    store
        .put_passes(eight.unwrap().clone(), Vec::new(), &TimeZone::UTC)
        .await
        .unwrap();
    assert!(!stale_hours().await.contains(&t("2026-11-21T08:00:00Z")));
    store.write_batch(vec![fixes("sw-1", &[56])]).await.unwrap();
    assert!(
        stale_hours().await.contains(&t("2026-11-21T08:00:00Z")),
        "now that it has fixes, 07:56 is its context"
    );
    assert!(store
        .passes(from, to, Some("sw-2".into()))
        .await
        .unwrap()
        .is_empty());
}

/// Regression: chunks were listed by hour and device, so with a city live (every device's
/// hour stale again within seconds) the devices first seen were matched round after round and
/// the others' fixes waited without bound.
pub async fn a_device_that_sends_often_does_not_starve_the_others<B: Backend>(
    fresh: impl Fn() -> B,
) {
    let backend = fresh();
    let store = backend.open();
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    store.write_batch(vec![fixes("sw-1", &[30])]).await.unwrap();
    let first = store.stale_chunks(10).await.unwrap();
    pause().await;
    store.write_batch(vec![fixes("sw-2", &[30])]).await.unwrap();
    store
        .put_passes(first[0].clone(), Vec::new(), &TimeZone::UTC)
        .await
        .unwrap();
    pause().await;
    store.write_batch(vec![fixes("sw-1", &[31])]).await.unwrap();
    let next = store.stale_chunks(1).await.unwrap();
    assert_eq!(next[0].device_id, "sw-2", "it has waited longer: {next:?}");
    let both = store.stale_chunks(10).await.unwrap();
    assert_eq!(
        both.iter()
            .map(|c| c.device_id.as_str())
            .collect::<Vec<_>>(),
        ["sw-2", "sw-1"]
    );
}

pub async fn another_road_network_forgets_every_pass<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    assert!(
        !store.use_coverage_network("demo-v1").await.unwrap(),
        "the first network"
    );
    store.write_batch(vec![fixes("sw-1", &[20])]).await.unwrap();
    let chunk = store.stale_chunks(10).await.unwrap().remove(0);
    store
        .put_passes(
            chunk,
            vec![pass("sw-1", "2026-11-21T07:20:00Z", 1)],
            &TimeZone::UTC,
        )
        .await
        .unwrap();
    assert!(store.stale_chunks(10).await.unwrap().is_empty());
    assert!(!store.use_coverage_network("demo-v1").await.unwrap());
    assert!(store.use_coverage_network("monaco").await.unwrap());
    assert_eq!(store.stale_chunks(10).await.unwrap().len(), 1);
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    assert!(store.passes(day.0, day.1, None).await.unwrap().is_empty());
}

pub async fn bin_readings_of_a_range_by_bin_and_time<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    let reading = |bin: &str, time: &str, fill: f64| {
        accepted(
            &format!("cleanfleet/v1/bin/{bin}/reading"),
            &format!(r#"{{"time":"{time}","fill_ratio":{fill}}}"#),
        )
    };
    store
        .write_batch(vec![
            reading("b-2", "2026-11-21T07:10:00Z", 0.85),
            reading("b-1", "2026-11-21T07:20:00Z", 0.5),
            reading("b-1", "2026-11-21T07:00:00Z", 0.4),
            reading("b-1", "2026-11-21T08:00:00Z", 0.9),
            fixes("sw-1", &[1]),
        ])
        .await
        .unwrap();
    let got = |from: &str, to: &str| {
        let store = store.clone();
        let (from, to) = (t(from), t(to));
        async move {
            store
                .bin_readings(from, to, 0.3, jiff::SignedDuration::from_hours(24))
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.device_id.unwrap(), r.time.to_string(), r.fill_ratio))
                .collect::<Vec<_>>()
        }
    };
    let row = |bin: &str, time: &str, fill| (bin.to_owned(), time.to_owned(), fill);
    assert_eq!(
        got("2026-11-21T07:00:00Z", "2026-11-21T08:00:00Z").await,
        [
            row("b-1", "2026-11-21T07:00:00Z", 0.4),
            row("b-1", "2026-11-21T07:20:00Z", 0.5),
            row("b-2", "2026-11-21T07:10:00Z", 0.85),
        ],
        "half-open, by bin and time"
    );
    // b-3 overflowed at 02:00 and was last emptied at 01:00: a range from 07:00 starts there.
    store
        .write_batch(vec![
            reading("b-3", "2026-11-20T23:00:00Z", 0.1),
            reading("b-3", "2026-11-21T01:00:00Z", 0.2),
            reading("b-3", "2026-11-21T02:00:00Z", 0.9),
            reading("b-3", "2026-11-21T05:00:00Z", 0.7),
            reading("b-3", "2026-11-21T07:30:00Z", 0.95),
        ])
        .await
        .unwrap();
    let b3: Vec<String> = got("2026-11-21T07:00:00Z", "2026-11-21T08:00:00Z")
        .await
        .into_iter()
        .filter(|r| r.0 == "b-3")
        .map(|r| r.1)
        .collect();
    assert_eq!(
        b3,
        [
            "2026-11-21T01:00:00Z",
            "2026-11-21T02:00:00Z",
            "2026-11-21T05:00:00Z",
            "2026-11-21T07:30:00Z"
        ]
    );
    assert!(store
        .received_any(t("2026-11-21T07:00:00Z"), t("2026-11-21T07:01:00Z"))
        .await
        .unwrap());
    assert!(!store
        .received_any(t("2026-11-21T09:00:00Z"), t("2026-11-21T10:00:00Z"))
        .await
        .unwrap());
}

/// A device that sends a second fix for a time it already reported, somewhere else: the
/// stored fix stays, and the other is kept as a dead letter with its reason and counted,
/// never dropped as a duplicate. The same fix again is a duplicate.
pub async fn a_fix_at_a_stored_time_elsewhere_is_a_dead_letter_not_a_duplicate<B: Backend>(
    fresh: impl Fn() -> B,
) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![fixes("sw-1", &[1, 2])])
        .await
        .unwrap();
    let elsewhere = accepted(
        "cleanfleet/v1/sweeper/sw-1/fixes",
        r#"{"fixes":[{"time":"2026-11-21T07:02:00Z","lat":32.5,"lon":120.9},{"time":"2026-11-21T07:03:00Z","lat":32.03,"lon":120.9}]}"#,
    );
    let report = store
        .write_batch(vec![elsewhere.clone(), fixes("sw-1", &[1])])
        .await
        .unwrap();
    assert_eq!(
        (
            report.fixes_inserted,
            report.duplicate_records,
            report.conflicting_fixes,
            report.dead_letters_inserted
        ),
        (1, 1, 1, 1)
    );
    let (from, to) = (t("2026-11-21T07:00:00Z"), t("2026-11-21T08:00:00Z"));
    let track = store.track("sw-1", from, to, 10).await.unwrap();
    assert_eq!(track.len(), 3);
    assert_eq!(track[1].lat, 32.002, "the stored fix stays");
    let letters = store
        .dead_letters(DeadLetterQuery {
            reason: Some(RejectReason::ConflictingFix),
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].detail.contains("2026-11-21T07:02:00Z"),
        "{}",
        letters[0].detail
    );
    assert!(String::from_utf8_lossy(&letters[0].payload).contains("32.5"));
    // Sent again: the same dead letter, seen twice.
    let again = store.write_batch(vec![elsewhere]).await.unwrap();
    assert_eq!(
        (again.conflicting_fixes, again.dead_letters_inserted),
        (1, 0)
    );
}

/// Which of two places at one time is kept does not depend on which arrived first.
pub async fn of_two_places_at_one_time_the_same_is_kept_whatever_the_order<B: Backend>(
    fresh: impl Fn() -> B,
) {
    let north = accepted(
        "cleanfleet/v1/sweeper/sw-1/fixes",
        r#"{"fixes":[{"time":"2026-11-21T07:02:00Z","lat":32.5,"lon":120.9}]}"#,
    );
    let south = accepted(
        "cleanfleet/v1/sweeper/sw-1/fixes",
        r#"{"fixes":[{"time":"2026-11-21T07:02:00Z","lat":32.1,"lon":120.9}]}"#,
    );
    let mut outcomes = Vec::new();
    for order in [[north.clone(), south.clone()], [south, north]] {
        let backend = fresh();
        let store = backend.open();
        let mut conflicting = 0;
        for item in order {
            conflicting += store
                .write_batch(vec![item])
                .await
                .unwrap()
                .conflicting_fixes;
        }
        let (from, to) = (t("2026-11-21T07:00:00Z"), t("2026-11-21T08:00:00Z"));
        let kept = store.track("sw-1", from, to, 10).await.unwrap();
        let letters = store
            .dead_letters(DeadLetterQuery {
                reason: Some(RejectReason::ConflictingFix),
                before_id: None,
                limit: 10,
            })
            .await
            .unwrap();
        let letters: Vec<Vec<u8>> = letters.into_iter().map(|l| l.payload).collect();
        outcomes.push((
            conflicting,
            kept.iter().map(|f| f.lat).collect::<Vec<_>>(),
            letters,
        ));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!((outcomes[0].0, &outcomes[0].1), (1, &vec![32.1]));
    assert!(String::from_utf8_lossy(&outcomes[0].2[0]).contains("32.5"));
}

pub async fn credentials_are_issued_once_rotated_and_revoked_for_good<B: Backend>(
    fresh: impl Fn() -> B,
) {
    use crate::{CredentialRecord, CredentialStore};
    use cleanfleet_identity::Role;
    use cleanfleet_model::DeviceKind;
    let backend = fresh();
    let store = backend.open();
    let issued = t(RECEIVED);
    let record = CredentialRecord {
        username: "sw-1".into(),
        role: Role::Device(DeviceKind::Sweeper),
        secret_hash: "$7$1000$a$b".into(),
        issued_at: issued,
        rotated_at: issued,
        revoked_at: None,
    };
    store.add_credential(record.clone()).await.unwrap();
    assert!(matches!(
        store.add_credential(record.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.credential("sw-1").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.credential("sw-2").await.unwrap(), None);
    let later = t("2026-11-21T09:00:00Z");
    assert!(store
        .rotate_credential("sw-1", "$7$1000$c$d".into(), later)
        .await
        .unwrap());
    let rotated = store.credential("sw-1").await.unwrap().unwrap();
    assert_eq!(
        (rotated.secret_hash.as_str(), rotated.rotated_at),
        ("$7$1000$c$d", later)
    );
    assert!(!store
        .rotate_credential("sw-2", "$7$1000$e$f".into(), later)
        .await
        .unwrap());
    assert!(store.revoke_credential("sw-1", later).await.unwrap());
    assert!(!store.revoke_credential("sw-1", later).await.unwrap());
    assert!(!store
        .rotate_credential("sw-1", "$7$1000$e$f".into(), later)
        .await
        .unwrap());
    // Revoked, its name is not issued again; it stays listed.
    assert!(store.add_credential(record).await.is_err());
    let all = store.credentials().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].revoked_at, Some(later));
    // Reopened, it is all still there.
    drop(store);
    let store = backend.open();
    assert_eq!(store.credentials().await.unwrap(), all);
}

pub fn credential(username: &str, role: cleanfleet_identity::Role, at: &str) -> CredentialRecord {
    CredentialRecord {
        username: username.into(),
        role,
        secret_hash: "$7$1000$x$y".into(),
        issued_at: t(at),
        rotated_at: t(at),
        revoked_at: None,
    }
}

pub fn runs_of(runs: &[SourceRun]) -> Vec<(&str, u64, Trust, &str, Option<Timestamp>)> {
    runs.iter()
        .map(|r| {
            (
                r.stream.as_str(),
                r.records,
                r.source.trust,
                r.source.principal.as_str(),
                r.source.credential_issued,
            )
        })
        .collect()
}

pub async fn every_record_names_the_login_that_delivered_it<B: Backend>(fresh: impl Fn() -> B) {
    use cleanfleet_identity::Role;
    let backend = fresh();
    let store = backend.open();
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    store
        .add_credential(credential(
            "sw-1",
            Role::Device(DeviceKind::Sweeper),
            "2026-11-01T00:00:00Z",
        ))
        .await
        .unwrap();
    // A credential of another kind does not vouch for a sweeper's topic.
    store
        .add_credential(credential(
            "sw-2",
            Role::Device(DeviceKind::Bin),
            "2026-11-01T00:00:00Z",
        ))
        .await
        .unwrap();
    store
        .write_batch(vec![fixes("sw-1", &[1, 2]), fixes("sw-2", &[1])])
        .await
        .unwrap();
    // The secret is rotated: later deliveries are the new secret's; a redelivery of a stored
    // fix keeps the source that stored it.
    assert!(store
        .rotate_credential("sw-1", "$7$1000$a$b".into(), t("2026-11-21T07:30:00Z"))
        .await
        .unwrap());
    store
        .write_batch(vec![fixes("sw-1", &[2, 3])])
        .await
        .unwrap();
    // The same device over a broker that does not bind topics to logins: the topic only.
    store
        .write_batch(vec![delivered(
            "cleanfleet/v1/sweeper/sw-1/status",
            r#"{"state":"online","time":"2026-11-21T07:05:00Z"}"#,
            Delivery::Mqtt {
                broker: "mqtt://other:1883".into(),
                binds_logins: false,
            },
        )])
        .await
        .unwrap();
    let runs = store.provenance("sw-1", day.0, day.1).await.unwrap();
    let old = Some(t("2026-11-01T00:00:00Z"));
    let new = Some(t("2026-11-21T07:30:00Z"));
    assert_eq!(
        runs_of(&runs),
        vec![
            ("fixes", 2, Trust::Credential, "sw-1", old),
            ("fixes", 1, Trust::Credential, "sw-1", new),
            ("status", 1, Trust::TopicOnly, "sw-1", None),
        ]
    );
    assert_eq!(runs[0].source.via, BROKER);
    assert_eq!(runs[2].source.via, "mqtt://other:1883");
    assert_eq!(runs[1].first, t("2026-11-21T07:03:00Z"));
    assert_eq!(
        runs_of(&store.provenance("sw-2", day.0, day.1).await.unwrap()),
        vec![("fixes", 1, Trust::TopicOnly, "sw-2", None)]
    );
    // After revocation a device's new records are the topic's word only.
    assert!(store
        .revoke_credential("sw-1", t("2026-11-21T07:50:00Z"))
        .await
        .unwrap());
    let mut late = fixes("sw-1", &[55]);
    if let IngestItem::Accepted { received, .. } = &mut late {
        *received = t("2026-11-21T08:00:00Z");
    }
    store.write_batch(vec![late]).await.unwrap();
    let runs = store.provenance("sw-1", day.0, day.1).await.unwrap();
    assert_eq!(
        runs_of(&runs)[2],
        ("fixes", 1, Trust::TopicOnly, "sw-1", None)
    );

    // The day index: every source of the day, without reading records.
    let by_device = store
        .device_sources(
            vec!["sw-2".into(), "sw-1".into(), "nobody".into()],
            day.0,
            day.1,
        )
        .await
        .unwrap();
    let trusts: Vec<(&str, Trust)> = by_device
        .iter()
        .map(|(d, s)| (d.as_str(), s.trust))
        .collect();
    assert_eq!(
        trusts,
        vec![
            ("sw-1", Trust::Credential),
            ("sw-1", Trust::Credential),
            ("sw-1", Trust::TopicOnly),
            ("sw-1", Trust::TopicOnly),
            ("sw-2", Trust::TopicOnly),
        ]
    );
    let next_day = (t("2026-11-22T00:00:00Z"), t("2026-11-23T00:00:00Z"));
    assert!(store
        .device_sources(vec!["sw-1".into()], next_day.0, next_day.1)
        .await
        .unwrap()
        .is_empty());
}

pub async fn a_sample_over_the_api_names_its_token<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    let sample = |id: &str| {
        format!(
            r#"{{"sample_id":"{id}","time":"2026-11-21T07:00:00Z","lat":32.0,"lon":120.9,"grams":4.0,"area_m2":1.0,"inspector":"li"}}"#
        )
    };
    store
        .write_batch(vec![
            delivered(
                "cleanfleet/v1/scale/app-li/sample",
                &sample("s-1"),
                Delivery::Api {
                    token: Some("li".into()),
                },
            ),
            delivered(
                "cleanfleet/v1/scale/app-li/sample",
                &sample("s-2"),
                Delivery::Api { token: None },
            ),
        ])
        .await
        .unwrap();
    let samples = store
        .samples(t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"))
        .await
        .unwrap();
    let sources: Vec<(&str, Trust, &str, &str)> = samples
        .iter()
        .map(|s| {
            (
                s.sample.sample_id.as_str(),
                s.source.trust,
                s.source.via.as_str(),
                s.source.principal.as_str(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        vec![
            ("s-1", Trust::Token, "api", "li"),
            ("s-2", Trust::Unauthenticated, "api", ""),
        ]
    );
}

/// Sources are one row each however often they are resolved: the same topic-only device or
/// API token after the cache is dropped (a credential changed) is the same source.
pub async fn a_source_is_stored_once_however_often_it_is_resolved<B: Backend>(
    fresh: impl Fn() -> B,
) {
    use cleanfleet_identity::Role;
    let backend = fresh();
    let store = backend.open();
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    for (n, minute) in [5, 6, 7].into_iter().enumerate() {
        store
            .write_batch(vec![fixes("sw-9", &[minute])])
            .await
            .unwrap();
        // Another device's credential changes: every cached source is resolved again.
        store
            .add_credential(credential(
                &format!("bin-{n}"),
                Role::Device(DeviceKind::Bin),
                "2026-11-01T00:00:00Z",
            ))
            .await
            .unwrap();
    }
    let runs = store.provenance("sw-9", day.0, day.1).await.unwrap();
    assert_eq!(
        runs_of(&runs),
        vec![("fixes", 3, Trust::TopicOnly, "sw-9", None)],
        "{runs:?}"
    );
    assert_eq!(
        store
            .device_sources(vec!["sw-9".into()], day.0, day.1)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A message queued before its device's credential was revoked is the credential's; the
/// next one, received after, is not, even in the same run of the writer.
pub async fn after_revocation_a_late_message_does_not_keep_the_credential_cached<B: Backend>(
    fresh: impl Fn() -> B,
) {
    use cleanfleet_identity::Role;
    let backend = fresh();
    let store = backend.open();
    store
        .add_credential(credential(
            "sw-1",
            Role::Device(DeviceKind::Sweeper),
            "2026-11-01T00:00:00Z",
        ))
        .await
        .unwrap();
    assert!(store
        .revoke_credential("sw-1", t("2026-11-21T07:30:00Z"))
        .await
        .unwrap());
    let at = |item: IngestItem, received: &str| match item {
        IngestItem::Accepted {
            message, delivery, ..
        } => IngestItem::Accepted {
            message,
            received: t(received),
            delivery,
        },
        rejected => rejected,
    };
    store
        .write_batch(vec![at(fixes("sw-1", &[1]), "2026-11-21T07:20:00Z")])
        .await
        .unwrap();
    store
        .write_batch(vec![at(fixes("sw-1", &[2]), "2026-11-21T07:40:00Z")])
        .await
        .unwrap();
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    let runs = store.provenance("sw-1", day.0, day.1).await.unwrap();
    let trusts: Vec<Trust> = runs.iter().map(|r| r.source.trust).collect();
    assert_eq!(
        trusts,
        vec![Trust::Credential, Trust::TopicOnly],
        "{runs:?}"
    );
}

/// One vehicle's passes come from its own rows (a primary-key range), not from the fleet's:
/// the same passes as the fleet's of that vehicle, bounds included (`from`) and excluded
/// (`to`), across hours.
pub async fn one_vehicles_passes_are_the_fleets_of_that_vehicle<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![fixes("sw-1", &[1]), fixes("sw-2", &[1])])
        .await
        .unwrap();
    let chunk = |device: &str, hour: &str| CoverageChunk {
        device_id: device.into(),
        kind: DeviceKind::Sweeper,
        start: t(hour),
        version: 1,
        stale_since: None,
        listed_at: Timestamp::now(),
    };
    for (device, hour, starts) in [
        (
            "sw-1",
            "2026-11-21T06:00:00Z",
            &["2026-11-21T06:59:59Z"][..],
        ),
        (
            "sw-1",
            "2026-11-21T07:00:00Z",
            &["2026-11-21T07:00:00Z", "2026-11-21T07:30:00Z"],
        ),
        ("sw-1", "2026-11-21T08:00:00Z", &["2026-11-21T08:10:00Z"]),
        ("sw-2", "2026-11-21T07:00:00Z", &["2026-11-21T07:15:00Z"]),
    ] {
        let passes = starts.iter().map(|s| pass(device, s, 1)).collect();
        store
            .put_passes(chunk(device, hour), passes, &TimeZone::UTC)
            .await
            .unwrap();
    }
    let (from, to) = (t("2026-11-21T07:00:00Z"), t("2026-11-21T08:10:00Z"));
    let all = store.passes(from, to, None).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    for device in ["sw-1", "sw-2", "sw-9"] {
        let theirs: Vec<PassRecord> = all
            .iter()
            .filter(|p| p.device_id == device)
            .cloned()
            .collect();
        assert_eq!(
            store.passes(from, to, Some(device.into())).await.unwrap(),
            theirs,
            "{device}"
        );
    }
    let sw1 = store.passes(from, to, Some("sw-1".into())).await.unwrap();
    assert_eq!(
        sw1.iter().map(|p| p.start).collect::<Vec<_>>(),
        [t("2026-11-21T07:00:00Z"), t("2026-11-21T07:30:00Z")]
    );
}

pub async fn changed_passes_make_their_segments_local_days_stale_until_computed<B: Backend>(
    fresh: impl Fn() -> B,
) {
    let backend = fresh();
    let store = backend.open();
    let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
    let date = |s: &str| s.parse::<Date>().unwrap();
    store.write_batch(vec![fixes("sw-1", &[20])]).await.unwrap();
    let chunk = store.stale_chunks(10).await.unwrap().remove(0);
    // 07:20 UTC is the 21st in Shanghai, 17:30 UTC already the 22nd.
    let passes = vec![
        pass("sw-1", "2026-11-21T07:20:00Z", 3),
        pass("sw-1", "2026-11-21T07:25:00Z", 3),
        pass("sw-1", "2026-11-21T17:30:00Z", 4),
    ];
    store
        .put_passes(chunk.clone(), passes, &shanghai)
        .await
        .unwrap();
    let stale = store.stale_segment_days(10).await.unwrap();
    assert_eq!(
        stale.iter().map(|s| (s.day, s.segment)).collect::<Vec<_>>(),
        [(date("2026-11-21"), 3), (date("2026-11-22"), 4)]
    );
    assert_eq!(
        store.coverage_backlog().await.unwrap().stale_segment_days,
        2
    );
    let (from, to) = (t("2026-11-20T16:00:00Z"), t("2026-11-21T16:00:00Z"));
    let three = store.segment_passes(vec![3, 4], from, to).await.unwrap();
    assert_eq!(
        three.iter().map(|p| p.start).collect::<Vec<_>>(),
        [t("2026-11-21T07:20:00Z"), t("2026-11-21T07:25:00Z")]
    );
    let row = |day: &str, segment| SegmentDayRecord {
        day: date(day),
        segment,
        covered: true,
        mechanised: true,
        deep_cleaned: false,
        covered_ratio: 0.95,
        missed: None,
        working_passes: 2,
        valid_passes: 2,
        valid_mileage_m: 41.5,
    };

    // The chunk's passes change again before segment 3's day is stored: the day stays stale.
    let first_3 = stale[0];
    store
        .put_passes(
            chunk.clone(),
            vec![pass("sw-1", "2026-11-21T07:20:00Z", 3)],
            &shanghai,
        )
        .await
        .unwrap();
    store
        .put_segment_days(vec![row("2026-11-21", 3)], vec![first_3])
        .await
        .unwrap();
    let stale = store.stale_segment_days(10).await.unwrap();
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert!(stale[0].version > first_3.version);
    // Computed for the current versions: fresh; segment 4 lost its pass and has no row.
    store
        .put_segment_days(vec![row("2026-11-21", 3)], stale)
        .await
        .unwrap();
    assert!(store.stale_segment_days(10).await.unwrap().is_empty());
    assert_eq!(
        store.coverage_backlog().await.unwrap().stale_segment_days,
        0
    );
    assert_eq!(
        store
            .segment_days(date("2026-11-20"), date("2026-11-22"), None)
            .await
            .unwrap(),
        [row("2026-11-21", 3)]
    );
    assert!(store
        .segment_days(date("2026-11-20"), date("2026-11-22"), Some(vec![4, 5]))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .segment_days(date("2026-11-22"), date("2026-11-30"), None)
        .await
        .unwrap()
        .is_empty());

    // Another network forgets them; pruning drops the days that are over everywhere.
    store
        .put_segment_days(vec![row("2026-11-22", 4)], vec![])
        .await
        .unwrap();
    store.prune(t("2026-11-23T12:00:00Z")).await.unwrap();
    assert_eq!(
        store
            .segment_days(date("2026-11-01"), date("2026-11-30"), Some(vec![3, 4]))
            .await
            .unwrap(),
        [row("2026-11-22", 4)]
    );
    store.use_coverage_network("another").await.unwrap();
    assert!(store
        .segment_days(date("2026-11-01"), date("2026-11-30"), None)
        .await
        .unwrap()
        .is_empty());
}

pub async fn changed_passes_make_their_vehicles_local_days_stale_until_computed<B: Backend>(
    fresh: impl Fn() -> B,
) {
    let backend = fresh();
    let store = backend.open();
    let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
    let date = |s: &str| s.parse::<Date>().unwrap();
    store
        .write_batch(vec![fixes("sw-1", &[20]), fixes("sw-2", &[20])])
        .await
        .unwrap();
    let chunks = store.stale_chunks(10).await.unwrap();
    // 07:20 UTC is the 21st in Shanghai, 17:30 UTC already the 22nd.
    store
        .put_passes(
            chunks[0].clone(),
            vec![
                pass("sw-1", "2026-11-21T07:20:00Z", 3),
                pass("sw-1", "2026-11-21T17:30:00Z", 4),
            ],
            &shanghai,
        )
        .await
        .unwrap();
    store
        .put_passes(chunks[1].clone(), Vec::new(), &shanghai)
        .await
        .unwrap();
    let stale = store.stale_vehicle_days(10).await.unwrap();
    let keys = |stale: &[StaleVehicleDay]| {
        stale
            .iter()
            .map(|s| (s.day, s.device_id.clone()))
            .collect::<Vec<_>>()
    };
    // sw-2 had no passes and has none: its day did not change.
    assert_eq!(
        keys(&stale),
        [
            (date("2026-11-21"), "sw-1".to_owned()),
            (date("2026-11-22"), "sw-1".to_owned())
        ]
    );
    assert_eq!(
        store.coverage_backlog().await.unwrap().stale_vehicle_days,
        2
    );
    let row = |day: &str, section: Option<&str>| VehicleDayRecord {
        day: date(day),
        device_id: "sw-1".into(),
        section: section.map(str::to_owned),
        road_class: "II".into(),
        passes: 2,
        working_passes: 1,
        valid_passes: 1,
        mileage_m: 200.0,
        working_mileage_m: 100.0,
        valid_mileage_m: 100.0,
        working_s: 60.0,
        max_working_speed_kmh: Some(6.0),
        overspeed_runs: vec![(t("2026-11-21T07:20:00Z"), t("2026-11-21T07:21:00Z"))],
    };

    // The passes change again before the 21st is stored: it stays stale.
    store
        .put_passes(
            chunks[0].clone(),
            vec![pass("sw-1", "2026-11-21T07:20:00Z", 3)],
            &shanghai,
        )
        .await
        .unwrap();
    store
        .put_vehicle_days(
            vec![row("2026-11-21", Some("S1")), row("2026-11-21", None)],
            vec![stale[0].clone()],
        )
        .await
        .unwrap();
    let again = store.stale_vehicle_days(10).await.unwrap();
    assert_eq!(keys(&again), keys(&stale));
    assert!(again[0].version > stale[0].version);
    // Computed for the current versions: fresh; rows replace the day's, outside every section
    // first; the 22nd lost its pass and has none.
    store
        .put_vehicle_days(vec![row("2026-11-21", Some("S2"))], again)
        .await
        .unwrap();
    assert!(store.stale_vehicle_days(10).await.unwrap().is_empty());
    assert_eq!(
        store
            .vehicle_days(date("2026-11-20"), date("2026-11-22"))
            .await
            .unwrap(),
        [row("2026-11-21", Some("S2"))]
    );
    store
        .put_vehicle_days(
            vec![row("2026-11-21", Some("S1")), row("2026-11-21", None)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .vehicle_days(date("2026-11-21"), date("2026-11-21"))
            .await
            .unwrap(),
        [
            row("2026-11-21", None),
            row("2026-11-21", Some("S1")),
            row("2026-11-21", Some("S2"))
        ]
    );

    // Another day's rows, by section and class: those with overspeed work, and who worked
    // in which sections.
    let on_class = |section: Option<&str>, class: &str, overspeeding: bool| VehicleDayRecord {
        section: section.map(str::to_owned),
        road_class: class.into(),
        overspeed_runs: if overspeeding {
            vec![(t("2026-11-21T08:00:00Z"), t("2026-11-21T08:01:00Z"))]
        } else {
            Vec::new()
        },
        ..row("2026-11-21", None)
    };
    let rows = [
        on_class(None, "III", false),
        on_class(None, "IV", true),
        on_class(Some("S1"), "I", false),
        on_class(Some("S2"), "II", false),
        on_class(Some("S3"), "II", true),
    ];
    store
        .put_vehicle_days(
            rows.to_vec(),
            vec![StaleVehicleDay {
                day: date("2026-11-21"),
                device_id: "sw-1".into(),
                version: 0,
            }],
        )
        .await
        .unwrap();
    let day = date("2026-11-21");
    assert_eq!(store.vehicle_days(day, day).await.unwrap(), rows);
    assert_eq!(
        store.overspeed_days(day, day).await.unwrap(),
        [&rows[1], &rows[4]].map(|r| OverspeedDayRecord {
            day,
            device_id: "sw-1".into(),
            section: r.section.clone(),
            runs: r.overspeed_runs.clone(),
        })
    );
    let devices_in = |first: &str, last: &str, sections: &[&str]| {
        let sections = sections.iter().map(|s| s.to_string()).collect();
        store.devices_with_passes_in(date(first), date(last), sections)
    };
    assert_eq!(
        devices_in("2026-11-21", "2026-11-21", &["S1", "S9"])
            .await
            .unwrap(),
        ["sw-1"]
    );
    assert!(devices_in("2026-11-21", "2026-11-21", &["S9"])
        .await
        .unwrap()
        .is_empty());
    assert!(devices_in("2026-11-22", "2026-11-30", &["S1"])
        .await
        .unwrap()
        .is_empty());

    // Other sections: every day with passes is stale again and its rows are gone; the same
    // sections change nothing.
    assert!(!store
        .use_vehicle_day_sections("zones-a", &shanghai)
        .await
        .unwrap());
    assert_eq!(
        keys(&store.stale_vehicle_days(10).await.unwrap()),
        [(date("2026-11-21"), "sw-1".to_owned())]
    );
    assert!(store
        .vehicle_days(date("2026-11-01"), date("2026-11-30"))
        .await
        .unwrap()
        .is_empty());
    let stale = store.stale_vehicle_days(10).await.unwrap();
    store
        .put_vehicle_days(vec![row("2026-11-21", None)], stale)
        .await
        .unwrap();
    assert!(!store
        .use_vehicle_day_sections("zones-a", &shanghai)
        .await
        .unwrap());
    assert!(store.stale_vehicle_days(10).await.unwrap().is_empty());
    assert!(store
        .use_vehicle_day_sections("zones-b", &shanghai)
        .await
        .unwrap());
    assert_eq!(store.stale_vehicle_days(10).await.unwrap().len(), 1);

    // Another network forgets them; pruning drops the days that are over everywhere.
    store
        .put_vehicle_days(vec![row("2026-11-21", None)], Vec::new())
        .await
        .unwrap();
    store.prune(t("2026-11-23T12:00:00Z")).await.unwrap();
    assert!(store
        .vehicle_days(date("2026-11-01"), date("2026-11-30"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.coverage_backlog().await.unwrap().stale_vehicle_days,
        0
    );
    store
        .put_vehicle_days(vec![row("2026-11-23", None)], Vec::new())
        .await
        .unwrap();
    store.use_coverage_network("another").await.unwrap();
    assert!(store
        .vehicle_days(date("2026-11-01"), date("2026-11-30"))
        .await
        .unwrap()
        .is_empty());
}

/// What a reader can see of the fixes of 2026-11-21.
pub async fn what_readers_see(store: &impl Store) -> impl PartialEq + std::fmt::Debug {
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    let mut tracks = Vec::new();
    for (device, from, to, limit) in [
        ("sw-1", day.0, day.1, 100),
        ("sw-1", day.0, day.1, 4),
        (
            "sw-1",
            t("2026-11-21T06:10:00Z"),
            t("2026-11-21T07:00:00Z"),
            100,
        ),
        ("sw-2", day.0, day.1, 100),
    ] {
        tracks.push(store.track(device, from, to, limit).await.unwrap());
    }
    let devices = store
        .devices(DeviceQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    let provenance = store.provenance("sw-1", day.0, day.1).await.unwrap();
    let mut received = Vec::new();
    for (from, to) in [
        ("2026-11-21T06:00:00Z", "2026-11-21T06:05:00Z"),
        ("2026-11-21T06:01:00Z", "2026-11-21T06:09:00Z"),
        ("2026-11-21T06:01:00Z", "2026-11-21T06:10:01Z"),
    ] {
        received.push(store.received_any(t(from), t(to)).await.unwrap());
    }
    (tracks, devices, stats, provenance, received)
}

/// Settled device data may be moved into a compact form ([`crate::Maintenance::compact`]):
/// a redelivery into it is a duplicate, another place at a stored time a conflict, a late
/// fix a new one, as before.
pub async fn fixes_into_a_compacted_hour_are_judged_as_before<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![fixes_in("sw-1", 6, &[0, 1, 2])])
        .await
        .unwrap();
    store.compact(t("2026-11-21T09:00:00Z"), 100).await.unwrap();
    let redelivered = store
        .write_batch(vec![fixes_in("sw-1", 6, &[1])])
        .await
        .unwrap();
    assert_eq!(
        (redelivered.fixes_inserted, redelivered.duplicate_records),
        (0, 1)
    );
    let elsewhere = store
        .write_batch(vec![accepted(
            "cleanfleet/v1/sweeper/sw-1/fixes",
            r#"{"fixes":[{"time":"2026-11-21T06:01:00Z","lat":32.5,"lon":120.9}]}"#,
        )])
        .await
        .unwrap();
    assert_eq!(elsewhere.conflicting_fixes, 1);
    let late = store
        .write_batch(vec![fixes_in("sw-1", 6, &[3])])
        .await
        .unwrap();
    assert_eq!(late.fixes_inserted, 1);
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    let track = store.track("sw-1", day.0, day.1, 100).await.unwrap();
    let minutes: Vec<(i8, f64)> = track
        .iter()
        .map(|f| (f.time.to_zoned(TimeZone::UTC).minute(), f.lat))
        .collect();
    assert_eq!(minutes, [(0, 32.0), (1, 32.001), (2, 32.002), (3, 32.003)]);
    // Compacted again, with the late fix.
    store.compact(t("2026-11-21T09:00:00Z"), 100).await.unwrap();
    assert_eq!(store.track("sw-1", day.0, day.1, 100).await.unwrap(), track);
    assert_eq!(store.stats().await.unwrap().fixes, 4);
}

pub async fn prune_cuts_through_a_compacted_hour<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![
            fixes_in("sw-1", 5, &[0]),
            fixes_in("sw-1", 6, &[0, 20, 40]),
            fixes_in("sw-1", 7, &[0]),
            fixes_in("sw-2", 6, &[0, 10]),
        ])
        .await
        .unwrap();
    store.compact(t("2026-11-21T09:00:00Z"), 100).await.unwrap();
    assert_eq!(store.prune(t("2026-11-21T06:30:00Z")).await.unwrap(), 5);
    let whole_day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    let sw2 = store.track("sw-2", whole_day.0, whole_day.1, 100).await;
    assert!(sw2.unwrap().is_empty());
    let day = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    let times: Vec<Timestamp> = store
        .track("sw-1", day.0, day.1, 100)
        .await
        .unwrap()
        .iter()
        .map(|f| f.time)
        .collect();
    assert_eq!(
        times,
        [t("2026-11-21T06:40:00Z"), t("2026-11-21T07:00:00Z")]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.fixes, stats.oldest_fix),
        (2, Some(t("2026-11-21T06:40:00Z")))
    );
}

/// Passes of several segments come by start, then device id (not the order devices were first
/// seen in), then their order in the chunk.
pub async fn segment_passes_come_by_start_then_device_id<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    let utc = TimeZone::UTC;
    store.write_batch(vec![fixes("sw-b", &[20])]).await.unwrap();
    store.write_batch(vec![fixes("sw-a", &[20])]).await.unwrap();
    for chunk in store.stale_chunks(10).await.unwrap() {
        let device = chunk.device_id.clone();
        let mut passes = vec![pass(&device, "2026-11-21T07:20:00Z", 3)];
        if device == "sw-b" {
            passes.insert(0, pass(&device, "2026-11-21T07:05:00Z", 4));
            passes.push(pass(&device, "2026-11-21T07:20:00Z", 4));
        }
        store.put_passes(chunk, passes, &utc).await.unwrap();
    }
    let (from, to) = (t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"));
    let got = store.segment_passes(vec![4, 3], from, to).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|p| (p.start, p.device_id.as_str(), p.segment))
            .collect::<Vec<_>>(),
        [
            (t("2026-11-21T07:05:00Z"), "sw-b", 4),
            (t("2026-11-21T07:20:00Z"), "sw-a", 3),
            (t("2026-11-21T07:20:00Z"), "sw-b", 3),
            (t("2026-11-21T07:20:00Z"), "sw-b", 4),
        ]
    );
}

/// Compaction changes nothing a reader sees, in the store or after reopening it.
pub async fn compaction_changes_nothing_readers_see<B: Backend>(fresh: impl Fn() -> B) {
    let backend = fresh();
    let store = backend.open();
    store
        .write_batch(vec![
            fixes_in("sw-1", 5, &[0, 10, 59]),
            fixes_in("sw-1", 6, &[0, 10, 59]),
            fixes_in("sw-1", 7, &[0, 10, 59]),
            fixes_in("sw-2", 7, &[5]),
        ])
        .await
        .unwrap();
    let before = what_readers_see(&store).await;
    // Received at 08:00: at 08:10 hours 5 and 6 are settled, 7 may not be; at 09:00 all are,
    // compacted one device-hour at a time and then the rest.
    store.compact(t("2026-11-21T08:10:00Z"), 100).await.unwrap();
    assert_eq!(what_readers_see(&store).await, before);
    store.compact(t("2026-11-21T09:00:00Z"), 1).await.unwrap();
    assert_eq!(what_readers_see(&store).await, before);
    store.compact(t("2026-11-21T09:00:00Z"), 100).await.unwrap();
    assert_eq!(what_readers_see(&store).await, before);
    store.close().await.unwrap();
    drop(store);
    assert_eq!(what_readers_see(&backend.open()).await, before);
}
