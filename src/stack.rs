use cleanfleet_store::{Maintenance, SqliteConfig, SqliteStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cleanfleet_api::ApiState;
use cleanfleet_ingest::IngestMetrics;
use cleanfleet_model::{Clock, SystemClock};
use cleanfleet_roads::{RoadNetwork, ZoneKind, Zones};
use jiff::SignedDuration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, RoadsConfig};

/// The store of `[store]` / `data_dir`, created if need be.
pub fn open_store(config: &Config) -> anyhow::Result<SqliteStore> {
    let mut sqlite = SqliteConfig::new(config.sqlite_path());
    sqlite.synchronous = config.store.synchronous;
    sqlite.dead_letter_caps = config.store.dead_letters;
    SqliteStore::open(sqlite)
        .with_context(|| format!("cannot open the store {}", config.sqlite_path().display()))
}

/// The username of ingest's service credential unless `[broker] username` says otherwise.
pub const INGEST_USERNAME: &str = "cleanfleet-ingest";

/// Which stages run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub embedded_broker: bool,
    pub ingest: bool,
    pub api: bool,
    /// The coverage stage (`crate::coverage`): passes from the store's fixes.
    pub coverage: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        embedded_broker: true,
        ingest: true,
        api: true,
        coverage: true,
    };
    pub const NONE: Parts = Parts {
        embedded_broker: false,
        ingest: false,
        api: false,
        coverage: false,
    };
}

/// The running stages of one process.
pub struct Stack {
    pub broker_addr: Option<SocketAddr>,
    broker: Option<cleanfleet_broker::BrokerHandle>,
    pub api_addr: Option<SocketAddr>,
    /// Where this process serves `/metrics` and `/readyz`: the API's address, or a stage's
    /// own (`[metrics]`).
    pub metrics_addr: Option<SocketAddr>,
    pub ingest_metrics: Option<IngestMetrics>,
    pub store: Arc<SqliteStore>,
    /// The city's roads (`[roads]`), loaded when the coverage stage or the API runs.
    pub network: Option<Arc<RoadNetwork>>,
    /// Its sections and grid cells.
    pub zones: Option<Arc<Zones>>,
    /// What the API's handlers share, when the API runs here.
    pub api_state: Option<ApiState>,
    ingest: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    coverage: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    api: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    /// Cancelled when a stage ends without being asked to.
    failed: CancellationToken,
}

/// Run a stage; if it ends before `stop` is cancelled (with an error or not), say so on
/// `failed` so that the process shuts down instead of running on without it.
fn spawn_stage<F>(
    name: &'static str,
    stop: &CancellationToken,
    failed: &CancellationToken,
    stage: F,
) -> JoinHandle<anyhow::Result<()>>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (stop, failed) = (stop.clone(), failed.clone());
    tokio::spawn(async move {
        let result = stage.await;
        if !stop.is_cancelled() {
            match &result {
                Err(e) => tracing::error!(stage = name, error = format!("{e:#}"), "stage failed"),
                Ok(()) => tracing::error!(stage = name, "stage ended on its own"),
            }
            failed.cancel();
        }
        result
    })
}

impl Stack {
    /// Start the chosen stages. With an embedded broker, ingest connects to it whatever
    /// `[broker] url` says.
    pub async fn start(config: Config, parts: Parts) -> anyhow::Result<Stack> {
        Self::start_with(config, parts, None).await
    }

    /// [`Stack::start`] on roads already loaded (else loaded from `[roads]` when the coverage
    /// stage or the API runs).
    pub async fn start_with(
        mut config: Config,
        parts: Parts,
        roads: Option<(Arc<RoadNetwork>, Arc<Zones>)>,
    ) -> anyhow::Result<Stack> {
        let store = Arc::new(open_store(&config)?);
        info!(path = %store.path().display(), "store open");
        let registry = prometheus::Registry::new();
        let broker = if parts.embedded_broker {
            // Ingest beside the broker logs in with a secret made for this run.
            let local = parts.ingest.then(|| {
                let service = crate::broker::LocalService::ingest(
                    config.broker.username.as_deref().unwrap_or(INGEST_USERNAME),
                );
                config.broker.username = Some(service.username.clone());
                config.broker.password = Some(service.secret.clone());
                service
            });
            let handle =
                crate::broker::start(&config.embedded_broker, store.clone(), local, &registry)
                    .await?;
            config.broker.url = format!("mqtt://{}", handle.local_addr());
            // Our own broker binds every topic to its login.
            config.broker.binds_logins = true;
            Some(handle)
        } else {
            None
        };
        let broker_addr = broker.as_ref().map(|b| b.local_addr());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let failed = CancellationToken::new();
        if parts.coverage || parts.api {
            config.coverage.check().map_err(anyhow::Error::msg)?;
        }
        let (network, zones) = match roads {
            _ if !(parts.coverage || parts.api) => (None, None),
            Some((network, zones)) => (Some(network), Some(zones)),
            None => {
                let network = load_network(config.roads.file.as_deref())?;
                let zones = Arc::new(load_zones(&config.roads, &network)?);
                (Some(network), Some(zones))
            }
        };

        let coverage = if parts.coverage {
            let metrics = crate::coverage::CoverageMetrics::register(&registry)?;
            let token = CancellationToken::new();
            let task = spawn_stage(
                "coverage",
                &token,
                &failed,
                crate::coverage::run(
                    config.coverage.clone(),
                    network.clone().expect("loaded for coverage"),
                    zones.clone().expect("loaded with the network"),
                    store.clone(),
                    metrics,
                    token.clone(),
                ),
            );
            Some((token, task))
        } else {
            None
        };

        let (ingest, ingest_metrics) = if parts.ingest {
            let metrics = IngestMetrics::register(&registry)?;
            let token = CancellationToken::new();
            let task = spawn_stage(
                "ingest",
                &token,
                &failed,
                run_ingest(
                    config.clone(),
                    store.clone(),
                    metrics.clone(),
                    clock.clone(),
                    token.clone(),
                ),
            );
            (Some((token, task)), Some(metrics))
        } else {
            (None, None)
        };

        let (api, api_addr, api_state) = if parts.api {
            let listener = tokio::net::TcpListener::bind(config.api.listen)
                .await
                .with_context(|| format!("cannot listen on {} for HTTP", config.api.listen))?;
            let addr = listener.local_addr()?;
            let time_zone =
                jiff::tz::TimeZone::get(&config.coverage.time_zone).with_context(|| {
                    format!(
                        "[coverage] time_zone {:?} is not an IANA time zone",
                        config.coverage.time_zone
                    )
                })?;
            config.api.connections.check().map_err(anyhow::Error::msg)?;
            config
                .bins
                .check()
                .map_err(|e| anyhow::anyhow!("[bins]: {e}"))?;
            config
                .inspection
                .check()
                .map_err(|e| anyhow::anyhow!("[inspection]: {e}"))?;
            if let Some(zones) = &zones {
                for plan in &config.coverage.plans {
                    anyhow::ensure!(
                        zones.section(&plan.section).is_some(),
                        "[[coverage.plans]] names section {:?}, which [roads] does not define",
                        plan.section
                    );
                    anyhow::ensure!(
                        plan.passes_per_side.is_finite() && plan.passes_per_side >= 0.0,
                        "[[coverage.plans]] section {:?}: passes_per_side must be 0 or more",
                        plan.section
                    );
                }
            }
            let coverage = network.clone().map(|network| {
                Arc::new(cleanfleet_api::CoverageContext {
                    index: Arc::new(cleanfleet_coverage::SegmentIndex::new(&network)),
                    inspection: config.inspection.clone(),
                    assessment: config.assessment.clone(),
                    bins: config.bins.clone(),
                    network,
                    zones: zones.clone().expect("loaded with the network"),
                    rules: config.coverage.rules.clone(),
                    matcher: config.coverage.matcher.clone(),
                    plans: config.coverage.plans.clone(),
                    time_zone,
                    time_zone_name: config.coverage.time_zone.clone(),
                    rendered: Default::default(),
                })
            });
            let state = ApiState {
                store: store.clone(),
                provenance: store.clone(),
                credentials: store.clone(),
                mqtt_logins: Arc::new(crate::broker::StoreAuthenticator::new(store.clone(), None)),
                clock,
                registry: registry.clone(),
                ingest: ingest_metrics.clone(),
                coverage,
            };
            let router = cleanfleet_api::router(state.clone(), &config.api.auth)?;
            let token = CancellationToken::new();
            let serve_token = token.clone();
            let (limits, registry) = (config.api.connections, state.registry.clone());
            let task = spawn_stage("api", &token, &failed, async move {
                cleanfleet_api::serve(listener, router, limits, &registry, serve_token)
                    .await
                    .context("HTTP server failed")
            });
            info!(%addr, "HTTP API listening");
            (Some((token, task)), Some(addr), Some(state))
        } else {
            (None, None, None)
        };
        // A stage without the API serves its own probes.
        let probe_listen = if parts.api {
            None
        } else if parts.ingest {
            Some(config.metrics.ingest_listen)
        } else if parts.coverage {
            Some(config.metrics.coverage_listen)
        } else if parts.embedded_broker {
            Some(config.metrics.broker_listen)
        } else {
            None
        };
        let (api, metrics_addr) = match probe_listen {
            None => (api, api_addr),
            Some(listen) => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {listen} for /metrics ([metrics])")
                    })?;
                let addr = listener.local_addr()?;
                let router = cleanfleet_api::probe_routes(cleanfleet_api::Probes {
                    store: store.clone(),
                    registry: registry.clone(),
                    ingest: ingest_metrics.clone(),
                });
                let token = CancellationToken::new();
                let serve_token = token.clone();
                let limits = config.api.connections;
                let task = spawn_stage("probes", &token, &failed, async move {
                    cleanfleet_api::serve(listener, router, limits, &registry, serve_token)
                        .await
                        .context("the /metrics server failed")
                });
                info!(%addr, "serving /metrics and /readyz");
                (Some((token, task)), Some(addr))
            }
        };

        Ok(Stack {
            broker_addr,
            broker,
            api_addr,
            metrics_addr,
            ingest_metrics,
            store,
            network,
            zones,
            api_state,
            ingest,
            coverage,
            api,
            failed,
        })
    }

    /// Wait until ingest (if it runs here) has subscribed: a broker drops what devices publish
    /// before a subscription exists, so nothing should publish before this.
    pub async fn ingest_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let Some(metrics) = &self.ingest_metrics else {
            return Ok(());
        };
        let subscribed = async {
            while metrics.broker_connected.get() != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {
                anyhow::bail!("ingest did not subscribe at the broker within {timeout:?}")
            }
            _ = self.failed() => anyhow::bail!("ingest failed before subscribing"),
            _ = subscribed => Ok(()),
        }
    }

    /// Resolves when a stage has failed or ended on its own: time to `stop`.
    pub async fn failed(&self) {
        self.failed.cancelled().await
    }

    /// Ordered shutdown: stop intake, drain, commit and ack, disconnect; flush and close the
    /// store; then stop HTTP (waiting at most 10 s for open requests). Every step runs even
    /// when an earlier one failed; the first error is returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        if let Some(broker) = &self.broker {
            // The embedded broker's queues die with the process: take no more, and let
            // ingest take what the broker has acknowledged before it stops.
            broker.close_intake();
            if self.ingest.is_some() {
                let left = broker.drained(Duration::from_secs(30)).await;
                if left > 0 {
                    warn!(
                        bytes = left,
                        "ingest did not take everything the broker held within 30 s"
                    );
                }
            }
        }
        for (name, stage) in [("ingest", self.ingest), ("coverage", self.coverage)] {
            if let Some((token, task)) = stage {
                token.cancel();
                if let Err(e) = task
                    .await
                    .context(format!("{name} task panicked"))
                    .and_then(|r| r)
                {
                    errors.push(e);
                }
            }
        }
        match self.store.close().await {
            Ok(()) => info!("store flushed and closed"),
            Err(e) => errors.push(anyhow::Error::new(e).context("closing the store")),
        }
        if let Some((token, task)) = self.api {
            token.cancel();
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(joined) => {
                    if let Err(e) = joined.context("HTTP task panicked").and_then(|r| r) {
                        errors.push(e);
                    }
                }
                Err(_) => warn!("HTTP requests still open after 10 s; stopping anyway"),
            }
        }
        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(first) => {
                for later in errors {
                    tracing::error!(error = format!("{later:#}"), "also failed during shutdown");
                }
                Err(first)
            }
        }
    }
}

async fn run_ingest(
    config: Config,
    store: Arc<SqliteStore>,
    metrics: IngestMetrics,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let retention = tokio::spawn(retention_loop(
        store.clone(),
        config.store.retention_days,
        clock.clone(),
        shutdown.clone(),
    ));
    let compaction = tokio::spawn(compaction_loop(
        store.clone(),
        metrics.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    let summary = cleanfleet_ingest::run(
        config.ingest,
        config.broker,
        store,
        metrics,
        clock,
        shutdown,
    )
    .await;
    retention.abort();
    compaction.abort();
    let summary = summary?;
    info!(
        committed = summary.messages_committed,
        acked = summary.messages_acked,
        "ingest stopped"
    );
    Ok(())
}

/// Device-hours compacted in one transaction: about 60,000 fixes, so that ingest's commits
/// wait for it briefly.
const COMPACT_HOURS_PER_COMMIT: u32 = 16;

/// Compacts settled fixes (`Store::compact`) every minute, until none is left.
async fn compaction_loop(
    store: Arc<SqliteStore>,
    metrics: IngestMetrics,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        while !shutdown.is_cancelled() {
            match store.compact(clock.now(), COMPACT_HOURS_PER_COMMIT).await {
                Ok(0) => break,
                Ok(fixes) => metrics.fixes_compacted.inc_by(fixes),
                Err(e) => {
                    metrics.store_errors.inc();
                    warn!(error = %e, "compacting fixes failed");
                    break;
                }
            }
        }
    }
}

/// Delete device data older than the retention period, hourly.
async fn retention_loop(
    store: Arc<SqliteStore>,
    retention_days: u32,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    if retention_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = clock.now() - SignedDuration::from_hours(24 * i64::from(retention_days));
        match store.prune(cutoff).await {
            Ok(0) => {}
            Ok(rows) => info!(rows, %cutoff, "retention: deleted old device data"),
            Err(e) => warn!(error = %e, "retention run failed"),
        }
    }
}

/// The sections and grid cells of `[roads]`; the built-in demo town without any gets its
/// four sections of two contractors and sixteen grid cells.
pub fn load_zones(roads: &RoadsConfig, network: &RoadNetwork) -> anyhow::Result<Zones> {
    let (mut sections, mut grids) = (Vec::new(), Vec::new());
    if let Some(path) = &roads.zones_geojson {
        for (kind, zone) in Zones::read_geojson(path)? {
            match kind {
                ZoneKind::Section => sections.push(zone),
                ZoneKind::Grid => grids.push(zone),
            }
        }
    }
    sections.extend(roads.sections.iter().cloned());
    grids.extend(roads.grids.iter().cloned());
    if roads.file.is_none() && sections.is_empty() && grids.is_empty() {
        (sections, grids) = Zones::demo_configs(network);
    }
    let zones = Zones::new(network, &sections, &grids)?;
    info!(
        sections = zones.sections().len(),
        grids = zones.grids().len(),
        "sections and grid cells"
    );
    Ok(zones)
}

pub fn load_network(roads: Option<&Path>) -> anyhow::Result<Arc<RoadNetwork>> {
    let network = match roads {
        Some(path) => RoadNetwork::from_file(path, true)
            .with_context(|| format!("cannot load roads from {}", path.display()))?,
        None => RoadNetwork::demo(),
    };
    info!(
        segments = network.segments().len(),
        length_km = network.total_length_m() / 1000.0,
        "road network loaded"
    );
    Ok(Arc::new(network))
}

/// Run the simulated fleet against `[broker] url` until `shutdown`, its cleaning vehicles
/// working the sections of `[roads]`.
pub async fn run_sim(
    config: Config,
    network: Arc<RoadNetwork>,
    shutdown: CancellationToken,
) -> anyhow::Result<cleanfleet_sim::SimReport> {
    let addr = config.broker.address()?;
    let zones = load_zones(&config.roads, &network)?;
    let mut sim = config.sim;
    sim.broker_host = addr.host;
    sim.broker_port = addr.port;
    let tls = config.broker.tls()?;
    let report = cleanfleet_sim::run(sim, network, Some(&zones), tls, shutdown).await?;
    info!(?report, "simulator stopped");
    Ok(report)
}

/// Many devices at a fixed rate against `[broker] url` until done or `shutdown`.
pub async fn run_load(
    config: &Config,
    mut load: cleanfleet_sim::LoadConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<cleanfleet_sim::LoadReport> {
    let addr = config.broker.address()?;
    load.broker_host = addr.host;
    load.broker_port = addr.port;
    Ok(cleanfleet_sim::run_load(load, shutdown).await?)
}

/// With authentication on and no tokens configured, the demo makes one per role (and per
/// contractor of its sections) for this run and returns them to print; none otherwise.
fn demo_tokens(
    config: &mut Config,
    contractors: &std::collections::BTreeSet<String>,
) -> Vec<(String, String)> {
    use cleanfleet_api::{token_sha256, Role, TokenConfig};
    if !config.api.auth.enabled || !config.api.auth.tokens.is_empty() {
        return Vec::new();
    }
    let mut made = Vec::new();
    let mut roles: Vec<(String, Role, Option<&str>)> = vec![
        ("admin".into(), Role::Admin, None),
        ("dispatcher".into(), Role::Dispatcher, None),
        ("inspector".into(), Role::Inspector, None),
    ];
    for c in contractors {
        roles.push((
            format!("contractor {c}"),
            Role::Contractor,
            Some(c.as_str()),
        ));
    }
    for (name, role, contractor) in roles {
        let token = format!("{:032x}", rand::random::<u128>());
        config.api.auth.tokens.push(TokenConfig {
            name: name.clone(),
            role,
            contractor: contractor.map(str::to_owned),
            device: None,
            sha256: token_sha256(&token),
        });
        made.push((name, token));
    }
    made
}

/// The demo's first contractor report comes this long after the fleet starts (its backfill
/// replayed and matched by then on an ordinary machine), the next ones at this interval.
const FIRST_REPORT: Duration = Duration::from_secs(30);
const REPORT_EVERY: Duration = Duration::from_secs(300);

/// Logs each contractor's brief (today's coverage and inspections, the month's score and
/// pay) now and then, until `stop`.
async fn report_contractors(state: ApiState, contractors: Vec<String>, stop: CancellationToken) {
    let mut wait = FIRST_REPORT;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        for contractor in &contractors {
            match cleanfleet_api::contractor_brief(&state, contractor).await {
                Ok(brief) => info!("contractor report: {brief}"),
                Err(e) => warn!(contractor, error = %e, "no contractor report"),
            }
        }
        wait = REPORT_EVERY;
    }
}

/// Everything in one process: embedded broker, ingest, store, API and a simulated fleet.
/// Runs until `shutdown`, or until a stage or the fleet fails; then stops in order.
pub async fn demo(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let network = load_network(config.roads.file.as_deref())?;
    let zones = Arc::new(load_zones(&config.roads, &network)?);
    let contractors: std::collections::BTreeSet<String> = zones
        .sections()
        .iter()
        .filter_map(|z| z.contractor.clone())
        .collect();
    let tokens = demo_tokens(&mut config, &contractors);
    let stack = Stack::start_with(config.clone(), Parts::ALL, Some((network, zones))).await?;
    let network = stack.network.clone().expect("the demo loads the roads");
    if let Err(e) = stack.ingest_ready(Duration::from_secs(30)).await {
        stack.stop().await?;
        return Err(e);
    }
    let broker = stack.broker_addr.expect("demo runs the embedded broker");
    let api = stack.api_addr.expect("demo runs the API");
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get(&config.coverage.time_zone)?)
        .strftime("%Y-%m")
        .to_string();
    let mut sim_config = config;
    sim_config.broker.url = format!("mqtt://{broker}");
    // The demo owns its fleet: each device gets a credential (a new secret every run).
    let fleet = sim_config
        .sim
        .fleet
        .devices()
        .into_iter()
        .map(|(kind, id)| (cleanfleet_identity::Role::Device(kind), id));
    match cleanfleet_store::credentials::provision(
        stack.store.as_ref(),
        fleet,
        jiff::Timestamp::now(),
    )
    .await
    {
        Ok(secrets) => sim_config.sim.secrets = secrets,
        Err(e) => {
            stack.stop().await?;
            return Err(
                anyhow::Error::from(e).context("cannot issue the simulated fleet's credentials")
            );
        }
    }
    let sim_stop = CancellationToken::new();
    let mut sim = tokio::spawn(run_sim(sim_config, network, sim_stop.clone()));
    let reports = tokio::spawn(report_contractors(
        stack.api_state.clone().expect("demo runs the API"),
        contractors.into_iter().collect(),
        sim_stop.clone(),
    ));
    info!(
        "cleanfleet demo running. Set T to a token below, then try:\n  \
         alias api='curl -sH \"Authorization: Bearer $T\"'\n  \
         api http://{api}/api/v1/vehicles\n  \
         api http://{api}/api/v1/bins\n  \
         api http://{api}/api/v1/coverage            (today's covered, mechanised, deep-cleaned shares)\n  \
         api http://{api}/api/v1/coverage/segments   (GeoJSON map of the streets' status)\n  \
         api http://{api}/api/v1/passes?vehicle=sw-01\n  \
         api http://{api}/api/v1/inspections         (以克论净: road results, last cleaning, litter)\n  \
         api 'http://{api}/api/v1/assessment?month={month}'   (a contractor's token: its score and pay)\n  \
         api http://{api}/api/v1/ingest/stats\n  \
         api http://{api}/api/v1/dead-letters\n  \
         curl http://{api}/metrics\n  \
         OpenAPI: http://{api}/api/v1/openapi.json\n  \
         MQTT at {host}:{port}: every device logs in as itself; a new one needs a credential,\n  \
           cleanfleet devices add --role sweeper sw-99   (prints sw-99:SECRET), then\n  \
           mosquitto_pub -h {host} -p {port} -i sw-99 -u sw-99 -P SECRET -q 1 \\\n  \
             -t cleanfleet/v1/sweeper/sw-99/status -m '{{\"state\":\"online\"}}'\n\
         Ctrl-C stops it without losing anything.",

        host = broker.ip(),
        port = broker.port(),
    );
    for (role, token) in &tokens {
        info!("demo token for {role}: {token}   (curl -H 'Authorization: Bearer {token}' ...)");
    }
    let ended_early = tokio::select! {
        _ = shutdown.cancelled() => None,
        _ = stack.failed() => None,
        ended = &mut sim => Some(ended),
    };
    info!("shutting down: stopping the simulated fleet");
    sim_stop.cancel();
    let _ = reports.await;
    let sim_result = match ended_early {
        Some(ended) => ended,
        None => sim.await,
    }
    .context("simulator task panicked")
    .and_then(|r| r);
    if let (Ok(report), Some(metrics)) = (&sim_result, &stack.ingest_metrics) {
        // The embedded broker's queue dies with the process: let ingest take everything the
        // fleet handed it before stopping intake.
        let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
            while metrics.messages_committed() < report.messages_acked {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if caught_up.is_err() {
            warn!(
                committed = metrics.messages_committed(),
                published = report.messages_acked,
                "ingest did not catch up with the fleet within 30 s"
            );
        }
    }
    let stopped = stack.stop().await;
    sim_result?;
    stopped?;
    info!("demo stopped cleanly");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
