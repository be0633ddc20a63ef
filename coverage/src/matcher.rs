//! Hidden-Markov-model map matching (Newson & Krumm 2009) with Viterbi decoding.
//!
//! States are places on a segment in one driving direction. Emission: the distance from the
//! fix to the road (normal with the fix's own expected error, [`GpsErrors`],
//! robust beyond a few σ) and, when moving, the angle between the fix's heading and the
//! road's direction. Transition: |route distance − straight-line distance| / β
//! (exponential), routes only where driving is allowed. Fixes that moved less than
//! `min_move_m` since the last decoded one are not decoded (Newson & Krumm drop points within
//! 2σ); afterwards they are placed on the decoded path between their neighbours.

use std::ops::Range;
use std::sync::Arc;

use cleanfleet_roads::RoadNetwork;
use serde::Deserialize;

use crate::index::{Candidate, SegmentIndex};
use crate::plane::distance;
use crate::router::Router;
use crate::smooth::{along_drive, AlongFix};

/// One fix of a vehicle, in time order within a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Seconds on any fixed scale (e.g. Unix time).
    pub time_s: f64,
    pub lon: f64,
    pub lat: f64,
    /// Course over ground, degrees from north.
    pub heading_deg: Option<f64>,
    pub speed_kmh: Option<f64>,
    /// Horizontal dilution of precision, a geometry factor without unit: the fix's expected
    /// error is about HDOP × UERE ([`GpsErrors`]).
    pub hdop: Option<f64>,
}

impl Observation {
    /// What the matcher uses of a stored fix.
    pub fn from_fix(f: &cleanfleet_model::Fix) -> Observation {
        Observation {
            time_s: f.time.as_millisecond() as f64 / 1000.0,
            lon: f.lon,
            lat: f.lat,
            heading_deg: f.heading_deg,
            speed_kmh: f.speed_kmh,
            hdop: f.hdop,
        }
    }
}

/// Tuning of the matcher; every field has a default for 1 Hz truck GPS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    /// The least expected error of a fix (normal σ), and the error of a fix without HDOP.
    /// Default 5.
    pub gps_sigma_m: f64,
    /// User equivalent range error: a fix's expected error is its HDOP × this (but at least
    /// `gps_sigma_m`), so a street canyon's HDOP 12 means σ 30 m, trusted less, never cut
    /// off. Default 2.5.
    pub uere_m: f64,
    /// Beyond this many σ the emission cost grows linearly, not quadratically (Huber), so
    /// that a multipath jump cannot drag the match to another road. Default 3.
    pub robust_sigmas: f64,
    /// Roads farther than this from a fix, and than `outlier_sigmas` of its expected error,
    /// are not candidates; a fix with none is left unmatched. Default 50.
    pub search_radius_m: f64,
    /// Nearest segments kept per fix. Default 8.
    pub max_candidates: usize,
    /// Scale of the exponential transition model: about 1.6 × `gps_sigma_m` fits 1 Hz
    /// data (tuned on Monaco, docs/benchmarks.md). Default 8.
    pub beta_m: f64,
    /// Cost of driving against the fix's heading (a half-turn costs this much, in units of
    /// negative log-likelihood). Default 6.
    pub heading_weight: f64,
    /// Headings of slower fixes are ignored. Default 5.
    pub heading_min_speed_kmh: f64,
    /// A fix closer than this, or than `min_move_sigmas` of its expected error, to the last
    /// decoded one is placed afterwards. Default 10.
    pub min_move_m: f64,
    /// Default 2.
    pub min_move_sigmas: f64,
    /// ... unless this long has passed since the last decoded fix. Default 30.
    pub max_skip_s: f64,
    /// Fixes are taken for outliers (`outlier_cost`) for at most this long in a row; while
    /// they are, also fixes no road near the held place can reach in time (a multipath
    /// episode thrown onto another road). Beyond, the trace breaks at the next such fix.
    /// Default 30.
    pub max_outlier_s: f64,
    /// Routes implying a faster drive are impossible. Default 130.
    pub max_speed_kmh: f64,
    /// Across a longer silence the route is not inferred: the trace breaks. Default 180.
    pub max_gap_s: f64,
    /// Backwards movement along a road up to this much, or up to `reverse_sigmas` of the
    /// two fixes' combined expected error when that is more, is GPS jitter (of a slow or
    /// standing vehicle), not a drive around the block. Default 20.
    pub reverse_tolerance_m: f64,
    /// Default 3.
    pub reverse_sigmas: f64,
    /// Cost of turning back in the middle of a segment, in units of negative
    /// log-likelihood (on top of the distance driven). Default 10.
    pub u_turn_cost: f64,
    /// A fix farther than this many of its expected errors (plus half the carriageway)
    /// from where its matched drive places it is an outlier (multipath): left unmatched,
    /// the drive goes on between its neighbours. Default 4.
    pub outlier_sigmas: f64,
    /// What taking a decoded fix for an outlier costs in the Viterbi (negative
    /// log-likelihood; a fit at z σ costs about z²/2): below this the matcher would rather
    /// hold the vehicle where it was than drive out to a thrown fix and back. Default 6.
    pub outlier_cost: f64,
    /// The error of reported (Doppler) speeds: along its matched drive a vehicle's place
    /// at each fix follows its speeds to within this, corrected by the fixes' places.
    /// Default 4.
    pub speed_error_kmh: f64,
    /// GPS errors of fixes this far apart in time are correlated by 1/e (the same
    /// satellites, the same reflections): a run of fixes a second apart counts as evidence
    /// of place about once per this long, not once per fix. A trace with enough fixes a
    /// second or two apart shows its own ([`Matcher::learn_errors`]); this is for the
    /// others. 0 treats every fix as independent. Default 10.
    pub gps_error_correlation_s: f64,
}

/// How far off a trace's fixes are expected to be: HDOP × UERE, at least a floor. The
/// configured UERE and floor, unless the trace's own fixes show that the device errs more
/// than its HDOP says (a worse receiver, a device that reports no HDOP or a constant one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsErrors {
    pub uere_m: f64,
    pub floor_m: f64,
    /// No error is taken to be larger (the search radius: a road farther away is no
    /// candidate), so the checks that rest on the error keep a meaning even at HDOP 100.
    pub ceiling_m: f64,
    /// Errors this far apart in time are correlated by 1/e; 0: independent.
    pub correlation_s: f64,
}

impl GpsErrors {
    /// A fix's expected error (σ of a normal error, metres).
    pub fn error_m(&self, o: &Observation) -> f64 {
        o.hdop
            .map_or(self.floor_m, |h| (h * self.uere_m).max(self.floor_m))
            .min(self.ceiling_m)
    }
}

/// Distances of a fix to its nearest road are the perpendicular part of its error,
/// |N(0, σ)|: their median × this estimates σ.
const MEDIAN_ABS_TO_SIGMA: f64 = 1.4826;
/// Every this many fixes is sampled for that.
const ERROR_SAMPLE_EVERY: usize = 5;
/// Fewer samples say nothing.
const MIN_ERROR_SAMPLES: usize = 20;
/// The median of a two-dimensional normal error's length, in σ.
const RAYLEIGH_MEDIAN: f64 = 1.1774;
/// Fixes at most this far apart show how their errors are correlated.
const CORRELATION_PAIR_MAX_S: f64 = 2.0;
/// Below this a vehicle may be standing, and its receiver holding its position.
const MOVING_KMH: f64 = 1.0;
/// The median of an exponential distribution, in its mean.
const EXPONENTIAL_MEDIAN: f64 = std::f64::consts::LN_2;
/// Fixes this much farther from their matched places than their errors say make the trace
/// matched again with larger errors.
const RESCALE_ABOVE: f64 = 1.3;

impl MatchConfig {
    /// Checks every number, naming the first that makes no sense.
    pub fn check(&self) -> Result<(), String> {
        use crate::rules::{non_negative, positive};
        for (name, v) in [
            ("gps_sigma_m", self.gps_sigma_m),
            ("uere_m", self.uere_m),
            ("robust_sigmas", self.robust_sigmas),
            ("search_radius_m", self.search_radius_m),
            ("beta_m", self.beta_m),
            ("max_speed_kmh", self.max_speed_kmh),
            ("max_gap_s", self.max_gap_s),
            ("outlier_sigmas", self.outlier_sigmas),
            ("outlier_cost", self.outlier_cost),
            ("speed_error_kmh", self.speed_error_kmh),
        ] {
            positive(name, v)?;
        }
        for (name, v) in [
            ("heading_weight", self.heading_weight),
            ("heading_min_speed_kmh", self.heading_min_speed_kmh),
            ("min_move_m", self.min_move_m),
            ("min_move_sigmas", self.min_move_sigmas),
            ("max_skip_s", self.max_skip_s),
            ("max_outlier_s", self.max_outlier_s),
            ("reverse_tolerance_m", self.reverse_tolerance_m),
            ("reverse_sigmas", self.reverse_sigmas),
            ("u_turn_cost", self.u_turn_cost),
            ("gps_error_correlation_s", self.gps_error_correlation_s),
        ] {
            non_negative(name, v)?;
        }
        if self.max_candidates == 0 {
            return Err("max_candidates must be at least 1".into());
        }
        // The stage matches each hour with this much of its neighbours: a longer silence could
        // not be bridged across an hour, and an hour without fixes could hold passes.
        if self.max_gap_s > crate::chunk::CONTEXT_S {
            return Err(format!(
                "max_gap_s must be at most {} (the context each hour is matched with)",
                crate::chunk::CONTEXT_S
            ));
        }
        Ok(())
    }

    /// The configured error model.
    pub fn gps_errors(&self) -> GpsErrors {
        GpsErrors {
            uere_m: self.uere_m,
            floor_m: self.gps_sigma_m,
            ceiling_m: self.search_radius_m.max(self.gps_sigma_m),
            correlation_s: self.gps_error_correlation_s,
        }
    }
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            gps_sigma_m: 5.0,
            uere_m: 2.5,
            robust_sigmas: 3.0,
            search_radius_m: 50.0,
            max_candidates: 8,
            beta_m: 8.0,
            heading_weight: 6.0,
            heading_min_speed_kmh: 5.0,
            min_move_m: 10.0,
            min_move_sigmas: 2.0,
            max_skip_s: 30.0,
            max_outlier_s: 30.0,
            max_speed_kmh: 130.0,
            max_gap_s: 180.0,
            reverse_tolerance_m: 20.0,
            reverse_sigmas: 3.0,
            u_turn_cost: 10.0,
            outlier_sigmas: 4.0,
            outlier_cost: 6.0,
            speed_error_kmh: 4.0,
            gps_error_correlation_s: 10.0,
        }
    }
}

/// Where a fix was matched: a place on a segment, in a driving direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchedPoint {
    pub segment: u32,
    /// Driving from the segment's `from_node` to its `to_node`.
    pub forward: bool,
    /// Along the segment in the driving direction, from the node it is entered at.
    pub offset_m: f64,
    /// From the fix to that place.
    pub distance_m: f64,
    /// From the fix to the segment itself: how far off the road it is, whatever its error
    /// along the road.
    pub off_road_m: f64,
    /// The fix's expected error ([`GpsErrors`]).
    pub error_m: f64,
}

/// A stretch driven along one segment: `from_m..=to_m` in the driving direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traversal {
    pub segment: u32,
    pub forward: bool,
    pub from_m: f64,
    pub to_m: f64,
}

/// The drive between two consecutive matched fixes.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub from_point: usize,
    pub to_point: usize,
    /// Index range in [`MatchedTrace::traversals`].
    pub traversals: Range<usize>,
}

/// The result of matching a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatchedTrace {
    /// One per observation; `None` where no road was near or the fix did not fit.
    pub points: Vec<Option<MatchedPoint>>,
    /// Between consecutive matched points of an unbroken run, in order.
    pub legs: Vec<Leg>,
    pub traversals: Vec<Traversal>,
}

impl MatchedTrace {
    pub fn leg_traversals(&self, leg: &Leg) -> &[Traversal] {
        &self.traversals[leg.traversals.clone()]
    }
}

/// A hidden state: a candidate place in one driving direction.
#[derive(Debug, Clone, Copy)]
struct State {
    segment: u32,
    forward: bool,
    offset_m: f64,
    distance_m: f64,
    /// The fix is an outlier: the vehicle is held where the state before put it, since
    /// the time of the last fix that placed it there.
    held_since_s: Option<f64>,
}

impl State {
    fn held(&self) -> bool {
        self.held_since_s.is_some()
    }
}

/// A decoded step of the Viterbi lattice.
struct Step {
    point: usize,
    states: Range<usize>,
}

/// How the best route between two states goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    /// Further along the same traversal (or standing with jitter).
    Along,
    /// Turning back in the middle of the segment.
    UTurn,
    /// To the end of the first segment, over the network, into the second.
    Network,
}

/// Matches traces against one road network. Keeps scratch space between traces: use one
/// matcher per thread.
pub struct Matcher<'n> {
    network: &'n RoadNetwork,
    index: Arc<SegmentIndex>,
    router: Router,
    config: MatchConfig,
    /// The error model of the trace being matched ([`Matcher::learn_errors`]).
    errors: GpsErrors,
    candidates: Vec<Candidate>,
}

impl<'n> Matcher<'n> {
    pub fn new(network: &'n RoadNetwork, config: MatchConfig) -> Matcher<'n> {
        Matcher::with_index(network, Arc::new(SegmentIndex::new(network)), config)
    }

    /// A matcher on the network's index built before (the R-tree is the costly part).
    pub fn with_index(
        network: &'n RoadNetwork,
        index: Arc<SegmentIndex>,
        config: MatchConfig,
    ) -> Matcher<'n> {
        Matcher {
            network,
            index,
            router: Router::new(network),
            errors: config.gps_errors(),
            config,
            candidates: Vec::new(),
        }
    }

    pub fn index(&self) -> &SegmentIndex {
        &self.index
    }

    pub fn config(&self) -> &MatchConfig {
        &self.config
    }

    /// The error model for a trace: the configured one, with its UERE (and floor) raised
    /// when the fixes' distances from the nearest roads show a larger error than their HDOPs
    /// say. Never below the configured model, and never above half the search radius (a
    /// vehicle parked off the roads is not a bad receiver).
    pub fn learn_errors(&self, observations: &[Observation], xy: &[[f64; 2]]) -> GpsErrors {
        let configured = self.config.gps_errors();
        let mut distances: Vec<f64> = xy
            .iter()
            .step_by(ERROR_SAMPLE_EVERY)
            .filter_map(|&p| self.index.nearest_distance_m(p))
            .collect();
        if distances.len() < MIN_ERROR_SAMPLES {
            return configured;
        }
        let sigma_m =
            (median(&mut distances) * MEDIAN_ABS_TO_SIGMA).min(self.config.search_radius_m / 2.0);
        let mut hdops: Vec<f64> = observations.iter().filter_map(|o| o.hdop).collect();
        let uere_m = if hdops.len() >= MIN_ERROR_SAMPLES {
            (sigma_m / median(&mut hdops).max(0.5)).max(configured.uere_m)
        } else {
            configured.uere_m
        };
        let errors = GpsErrors {
            uere_m,
            floor_m: if hdops.is_empty() {
                sigma_m.max(configured.floor_m)
            } else {
                configured.floor_m
            },
            ..configured
        };
        GpsErrors {
            correlation_s: learn_correlation_s(observations, xy, &errors)
                .unwrap_or(configured.correlation_s),
            ..errors
        }
    }

    /// Matches one vehicle's fixes, in time order.
    pub fn match_trace(&mut self, observations: &[Observation]) -> MatchedTrace {
        let xy: Vec<[f64; 2]> = observations
            .iter()
            .map(|o| self.index.plane().to_xy((o.lon, o.lat)))
            .collect();
        self.errors = self.learn_errors(observations, &xy);
        let first = self.match_with(observations, &xy);
        // A fix's distance from where the match placed it, in its expected error, is about
        // Rayleigh(1) when the error model is right (median 1.18). Clearly more: the device
        // errs more than its HDOP says; match again with its errors scaled to what it shows.
        let mut z: Vec<f64> = first
            .points
            .iter()
            .flatten()
            .map(|m| m.distance_m / m.error_m)
            .collect();
        if z.len() < MIN_ERROR_SAMPLES {
            return first;
        }
        let scale = median(&mut z) / RAYLEIGH_MEDIAN;
        if scale <= RESCALE_ABOVE {
            return first;
        }
        let scaled = GpsErrors {
            uere_m: self.errors.uere_m * scale,
            floor_m: (self.errors.floor_m * scale).min(self.errors.ceiling_m),
            ..self.errors
        };
        self.errors = GpsErrors {
            correlation_s: learn_correlation_s(observations, &xy, &scaled)
                .unwrap_or(scaled.correlation_s),
            ..scaled
        };
        self.match_with(observations, &xy)
    }

    /// One Viterbi pass over a trace under the current error model.
    fn match_with(&mut self, observations: &[Observation], xy: &[[f64; 2]]) -> MatchedTrace {
        let mut out = MatchedTrace {
            points: vec![None; observations.len()],
            ..MatchedTrace::default()
        };
        let mut lattice = Lattice::default();
        for (i, o) in observations.iter().enumerate() {
            let Some(last) = lattice.steps.last() else {
                self.start_run(&mut lattice, i, o, xy[i]);
                continue;
            };
            let last_point = last.point;
            let dt = o.time_s - observations[last_point].time_s;
            if dt > self.config.max_gap_s {
                self.finish_run(&lattice, observations, xy, &mut out);
                lattice = Lattice::default();
                self.start_run(&mut lattice, i, o, xy[i]);
                continue;
            }
            let is_last = i + 1 == observations.len();
            // The last fix before a silence is decoded, so the silence is measured from it
            // and the drive up to it is not lost with the skipped fixes.
            let before_silence = observations
                .get(i + 1)
                .is_some_and(|next| next.time_s - o.time_s > self.config.max_skip_s);
            // Newson & Krumm: within 2σ of the last decoded fix a new one says nothing new.
            let min_move_m = self
                .config
                .min_move_m
                .max(self.config.min_move_sigmas * self.errors.error_m(o));
            let moved = distance(xy[last_point], xy[i]) >= min_move_m;
            if !(moved || dt >= self.config.max_skip_s || is_last || before_silence) {
                continue;
            }
            if !self.advance(&mut lattice, observations, xy, last_point, i) {
                // Nothing near, or nothing reachable: a break if roads were near.
                if !self.candidates.is_empty() {
                    self.finish_run(&lattice, observations, xy, &mut out);
                    lattice = Lattice::default();
                    self.start_run(&mut lattice, i, o, xy[i]);
                }
            }
        }
        self.finish_run(&lattice, observations, xy, &mut out);
        out
    }

    fn emission(&self, o: &Observation, state: &State, bearing_deg: f64) -> f64 {
        let z = state.distance_m / self.errors.error_m(o);
        let k = self.config.robust_sigmas;
        let mut cost = if z <= k {
            0.5 * z * z
        } else {
            k * (z - 0.5 * k)
        };
        if let (Some(heading), Some(speed)) = (o.heading_deg, o.speed_kmh) {
            if speed >= self.config.heading_min_speed_kmh {
                let road = if state.forward {
                    bearing_deg
                } else {
                    bearing_deg + 180.0
                };
                let diff = (heading - road).to_radians();
                cost += self.config.heading_weight * 0.5 * (1.0 - diff.cos());
            }
        }
        cost
    }

    /// The states of observation `o` into `lattice.states` with their emission costs;
    /// returns how many.
    fn states_for(&mut self, lattice: &mut Lattice, o: &Observation, p: [f64; 2]) -> usize {
        let mut candidates = std::mem::take(&mut self.candidates);
        // A road is a candidate as far from the fix as its own expected error still makes it
        // an inlier (`outlier_sigmas`), not only within the fixed radius: at HDOP 12 (σ 30 m)
        // a fix 60 m from its road is an ordinary 2 σ error, and with no candidate it would
        // be dropped and the trace lose its road for as long as the error lasts.
        let radius_m = self
            .config
            .search_radius_m
            .max(self.config.outlier_sigmas * self.errors.error_m(o));
        self.index
            .candidates(p, radius_m, self.config.max_candidates, &mut candidates);
        let before = lattice.states.len();
        for c in &candidates {
            let segment = &self.network.segments()[c.segment as usize];
            for forward in [true, false] {
                if !forward && segment.oneway {
                    continue;
                }
                let state = State {
                    held_since_s: None,
                    segment: c.segment,
                    forward,
                    offset_m: if forward {
                        c.offset_m
                    } else {
                        segment.length_m - c.offset_m
                    },
                    distance_m: c.distance_m,
                };
                lattice
                    .emissions
                    .push(self.emission(o, &state, c.bearing_deg));
                lattice.states.push(state);
            }
        }
        self.candidates = candidates;
        lattice.states.len() - before
    }

    fn start_run(&mut self, lattice: &mut Lattice, i: usize, o: &Observation, p: [f64; 2]) {
        let n = self.states_for(lattice, o, p);
        if n == 0 {
            return;
        }
        let start = lattice.states.len() - n;
        lattice.cost.extend_from_slice(&lattice.emissions[start..]);
        lattice.back.extend(std::iter::repeat_n(u32::MAX, n));
        lattice.steps.push(Step {
            point: i,
            states: start..start + n,
        });
    }

    /// Adds observation `i` as a step; `false` (and the lattice unchanged) if it has no
    /// candidates or none is reachable from the previous step.
    fn advance(
        &mut self,
        lattice: &mut Lattice,
        observations: &[Observation],
        xy: &[[f64; 2]],
        last: usize,
        i: usize,
    ) -> bool {
        let (o, p) = (&observations[i], xy[i]);
        let n = self.states_for(lattice, o, p);
        let start = lattice.states.len() - n;
        if n == 0 {
            return false;
        }
        let between = self.between(observations, xy, last, i);
        let previous = lattice
            .steps
            .last()
            .expect("a run has a step")
            .states
            .clone();
        let mut best = vec![(f64::INFINITY, u32::MAX); n];
        // One search per distinct node the previous states drive towards.
        let mut ends: Vec<u32> = previous
            .clone()
            .map(|k| self.end_node(&lattice.states[k]))
            .collect();
        ends.sort_unstable();
        ends.dedup();
        for end in ends {
            self.router.search(self.network, end, between.bound_m);
            for k in previous.clone() {
                let from = lattice.states[k];
                if self.end_node(&from) != end || !lattice.cost[k].is_finite() {
                    continue;
                }
                for (to, slot) in lattice.states[start..].iter().zip(best.iter_mut()) {
                    let Some((transition, _)) = self.route(&from, to, &between) else {
                        continue;
                    };
                    let cost = lattice.cost[k] + transition;
                    if cost < slot.0 {
                        *slot = (cost, k as u32);
                    }
                }
            }
        }
        // Or the fix is an outlier (multipath): the vehicle stays where the likeliest state
        // before put it, at a fixed cost, rather than driving out to the thrown fix and back
        // — also when no candidate can be reached from there, for at most `max_outlier_s`: a
        // thrown fix must not start a new run on the road it was thrown to (regression:
        // `a_multipath_episode_does_not_strand_the_trace_on_the_road_it_was_thrown_to`).
        let held = previous
            .clone()
            .filter(|&k| lattice.cost[k].is_finite())
            .min_by(|&a, &b| lattice.cost[a].total_cmp(&lattice.cost[b]))
            .map(|k| {
                let since_s = lattice.states[k]
                    .held_since_s
                    .unwrap_or(observations[last].time_s);
                (k, since_s)
            })
            .filter(|&(_, since_s)| o.time_s - since_s <= self.config.max_outlier_s);
        if held.is_none() && best.iter().all(|b| !b.0.is_finite()) {
            lattice.states.truncate(start);
            lattice.emissions.truncate(start);
            return false;
        }
        for (j, (cost, back)) in best.into_iter().enumerate() {
            lattice.cost.push(cost + lattice.emissions[start + j]);
            lattice.back.push(back);
        }
        if let Some((k, since_s)) = held {
            lattice.states.push(State {
                held_since_s: Some(since_s),
                ..lattice.states[k]
            });
            lattice.emissions.push(self.config.outlier_cost);
            lattice
                .cost
                .push(lattice.cost[k] + self.config.outlier_cost);
            lattice.back.push(k as u32);
        }
        lattice.steps.push(Step {
            point: i,
            states: start..lattice.states.len(),
        });
        true
    }

    /// What the drive between observations `a` and `b` may be.
    fn between(
        &self,
        observations: &[Observation],
        xy: &[[f64; 2]],
        a: usize,
        b: usize,
    ) -> Between {
        let (oa, ob) = (&observations[a], &observations[b]);
        let raw_m = distance(xy[a], xy[b]);
        let dt = ob.time_s - oa.time_s;
        let error_m = self.errors.error_m(oa).hypot(self.errors.error_m(ob));
        Between {
            expected_m: expected_m(raw_m, oa.speed_kmh, ob.speed_kmh, dt),
            bound_m: self.route_bound_m(raw_m, dt),
            jitter_m: self
                .config
                .reverse_tolerance_m
                .max(self.config.reverse_sigmas * error_m),
        }
    }

    /// Routes longer than this between two decoded fixes are not considered.
    fn route_bound_m(&self, straight_m: f64, dt: f64) -> f64 {
        // Decoded places carry GPS error too: allow it at both ends.
        let reachable_m =
            self.config.max_speed_kmh / 3.6 * dt.max(1.0) + 2.0 * self.config.search_radius_m;
        let plausible_m =
            2.0 * straight_m + 2.0 * self.config.search_radius_m + 20.0 * self.config.beta_m;
        reachable_m.min(plausible_m)
    }

    fn end_node(&self, s: &State) -> u32 {
        self.network.segments()[s.segment as usize].end_node(s.forward)
    }

    /// The most likely allowed drive from `from` to `to` within `between`, and its
    /// transition cost against the expected length; the router must have searched from
    /// `from`'s end node.
    fn route(&self, from: &State, to: &State, between: &Between) -> Option<(f64, Route)> {
        let Between {
            expected_m: straight_m,
            bound_m,
            jitter_m,
        } = *between;
        let segment = &self.network.segments()[from.segment as usize];
        let beta_m = self.config.beta_m;
        let mut best: Option<(f64, Route)> = None;
        let mut consider = |route_m: f64, extra: f64, how: Route| {
            if route_m > bound_m {
                return;
            }
            let cost = (route_m - straight_m).abs() / beta_m + extra;
            if best.is_none_or(|(b, _)| cost < b) {
                best = Some((cost, how));
            }
        };
        if from.segment == to.segment {
            if from.forward == to.forward {
                // Signed: jitter backwards costs as much as the straight line it disagrees
                // with, so a state in the wrong direction cannot follow the vehicle cheaply.
                if to.offset_m >= from.offset_m - jitter_m {
                    consider(to.offset_m - from.offset_m, 0.0, Route::Along);
                }
            } else {
                let turned_at_m = segment.length_m - from.offset_m;
                consider(
                    (to.offset_m - turned_at_m).abs(),
                    self.config.u_turn_cost,
                    Route::UTurn,
                );
            }
        }
        let to_segment = &self.network.segments()[to.segment as usize];
        if let Some(between_m) = self.router.distance_m(to_segment.start_node(to.forward)) {
            consider(
                segment.length_m - from.offset_m + between_m + to.offset_m,
                0.0,
                Route::Network,
            );
        }
        best
    }

    /// Decodes the run in `lattice` and writes its points and legs.
    fn finish_run(
        &mut self,
        lattice: &Lattice,
        observations: &[Observation],
        xy: &[[f64; 2]],
        out: &mut MatchedTrace,
    ) {
        let Some(last) = lattice.steps.last() else {
            return;
        };
        // Backtrack from the cheapest final state (ties: the first).
        let mut k = last
            .states
            .clone()
            .min_by(|&a, &b| lattice.cost[a].total_cmp(&lattice.cost[b]))
            .expect("a step has states");
        let mut chosen = vec![0usize; lattice.steps.len()];
        for (s, step) in lattice.steps.iter().enumerate().rev() {
            debug_assert!(step.states.contains(&k));
            chosen[s] = k;
            k = lattice.back[k] as usize;
        }
        let decoded: Vec<State> = chosen.iter().map(|&k| lattice.states[k]).collect();
        // Where the vehicle has got to: a vehicle that jitters back along its road stays
        // where it got to, so no distance is driven twice. Routes are still chosen between
        // the decoded states, as Viterbi chose them (regression:
        // `standing_jitter_back_is_no_teleport`).
        let first_point = lattice.steps[0].point;
        let mut drive = Drive::new(decoded[0], first_point);
        let mut reached = decoded[0];
        for s in 0..lattice.steps.len() - 1 {
            let (point, next) = (lattice.steps[s].point, lattice.steps[s + 1].point);
            let between = self.between(observations, xy, point, next);
            let (from, to) = (decoded[s], decoded[s + 1]);
            let Some(path) = self.path(&from, &reached, &to, &between) else {
                // No drive joins them (cannot happen for states Viterbi linked): the legs
                // break here rather than invent one.
                self.write_drive(
                    std::mem::replace(&mut drive, Drive::new(to, next)),
                    observations,
                    xy,
                    out,
                );
                reached = to;
                continue;
            };
            let arrived = path[path.len() - 1];
            reached = to;
            reached.offset_m = arrived.to_m;
            self.place_skipped(point, next, &path, drive.length_m(), xy, &mut drive.fixes);
            drive.extend(&path);
            if !to.held() {
                drive.fixes.push((next, drive.length_m()));
            }
        }
        self.write_drive(drive, observations, xy, out);
    }

    /// Writes the places of a drive's fixes, fused with their speeds ([`crate::smooth`]),
    /// and its legs between them.
    fn write_drive(
        &self,
        drive: Drive,
        observations: &[Observation],
        xy: &[[f64; 2]],
        out: &mut MatchedTrace,
    ) {
        if drive.route.is_empty() {
            let (point, state) = (drive.fixes[0].0, drive.first);
            out.points[point] = Some(MatchedPoint {
                segment: state.segment,
                forward: state.forward,
                offset_m: state.offset_m,
                distance_m: state.distance_m,
                off_road_m: state.distance_m,
                error_m: self.errors.error_m(&observations[point]),
            });
            return;
        }
        let fixes: Vec<AlongFix> = drive
            .fixes
            .iter()
            .map(|&(point, along_m)| {
                let o = &observations[point];
                AlongFix {
                    time_s: o.time_s,
                    along_m,
                    error_m: self.errors.error_m(o),
                    speed_kmh: o.speed_kmh,
                }
            })
            .collect();
        let places = along_drive(
            &fixes,
            drive.length_m(),
            self.config.speed_error_kmh,
            self.errors.correlation_s,
        );
        let mut previous: Option<(usize, (usize, f64))> = None;
        for (&(point, _), &along_m) in drive.fixes.iter().zip(&places) {
            let (entry, offset_m) = drive.place(along_m);
            let t = drive.route[entry];
            let segment = &self.network.segments()[t.segment as usize];
            let segment_offset_m = if t.forward {
                offset_m
            } else {
                segment.length_m - offset_m
            };
            let here = self.index.point_at(t.segment, segment_offset_m);
            let (distance_m, error_m) = (
                distance(here, xy[point]),
                self.errors.error_m(&observations[point]),
            );
            let last = point == drive.fixes[drive.fixes.len() - 1].0;
            if distance_m > self.config.outlier_sigmas * error_m + segment.width_m / 2.0
                && (previous.is_some() || !last)
            {
                continue;
            }
            out.points[point] = Some(MatchedPoint {
                segment: t.segment,
                forward: t.forward,
                offset_m,
                distance_m,
                off_road_m: self.index.distance_near_m(
                    t.segment,
                    segment_offset_m,
                    distance_m,
                    xy[point],
                ),
                error_m,
            });
            if let Some((from_point, from)) = previous {
                self.push_leg(
                    from_point,
                    point,
                    &drive.route,
                    from,
                    (entry, offset_m),
                    out,
                );
            }
            previous = Some((point, (entry, offset_m)));
        }
    }

    /// The traversals of the drive from decoded state `from` to decoded state `to`, the way
    /// Viterbi chose it, starting where the vehicle had got to (`reached`: `from`, or
    /// further along the same traversal); `None` if no allowed drive joins them.
    fn path(
        &mut self,
        from: &State,
        reached: &State,
        to: &State,
        between: &Between,
    ) -> Option<Vec<Traversal>> {
        debug_assert_eq!(
            (from.segment, from.forward),
            (reached.segment, reached.forward)
        );
        let end = self.end_node(from);
        self.router.search(self.network, end, between.bound_m);
        let from_segment = &self.network.segments()[from.segment as usize];
        let at_m = reached.offset_m.max(from.offset_m);
        let (_, how) = self.route(from, to, between)?;
        Some(match how {
            Route::Along => vec![Traversal {
                segment: from.segment,
                forward: from.forward,
                from_m: at_m,
                to_m: to.offset_m.max(at_m),
            }],
            Route::UTurn => {
                // Where the vehicle turned, in its first direction: where it had got to, or
                // further on if it arrives behind that place in the other direction.
                let turned_m = at_m.max(from_segment.length_m - to.offset_m);
                vec![
                    Traversal {
                        segment: from.segment,
                        forward: from.forward,
                        from_m: at_m,
                        to_m: turned_m,
                    },
                    Traversal {
                        segment: to.segment,
                        forward: to.forward,
                        from_m: from_segment.length_m - turned_m,
                        to_m: to.offset_m,
                    },
                ]
            }
            Route::Network => {
                let to_segment = &self.network.segments()[to.segment as usize];
                let between = self
                    .router
                    .path(self.network, to_segment.start_node(to.forward))?;
                let mut path = Vec::with_capacity(between.len() + 2);
                path.push(Traversal {
                    segment: from.segment,
                    forward: from.forward,
                    from_m: at_m,
                    to_m: from_segment.length_m,
                });
                for (segment, forward) in between {
                    path.push(Traversal {
                        segment,
                        forward,
                        from_m: 0.0,
                        to_m: self.network.segments()[segment as usize].length_m,
                    });
                }
                path.push(Traversal {
                    segment: to.segment,
                    forward: to.forward,
                    from_m: 0.0,
                    to_m: to.offset_m,
                });
                path
            }
        })
    }

    /// The places along `path` (a decoded step's drive, which starts `base_m` into the
    /// run's drive) of the fixes skipped between decoded points `a` and `b`: each its
    /// nearest place, never behind the one before; fixes farther than the search radius from
    /// it are left unmatched.
    fn place_skipped(
        &self,
        a: usize,
        b: usize,
        path: &[Traversal],
        base_m: f64,
        xy: &[[f64; 2]],
        placed: &mut Vec<(usize, f64)>,
    ) {
        // Position along the path: (traversal index, offset within the traversal's segment),
        // and the distance driven to it.
        let mut at = (0usize, path[0].from_m);
        let starts_m: Vec<f64> = path
            .iter()
            .scan(0.0, |sum, t| {
                let start = *sum;
                *sum += t.to_m - t.from_m;
                Some(start)
            })
            .collect();
        for (p, &fix) in xy.iter().enumerate().take(b).skip(a + 1) {
            let mut best: Option<(f64, (usize, f64))> = None;
            for (t, traversal) in path.iter().enumerate().skip(at.0) {
                let c = self.index.project(traversal.segment, fix);
                let length_m = self.network.segments()[traversal.segment as usize].length_m;
                let along_m = if traversal.forward {
                    c.offset_m
                } else {
                    length_m - c.offset_m
                };
                let low_m = if t == at.0 { at.1 } else { traversal.from_m };
                let offset_m = along_m.clamp(low_m, traversal.to_m.max(low_m));
                let here = self.index.point_at(
                    traversal.segment,
                    if traversal.forward {
                        offset_m
                    } else {
                        length_m - offset_m
                    },
                );
                let d = distance(here, fix);
                if best.is_none_or(|(b, _)| d < b) {
                    best = Some((d, (t, offset_m)));
                }
            }
            let Some((d, position)) = best else { continue };
            if d > self.config.search_radius_m {
                continue;
            }
            let driven_m = starts_m[position.0] + position.1 - path[position.0].from_m;
            placed.push((p, base_m + driven_m));
            at = position;
        }
    }

    fn push_leg(
        &self,
        from_point: usize,
        to_point: usize,
        path: &[Traversal],
        from: (usize, f64),
        to: (usize, f64),
        out: &mut MatchedTrace,
    ) {
        let start = out.traversals.len();
        for (t, traversal) in path.iter().enumerate().take(to.0 + 1).skip(from.0) {
            let from_m = if t == from.0 {
                from.1
            } else {
                traversal.from_m
            };
            let to_m = if t == to.0 { to.1 } else { traversal.to_m };
            out.traversals.push(Traversal {
                from_m,
                to_m: to_m.max(from_m),
                ..*traversal
            });
        }
        out.legs.push(Leg {
            from_point,
            to_point,
            traversals: start..out.traversals.len(),
        });
    }
}

/// How long a trace's GPS errors stay correlated, from how far its fixes move between
/// neighbours a second or two apart against how far they err. With errors of σ per axis
/// correlated by ρ from one fix to the next, the move beyond what the reported speed and
/// heading explain has a squared length of mean 4σ²(1 − ρ) (exponentially distributed);
/// white noise moves fixes by their whole error every second, errors that wander slowly
/// barely at all. `None` with too few such pairs (no speeds or headings, standing, sparse
/// fixes).
fn learn_correlation_s(
    observations: &[Observation],
    xy: &[[f64; 2]],
    errors: &GpsErrors,
) -> Option<f64> {
    let mut ratios = Vec::new();
    let mut spacing_s = Vec::new();
    for (w, p) in observations.windows(2).zip(xy.windows(2)) {
        let dt = w[1].time_s - w[0].time_s;
        let (Some(va), Some(vb)) = (w[0].speed_kmh, w[1].speed_kmh) else {
            continue;
        };
        if !(dt > 0.0 && dt <= CORRELATION_PAIR_MAX_S) {
            continue;
        }
        // Only while moving: a receiver that holds its position while standing (static
        // hold) would show as an error that never changes.
        let (Some(ha), Some(hb)) = (w[0].heading_deg, w[1].heading_deg) else {
            continue;
        };
        if va.min(vb) < MOVING_KMH {
            continue;
        }
        let (sa, ca) = ha.to_radians().sin_cos();
        let (sb, cb) = hb.to_radians().sin_cos();
        let heading = (sa + sb).atan2(ca + cb);
        let driven_m = (va + vb) / 2.0 / 3.6 * dt;
        let expected = [driven_m * heading.sin(), driven_m * heading.cos()];
        let moved = [
            p[1][0] - p[0][0] - expected[0],
            p[1][1] - p[0][1] - expected[1],
        ];
        let variance_m2 = errors.error_m(&w[0]).powi(2) + errors.error_m(&w[1]).powi(2);
        ratios.push((moved[0] * moved[0] + moved[1] * moved[1]) / (2.0 * variance_m2));
        spacing_s.push(dt);
    }
    if ratios.len() < MIN_ERROR_SAMPLES {
        return None;
    }
    let one_minus_rho = median(&mut ratios) / EXPONENTIAL_MEDIAN;
    let rho = (1.0 - one_minus_rho).clamp(0.0, 0.999);
    Some(if rho <= 0.0 {
        0.0
    } else {
        -median(&mut spacing_s) / rho.ln()
    })
}

/// An unbroken drive of a run: its traversals end to end, and where along it each of its
/// fixes was placed (before fusing with the speeds).
struct Drive {
    route: Vec<Traversal>,
    /// Per traversal, the distance driven by its end.
    ends_m: Vec<f64>,
    /// (point, distance along the drive), in time order.
    fixes: Vec<(usize, f64)>,
    /// The decoded state of its first fix.
    first: State,
}

impl Drive {
    fn new(first: State, point: usize) -> Drive {
        Drive {
            route: Vec::new(),
            ends_m: Vec::new(),
            fixes: vec![(point, 0.0)],
            first,
        }
    }

    fn length_m(&self) -> f64 {
        self.ends_m.last().copied().unwrap_or(0.0)
    }

    fn extend(&mut self, path: &[Traversal]) {
        for t in path {
            // Never backwards, even by a rounding error.
            let t = &Traversal {
                to_m: t.to_m.max(t.from_m),
                ..*t
            };
            let length_m = self.length_m() + t.to_m - t.from_m;
            match self.route.last_mut() {
                // Further along the same traversal: one piece.
                Some(last)
                    if (last.segment, last.forward) == (t.segment, t.forward)
                        && last.to_m == t.from_m =>
                {
                    last.to_m = t.to_m;
                    *self.ends_m.last_mut().expect("one per traversal") = length_m;
                }
                _ => {
                    self.ends_m.push(length_m);
                    self.route.push(*t);
                }
            }
        }
    }

    /// The traversal and offset `along_m` into the drive (the first traversal that reaches
    /// it).
    fn place(&self, along_m: f64) -> (usize, f64) {
        let k = self
            .ends_m
            .partition_point(|&end| end < along_m)
            .min(self.route.len() - 1);
        let t = self.route[k];
        let start_m = self.ends_m[k] - (t.to_m - t.from_m);
        (k, (t.from_m + along_m - start_m).clamp(t.from_m, t.to_m))
    }
}

/// What the drive between two decoded fixes may be.
#[derive(Debug, Clone, Copy)]
struct Between {
    /// The length it should have ([`expected_m`]).
    expected_m: f64,
    /// Longer routes are not considered.
    bound_m: f64,
    /// Backwards along a road up to this much is jitter.
    jitter_m: f64,
}

/// The median of `values` (reordered).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Reported speeds say how far a vehicle drove between fixes this close in time; across a
/// longer silence it may have driven faster or slower in between, and turned back.
pub(crate) const SPEEDS_HOLD_S: f64 = 10.0;

/// The distance a drive between two fixes should have: from their speeds when both report
/// one (GPS speed comes from Doppler and is far more precise than positions), else the
/// straight line between them. Across a silence longer than [`SPEEDS_HOLD_S`] the speeds at
/// its ends say less and less of the drive between (a sweeper that slowed into a U-turn and
/// sped off after it was sent round a loop), so the estimate leans towards the straight line
/// by the share of the silence the speeds hold for.
fn expected_m(straight_m: f64, speed_a_kmh: Option<f64>, speed_b_kmh: Option<f64>, dt: f64) -> f64 {
    match (speed_a_kmh, speed_b_kmh) {
        (Some(a), Some(b)) => {
            let speeds_m = (a + b) / 2.0 / 3.6 * dt;
            straight_m + (speeds_m - straight_m) * (SPEEDS_HOLD_S / dt).min(1.0)
        }
        _ => straight_m,
    }
}

/// The Viterbi lattice of one unbroken run, flattened: per state its place, emission cost,
/// best cumulative cost and back pointer.
#[derive(Default)]
struct Lattice {
    steps: Vec<Step>,
    states: Vec<State>,
    emissions: Vec<f64>,
    cost: Vec<f64>,
    back: Vec<u32>,
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
