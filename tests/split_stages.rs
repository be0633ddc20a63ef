//! Split deployment: ingest and the coverage stage as two processes of the real binary on
//! one store, writing at once. Neither may die of the other's writes (the coverage stage
//! used to exit with "database is locked" at `put_passes` whenever ingest committed
//! meanwhile), and when the stream ends every fix is stored and every chunk's passes are
//! current. Each serves its own `/metrics` and `/readyz`.

mod common;

use cleanfleet_store::{CoverageQueue, DeviceReads, PassReads, SqliteConfig, SqliteStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;

const DEVICES: u64 = 12;
const MESSAGES_PER_DEVICE: u64 = 120;
const FIXES_PER_MESSAGE: u64 = 5;

fn spawn(
    stage: &str,
    broker: SocketAddr,
    data_dir: &Path,
    log: &Path,
    login: &[(&'static str, String)],
) -> KillOnDrop {
    // Many small commits, and a coverage stage that looks often: the two collide.
    let mut env = vec![
        ("CLEANFLEET__INGEST__BATCH_MAX_MESSAGES", "4".to_owned()),
        ("CLEANFLEET__COVERAGE__POLL_INTERVAL_S", "0.1".to_owned()),
    ];
    env.extend(login.iter().cloned());
    let log = std::fs::File::create(log).unwrap();
    spawn_stage(stage, broker, data_dir, &env, log.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_coverage_processes_write_at_once_and_both_live() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("cleanfleet.sqlite");
    let store = Arc::new(SqliteStore::open(SqliteConfig::new(&store_path)).unwrap());
    let broker_handle = start_broker(store.clone()).await;
    let broker = broker_handle.local_addr();
    let login = ingest_login(&store).await;
    let (ingest_log, coverage_log) = (
        dir.path().join("ingest.log"),
        dir.path().join("coverage.log"),
    );
    let (ingest_probes, coverage_probes) = (free_local_addr(), free_local_addr());
    let mut ingest_env = login.clone();
    ingest_env.push((
        "CLEANFLEET__METRICS__INGEST_LISTEN",
        ingest_probes.to_string(),
    ));
    let mut ingest = spawn("ingest", broker, dir.path(), &ingest_log, &ingest_env);
    let coverage_env = [(
        "CLEANFLEET__METRICS__COVERAGE_LISTEN",
        coverage_probes.to_string(),
    )];
    let mut coverage = spawn("coverage", broker, dir.path(), &coverage_log, &coverage_env);
    // Wait until ingest's subscription lets a sentinel through.
    let logins = Logins::Store(store.clone());
    let mut sentinel = Publisher::new(broker, logins.clone());
    for attempt in 1.. {
        sentinel
            .publish(&fixes_topic("sentinel"), fix_batch("sentinel", attempt, 1))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if store.stats().await.map(|s| s.fixes).unwrap_or(0) > 0 {
            break;
        }
        assert!(attempt < 200, "ingest never subscribed");
    }
    sentinel.disconnect().await;

    // Each device drives its own street north, a message every few milliseconds.
    let mut publishers = Vec::new();
    for d in 0..DEVICES {
        let logins = logins.clone();
        publishers.push(tokio::spawn(async move {
            let device = format!("sw-split-{d}");
            let mut publisher = Publisher::new(broker, logins);
            for m in 0..MESSAGES_PER_DEVICE {
                let payload = fix_batch(&device, m * FIXES_PER_MESSAGE, FIXES_PER_MESSAGE);
                publisher.publish(&fixes_topic(&device), payload).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            publisher.disconnect().await;
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let total = DEVICES * MESSAGES_PER_DEVICE * FIXES_PER_MESSAGE;
    let settled = eventually(
        "every fix stored, every chunk's passes and segment's day current",
        Duration::from_secs(120),
        || async {
            let stats = store.stats().await.ok()?;
            let backlog = store.coverage_backlog().await.ok()?;
            let current = backlog.is_current();
            (stats.fixes >= total && current).then_some(stats.fixes)
        },
    )
    .await;
    let logs = format!(
        "ingest:\n{}\ncoverage:\n{}",
        std::fs::read_to_string(&ingest_log).unwrap(),
        std::fs::read_to_string(&coverage_log).unwrap()
    );
    assert!(
        ingest.0.try_wait().unwrap().is_none(),
        "ingest exited\n{logs}"
    );
    assert!(
        coverage.0.try_wait().unwrap().is_none(),
        "the coverage stage exited\n{logs}"
    );
    assert!(!logs.contains("stage failed"), "{logs}");
    // Each process says how it is doing on its own port.
    for (probes, series) in [
        (ingest_probes, "cleanfleet_ingest_fixes_total"),
        (coverage_probes, "cleanfleet_coverage_passes_total"),
    ] {
        let (status, ready) = get_json(probes, "/readyz").await;
        assert_eq!(status, 200, "{probes}: {ready}");
        let metrics = get_text(probes, "/metrics").await;
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .unwrap_or_else(|| panic!("{series} at {probes}:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{series} {value}");
    }
    let (from, to) = (jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::now());
    let passes = store.passes(from, to, None).await.unwrap();
    let devices: std::collections::BTreeSet<&str> =
        passes.iter().map(|p| p.device_id.as_str()).collect();
    assert_eq!(
        devices.len() as u64,
        DEVICES,
        "every device's passes computed ({settled} fixes stored)"
    );
}
