//! `cleanfleet load`, the real binary, against a real Mosquitto that restarts under it: it
//! keeps going; and told to stop (SIGTERM) while the broker is gone again, it stops within
//! its drain timeout with its report instead of waiting for acknowledgements for ever.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_survives_a_broker_restart_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mosquitto) = Mosquitto::start(dir.path(), "allow_anonymous true").await else {
        return;
    };
    let addr = mosquitto.addr;
    let mut load = Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .args([
            "load",
            "--devices",
            "20",
            "--interval-s",
            "0.2",
            "--fixes-per-message",
            "5",
            "--duration-s",
            "600",
        ])
        .env("CLEANFLEET__BROKER__URL", format!("mqtt://{addr}"))
        .env("CLEANFLEET__DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The broker goes away and comes back without the sessions (no persistence).
    drop(mosquitto);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = Mosquitto::start_on(dir.path(), addr.port(), "allow_anonymous true")
        .await
        .expect("mosquitto starts again");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        load.try_wait().unwrap().is_none(),
        "load gave up on a broker restart"
    );
    // Gone again, with messages in flight that nobody will acknowledge.
    drop(again);

    let asked = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &load.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = loop {
        if let Some(status) = load.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(30) {
            load.kill().unwrap();
            panic!("cleanfleet load ignored SIGTERM for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut report = String::new();
    load.stdout
        .take()
        .unwrap()
        .read_to_string(&mut report)
        .unwrap();
    assert!(status.success(), "{status}: {report}");
    assert!(
        report.contains("20 devices connected"),
        "the report is printed: {report:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "stopped only {:.1} s after SIGTERM",
        asked.elapsed().as_secs_f64()
    );
    println!(
        "stopped {:.1} s after SIGTERM: {report}",
        asked.elapsed().as_secs_f64()
    );
}
