//! The embedded broker with real MQTT clients (rumqttc) over loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cleanfleet_broker::{start, AuthUnavailable, Authenticator, BrokerConfig, BrokerHandle};
use cleanfleet_identity::{Principal, Role};
use cleanfleet_model::DeviceKind;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::time::timeout;

const INGEST: &str = "cleanfleet-ingest";
const SECRET: &str = "s3cret";

/// Logins held in memory: username → (password, role).
#[derive(Default)]
struct Logins(Mutex<HashMap<String, (String, Role)>>);

impl Logins {
    fn add(&self, username: &str, role: Role) {
        self.0
            .lock()
            .unwrap()
            .insert(username.into(), (SECRET.into(), role));
    }
    fn remove(&self, username: &str) {
        self.0.lock().unwrap().remove(username);
    }
}

#[async_trait]
impl Authenticator for Logins {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, AuthUnavailable> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(username)
            .filter(|(p, _)| p == password)
            .map(|(_, role)| Principal {
                username: username.into(),
                role: *role,
            }))
    }

    async fn certified(&self, username: &str) -> Result<Option<Principal>, AuthUnavailable> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(username)
            .map(|(_, role)| Principal {
                username: username.into(),
                role: *role,
            }))
    }
}

async fn broker(config: BrokerConfig) -> (BrokerHandle, Arc<Logins>) {
    let logins = Arc::new(Logins::default());
    logins.add(INGEST, Role::Ingest);
    logins.add("sw-1", Role::Device(DeviceKind::Sweeper));
    logins.add("sw-2", Role::Device(DeviceKind::Sweeper));
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let handle = start(config, logins.clone(), &prometheus::Registry::new())
        .await
        .unwrap();
    (handle, logins)
}

fn options(broker: &BrokerHandle, client_id: &str, login: Option<(&str, &str)>) -> MqttOptions {
    let addr = broker.local_addr();
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    options
}

/// Connects and returns the CONNACK's code.
async fn connack(options: MqttOptions) -> (AsyncClient, EventLoop, ConnectReturnCode) {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let code = loop {
        match timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .unwrap()
        {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => break ack.code,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => break code,
            Err(e) => panic!("connect: {e}"),
        }
    };
    (client, eventloop, code)
}

async fn connected(broker: &BrokerHandle, user: &str) -> (AsyncClient, EventLoop) {
    let (client, eventloop, code) = connack(options(broker, user, Some((user, SECRET)))).await;
    assert_eq!(code, ConnectReturnCode::Success);
    (client, eventloop)
}

/// Ingest's subscription to every data topic, acknowledged.
async fn subscribed_ingest(broker: &BrokerHandle) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = connected(broker, INGEST).await;
    client
        .subscribe("cleanfleet/v1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = eventloop.poll().await.unwrap() {
            assert!(matches!(
                ack.return_codes[0],
                rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)
            ));
            break (client, eventloop);
        }
    }
}

/// Polls until `n` publishes arrived or nothing came for `quiet`; returns their payloads.
async fn receive(eventloop: &mut EventLoop, n: usize, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        match timeout(quiet, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.push(p.payload.to_vec()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber: {e}"),
            Err(_) => break,
        }
    }
    got
}

/// Polls a publisher until `n` PUBACKs arrived, the connection failed, or `quiet` passed.
async fn acks(eventloop: &mut EventLoop, n: usize, quiet: Duration) -> (usize, bool) {
    let mut acked = 0;
    while acked < n {
        match timeout(quiet, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return (acked, true),
            Err(_) => break,
        }
    }
    (acked, false)
}

#[tokio::test]
async fn nobody_connects_without_a_valid_login() {
    let (broker, _) = broker(BrokerConfig::default()).await;
    let (_, _, code) = connack(options(&broker, "sw-1", None)).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let (_, _, code) = connack(options(&broker, "sw-1", Some(("sw-1", "wrong")))).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let (_, _, code) = connack(options(&broker, "nobody", Some(("nobody", SECRET)))).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    // A device may not take another client id, least of all ingest's.
    for client_id in ["sw-2", INGEST] {
        let (_, _, code) = connack(options(&broker, client_id, Some(("sw-1", SECRET)))).await;
        assert_eq!(code, ConnectReturnCode::BadClientId, "{client_id}");
    }
}

#[tokio::test]
async fn a_device_publishes_only_as_itself_and_reads_nothing() {
    let (broker, _) = broker(BrokerConfig::default()).await;
    let (_ingest, mut ingest_loop) = subscribed_ingest(&broker).await;
    let (device, mut device_loop) = connected(&broker, "sw-1").await;
    device
        .publish(
            "cleanfleet/v1/sweeper/sw-1/fixes",
            QoS::AtLeastOnce,
            false,
            b"own".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        acks(&mut device_loop, 1, Duration::from_secs(5)).await,
        (1, false)
    );
    assert_eq!(
        receive(&mut ingest_loop, 1, Duration::from_secs(5)).await,
        [b"own".to_vec()]
    );
    // As another device, or as another kind: refused, connection closed, nothing routed.
    for forged in [
        "cleanfleet/v1/sweeper/sw-2/fixes",
        "cleanfleet/v1/flusher/sw-1/fixes",
    ] {
        let (device, mut device_loop) = connected(&broker, "sw-1").await;
        device
            .publish(forged, QoS::AtLeastOnce, false, b"forged".to_vec())
            .await
            .unwrap();
        assert_eq!(
            acks(&mut device_loop, 1, Duration::from_secs(5)).await,
            (0, true),
            "{forged}"
        );
    }
    assert!(receive(&mut ingest_loop, 1, Duration::from_millis(500))
        .await
        .is_empty());
    // A device subscribes to nothing: not others' data, not even its own.
    let (device, mut device_loop) = connected(&broker, "sw-2").await;
    device
        .subscribe("cleanfleet/v1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    device
        .subscribe("$share/cleanfleet/cleanfleet/v1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut refused = 0;
    while refused < 2 {
        if let Event::Incoming(Packet::SubAck(ack)) = device_loop.poll().await.unwrap() {
            assert_eq!(ack.return_codes, [rumqttc::SubscribeReasonCode::Failure]);
            refused += 1;
        }
    }
    drop(device);
}

/// The heart of "nothing acknowledged is lost": ingest away, a burst many times the queue
/// budget. The broker acknowledges only what it queued, the device waits with the rest, and
/// when ingest is back every acknowledged message (indeed every message) arrives.
#[tokio::test]
async fn a_full_queue_holds_back_acks_and_loses_nothing() {
    let config = BrokerConfig {
        max_payload_bytes: 1024,
        session_queue_bytes: 16 * 1024,
        total_queue_bytes: 16 * 1024,
        max_inflight: 10,
        ..BrokerConfig::default()
    };
    let (broker, _) = broker(config).await;
    let (ingest, ingest_loop) = subscribed_ingest(&broker).await;
    // Ingest goes away; its session stays.
    ingest.disconnect().await.unwrap();
    drop(ingest_loop);
    let (device, mut device_loop) = connected(&broker, "sw-1").await;
    const MESSAGES: usize = 200; // about 200 × 1 KiB: twelve times the budget
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let mut payload = format!("{i:05}").into_bytes();
            payload.resize(990, b' ');
            device
                .publish(
                    "cleanfleet/v1/sweeper/sw-1/fixes",
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        }
        device
    });
    let (acked_while_away, failed) = acks(&mut device_loop, MESSAGES, Duration::from_secs(2)).await;
    assert!(!failed);
    assert!(
        (10..=17).contains(&acked_while_away),
        "{acked_while_away} acknowledged with 16 KiB of room"
    );
    // Ingest is back: everything flows.
    let (_ingest, mut ingest_loop) = connected(&broker, INGEST).await;
    let device_acks = tokio::spawn(async move {
        let got = acks(
            &mut device_loop,
            MESSAGES - acked_while_away,
            Duration::from_secs(10),
        )
        .await;
        (got, device_loop)
    });
    let got = receive(&mut ingest_loop, MESSAGES, Duration::from_secs(10)).await;
    let ((acked_after, failed), _device_loop) = device_acks.await.unwrap();
    assert!(!failed);
    assert_eq!(acked_while_away + acked_after, MESSAGES);
    let mut numbers: Vec<usize> = got
        .iter()
        .map(|p| std::str::from_utf8(&p[..5]).unwrap().parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers, (0..MESSAGES).collect::<Vec<_>>());
    drop(publisher.await.unwrap());
}

#[tokio::test]
async fn a_revoked_login_loses_its_connection_and_cannot_come_back() {
    let config = BrokerConfig {
        recheck_credentials_s: 1,
        ..BrokerConfig::default()
    };
    let (broker, logins) = broker(config).await;
    let (_device, mut device_loop) = connected(&broker, "sw-1").await;
    logins.remove("sw-1");
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            if device_loop.poll().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still connected after revocation");
    let (_, _, code) = connack(options(&broker, "sw-1", Some(("sw-1", SECRET)))).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    // And the handle closes a user's connections at once.
    let (_device, mut device_loop) = connected(&broker, "sw-2").await;
    assert_eq!(broker.disconnect_user("sw-2"), 1);
    let closed = timeout(Duration::from_secs(2), async {
        while device_loop.poll().await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok());
}

/// A device held back by a full queue stays connected: the broker answers its pings while
/// its publish waits, so the wait does not look like a dead broker (which would make every
/// device reconnect and send everything again).
#[tokio::test]
async fn a_waiting_publisher_is_still_answered_its_pings() {
    let config = BrokerConfig {
        max_payload_bytes: 1024,
        session_queue_bytes: 4 * 1024,
        total_queue_bytes: 4 * 1024,
        ..BrokerConfig::default()
    };
    let (broker, _) = broker(config).await;
    let (ingest, ingest_loop) = subscribed_ingest(&broker).await;
    ingest.disconnect().await.unwrap();
    drop(ingest_loop);
    let mut options = options(&broker, "sw-1", Some(("sw-1", SECRET)));
    options.set_keep_alive(Duration::from_secs(1));
    let (device, mut device_loop, code) = connack(options).await;
    assert_eq!(code, ConnectReturnCode::Success);
    for _ in 0..10 {
        device
            .publish(
                "cleanfleet/v1/sweeper/sw-1/fixes",
                QoS::AtLeastOnce,
                false,
                vec![b'x'; 900],
            )
            .await
            .unwrap();
    }
    // Five keep-alive periods with the queue full: no error, pings answered.
    let mut pongs = 0;
    let watch = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(watch);
    loop {
        tokio::select! {
            _ = &mut watch => break,
            event = device_loop.poll() => match event {
                Ok(Event::Incoming(Packet::PingResp)) => pongs += 1,
                Ok(_) => {}
                Err(e) => panic!("the waiting device lost its connection: {e}"),
            },
        }
    }
    assert!(pongs >= 3, "{pongs} pings answered in 5 s");
}

/// Publishers held back by a full queue are read ahead (for their pings) only within the
/// broker-wide `read_ahead_bytes`: a city's devices waiting at once cannot each make the
/// broker buffer their backlog (regression: 1 MiB per connection, unbounded in total).
#[tokio::test]
async fn waiting_publishers_are_read_ahead_within_one_budget() {
    const DEVICES: usize = 30;
    const MESSAGES: usize = 60;
    const PAYLOAD: usize = 900;
    let config = BrokerConfig {
        max_payload_bytes: 1024,
        session_queue_bytes: 4 * 1024,
        total_queue_bytes: 4 * 1024,
        read_ahead_bytes: 16 * 1024,
        ..BrokerConfig::default()
    };
    let budget = config.read_ahead_bytes;
    let (broker, logins) = broker(config).await;
    let (ingest, ingest_loop) = subscribed_ingest(&broker).await;
    ingest.disconnect().await.unwrap();
    drop(ingest_loop);
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let id = format!("sw-w{d}");
        logins.add(&id, Role::Device(DeviceKind::Sweeper));
        let (device, mut device_loop) = connected(&broker, &id).await;
        let topic = format!("cleanfleet/v1/sweeper/{id}/fixes");
        devices.push(tokio::spawn(async move {
            for i in 0..MESSAGES {
                let mut payload = format!("{d:03}{i:03}").into_bytes();
                payload.resize(PAYLOAD, b' ');
                device
                    .publish(&topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
            }
            let acked = acks(&mut device_loop, MESSAGES, Duration::from_secs(20)).await;
            (acked, device, device_loop)
        }));
    }
    // Every device has sent its backlog (30 × 54 KB) while the queue is full.
    let mut most = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        most = most.max(broker.read_ahead_bytes());
    }
    // One packet: topic + payload + headers.
    let packet = PAYLOAD + 64;
    assert!(
        most > 0,
        "nothing read ahead: the pings of waiting devices go unanswered"
    );
    assert!(
        most <= budget + DEVICES * packet,
        "{most} bytes read ahead for a budget of {budget}"
    );
    // Ingest is back: every message arrives, the read-ahead is given back.
    let (_ingest, mut ingest_loop) = connected(&broker, INGEST).await;
    let got = receive(
        &mut ingest_loop,
        DEVICES * MESSAGES,
        Duration::from_secs(10),
    )
    .await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8(p[..6].to_vec()).unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), DEVICES * MESSAGES);
    for device in devices {
        let ((acked, failed), _device, _loop) = device.await.unwrap();
        assert!(!failed);
        assert_eq!(acked, MESSAGES);
    }
    assert_eq!(broker.read_ahead_bytes(), 0);
}

/// A certificate authority that issues certificates for tests.
struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca: rustls::pki_types::CertificateDer<'static>,
    ca_pem: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Pki {
            issuer: rcgen::Issuer::new(params, key),
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
        }
    }

    /// A certificate for `common_name` (and 127.0.0.1), with its key.
    fn issue(
        &self,
        common_name: &str,
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
        String,
        String,
    ) {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        (cert.der().clone(), der_key, cert.pem(), key.serialize_pem())
    }
}

fn tls_options(
    broker: &BrokerHandle,
    ca: &Pki,
    client_id: &str,
    certificate: Option<(
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
    login: Option<(&str, &str)>,
) -> MqttOptions {
    let addr = broker.tls_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match certificate {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ));
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    options
}

/// Over TLS a device logs in with its secret, or with a client certificate of the city's CA
/// naming it; a certificate names exactly one device, and a revoked credential's certificate
/// logs nobody in.
#[tokio::test]
async fn over_tls_a_client_certificate_logs_its_device_in() {
    let dir = tempfile::tempdir().unwrap();
    let (city, stranger) = (Pki::new("city CA"), Pki::new("someone else's CA"));
    let (_, _, server_pem, server_key) = city.issue("broker");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = cleanfleet_broker::BrokerTls {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_file: write("broker.pem", &server_pem),
        key_file: write("broker.key", &server_key),
        client_ca_file: Some(write("ca.pem", &city.ca_pem)),
    };
    let (broker, logins) = broker(BrokerConfig {
        tls: Some(tls),
        ..BrokerConfig::default()
    })
    .await;
    let (_ingest, mut ingest_loop) = subscribed_ingest(&broker).await;

    // A certificate naming sw-1: in without a password; it publishes as sw-1 only.
    let sw1 = || {
        let (cert, key, _, _) = city.issue("sw-1");
        Some((cert, key))
    };
    let (client, mut eventloop, code) =
        connack(tls_options(&broker, &city, "sw-1", sw1(), None)).await;
    assert_eq!(code, ConnectReturnCode::Success);
    client
        .publish(
            "cleanfleet/v1/sweeper/sw-1/fixes",
            QoS::AtLeastOnce,
            false,
            "one",
        )
        .await
        .unwrap();
    assert_eq!(acks(&mut eventloop, 1, Duration::from_secs(2)).await.0, 1);
    assert_eq!(
        receive(&mut ingest_loop, 1, Duration::from_secs(2)).await,
        vec![b"one".to_vec()]
    );
    client
        .publish(
            "cleanfleet/v1/sweeper/sw-2/fixes",
            QoS::AtLeastOnce,
            false,
            "forged",
        )
        .await
        .unwrap();
    assert_eq!(acks(&mut eventloop, 1, Duration::from_secs(2)).await.0, 0);

    // The certificate's name and the username must agree, whatever the password.
    let (_, _, code) = connack(tls_options(
        &broker,
        &city,
        "sw-2",
        sw1(),
        Some(("sw-2", SECRET)),
    ))
    .await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    // No certificate: the secret, as on the plain listener.
    let (_, _, code) = connack(tls_options(
        &broker,
        &city,
        "sw-2",
        None,
        Some(("sw-2", SECRET)),
    ))
    .await;
    assert_eq!(code, ConnectReturnCode::Success);
    let (_, _, code) = connack(tls_options(&broker, &city, "sw-2", None, None)).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);

    // A certificate naming ingest (a service) logs nobody in: certificates are for devices.
    let (cert, key, _, _) = city.issue(INGEST);
    let (_, _, code) = connack(tls_options(&broker, &city, INGEST, Some((cert, key)), None)).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);

    // Another CA's certificate does not get through the handshake.
    let (cert, key, _, _) = stranger.issue("sw-1");
    let (_, mut refused) = AsyncClient::new(
        tls_options(&broker, &city, "sw-1", Some((cert, key)), None),
        10,
    );
    assert!(timeout(Duration::from_secs(5), refused.poll())
        .await
        .unwrap()
        .is_err());

    // Revoked: its certificate logs nobody in.
    logins.remove("sw-1");
    let (_, _, code) = connack(tls_options(&broker, &city, "sw-1", sw1(), None)).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
}
