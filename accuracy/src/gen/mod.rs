//! An independent trace generator with exact truth, written from DOMAIN.md alone.
//!
//! A fleet works districts of a road network for a shift: sweepers, washer-sweepers, flushers
//! each trailed by a sweeper or washer-sweeper on the same route (the deep-cleaning convoy),
//! and a sprinkler. Each vehicle's route is planned ([`plan`]), then driven tick by tick
//! ([`drive`]), which records the truth, then seen through a GPS receiver ([`gps`]).

mod drive;
mod gps;
mod network;
mod plan;
#[cfg(test)]
mod tests;

use cleanfleet_coverage::{CoverageRules, FixState, Observation, WorkType};
use cleanfleet_roads::RoadNetwork;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use drive::Shift;
use gps::Noise;
use network::{Geometry, Graph};
use plan::Pace;

/// How many vehicles of each kind work the shift.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetMix {
    pub sweepers: usize,
    pub washer_sweepers: usize,
    /// Each flusher is trailed by a washer-sweeper or a sweeper (alternately) on its route.
    pub flushers: usize,
    pub sprinklers: usize,
}

impl Default for FleetMix {
    fn default() -> Self {
        FleetMix {
            sweepers: 2,
            washer_sweepers: 1,
            flushers: 2,
            sprinklers: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Everything random follows from it.
    pub seed: u64,
    /// Device time of the first fix, seconds (default 2026-01-01T00:00:00Z).
    pub epoch_s: f64,
    /// Each vehicle's working time from its first fix. Default 4.
    pub shift_hours: f64,
    pub fleet: FleetMix,
    /// Road in a sweeper's, washer-sweeper's or sprinkler's district: about a shift's work, so that
    /// a side gets one pass or two, not many. Default 12 km.
    pub district_road_m: f64,
    /// Road in a flusher's district (it works faster). Default 20 km.
    pub flusher_district_road_m: f64,
    /// Districts grow from nodes within this network distance of one hub, so that they
    /// overlap. Default 1.5 km.
    pub district_spread_m: f64,
    /// Vehicles start within this many seconds of `epoch_s`. Default 600.
    pub start_spread_s: f64,
    /// A flusher's trailer starts its route this much later, seconds. Default 20–90 min.
    pub trail_delay_s: (f64, f64),
    /// Stationary standard deviation of the GPS error on each axis. Default 10.
    pub gps_sigma_m: f64,
    /// Correlation time of the GPS error, drawn per receiver, seconds. Default 10–30.
    pub gps_correlation_s: (f64, f64),
    /// Share of time without fixes (cellular drop-outs). Default 0.10.
    pub dropout_share: f64,
    /// Length of one drop-out, seconds. Default 10–120.
    pub dropout_gap_s: (f64, f64),
    /// Multipath episodes (3–10 fixes thrown 30–80 m off) per hour per vehicle. Default 4.
    pub multipath_per_hour: f64,
    /// Share of working time spent above the work's speed band with tools on. Default 0.05.
    pub overspeed_share: f64,
    /// Chance that a worked segment is turned back on in its middle. Default 0.03.
    pub u_turn_share: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            epoch_s: 1_767_225_600.0,
            shift_hours: 4.0,
            fleet: FleetMix::default(),
            district_road_m: 12_000.0,
            flusher_district_road_m: 20_000.0,
            district_spread_m: 1_500.0,
            start_spread_s: 600.0,
            trail_delay_s: (1_200.0, 5_400.0),
            gps_sigma_m: 10.0,
            gps_correlation_s: (10.0, 30.0),
            dropout_share: 0.10,
            dropout_gap_s: (10.0, 120.0),
            multipath_per_hour: 4.0,
            overspeed_share: 0.05,
            u_turn_share: 0.03,
        }
    }
}

/// One fix as the device reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenFix {
    pub time_s: f64,
    pub lon: f64,
    pub lat: f64,
    pub speed_kmh: Option<f64>,
    /// `None` while standing.
    pub heading_deg: Option<f64>,
    pub hdop: Option<f64>,
    pub satellites: Option<u8>,
    /// The truck's real tool state.
    pub tools_on: bool,
}

/// A stretch of what the vehicle really did: one segment, one direction, one tool state,
/// wholly within or wholly above its work's speed band. `from_m..=to_m` is measured in the
/// driving direction from the node the traversal enters the segment at (for `forward ==
/// false`, 0 is at `to_node`). Standing time is part of the stretch where it stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthStretch {
    pub segment: u32,
    pub forward: bool,
    pub from_m: f64,
    pub to_m: f64,
    pub start_s: f64,
    pub end_s: f64,
    pub tools_on: bool,
    pub max_speed_kmh: f64,
}

impl TruthStretch {
    /// Whether it is valid work of `work`: tools on and no faster than the band (inclusive).
    pub fn is_work(&self, work: WorkType, rules: &CoverageRules) -> bool {
        self.tools_on && self.max_speed_kmh <= rules.band_kmh(work)
    }

    pub fn length_m(&self) -> f64 {
        self.to_m - self.from_m
    }

    /// The part of it driven from `start_s` to `end_s`, places interpolated by time (as the
    /// truth interpolates times by place); `None` when that is no time at all.
    pub fn between(&self, start_s: f64, end_s: f64) -> Option<TruthStretch> {
        let duration_s = self.end_s - self.start_s;
        if end_s <= start_s || duration_s <= 0.0 {
            return None;
        }
        let at_m = |t: f64| self.from_m + self.length_m() * ((t - self.start_s) / duration_s);
        Some(TruthStretch {
            from_m: at_m(start_s),
            to_m: at_m(end_s),
            start_s,
            end_s,
            ..*self
        })
    }
}

/// One vehicle's shift: what it sent and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleRun {
    pub id: String,
    pub work: WorkType,
    /// The flusher whose route it drives behind, if it is a trailer.
    pub follows: Option<String>,
    pub fixes: Vec<GenFix>,
    /// In time order, contiguous from the first fix to the end of the shift.
    pub truth: Vec<TruthStretch>,
    pub driven_m: f64,
}

impl VehicleRun {
    /// The fixes as the matcher takes them.
    pub fn observations(&self) -> Vec<Observation> {
        self.fixes
            .iter()
            .map(|f| Observation {
                time_s: f.time_s,
                lon: f.lon,
                lat: f.lat,
                heading_deg: f.heading_deg,
                speed_kmh: f.speed_kmh,
                hdop: f.hdop,
            })
            .collect()
    }

    /// The fixes as the pass rules take them.
    pub fn fix_states(&self) -> Vec<FixState> {
        self.fixes
            .iter()
            .map(|f| FixState {
                time_s: f.time_s,
                speed_kmh: f.speed_kmh,
                satellites: f.satellites,
                tools_on: f.tools_on,
            })
            .collect()
    }
}

/// Names of the kinds the fleet is made of.
fn kind_name(work: WorkType) -> &'static str {
    match work {
        WorkType::Sweep => "sweeper",
        WorkType::WashSweep => "washer-sweeper",
        WorkType::Flush => "flusher",
        WorkType::Sprinkle => "sprinkler",
        WorkType::Manual => "crew",
    }
}

/// RNG streams: one for the districts, three per vehicle (route, driving, GPS), so that the
/// routes and drives do not change with the GPS settings.
fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The fleet's shift on `network`, the same for the same `config`.
pub fn generate(network: &RoadNetwork, config: &GenConfig) -> Vec<VehicleRun> {
    let rules = CoverageRules::default();
    let geometry = Geometry::new(network);
    let graph = Graph::new(network);
    let both_sided: Vec<bool> = network
        .segments()
        .iter()
        .map(|s| rules.sides(s) == 2)
        .collect();
    let noise = Noise {
        sigma_m: config.gps_sigma_m,
        correlation_s: config.gps_correlation_s,
        dropout_share: config.dropout_share,
        dropout_gap_s: config.dropout_gap_s,
        multipath_per_hour: config.multipath_per_hour,
    };
    let mut setup = stream(config.seed, 0);
    let core = graph.core_nodes();
    let Some(&hub) = core.choose(&mut setup) else {
        return Vec::new();
    };
    // District centres: nodes near the hub, so that districts overlap.
    let mut near_hub = Vec::new();
    graph.search(hub, |node, d| {
        near_hub.push(node);
        d <= config.district_spread_m
    });
    let fleet = &config.fleet;
    let kinds = std::iter::repeat_n(WorkType::Sweep, fleet.sweepers)
        .chain(std::iter::repeat_n(
            WorkType::WashSweep,
            fleet.washer_sweepers,
        ))
        .chain(std::iter::repeat_n(WorkType::Flush, fleet.flushers))
        .chain(std::iter::repeat_n(WorkType::Sprinkle, fleet.sprinklers));
    let mut counts = [0usize; WorkType::ALL.len()];
    let mut next_id = |work: WorkType| {
        let n = &mut counts[work as usize];
        *n += 1;
        format!("{}-{n}", kind_name(work))
    };
    let shift_s = config.shift_hours * 3600.0;
    let mut runs = Vec::new();
    let mut trailers = 0usize;
    for work in kinds {
        let v = runs.len() as u64;
        let centre = *near_hub.choose(&mut setup).expect("the hub is near itself");
        let road_m = if work == WorkType::Flush {
            config.flusher_district_road_m
        } else {
            config.district_road_m
        };
        let district = plan::district(&graph, centre, road_m);
        let band_kmh = rules.band_kmh(work);
        // Plans outlast the shift: the expected pace is faster than any driven average.
        let pace = Pace {
            work_mps: band_kmh / 3.6,
            transit_mps: 40.0 / 3.6,
        };
        let mut route_rng = stream(config.seed, 1 + 3 * v);
        let pieces = plan::plan(
            &graph,
            &district,
            &both_sided,
            centre,
            &pace,
            shift_s,
            config.u_turn_share,
            &mut route_rng,
        );
        let start_s = config.epoch_s + setup.random_range(0.0..=config.start_spread_s).round();
        let id = next_id(work);
        let shift = Shift {
            start_s,
            end_s: start_s + shift_s,
            band_kmh,
            overspeed_share: config.overspeed_share,
        };
        let driven = drive::drive(
            network,
            &geometry,
            &pieces,
            &shift,
            &mut stream(config.seed, 2 + 3 * v),
        );
        let fixes = gps::observe(
            &driven.track,
            &geometry,
            &noise,
            &mut stream(config.seed, 3 + 3 * v),
        );
        runs.push(VehicleRun {
            id: id.clone(),
            work,
            follows: None,
            fixes,
            truth: driven.truth,
            driven_m: driven.driven_m,
        });
        if work != WorkType::Flush {
            continue;
        }
        // The convoy: a sweeper or washer-sweeper on the flusher's route, as far as the
        // flusher got, some time behind (DOMAIN.md: "the flusher runs ahead of the
        // washer-sweeper").
        let trail_work = if trailers.is_multiple_of(2) {
            WorkType::WashSweep
        } else {
            WorkType::Sweep
        };
        trailers += 1;
        let v = runs.len() as u64;
        let delay_s = setup
            .random_range(config.trail_delay_s.0..=config.trail_delay_s.1)
            .round();
        let trail_shift = Shift {
            start_s: start_s + delay_s,
            end_s: start_s + delay_s + shift_s,
            band_kmh: rules.band_kmh(trail_work),
            overspeed_share: config.overspeed_share,
        };
        let trailed = drive::drive(
            network,
            &geometry,
            &driven.driven_plan,
            &trail_shift,
            &mut stream(config.seed, 2 + 3 * v),
        );
        let fixes = gps::observe(
            &trailed.track,
            &geometry,
            &noise,
            &mut stream(config.seed, 3 + 3 * v),
        );
        runs.push(VehicleRun {
            id: next_id(trail_work),
            work: trail_work,
            follows: Some(id),
            fixes,
            truth: trailed.truth,
            driven_m: trailed.driven_m,
        });
    }
    runs
}
