//! Cleaning vehicles and collection trucks driving the road graph.

use std::collections::VecDeque;

use cleanfleet_model::{DeviceKind, Fix, WorkState};
use cleanfleet_roads::{RoadClass, RoadNetwork};
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::truth::{OnSegment, PathPoint, WorkPass};
use super::{fix_batch_message, gaussian, round_to, Identity, SimMessage, World};
use crate::config::FaultConfig;
use crate::drive::{position_along, Core, Edge};

/// Size of a multipath jump.
const MULTIPATH_M: (f64, f64) = (20.0, 60.0);
/// HDOP and satellites a receiver reports during a multipath jump.
const MULTIPATH_HDOP: (f64, f64) = (6.0, 15.0);
const MULTIPATH_SATELLITES: (u8, u8) = (3, 6);
/// Metres per degree of latitude, on the sphere Haversine lengths use.
const METRES_PER_DEGREE: f64 = 111_195.08;
const TRANSIT_KMH: (f64, f64) = (25.0, 40.0);
/// Collection trucks drive between bins a little slower than through traffic.
const TRUCK_KMH: (f64, f64) = (20.0, 35.0);
const WORK_LEG_MIN: (f64, f64) = (10.0, 30.0);
const TRANSIT_LEG_MIN: (f64, f64) = (2.0, 6.0);
/// Share of work legs followed by a transit leg (to another district, tools up).
const TRANSIT_CHANCE: f64 = 0.25;
/// Share of work legs driven too fast for the tools: overspeed work (超速作业) at
/// `OVERSPEED_BAND` times the top of the band.
const OVERSPEED_CHANCE: f64 = 0.05;
const OVERSPEED_BAND: (f64, f64) = (1.15, 1.5);
/// Chance of turning back at an intersection where the road allows it.
const U_TURN_CHANCE: f64 = 0.03;
/// A vehicle with a section prefers streets inside it this much.
const SECTION_WEIGHT: f64 = 20.0;
/// How long a follower waits at an intersection for its leader to drive on.
const WAIT_FOR_LEADER_S: i64 = 20;
const CRUISE_MIN: f64 = 5.0;
const REFILL_MIN: f64 = 10.0;
const UNLOAD_MIN: f64 = 10.0;
const LIFT_S: (f64, f64) = (60.0, 90.0);
const WEIGH_MIN: (f64, f64) = (3.0, 6.0);
/// Refill when the tank is this empty.
const TANK_EMPTY_RATIO: f64 = 0.05;
/// Street debris a sweeper picks up per metre swept.
const DEBRIS_KG_PER_M: f64 = 0.04;
/// A 660 L bin (common in Chinese cities) when full.
const FULL_BIN_KG: f64 = 100.0;
/// Trucks collect bins at least this full.
pub(super) const COLLECT_FILL_RATIO: f64 = 0.5;
/// Bins collected between two trips to the weighbridge.
const BINS_PER_TRIP: (u32, u32) = (4, 8);
/// Recently driven segments are avoided, so that cleaning spreads over the network.
const RECENT_SEGMENTS: usize = 30;
const RECENT_WEIGHT: f64 = 0.1;
/// Bound on intersections passed in one tick; only reachable on zero-length segment loops.
const MAX_NODES_PER_TICK: usize = 1000;

/// What a kind of vehicle carries and how it works.
struct Profile {
    tools: WorkState,
    /// Top speed at which its cleaning counts (DOMAIN.md, "Coverage rules").
    band_kmh: Option<f64>,
    /// Minutes of work a full water tank lasts.
    tank_min: Option<f64>,
    hopper_kg: Option<f64>,
}

fn profile(kind: DeviceKind) -> Profile {
    let tools = |brush, vacuum, water_pump, spray| WorkState {
        brush,
        vacuum,
        water_pump,
        spray,
    };
    match kind {
        DeviceKind::Sweeper => Profile {
            tools: tools(true, true, false, false),
            band_kmh: Some(8.0),
            tank_min: None,
            hopper_kg: Some(1500.0),
        },
        DeviceKind::WasherSweeper => Profile {
            tools: tools(true, true, true, false),
            band_kmh: Some(8.0),
            tank_min: Some(120.0),
            hopper_kg: Some(1500.0),
        },
        DeviceKind::Flusher => Profile {
            tools: tools(false, false, true, false),
            band_kmh: Some(15.0),
            tank_min: Some(40.0),
            hopper_kg: None,
        },
        DeviceKind::Sprinkler => Profile {
            tools: tools(false, false, false, true),
            band_kmh: Some(12.0),
            tank_min: Some(50.0),
            hopper_kg: None,
        },
        _ => Profile {
            tools: WorkState::default(),
            band_kmh: None,
            tank_min: None,
            hopper_kg: None,
        },
    }
}

/// The top working speed of a kind's tools, `None` for vehicles without cleaning tools.
#[cfg(test)]
pub(super) fn work_band_kmh(kind: DeviceKind) -> Option<f64> {
    profile(kind).band_kmh
}

/// The tools a kind has on while working.
#[cfg(test)]
pub(super) fn work_tools(kind: DeviceKind) -> WorkState {
    profile(kind).tools
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Destination {
    Bin(usize),
    Weighbridge(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// Parked before the shift starts.
    Parked,
    /// A follower caught up with its leader.
    WaitForLeader,
    Refill,
    Unload,
    Lift,
    Weigh {
        weighbridge: usize,
        since: Timestamp,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activity {
    Driving {
        working: bool,
        /// Working above the tools' band.
        overspeed: bool,
        target_kmh: f64,
        /// When to choose the next activity; `None` while heading for a destination.
        until: Option<Timestamp>,
        destination: Option<Destination>,
    },
    Stopped {
        until: Timestamp,
        stop: Stop,
    },
}

/// A deep-cleaning pair: a flusher leads and a washer-sweeper follows its trail, so that
/// the streets it flushed are swept soon after (DOMAIN.md, "Deep-cleaned").
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Convoy {
    Alone,
    /// Appends each segment traversal it starts, and whether it works there, to this trail.
    Leads(usize),
    /// Drives the traversals of this trail, in order, as the leader did.
    Follows(usize),
}

/// The traversals a leader started that its follower has not yet: `(edge, working)`.
pub(super) type Trail = VecDeque<(Edge, bool)>;

/// What the vehicle really did at the last fix.
#[derive(Debug, Clone, Copy)]
struct TrueFix {
    position: (f64, f64),
    work: WorkState,
    multipath: bool,
    on: OnSegment,
}

pub(super) struct Vehicle {
    device: usize,
    kind: DeviceKind,
    id: String,
    topic: String,
    rng: ChaCha8Rng,
    profile: Profile,
    edge: Edge,
    /// Distance along `edge` in its driving direction.
    offset_m: f64,
    speed_kmh: f64,
    heading_deg: f64,
    activity: Activity,
    route: VecDeque<Edge>,
    recent: VecDeque<u32>,
    odometer_m: f64,
    water_tank_ratio: Option<f64>,
    load_kg: f64,
    // Collection trucks only.
    lifter_cycles: u64,
    tare_kg: f64,
    bins_this_trip: u32,
    /// Bins to collect before the next trip to the weighbridge.
    bins_per_trip: u32,
    seq: u64,
    batch: Vec<Fix>,
    fault_rng: ChaCha8Rng,
    skew: SignedDuration,
    gps_sigma_m: f64,
    multipath_jump_rate: f64,
    last_truth: Option<TrueFix>,
    /// The traversal being worked, until the tools stop or the vehicle leaves the segment.
    open_pass: Option<WorkPass>,
    convoy: Convoy,
    /// The section it works, an index of [`World::section_of`]'s values.
    section: Option<u32>,
}

impl Vehicle {
    pub fn new(
        identity: Identity,
        kind: DeviceKind,
        faults: &FaultConfig,
        network: &RoadNetwork,
        core: &Core,
        start: Timestamp,
    ) -> Vehicle {
        let Identity {
            device,
            id,
            topic,
            mut rng,
            fault_rng,
            skew,
        } = identity;
        let profile = profile(kind);
        let node = core.nodes()[rng.random_range(0..core.nodes().len())];
        let exits: Vec<Edge> = core.exits(network, node).collect();
        let edge = exits[rng.random_range(0..exits.len())];
        let offset_m = rng.random::<f64>() * network.segments()[edge.0 as usize].length_m;
        let water_tank_ratio = profile.tank_min.map(|_| rng.random_range(0.3..1.0));
        let load_kg = profile
            .hopper_kg
            .map_or(0.0, |h| round_to(rng.random_range(0.0..0.3) * h, 0));
        let heading_deg = position_along(&network.segments()[edge.0 as usize], edge.1, offset_m)
            .1
            .unwrap_or(0.0);
        Vehicle {
            device,
            kind,
            id,
            topic,
            profile,
            edge,
            offset_m,
            speed_kmh: 0.0,
            heading_deg,
            activity: Activity::Stopped {
                until: start,
                stop: Stop::Parked,
            },
            route: VecDeque::new(),
            recent: VecDeque::new(),
            odometer_m: round_to(rng.random_range(1.0e7..2.0e8), 0),
            water_tank_ratio,
            load_kg,
            lifter_cycles: rng.random_range(1_000..50_000),
            tare_kg: round_to(rng.random_range(9_000.0..11_000.0), -1),
            bins_this_trip: 0,
            bins_per_trip: rng.random_range(BINS_PER_TRIP.0..=BINS_PER_TRIP.1),
            seq: 0,
            batch: Vec::new(),
            fault_rng,
            skew,
            gps_sigma_m: faults.gps_sigma_m,
            multipath_jump_rate: faults.multipath_jump_rate,
            last_truth: None,
            open_pass: None,
            convoy: Convoy::Alone,
            section: None,
            rng,
        }
    }

    pub fn pending_fixes(&self) -> usize {
        self.batch.len()
    }

    pub fn device(&self) -> usize {
        self.device
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The segment the vehicle is on if its tools were working at the last fix.
    pub fn cleaning_segment(&self) -> Option<u32> {
        self.last_truth
            .filter(|t| t.work != WorkState::default())
            .map(|t| t.on.segment)
    }

    /// The truth of the last fix recorded, at true time `now`; `None` before the first.
    pub fn truth_point(&self, now: Timestamp) -> Option<PathPoint> {
        let t = self.last_truth?;
        Some(PathPoint {
            device: self.device,
            seq: self.seq,
            time: now,
            lon: t.position.0,
            lat: t.position.1,
            speed_kmh: self.speed_kmh,
            work: t.work,
            multipath: t.multipath,
            on: Some(t.on),
        })
    }

    /// Makes this vehicle lead or follow in a deep-cleaning pair; a follower starts just
    /// behind its leader.
    pub fn join_convoy(&mut self, convoy: Convoy, leader: Option<&Vehicle>) {
        self.convoy = convoy;
        if let Some(leader) = leader {
            self.edge = leader.edge;
            self.offset_m = 0.0;
            self.heading_deg = leader.heading_deg;
        }
    }

    /// Works section `section` from now on (a cleaning vehicle keeps to its section's streets).
    pub fn assign_section(&mut self, section: u32) {
        self.section = Some(section);
    }

    pub fn is_cleaning(&self) -> bool {
        self.profile.band_kmh.is_some()
    }

    /// Ends the pass being worked, if any, into `passes`.
    pub fn close_pass(&mut self, passes: &mut Vec<WorkPass>) {
        passes.extend(self.open_pass.take().filter(|p| p.to_m > p.from_m));
    }

    #[cfg(test)]
    pub fn true_position(&self, network: &RoadNetwork) -> (f64, f64) {
        position_along(
            &network.segments()[self.edge.0 as usize],
            self.edge.1,
            self.offset_m,
        )
        .0
    }

    /// The fix batch so far as a message, if any.
    pub fn take_batch(&mut self, now: Timestamp) -> Option<SimMessage> {
        fix_batch_message(self.device, &self.id, &self.topic, &mut self.batch, now)
    }

    /// Advances one tick and records a fix.
    pub fn step(&mut self, world: &mut World) {
        // The fix reports the tools as they were while moving this tick, before any change of
        // activity at the end of it.
        let mut tools_on = false;
        if let Activity::Stopped { until, stop } = self.activity {
            self.speed_kmh = 0.0;
            if stop == Stop::Refill {
                let per_s = 1.0 / (REFILL_MIN * 60.0);
                self.water_tank_ratio = self
                    .water_tank_ratio
                    .map(|r| (r + per_s * world.dt_s).min(1.0));
            }
            if world.now >= until {
                // May set off at once, in this same tick.
                self.finish_stop(stop, world);
            }
        }
        if let Activity::Driving {
            working,
            overspeed,
            target_kmh,
            until,
            destination,
        } = self.activity
        {
            let driven_m = self.drive(working, overspeed, target_kmh, destination, world);
            tools_on = working && driven_m > 0.0;
            let used_up = self.water_tank_ratio.is_some_and(|r| r <= TANK_EMPTY_RATIO)
                || self.profile.hopper_kg.is_some_and(|h| self.load_kg >= h);
            let leg_over = until.is_some_and(|t| world.now >= t);
            let still_driving = matches!(self.activity, Activity::Driving { .. });
            if still_driving && (leg_over || (working && used_up)) {
                self.decide(world);
            }
        }
        if !tools_on {
            self.close_pass(world.passes);
        }
        self.record_fix(tools_on, world);
    }

    /// The top working speed: the tools' band, or for a convoy's leader its follower's.
    fn work_top_kmh(&self) -> f64 {
        let band = self.profile.band_kmh.expect("only cleaning vehicles work");
        match self.convoy {
            Convoy::Leads(_) => {
                band.min(profile(DeviceKind::WasherSweeper).band_kmh.unwrap_or(band))
            }
            _ => band,
        }
    }

    fn drive(
        &mut self,
        working: bool,
        overspeed: bool,
        target_kmh: f64,
        destination: Option<Destination>,
        world: &mut World,
    ) -> f64 {
        let (low, high) = match (working, overspeed) {
            (true, true) => {
                let band = self.profile.band_kmh.expect("only cleaning vehicles work");
                (OVERSPEED_BAND.0 * band, OVERSPEED_BAND.1 * band)
            }
            // Below the band's top so that GPS speed rounding cannot push work into overspeed.
            (true, false) => (0.4 * self.work_top_kmh(), 0.95 * self.work_top_kmh()),
            _ if self.kind == DeviceKind::CollectionTruck => TRUCK_KMH,
            _ => TRANSIT_KMH,
        };
        let jitter = (high - low) * 0.05 * gaussian(&mut self.rng);
        self.speed_kmh = (target_kmh + jitter).clamp(low, high);
        let speed_m_s = self.speed_kmh / 3.6;
        let tick_start = world.now - SignedDuration::from_secs_f64(world.dt_s);
        let at = |driven_m: f64| tick_start + SignedDuration::from_secs_f64(driven_m / speed_m_s);
        let mut left_m = speed_m_s * world.dt_s;
        let mut driven_m = 0.0;
        for _ in 0..MAX_NODES_PER_TICK {
            let segment = &world.network.segments()[self.edge.0 as usize];
            let to_end_m = segment.length_m - self.offset_m;
            let from_m = self.offset_m;
            let step_m = left_m.min(to_end_m);
            self.offset_m += step_m;
            driven_m += step_m;
            left_m -= step_m;
            if working {
                self.work_along(
                    from_m,
                    at(driven_m - step_m),
                    at(driven_m),
                    overspeed,
                    world,
                );
            }
            if left_m <= 0.0 && step_m < to_end_m {
                break;
            }
            let node = segment.end_node(self.edge.1);
            if let Some(destination) = destination {
                if self.route.is_empty() && node == destination_node(destination, world) {
                    self.arrive(destination, world);
                    break;
                }
            }
            let Some(next) = self.next_edge(node, world) else {
                break;
            };
            debug_assert_eq!(
                world.network.segments()[next.0 as usize].start_node(next.1),
                node
            );
            if let Convoy::Leads(trail) = self.convoy {
                world.trails[trail].push_back((next, working));
            }
            self.close_pass(world.passes);
            self.edge = next;
            self.offset_m = 0.0;
            if self.recent.len() == RECENT_SEGMENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(next.0);
        }
        self.odometer_m += driven_m;
        if working {
            if let (Some(ratio), Some(tank_min)) =
                (self.water_tank_ratio.as_mut(), self.profile.tank_min)
            {
                *ratio = (*ratio - world.dt_s / (tank_min * 60.0)).max(0.0);
            }
            if let Some(hopper_kg) = self.profile.hopper_kg {
                self.load_kg = (self.load_kg + DEBRIS_KG_PER_M * driven_m).min(hopper_kg);
            }
        }
        driven_m
    }

    /// Where to drive on from `node`: along the route, the leader's trail, or a free choice;
    /// `None` when a follower has caught up and waits.
    fn next_edge(&mut self, node: u32, world: &mut World) -> Option<Edge> {
        if let Some(edge) = self.route.pop_front() {
            return Some(edge);
        }
        let Convoy::Follows(trail) = self.convoy else {
            return Some(self.choose_exit(node, world));
        };
        match world.trails[trail].front() {
            Some(&(edge, work))
                if world.network.segments()[edge.0 as usize].start_node(edge.1) == node =>
            {
                world.trails[trail].pop_front();
                let working = matches!(self.activity, Activity::Driving { working: true, .. });
                if work != working {
                    self.activity = self.driving(work, world.now, None);
                }
                Some(edge)
            }
            _ => {
                self.activity = Activity::Stopped {
                    until: world.now + SignedDuration::from_secs(WAIT_FOR_LEADER_S),
                    stop: Stop::WaitForLeader,
                };
                None
            }
        }
    }

    /// Extends the pass on the current traversal, worked from `from_m` to the current
    /// offset between `start` and `end`; another traversal or speed class starts a new one.
    fn work_along(
        &mut self,
        from_m: f64,
        start: Timestamp,
        end: Timestamp,
        overspeed: bool,
        world: &mut World,
    ) {
        let (segment, forward) = self.edge;
        if let Some(open) = &mut self.open_pass {
            let continues = (open.segment, open.forward) == self.edge
                && open.overspeed == overspeed
                && (open.to_m - from_m).abs() < 1e-6;
            if continues {
                open.to_m = self.offset_m;
                open.end = end;
                return;
            }
        }
        self.close_pass(world.passes);
        self.open_pass = Some(WorkPass {
            device: self.device,
            segment,
            forward,
            from_m,
            to_m: self.offset_m,
            start,
            end,
            overspeed,
        });
    }

    /// Driving with the tools on or off at a fresh speed, for `leg` (or until told otherwise).
    fn driving(&mut self, working: bool, now: Timestamp, leg: Option<SignedDuration>) -> Activity {
        let (overspeed, target_kmh) = if !working {
            (false, self.rng.random_range(TRANSIT_KMH.0..TRANSIT_KMH.1))
        } else if self.convoy == Convoy::Alone && self.rng.random_bool(OVERSPEED_CHANCE) {
            let band = self.profile.band_kmh.expect("only cleaning vehicles work");
            (
                true,
                band * self.rng.random_range(OVERSPEED_BAND.0..OVERSPEED_BAND.1),
            )
        } else {
            let top = self.work_top_kmh();
            (false, self.rng.random_range(0.55 * top..0.9 * top))
        };
        Activity::Driving {
            working,
            overspeed,
            target_kmh,
            until: leg.map(|d| now + d),
            destination: None,
        }
    }

    /// A random exit from `node`, rarely a U-turn, avoiding recently driven segments;
    /// cleaning vehicles favour main roads, where cities set their deep-cleaning targets.
    fn choose_exit(&mut self, node: u32, world: &World) -> Edge {
        let exits: Vec<Edge> = world.core.exits(world.network, node).collect();
        let u_turn = (self.edge.0, !self.edge.1);
        if exits.contains(&u_turn) && self.rng.random_bool(U_TURN_CHANCE) {
            return u_turn;
        }
        let candidates: Vec<Edge> = if exits.len() > 1 {
            exits.iter().copied().filter(|&e| e != u_turn).collect()
        } else {
            exits
        };
        let weights: Vec<f64> = candidates
            .iter()
            .map(|&(s, _)| {
                let class_weight = if self.profile.band_kmh.is_some() {
                    match world.network.segments()[s as usize].class {
                        RoadClass::I | RoadClass::II => 3.0,
                        RoadClass::III => 2.0,
                        RoadClass::IV => 1.0,
                    }
                } else {
                    1.0
                };
                let recent = if self.recent.contains(&s) {
                    RECENT_WEIGHT
                } else {
                    1.0
                };
                let home = match (self.section, world.section_of.get(s as usize)) {
                    (Some(mine), Some(Some(theirs))) if mine == *theirs => SECTION_WEIGHT,
                    _ => 1.0,
                };
                class_weight * recent * home
            })
            .collect();
        let mut pick = self.rng.random::<f64>() * weights.iter().sum::<f64>();
        for (edge, w) in candidates.iter().zip(&weights) {
            if pick < *w {
                return *edge;
            }
            pick -= w;
        }
        *candidates
            .last()
            .expect("every core node has an exit inside the core")
    }

    fn minutes(&mut self, (low, high): (f64, f64)) -> SignedDuration {
        SignedDuration::from_secs_f64(self.rng.random_range(low..high) * 60.0)
    }

    /// Chooses what to do next, at the end of a leg or a stop.
    fn decide(&mut self, world: &mut World) {
        if self.kind == DeviceKind::CollectionTruck {
            self.decide_collection(world);
            return;
        }
        let now = world.now;
        let was_working = matches!(self.activity, Activity::Driving { working: true, .. });
        let used_up = self.water_tank_ratio.is_some_and(|r| r <= TANK_EMPTY_RATIO)
            || self.profile.hopper_kg.is_some_and(|h| self.load_kg >= h);
        if !used_up && self.head_for_section(world) {
            return;
        }
        self.activity = if self.water_tank_ratio.is_some_and(|r| r <= TANK_EMPTY_RATIO) {
            Activity::Stopped {
                until: now + SignedDuration::from_mins(REFILL_MIN as i64),
                stop: Stop::Refill,
            }
        } else if self.profile.hopper_kg.is_some_and(|h| self.load_kg >= h) {
            Activity::Stopped {
                until: now + SignedDuration::from_mins(UNLOAD_MIN as i64),
                stop: Stop::Unload,
            }
        } else if let Convoy::Follows(_) = self.convoy {
            // Drives on with the tools on; the next traversal of the trail says the work.
            self.driving(true, now, None)
        } else if was_working && self.rng.random_bool(TRANSIT_CHANCE) {
            let leg = self.minutes(TRANSIT_LEG_MIN);
            self.driving(false, now, Some(leg))
        } else {
            let leg = self.minutes(WORK_LEG_MIN);
            self.driving(true, now, Some(leg))
        };
    }

    /// Outside its section, a vehicle drives (tools up) to a random intersection of it;
    /// returns whether it set off.
    fn head_for_section(&mut self, world: &mut World) -> bool {
        let Some(section) = self.section else {
            return false;
        };
        if matches!(self.convoy, Convoy::Follows(_)) {
            return false;
        }
        let here = world
            .section_of
            .get(self.edge.0 as usize)
            .copied()
            .flatten();
        let nodes = &world.section_nodes[section as usize];
        if here == Some(section) || nodes.is_empty() {
            return false;
        }
        let from = world.network.segments()[self.edge.0 as usize].end_node(self.edge.1);
        let goal = nodes[self.rng.random_range(0..nodes.len())];
        let Some(route) = world.core.route(world.network, from, goal) else {
            return false;
        };
        let length_m: f64 = route
            .iter()
            .map(|&(s, _)| world.network.segments()[s as usize].length_m)
            .sum();
        let target_kmh = self.rng.random_range(TRANSIT_KMH.0..TRANSIT_KMH.1);
        self.route = route.into();
        // Time to get there at the lowest transit speed, then choose again.
        let eta = SignedDuration::from_secs_f64(length_m / (TRANSIT_KMH.0 / 3.6) + 30.0);
        self.activity = Activity::Driving {
            working: false,
            overspeed: false,
            target_kmh,
            until: Some(world.now + eta),
            destination: None,
        };
        true
    }

    /// A collection truck goes to the weighbridge after a few bins, else to the fullest bin
    /// nobody is fetching, else cruises a while.
    fn decide_collection(&mut self, world: &mut World) {
        let now = world.now;
        let trip_done = self.bins_this_trip >= self.bins_per_trip;
        if trip_done && world.weighbridges.is_empty() {
            // Unloads at a station without a weighbridge.
            self.activity = Activity::Stopped {
                until: now + SignedDuration::from_mins(UNLOAD_MIN as i64),
                stop: Stop::Unload,
            };
            return;
        }
        let destination = if trip_done {
            Some(Destination::Weighbridge(
                self.rng.random_range(0..world.weighbridges.len()),
            ))
        } else {
            world
                .bins
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.is_claimed() && b.fill_ratio() >= COLLECT_FILL_RATIO)
                .max_by(|(_, a), (_, b)| a.fill_ratio().total_cmp(&b.fill_ratio()))
                .map(|(i, _)| Destination::Bin(i))
        };
        let target_kmh = self.rng.random_range(TRUCK_KMH.0..TRUCK_KMH.1);
        let Some(destination) = destination else {
            self.activity = Activity::Driving {
                working: false,
                overspeed: false,
                target_kmh,
                until: Some(now + SignedDuration::from_mins(CRUISE_MIN as i64)),
                destination: None,
            };
            return;
        };
        let here = world.network.segments()[self.edge.0 as usize].end_node(self.edge.1);
        let goal = destination_node(destination, world);
        let route = world
            .core
            .route(world.network, here, goal)
            .expect("bins and weighbridges stand on core nodes, reachable from any core node");
        self.route = route.into();
        if let Destination::Bin(bin) = destination {
            world.bins[bin].claim();
        }
        let at_node = self.offset_m >= world.network.segments()[self.edge.0 as usize].length_m;
        if at_node && self.route.is_empty() {
            self.arrive(destination, world);
        } else {
            self.activity = Activity::Driving {
                working: false,
                overspeed: false,
                target_kmh,
                until: None,
                destination: Some(destination),
            };
        }
    }

    fn arrive(&mut self, destination: Destination, world: &mut World) {
        self.speed_kmh = 0.0;
        let now = world.now;
        let (lift_low, lift_high) = LIFT_S;
        self.activity = match destination {
            Destination::Bin(bin) => {
                let fill = world.bins[bin].collect(now, self.device);
                self.load_kg += round_to(fill * FULL_BIN_KG, 0);
                self.lifter_cycles += 1;
                self.bins_this_trip += 1;
                Activity::Stopped {
                    until: now
                        + SignedDuration::from_secs_f64(self.rng.random_range(lift_low..lift_high)),
                    stop: Stop::Lift,
                }
            }
            Destination::Weighbridge(weighbridge) => Activity::Stopped {
                until: now + self.minutes(WEIGH_MIN),
                stop: Stop::Weigh {
                    weighbridge,
                    since: now,
                },
            },
        };
    }

    fn finish_stop(&mut self, stop: Stop, world: &mut World) {
        match stop {
            Stop::Parked | Stop::Lift | Stop::WaitForLeader => {}
            Stop::Refill => self.water_tank_ratio = Some(1.0),
            Stop::Unload => self.end_trip(),
            Stop::Weigh { weighbridge, since } => {
                let ticket = world.weighbridges[weighbridge].ticket(
                    &self.id,
                    since,
                    world.now,
                    self.tare_kg,
                    self.load_kg,
                );
                world.out.push(ticket);
                self.end_trip();
            }
        }
        self.decide(world);
    }

    /// Empties the hopper or body.
    fn end_trip(&mut self) {
        self.load_kg = 0.0;
        self.bins_this_trip = 0;
        self.bins_per_trip = self.rng.random_range(BINS_PER_TRIP.0..=BINS_PER_TRIP.1);
    }

    fn record_fix(&mut self, tools_on: bool, world: &World) {
        let segment = &world.network.segments()[self.edge.0 as usize];
        let ((lon, lat), heading) = position_along(segment, self.edge.1, self.offset_m);
        if let Some(h) = heading {
            self.heading_deg = h;
        }
        let mut north_m = self.gps_sigma_m * gaussian(&mut self.rng);
        let mut east_m = self.gps_sigma_m * gaussian(&mut self.rng);
        // Mostly a clear sky; now and then a street canyon with fewer satellites.
        let (mut hdop, mut satellites) = if self.rng.random_bool(0.03) {
            (
                self.rng.random_range(2.0..5.0),
                self.rng.random_range(4..=7),
            )
        } else {
            (
                self.rng.random_range(0.6..1.5),
                self.rng.random_range(8..=14),
            )
        };
        let multipath =
            self.multipath_jump_rate > 0.0 && self.fault_rng.random_bool(self.multipath_jump_rate);
        if multipath {
            let jump_m = self.fault_rng.random_range(MULTIPATH_M.0..MULTIPATH_M.1);
            let bearing = self.fault_rng.random_range(0.0..std::f64::consts::TAU);
            north_m += jump_m * bearing.cos();
            east_m += jump_m * bearing.sin();
            hdop = self
                .fault_rng
                .random_range(MULTIPATH_HDOP.0..MULTIPATH_HDOP.1);
            satellites = self
                .fault_rng
                .random_range(MULTIPATH_SATELLITES.0..=MULTIPATH_SATELLITES.1);
        }
        let lat_noisy = lat + north_m / METRES_PER_DEGREE;
        let lon_noisy = lon + east_m / (METRES_PER_DEGREE * lat.to_radians().cos());
        let work = if tools_on {
            self.profile.tools
        } else {
            WorkState::default()
        };
        self.last_truth = Some(TrueFix {
            position: (lon, lat),
            work,
            multipath,
            on: OnSegment {
                segment: self.edge.0,
                forward: self.edge.1,
                offset_m: self.offset_m,
            },
        });
        let carries_load =
            self.profile.hopper_kg.is_some() || self.kind == DeviceKind::CollectionTruck;
        self.seq += 1;
        self.batch.push(Fix {
            time: world.now + self.skew,
            seq: Some(self.seq),
            lat: round_to(lat_noisy, 7),
            lon: round_to(lon_noisy, 7),
            speed_kmh: Some(round_to(self.speed_kmh, 1)),
            heading_deg: Some(round_to(self.heading_deg, 1) % 360.0),
            hdop: Some(round_to(hdop, 1)),
            satellites: Some(satellites),
            work,
            water_tank_ratio: self.water_tank_ratio.map(|r| round_to(r, 3)),
            load_kg: carries_load.then(|| round_to(self.load_kg, 0)),
            odometer_m: Some(round_to(self.odometer_m, 1)),
            lifter_cycles: (self.kind == DeviceKind::CollectionTruck).then_some(self.lifter_cycles),
            sos: None,
        });
    }
}

fn destination_node(destination: Destination, world: &World) -> u32 {
    match destination {
        Destination::Bin(i) => world.bins[i].node(),
        Destination::Weighbridge(i) => world.weighbridges[i].node(),
    }
}
