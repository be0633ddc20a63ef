//! The coverage stage's throughput with 1, 2, ... matcher threads: a simulated fleet's
//! fixes (the firmware simulator, on a real network) are stored in a SQLite file first, then
//! the stage is started and the clock stops when no chunk is stale. Each worker count gets
//! its own copy of the same fixes.
//!
//! `cargo bench --bench coverage_stage [-- ROADS.osm.pbf]` (figures in docs/benchmarks.md).
//! Environment: BENCH_VEHICLES (default 24), BENCH_HOURS (default 2), BENCH_WORKERS (a
//! comma-separated list, default `1,2`).

mod common;

use cleanfleet_store::{Delivery, IngestItem, IngestSink, SqliteConfig, SqliteStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanfleet::coverage::{CoverageConfig, CoverageMetrics};
use cleanfleet_model::{decode, Limits};
use cleanfleet_roads::Zones;
use cleanfleet_sim::{Fleet, FleetMix, SimConfig};
use common::{env_or, roads_from_args};
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let (roads, network) = roads_from_args();
    let vehicles: u32 = env_or("BENCH_VEHICLES", "24").parse().unwrap();
    let hours: i64 = env_or("BENCH_HOURS", "2").parse().unwrap();
    let workers: Vec<usize> = env_or("BENCH_WORKERS", "1,2")
        .split(',')
        .map(|w| w.trim().parse().unwrap())
        .collect();
    let end = Timestamp::now() - SignedDuration::from_hours(1);
    let start = end - SignedDuration::from_hours(hours);
    let config = SimConfig {
        fleet: FleetMix::street_cleaners(vehicles),
        ..SimConfig::default()
    };
    let mut fleet = Fleet::new(network.clone(), &config, start).expect("a drivable network");
    let mut messages = fleet.step_until(end);
    messages.extend(fleet.flush());
    let delivery = Arc::new(Delivery::Mqtt {
        broker: "mqtt://bench".into(),
        binds_logins: false,
    });
    let now = Timestamp::now();
    let items: Vec<IngestItem> = messages
        .iter()
        .filter_map(|m| {
            let message = decode(&m.topic, &m.payload, now, &Limits::default()).ok()?;
            Some(IngestItem::Accepted {
                message,
                received: now,
                delivery: delivery.clone(),
            })
        })
        .collect();
    println!(
        "coverage stage on {}: {vehicles} vehicles × {hours} h, {} messages",
        roads.as_deref().unwrap_or("the demo town"),
        items.len()
    );
    // The demo town's sections; a real network's file comes without any.
    let zones = Arc::new(match roads {
        Some(_) => Zones::default(),
        None => {
            let (sections, grids) = Zones::demo_configs(&network);
            Zones::new(&network, &sections, &grids).expect("the demo's zones")
        }
    });
    println!(
        "workers  chunks  fixes matched  segment days  vehicle days  seconds  chunks/s  fixes/s"
    );
    let mut matched: Option<Arc<dyn Store>> = None;
    for &n in &workers {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("bench.sqlite"))).unwrap();
        for batch in items.chunks(200) {
            store.write_batch(batch.to_vec()).await.unwrap();
        }
        let store: Arc<dyn Store> = Arc::new(store);
        let registry = prometheus::Registry::new();
        let metrics = CoverageMetrics::register(&registry).unwrap();
        let stage_config = CoverageConfig {
            workers: n,
            time_zone: "UTC".into(),
            ..CoverageConfig::default()
        };
        let shutdown = CancellationToken::new();
        let clock = Instant::now();
        let stage = tokio::spawn(cleanfleet::coverage::run(
            stage_config,
            network.clone(),
            zones.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        loop {
            let backlog = store.coverage_backlog().await.unwrap();
            let current = backlog.is_current();
            if current && metrics.chunks.get() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = clock.elapsed().as_secs_f64();
        shutdown.cancel();
        stage.await.unwrap().unwrap();
        let (chunks, fixes) = (metrics.chunks.get(), metrics.fixes.get());
        let (days, vehicle_days) = (metrics.segment_days.get(), metrics.vehicle_days.get());
        println!(
            "{n:>7}  {chunks:>6}  {fixes:>13}  {days:>12}  {vehicle_days:>12}  {seconds:>7.2}  {:>8.1}  {:>7.0}",
            chunks as f64 / seconds,
            fixes as f64 / seconds
        );
        matched = Some(store);
    }
    // What `/api/v1/passes` reads: the fleet's passes of the whole range, one vehicle's, and
    // those of a vehicle that has none (best of 5 each).
    let Some(store) = matched else { return };
    let (from, to) = (start, end + SignedDuration::from_hours(1));
    let vehicle = fleet.devices()[0].id.clone();
    for (what, device) in [
        ("the fleet", None),
        ("one vehicle", Some(vehicle)),
        ("a vehicle without passes", Some("sw-none".to_owned())),
    ] {
        let (found, best) =
            best_of_5(|| async { store.passes(from, to, device.clone()).await.unwrap().len() })
                .await;
        println!("passes of {what}: {found} in {:.1} ms", best * 1000.0);
    }
    // What a day report reads: the segments' and vehicles' days stored for the range's days.
    let (first, last) = (
        start.to_zoned(jiff::tz::TimeZone::UTC).date(),
        end.to_zoned(jiff::tz::TimeZone::UTC).date(),
    );
    let (found, best) =
        best_of_5(|| async { store.segment_days(first, last, None).await.unwrap().len() }).await;
    println!(
        "segments' days of {first}..={last}: {found} in {:.1} ms",
        best * 1000.0
    );
    let (found, best) =
        best_of_5(|| async { store.vehicle_days(first, last).await.unwrap().len() }).await;
    println!(
        "vehicles' days of {first}..={last}: {found} in {:.1} ms",
        best * 1000.0
    );
}

/// What `read` returns and its fastest time of five, seconds.
async fn best_of_5<F, Fut>(mut read: F) -> (usize, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut best = f64::INFINITY;
    let mut found = 0;
    for _ in 0..5 {
        let clock = Instant::now();
        found = read().await;
        best = best.min(clock.elapsed().as_secs_f64());
    }
    (found, best)
}
