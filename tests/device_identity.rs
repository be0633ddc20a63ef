//! Every message from the device it claims: the embedded broker and the shipped Mosquitto
//! configuration refuse anonymous clients, publishes under another device's id, reads of the
//! data topics by anyone but ingest, and take-overs of ingest's session; rotating and
//! revoking a credential (with the real `cleanfleet devices`) take effect.

mod common;

use cleanfleet_store::{CredentialStore, DeviceReads, ProvenanceStore, Trust};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode,
};

const WAIT: Duration = Duration::from_secs(10);

fn options(broker: SocketAddr, client_id: &str, login: Option<(&str, &str)>) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((username, password)) = login {
        options.set_credentials(username, password);
    }
    options
}

/// Connects; the CONNACK's code (a refusal is an error of the first poll).
async fn try_connect(options: MqttOptions) -> (AsyncClient, EventLoop, ConnectReturnCode) {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let code = loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => break ack.code,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => break code,
            Err(e) => panic!("connect: {e}"),
        }
    };
    (client, eventloop, code)
}

/// Publishes one message at QoS 1; whether the broker acknowledged it before closing the
/// connection or going quiet.
async fn acked(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topic: &str,
    payload: String,
) -> bool {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// The SUBACK codes for subscribing to `filters`.
async fn suback(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    filter: &str,
) -> SubscribeReasonCode {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::SubAck(ack))) => return ack.return_codes[0],
            Ok(_) => {}
            Err(e) => panic!("subscribe: {e}"),
        }
    }
}

/// Whether a publish arrives within `within`; an error if the connection broke first.
async fn receives_anything(eventloop: &mut EventLoop, within: Duration) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => return Ok(true),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Ok(false),
        }
    }
}

async fn device_fixes(stack: &cleanfleet::Stack, device: &str) -> usize {
    let (from, to) = (jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::now());
    stack
        .store
        .track(device, from, to, 10_000)
        .await
        .unwrap()
        .len()
}

fn issue(dir: &std::path::Path, role: &str, id: &str) -> String {
    let line = cleanfleet_cli(dir, &["devices", "add", "--role", role, id]);
    let (username, secret) = line.trim().split_once(':').unwrap();
    assert_eq!(username, id);
    secret.to_owned()
}

/// Whether the broker closes `eventloop`'s connection within [`WAIT`].
async fn closes(eventloop: &mut EventLoop) -> bool {
    tokio::time::timeout(WAIT, async { while eventloop.poll().await.is_ok() {} })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_lets_a_device_publish_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let broker = stack.broker_addr.unwrap();
    let api = stack.api_addr.unwrap();
    let sw1 = issue(dir.path(), "sweeper", "sw-1");
    issue(dir.path(), "sweeper", "sw-2");

    // No login, a wrong secret, an unknown device: refused at CONNECT.
    for login in [None, Some(("sw-1", "wrong")), Some(("sw-9", sw1.as_str()))] {
        let (_, _, code) = try_connect(options(broker, "sw-1", login)).await;
        assert_eq!(code, ConnectReturnCode::BadUserNamePassword, "{login:?}");
    }
    // A device may not take another client id, least of all ingest's.
    for client_id in ["sw-2", cleanfleet::INGEST_USERNAME] {
        let (_, _, code) = try_connect(options(broker, client_id, Some(("sw-1", &sw1)))).await;
        assert_eq!(code, ConnectReturnCode::BadClientId, "{client_id}");
    }

    let login = Some(("sw-1", sw1.as_str()));
    let (client, mut eventloop, code) = try_connect(options(broker, "sw-1", login)).await;
    assert_eq!(code, ConnectReturnCode::Success);
    assert!(
        acked(
            &client,
            &mut eventloop,
            &fixes_topic("sw-1"),
            fix_batch("sw-1", 0, 3)
        )
        .await
    );
    // Its data topics are nobody's to read but ingest's, its own included.
    for filter in ["cleanfleet/v1/#", "#", "$share/cleanfleet/cleanfleet/v1/#"] {
        assert_eq!(
            suback(&client, &mut eventloop, filter).await,
            SubscribeReasonCode::Failure,
            "{filter}"
        );
    }
    // As sw-2, or as a flusher: refused, unacknowledged, the connection closed.
    for forged in [
        fixes_topic("sw-2"),
        "cleanfleet/v1/flusher/sw-1/fixes".to_owned(),
    ] {
        let (client, mut eventloop, _) = try_connect(options(broker, "sw-1", login)).await;
        assert!(
            !acked(&client, &mut eventloop, &forged, fix_batch("sw-2", 0, 3)).await,
            "{forged}"
        );
    }
    eventually("sw-1's own fixes", WAIT, || async {
        (device_fixes(&stack, "sw-1").await == 3).then_some(())
    })
    .await;
    assert_eq!(
        device_fixes(&stack, "sw-2").await,
        0,
        "nothing forged is stored"
    );
    // Each stored fix names the login that delivered it: sw-1's credential, by its secret.
    let issued = stack
        .store
        .credential("sw-1")
        .await
        .unwrap()
        .unwrap()
        .rotated_at;
    let (status, provenance) = get_json(api, "/api/v1/devices/sw-1/provenance").await;
    assert_eq!(status, 200, "{provenance}");
    let runs = provenance["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{provenance}");
    assert_eq!(runs[0]["stream"], "fixes");
    assert_eq!(runs[0]["records"], 3);
    assert_eq!(runs[0]["source"]["trust"], "credential");
    assert_eq!(runs[0]["source"]["principal"], "sw-1");
    assert_eq!(
        runs[0]["source"]["credential_issued"],
        issued.to_string(),
        "{provenance}"
    );
    let metrics = get_text(api, "/metrics").await;
    for line in [
        r#"cleanfleet_broker_publishes_refused_total{reason="not_owner"} 2"#,
        r#"cleanfleet_broker_connections_refused_total{reason="bad_credentials"} 2"#,
        r#"cleanfleet_broker_connections_refused_total{reason="no_credentials"} 1"#,
        r#"cleanfleet_broker_connections_refused_total{reason="client_id"} 2"#,
        "cleanfleet_broker_subscriptions_refused_total 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_and_revoking_a_credential_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.embedded_broker.recheck_credentials_s = 1;
    let stack = cleanfleet::Stack::start(config, cleanfleet::Parts::ALL)
        .await
        .unwrap();
    stack.ingest_ready(WAIT).await.unwrap();
    let broker = stack.broker_addr.unwrap();
    let old = issue(dir.path(), "bin", "bin-1");
    let (_client, mut eventloop, code) =
        try_connect(options(broker, "bin-1", Some(("bin-1", &old)))).await;
    assert_eq!(code, ConnectReturnCode::Success);

    let new = issue_again(dir.path(), "bin-1");
    // The live connection on the old secret is closed; the old secret no longer logs in.
    assert!(
        closes(&mut eventloop).await,
        "still connected on a rotated secret"
    );
    let (_, _, code) = try_connect(options(broker, "bin-1", Some(("bin-1", &old)))).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let (_client, mut eventloop, code) =
        try_connect(options(broker, "bin-1", Some(("bin-1", &new)))).await;
    assert_eq!(code, ConnectReturnCode::Success);

    cleanfleet_cli(dir.path(), &["devices", "revoke", "bin-1"]);
    assert!(
        closes(&mut eventloop).await,
        "still connected after revocation"
    );
    let (_, _, code) = try_connect(options(broker, "bin-1", Some(("bin-1", &new)))).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let listed = cleanfleet_cli(dir.path(), &["devices", "list"]);
    let row = listed.lines().find(|l| l.starts_with("bin-1 ")).unwrap();
    assert!(!row.ends_with(" -"), "revoked shows its time: {row}");
    stack.stop().await.unwrap();
}

/// The shipped deploy/mosquitto.conf with the password and ACL files `cleanfleet devices`
/// writes: the same rules at scale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_mosquitto_config_enforces_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ingest_secret = issue(dir.path(), "ingest", cleanfleet::INGEST_USERNAME);
    let sw1 = issue(dir.path(), "sweeper", "sw-1");
    issue(dir.path(), "sweeper", "sw-2");
    let sw3 = issue(dir.path(), "sweeper", "sw-3");
    let passwd = cleanfleet_cli(dir.path(), &["devices", "mosquitto-passwd"]);
    std::fs::write(dir.path().join("cleanfleet.passwd"), passwd).unwrap();
    let acl = cleanfleet_cli(dir.path(), &["devices", "mosquitto-acl"]);
    std::fs::write(dir.path().join("cleanfleet.acl"), acl).unwrap();
    let Some(mosquitto) = Mosquitto::start_shipped(dir.path()).await else {
        return;
    };
    let broker = mosquitto.addr;
    let mut config = test_config(dir.path());
    config.broker.url = format!("mqtt://{broker}");
    config.broker.username = Some(cleanfleet::INGEST_USERNAME.into());
    config.broker.password = Some(ingest_secret);
    config.broker.binds_logins = true;
    let parts = cleanfleet::Parts {
        ingest: true,
        ..cleanfleet::Parts::NONE
    };
    let stack = cleanfleet::Stack::start(config, parts).await.unwrap();
    stack.ingest_ready(WAIT).await.unwrap();

    let (_, _, code) = try_connect(options(broker, "sw-1", None)).await;
    assert_ne!(code, ConnectReturnCode::Success, "anonymous");
    let (_, _, code) = try_connect(options(broker, "sw-1", Some(("sw-1", "wrong")))).await;
    assert_ne!(code, ConnectReturnCode::Success, "a wrong secret");

    // A device that asks for ingest's client id gets its own (its username): ingest keeps
    // its session, and the device reads nothing of the data topics.
    let (spy, mut spy_loop, code) = try_connect(options(
        broker,
        cleanfleet::INGEST_USERNAME,
        Some(("sw-3", &sw3)),
    ))
    .await;
    assert_eq!(code, ConnectReturnCode::Success);
    suback(&spy, &mut spy_loop, "cleanfleet/v1/#").await;

    // sw-2's secret rotated in the store after the password file was written: Mosquitto
    // knows only the file it read (hence: write the files and reload after every change).
    let rotated = issue_again(dir.path(), "sw-2");
    let (_, _, code) = try_connect(options(broker, "sw-2", Some(("sw-2", &rotated)))).await;
    assert_ne!(code, ConnectReturnCode::Success);

    let login = Some(("sw-1", sw1.as_str()));
    let (client, mut eventloop, code) = try_connect(options(broker, "sw-1", login)).await;
    assert_eq!(code, ConnectReturnCode::Success);
    // Mosquitto acknowledges a denied publish to an MQTT 3.1.1 client but delivers nothing.
    acked(
        &client,
        &mut eventloop,
        &fixes_topic("sw-2"),
        fix_batch("sw-2", 0, 3),
    )
    .await;
    assert!(
        acked(
            &client,
            &mut eventloop,
            &fixes_topic("sw-1"),
            fix_batch("sw-1", 0, 3)
        )
        .await
    );
    eventually("sw-1's own fixes", WAIT, || async {
        (device_fixes(&stack, "sw-1").await == 3).then_some(())
    })
    .await;
    assert_eq!(
        device_fixes(&stack, "sw-2").await,
        0,
        "nothing forged is stored"
    );
    let (from, to) = (jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::now());
    let runs = stack.store.provenance("sw-1", from, to).await.unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.records, r.source.trust, r.source.via.as_str()))
            .collect::<Vec<_>>(),
        vec![(3, Trust::Credential, format!("mqtt://{broker}").as_str())],
        "a fix through Mosquitto names sw-1's credential"
    );
    assert_eq!(
        receives_anything(&mut spy_loop, Duration::from_secs(1)).await,
        Ok(false),
        "a device read data, or lost its connection"
    );
    let metrics = stack.ingest_metrics.clone().unwrap();
    assert_eq!(
        metrics.broker_connected.get(),
        1,
        "ingest kept its connection"
    );
    assert_eq!(
        metrics.broker_reconnects.get(),
        0,
        "ingest was never kicked off"
    );
    stack.stop().await.unwrap();
}

/// Rotates `id`'s secret with the CLI; the new secret.
fn issue_again(dir: &std::path::Path, id: &str) -> String {
    let line = cleanfleet_cli(dir, &["devices", "rotate", id]);
    line.trim().split_once(':').unwrap().1.to_owned()
}

/// The admin API issues, lists, rotates and revokes credentials as the CLI does, and an
/// external broker (EMQX's HTTP hooks, `deploy/emqx/cleanfleet.hocon`) is told the same
/// rules as the embedded broker enforces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_credentials_and_answers_an_external_broker() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    let broker = stack.broker_addr.unwrap();
    let (status, issued) = post_json(
        api,
        "/api/v1/credentials",
        &json!({"username": "sw-7", "role": "sweeper"}),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let secret = issued["secret"].as_str().unwrap().to_owned();
    let (_, _, code) = try_connect(options(broker, "sw-7", Some(("sw-7", &secret)))).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let (status, _) = post_json(
        api,
        "/api/v1/credentials",
        &json!({"username": "cleanfleet-ingest-b", "role": "ingest"}),
    )
    .await;
    assert_eq!(status, 201);
    for (body, code, field) in [
        (
            json!({"username": "sw-7", "role": "sweeper"}),
            409,
            "username",
        ),
        (json!({"username": "sw-8", "role": "truck"}), 400, "role"),
        (
            json!({"username": "cleanfleet-x", "role": "sweeper"}),
            400,
            "username",
        ),
        (json!({"username": "sw-8"}), 400, "role"),
    ] {
        let (status, answer) = post_json(api, "/api/v1/credentials", &body).await;
        assert_eq!(status, code, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (status, page) = get_json_as(api, "/api/v1/credentials?limit=1", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = get_json_as(api, "/api/v1/credentials", Some(ADMIN_TOKEN)).await;
    let listed = page.to_string();
    assert!(listed.contains("\"sw-7\"") && !listed.contains(&secret) && !listed.contains("$7$"));

    // The hooks: who may connect, publish and subscribe.
    let authenticate = |username: &str, password: &str, clientid: &str| json!({"username": username, "password": password, "clientid": clientid});
    let authorize = |username: &str, clientid: &str, action: &str, topic: &str| json!({"username": username, "clientid": clientid, "action": action, "topic": topic});
    let ask = |path: &'static str, body: serde_json::Value| async move {
        let (status, answer) = post_json_as(api, path, &body, BROKER_TOKEN).await;
        assert_eq!(status, 200, "{body}: {answer}");
        answer["result"].as_str().unwrap().to_owned()
    };
    let login = "/api/v1/mqtt/authenticate";
    let acl = "/api/v1/mqtt/authorize";
    assert_eq!(
        ask(login, authenticate("sw-7", &secret, "sw-7")).await,
        "allow"
    );
    assert_eq!(
        ask(login, authenticate("sw-7", "wrong", "sw-7")).await,
        "deny"
    );
    assert_eq!(
        ask(login, authenticate("sw-7", &secret, "cleanfleet-ingest")).await,
        "deny"
    );
    assert_eq!(ask(login, authenticate("", "", "anyone")).await, "deny");
    for (who, client, action, topic, verdict) in [
        (
            "sw-7",
            "sw-7",
            "publish",
            "cleanfleet/v1/sweeper/sw-7/fixes",
            "allow",
        ),
        (
            "sw-7",
            "sw-7",
            "publish",
            "cleanfleet/v1/sweeper/sw-8/fixes",
            "deny",
        ),
        (
            "sw-7",
            "sw-7",
            "publish",
            "cleanfleet/v1/flusher/sw-7/fixes",
            "deny",
        ),
        ("sw-7", "sw-7", "subscribe", "cleanfleet/v1/#", "deny"),
        (
            "sw-7",
            "sw-7",
            "subscribe",
            "$share/cleanfleet/cleanfleet/v1/#",
            "deny",
        ),
        (
            "cleanfleet-ingest-b",
            "cleanfleet-ingest-b",
            "subscribe",
            "$share/cleanfleet/cleanfleet/v1/#",
            "allow",
        ),
        (
            "cleanfleet-ingest-b",
            "cleanfleet-ingest-b",
            "subscribe",
            "cleanfleet/v1/#",
            "allow",
        ),
        (
            "cleanfleet-ingest-b",
            "cleanfleet-ingest-b",
            "publish",
            "cleanfleet/v1/sweeper/sw-7/fixes",
            "deny",
        ),
        (
            "nobody",
            "nobody",
            "publish",
            "cleanfleet/v1/sweeper/nobody/fixes",
            "deny",
        ),
    ] {
        assert_eq!(
            ask(acl, authorize(who, client, action, topic)).await,
            verdict,
            "{who} {action} {topic}"
        );
    }
    let (status, answer) = post_json_as(
        api,
        acl,
        &authorize("sw-7", "sw-7", "retain", "t"),
        BROKER_TOKEN,
    )
    .await;
    assert_eq!((status, &answer["error"]["field"]), (400, &json!("action")));
    // The broker's token opens nothing else; nobody else's opens the hooks.
    let (status, _) = get_json_as(api, "/api/v1/coverage", Some(BROKER_TOKEN)).await;
    assert_eq!(status, 403);
    let (status, _) = post_json_as(
        api,
        login,
        &authenticate("sw-7", &secret, "sw-7"),
        DISPATCHER_TOKEN,
    )
    .await;
    assert_eq!(status, 403);

    // Rotated: the old secret is refused at once, the new one works.
    let (status, rotated) = post_json(api, "/api/v1/credentials/sw-7/rotate", &json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        ask(login, authenticate("sw-7", &secret, "sw-7")).await,
        "deny"
    );
    assert_eq!(
        ask(login, authenticate("sw-7", &new, "sw-7")).await,
        "allow"
    );
    // Revoked: nothing more, and no second revocation or rotation.
    let (status, revoked) = post_json(api, "/api/v1/credentials/sw-7/revoke", &json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked"].is_string(), "{revoked}");
    assert_eq!(ask(login, authenticate("sw-7", &new, "sw-7")).await, "deny");
    assert_eq!(
        ask(
            acl,
            authorize(
                "sw-7",
                "sw-7",
                "publish",
                "cleanfleet/v1/sweeper/sw-7/fixes"
            )
        )
        .await,
        "deny"
    );
    for action in ["rotate", "revoke"] {
        let (status, _) = post_json(
            api,
            &format!("/api/v1/credentials/sw-7/{action}"),
            &json!({}),
        )
        .await;
        assert_eq!(status, 404, "{action}");
    }
    let (_, _, code) = try_connect(options(broker, "sw-7", Some(("sw-7", &new)))).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    stack.stop().await.unwrap();
}
