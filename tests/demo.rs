//! The all-in-one demo as a user runs it: the real binary, then Ctrl-C (SIGINT). Everything
//! the simulated fleet handed to the broker must be in the store when it exits.

mod common;

use cleanfleet_store::{DeviceReads, SqliteConfig, SqliteStore};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_fleet_and_ctrl_c_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, api) = (free_addr(), free_addr());
    let log_path = dir.path().join("demo.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let demo = Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .arg("demo")
        .env("CLEANFLEET__DATA_DIR", dir.path())
        .env("CLEANFLEET__EMBEDDED_BROKER__LISTEN", broker.to_string())
        .env("CLEANFLEET__API__LISTEN", api.to_string())
        .env("CLEANFLEET__SIM__BACKFILL", "20m")
        .env("CLEANFLEET__COVERAGE__TIME_ZONE", "UTC")
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = KillOnDrop(demo);

    // The demo prints a token per role; the API refuses requests without one.
    let token_of = |role: &'static str| {
        let log_path = log_path.clone();
        move || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let marker = format!("demo token for {role}: ");
            let line = log.lines().find(|l| l.contains(&marker))?;
            let token = line
                .split(&marker)
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_owned();
            Some(token)
        }
    };
    let admin = eventually("the demo's admin token", Duration::from_secs(60), || {
        let found = token_of("admin")();
        async move { found }
    })
    .await;
    let vehicles = eventually(
        "the demo fleet in the API",
        Duration::from_secs(60),
        || async {
            let request = reqwest::Client::new()
                .get(format!("http://{api}/api/v1/vehicles"))
                .bearer_auth(&admin);
            let Ok(response) = request.send().await else {
                return None;
            };
            let body: serde_json::Value = response.json().await.ok()?;
            let items = body["items"].as_array()?.clone();
            (items.len() == 6 && items.iter().all(|v| v["latest_fix"].is_object())).then_some(items)
        },
    )
    .await;
    assert!(vehicles.iter().any(|v| v["kind"] == "washer_sweeper"));
    let (status, _) = get_json_as(api, "/api/v1/vehicles", None).await;
    assert_eq!(status, 401, "no token, no data");
    let acme = token_of("contractor acme-cleaning")().expect("a token per contractor");
    let (status, _) = get_json_as(api, "/api/v1/coverage", Some(&acme)).await;
    assert_eq!(status, 200);
    let (_, bins) = get_json_as(api, "/api/v1/bins", Some(&admin)).await;
    assert_eq!(bins["items"].as_array().unwrap().len(), 12);

    // The coverage stage turns the fleet's fixes into passes the day report counts (the
    // backfill may straddle midnight: ask for both days).
    let now = jiff::Timestamp::now();
    let days: Vec<String> = [now - jiff::SignedDuration::from_mins(25), now]
        .iter()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .collect();
    eventually(
        "passes in the coverage report",
        Duration::from_secs(60),
        || async {
            let mut valid = 0;
            for date in &days {
                let (status, body) =
                    get_json_as(api, &format!("/api/v1/coverage?date={date}"), Some(&admin)).await;
                assert_eq!(status, 200, "{body}");
                valid += body["valid_passes"].as_u64()?;
            }
            (valid > 0).then_some(())
        },
    )
    .await;

    // Half a minute in, the demo logs each contractor's day and month in brief.
    for contractor in ["acme-cleaning", "green-city"] {
        let marker = format!("contractor report: {contractor} on ");
        let line = eventually("a contractor report", Duration::from_secs(90), || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let line = log.lines().find(|l| l.contains(&marker)).map(str::to_owned);
            async move { line }
        })
        .await;
        let number_after = |label: &str| -> f64 {
            line.split(label)
                .nth(1)
                .and_then(|rest| rest.split([' ', ',', ';', '/']).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {label:?} in {line}"))
        };
        let covered = number_after("covered ");
        assert!((0.0..=100.0).contains(&covered), "{line}");
        let score = number_after(" score ");
        assert!((0.0..=100.0).contains(&score), "{line}");
        let pay = number_after("pay factor ");
        assert!((0.0..=1.02).contains(&pay), "{line}");
    }

    let interrupted = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo did not exit within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(exited.success(), "demo exited with {exited}:\n{log}");
    assert!(log.contains("demo stopped cleanly"), "{log}");

    let published: u64 = log
        .split("fixes_published: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no simulator report in the log:\n{log}"));
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("cleanfleet.sqlite"))).unwrap();
    let stats = store.stats().await.unwrap();
    assert!(published > 1000, "{published}");
    assert_eq!(
        stats.fixes, published,
        "every fix the fleet published is stored"
    );
    assert_eq!(stats.dead_letters, 0);
    let offline = store.device("sw-01").await.unwrap().unwrap().status;
    assert_eq!(
        offline,
        Some(cleanfleet_model::DeviceState::Offline),
        "devices said goodbye"
    );
}

/// Run the binary to completion (at most 20 s) and return (success, stdout + stderr).
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cleanfleet"));
    command
        .args(args)
        .env("CLEANFLEET__DATA_DIR", dir.path())
        .env("CLEANFLEET__API__LISTEN", free_addr().to_string())
        .env("CLEANFLEET__METRICS__INGEST_LISTEN", "127.0.0.1:0")
        .env("CLEANFLEET__METRICS__COVERAGE_LISTEN", "127.0.0.1:0")
        .env("CLEANFLEET__METRICS__BROKER_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = KillOnDrop(command.spawn().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{args:?} did not exit within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    (status.success(), output)
}

#[test]
fn a_stage_that_fails_stops_the_process_with_an_error() {
    let (ok, output) = run_cli(
        &["ingest"],
        &[("CLEANFLEET__BROKER__URL", "mqtt://localhost:99999")],
    );
    assert!(!ok, "{output}");
    assert!(output.contains("invalid broker URL"), "{output}");
}

#[test]
fn configuration_errors_name_the_key() {
    let (ok, output) = run_cli(
        &["check-config"],
        &[("CLEANFLEET__INGEST__BATCH_SIZE", "7")],
    );
    assert!(!ok);
    assert!(output.contains("batch_size"), "{output}");
    let (ok, output) = run_cli(
        &["check-config"],
        &[("CLEANFLEET__BROKER__PASSWORD", "123456")],
    );
    assert!(ok, "a numeric-looking password is still a string: {output}");
    assert!(output.contains("\"123456\""), "{output}");
}
