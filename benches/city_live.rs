//! A city's fleet live on the embedded default (one process): BENCH_VEHICLES street cleaners
//! of the firmware simulator, on a runtime thread of their own, send BENCH_BACKFILL_MIN
//! minutes of history as backfill and then a fix a second each, ten to a message, over MQTT
//! to the embedded broker; ingest stores them, the coverage stage matches them as they land
//! and stores their segments' and vehicles' days; the API serves `/metrics`, which this bench
//! reads as an operator would.
//!
//! Prints a row every BENCH_ROW_S seconds (default 60) for BENCH_MINUTES (default 10) after
//! BENCH_WARMUP_MIN (default 2) minutes, then a summary of the rows: fixes stored and matched
//! per second, the coverage lag (from fixes stored to the day rows that include them, the
//! stage's histogram: quantiles are its bucket bounds), the oldest fixes still waiting
//! (sampled every 5 s), stale chunks, CPU by thread (simulator, matcher threads, the rest of
//! the process) per 100 live vehicles, resident memory and the store's bytes on disk per fix.
//!
//! `cargo bench --bench city_live [-- ROADS.osm.pbf]` (figures in docs/benchmarks.md).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanfleet::config::Config;
use cleanfleet::{Parts, Stack};
use cleanfleet_identity::Role;
use cleanfleet_roads::Zones;
use cleanfleet_sim::FleetMix;
use common::{env_or, memory_mib, quadrants, roads_from_args};
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

/// Linux reports thread CPU in ticks of 1/100 s (USER_HZ).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds this process has used: all of it, its simulator's threads and its matchers'.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    process_s: f64,
    simulator_s: f64,
    matchers_s: f64,
}

impl Cpu {
    fn now() -> Cpu {
        // utime and stime follow the parenthesised name: fields 14 and 15 of the line.
        let seconds = |stat: &str| -> Option<(String, f64)> {
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some((name.to_owned(), ticks / TICKS_PER_S))
        };
        let mut cpu = Cpu::default();
        // The process's own line counts threads that have ended too.
        if let Some((_, s)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| seconds(&stat))
        {
            cpu.process_s = s;
        }
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some((name, s)) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| seconds(&stat))
            else {
                continue;
            };
            if name.starts_with("sim") {
                cpu.simulator_s += s;
            } else if name.starts_with("coverage-") {
                cpu.matchers_s += s;
            }
        }
        cpu
    }
}

/// One scrape of `/metrics`: each sample's value by its name and labels as printed.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn of(client: &reqwest::Client, url: &str) -> Scrape {
        let text = client.get(url).send().await.unwrap().text().await.unwrap();
        Scrape(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.rsplit_once(' '))
                .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// A histogram's cumulative buckets, (upper bound, count).
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                Some((le.parse().unwrap_or(f64::INFINITY), *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// The bucket bound under which a share `q` of the observations between two scrapes lies.
fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let base = |le: f64| {
        before
            .iter()
            .find(|(b, _)| *b == le)
            .map_or(0.0, |(_, n)| *n)
    };
    let total = after.last().map(|(le, n)| n - base(*le))?;
    if total <= 0.0 {
        return None;
    }
    after
        .iter()
        .find(|(le, n)| n - base(*le) >= q * total)
        .map(|(le, _)| *le)
}

fn bound(le: Option<f64>) -> String {
    match le {
        None => "–".into(),
        Some(le) if le.is_infinite() => "> 3600".into(),
        Some(le) => format!("≤ {le}"),
    }
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Bytes of the store's pages in use (its file less the pages freed, as by fixes moved into
/// blocks, which later writes reuse) and its write-ahead log.
fn store_bytes_in_use(db: &std::path::Path) -> u64 {
    let wal = std::fs::metadata(db.with_extension("sqlite-wal")).map_or(0, |m| m.len());
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the store file");
    let pragma = |name: &str| -> u64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .expect("a page count") as u64
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size") + wal
}

/// How the fixes are kept: compacted into blocks (and what a fix costs there) or as rows.
fn print_fix_storage(db: &std::path::Path) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the store file");
    let (in_blocks, block_bytes, blocks): (i64, i64, i64) = conn
        .query_row(
            "SELECT coalesce(sum(fixes), 0), coalesce(sum(length(block)), 0), count(*)
             FROM fix_blocks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the blocks");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM fixes", [], |r| r.get(0))
        .expect("the rows");
    println!(
        "fixes: {in_blocks} in {blocks} blocks ({:.1} bytes a fix in them), {rows} as rows",
        block_bytes as f64 / in_blocks.max(1) as f64
    );
}

/// What a row reports, from two looks at the process.
struct Look {
    at: Instant,
    scrape: Scrape,
    cpu: Cpu,
}

#[tokio::main]
async fn main() {
    let (roads, network) = roads_from_args();
    let vehicles: u32 = env_or("BENCH_VEHICLES", "100").parse().unwrap();
    let backfill_min: i64 = env_or("BENCH_BACKFILL_MIN", "0").parse().unwrap();
    let warmup_min: f64 = env_or("BENCH_WARMUP_MIN", "2").parse().unwrap();
    let minutes: f64 = env_or("BENCH_MINUTES", "10").parse().unwrap();
    let row_s: f64 = env_or("BENCH_ROW_S", "60").parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir.0 = dir.path().to_path_buf();
    config.embedded_broker.listen = "127.0.0.1:0".parse().unwrap();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.sim.fleet = FleetMix::street_cleaners(vehicles);
    config.sim.backfill = SignedDuration::from_mins(backfill_min);
    let devices: Vec<String> = config
        .sim
        .fleet
        .devices()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let zones =
        Arc::new(Zones::new(&network, &quadrants(&network, &devices), &[]).expect("the quadrants"));
    let stack = Stack::start_with(config.clone(), Parts::ALL, Some((network.clone(), zones)))
        .await
        .expect("the stack");
    stack
        .ingest_ready(Duration::from_secs(30))
        .await
        .expect("ingest subscribed");
    config.broker.url = format!("mqtt://{}", stack.broker_addr.expect("the broker"));
    let fleet = config
        .sim
        .fleet
        .devices()
        .into_iter()
        .map(|(kind, id)| (Role::Device(kind), id));
    config.sim.secrets =
        cleanfleet_store::credentials::provision(stack.store.as_ref(), fleet, Timestamp::now())
            .await
            .expect("the fleet's secrets");
    let sim_config = config.clone();
    let sim_network = network.clone();
    let stop = CancellationToken::new();
    let sim_stop = stop.clone();
    // The simulator on threads of its own, so that its CPU is told apart from the stack's.
    let sim = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sim")
            .enable_all()
            .build()
            .unwrap()
            .block_on(cleanfleet::run_sim(sim_config, sim_network, sim_stop))
    });
    println!(
        "{vehicles} vehicles live on {} ({} segments), {backfill_min} min of backfill first, \
         started {}",
        roads.as_deref().unwrap_or("the demo town"),
        network.segments().len(),
        Timestamp::now().round(jiff::Unit::Second).unwrap(),
    );

    let client = reqwest::Client::new();
    let metrics_url = format!("http://{}/metrics", stack.metrics_addr.expect("/metrics"));
    let look = || async {
        Look {
            at: Instant::now(),
            scrape: Scrape::of(&client, &metrics_url).await,
            cpu: Cpu::now(),
        }
    };
    const LAG: &str = "cleanfleet_coverage_lag_seconds";
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(warmup_min * 60.0)).await;
    println!(
        "| UTC | fixes stored/s | fixes matched/s | lag p50 s | lag p99 s | oldest waiting s (max) | stale chunks | CPU % sim / matchers / rest | RSS MiB | bytes/fix on disk (in use) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let first = look().await;
    let mut last = look().await;
    let mut max_waiting: f64 = 0.0;
    let mut rows = 0;
    while last.at.duration_since(first.at).as_secs_f64() < minutes * 60.0 {
        let row_started = Instant::now();
        let mut waiting: f64 = 0.0;
        while row_started.elapsed().as_secs_f64() < row_s {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = Scrape::of(&client, &metrics_url).await;
            waiting = waiting.max(s.get("cleanfleet_coverage_waiting_seconds"));
        }
        let now = look().await;
        max_waiting = max_waiting.max(waiting);
        print_row(
            &last,
            &now,
            waiting,
            vehicles,
            dir.path(),
            stack.store.path(),
        );
        last = now;
        rows += 1;
    }
    println!(
        "\nsummary of {rows} rows ({:.1} min after {:.1} min of warm-up):",
        last.at.duration_since(first.at).as_secs_f64() / 60.0,
        first.at.duration_since(started).as_secs_f64() / 60.0
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    print_row(
        &first,
        &last,
        max_waiting,
        vehicles,
        dir.path(),
        stack.store.path(),
    );
    let (_, peak) = memory_mib();
    println!("peak RSS {peak:.0} MiB");
    print_fix_storage(stack.store.path());
    let lag_total = last.scrape.get(&format!("{LAG}_count"));
    let lag_sum = last.scrape.get(&format!("{LAG}_sum"));
    println!(
        "lag over the whole run, backfill included: {lag_total} chunk computations, mean {:.1} s",
        lag_sum / lag_total.max(1.0)
    );
    stop.cancel();
    let report = sim.join().unwrap().expect("the simulator");
    println!(
        "simulator: {} messages published, {} acknowledged",
        report.messages_published, report.messages_acked
    );
    stack.stop().await.unwrap();
}

fn print_row(
    from: &Look,
    to: &Look,
    waiting_max_s: f64,
    vehicles: u32,
    dir: &std::path::Path,
    db: &std::path::Path,
) {
    let dt = to.at.duration_since(from.at).as_secs_f64();
    let rate = |name: &str| (to.scrape.get(name) - from.scrape.get(name)) / dt;
    let lag = |q| {
        bound(quantile_bound(
            &from.scrape.buckets("cleanfleet_coverage_lag_seconds"),
            &to.scrape.buckets("cleanfleet_coverage_lag_seconds"),
            q,
        ))
    };
    let share = |a: f64, b: f64| 100.0 * (b - a) / dt;
    let (sim, matchers, process) = (
        share(from.cpu.simulator_s, to.cpu.simulator_s),
        share(from.cpu.matchers_s, to.cpu.matchers_s),
        share(from.cpu.process_s, to.cpu.process_s),
    );
    let fixes = to.scrape.get("cleanfleet_ingest_fixes_total");
    let (rss, _) = memory_mib();
    println!(
        "| {} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {sim:.0} / {matchers:.0} / {:.0} ({:.1} % per 100 vehicles without the simulator) | {rss:.0} | {:.0} ({:.0}) |",
        Timestamp::now().round(jiff::Unit::Second).unwrap(),
        rate("cleanfleet_ingest_fixes_total"),
        rate("cleanfleet_coverage_fixes_total"),
        lag(0.5),
        lag(0.99),
        waiting_max_s,
        to.scrape.get("cleanfleet_coverage_backlog_chunks"),
        process - sim - matchers,
        (process - sim) * 100.0 / f64::from(vehicles.max(1)),
        disk_bytes(dir) as f64 / fixes.max(1.0),
        store_bytes_in_use(db) as f64 / fixes.max(1.0),
    );
}
