//! What the report endpoints cost on a city's quarter: a simulated fleet (the firmware
//! simulator, on a real network cut into four sections of two contractors) works the last
//! day of the last whole quarter; the coverage stage matches it; that day's passes are then
//! stored again on every other day of the quarter (as the stage would store them, one chunk
//! at a time, so that the stage materialises every day), with a bin reading a day so that
//! every day counts as received. Then each endpoint is asked BENCH_REQUESTS times over HTTP
//! and its p50, p99 and slowest time printed, with the process's resident memory.
//!
//! `cargo bench --bench city_reports [-- ROADS.osm.pbf]` (figures in docs/benchmarks.md).
//! Environment: BENCH_VEHICLES (default 100), BENCH_HOURS (default 8), BENCH_REQUESTS
//! (default 50), BENCH_ONLY (ask only the endpoints whose path contains it), BENCH_DATA_DIR
//! (a directory to keep the store in: a later run with the same directory and settings asks
//! the endpoints again without building the quarter anew; a store from before a migration
//! is migrated when opened).

mod common;

use cleanfleet_store::{
    CoverageChunk, CoverageQueue, Delivery, IngestItem, IngestSink, PassReads, SqliteStore,
    COVERAGE_CHUNK_MS,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanfleet::config::Config;
use cleanfleet::{Parts, Stack};
use cleanfleet_model::{decode, Limits};
use cleanfleet_roads::Zones;
use cleanfleet_sim::{Fleet, FleetMix, SimConfig};
use common::{bounds, env_or, memory_mib, quadrants, roads_from_args};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// The first day of the quarter `date` is in.
fn quarter_start(date: Date) -> Date {
    Date::new(date.year(), (date.month() - 1) / 3 * 3 + 1, 1).unwrap()
}

#[tokio::main]
async fn main() {
    let (roads, network) = roads_from_args();
    let vehicles: u32 = env_or("BENCH_VEHICLES", "100").parse().unwrap();
    let hours: i64 = env_or("BENCH_HOURS", "8").parse().unwrap();
    let requests: usize = env_or("BENCH_REQUESTS", "50").parse().unwrap();
    let utc = TimeZone::UTC;
    // The last whole quarter, UTC.
    let first = quarter_start(
        quarter_start(Timestamp::now().to_zoned(utc.clone()).date())
            .yesterday()
            .unwrap(),
    );
    let last = quarter_start(first.checked_add(100.days()).unwrap())
        .yesterday()
        .unwrap();
    let days = (last - first).get_days() as i64 + 1;
    let start = last.to_zoned(utc.clone()).unwrap().timestamp() + SignedDuration::from_hours(6);
    let end = start + SignedDuration::from_hours(hours);
    let sim = SimConfig {
        fleet: FleetMix::street_cleaners(vehicles),
        ..SimConfig::default()
    };
    let mut fleet = Fleet::new(network.clone(), &sim, start).expect("a drivable network");
    let devices: Vec<String> = fleet.devices().iter().map(|d| d.id.clone()).collect();
    let sections = quadrants(&network, &devices);
    let zones = Arc::new(Zones::new(&network, &sections, &[]).expect("the quadrants"));
    let delivery = Arc::new(Delivery::Mqtt {
        broker: "mqtt://bench".into(),
        binds_logins: false,
    });
    // Received as it happened: a quarter ago is beyond what ingest takes as backfill.
    let accepted = |topic: &str, payload: &[u8], received: Timestamp| {
        let message = decode(topic, payload, received, &Limits::default())
            .unwrap_or_else(|e| panic!("{topic}: {e:?}"));
        IngestItem::Accepted {
            message,
            received,
            delivery: delivery.clone(),
        }
    };
    println!(
        "report endpoints on {}: {vehicles} vehicles × {hours} h a day, {first}..={last} ({days} days)",
        roads.as_deref().unwrap_or("the demo town"),
    );

    let temporary = tempfile::tempdir().unwrap();
    let data_dir = std::env::var_os("BENCH_DATA_DIR")
        .map_or_else(|| temporary.path().to_path_buf(), std::path::PathBuf::from);
    // Written once the quarter is stored, so that an interrupted build is not taken as one.
    let built = data_dir.join(format!("city_reports-{vehicles}x{hours}h-{first}.built"));
    let mut config = Config::default();
    config.data_dir.0 = data_dir.clone();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.store.synchronous = cleanfleet_store::Synchronous::Normal;
    config.coverage.time_zone = "UTC".into();
    config.coverage.poll_interval_s = 0.2;
    const TOKEN: &str = "bench-dispatcher";
    config.api.auth.tokens = vec![cleanfleet_api::TokenConfig {
        name: "dispatcher".into(),
        role: cleanfleet_api::Role::Dispatcher,
        contractor: None,
        device: None,
        sha256: cleanfleet_api::token_sha256(TOKEN),
    }];
    let parts = Parts {
        embedded_broker: false,
        ingest: false,
        api: true,
        coverage: true,
    };
    let stack = Stack::start_with(config, parts, Some((network.clone(), zones.clone())))
        .await
        .expect("the stack");
    let store = &*stack.store;

    if built.exists() {
        println!("the quarter as stored before in {}", data_dir.display());
    } else {
        build_quarter(store, &mut fleet, (start, end), days, &accepted).await;
        std::fs::write(&built, b"").unwrap();
    }
    caught_up(store).await;
    let api = stack.api_addr.expect("the API");
    let client = reqwest::Client::new();
    let vehicle = &devices[0];
    let month = format!("{:04}-{:02}", last.year(), last.month());
    let quarter = format!("{:04}-Q{}", last.year(), (last.month() - 1) / 3 + 1);
    // The middle ninth of the network: a scope that cuts through sections.
    let (min, max) = bounds(&network);
    let at = |f: f64| (min.0 + (max.0 - min.0) * f, min.1 + (max.1 - min.1) * f);
    let ((w, s), (e, n)) = (at(1.0 / 3.0), at(2.0 / 3.0));
    let centre = format!("{w}%20{s},{e}%20{s},{e}%20{n},{w}%20{n}");
    let endpoints = [
        ("a day", format!("/api/v1/coverage?date={last}")),
        ("a day", format!("/api/v1/coverage/segments?date={last}")),
        ("a day", format!("/api/v1/coverage/sections?date={last}")),
        ("a day", format!("/api/v1/coverage/vehicles?date={last}")),
        (
            "a day",
            format!("/api/v1/coverage/vehicles?date={last}&contractor=north-clean"),
        ),
        (
            "a day",
            format!("/api/v1/coverage/vehicles?date={last}&class=II"),
        ),
        (
            "a day",
            format!("/api/v1/coverage/vehicles?date={last}&polygon={centre}"),
        ),
        ("a day", format!("/api/v1/inspections?date={last}")),
        (
            "a day",
            format!("/api/v1/passes?date={last}&vehicle={vehicle}"),
        ),
        (
            "a month",
            format!("/api/v1/assessment?contractor=north-clean&month={month}"),
        ),
        (
            "a quarter",
            format!("/api/v1/coverage/daily?from={first}&to={last}"),
        ),
        (
            "a quarter",
            format!("/api/v1/assessment?contractor=north-clean&quarter={quarter}"),
        ),
    ];
    // From here the peak is the requests' (and what the process holds already).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss, _) = memory_mib();
    println!("resident before the requests: {rss:.0} MiB");
    println!(
        "{:<10}  {:>8}  {:>8}  {:>8}  {:>9}  endpoint",
        "range", "p50 ms", "p99 ms", "max ms", "bytes"
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (range, path) in endpoints.iter().filter(|(_, path)| path.contains(&only)) {
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let clock = Instant::now();
            let response = client
                .get(format!("http://{api}{path}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.bytes().await.unwrap();
            times.push(clock.elapsed().as_secs_f64() * 1000.0);
            assert!(
                status.is_success(),
                "{path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "{range:<10}  {:>8.1}  {:>8.1}  {:>8.1}  {bytes:>9}  {path}",
            at(0.50),
            at(0.99),
            times[times.len() - 1]
        );
    }
    let (rss, peak) = memory_mib();
    println!("resident after: {rss:.0} MiB, peak during the requests {peak:.0} MiB");
    stack.stop().await.unwrap();
}

/// Until the coverage stage has matched everything stored.
async fn caught_up(store: &SqliteStore) {
    while !store.coverage_backlog().await.unwrap().is_current() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last day simulated, stored 10 minutes at a time and matched by the stage; its passes
/// then stored again on every other day of the quarter, with a bin reading a day.
async fn build_quarter(
    store: &SqliteStore,
    fleet: &mut Fleet,
    (start, end): (Timestamp, Timestamp),
    days: i64,
    accepted: &impl Fn(&str, &[u8], Timestamp) -> IngestItem,
) {
    let utc = TimeZone::UTC;
    let last = start.to_zoned(utc.clone()).date();
    let clock = Instant::now();
    let mut stored = 0;
    let mut until = start;
    while until < end {
        until = (until + SignedDuration::from_mins(10)).min(end);
        let mut messages = fleet.step_until(until);
        if until == end {
            messages.extend(fleet.flush());
        }
        let received = until + SignedDuration::from_mins(1);
        let items: Vec<IngestItem> = messages
            .iter()
            .map(|m| accepted(&m.topic, &m.payload, received))
            .collect();
        stored += items.len();
        for batch in items.chunks(200) {
            store.write_batch(batch.to_vec()).await.unwrap();
        }
    }
    caught_up(store).await;
    let (from, to) = cleanfleet_reports::day_bounds(&utc, last).unwrap();
    let passes = store.passes(from, to, None).await.unwrap();
    println!(
        "the day: {stored} messages simulated, stored and matched into {} passes in {:.1} s",
        passes.len(),
        clock.elapsed().as_secs_f64()
    );

    // The same passes on every other day, a chunk at a time; a bin reading a day.
    let clock = Instant::now();
    let mut chunks: BTreeMap<(String, i64), Vec<_>> = BTreeMap::new();
    for p in passes {
        let hour = p.start.as_millisecond().div_euclid(COVERAGE_CHUNK_MS);
        chunks
            .entry((p.device_id.to_string(), hour))
            .or_default()
            .push(p);
    }
    let kinds: BTreeMap<String, _> = fleet
        .devices()
        .iter()
        .map(|d| (d.id.clone(), d.kind))
        .collect();
    for back in 1..days {
        let shift = SignedDuration::from_hours(24 * back);
        for ((device_id, hour), passes) in &chunks {
            let chunk = CoverageChunk {
                device_id: device_id.clone(),
                kind: kinds[device_id],
                start: Timestamp::from_millisecond(hour * COVERAGE_CHUNK_MS).unwrap() - shift,
                version: 0,
                stale_since: None,
                listed_at: Timestamp::now(),
            };
            let shifted = passes
                .iter()
                .map(|p| cleanfleet_store::PassRecord {
                    start: p.start - shift,
                    end: p.end - shift,
                    ..p.clone()
                })
                .collect();
            store.put_passes(chunk, shifted, &utc).await.unwrap();
        }
        let noon = start - shift + SignedDuration::from_hours(4);
        let reading = format!(r#"{{"time":"{noon}","fill_ratio":0.4}}"#);
        let item = accepted(
            "cleanfleet/v1/bin/bin-bench/reading",
            reading.as_bytes(),
            noon + SignedDuration::from_secs(1),
        );
        store.write_batch(vec![item]).await.unwrap();
    }
    caught_up(store).await;
    println!(
        "{} more days stored and their segments' and vehicles' days materialised in {:.1} s",
        days - 1,
        clock.elapsed().as_secs_f64()
    );
}
