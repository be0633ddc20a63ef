//! Weight-based cleanliness end to end: inspectors' scales over MQTT and an app over HTTP,
//! samples placed on roads, road results against class limits with the cleaning behind them,
//! and bad submissions refused with the field at fault, changing nothing.

mod common;

use cleanfleet_store::{CoverageQueue, DeviceReads};
use std::sync::Arc;
use std::time::Duration;

use cleanfleet::{Parts, Stack};
use cleanfleet_roads::{RoadClass, RoadNetwork};
use common::*;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The road inspection of `inspector` in an `/api/v1/inspections` answer.
fn inspection_by(body: &serde_json::Value, inspector: &str) -> serde_json::Value {
    body["inspections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["inspector"] == inspector)
        .cloned()
        .unwrap_or_else(|| panic!("no inspection by {inspector}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_become_road_results_with_their_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.coverage.time_zone = "UTC".into();
    config.inspection.points_per_road = 3;
    let stack = Stack::start(config.clone(), Parts::ALL).await.unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();
    let api = stack.api_addr.unwrap();

    // Two hours of a fleet with two inspectors' scales.
    config.broker.url = format!("mqtt://{}", stack.broker_addr.unwrap());
    config.sim.backfill = SignedDuration::from_hours(2);
    config.sim.fleet = cleanfleet_sim::FleetMix {
        sweepers: 2,
        flushers: 1,
        washer_sweepers: 1,
        scales: 2,
        ..cleanfleet_sim::FleetMix::NONE
    };
    issue_fleet_secrets(&stack.store, &mut config).await;
    let stop = CancellationToken::new();
    let sim = tokio::spawn(cleanfleet::run_sim(
        config.clone(),
        Arc::new(RoadNetwork::demo()),
        stop.clone(),
    ));
    let metrics = stack.ingest_metrics.clone().unwrap();
    eventually("the backfill", Duration::from_secs(60), || async {
        (metrics.fixes.get() >= 4 * 7200).then_some(())
    })
    .await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    assert!(report.samples_published >= 4, "{report:?}");
    eventually(
        "ingest and coverage to catch up",
        Duration::from_secs(60),
        || async {
            let ingested = metrics.messages_committed() >= report.messages_acked;
            let backlog = stack.store.coverage_backlog().await.unwrap();
            let computed = backlog.is_current();
            (ingested && computed).then_some(())
        },
    )
    .await;

    let now = Timestamp::now();
    let mut days: Vec<String> = [now - SignedDuration::from_mins(125), now]
        .iter()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .collect();
    days.dedup();
    let (mut samples, mut results, mut with_cleaning) = (0, 0, 0);
    for date in &days {
        let (status, body) = get_json(api, &format!("/api/v1/samples?date={date}")).await;
        assert_eq!(status, 200, "{body}");
        for s in body["samples"].as_array().unwrap() {
            samples += 1;
            // The simulated scales sample within a few metres of a road.
            assert!(s["segment"].is_u64(), "{s}");
            let within = s["g_per_m2"].as_f64().unwrap() <= s["limit_g_per_m2"].as_f64().unwrap();
            assert_eq!(s["within_limit"], within);
        }
        let (status, body) = get_json(api, &format!("/api/v1/inspections?date={date}")).await;
        assert_eq!(status, 200, "{body}");
        for r in body["inspections"].as_array().unwrap() {
            results += 1;
            let passed =
                r["result_g_per_m2"].as_f64().unwrap() <= r["limit_g_per_m2"].as_f64().unwrap();
            assert_eq!(r["passed"], passed, "{r}");
            assert!(
                r["section"].is_string() && r["contractor"].is_string(),
                "{r}"
            );
            if let Some(last) = r["last_cleaned"].as_object() {
                with_cleaning += 1;
                let cleaned: Timestamp = last["time"].as_str().unwrap().parse().unwrap();
                let sampled: Timestamp = r["time"].as_str().unwrap().parse().unwrap();
                assert!(cleaned <= sampled, "{r}");
                assert!(r["hours_since_cleaned"].as_f64().unwrap() >= 0.0);
            }
        }
    }
    assert_eq!(samples as u64, report.samples_published);
    assert!(results >= 1, "{results} road results");
    eprintln!(
        "{samples} samples, {results} road results, {with_cleaning} with a cleaning before them"
    );
    // A sample taken after a valid pass links to that cleaning.
    let (_, passes) = get_json(
        api,
        &format!("/api/v1/passes?date={}", days[days.len() - 1]),
    )
    .await;
    let cleaned = passes["passes"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|p| {
            p["invalid"].is_null()
                && p["work"] != "sprinkle"
                && p["to_m"].as_f64().unwrap() - p["from_m"].as_f64().unwrap() > 50.0
        })
        .cloned()
        .expect("a valid pass in two hours");
    let net = RoadNetwork::demo();
    let segment = &net.segments()[cleaned["segment"].as_u64().unwrap() as usize];
    let end: Timestamp = cleaned["end"].as_str().unwrap().parse().unwrap();
    let mid = (
        (segment.points[0].0 + segment.points[1].0) / 2.0,
        (segment.points[0].1 + segment.points[1].1) / 2.0,
    );
    let after = json!({"device_id": "app-8", "sample_id": "C-1", "time": (end + SignedDuration::from_secs(1)).to_string(),
        "lat": mid.1, "lon": mid.0, "grams": 3.0, "inspector": "insp-8"});
    let (status, created) = post_json(api, "/api/v1/samples", &after).await;
    assert_eq!(status, 201, "{created}");
    let day = end.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let (_, body) = get_json(api, &format!("/api/v1/inspections?date={day}")).await;
    let linked = inspection_by(&body, "insp-8");
    let last = &linked["last_cleaned"];
    assert!(last.is_object(), "{linked}");
    let last_time: Timestamp = last["time"].as_str().unwrap().parse().unwrap();
    assert!(
        last_time <= end + SignedDuration::from_secs(1)
            && last_time >= end - SignedDuration::from_secs(1),
        "{linked} vs {cleaned}"
    );
    assert!(linked["hours_since_cleaned"].as_f64().unwrap() < 0.01);
    // The street's contractor sees the same result; another contractor's vehicle is not
    // named to it.
    let (sections, grids) = cleanfleet_roads::Zones::demo_configs(&net);
    let zones = cleanfleet_roads::Zones::new(&net, &sections, &grids).unwrap();
    let street_of = linked["contractor"].as_str().unwrap();
    let token = match street_of {
        "acme-cleaning" => ACME_TOKEN,
        _ => GREEN_TOKEN,
    };
    let (_, theirs) =
        get_json_as(api, &format!("/api/v1/inspections?date={day}"), Some(token)).await;
    let seen = inspection_by(&theirs, "insp-8");
    assert_eq!(seen["result_g_per_m2"], linked["result_g_per_m2"]);
    assert_eq!(seen["last_cleaned"]["time"], last["time"]);
    let vehicle = last["device_id"].as_str().unwrap();
    let expected = match zones.contractor_of_device(vehicle) {
        Some(owner) if owner != street_of => "(another contractor's vehicle)",
        _ => vehicle,
    };
    assert_eq!(seen["last_cleaned"]["device_id"], expected, "{seen}");

    // Litter counted two minutes before that pass, halfway along its stretch, stays until a
    // valid cleaning reaches it: that pass at the latest.
    let index = cleanfleet_coverage::SegmentIndex::new(&net);
    let (from_m, to_m) = (
        cleaned["from_m"].as_f64().unwrap(),
        cleaned["to_m"].as_f64().unwrap(),
    );
    let along_m = (from_m + to_m) / 2.0;
    let offset_m = if cleaned["forward"] == true {
        along_m
    } else {
        segment.length_m - along_m
    };
    let (lon, lat) = index
        .plane()
        .to_lon_lat(index.point_at(segment.id, offset_m));
    let start: Timestamp = cleaned["start"].as_str().unwrap().parse().unwrap();
    let seen = start - SignedDuration::from_mins(2);
    let litter = json!({"device_id": "app-8", "sample_id": "L-1", "time": seen.to_string(),
        "lat": lat, "lon": lon, "grams": 2.0, "inspector": "insp-7", "litter_count": 4});
    let (status, created) = post_json(api, "/api/v1/samples", &litter).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["segment"], segment.id, "{created}");
    let seen_day = seen.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let (_, body) = get_json(api, &format!("/api/v1/inspections?date={seen_day}")).await;
    let littered = inspection_by(&body, "insp-7");
    let clearance = &littered["litter_clearance"][0];
    assert_eq!(clearance["sample_id"], "L-1", "{littered}");
    assert_eq!(clearance["litter_count"], 4);
    let cleared: Timestamp = clearance["cleared_by"]["time"]
        .as_str()
        .unwrap_or_else(|| panic!("{littered}"))
        .parse()
        .unwrap();
    assert!(
        seen <= cleared && cleared <= end + SignedDuration::from_secs(1),
        "{littered} vs {cleaned}"
    );
    let dwell_s = clearance["dwell_s"].as_f64().unwrap();
    assert!((dwell_s - cleared.duration_since(seen).as_secs_f64()).abs() < 0.01);
    assert_eq!(clearance["in_time"], dwell_s <= 1200.0, "{clearance}");

    // An inspector's app: three points on one class II road, exactly at the limit on average.
    let road: Vec<_> = net
        .segments()
        .iter()
        .filter(|s| s.class == RoadClass::II && s.name.is_some())
        .collect();
    let name = road[0].name.clone().unwrap();
    let on_road: Vec<_> = road
        .iter()
        .filter(|s| s.name.as_deref() == Some(&name))
        .take(3)
        .collect();
    let middle = |s: &cleanfleet_roads::Segment| {
        (
            (s.points[0].0 + s.points[1].0) / 2.0,
            (s.points[0].1 + s.points[1].1) / 2.0,
        )
    };
    let time = |minutes: i64| (now - SignedDuration::from_mins(minutes)).to_string();
    let submit = |id: &str, grams: f64, at: (f64, f64), when: String| {
        json!({"device_id": "app-7", "sample_id": id, "time": when, "lat": at.1, "lon": at.0,
               "grams": grams, "area_m2": 1.0, "inspector": "insp-9", "litter_count": 0})
    };
    let stored = || async { stack.store.stats().await.unwrap().inspection_samples };
    let before = stored().await;
    for (n, (segment, grams)) in on_road.iter().zip([8.0, 12.0, 10.0]).enumerate() {
        let body = submit(
            &format!("A-{n}"),
            grams,
            middle(segment),
            time(3 - n as i64),
        );
        let (status, created) = post_json(api, "/api/v1/samples", &body).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["road"], name.as_str());
        assert_eq!(created["limit_g_per_m2"], 10.0);
    }
    assert_eq!(stored().await, before + 3);

    // Bad submissions: a clear reason naming the field, and nothing changes.
    let good = submit("B-1", 5.0, middle(on_road[0]), time(1));
    let with = |key: &str, value: serde_json::Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let mut without_device = good.clone();
    without_device.as_object_mut().unwrap().remove("device_id");
    let far = (net.bbox().max().x + 0.01, net.bbox().max().y + 0.01);
    let cases = [
        (
            submit("A-0", 9.0, middle(on_road[0]), time(1)),
            409,
            "sample_id",
        ),
        (without_device, 400, "device_id"),
        (with("grams", json!(-1.0)), 400, "grams"),
        (with("area_m2", json!(0.0)), 400, "area_m2"),
        (with("lat", json!(far.1)), 400, "lat"),
        (with("colour", json!("red")), 400, "colour"),
        (with("grams", json!("heavy")), 400, "grams"),
    ];
    let count = stored().await;
    for (body, code, field) in cases {
        let (status, answer) = post_json(api, "/api/v1/samples", &body).await;
        assert_eq!(status, code, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    assert_eq!(stored().await, count, "refused submissions store nothing");

    // The road's result: the mean of 8, 12 and 10 is the class II limit, which passes; one
    // more heavy point fails it, and the failed road's samples are on the map.
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let (_, body) = get_json(api, &format!("/api/v1/inspections?date={today}")).await;
    let r = inspection_by(&body, "insp-9");
    assert_eq!(
        (r["points"].as_u64(), r["result_g_per_m2"].as_f64()),
        (Some(3), Some(10.0))
    );
    assert_eq!(r["passed"], true);
    assert_eq!(r["incomplete"], false);
    let (status, _) = post_json(
        api,
        "/api/v1/samples",
        &submit("A-9", 14.0, middle(on_road[1]), time(0)),
    )
    .await;
    assert_eq!(status, 201);
    let (_, body) = get_json(api, &format!("/api/v1/inspections?date={today}")).await;
    let r = inspection_by(&body, "insp-9");
    assert_eq!(
        (r["points"].as_u64(), r["result_g_per_m2"].as_f64()),
        (Some(4), Some(11.0))
    );
    assert_eq!(r["passed"], false);
    let (status, map) = get_json(
        api,
        &format!("/api/v1/inspections/failed-samples?date={today}"),
    )
    .await;
    assert_eq!(status, 200, "{map}");
    let ours: Vec<_> = map["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["sample"]["inspector"] == "insp-9")
        .collect();
    assert_eq!(ours.len(), 4);

    // The failed road costs its contractor points, traceable to the samples.
    let contractor = ours[0]["properties"]["contractor"]
        .as_str()
        .unwrap()
        .to_owned();
    let month = &today[..7];
    let (status, a) = get_json(
        api,
        &format!("/api/v1/assessment?contractor={contractor}&month={month}"),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let failed: Vec<_> = a["deductions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["kind"] == "failed_weight_check"
                && d["records"].as_array().unwrap().iter().any(|r| r == "A-9")
        })
        .collect();
    assert_eq!(failed.len(), 1, "{a}");
    assert_eq!(failed[0]["points"], 1.5, "class II");
    // It says what it rests on: the app's samples came with the admin's token, the
    // vehicles' work under their own credentials.
    let evidence = a["data"]["devices"].as_array().unwrap();
    let app = evidence.iter().find(|d| d["device_id"] == "app-7").unwrap();
    assert_eq!(app["uses"], json!(["samples"]), "{app}");
    assert_eq!(
        (&app["sources"][0]["trust"], &app["sources"][0]["principal"]),
        (&json!("token"), &json!("admin")),
        "{app}"
    );
    assert_eq!(a["data"]["all_verified"], true, "{a}");
    assert_eq!(a["data"]["unverified_devices"], json!([]), "{a}");
    let vehicles: Vec<_> = evidence
        .iter()
        .filter(|d| d["uses"].as_array().unwrap().contains(&json!("passes")))
        .collect();
    assert!(!vehicles.is_empty(), "{a}");
    assert!(
        vehicles
            .iter()
            .all(|d| d["verified"] == true && d["sources"][0]["trust"] == "credential"),
        "{a}"
    );
    let deducted: f64 = a["deductions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["points"].as_f64().unwrap())
        .sum();
    assert!((a["score"].as_f64().unwrap() - (100.0 - deducted).max(0.0)).abs() < 1e-9);
    let csv = reqwest::Client::new()
        .get(format!(
            "http://{api}/api/v1/assessment?contractor={contractor}&month={month}&format=csv"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("date,kind,points,detail,records\n"),
        "{csv}"
    );
    assert!(
        csv.contains("failed_weight_check,1.5,") && csv.contains("A-9"),
        "{csv}"
    );
    let xlsx = reqwest::Client::new()
        .get(format!(
            "http://{api}/api/v1/assessment?contractor={contractor}&month={month}&format=xlsx"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        xlsx.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = xlsx.bytes().await.unwrap();
    let mut book = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut strings = String::new();
    std::io::Read::read_to_string(
        &mut book.by_name("xl/sharedStrings.xml").unwrap(),
        &mut strings,
    )
    .unwrap();
    assert!(
        strings.contains("failed_weight_check") && strings.contains("A-9"),
        "{strings}"
    );
    assert!(strings.contains("Deductions") || book.by_name("xl/worksheets/sheet2.xml").is_ok());
    let other = if contractor == "acme-cleaning" {
        GREEN_TOKEN
    } else {
        ACME_TOKEN
    };
    let (status, _) = get_json_as(
        api,
        &format!("/api/v1/assessment?contractor={contractor}&month={month}"),
        Some(other),
    )
    .await;
    assert_eq!(
        status, 404,
        "another contractor's score does not exist for it"
    );
    for (query, field) in [
        ("month=2026-13", "month"),
        ("quarter=2026-Q5", "quarter"),
        ("", "month"),
    ] {
        let (status, body) = get_json(
            api,
            &format!("/api/v1/assessment?contractor={contractor}&{query}"),
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answers_to_bin_overflows_cost_the_bins_contractor() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.coverage.time_zone = "UTC".into();
    let stack = Stack::start(config, Parts::ALL).await.unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();
    let api = stack.api_addr.unwrap();

    // The demo town's sections list bin-001 and bin-002 under acme, bin-007 under green.
    let raised = Timestamp::from_second(Timestamp::now().as_second() - 5 * 3600).unwrap();
    let at = |minutes: i64| (raised + SignedDuration::from_mins(minutes)).to_string();
    let readings = [
        // Overflowing at +0, emptied 2 h 10 min later: late.
        ("bin-001", -10, 0.5),
        ("bin-001", 0, 0.85),
        ("bin-001", 60, 0.7),
        ("bin-001", 130, 0.05),
        // Emptied after 30 minutes: in time.
        ("bin-002", 0, 0.9),
        ("bin-002", 30, 0.1),
        // Never emptied, 5 hours on: late.
        ("bin-007", 0, 0.95),
        ("bin-007", 120, 0.97),
        // Overflowing for 10 minutes: not late yet.
        ("bin-003", 290, 0.9),
    ];
    let mut publisher = Publisher::for_stack(&stack);
    for (bin, minutes, fill) in readings {
        publisher
            .publish(
                &format!("cleanfleet/v1/bin/{bin}/reading"),
                format!(r#"{{"time":"{}","fill_ratio":{fill}}}"#, at(minutes)),
            )
            .await;
    }
    let date = raised.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let path = format!("/api/v1/bins/alerts?date={date}");
    eventually("the readings", Duration::from_secs(10), || async {
        let stored = stack.store.stats().await.unwrap().bin_readings;
        (stored == readings.len() as u64).then_some(())
    })
    .await;
    let (_, body) = get_json(api, &path).await;
    let alerts: Vec<serde_json::Value> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["device_id"] != "bin-003")
        .cloned()
        .collect();
    assert_eq!(alerts.len(), 3, "{body}");
    let by_bin = |bin: &str| {
        alerts
            .iter()
            .find(|a| a["device_id"] == bin)
            .unwrap()
            .clone()
    };
    assert_eq!(by_bin("bin-001")["response_s"], 7800.0);
    assert_eq!(by_bin("bin-001")["in_time"], false);
    assert_eq!(by_bin("bin-001")["peak_fill_ratio"], 0.85);
    assert_eq!(by_bin("bin-002")["in_time"], true);
    assert!(by_bin("bin-007")["emptied"].is_null());
    assert_eq!(by_bin("bin-007")["in_time"], false);

    // Each contractor sees its own bins' alerts, and pays for its late ones.
    let (_, acme) = get_json_as(api, &path, Some(ACME_TOKEN)).await;
    let bins: Vec<&str> = acme["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(&bins[..2], ["bin-001", "bin-002"]);
    assert!(bins[2..].iter().all(|b| *b == "bin-003"));
    let (status, _) = get_json_as(api, "/api/v1/bins", Some(ACME_TOKEN)).await;
    assert_eq!(status, 403, "the city's bin list is not a contractor's");
    for (contractor, bin) in [("acme-cleaning", "bin-001"), ("green-city", "bin-007")] {
        let (status, a) = get_json(
            api,
            &format!(
                "/api/v1/assessment?contractor={contractor}&month={}",
                &date[..7]
            ),
        )
        .await;
        assert_eq!(status, 200, "{a}");
        let late: Vec<_> = a["deductions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] == "late_overflow_response")
            .collect();
        assert_eq!(late.len(), 1, "{a}");
        assert_eq!(late[0]["points"], 0.5);
        assert_eq!(late[0]["records"][0], format!("{bin}@{}", at(0)), "{a}");
    }
    let recent = raised + SignedDuration::from_mins(290);
    let recent_day = recent.to_zoned(jiff::tz::TimeZone::UTC).date();
    let (_, body) = get_json(api, &format!("/api/v1/bins/alerts?date={recent_day}")).await;
    let open = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["device_id"] == "bin-003")
        .cloned()
        .unwrap();
    assert!(
        open["emptied"].is_null() && open["in_time"].is_null(),
        "{open}"
    );
    let (status, body) = get_json(api, "/api/v1/bins/alerts?date=yesterday").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("date"))
    );
    stack.stop().await.unwrap();
}

/// A street that crosses a section boundary is judged once on all its points: the city and
/// both contractors see the same result, and its failure costs each contractor its share of
/// the points (docs/inspection.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_road_across_a_section_boundary_is_judged_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // The dates below are UTC days: the city's zone must agree at any hour of the run.
    config.coverage.time_zone = "UTC".into();
    let stack = Stack::start(config, Parts::ALL).await.unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();
    let api = stack.api_addr.unwrap();
    let net = RoadNetwork::demo();
    let (sections, grids) = cleanfleet_roads::Zones::demo_configs(&net);
    let zones = cleanfleet_roads::Zones::new(&net, &sections, &grids).unwrap();
    let contractor_of = |s: &cleanfleet_roads::Segment| {
        zones
            .section_of(s.id)
            .and_then(|z| z.contractor.clone())
            .unwrap_or_default()
    };
    // A named street with segments of both contractors.
    let street = net
        .segments()
        .iter()
        .filter_map(|s| s.name.clone())
        .find(|name| {
            let of = |c: &str| {
                net.segments()
                    .iter()
                    .any(|s| s.name.as_deref() == Some(name) && contractor_of(s) == c)
            };
            of("acme-cleaning") && of("green-city")
        })
        .expect("a street across the boundary");
    let on = |c: &str, n: usize| -> Vec<&cleanfleet_roads::Segment> {
        net.segments()
            .iter()
            .filter(|s| s.name.as_deref() == Some(&street) && contractor_of(s) == c)
            .take(n)
            .collect()
    };
    let (acme, green) = (on("acme-cleaning", 3), on("green-city", 2));
    let class = acme[0].class;
    let limit = [5.0, 10.0, 15.0, 20.0][class as usize];
    let class_points = [2.0, 1.5, 1.0, 0.5][class as usize];
    let now = Timestamp::now();
    let mut n = 0;
    for (segments, grams) in [(&acme, limit + 6.0), (&green, limit - 4.0)] {
        for s in segments.iter() {
            let (lon, lat) = (
                (s.points[0].0 + s.points[1].0) / 2.0,
                (s.points[0].1 + s.points[1].1) / 2.0,
            );
            n += 1;
            let time = (now - SignedDuration::from_mins(10 - n)).to_string();
            let body = json!({"device_id": "app-x", "sample_id": format!("X-{n}"), "time": time,
                "lat": lat, "lon": lon, "grams": grams, "area_m2": 1.0, "inspector": "insp-x"});
            let (status, created) = post_json(api, "/api/v1/samples", &body).await;
            assert_eq!(status, 201, "{created}");
        }
    }
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let path = format!("/api/v1/inspections?date={today}");
    let expected = limit + 2.0;
    for token in [ADMIN_TOKEN, ACME_TOKEN, GREEN_TOKEN] {
        let (status, body) = get_json_as(api, &path, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        let r = inspection_by(&body, "insp-x");
        assert_eq!(r["points"], 5, "{token}: {r}");
        assert_eq!(r["incomplete"], false, "{token}: {r}");
        assert!(
            (r["result_g_per_m2"].as_f64().unwrap() - expected).abs() < 1e-9,
            "{token}: {r}"
        );
        assert_eq!(r["passed"], false);
        let parts: Vec<(String, u64)> = r["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["contractor"].as_str().unwrap().to_owned(),
                    p["points"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut parts = parts;
        parts.sort();
        assert_eq!(
            parts,
            vec![("acme-cleaning".into(), 3), ("green-city".into(), 2)],
            "{r}"
        );
    }
    // Each contractor's map shows its own points of the failed road.
    for (token, points) in [(ACME_TOKEN, 3), (GREEN_TOKEN, 2)] {
        let (_, map) = get_json_as(
            api,
            &format!("/api/v1/inspections/failed-samples?date={today}"),
            Some(token),
        )
        .await;
        let ours = map["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["properties"]["sample"]["inspector"] == "insp-x")
            .count();
        assert_eq!(ours, points, "{map}");
    }
    // One failure, shared by the points: 3/5 and 2/5 of the class's deduction.
    let month = &today[..7];
    for (contractor, share) in [("acme-cleaning", 0.6), ("green-city", 0.4)] {
        let (status, a) = get_json(
            api,
            &format!("/api/v1/assessment?contractor={contractor}&month={month}"),
        )
        .await;
        assert_eq!(status, 200, "{a}");
        let ours: Vec<&serde_json::Value> = a["deductions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["kind"] == "failed_weight_check"
                    && d["records"].as_array().unwrap().iter().any(|r| r == "X-1")
            })
            .collect();
        assert_eq!(ours.len(), 1, "{contractor}: {a}");
        assert!(
            (ours[0]["points"].as_f64().unwrap() - class_points * share).abs() < 1e-9,
            "{contractor}: {}",
            ours[0]
        );
    }
    stack.stop().await.unwrap();
}
