//! The pure, deterministic device model: no I/O and no clock. It steps in simulated time and
//! yields the MQTT messages the devices would send.

mod crew;
mod sensors;
mod truth;
mod uplink;
mod vehicle;

use std::sync::Arc;

use cleanfleet_model::{DeviceKind, Fix, FixBatch, Stream, Topic};
use cleanfleet_roads::{RoadNetwork, Zones};
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::drive::Core;
use crate::{FleetMix, SimConfig, SimError};
use crew::{Scale, Walkways, Wearable};
pub use crew::{SAMPLE_BASE_G, SAMPLE_CAP_H, SAMPLE_G_PER_HOUR, SOS_PER_HOUR};
use sensors::{Bin, Toilet, Weighbridge};
pub use truth::{
    BinFault, BinFaultKind, BinFill, Collection, DeepClean, DeviceTruth, OfflinePeriod, OnSegment,
    PathPoint, SampleTruth, SosEvent, Truth, WorkPass, DEEP_CLEAN_WITHIN,
};
use uplink::Uplink;
use vehicle::{Convoy, Trail, Vehicle};

/// A simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub kind: DeviceKind,
    pub id: String,
    /// Where a fixed device (bin, toilet, weighbridge) stands, as (lon, lat); `None` for
    /// vehicles, wearables and scales.
    pub position: Option<(f64, f64)>,
}

/// What a [`SimMessage`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A fix batch with this many fixes.
    Fixes(usize),
    /// A bin or toilet reading.
    Reading,
    /// A weighbridge ticket.
    Ticket,
    /// An inspector's dust sample.
    Sample,
}

/// One MQTT message a device sends.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    /// The sender's index in [`Fleet::devices`].
    pub device: usize,
    pub topic: String,
    /// JSON of contract v1.
    pub payload: Vec<u8>,
    /// Simulated time at which it is sent: the true time, not the device's skewed clock that
    /// the payload's times follow; for a message buffered during a drop-out, the time of
    /// reconnecting.
    pub time: Timestamp,
    pub content: Content,
}

/// The simulated fleet: vehicles driving the network, bins, toilets and weighbridges, crew
/// members' wearables and inspectors' scales.
pub struct Fleet {
    network: Arc<RoadNetwork>,
    core: Core,
    devices: Vec<DeviceInfo>,
    vehicles: Vec<Vehicle>,
    bins: Vec<Bin>,
    toilets: Vec<Toilet>,
    weighbridges: Vec<Weighbridge>,
    wearables: Vec<Wearable>,
    scales: Vec<Scale>,
    /// Empty without wearables.
    walkways: Walkways,
    /// Per segment, when a working cleaning vehicle was last on it; empty without scales.
    last_cleaned: Vec<Option<Timestamp>>,
    tick: SignedDuration,
    now: Timestamp,
    batch_fixes: usize,
    reading_interval: SignedDuration,
    /// Offset of local solar time from UTC, for day and night patterns.
    local_offset: SignedDuration,
    /// One per vehicle, in the same order.
    uplinks: Vec<Uplink>,
    /// Each device's clock error, in [`Fleet::devices`] order.
    skews: Vec<SignedDuration>,
    /// One per deep-cleaning pair.
    trails: Vec<Trail>,
    /// Per segment, its section's index; empty without sections.
    section_of: Vec<Option<u32>>,
    /// Per section, the core intersections its segments start from.
    section_nodes: Vec<Vec<u32>>,
    truth: Option<Truth>,
}

/// Fixed devices sense this often, so threshold reports (bin full, fire) are prompt.
const SAMPLE_INTERVAL: SignedDuration = SignedDuration::from_secs(60);

/// Who a device is: what every device type is built from.
struct Identity {
    device: usize,
    id: String,
    /// The topic of its data stream.
    topic: String,
    rng: ChaCha8Rng,
    /// Faults draw from their own stream, so that turning them on does not change what the
    /// devices do.
    fault_rng: ChaCha8Rng,
    /// Constant error of the device's clock, added to the times it reports.
    skew: SignedDuration,
}

/// State shared by the devices during one tick.
struct World<'a> {
    network: &'a RoadNetwork,
    core: &'a Core,
    bins: &'a mut [Bin],
    weighbridges: &'a mut [Weighbridge],
    out: &'a mut Vec<SimMessage>,
    /// Work passes finished this tick.
    passes: &'a mut Vec<WorkPass>,
    trails: &'a mut [Trail],
    section_of: &'a [Option<u32>],
    section_nodes: &'a [Vec<u32>],
    now: Timestamp,
    dt_s: f64,
}

impl Fleet {
    /// A fleet per `config` whose clock starts at `start`; the first messages are for the
    /// first tick after it.
    pub fn new(
        network: Arc<RoadNetwork>,
        config: &SimConfig,
        start: Timestamp,
    ) -> Result<Fleet, SimError> {
        config.validate()?;
        let core = Core::new(&network).ok_or(SimError::UndrivableNetwork)?;
        let reading_interval = SignedDuration::from_secs_f64(config.reading_interval_s);
        let sample_interval = SAMPLE_INTERVAL.min(reading_interval);
        let mix = &config.fleet;
        let centre_lon = network.bbox().center().x;
        let local_offset = SignedDuration::from_hours((centre_lon / 15.0).round() as i64);

        let faults = &config.faults;
        let mut devices = Vec::new();
        let mut skews = Vec::new();
        let mut register = |kind: DeviceKind, id: String, position: Option<(f64, f64)>| {
            devices.push(DeviceInfo {
                kind,
                id: id.clone(),
                position,
            });
            let mut fault_rng = device_rng(config.seed, &format!("{id}/faults"));
            let skew = if faults.clock_skew_s > 0.0 {
                let s = fault_rng.random_range(-faults.clock_skew_s..=faults.clock_skew_s);
                SignedDuration::from_millis((s * 1000.0).round() as i64)
            } else {
                SignedDuration::ZERO
            };
            skews.push(skew);
            Identity {
                device: devices.len() - 1,
                topic: Topic::new(kind, id.as_str(), kind.data_stream()).name(),
                rng: device_rng(config.seed, &id),
                fault_rng,
                skew,
                id,
            }
        };
        let tick = SignedDuration::from_secs_f64(config.fix_interval_s);

        let mut vehicles = Vec::new();
        for kind in FleetMix::KINDS.into_iter().filter(|k| k.is_vehicle()) {
            for id in mix.device_ids(kind) {
                let identity = register(kind, id, None);
                vehicles.push(Vehicle::new(identity, kind, faults, &network, &core, start));
            }
        }
        let trails = pair_for_deep_cleaning(&mut vehicles);
        let mut picker = device_rng(config.seed, "placement");
        let mut free_nodes = core.nodes().to_vec();
        let mut place = || {
            // Distinct nodes while there are enough; shared ones after that.
            let node = if free_nodes.is_empty() {
                core.nodes()[picker.random_range(0..core.nodes().len())]
            } else {
                free_nodes.swap_remove(picker.random_range(0..free_nodes.len()))
            };
            (node, network.nodes()[node as usize])
        };
        let mut bins = Vec::new();
        for id in mix.device_ids(DeviceKind::Bin) {
            let (node, position) = place();
            let identity = register(DeviceKind::Bin, id, Some(position));
            bins.push(Bin::new(
                identity,
                node,
                start,
                (sample_interval, reading_interval),
                faults,
            ));
        }
        let mut toilets = Vec::new();
        for id in mix.device_ids(DeviceKind::Toilet) {
            let (_, position) = place();
            let identity = register(DeviceKind::Toilet, id, Some(position));
            toilets.push(Toilet::new(
                identity,
                start,
                sample_interval,
                reading_interval,
            ));
        }
        let mut weighbridges = Vec::new();
        for id in mix.device_ids(DeviceKind::Weighbridge) {
            let (node, position) = place();
            let identity = register(DeviceKind::Weighbridge, id, Some(position));
            weighbridges.push(Weighbridge::new(identity, node));
        }
        // Registered last, so that they change nothing about the devices before them.
        let walkways = if mix.wearables > 0 {
            Walkways::new(&network)
        } else {
            Walkways::empty()
        };
        let mut wearables = Vec::new();
        for id in mix.device_ids(DeviceKind::Wearable) {
            let identity = register(DeviceKind::Wearable, id, None);
            wearables.push(Wearable::new(
                identity,
                faults.gps_sigma_m,
                &network,
                &walkways,
                core.nodes(),
                start,
            ));
        }
        let mut scales = Vec::new();
        let width = 2.max(mix.scales.to_string().len());
        for (n, id) in mix.device_ids(DeviceKind::Scale).enumerate() {
            let identity = register(DeviceKind::Scale, id, None);
            let inspector = format!("insp-{:0width$}", n + 1);
            scales.push(Scale::new(identity, inspector, start));
        }
        let last_cleaned = if scales.is_empty() {
            Vec::new()
        } else {
            vec![None; network.segments().len()]
        };

        // Vehicles are registered first, so a vehicle's index is its device index.
        let uplinks = vehicles
            .iter()
            .map(|v| {
                let id = &devices[v.device()].id;
                let rng = device_rng(config.seed, &format!("{id}/uplink"));
                Uplink::new(v.device(), rng, faults, tick)
            })
            .collect();
        Ok(Fleet {
            network,
            core,
            devices,
            vehicles,
            bins,
            toilets,
            weighbridges,
            wearables,
            scales,
            walkways,
            last_cleaned,
            tick,
            now: start,
            batch_fixes: config.batch_fixes,
            reading_interval,
            local_offset,
            uplinks,
            skews,
            trails,
            section_of: Vec::new(),
            section_nodes: Vec::new(),
            truth: None,
        })
    }

    /// Every device, in a fixed order: vehicles by kind, bins, toilets, weighbridges,
    /// wearables, scales.
    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    /// The simulated time stepped to so far.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// When the next step happens; stepping to an earlier time does nothing.
    pub fn next_tick(&self) -> Timestamp {
        self.now + self.tick
    }

    /// Steps every device through each tick up to and including `until`, returning the
    /// messages sent, in sending order.
    pub fn step_until(&mut self, until: Timestamp) -> Vec<SimMessage> {
        let mut out = Vec::new();
        while self.next_tick() <= until {
            self.now = self.next_tick();
            self.step(&mut out);
        }
        out
    }

    /// The fixes vehicles hold in unfinished batches, sent as they are (as firmware does
    /// before it powers down), and what vehicles that are offline buffered: they reconnect
    /// now, so nothing is lost.
    pub fn flush(&mut self) -> Vec<SimMessage> {
        let now = self.now;
        let mut out = Vec::new();
        let mut passes = Vec::new();
        for (v, uplink) in self.vehicles.iter_mut().zip(&mut self.uplinks) {
            v.close_pass(&mut passes);
            if let Some(batch) = v.take_batch(now) {
                uplink.send(batch, &mut out);
            }
            let period = uplink.flush(now, &mut out);
            if let (Some(truth), Some(period)) = (self.truth.as_mut(), period) {
                truth.offline.push(period);
            }
        }
        for w in &mut self.wearables {
            out.extend(w.take_batch(now));
        }
        if let Some(truth) = self.truth.as_mut() {
            truth.passes.extend(passes);
        }
        out
    }

    /// Gives each cleaning vehicle a section of `zones` to work: the section that lists it
    /// among its devices, else one in turn; they then keep mostly to their section's streets
    /// (a washer-sweeper following a flusher drives the flusher's trail).
    pub fn assign_sections(&mut self, zones: &Zones) {
        let count = zones.sections().len() as u32;
        if count == 0 {
            return;
        }
        self.section_of = (0..self.network.segments().len() as u32)
            .map(|s| {
                let id = &zones.section_of(s)?.id;
                zones
                    .sections()
                    .iter()
                    .position(|z| &z.id == id)
                    .map(|i| i as u32)
            })
            .collect();
        self.section_nodes = vec![Vec::new(); count as usize];
        for node in self.core.nodes() {
            let section = self
                .network
                .outgoing(*node)
                .find_map(|(s, _)| self.section_of[s as usize]);
            if let Some(section) = section {
                self.section_nodes[section as usize].push(*node);
            }
        }
        let listed = |id: &str| {
            let section = zones.section_of_device(id)?;
            zones.sections().iter().position(|z| z.id == section.id)
        };
        let mut in_turn = 0;
        for v in self.vehicles.iter_mut().filter(|v| v.is_cleaning()) {
            let section = match listed(&self.devices[v.device()].id) {
                Some(section) => section as u32,
                None => {
                    in_turn += 1;
                    (in_turn - 1) % count
                }
            };
            v.assign_section(section);
        }
    }

    /// Starts recording the ground truth (see [`Fleet::truth`]) from now on.
    pub fn record_truth(&mut self) {
        if self.truth.is_some() {
            return;
        }
        let devices = self
            .devices
            .iter()
            .zip(&self.skews)
            .map(|(d, skew)| DeviceTruth {
                device_id: d.id.clone(),
                kind: d.kind,
                clock_skew_s: skew.as_secs_f64(),
            })
            .collect();
        let bin_fill = self
            .bins
            .iter()
            .map(|b| BinFill {
                device: b.device(),
                time: self.now,
                fill_ratio: b.fill_ratio(),
            })
            .collect();
        self.truth = Some(Truth {
            devices,
            bin_fill,
            ..Truth::default()
        });
    }

    /// Simulates `span` from `start` at once, recording the truth: every message sent (with
    /// the backlog flushed at the end) and what really happened. For tests and benchmarks.
    pub fn simulate(
        network: Arc<RoadNetwork>,
        config: &SimConfig,
        start: Timestamp,
        span: SignedDuration,
    ) -> Result<(Vec<SimMessage>, Truth), SimError> {
        let mut fleet = Fleet::new(network, config, start)?;
        fleet.record_truth();
        let mut messages = fleet.step_until(start + span);
        messages.extend(fleet.flush());
        let truth = fleet.truth.take().unwrap_or_default();
        Ok((messages, truth))
    }

    /// What really happened since [`Fleet::record_truth`]: vehicle paths before GPS error,
    /// bin fills and collections, drop-outs; `None` if not recording.
    pub fn truth(&self) -> Option<&Truth> {
        self.truth.as_ref()
    }

    /// Writes [`Fleet::truth`] to `path` as JSON lines ([`Truth::write_json_lines`]); an
    /// empty truth if not recording.
    pub fn write_truth(&self, path: &std::path::Path) -> Result<(), SimError> {
        let empty = Truth::default();
        let truth = self.truth.as_ref().unwrap_or(&empty);
        let io_error = |source| SimError::Truth {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io_error)?;
        truth
            .write_json_lines(std::io::BufWriter::new(file))
            .map_err(io_error)
    }

    fn step(&mut self, out: &mut Vec<SimMessage>) {
        let local_hour = local_hour(self.now, self.local_offset);
        // Drop-outs end or begin before this tick's messages.
        for uplink in &mut self.uplinks {
            let period = uplink.tick(self.now, out);
            if let (Some(truth), Some(period)) = (self.truth.as_mut(), period) {
                truth.offline.push(period);
            }
        }
        let mut sent = Vec::new();
        let mut passes = Vec::new();
        let mut world = World {
            network: &self.network,
            core: &self.core,
            bins: &mut self.bins,
            weighbridges: &mut self.weighbridges,
            out: &mut sent,
            passes: &mut passes,
            trails: &mut self.trails,
            section_of: &self.section_of,
            section_nodes: &self.section_nodes,
            now: self.now,
            dt_s: self.tick.as_secs_f64(),
        };
        for v in &mut self.vehicles {
            v.step(&mut world);
            if v.pending_fixes() >= self.batch_fixes {
                world.out.extend(v.take_batch(world.now));
            }
            if let Some(segment) = v.cleaning_segment() {
                if let Some(t) = self.last_cleaned.get_mut(segment as usize) {
                    *t = Some(world.now);
                }
            }
        }
        for bin in world.bins.iter_mut() {
            world
                .out
                .extend(bin.step(world.now, local_hour, self.reading_interval));
        }
        for toilet in &mut self.toilets {
            world
                .out
                .extend(toilet.step(world.now, local_hour, self.reading_interval));
        }
        for w in &mut self.wearables {
            let fix = w.step(world.network, &self.walkways, world.now, world.dt_s);
            if let (Some(truth), Some(fix)) = (self.truth.as_mut(), fix) {
                truth.path.push(fix.point);
                truth.sos.extend(fix.sos);
            }
            if w.pending_fixes() >= self.batch_fixes {
                world.out.extend(w.take_batch(world.now));
            }
        }
        for scale in &mut self.scales {
            if let Some((m, sample)) = scale.step(world.network, &self.last_cleaned, world.now) {
                world.out.push(m);
                if let Some(truth) = self.truth.as_mut() {
                    truth.samples.push(sample);
                }
            }
        }
        for m in sent {
            match self.uplinks.get_mut(m.device) {
                Some(uplink) => uplink.send(m, out),
                None => out.push(m),
            }
        }
        self.record_tick(passes);
    }

    fn record_tick(&mut self, passes: Vec<WorkPass>) {
        let now = self.now;
        // Collections and faults are kept only while recording.
        let collections: Vec<Collection> = self
            .bins
            .iter_mut()
            .flat_map(|b| b.take_collections())
            .collect();
        let faults: Vec<BinFault> = self.bins.iter_mut().flat_map(|b| b.take_faults()).collect();
        let Some(truth) = self.truth.as_mut() else {
            return;
        };
        truth.collections.extend(collections);
        truth.passes.extend(passes);
        truth.bin_faults.extend(faults);
        for v in &self.vehicles {
            truth.path.extend(v.truth_point(now));
        }
        for b in &self.bins {
            if b.last_sample() == now {
                truth.bin_fill.push(BinFill {
                    device: b.device(),
                    time: now,
                    fill_ratio: b.fill_ratio(),
                });
            }
        }
    }

    /// True positions of the vehicles now: (device, (lon, lat)).
    #[cfg(test)]
    fn vehicle_positions(&self) -> Vec<(usize, (f64, f64))> {
        self.vehicles
            .iter()
            .map(|v| (v.device(), v.true_position(&self.network)))
            .collect()
    }
}

/// Each device draws from its own stream, keyed by its id, so adding a bin does not change
/// how the sweepers drive.
fn device_rng(seed: u64, id: &str) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // FNV-1a: a stable hash (std's hasher may change between Rust releases).
    let stream = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    rng.set_stream(stream);
    rng
}

/// Hour of the day in local solar time, 0 ≤ h < 24.
fn local_hour(t: Timestamp, offset: SignedDuration) -> f64 {
    let seconds = (t + offset).as_second().rem_euclid(86_400);
    seconds as f64 / 3600.0
}

/// Pairs the n-th flusher with the n-th washer-sweeper: the flusher leads, the washer-sweeper
/// follows its trail. Returns one empty trail per pair.
fn pair_for_deep_cleaning(vehicles: &mut [Vehicle]) -> Vec<Trail> {
    let of_kind = |kind: DeviceKind| -> Vec<usize> {
        (0..vehicles.len())
            .filter(|&i| vehicles[i].kind() == kind)
            .collect()
    };
    let leaders = of_kind(DeviceKind::Flusher);
    let followers = of_kind(DeviceKind::WasherSweeper);
    let mut trails = Vec::new();
    for (trail, (&leader, &follower)) in leaders.iter().zip(&followers).enumerate() {
        vehicles[leader].join_convoy(Convoy::Leads(trail), None);
        let (lead, follow) = if leader < follower {
            let (a, b) = vehicles.split_at_mut(follower);
            (&a[leader], &mut b[0])
        } else {
            let (a, b) = vehicles.split_at_mut(leader);
            (&b[0], &mut a[follower])
        };
        follow.join_convoy(Convoy::Follows(trail), Some(lead));
        trails.push(Trail::new());
    }
    trails
}

fn message<T: Serialize>(
    device: usize,
    topic: &str,
    body: &T,
    time: Timestamp,
    content: Content,
) -> SimMessage {
    SimMessage {
        device,
        topic: topic.to_owned(),
        payload: serde_json::to_vec(body).expect("contract payloads always serialize"),
        time,
        content,
    }
}

/// Drain a device's pending fixes into one `fixes` message sent at `now`, if there are any.
fn fix_batch_message(
    device: usize,
    device_id: &str,
    topic: &str,
    pending: &mut Vec<Fix>,
    now: Timestamp,
) -> Option<SimMessage> {
    if pending.is_empty() {
        return None;
    }
    let fixes = std::mem::take(pending);
    let count = fixes.len();
    let body = FixBatch {
        device_id: Some(device_id.to_owned()),
        fixes,
    };
    Some(message(device, topic, &body, now, Content::Fixes(count)))
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The status topic a device's birth message and last will go to.
pub(crate) fn status_topic(device: &DeviceInfo) -> String {
    Topic::new(device.kind, device.id.as_str(), Stream::Status).name()
}

#[cfg(test)]
mod crew_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
