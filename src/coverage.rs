//! The coverage stage: keeps the store's passes up to date with its fixes. It takes stale
//! chunks (one device, one hour; `cleanfleet_store::COVERAGE_CHUNK_MS`), matches their fixes
//! with the context around them, derives the passes and cuts them to the chunk's hour
//! (`cleanfleet_coverage::match_window`), and replaces the chunk's passes. A chunk's passes depend only on the fixes stored for it and its
//! context, so arrival order and duplicates do not change them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cleanfleet_coverage::{
    in_time_order, match_track, match_window, parse_track, CoverageRules, FixState, MatchConfig,
    Matcher, Observation, Pass, SectionPlan, TrackError, TrackFormat, WorkType,
};
use cleanfleet_model::{DeviceId, Fix};
use cleanfleet_reports::{day_bounds, segment_day, vehicle_day_rows};
use cleanfleet_roads::{RoadNetwork, Zones};
use cleanfleet_store::{
    CoverageChunk, PassRecord, StaleSegmentDay, Store, StoreError, COVERAGE_CONTEXT_MS,
};
use futures::StreamExt;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry,
};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// `[coverage]`: how coverage is computed and judged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoverageConfig {
    /// The city's IANA time zone: a "day" is a local day there. Default `Asia/Shanghai`.
    pub time_zone: String,
    /// Seconds between looks for chunks with new fixes stored by another process (a
    /// separate ingest); fixes stored in this one wake the stage at once. Default 5.
    pub poll_interval_s: f64,
    /// Matcher threads, each with its own matcher; 0: one per core. Default 0.
    pub workers: usize,
    pub matcher: MatchConfig,
    pub rules: CoverageRules,
    /// Each section's planned passes per day (`[[coverage.plans]]`).
    pub plans: Vec<SectionPlan>,
}

impl Default for CoverageConfig {
    fn default() -> Self {
        CoverageConfig {
            time_zone: "Asia/Shanghai".into(),
            poll_interval_s: 5.0,
            workers: 0,
            matcher: MatchConfig::default(),
            rules: CoverageRules::default(),
            plans: Vec::new(),
        }
    }
}

impl CoverageConfig {
    /// Checks the matcher's and the rules' numbers, naming the first bad key.
    pub fn check(&self) -> Result<(), String> {
        self.matcher
            .check()
            .map_err(|e| format!("[coverage.matcher] {e}"))?;
        self.rules
            .check()
            .map_err(|e| format!("[coverage.rules] {e}"))
    }
}

/// Most fixes one chunk with its context can hold: 80 minutes at 10 Hz.
const MAX_CHUNK_FIXES: u32 = 48_000;
/// Chunks taken from the store per look.
const CHUNKS_PER_LOOK: u32 = 64;
/// Stale segments' days taken from the store per look.
const SEGMENT_DAYS_PER_LOOK: u32 = 4096;
/// How long chunks are matched, while any are stale, before the segments' and vehicles' days
/// their passes changed are stored.
const DAY_ROWS_AFTER: Duration = Duration::from_secs(5);
/// Stale vehicles' days taken from the store per look (each reads that vehicle's day).
const VEHICLE_DAYS_PER_LOOK: u32 = 128;

/// An identity for a road network: coverage computed on another network is discarded.
pub fn network_id(network: &RoadNetwork) -> String {
    let mut bytes = Vec::with_capacity(network.segments().len() * 40);
    for s in network.segments() {
        bytes.extend_from_slice(&s.from_node.to_le_bytes());
        bytes.extend_from_slice(&s.to_node.to_le_bytes());
        bytes.push(u8::from(s.oneway));
        bytes.extend_from_slice(&s.length_m.to_bits().to_le_bytes());
        bytes.extend_from_slice(&s.width_m.to_bits().to_le_bytes());
        bytes.extend_from_slice(s.class.to_string().as_bytes());
    }
    format!(
        "{}-segments-{:016x}",
        network.segments().len(),
        xxhash_rust::xxh3::xxh3_64(&bytes)
    )
}

/// An identity for the sections vehicles' days are cut by: other sections cut them again.
pub fn sections_id(zones: &Zones) -> String {
    let mut bytes = Vec::new();
    for z in zones.sections() {
        bytes.extend_from_slice(z.id.as_bytes());
        bytes.push(0);
        for s in &z.segments {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        bytes.push(0);
    }
    format!(
        "{}-sections-{:016x}",
        zones.sections().len(),
        xxhash_rust::xxh3::xxh3_64(&bytes)
    )
}

type Job = (CoverageChunk, Vec<Fix>, oneshot::Sender<Vec<PassRecord>>);

/// The coverage stage's Prometheus metrics.
#[derive(Clone)]
pub struct CoverageMetrics {
    pub chunks: IntCounter,
    pub fixes: IntCounter,
    pub passes: IntCounter,
    pub chunk_duration: Histogram,
    pub backlog: IntGauge,
    pub segment_days: IntCounter,
    pub stale_segment_days: IntGauge,
    pub vehicle_days: IntCounter,
    pub stale_vehicle_days: IntGauge,
    pub lag: Histogram,
    pub waiting: Gauge,
    pub store_retries: IntCounter,
}

impl CoverageMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = CoverageMetrics {
            chunks: IntCounter::new(
                "cleanfleet_coverage_chunks_total",
                "Chunks (one device, one hour) whose passes were computed",
            )?,
            fixes: IntCounter::new(
                "cleanfleet_coverage_fixes_total",
                "Fixes matched to the road network, context included",
            )?,
            passes: IntCounter::new("cleanfleet_coverage_passes_total", "Passes written")?,
            chunk_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "cleanfleet_coverage_chunk_duration_seconds",
                    "Time to load, match and store one chunk",
                )
                .buckets(exponential_buckets(0.001, 2.0, 14)?),
            )?,
            backlog: IntGauge::new(
                "cleanfleet_coverage_backlog_chunks",
                "Chunks whose fixes changed since their passes were computed",
            )?,
            segment_days: IntCounter::new(
                "cleanfleet_coverage_segment_days_total",
                "Segments' days whose status was computed and stored",
            )?,
            stale_segment_days: IntGauge::new(
                "cleanfleet_coverage_stale_segment_days",
                "Segments' days whose passes changed since their status was stored",
            )?,
            vehicle_days: IntCounter::new(
                "cleanfleet_coverage_vehicle_days_total",
                "Vehicles' days whose rows were computed and stored",
            )?,
            stale_vehicle_days: IntGauge::new(
                "cleanfleet_coverage_stale_vehicle_days",
                "Vehicles' days whose passes changed since their rows were stored",
            )?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "cleanfleet_coverage_lag_seconds",
                    "Seconds from fixes stored to day reports that include them: their chunk's \
                     passes and the segments' and vehicles' days from those passes stored",
                )
                .buckets(vec![
                    0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0,
                    300.0, 600.0, 1800.0, 3600.0,
                ]),
            )?,
            waiting: Gauge::new(
                "cleanfleet_coverage_waiting_seconds",
                "Age of the oldest stored fixes not yet in passes; 0 when none wait",
            )?,
            store_retries: IntCounter::new(
                "cleanfleet_coverage_store_retries_total",
                "Store calls tried again because the store was busy",
            )?,
        };
        registry.register(Box::new(m.chunks.clone()))?;
        registry.register(Box::new(m.fixes.clone()))?;
        registry.register(Box::new(m.passes.clone()))?;
        registry.register(Box::new(m.chunk_duration.clone()))?;
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.segment_days.clone()))?;
        registry.register(Box::new(m.stale_segment_days.clone()))?;
        registry.register(Box::new(m.vehicle_days.clone()))?;
        registry.register(Box::new(m.stale_vehicle_days.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.waiting.clone()))?;
        registry.register(Box::new(m.store_retries.clone()))?;
        Ok(m)
    }
}

/// Runs until `shutdown`: finishes the chunk in hand, then returns.
pub async fn run(
    config: CoverageConfig,
    network: Arc<RoadNetwork>,
    zones: Arc<Zones>,
    store: Arc<dyn Store>,
    metrics: CoverageMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let time_zone = TimeZone::get(&config.time_zone).with_context(|| {
        format!(
            "[coverage] time_zone {:?} is not an IANA time zone",
            config.time_zone
        )
    })?;
    // Passes depend on the network, the matcher's settings and the pass rules, segments' days
    // on the city's time zone too: when any of them changes, every chunk is computed again.
    let settings = format!("{:?}{:?}{}", config.matcher, config.rules, config.time_zone);
    let basis = format!(
        "{}-settings-{:016x}",
        network_id(&network),
        xxhash_rust::xxh3::xxh3_64(settings.as_bytes())
    );
    let retry = Retry {
        metrics: &metrics,
        shutdown: &shutdown,
    };
    let Some(changed) = retry
        .call("use_coverage_network", || {
            store.use_coverage_network(&basis)
        })
        .await?
    else {
        return Ok(());
    };
    if changed {
        info!("the road network or the coverage settings changed: recomputing all coverage");
    }
    let sections = sections_id(&zones);
    let Some(changed) = retry
        .call("use_vehicle_day_sections", || {
            store.use_vehicle_day_sections(&sections, &time_zone)
        })
        .await?
    else {
        return Ok(());
    };
    if changed {
        info!("the sections changed: recomputing every vehicle's day");
    }
    // Matching is CPU work: each worker thread owns a matcher for the stage's life; chunks
    // are independent (a chunk's passes depend only on its fixes and their context), so
    // they are matched side by side and stored in whatever order they finish.
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (jobs, inbox) = mpsc::channel::<Job>(workers);
    let inbox = Arc::new(std::sync::Mutex::new(inbox));
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (network, inbox) = (network.clone(), inbox.clone());
        let (matcher_config, rules) = (config.matcher.clone(), config.rules.clone());
        let thread = std::thread::Builder::new()
            .name(format!("coverage-{i}"))
            .spawn(move || {
                let mut matcher = Matcher::new(&network, matcher_config);
                loop {
                    // Held only while waiting for a job; the others wait their turn.
                    let job = inbox.lock().expect("job queue lock").blocking_recv();
                    let Some((chunk, fixes, reply)) = job else {
                        break;
                    };
                    let passes = chunk_passes(&network, &mut matcher, &rules, &chunk, &fixes);
                    let _ = reply.send(passes);
                }
            })
            .context("cannot start a coverage thread")?;
        threads.push(thread);
    }
    info!(workers, "coverage stage started");
    let poll = Duration::from_secs_f64(config.poll_interval_s.max(0.1));
    let stage = Stage {
        store: store.as_ref(),
        network: &network,
        zones: &zones,
        rules: &config.rules,
        time_zone: &time_zone,
        jobs: &jobs,
        metrics: &metrics,
        retry: &retry,
        shutdown: &shutdown,
    };
    let result = async {
        // When the fixes of the chunks computed since the day rows were last current were
        // stored: their lag ends once those rows are.
        let mut waiting_for_days: Vec<Timestamp> = Vec::new();
        // When the day rows changed since they were last current are due.
        let mut rows_due: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let Some(backlog) = retry
                .call("coverage_backlog", || store.coverage_backlog())
                .await?
            else {
                break;
            };
            metrics.backlog.set(backlog.stale_chunks as i64);
            metrics
                .stale_segment_days
                .set(backlog.stale_segment_days as i64);
            metrics
                .stale_vehicle_days
                .set(backlog.stale_vehicle_days as i64);
            metrics
                .waiting
                .set(backlog.waiting_since.map_or(0.0, |since| {
                    Timestamp::now()
                        .duration_since(since)
                        .as_secs_f64()
                        .max(0.0)
                }));
            // The passes stored change their segments' and vehicles' days. Those are stored
            // once no chunk is stale, or once chunks have been matched for DAY_ROWS_AFTER
            // since the first change: a day's row is read from all its passes, so with a
            // city live (every chunk stale again within seconds) storing them after every
            // look would read each busy segment's day again and again.
            let days_stale = backlog.stale_segment_days > 0 || backlog.stale_vehicle_days > 0;
            if days_stale {
                let due = *rows_due.get_or_insert_with(|| Instant::now() + DAY_ROWS_AFTER);
                if backlog.stale_chunks == 0 || Instant::now() >= due {
                    let stored = if backlog.stale_segment_days > 0 {
                        stage.store_segment_days().await?
                    } else {
                        stage.store_vehicle_days().await?
                    };
                    if stored.is_none() {
                        break;
                    }
                    continue;
                }
            } else {
                rows_due = None;
                let now = Timestamp::now();
                for since in waiting_for_days.drain(..) {
                    metrics
                        .lag
                        .observe(now.duration_since(since).as_secs_f64().max(0.0));
                }
            }
            let Some(chunks) = retry
                .call("stale_chunks", || store.stale_chunks(CHUNKS_PER_LOOK))
                .await?
            else {
                break;
            };
            let stale_since: Vec<Timestamp> = chunks.iter().filter_map(|c| c.stale_since).collect();
            if chunks.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = store.coverage_work() => continue,
                    _ = tokio::time::sleep(poll) => continue,
                }
            }
            let mut done = futures::stream::iter(chunks)
                .map(|chunk| stage.compute(chunk))
                .buffer_unordered(workers);
            let mut stopped = false;
            while let Some(outcome) = done.next().await {
                stopped |= outcome?.is_none();
            }
            if stopped {
                break;
            }
            waiting_for_days.extend(stale_since);
        }
        anyhow::Ok(())
    }
    .await;
    drop(jobs);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    result
}

/// What the stage's work needs: computing chunks and storing segments' and vehicles' days.
struct Stage<'a> {
    store: &'a dyn Store,
    network: &'a Arc<RoadNetwork>,
    zones: &'a Arc<Zones>,
    rules: &'a CoverageRules,
    time_zone: &'a TimeZone,
    jobs: &'a mpsc::Sender<Job>,
    metrics: &'a CoverageMetrics,
    retry: &'a Retry<'a>,
    shutdown: &'a CancellationToken,
}

impl Stage<'_> {
    /// Reads a chunk's fixes with their context, has a worker match them, and replaces the
    /// chunk's passes. `None`: stopped (shutdown), the chunk left stale for the next start.
    async fn compute(&self, chunk: CoverageChunk) -> anyhow::Result<Option<()>> {
        if self.shutdown.is_cancelled() {
            return Ok(None);
        }
        let timer = self.metrics.chunk_duration.start_timer();
        let context = SignedDuration::from_millis(COVERAGE_CONTEXT_MS);
        let (from, to) = (chunk.start - context, chunk.end() + context);
        let Some(fixes) = self
            .retry
            .call("track", || {
                self.store
                    .track(&chunk.device_id, from, to, MAX_CHUNK_FIXES)
            })
            .await?
        else {
            return Ok(None);
        };
        self.metrics.fixes.inc_by(fixes.len() as u64);
        let (reply, passes) = oneshot::channel();
        self.jobs
            .send((chunk.clone(), fixes, reply))
            .await
            .context("the coverage threads stopped")?;
        let passes = passes.await.context("the coverage threads stopped")?;
        debug!(device = %chunk.device_id, start = %chunk.start, passes = passes.len(), "chunk computed");
        self.metrics.passes.inc_by(passes.len() as u64);
        let Some(()) = self
            .retry
            .call("put_passes", || {
                self.store
                    .put_passes(chunk.clone(), passes.clone(), self.time_zone)
            })
            .await?
        else {
            return Ok(None);
        };
        self.metrics.chunks.inc();
        timer.observe_duration();
        Ok(Some(()))
    }

    /// Computes and stores a batch of stale segments' days from their passes, a day at a
    /// time. `None`: stopped (shutdown).
    async fn store_segment_days(&self) -> anyhow::Result<Option<()>> {
        let Some(stale) = self
            .retry
            .call("stale_segment_days", || {
                self.store.stale_segment_days(SEGMENT_DAYS_PER_LOOK)
            })
            .await?
        else {
            return Ok(None);
        };
        let mut by_day: BTreeMap<Date, Vec<StaleSegmentDay>> = BTreeMap::new();
        for s in stale {
            by_day.entry(s.day).or_default().push(s);
        }
        for (day, stale) in by_day {
            let (from, to) = day_bounds(self.time_zone, day)
                .with_context(|| format!("the bounds of {day} in the city's time zone"))?;
            let segments: Vec<u32> = stale.iter().map(|s| s.segment).collect();
            let Some(passes) = self
                .retry
                .call("segment_passes", || {
                    self.store.segment_passes(segments.clone(), from, to)
                })
                .await?
            else {
                return Ok(None);
            };
            let (network, rules) = (self.network.clone(), self.rules.clone());
            let rows = tokio::task::spawn_blocking(move || {
                let mut by_segment: BTreeMap<u32, Vec<PassRecord>> = BTreeMap::new();
                for p in passes {
                    by_segment.entry(p.segment).or_default().push(p);
                }
                by_segment
                    .iter()
                    .filter_map(|(&segment, passes)| {
                        segment_day(&network, &rules, day, segment, passes)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .context("a segment-day computation failed")?;
            self.metrics.segment_days.inc_by(stale.len() as u64);
            let Some(()) = self
                .retry
                .call("put_segment_days", || {
                    self.store.put_segment_days(rows.clone(), stale.clone())
                })
                .await?
            else {
                return Ok(None);
            };
        }
        Ok(Some(()))
    }

    /// Computes and stores a batch of stale vehicles' days, each from that vehicle's passes
    /// of the day. `None`: stopped (shutdown).
    async fn store_vehicle_days(&self) -> anyhow::Result<Option<()>> {
        let Some(stale) = self
            .retry
            .call("stale_vehicle_days", || {
                self.store.stale_vehicle_days(VEHICLE_DAYS_PER_LOOK)
            })
            .await?
        else {
            return Ok(None);
        };
        let mut days = Vec::with_capacity(stale.len());
        for s in &stale {
            let (from, to) = day_bounds(self.time_zone, s.day)
                .with_context(|| format!("the bounds of {} in the city's time zone", s.day))?;
            let Some(passes) = self
                .retry
                .call("passes", || {
                    self.store.passes(from, to, Some(s.device_id.clone()))
                })
                .await?
            else {
                return Ok(None);
            };
            days.push((s.day, passes));
        }
        let (network, zones) = (self.network.clone(), self.zones.clone());
        let rows = tokio::task::spawn_blocking(move || {
            days.iter()
                .flat_map(|(day, passes)| vehicle_day_rows(&network, &zones, *day, passes))
                .collect::<Vec<_>>()
        })
        .await
        .context("a vehicle-day computation failed")?;
        self.metrics.vehicle_days.inc_by(stale.len() as u64);
        let Some(()) = self
            .retry
            .call("put_vehicle_days", || {
                self.store.put_vehicle_days(rows.clone(), stale.clone())
            })
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(()))
    }
}

/// A track file matched as the stage would match it, as JSON (`cleanfleet match`); the
/// error says which fix is at fault.
pub fn match_track_file(
    network: &RoadNetwork,
    config: &CoverageConfig,
    work: WorkType,
    format: TrackFormat,
    bytes: &[u8],
) -> Result<serde_json::Value, TrackError> {
    let (fixes, repeats) = in_time_order(parse_track(format, bytes)?)?;
    let mut matcher = Matcher::new(network, config.matcher.clone());
    let result = match_track(network, &mut matcher, &config.rules, work, fixes);
    Ok(result.to_json(network, matcher.index(), repeats))
}

/// Store calls that wait out a busy store (another process writing, a server restarting),
/// backing off from 100 ms to 5 s, and give up only on a lasting error, or at shutdown
/// (`None`: the stage stops cleanly, its chunk left stale for the next start).
struct Retry<'a> {
    metrics: &'a CoverageMetrics,
    shutdown: &'a CancellationToken,
}

impl Retry<'_> {
    async fn call<T, F, Fut>(
        &self,
        what: &'static str,
        mut call: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match call().await {
                Err(e) if e.is_transient() && !self.shutdown.is_cancelled() => {
                    self.metrics.store_retries.inc();
                    warn!(call = what, error = %e, retry_in_ms = backoff.as_millis() as u64, "store busy; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) if e.is_transient() => return Ok(None),
                result => return result.map(Some),
            }
        }
    }
}

/// The passes of one chunk from its fixes and their context, in device-time order.
fn chunk_passes(
    network: &RoadNetwork,
    matcher: &mut Matcher,
    rules: &CoverageRules,
    chunk: &CoverageChunk,
    fixes: &[Fix],
) -> Vec<PassRecord> {
    let Some(work) = WorkType::of_kind(chunk.kind) else {
        return Vec::new();
    };
    let seconds = |t: Timestamp| t.as_millisecond() as f64 / 1000.0;
    let observations: Vec<Observation> = fixes.iter().map(Observation::from_fix).collect();
    let states: Vec<FixState> = fixes.iter().map(|f| FixState::from_fix(f, work)).collect();
    let window = seconds(chunk.start)..seconds(chunk.end());
    let device_id = DeviceId::from(chunk.device_id.as_str());
    match_window(
        network,
        matcher,
        rules,
        work,
        &observations,
        &states,
        window,
    )
    .1
    .iter()
    .map(|p| record(&device_id, p))
    .collect()
}

fn record(device_id: &DeviceId, p: &Pass) -> PassRecord {
    let at = |s: f64| {
        Timestamp::from_millisecond((s * 1000.0).round() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
    };
    PassRecord {
        device_id: device_id.clone(),
        segment: p.segment,
        forward: p.forward,
        from_m: p.from_m,
        to_m: p.to_m,
        start: at(p.start_s),
        end: at(p.end_s),
        work: p.work,
        invalid: p.invalid,
        max_speed_kmh: p.max_speed_kmh,
    }
}
