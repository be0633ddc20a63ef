//! Nothing acknowledged is lost: the ingest process (the real binary) is killed with SIGKILL
//! in the middle of a stream and restarted; every message the broker acknowledged to the
//! device ends up stored exactly once. Run against the embedded broker and against a real
//! Mosquitto process.

mod common;

use cleanfleet_store::{DeviceReads, SqliteConfig, SqliteStore};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;

const MESSAGES: u64 = 600;
const FIXES_PER_MESSAGE: u64 = 10;

fn spawn_ingest(broker: SocketAddr, data_dir: &Path, login: &[(&str, String)]) -> KillOnDrop {
    // Small batches: many commits, so the kill lands between and inside them.
    let mut env = vec![("CLEANFLEET__INGEST__BATCH_MAX_MESSAGES", "8".to_owned())];
    env.extend(login.iter().cloned());
    spawn_stage("ingest", broker, data_dir, &env, Stdio::inherit())
}

async fn stored_fixes(store: &SqliteStore) -> u64 {
    store.stats().await.map(|s| s.fixes).unwrap_or(0)
}

/// Every stored fix of the streaming device, in time order.
async fn stream_fixes(store: &SqliteStore) -> Vec<cleanfleet_model::Fix> {
    let (from, to) = (jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::now());
    store
        .track("sw-crash", from, to, u32::MAX)
        .await
        .unwrap_or_default()
}

async fn stored_stream_fixes(store: &SqliteStore) -> u64 {
    stream_fixes(store).await.len() as u64
}

/// The store of the ingest processes that `dir` will hold.
fn open_store(dir: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(SqliteConfig::new(dir.join("cleanfleet.sqlite"))).unwrap())
}

async fn kill_ingest_mid_stream_and_restart(
    broker: SocketAddr,
    dir: &Path,
    store: Arc<SqliteStore>,
    logins: Logins,
    login: Vec<(&'static str, String)>,
) {
    let ingest = spawn_ingest(broker, dir, &login);
    // The broker drops what is published before ingest's first SUBSCRIBE: wait until a
    // sentinel from another device gets through, as it would in a running deployment.
    let mut sentinel = Publisher::new(broker, logins.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for attempt in 1.. {
        let payload = fix_batch("sentinel", attempt, 1);
        sentinel.publish(&fixes_topic("sentinel"), payload).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stored_fixes(&store).await > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest never subscribed"
        );
    }
    sentinel.disconnect().await;

    let messages: Vec<(String, Vec<u8>)> = (0..MESSAGES)
        .map(|i| {
            let payload = fix_batch("sw-crash", i * FIXES_PER_MESSAGE, FIXES_PER_MESSAGE);
            (fixes_topic("sw-crash"), payload.into_bytes())
        })
        .collect();
    let publisher = tokio::spawn(async move {
        let mut publisher = Publisher::new(broker, logins);
        for chunk in messages.chunks(20) {
            publisher.publish_all(chunk).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher.disconnect().await;
    });

    let total = MESSAGES * FIXES_PER_MESSAGE;
    // Several kills widen the chance of landing between a commit and its acks, or inside one.
    let mut ingest = Some(ingest);
    let mut kills = Vec::new();
    for share in [0.1, 0.2, 0.35, 0.5, 0.6, 0.75] {
        if ingest.is_none() {
            ingest = Some(spawn_ingest(broker, dir, &login));
        }
        let target = (total as f64 * share) as u64;
        let at = eventually(
            "ingest to be mid-stream",
            Duration::from_secs(30),
            || async {
                let n = stored_stream_fixes(&store).await;
                (n >= target).then_some(n)
            },
        )
        .await;
        drop(ingest.take()); // SIGKILL
        kills.push(at);
    }
    let at_kill = *kills.last().unwrap();
    assert!(
        at_kill < total,
        "the kills must land mid-stream ({kills:?} of {total} stored)"
    );

    // The device keeps publishing while ingest is down; the broker holds the messages.
    publisher.await.unwrap();
    let while_down = stored_stream_fixes(&store).await;
    let restarted = spawn_ingest(broker, dir, &login);
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while last != total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the restart only {last} of {total} fixes were stored (killed at {at_kill}, {while_down} while down)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = stored_stream_fixes(&store).await;
    }
    drop(restarted);
    eprintln!("killed at {kills:?} fixes, {while_down} stored while down, {total} in the end");

    let all = stream_fixes(&store).await;
    let seqs: Vec<u64> = all.iter().map(|f| f.seq.unwrap()).collect();
    assert_eq!(
        seqs,
        (0..total).collect::<Vec<_>>(),
        "each fix exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_loses_nothing_with_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let broker = start_broker(store.clone()).await;
    let login = ingest_login(&store).await;
    let logins = Logins::Store(store.clone());
    kill_ingest_mid_stream_and_restart(broker.local_addr(), dir.path(), store, logins, login).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_loses_nothing_with_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mosquitto) = Mosquitto::start(dir.path(), "allow_anonymous true").await else {
        return;
    };
    let store = open_store(dir.path());
    kill_ingest_mid_stream_and_restart(
        mosquitto.addr,
        dir.path(),
        store,
        Logins::Anonymous,
        vec![],
    )
    .await;
}
