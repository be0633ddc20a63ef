//! The simulated fleet with every firmware fault on (retransmits, drop-outs replayed late and
//! shuffled, clock skew, multipath) through the real broker, ingest and store: each true fix is
//! stored exactly once, whatever order and however often it arrived.

mod common;

use cleanfleet_store::DeviceReads;
use std::collections::HashSet;
use std::time::Duration;

use cleanfleet_roads::RoadNetwork;
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
    let faults = &mut config.sim.faults;
    faults.duplicate_rate = 0.2;
    faults.offline_rate_per_hour = 6.0;
    faults.offline_duration_s = 300.0;
    faults.clock_skew_s = 10.0;
    faults.multipath_jump_rate = 0.02;
    issue_fleet_secrets(&stack.store, &mut config).await;

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
        Duration::from_secs(120),
        || async { (metrics.fixes.get() > 10_000).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    eventually(
        "ingest to take every message",
        Duration::from_secs(120),
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

/// Credentials issued with `cleanfleet devices add` log the simulated devices in to a
/// Mosquitto that reads `cleanfleet devices mosquitto-passwd`'s password file (the same
/// PBKDF2 hashes); wrong secrets are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_presents_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cleanfleet = |args: &[&str]| cleanfleet_cli(dir.path(), args);
    let mut secrets = cleanfleet(&["devices", "add", "--role", "sweeper", "sw-01"]);
    secrets += &cleanfleet(&["devices", "add", "--role", "bin", "bin-001"]);
    let secrets_file = dir.path().join("fleet.secrets");
    std::fs::write(&secrets_file, &secrets).unwrap();
    let wrong_file = dir.path().join("wrong.secrets");
    std::fs::write(&wrong_file, "sw-01:wrong\nbin-001:wrong\n").unwrap();
    let passwords = dir.path().join("passwords");
    std::fs::write(&passwords, cleanfleet(&["devices", "mosquitto-passwd"])).unwrap();
    let extra = format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    );
    let Some(mosquitto) = Mosquitto::start(dir.path(), &extra).await else {
        return;
    };

    let simulate = |secrets: &std::path::Path| {
        let mut config = test_config(dir.path());
        config.broker.url = format!("mqtt://{}", mosquitto.addr);
        config.sim.credentials_file = Some(secrets.to_owned());
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
    let accepted = simulate(&secrets_file).await;
    assert!(
        accepted.messages_acked >= 30,
        "5 min of fixes in batches of 10 and a birth each: {accepted:?}"
    );
    let refused = simulate(&wrong_file).await;
    assert_eq!(refused.messages_acked, 0, "{refused:?}");
    assert!(refused.connection_errors > 0, "{refused:?}");
}

/// `mqtts://`: ingest and the simulated devices reach a TLS-only mosquitto, trusting the
/// broker's certificate through `[broker] ca_file`, and every fix arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_and_ingest_talk_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Some(openssl) = external_program("openssl") else {
        return;
    };
    let path = |name: &str| dir.path().join(name);
    std::fs::write(
        path("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=cleanfleet test CA",
            ],
        ]
        .concat(),
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ][..]
            .to_vec(),
    ] {
        let out = std::process::Command::new(&openssl)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let extra = format!(
        // Run as root, mosquitto would switch to its own user, who cannot read the
        // temporary directory; `user` has no effect for anyone else.
        "user root\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}",
        path("ca.pem").display(),
        path("server.pem").display(),
        path("server.key").display()
    );
    let Some(mosquitto) = Mosquitto::start(dir.path(), &extra).await else {
        return;
    };

    let mut config = test_config(dir.path());
    config.broker.url = format!("mqtts://localhost:{}", mosquitto.addr.port());
    config.broker.ca_file = Some(path("ca.pem"));
    let parts = cleanfleet::Parts {
        ingest: true,
        ..cleanfleet::Parts::NONE
    };
    let stack = cleanfleet::Stack::start(config.clone(), parts)
        .await
        .unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();

    config.sim.backfill = jiff::SignedDuration::from_mins(10);
    config.sim.fleet = cleanfleet_sim::FleetMix {
        sweepers: 2,
        ..cleanfleet_sim::FleetMix::NONE
    };
    let stop = CancellationToken::new();
    let sim = tokio::spawn(cleanfleet::run_sim(
        config.clone(),
        std::sync::Arc::new(RoadNetwork::demo()),
        stop.clone(),
    ));
    let metrics = stack.ingest_metrics.clone().unwrap();
    eventually("the backfill over TLS", Duration::from_secs(30), || async {
        (metrics.fixes.get() >= 2 * 600).then_some(())
    })
    .await;
    stop.cancel();
    let report = sim.await.unwrap().unwrap();
    eventually(
        "ingest to take every message",
        Duration::from_secs(30),
        || async { (metrics.messages_committed() >= report.messages_acked).then_some(()) },
    )
    .await;
    assert_eq!(
        stack.store.stats().await.unwrap().fixes,
        report.fixes_published
    );
    stack.stop().await.unwrap();

    // Without the CA the broker's certificate is not trusted: the simulator never connects.
    config.broker.ca_file = None;
    let stop = CancellationToken::new();
    let sim = tokio::spawn(cleanfleet::run_sim(
        config,
        std::sync::Arc::new(RoadNetwork::demo()),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let refused = sim.await.unwrap().unwrap();
    assert_eq!(refused.messages_acked, 0, "{refused:?}");
}
