//! Shared helpers for the integration tests: a real in-process stack on port 0, a real MQTT
//! publisher, a real HTTP client, and the rule for tests that need an external server.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cleanfleet::config::Config;
use cleanfleet::{Parts, Stack};
use cleanfleet_store::SqliteStore;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};

/// A config for tests: every port 0, everything under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.data_dir.0 = dir.to_path_buf();
    config.embedded_broker.listen = "127.0.0.1:0".parse().unwrap();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.store.synchronous = cleanfleet_store::Synchronous::Normal;
    config.coverage.poll_interval_s = 0.2;
    let token =
        |name: &str, role, contractor: Option<&str>, token: &str| cleanfleet_api::TokenConfig {
            name: name.into(),
            role,
            contractor: contractor.map(str::to_owned),
            device: None,
            sha256: cleanfleet_api::token_sha256(token),
        };
    use cleanfleet_api::Role;
    config.api.auth.tokens = vec![
        token("admin", Role::Admin, None, ADMIN_TOKEN),
        token("dispatcher", Role::Dispatcher, None, DISPATCHER_TOKEN),
        token("inspector", Role::Inspector, None, INSPECTOR_TOKEN),
        token("acme", Role::Contractor, Some("acme-cleaning"), ACME_TOKEN),
        token("green", Role::Contractor, Some("green-city"), GREEN_TOKEN),
        token("emqx", Role::Broker, None, BROKER_TOKEN),
    ];
    config
}

/// Tokens of [`test_config`], one per role (and one per demo contractor).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const DISPATCHER_TOKEN: &str = "dispatcher-token-for-tests";
pub const INSPECTOR_TOKEN: &str = "inspector-token-for-tests";
pub const ACME_TOKEN: &str = "acme-cleaning-token-for-tests";
pub const GREEN_TOKEN: &str = "green-city-token-for-tests";
pub const BROKER_TOKEN: &str = "external-broker-token-for-tests";

/// The whole stack, with ingest subscribed: ready for devices.
pub async fn start_stack(dir: &Path) -> Stack {
    let stack = Stack::start(test_config(dir), Parts::ALL).await.unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();
    stack
}

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How test devices log in.
#[derive(Clone)]
pub enum Logins {
    /// Each device with a credential issued in this store (the embedded broker's).
    Store(Arc<SqliteStore>),
    /// Without a login, to a broker that allows anonymous access.
    Anonymous,
}

/// Device-side MQTT clients: each message goes out on the connection of the device its
/// topic names (`cleanfleet/v1/{kind}/{id}/...`), which logs in as that device, at QoS 1;
/// calls return once the broker acked every message.
pub struct Publisher {
    broker: SocketAddr,
    logins: Logins,
    devices: HashMap<String, (AsyncClient, EventLoop)>,
}

impl Publisher {
    /// For the embedded broker of `stack`, logging in with credentials of its store.
    pub fn for_stack(stack: &Stack) -> Publisher {
        Publisher::new(
            stack
                .broker_addr
                .expect("the stack runs the embedded broker"),
            Logins::Store(stack.store.clone()),
        )
    }

    pub fn new(broker: SocketAddr, logins: Logins) -> Publisher {
        Publisher {
            broker,
            logins,
            devices: HashMap::new(),
        }
    }

    async fn device(&mut self, topic: &str) -> &mut (AsyncClient, EventLoop) {
        let mut levels = topic.split('/').skip(2);
        let (kind, id) = (
            levels.next().unwrap_or(""),
            levels.next().unwrap_or("anyone"),
        );
        if !self.devices.contains_key(id) {
            let link = connect_device(self.broker, &self.logins, kind, id).await;
            self.devices.insert(id.to_owned(), link);
        }
        self.devices.get_mut(id).expect("just connected")
    }

    /// Publish every message at QoS 1, each as its topic's device, in order; return once the
    /// broker has acked all of them.
    pub async fn publish_all(&mut self, messages: &[(String, Vec<u8>)]) {
        // Runs of one device's messages go out together, at most 50 in flight.
        for run in messages.chunk_by(|a, b| device_of(&a.0) == device_of(&b.0)) {
            let (client, eventloop) = self.device(&run[0].0).await;
            let mut pending = 0usize;
            let mut next = 0usize;
            while next < run.len() || pending > 0 {
                while next < run.len() && pending < 50 {
                    let (topic, payload) = &run[next];
                    client
                        .try_publish(topic, QoS::AtLeastOnce, false, payload.clone())
                        .expect("publish queue full");
                    next += 1;
                    pending += 1;
                }
                match tokio::time::timeout(Duration::from_secs(20), eventloop.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => pending -= 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("publisher lost the broker: {e}"),
                    Err(_) => panic!("no PubAck within 20 s ({pending} pending)"),
                }
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_all(&[(topic.to_owned(), payload.into())])
            .await;
    }

    pub async fn disconnect(self) {
        for (_, (client, mut eventloop)) in self.devices {
            client.disconnect().await.unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
    }
}

fn device_of(topic: &str) -> Option<&str> {
    topic.split('/').nth(3)
}

/// A device's own connection (client id its id), logged in as it.
pub async fn connect_device(
    broker: SocketAddr,
    logins: &Logins,
    kind: &str,
    id: &str,
) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    if let Logins::Store(store) = logins {
        let kind: cleanfleet_model::DeviceKind = kind
            .parse()
            .unwrap_or_else(|()| panic!("{kind:?} is no device kind to issue a credential for"));
        let role = cleanfleet_identity::Role::Device(kind);
        let secrets = cleanfleet_store::credentials::provision(
            store.as_ref(),
            [(role, id.to_owned())],
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        options.set_credentials(id, secrets[id].clone());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("device {id} cannot connect to {broker}: {e}"),
        }
    }
    (client, eventloop)
}

/// The embedded broker alone in the test process, logging in against `store`'s credentials
/// (ingest processes started by the test log in with [`ingest_login`]).
pub async fn start_broker(store: Arc<SqliteStore>) -> cleanfleet_broker::BrokerHandle {
    let config = cleanfleet_broker::BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    cleanfleet::broker::start(&config, store, None, &prometheus::Registry::new())
        .await
        .unwrap()
}

/// Credentials for the simulated fleet of `config`, issued (or renewed) in `store`.
pub async fn issue_fleet_secrets(store: &SqliteStore, config: &mut Config) {
    let fleet = config
        .sim
        .fleet
        .devices()
        .into_iter()
        .map(|(kind, id)| (cleanfleet_identity::Role::Device(kind), id));
    config.sim.secrets =
        cleanfleet_store::credentials::provision(store, fleet, jiff::Timestamp::now())
            .await
            .unwrap();
}

/// Environment that logs an ingest process in: a service credential issued (or renewed) in
/// `store` for this run.
pub async fn ingest_login(store: &SqliteStore) -> Vec<(&'static str, String)> {
    let username = cleanfleet::INGEST_USERNAME;
    let secrets = cleanfleet_store::credentials::provision(
        store,
        [(cleanfleet_identity::Role::Ingest, username.to_owned())],
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    vec![
        ("CLEANFLEET__BROKER__USERNAME", username.to_owned()),
        ("CLEANFLEET__BROKER__PASSWORD", secrets[username].clone()),
    ]
}

/// `{"fixes":[...]}` for `device`, one fix per second from `first` on, `count` fixes.
pub fn fix_batch(device: &str, first: u64, count: u64) -> String {
    // Twelve hours back: room for 43,200 fixes before one is "in the future", and all of
    // them inside the track endpoint's default 24 h window.
    let base = jiff::Timestamp::now().as_second() - 43_200;
    let fixes: Vec<String> = (first..first + count)
        .map(|seq| {
            let time = jiff::Timestamp::from_second(base + seq as i64).unwrap();
            format!(
                r#"{{"time":"{time}","seq":{seq},"lat":{lat},"lon":120.86,"speed_kmh":7.5,"heading_deg":0,"hdop":0.8,"satellites":12,"work":{{"brush":true,"vacuum":true}}}}"#,
                lat = 32.0 + seq as f64 * 1e-5
            )
        })
        .collect();
    format!(
        r#"{{"device_id":"{device}","fixes":[{}]}}"#,
        fixes.join(",")
    )
}

pub fn fixes_topic(device: &str) -> String {
    format!("cleanfleet/v1/sweeper/{device}/fixes")
}

/// GET as the admin.
pub async fn get_json(api: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    get_json_as(api, path, Some(ADMIN_TOKEN)).await
}

/// GET with a bearer token, or none.
pub async fn get_json_as(
    api: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().get(format!("http://{api}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// POST as the admin.
pub async fn post_json(
    api: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    post_json_as(api, path, body, ADMIN_TOKEN).await
}

pub async fn post_json_as(
    api: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    token: &str,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{api}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

pub async fn get_text(api: SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{api}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Tests about an external server (mosquitto, InfluxDB) run when it is installed; otherwise
/// they say SKIPPED loudly, or fail when CLEANFLEET_REQUIRE_EXTERNAL=1 (as CI sets).
pub fn external_program(name: &str) -> Option<std::path::PathBuf> {
    // Debian puts mosquitto in /usr/sbin, which is not on every user's PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CLEANFLEET_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{name} is required (CLEANFLEET_REQUIRE_EXTERNAL=1) but not installed");
        }
        eprintln!("\n*** SKIPPED: {name} is not installed; this test needs it. ***\n");
    }
    found
}

/// The real binary running `stage` (`ingest`, `coverage`, ...) against `broker`, its store
/// in `data_dir`, with `env` overrides and warnings to `stderr`; killed when dropped.
pub fn spawn_stage(
    stage: &str,
    broker: SocketAddr,
    data_dir: &Path,
    env: &[(&str, String)],
    stderr: std::process::Stdio,
) -> KillOnDrop {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .arg(stage)
        .env("CLEANFLEET__BROKER__URL", format!("mqtt://{broker}"))
        .env("CLEANFLEET__DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        // Tests run side by side: no fixed probe ports unless a test asks for one.
        .env("CLEANFLEET__METRICS__BROKER_LISTEN", "127.0.0.1:0")
        .env("CLEANFLEET__METRICS__INGEST_LISTEN", "127.0.0.1:0")
        .env("CLEANFLEET__METRICS__COVERAGE_LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("cannot start the cleanfleet binary");
    KillOnDrop(child)
}

/// A loopback address with a port that was free a moment ago.
pub fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real mosquitto process on a free port, killed when dropped.
pub struct Mosquitto {
    pub addr: SocketAddr,
    _process: KillOnDrop,
}

impl Mosquitto {
    /// Starts mosquitto with `extra` config lines (e.g. `allow_anonymous true`), files in
    /// `dir`; `None` (SKIPPED) when it is not installed.
    pub async fn start(dir: &Path, extra: &str) -> Option<Mosquitto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Mosquitto::start_on(dir, port, extra).await
    }

    /// [`Mosquitto::start`] on a given port (to start it again where it was).
    pub async fn start_on(dir: &Path, port: u16, extra: &str) -> Option<Mosquitto> {
        let conf = format!(
            "listener {port} 127.0.0.1\npersistence false\nmax_queued_messages 100000\n\
             log_dest stderr\nlog_type error\nlog_type warning\n{extra}\n"
        );
        Mosquitto::run(dir, port, &conf).await
    }

    /// Mosquitto on the shipped `deploy/mosquitto.conf`, with its listener on a free
    /// loopback port and its files (password, ACL, persistence) in `dir`.
    pub async fn start_shipped(dir: &Path) -> Option<Mosquitto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mosquitto.conf"),
        )
        .unwrap();
        let mut conf = shipped.clone();
        for (line, here) in [
            (
                "listener 1883".to_owned(),
                format!("listener {port} 127.0.0.1"),
            ),
            (
                "password_file /etc/mosquitto/cleanfleet.passwd".to_owned(),
                format!("password_file {}", dir.join("cleanfleet.passwd").display()),
            ),
            (
                "acl_file /etc/mosquitto/cleanfleet.acl".to_owned(),
                format!("acl_file {}", dir.join("cleanfleet.acl").display()),
            ),
            (
                "persistence_location /var/lib/mosquitto/".to_owned(),
                format!("persistence_location {}/", dir.display()),
            ),
        ] {
            assert!(
                shipped.contains(&line),
                "deploy/mosquitto.conf no longer has {line:?}"
            );
            conf = conf.replace(&line, &here);
        }
        conf.push_str("\nlog_dest stderr\nlog_type error\nlog_type warning\n");
        Mosquitto::run(dir, port, &conf).await
    }

    async fn run(dir: &Path, port: u16, conf_text: &str) -> Option<Mosquitto> {
        let mosquitto = external_program("mosquitto")?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, conf_text).unwrap();
        let process = KillOnDrop(
            std::process::Command::new(mosquitto)
                .arg("-c")
                .arg(&conf)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually("mosquitto to listen", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(drop)
        })
        .await;
        Some(Mosquitto {
            addr,
            _process: process,
        })
    }
}

/// `cleanfleet ARGS` (the real binary) with its store in `data_dir`; its standard output.
pub fn cleanfleet_cli(data_dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .args(args)
        .env("CLEANFLEET__DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "cleanfleet {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}
