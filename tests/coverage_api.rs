//! Coverage end to end: a simulated fleet through the real broker and ingest, the coverage
//! stage matching the stored fixes into passes, and the API's day report, segment map and
//! pass list. The same fixes, stored in another order and with duplicates, and matched by
//! three threads instead of one, give the same passes.

mod common;

use cleanfleet_store::{DeviceReads, IngestItem, IngestSink, PassReads, Store};
use std::sync::Arc;
use std::time::Duration;

use cleanfleet::{Parts, Stack};
use cleanfleet_model::{decode, Limits};
use cleanfleet_roads::RoadNetwork;
use common::*;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

/// Waits until the coverage stage has caught up with every stored fix: passes and the
/// segments' days made of them.
async fn coverage_caught_up(store: &dyn Store) {
    eventually("coverage to catch up", Duration::from_secs(60), || async {
        let backlog = store.coverage_backlog().await.unwrap();
        backlog.is_current().then_some(())
    })
    .await;
}

/// The stored segments' days of `dates` are those computed afresh from the stored passes.
async fn days_are_their_passes(
    store: &dyn Store,
    rules: &cleanfleet_coverage::CoverageRules,
    dates: &[jiff::civil::Date],
) -> (
    Vec<cleanfleet_store::SegmentDayRecord>,
    Vec<cleanfleet_store::VehicleDayRecord>,
) {
    let network = RoadNetwork::demo();
    let (sections, grids) = cleanfleet_roads::Zones::demo_configs(&network);
    let zones = cleanfleet_roads::Zones::new(&network, &sections, &grids).unwrap();
    let (mut segment_days, mut vehicle_days) = (Vec::new(), Vec::new());
    for &date in dates {
        let (from, to) = cleanfleet_reports::day_bounds(&jiff::tz::TimeZone::UTC, date).unwrap();
        let passes = store.passes(from, to, None).await.unwrap();
        let mut segments: Vec<u32> = passes.iter().map(|p| p.segment).collect();
        segments.sort_unstable();
        segments.dedup();
        let expected: Vec<_> = segments
            .iter()
            .filter_map(|&s| {
                let of_segment: Vec<_> =
                    passes.iter().filter(|p| p.segment == s).cloned().collect();
                cleanfleet_reports::segment_day(&network, rules, date, s, &of_segment)
            })
            .collect();
        let stored = store.segment_days(date, date, None).await.unwrap();
        assert_eq!(stored, expected, "{date}");
        segment_days.extend(stored);
        let expected = cleanfleet_reports::vehicle_day_rows(&network, &zones, date, &passes);
        let mut stored = store.vehicle_days(date, date).await.unwrap();
        // The store's device order is its own.
        stored.sort_by(|a, b| {
            (&a.device_id, &a.section, &a.road_class).cmp(&(
                &b.device_id,
                &b.section,
                &b.road_class,
            ))
        });
        assert_eq!(stored, expected, "{date}");
        vehicle_days.extend(stored);
    }
    (segment_days, vehicle_days)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_shows_coverage_and_order_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.coverage.time_zone = "UTC".into();
    // One matcher thread here, three for the replay below: the same passes.
    config.coverage.workers = 1;
    config.coverage.plans = vec![cleanfleet_coverage::SectionPlan {
        section: "SW".into(),
        passes_per_side: 2.0,
    }];
    let stack = Stack::start(config.clone(), Parts::ALL).await.unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();
    config.broker.url = format!("mqtt://{}", stack.broker_addr.unwrap());
    config.sim.backfill = SignedDuration::from_mins(40);
    config.sim.fleet = cleanfleet_sim::FleetMix {
        sweepers: 2,
        washer_sweepers: 1,
        flushers: 1,
        ..cleanfleet_sim::FleetMix::NONE
    };
    issue_fleet_secrets(&stack.store, &mut config).await;
    let stop = CancellationToken::new();
    let network = Arc::new(RoadNetwork::demo());
    let sim = tokio::spawn(cleanfleet::run_sim(config.clone(), network, stop.clone()));
    let metrics = stack.ingest_metrics.clone().unwrap();
    eventually("the backfill", Duration::from_secs(60), || async {
        (metrics.fixes.get() >= 4 * 2400).then_some(())
    })
    .await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    eventually(
        "ingest to take everything",
        Duration::from_secs(30),
        || async { (metrics.messages_committed() >= report.messages_acked).then_some(()) },
    )
    .await;
    coverage_caught_up(stack.store.as_ref()).await;

    // The day (or two, around midnight UTC) the backfill covered.
    let api = stack.api_addr.unwrap();
    let now = Timestamp::now();
    let mut days: Vec<String> = [now - SignedDuration::from_mins(45), now]
        .iter()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .collect();
    days.dedup();
    let (mut covered_m, mut passes, mut valid) = (0.0, 0, 0);
    for date in &days {
        let (status, body) = get_json(api, &format!("/api/v1/coverage?date={date}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["segments"], 220);
        assert_eq!(body["time_zone"], "UTC");
        // Caught up: nothing stale, so no "stale from".
        assert_eq!(
            body["matching"],
            serde_json::json!({"stale_chunks": 0, "stale_segment_days": 0, "stale_vehicle_days": 0}),
            "{body}"
        );
        covered_m += body["covered"]["length_m"].as_f64().unwrap();
        passes += body["passes"].as_u64().unwrap();
        valid += body["valid_passes"].as_u64().unwrap();
        let share = body["covered"]["share_by_length"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
    }
    assert!(passes > 50 && valid > 20, "{passes} passes, {valid} valid");
    assert!(
        covered_m > 1000.0,
        "{covered_m} m covered by 4 vehicles in 40 min"
    );

    // Sections split the city: the contractors' covered lengths add up to the city's.
    let (status, zones) = get_json(api, "/api/v1/zones").await;
    assert_eq!(status, 200, "{zones}");
    assert_eq!(zones["sections"].as_array().unwrap().len(), 4);
    assert_eq!(zones["grids"].as_array().unwrap().len(), 16);
    for date in &days {
        let covered = |body: &serde_json::Value| body["covered"]["length_m"].as_f64().unwrap();
        let (_, city) = get_json(api, &format!("/api/v1/coverage?date={date}")).await;
        let mut by_contractor = 0.0;
        let mut segments = 0;
        for contractor in ["acme-cleaning", "green-city"] {
            let (status, body) = get_json(
                api,
                &format!("/api/v1/coverage?date={date}&contractor={contractor}"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["scope"], format!("contractor:{contractor}"));
            by_contractor += covered(&body);
            segments += body["segments"].as_u64().unwrap();
        }
        assert_eq!(segments, 220);
        assert!(
            (by_contractor - covered(&city)).abs() < 1e-6,
            "{by_contractor} vs {city}"
        );
        let (_, cell) = get_json(
            api,
            &format!("/api/v1/coverage?date={date}&grid=GA1&section=SW"),
        )
        .await;
        assert_eq!(cell["scope"], "section:SW grid:GA1");
        assert!(cell["segments"].as_u64().unwrap() > 0);
    }
    let (status, vehicles) = get_json(
        api,
        &format!("/api/v1/coverage/vehicles?date={}", days[days.len() - 1]),
    )
    .await;
    assert_eq!(status, 200, "{vehicles}");
    // Read from the vehicles' stored days; a scope that cuts through sections is read from
    // the day's passes instead: one holding every segment gives the same numbers.
    let (status, everywhere) = get_json(
        api,
        &format!(
            "/api/v1/coverage/vehicles?date={}&polygon=-180%20-89,180%20-89,180%2089,-180%2089",
            days[days.len() - 1]
        ),
    )
    .await;
    assert_eq!(status, 200, "{everywhere}");
    assert_eq!(everywhere["vehicles"], vehicles["vehicles"]);
    assert!(!vehicles["vehicles"].as_array().unwrap().is_empty());
    for v in vehicles["vehicles"].as_array().unwrap() {
        let id = v["device_id"].as_str().unwrap();
        assert!(["sw-01", "sw-02", "ws-01", "fl-01"].contains(&id), "{v}");
        assert!(v["mileage_m"].as_f64().unwrap() >= v["working_mileage_m"].as_f64().unwrap());
        assert!(v["working_mileage_m"].as_f64().unwrap() >= v["valid_mileage_m"].as_f64().unwrap());
        if let Some(speed) = v["mean_working_speed_kmh"].as_f64() {
            assert!(speed > 1.0 && speed < 20.0, "{v}");
        }
    }
    // Sections add up to the city; the planned one has its plan.
    let (status, by_section) = get_json(
        api,
        &format!("/api/v1/coverage/sections?date={}", days[days.len() - 1]),
    )
    .await;
    assert_eq!(status, 200, "{by_section}");
    let (_, city) = get_json(
        api,
        &format!("/api/v1/coverage?date={}", days[days.len() - 1]),
    )
    .await;
    let rows = by_section["sections"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let sum = |key: &str| rows.iter().map(|r| r[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("segments"), 220);
    assert_eq!(sum("passes"), city["passes"].as_u64().unwrap());
    assert_eq!(sum("valid_passes"), city["valid_passes"].as_u64().unwrap());
    for row in rows {
        assert_eq!(
            row["planned_passes"].is_number(),
            row["section"] == "SW",
            "{row}"
        );
    }
    let sw = rows.iter().find(|r| r["section"] == "SW").unwrap();
    assert!(sw["planned_passes"].as_f64().unwrap() >= 2.0 * sw["segments"].as_f64().unwrap());

    // A range reports each day as the day report does.
    let (first, last) = (&days[0], &days[days.len() - 1]);
    let (status, daily) = get_json(
        api,
        &format!("/api/v1/coverage/daily?from={first}&to={last}&contractor=green-city"),
    )
    .await;
    assert_eq!(status, 200, "{daily}");
    assert_eq!(daily["days"].as_array().unwrap().len(), days.len());
    for (row, date) in daily["days"].as_array().unwrap().iter().zip(&days) {
        let (_, one) = get_json(
            api,
            &format!("/api/v1/coverage?date={date}&contractor=green-city"),
        )
        .await;
        assert_eq!(row["date"], date.as_str());
        assert_eq!(
            row["covered_share_by_length"],
            one["covered"]["share_by_length"]
        );
    }
    // An ad-hoc polygon around the whole town is the city.
    let (status, whole) = get_json(
        api,
        &format!("/api/v1/coverage?date={last}&polygon=120.8%2031.9,120.95%2031.9,120.95%2032.1,120.8%2032.1"),
    )
    .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["segments"], 220);
    assert_eq!(whole["scope"], "polygon");
    for (query, field) in [
        ("/api/v1/coverage?polygon=1%202,3", "polygon"),
        ("/api/v1/coverage?polygon=200%200,1%201,2%202", "polygon"),
        ("/api/v1/coverage?from=2026-11-01", "from"),
        ("/api/v1/coverage/daily?from=2026-11-01", "to"),
        ("/api/v1/coverage/daily?from=2026-11-02&to=2026-11-01", "to"),
        ("/api/v1/coverage/daily?from=2026-01-01&to=2026-12-31", "to"),
    ] {
        let (status, body) = get_json(api, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (status, segment) = get_json(api, "/api/v1/segments/0").await;
    assert_eq!(status, 200, "{segment}");
    assert!(segment["properties"]["section"].is_string());
    assert!(segment["properties"]["grid"].is_string());
    for (query, code) in [
        ("/api/v1/coverage?section=XX", 404),
        ("/api/v1/coverage?contractor=nobody", 404),
        ("/api/v1/coverage?grid=ZZ9", 404),
        ("/api/v1/segments/99999", 404),
        ("/api/v1/segments/abc", 400),
    ] {
        let (status, body) = get_json(api, query).await;
        assert_eq!(status, code, "{query}: {body}");
    }

    let date = &days[days.len() - 1];
    let (status, map) = get_json(
        api,
        &format!("/api/v1/coverage/segments?date={date}&class=I"),
    )
    .await;
    assert_eq!(status, 200, "{map}");
    let features = map["features"].as_array().unwrap();
    assert!(!features.is_empty());
    assert!(features.iter().all(|f| f["properties"]["class"] == "I"));
    assert!(features
        .iter()
        .all(|f| f["geometry"]["type"] == "LineString"));
    let (status, page) = get_json(api, &format!("/api/v1/passes?date={date}&vehicle=sw-01")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["passes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["device_id"] == "sw-01"));

    // Each contractor sees its own vehicles' work (the demo town's sections list them:
    // acme sw-01, fl-01, ws-01; green sw-02), never the other's.
    let devices_in = |body: &serde_json::Value, list: &str| -> std::collections::BTreeSet<String> {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["device_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = get_json(api, &format!("/api/v1/passes?date={date}")).await;
    let everyone = devices_in(&all, "passes");
    assert!(
        everyone.contains("sw-01") && everyone.contains("sw-02"),
        "{everyone:?}"
    );
    for (token, own) in [
        (ACME_TOKEN, &["sw-01", "fl-01", "ws-01"][..]),
        (GREEN_TOKEN, &["sw-02"]),
    ] {
        let (status, passes) =
            get_json_as(api, &format!("/api/v1/passes?date={date}"), Some(token)).await;
        assert_eq!(status, 200, "{passes}");
        let seen = devices_in(&passes, "passes");
        assert!(!seen.is_empty(), "{token}");
        assert!(
            seen.iter().all(|d| own.contains(&d.as_str())),
            "{token}: {seen:?}"
        );
        let (_, vehicles) = get_json_as(
            api,
            &format!("/api/v1/coverage/vehicles?date={date}"),
            Some(token),
        )
        .await;
        let seen = devices_in(&vehicles, "vehicles");
        assert!(
            seen.iter().all(|d| own.contains(&d.as_str())),
            "{token}: {seen:?}"
        );
    }

    for (query, field) in [
        ("/api/v1/coverage?date=2026-13-01", "date"),
        ("/api/v1/coverage?class=V", "class"),
        ("/api/v1/coverage/segments?colour=red", "colour"),
        ("/api/v1/passes?limit=0", "limit"),
        ("/api/v1/passes?vehicle=no%20such", "vehicle"),
    ] {
        let (status, body) = get_json(api, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }

    // The same fixes, stored backwards in small batches with every third one twice, give
    // the same passes.
    let day = (
        now - SignedDuration::from_hours(3),
        now + SignedDuration::from_hours(1),
    );
    let expected = stack.store.passes(day.0, day.1, None).await.unwrap();
    let dates: Vec<jiff::civil::Date> = days.iter().map(|d| d.parse().unwrap()).collect();
    let rules = cleanfleet_coverage::CoverageRules::default();
    let expected_days = days_are_their_passes(stack.store.as_ref(), &rules, &dates).await;
    assert!(
        expected_days.0.len() > 20 && expected_days.1.len() >= 4,
        "{} segments' days, {} vehicles' rows",
        expected_days.0.len(),
        expected_days.1.len()
    );
    let mut items = Vec::new();
    let delivery = std::sync::Arc::new(cleanfleet_store::Delivery::Mqtt {
        broker: "mqtt://replay".into(),
        binds_logins: true,
    });
    for device in ["sw-01", "sw-02", "ws-01", "fl-01"] {
        let fixes = stack
            .store
            .track(device, day.0, day.1, 100_000)
            .await
            .unwrap();
        let kind = if device.starts_with("sw") {
            "sweeper"
        } else if device.starts_with("ws") {
            "washer_sweeper"
        } else {
            "flusher"
        };
        for (n, chunk) in fixes.chunks(7).enumerate() {
            let payload = serde_json::json!({ "fixes": chunk }).to_string();
            let topic = format!("cleanfleet/v1/{kind}/{device}/fixes");
            let message = decode(&topic, payload.as_bytes(), now, &Limits::default()).unwrap();
            let item = IngestItem::Accepted {
                message,
                received: now,
                delivery: delivery.clone(),
            };
            if n % 3 == 0 {
                items.push(item.clone());
            }
            items.push(item);
        }
    }
    items.reverse();
    stack.stop().await.unwrap();

    let other = tempfile::tempdir().unwrap();
    let mut config = test_config(other.path());
    config.coverage.time_zone = "UTC".into();
    config.coverage.workers = 3;
    // It looks for work only once an hour: the fixes it stores itself must wake it.
    config.coverage.poll_interval_s = 3600.0;
    let replay = Stack::start(
        config,
        Parts {
            coverage: true,
            ..Parts::NONE
        },
    )
    .await
    .unwrap();
    for batch in items.chunks(50) {
        replay.store.write_batch(batch.to_vec()).await.unwrap();
    }
    coverage_caught_up(replay.store.as_ref()).await;
    let replayed = replay.store.passes(day.0, day.1, None).await.unwrap();
    assert_eq!(replayed.len(), expected.len());
    assert_eq!(replayed, expected);
    let replayed_days = days_are_their_passes(replay.store.as_ref(), &rules, &dates).await;
    assert_eq!(replayed_days, expected_days);
    replay.stop().await.unwrap();
}
