//! Shared helpers for the integration tests: a real in-process stack on port 0, a real MQTT
//! publisher, a real HTTP client, and the rule for tests that need an external server.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cleanfleet::config::Config;
use cleanfleet::{Parts, Stack};
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
    ];
    config
}

/// Tokens of [`test_config`], one per role (and one per demo contractor).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const DISPATCHER_TOKEN: &str = "dispatcher-token-for-tests";
pub const INSPECTOR_TOKEN: &str = "inspector-token-for-tests";
pub const ACME_TOKEN: &str = "acme-cleaning-token-for-tests";
pub const GREEN_TOKEN: &str = "green-city-token-for-tests";

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

/// A device-side MQTT client that publishes at QoS 1 and waits for the broker's PubAcks.
pub struct Publisher {
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Publisher {
    pub async fn connect(broker: SocketAddr, client_id: &str) -> Publisher {
        let mut options = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("publisher cannot connect to {broker}: {e}"),
            }
        }
        Publisher { client, eventloop }
    }

    /// Publish every message at QoS 1 and return once the broker has acked all of them.
    pub async fn publish_all(&mut self, messages: &[(String, Vec<u8>)]) {
        let mut pending = 0usize;
        let mut next = 0usize;
        while next < messages.len() || pending > 0 {
            // Keep at most 50 in flight so the request channel never blocks the loop.
            while next < messages.len() && pending < 50 {
                let (topic, payload) = &messages[next];
                self.client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload.clone())
                    .expect("publish queue full");
                next += 1;
                pending += 1;
            }
            match tokio::time::timeout(Duration::from_secs(20), self.eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => pending -= 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("publisher lost the broker: {e}"),
                Err(_) => panic!("no PubAck within 20 s ({pending} pending)"),
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_all(&[(topic.to_owned(), payload.into())])
            .await;
    }

    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
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
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> KillOnDrop {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .arg(stage)
        .env("CLEANFLEET__BROKER__URL", format!("mqtt://{broker}"))
        .env("CLEANFLEET__DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("cannot start the cleanfleet binary");
    KillOnDrop(child)
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
        let mosquitto = external_program("mosquitto")?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\npersistence false\nmax_queued_messages 100000\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n{extra}\n"
            ),
        )
        .unwrap();
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
