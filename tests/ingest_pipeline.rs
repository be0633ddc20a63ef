//! End to end through real parts: an MQTT client publishes to the embedded broker over
//! loopback, ingest commits to a real SQLite file, and the HTTP API serves it.

mod common;

use cleanfleet_store::DeviceReads;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

async fn fix_count(api: std::net::SocketAddr) -> u64 {
    get_json(api, "/api/v1/ingest/stats").await.1["store"]["fixes"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_batch_is_visible_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    let mut publisher = Publisher::for_stack(&stack);
    publisher
        .publish(&fixes_topic("sw-1"), fix_batch("sw-1", 1, 5))
        .await;

    let device = eventually("the device in the API", WAIT, || async {
        let (status, body) = get_json(api, "/api/v1/devices/sw-1").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(device["kind"], "sweeper");
    let latest = &device["latest_fix"];
    assert_eq!(latest["seq"], 5);
    assert_eq!(latest["work"]["brush"], true);
    assert_eq!(latest["speed_kmh"], 7.5);

    let (_, vehicles) = get_json(api, "/api/v1/vehicles").await;
    assert_eq!(vehicles["items"].as_array().unwrap().len(), 1);

    let (status, track) = get_json(
        api,
        "/api/v1/vehicles/sw-1/track?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(status, 400, "a window over 31 days is refused: {track}");
    assert_eq!(track["error"]["field"], "from");

    let (status, track) = get_json(api, "/api/v1/vehicles/sw-1/track").await;
    assert_eq!(status, 200, "{track}");
    assert_eq!(track["type"], "FeatureCollection");
    let line = &track["features"][0];
    assert_eq!(line["geometry"]["type"], "LineString");
    let coords = line["geometry"]["coordinates"].as_array().unwrap();
    assert_eq!(coords.len(), 5);
    assert_eq!(coords[0][0], 120.86, "RFC 7946 positions are [lon, lat]");

    let (_, points) = get_json(api, "/api/v1/vehicles/sw-1/track?geometry=points").await;
    assert_eq!(points["features"].as_array().unwrap().len(), 5);
    assert_eq!(points["features"][4]["properties"]["seq"], 5);

    let metrics = get_text(api, "/metrics").await;
    assert!(
        metrics.contains("cleanfleet_ingest_fixes_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("cleanfleet_ingest_commit_duration_seconds_count"));
    publisher.disconnect().await;
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_from_mosquitto_pub_is_ingested() {
    let Some(mosquitto_pub) = external_program("mosquitto_pub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let broker = stack.broker_addr.unwrap();
    // The bin logs in as itself, with the secret `cleanfleet devices add` would print.
    let bin = cleanfleet_identity::Role::Device(cleanfleet_model::DeviceKind::Bin);
    let secret = cleanfleet_store::credentials::issue(
        stack.store.as_ref(),
        bin,
        "bin-7",
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    let status = std::process::Command::new(mosquitto_pub)
        .args([
            "-h",
            &broker.ip().to_string(),
            "-p",
            &broker.port().to_string(),
        ])
        .args(["-i", "bin-7", "-u", "bin-7", "-P", &secret])
        .args(["-q", "1", "-t", "cleanfleet/v1/bin/bin-7/reading"])
        .args([
            "-m",
            &format!(
                r#"{{"time":"{}","fill_ratio":0.85,"temperature_c":19.5}}"#,
                jiff::Timestamp::now()
            ),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let api = stack.api_addr.unwrap();
    let bin = eventually("the bin in the API", WAIT, || async {
        let (status, body) = get_json(api, "/api/v1/bins").await;
        (status == 200 && !body["items"].as_array().unwrap().is_empty()).then_some(body)
    })
    .await;
    let item = &bin["items"][0];
    assert_eq!(item["device_id"], "bin-7");
    assert_eq!(item["latest_bin_reading"]["fill_ratio"], 0.85);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_class_is_dead_lettered_with_its_reason_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    let mut publisher = Publisher::for_stack(&stack);
    publisher
        .publish(&fixes_topic("sw-1"), fix_batch("sw-1", 1, 3))
        .await;

    let good = fix_batch("sw-1", 100, 1);
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 60);
    let time_of =
        |t: jiff::Timestamp| format!(r#"{{"fixes":[{{"time":"{t}","lat":32,"lon":120}}]}}"#);
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (
            fixes_topic("sw-1"),
            b"{\"fixes\":[".to_vec(),
            "malformed_json",
        ),
        (
            fixes_topic("sw-1"),
            good.replace("\"lat\":", "\"lat\":\"x\",\"y\":")
                .into_bytes(),
            "wrong_type",
        ),
        (
            fixes_topic("sw-1"),
            good.replace("\"lon\":120.86", "\"lon\":190").into_bytes(),
            "out_of_range",
        ),
        (
            fixes_topic("sw-1"),
            good.replace("\"speed_kmh\":7.5", "\"speed_kmh\":NaN")
                .into_bytes(),
            "non_finite_number",
        ),
        (
            fixes_topic("sw-1"),
            time_of(future).into_bytes(),
            "timestamp_in_future",
        ),
        (
            fixes_topic("sw-1"),
            time_of(old).into_bytes(),
            "timestamp_too_old",
        ),
        (
            fixes_topic("sw-1"),
            vec![b' '; 300 * 1024],
            "oversize_payload",
        ),
        (
            fixes_topic("sw-2"),
            good.clone().into_bytes(),
            "device_id_mismatch",
        ),
        // Topics that are not a device's own (unknown kind or stream, extra levels) the
        // embedded broker refuses (tests/device_identity.rs); behind a broker that lets them
        // through, ingest dead-letters them (below).
        (
            fixes_topic("sw-1"),
            good.replace("\"seq\":100,", "")
                .replace("\"lat\"", "\"latitude\"")
                .into_bytes(),
            "unknown_field",
        ),
        (
            fixes_topic("sw-1"),
            r#"{"fixes":[{"lat":1,"lon":2}]}"#.into(),
            "missing_field",
        ),
    ];
    let messages: Vec<(String, Vec<u8>)> =
        bad.iter().map(|(t, p, _)| (t.clone(), p.clone())).collect();
    publisher.publish_all(&messages).await;
    publisher
        .publish(&fixes_topic("sw-1"), fix_batch("sw-1", 4, 2))
        .await;

    let stats = eventually("every message committed", WAIT, || async {
        let (_, stats) = get_json(api, "/api/v1/ingest/stats").await;
        let letters = stats["store"]["dead_letters"].as_u64().unwrap();
        let fixes = stats["store"]["fixes"].as_u64().unwrap();
        (letters == bad.len() as u64 && fixes == 5).then_some(stats)
    })
    .await;
    for (_, _, reason) in &bad {
        assert_eq!(
            stats["store"]["dead_letters_by_reason"][reason], 1,
            "reason {reason}: {stats}"
        );
        assert_eq!(stats["process"]["rejected_messages_by_reason"][reason], 1);
        let (status, page) = get_json(api, &format!("/api/v1/dead-letters?reason={reason}")).await;
        assert_eq!(status, 200);
        let letter = &page["items"][0];
        assert_eq!(letter["reason"], *reason);
        assert!(!letter["detail"].as_str().unwrap().is_empty());
        assert!(letter["payload_base64"].is_string());
    }
    let metrics = get_text(api, "/metrics").await;
    assert!(
        metrics.contains(r#"cleanfleet_ingest_rejected_messages_total{reason="out_of_range"} 1"#)
    );

    // The good data around the bad is intact and the device is still served.
    let (_, track) = get_json(api, "/api/v1/vehicles/sw-1/track?geometry=points").await;
    let seqs: Vec<u64> = track["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    publisher.disconnect().await;
    stack.stop().await.unwrap();
}

/// Behind a broker that lets any topic through (Mosquitto, anonymous, no ACL), the topics
/// that are no device's own are dead-lettered with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_topics_a_permissive_broker_passes_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mosquitto) = Mosquitto::start(dir.path(), "allow_anonymous true").await else {
        return;
    };
    let mut config = test_config(dir.path());
    config.broker.url = format!("mqtt://{}", mosquitto.addr);
    let parts = cleanfleet::Parts {
        ingest: true,
        api: true,
        ..cleanfleet::Parts::NONE
    };
    let stack = cleanfleet::Stack::start(config, parts).await.unwrap();
    stack.ingest_ready(WAIT).await.unwrap();
    let api = stack.api_addr.unwrap();
    let good = fix_batch("sw-1", 100, 1);
    let bad = [
        ("cleanfleet/v1/spaceship/x-1/fixes", "unknown_kind"),
        ("cleanfleet/v1/sweeper/sw-1/colour", "unknown_stream"),
        // Outside the subscription (cleanfleet/v1/#) a topic never arrives; inside, it must
        // have exactly kind/device/stream.
        ("cleanfleet/v1/sweeper/sw-1/fixes/extra", "unknown_topic"),
    ];
    let mut publisher = Publisher::new(mosquitto.addr, Logins::Anonymous);
    let messages: Vec<(String, Vec<u8>)> = bad
        .iter()
        .map(|(topic, _)| (topic.to_string(), good.clone().into_bytes()))
        .collect();
    publisher.publish_all(&messages).await;
    let stats = eventually("every message dead-lettered", WAIT, || async {
        let (_, stats) = get_json(api, "/api/v1/ingest/stats").await;
        (stats["store"]["dead_letters"] == bad.len()).then_some(stats)
    })
    .await;
    for (_, reason) in bad {
        assert_eq!(
            stats["store"]["dead_letters_by_reason"][reason], 1,
            "reason {reason}: {stats}"
        );
    }
    publisher.disconnect().await;
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_batches_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    let mut publisher = Publisher::for_stack(&stack);
    let batch = fix_batch("sw-1", 1, 10);
    let overlapping = fix_batch("sw-1", 6, 10);
    let topic = fixes_topic("sw-1");
    publisher
        .publish_all(&[
            (topic.clone(), batch.clone().into_bytes()),
            (topic.clone(), batch.into_bytes()),
            (topic.clone(), overlapping.into_bytes()),
        ])
        .await;
    eventually("15 distinct fixes", WAIT, || async {
        (fix_count(api).await == 15).then_some(())
    })
    .await;
    let metrics = eventually("duplicates counted", WAIT, || async {
        let metrics = get_text(api, "/metrics").await;
        metrics
            .contains("cleanfleet_ingest_duplicate_records_total 15")
            .then_some(metrics)
    })
    .await;
    assert!(
        metrics.contains("cleanfleet_ingest_fixes_total 15"),
        "{metrics}"
    );
    publisher.disconnect().await;
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    let cases = [
        ("/api/v1/devices?limit=0", 400, Some("limit")),
        ("/api/v1/devices?limit=abc", 400, Some("limit")),
        ("/api/v1/devices?kind=rocket", 400, Some("kind")),
        ("/api/v1/devices?colour=red", 400, Some("colour")),
        ("/api/v1/devices/bad%20id", 400, Some("device_id")),
        ("/api/v1/devices/nobody", 404, None),
        ("/api/v1/vehicles/nobody/track", 404, None),
        ("/api/v1/vehicles/x/track?from=yesterday", 400, Some("from")),
        (
            "/api/v1/vehicles/x/track?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            400,
            Some("to"),
        ),
        (
            "/api/v1/vehicles/x/track?geometry=blob",
            400,
            Some("geometry"),
        ),
        (
            "/api/v1/vehicles/x/track?to=-009999-01-02T12:00:00Z",
            400,
            Some("to"),
        ),
        ("/api/v1/dead-letters?reason=bogus", 400, Some("reason")),
        ("/no/such/route", 404, None),
    ];
    for (path, status, field) in cases {
        let (got, body) = get_json(api, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
        match field {
            Some(field) => assert_eq!(body["error"]["field"], field, "{path}: {body}"),
            None => assert!(body["error"]["field"].is_null()),
        }
    }
    let (status, doc) = get_json(api, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/vehicles/{device_id}/track"].is_object());
    let (status, ready) = get_json(api, "/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
    let (status, _) = get_json(api, "/healthz").await;
    assert_eq!(status, 200);
    let metrics = get_text(api, "/metrics").await;
    assert!(
        metrics.contains(
            r#"cleanfleet_api_requests_total{route="/api/v1/devices/{device_id}",status="404"} 1"#
        ),
        "{metrics}"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_everything_received_and_checkpoints_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let mut publisher = Publisher::for_stack(&stack);
    let messages: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                fixes_topic("sw-1"),
                fix_batch("sw-1", i * 10, 10).into_bytes(),
            )
        })
        .collect();
    publisher.publish_all(&messages).await;
    let metrics = stack.ingest_metrics.clone().unwrap();
    eventually("some messages taken by ingest", WAIT, || async {
        (metrics.messages_committed() > 0).then_some(())
    })
    .await;
    let store_path = stack.store.path().to_path_buf();
    stack.stop().await.unwrap();
    // The embedded broker's queue dies with the process: stopping takes no more from devices
    // and lets ingest commit everything the broker had acknowledged first.
    let committed = metrics.messages_committed();
    assert_eq!(
        committed, 200,
        "every acknowledged message committed before the stop"
    );

    let wal = store_path.with_extension("sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        wal_len, 0,
        "the WAL is checkpointed into the database at shutdown"
    );
    let reopened =
        cleanfleet_store::SqliteStore::open(cleanfleet_store::SqliteConfig::new(&store_path))
            .unwrap();
    assert_eq!(
        reopened.stats().await.unwrap().fixes,
        2000,
        "every committed message is in the file"
    );
}

/// Every `cleanfleet_*` series a shipped dashboard queries is one the process exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_query_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    get_json(api, "/healthz").await;
    let exported = get_text(api, "/metrics").await;
    let dashboards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(dashboards).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("cleanfleet_"))
                {
                    let exported_here = exported.lines().any(|line| {
                        line.strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                    });
                    assert!(
                        exported_here,
                        "dashboard queries {name}, which /metrics does not export"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10);
    stack.stop().await.unwrap();
}

/// Load mode: many devices on their own connections; everything they publish is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mode_devices_are_all_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let mut config = test_config(dir.path());
    config.broker.url = format!("mqtt://{}", stack.broker_addr.unwrap());
    let kind = cleanfleet_identity::Role::Device(cleanfleet_sim::LOAD_DEVICE_KIND);
    let devices = cleanfleet_sim::load_device_ids(200).map(|id| (kind, id));
    let secrets = cleanfleet_store::credentials::provision(
        stack.store.as_ref(),
        devices,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    let load = cleanfleet_sim::LoadConfig {
        devices: 200,
        message_interval_s: 0.5,
        fixes_per_message: 5,
        duration_s: 2.0,
        secrets,
        ..Default::default()
    };
    let report = cleanfleet::run_load(&config, load, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.devices_connected, 200);
    assert!(report.messages_published >= 200 * 3, "{report:?}");
    assert_eq!(report.messages_acked, report.messages_published);
    let api = stack.api_addr.unwrap();
    eventually("every load fix stored", WAIT, || async {
        (fix_count(api).await == report.fixes_published).then_some(())
    })
    .await;
    let (_, stats) = get_json(api, "/api/v1/ingest/stats").await;
    assert_eq!(stats["store"]["devices"], 200);
    assert_eq!(stats["store"]["dead_letters"], 0);
    stack.stop().await.unwrap();
}

/// A broker restarted without persistence has forgotten ingest's session: ingest says so at
/// WARN and counts it, rather than reconnecting as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_lost_the_session_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mosquitto) = Mosquitto::start(dir.path(), "allow_anonymous true").await else {
        return;
    };
    let port = mosquitto.addr.port();
    let mut config = test_config(dir.path());
    config.broker.url = format!("mqtt://{}", mosquitto.addr);
    let parts = cleanfleet::Parts {
        ingest: true,
        ..cleanfleet::Parts::NONE
    };
    let stack = cleanfleet::Stack::start(config, parts).await.unwrap();
    stack.ingest_ready(WAIT).await.unwrap();
    let metrics = stack.ingest_metrics.clone().unwrap();
    assert_eq!(metrics.broker_sessions_lost.get(), 0);
    drop(mosquitto);
    let _again = Mosquitto::start_on(dir.path(), port, "allow_anonymous true")
        .await
        .unwrap();
    eventually("ingest to reconnect", WAIT, || async {
        (metrics.broker_reconnects.get() >= 1 && metrics.broker_connected.get() == 1).then_some(())
    })
    .await;
    assert_eq!(metrics.broker_sessions_lost.get(), 1);
    stack.stop().await.unwrap();
}
