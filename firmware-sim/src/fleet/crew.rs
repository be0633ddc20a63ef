//! People on foot: crew members' wearables walking the streets and inspectors' scales
//! weighing the dust left on them.

use cleanfleet_model::{Fix, InspectionSample, WorkState};
use cleanfleet_roads::RoadNetwork;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::truth::{PathPoint, SampleTruth, SosEvent};
use super::{fix_batch_message, gaussian, message, round_to, Content, Identity, SimMessage};
use crate::drive::{position_along, Edge};

/// Walking speed of a crew member.
pub(super) const WALK_KMH: (f64, f64) = (3.0, 5.0);
/// A wearable reports a fix this often.
pub(super) const WEARABLE_FIX_INTERVAL: SignedDuration = SignedDuration::from_secs(5);
/// SOS presses per wearable and hour.
pub const SOS_PER_HOUR: f64 = 0.05;
/// Metres per degree of latitude, on the sphere Haversine lengths use.
const METRES_PER_DEGREE: f64 = 111_195.08;
/// Minutes between two road inspections of a scale.
const ROUND_GAP_MIN: (f64, f64) = (20.0, 40.0);
/// Points an inspection takes on one road (Beijing's 5), and minutes between two of them.
pub const ROUND_POINTS: usize = 5;
const POINT_GAP_MIN: (f64, f64) = (2.0, 4.0);
/// Dust on a freshly cleaned square metre, and how much more settles per hour.
pub const SAMPLE_BASE_G: f64 = 2.0;
pub const SAMPLE_G_PER_HOUR: f64 = 1.5;
/// Dust stops accumulating after this many hours (wind and traffic carry it off), and a
/// segment not cleaned since the simulation started counts as this old.
pub const SAMPLE_CAP_H: f64 = 12.0;
/// Relative spread of a sample's grams (normal σ).
const SAMPLE_NOISE: f64 = 0.15;
/// How far from the centre line a sample is taken (normal σ, capped at 3σ), metres.
const SAMPLE_LATERAL_M: f64 = 1.5;
/// Pedestrians' GPS: a phone-grade receiver.
const WEARABLE_HDOP: (f64, f64) = (0.8, 2.5);
const WEARABLE_SATELLITES: (u8, u8) = (6, 12);

/// The network on foot: every segment walkable both ways.
pub(super) struct Walkways {
    exits: Vec<Vec<Edge>>,
}

impl Walkways {
    pub fn new(network: &RoadNetwork) -> Walkways {
        let mut exits = vec![Vec::new(); network.nodes().len()];
        for s in network.segments() {
            exits[s.from_node as usize].push((s.id, true));
            exits[s.to_node as usize].push((s.id, false));
        }
        Walkways { exits }
    }

    pub fn empty() -> Walkways {
        Walkways { exits: Vec::new() }
    }
}

/// Moves a point `north_m` and `east_m` metres.
fn offset((lon, lat): (f64, f64), north_m: f64, east_m: f64) -> (f64, f64) {
    (
        lon + east_m / (METRES_PER_DEGREE * lat.to_radians().cos()),
        lat + north_m / METRES_PER_DEGREE,
    )
}

/// What a wearable recorded in a tick, for the truth.
pub(super) struct WearableFix {
    pub point: PathPoint,
    pub sos: Option<SosEvent>,
}

pub(super) struct Wearable {
    device: usize,
    id: String,
    topic: String,
    rng: ChaCha8Rng,
    skew: SignedDuration,
    gps_sigma_m: f64,
    edge: Edge,
    offset_m: f64,
    pace_kmh: f64,
    speed_kmh: f64,
    heading_deg: f64,
    next_fix: Timestamp,
    seq: u64,
    batch: Vec<Fix>,
}

impl Wearable {
    pub fn new(
        identity: Identity,
        gps_sigma_m: f64,
        network: &RoadNetwork,
        walkways: &Walkways,
        start_nodes: &[u32],
        start: Timestamp,
    ) -> Wearable {
        let Identity {
            device,
            id,
            topic,
            mut rng,
            skew,
            ..
        } = identity;
        let node = start_nodes[rng.random_range(0..start_nodes.len())];
        let exits = &walkways.exits[node as usize];
        let edge = exits[rng.random_range(0..exits.len())];
        let offset_m = rng.random::<f64>() * network.segments()[edge.0 as usize].length_m;
        let pace_kmh = rng.random_range(WALK_KMH.0..WALK_KMH.1);
        let first_fix = SignedDuration::from_millis(rng.random_range(1..=5000));
        Wearable {
            device,
            id,
            topic,
            skew,
            gps_sigma_m,
            edge,
            offset_m,
            pace_kmh,
            speed_kmh: pace_kmh,
            heading_deg: 0.0,
            next_fix: start + first_fix,
            seq: 0,
            batch: Vec::new(),
            rng,
        }
    }

    pub fn pending_fixes(&self) -> usize {
        self.batch.len()
    }

    /// Walks one tick; records a fix when one is due.
    pub fn step(
        &mut self,
        network: &RoadNetwork,
        walkways: &Walkways,
        now: Timestamp,
        dt_s: f64,
    ) -> Option<WearableFix> {
        let jitter = 0.1 * gaussian(&mut self.rng);
        self.speed_kmh = (self.pace_kmh + jitter).clamp(WALK_KMH.0, WALK_KMH.1);
        let mut left_m = self.speed_kmh / 3.6 * dt_s;
        for _ in 0..1000 {
            let segment = &network.segments()[self.edge.0 as usize];
            let to_end_m = segment.length_m - self.offset_m;
            if left_m < to_end_m {
                self.offset_m += left_m;
                break;
            }
            left_m -= to_end_m;
            let node = segment.end_node(self.edge.1);
            let exits = &walkways.exits[node as usize];
            let u_turn = (self.edge.0, !self.edge.1);
            let onward: Vec<Edge> = exits.iter().copied().filter(|&e| e != u_turn).collect();
            self.edge = if onward.is_empty() {
                u_turn
            } else {
                onward[self.rng.random_range(0..onward.len())]
            };
            self.offset_m = 0.0;
        }
        if now < self.next_fix {
            return None;
        }
        self.next_fix += WEARABLE_FIX_INTERVAL;
        if self.next_fix <= now {
            self.next_fix = now + WEARABLE_FIX_INTERVAL;
        }
        Some(self.record_fix(network, now))
    }

    fn record_fix(&mut self, network: &RoadNetwork, now: Timestamp) -> WearableFix {
        let segment = &network.segments()[self.edge.0 as usize];
        let ((lon, lat), heading) = position_along(segment, self.edge.1, self.offset_m);
        if let Some(h) = heading {
            self.heading_deg = h;
        }
        let north_m = self.gps_sigma_m * gaussian(&mut self.rng);
        let east_m = self.gps_sigma_m * gaussian(&mut self.rng);
        let (lon_noisy, lat_noisy) = offset((lon, lat), north_m, east_m);
        let hdop = self.rng.random_range(WEARABLE_HDOP.0..WEARABLE_HDOP.1);
        let satellites = self
            .rng
            .random_range(WEARABLE_SATELLITES.0..=WEARABLE_SATELLITES.1);
        let p_sos = SOS_PER_HOUR * WEARABLE_FIX_INTERVAL.as_secs_f64() / 3600.0;
        let sos = self.rng.random_bool(p_sos);
        self.seq += 1;
        self.batch.push(Fix {
            time: now + self.skew,
            seq: Some(self.seq),
            lat: round_to(lat_noisy, 7),
            lon: round_to(lon_noisy, 7),
            speed_kmh: Some(round_to(self.speed_kmh, 1)),
            heading_deg: Some(round_to(self.heading_deg, 1) % 360.0),
            hdop: Some(round_to(hdop, 1)),
            satellites: Some(satellites),
            work: WorkState::default(),
            water_tank_ratio: None,
            load_kg: None,
            odometer_m: None,
            lifter_cycles: None,
            sos: sos.then_some(true),
        });
        WearableFix {
            point: PathPoint {
                device: self.device,
                seq: self.seq,
                time: now,
                lon,
                lat,
                speed_kmh: self.speed_kmh,
                work: WorkState::default(),
                multipath: false,
                on: None,
            },
            sos: sos.then_some(SosEvent {
                device: self.device,
                seq: self.seq,
                time: now,
                lon,
                lat,
            }),
        }
    }

    /// The fixes recorded since the last batch, as one message sent at `now`.
    pub fn take_batch(&mut self, now: Timestamp) -> Option<SimMessage> {
        fix_batch_message(self.device, &self.id, &self.topic, &mut self.batch, now)
    }
}

pub(super) struct Scale {
    device: usize,
    id: String,
    topic: String,
    rng: ChaCha8Rng,
    skew: SignedDuration,
    inspector: String,
    next_sample: Timestamp,
    /// The points of the road inspection under way still to take: (segment, metres along).
    round: Vec<(u32, f64)>,
    seq: u64,
}

impl Scale {
    pub fn new(identity: Identity, inspector: String, start: Timestamp) -> Scale {
        let Identity {
            device,
            id,
            topic,
            mut rng,
            skew,
            ..
        } = identity;
        let first = SignedDuration::from_secs_f64(rng.random_range(1.0..ROUND_GAP_MIN.1) * 60.0);
        Scale {
            device,
            id,
            topic,
            skew,
            inspector,
            next_sample: start + first,
            round: Vec::new(),
            seq: 0,
            rng,
        }
    }

    /// The points of a road inspection: [`ROUND_POINTS`] places on the segments of one
    /// named street (an unnamed segment is a road of its own).
    fn plan_round(&mut self, network: &RoadNetwork) -> Vec<(u32, f64)> {
        let segments = network.segments();
        let first = &segments[self.rng.random_range(0..segments.len())];
        let road: Vec<&cleanfleet_roads::Segment> = match &first.name {
            Some(name) => segments
                .iter()
                .filter(|s| s.name.as_ref() == Some(name))
                .collect(),
            None => vec![first],
        };
        (0..ROUND_POINTS)
            .map(|_| {
                let s = road[self.rng.random_range(0..road.len())];
                (s.id, self.rng.random::<f64>() * s.length_m)
            })
            .collect()
    }

    /// Takes a sample when one is due: the points of one road a few minutes apart, then a
    /// pause before the next road. `last_cleaned` holds, per segment, when a working cleaning
    /// vehicle was last on it.
    pub fn step(
        &mut self,
        network: &RoadNetwork,
        last_cleaned: &[Option<Timestamp>],
        now: Timestamp,
    ) -> Option<(SimMessage, SampleTruth)> {
        if now < self.next_sample || network.segments().is_empty() {
            return None;
        }
        if self.round.is_empty() {
            self.round = self.plan_round(network);
        }
        let (segment, along_m) = self.round.pop().expect("a round has points");
        let gap = if self.round.is_empty() {
            ROUND_GAP_MIN
        } else {
            POINT_GAP_MIN
        };
        let wait = self.rng.random_range(gap.0..gap.1) * 60.0;
        self.next_sample = now + SignedDuration::from_secs_f64(wait);
        let segment = &network.segments()[segment as usize];
        let ((lon, lat), heading) = position_along(segment, true, along_m);
        let lateral_m = (SAMPLE_LATERAL_M * gaussian(&mut self.rng))
            .clamp(-3.0 * SAMPLE_LATERAL_M, 3.0 * SAMPLE_LATERAL_M);
        let across = (heading.unwrap_or(0.0) + 90.0).to_radians();
        let (lon, lat) = offset(
            (lon, lat),
            lateral_m * across.cos(),
            lateral_m * across.sin(),
        );
        let (lon, lat) = (round_to(lon, 7), round_to(lat, 7));
        let cleaned = last_cleaned.get(segment.id as usize).copied().flatten();
        let hours = cleaned
            .map_or(SAMPLE_CAP_H, |t| {
                now.duration_since(t).as_secs_f64() / 3600.0
            })
            .clamp(0.0, SAMPLE_CAP_H);
        let mean_g = SAMPLE_BASE_G + SAMPLE_G_PER_HOUR * hours;
        let grams = round_to(
            (mean_g * (1.0 + SAMPLE_NOISE * gaussian(&mut self.rng))).max(0.0),
            1,
        );
        let litter_count = self.rng.random_range(0..=(hours / 3.0) as u32 + 1);
        self.seq += 1;
        let sample_id = format!("{}-{:04}", self.id.to_uppercase(), self.seq);
        let body = InspectionSample {
            device_id: Some(self.id.clone()),
            sample_id: sample_id.clone(),
            time: now + self.skew,
            lat,
            lon,
            grams,
            area_m2: 1.0,
            inspector: self.inspector.clone(),
            litter_count: Some(litter_count),
            photo_ref: None,
        };
        let m = message(self.device, &self.topic, &body, now, Content::Sample);
        let truth = SampleTruth {
            device: self.device,
            sample_id,
            time: now,
            segment: segment.id,
            lon,
            lat,
            grams,
            last_cleaned: cleaned,
        };
        Some((m, truth))
    }
}
