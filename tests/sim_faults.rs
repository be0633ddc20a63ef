//! The simulated fleet with every firmware fault on (retransmits, drop-outs replayed late and
//! shuffled, clock skew, multipath) through the real broker, ingest and store: each true fix is
//! stored exactly once, whatever order and however often it arrived.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use cleanfleet_roads::RoadNetwork;
use cleanfleet_store::Store;
use common::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_fleet_is_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let mut config = test_config(dir.path());
    config.broker.url = format!("mqtt://{}", stack.broker_addr.unwrap());
    let truth_path = dir.path().join("truth.jsonl");
    config.sim.backfill = jiff::SignedDuration::from_mins(40);
    config.sim.truth_path = Some(truth_path.clone());
    config.sim.client_id_prefix = "faulty".into();
    let faults = &mut config.sim.faults;
    faults.duplicate_rate = 0.2;
    faults.offline_rate_per_hour = 6.0;
    faults.offline_duration_s = 300.0;
    faults.clock_skew_s = 10.0;
    faults.multipath_jump_rate = 0.02;

    let stop = CancellationToken::new();
    let sim = tokio::spawn(cleanfleet::run_sim(
        config,
        std::sync::Arc::new(RoadNetwork::demo()),
        stop.clone(),
    ));
    // The backfill runs as fast as the broker takes it; then give real time a moment.
    let metrics = stack.ingest_metrics.clone().unwrap();
    eventually(
        "the backfill to arrive",
        Duration::from_secs(60),
        || async { (metrics.fixes.get() > 10_000).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    eventually(
        "ingest to take every message",
        Duration::from_secs(30),
        || async { (metrics.messages_committed() >= report.messages_acked).then_some(()) },
    )
    .await;

    let truth = std::fs::read_to_string(&truth_path).unwrap();
    let true_fixes: HashSet<(String, u64)> = truth
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "path")
        .map(|v| {
            let seq = v["seq"].as_u64().unwrap();
            (v["device_id"].as_str().unwrap().to_owned(), seq)
        })
        .collect();
    assert!(true_fixes.len() > 10_000);
    assert!(
        report.fixes_published > true_fixes.len() as u64,
        "retransmits were sent"
    );

    let stats = stack.store.stats().await.unwrap();
    assert_eq!(
        stats.dead_letters, 0,
        "skew and late replay stay within the limits"
    );
    assert_eq!(
        stats.fixes,
        true_fixes.len() as u64,
        "each true fix stored once"
    );
    assert!(metrics.duplicate_records.get() > 0);
    stack.stop().await.unwrap();
}

/// A broker that requires a password (mosquitto with a password file) takes the simulated
/// devices' messages with the right credentials and none with a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_presents_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let Some(passwd) = external_program("mosquitto_passwd") else {
        return;
    };
    let passwords = dir.path().join("passwords");
    let status = std::process::Command::new(passwd)
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["fleet", "s3cret"])
        .status()
        .unwrap();
    assert!(status.success());
    let extra = format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    );
    let Some(mosquitto) = Mosquitto::start(dir.path(), &extra).await else {
        return;
    };

    let simulate = |password: &str| {
        let mut config = test_config(dir.path());
        config.broker.url = format!("mqtt://{}", mosquitto.addr);
        config.sim.username = Some("fleet".into());
        config.sim.password = Some(password.into());
        config.sim.backfill = jiff::SignedDuration::from_mins(5);
        config.sim.fleet = cleanfleet_sim::FleetMix {
            sweepers: 1,
            bins: 1,
            ..cleanfleet_sim::FleetMix::NONE
        };
        let stop = CancellationToken::new();
        let sim = tokio::spawn(cleanfleet::run_sim(
            config,
            std::sync::Arc::new(RoadNetwork::demo()),
            stop.clone(),
        ));
        async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stop.cancel();
            sim.await.unwrap().unwrap()
        }
    };
    let accepted = simulate("s3cret").await;
    assert!(
        accepted.messages_acked >= 30,
        "5 min of fixes in batches of 10 and a birth each: {accepted:?}"
    );
    let refused = simulate("wrong").await;
    assert_eq!(refused.messages_acked, 0, "{refused:?}");
    assert!(refused.connection_errors > 0, "{refused:?}");
}
