//! Work passes: continuous traversals of one segment in one direction, cut from a matched
//! trace by the vehicle's work state, with whether they count and why not (DOMAIN.md,
//! "Coverage rules").

pub use cleanfleet_model::{InvalidReason, WorkType};
use cleanfleet_roads::RoadNetwork;
use serde::Serialize;

use crate::matcher::{Leg, MatchedTrace, SPEEDS_HOLD_S};
use crate::router::{Edge, Router};
use crate::rules::CoverageRules;

/// What ingest knows of a fix besides its position: one per matched observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixState {
    pub time_s: f64,
    pub speed_kmh: Option<f64>,
    pub satellites: Option<u8>,
    pub tools_on: bool,
}

impl FixState {
    /// What pass rules use of a stored fix from a device doing `work`.
    pub fn from_fix(f: &cleanfleet_model::Fix, work: WorkType) -> FixState {
        FixState {
            time_s: f.time.as_millisecond() as f64 / 1000.0,
            speed_kmh: f.speed_kmh,
            satellites: f.satellites,
            tools_on: work.tools_on(&f.work),
        }
    }
}

/// A continuous traversal of one segment in one direction under one work condition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pass {
    pub segment: u32,
    pub forward: bool,
    /// Covered interval along the segment in the driving direction.
    pub from_m: f64,
    pub to_m: f64,
    pub start_s: f64,
    pub end_s: f64,
    pub work: WorkType,
    /// `None` when the pass counts.
    pub invalid: Option<InvalidReason>,
    /// Fastest reported speed during the pass.
    pub max_speed_kmh: f64,
}

impl Pass {
    pub fn length_m(&self) -> f64 {
        self.to_m - self.from_m
    }

    pub fn is_valid(&self) -> bool {
        self.invalid.is_none()
    }
}

/// Cuts a vehicle's matched trace into passes. `fixes[i]` belongs to the trace's point `i`.
/// A stretch between two fixes is work when the tools were on at both and the later one's
/// speed is in the band (or over it for less than `rules.overspeed_min_s`); stretches across
/// a silence longer than `rules.max_gap_s` are not credited.
///
/// **Physically honest**: no valid pass implies a speed above its work's band by more than
/// `rules.max_implied_speed_ratio` (length ÷ duration), and no valid stretch is longer than
/// the drive the vehicle's own reported speeds allow between its fixes, give or take their
/// expected GPS error; what fails either is poor GPS (the matched path, not the vehicle, is
/// wrong), never work.
pub fn derive_passes(
    network: &RoadNetwork,
    work: WorkType,
    fixes: &[FixState],
    matched: &MatchedTrace,
    rules: &CoverageRules,
) -> Vec<Pass> {
    let band_kmh = rules.band_kmh(work);
    let mut facts: Vec<LegFacts> = Vec::with_capacity(matched.legs.len());
    for (k, leg) in matched.legs.iter().enumerate() {
        let (a, b) = (&fixes[leg.from_point], &fixes[leg.to_point]);
        let dt = b.time_s - a.time_s;
        let leg_m: f64 = matched
            .leg_traversals(leg)
            .iter()
            .map(|t| t.to_m - t.from_m)
            .sum();
        let speed_kmh = b.speed_kmh.unwrap_or(if dt > 0.0 {
            leg_m / dt * 3.6
        } else if leg_m > 0.0 {
            f64::INFINITY
        } else {
            0.0
        });
        // What the vehicle can have driven: its reported speeds say how far (GPS speed is
        // Doppler, far more precise than positions); across a silence it may have driven
        // as fast as its work allows without anyone seeing it.
        // Without a reported speed, the work's band bounds it.
        let reported_kmh = match (a.speed_kmh, b.speed_kmh) {
            (Some(va), Some(vb)) => Some((va + vb) / 2.0),
            (Some(v), None) | (None, Some(v)) => Some(v),
            (None, None) => None,
        };
        let drive_kmh = match reported_kmh {
            Some(v) if dt <= SPEEDS_HOLD_S => v,
            Some(v) => v.max(band_kmh),
            None => band_kmh,
        };
        let drive_m = drive_kmh / 3.6 * dt;
        let error_m = |point: usize| matched.points[point].map_or(0.0, |m| m.error_m);
        let (from_error_m, to_error_m) = (error_m(leg.from_point), error_m(leg.to_point));
        let allowed_m = drive_m * rules.max_implied_speed_ratio
            + rules.path_slack_sigmas * from_error_m.hypot(to_error_m);
        facts.push(LegFacts {
            dt,
            leg_m,
            speed_kmh,
            drive_m,
            error_m: from_error_m.max(to_error_m),
            allowed_m,
            // Where the matched trace broke (a silence, no road near), a pass ends.
            follows: k > 0 && matched.legs[k - 1].to_point == leg.from_point,
            overspeed: speed_kmh > band_kmh,
        });
    }
    forgive_overspeed_blips(&mut facts, rules.overspeed_min_s);
    // Each pass with what the vehicle can have driven during it and the largest error of
    // the fixes behind it.
    let mut passes: Vec<(Pass, f64, f64)> = Vec::new();
    let mut open: Option<(Pass, f64, f64)> = None;
    let mut router = LazyRouter::default();
    for (leg, facts) in matched.legs.iter().zip(&facts) {
        let (a, b) = (&fixes[leg.from_point], &fixes[leg.to_point]);
        let LegFacts {
            dt,
            leg_m,
            speed_kmh,
            ..
        } = *facts;
        let traversals = matched.leg_traversals(leg);
        if !facts.follows || dt > rules.max_gap_s {
            passes.extend(open.take());
        }
        if dt > rules.max_gap_s {
            continue;
        }
        let invalid = leg_condition(network, leg, a, b, facts, matched, rules);
        let mut along_m = 0.0;
        for (k, t) in traversals.iter().enumerate() {
            let length_m = t.to_m - t.from_m;
            // A stretch of the drive between two fixes that neither was at (a street in
            // between, or the rest of the street a fix was on when the leg goes on) is the
            // matcher's guess, unless the vehicle could not have got from one fix to the
            // other in time without it.
            let stretch = if traversals.len() == 1 {
                None
            } else if k == 0 {
                Some(Stretch::AfterFirstFix)
            } else if k + 1 == traversals.len() {
                Some(Stretch::BeforeLastFix)
            } else {
                Some(Stretch::Between((t.segment, t.forward)))
            };
            let invalid = if invalid.is_none()
                && length_m > rules.max_unsupported_pass_m
                && stretch.is_some_and(|stretch| {
                    avoidable(network, &mut router, matched, leg, stretch, facts.allowed_m)
                }) {
                Some(InvalidReason::PoorGps)
            } else {
                invalid
            };
            let at = |m: f64| {
                if leg_m > 0.0 {
                    a.time_s + dt * m / leg_m
                } else {
                    b.time_s
                }
            };
            let (start_s, end_s) = (at(along_m), at(along_m + length_m));
            along_m += length_m;
            let drive_m = if leg_m > 0.0 {
                facts.drive_m * length_m / leg_m
            } else {
                0.0
            };
            if let Some((p, driven_m, error_m)) = open.as_mut() {
                let continues = (p.segment, p.forward) == (t.segment, t.forward)
                    && p.invalid == invalid
                    && t.from_m <= p.to_m + CONTIGUOUS_M
                    && t.to_m >= p.from_m;
                if continues {
                    p.to_m = p.to_m.max(t.to_m);
                    p.end_s = end_s;
                    p.max_speed_kmh = p.max_speed_kmh.max(speed_kmh);
                    *driven_m += drive_m;
                    *error_m = error_m.max(facts.error_m);
                    continue;
                }
            }
            if length_m <= 0.0 {
                // Standing still starts nothing.
                continue;
            }
            passes.extend(open.take());
            let pass = Pass {
                segment: t.segment,
                forward: t.forward,
                from_m: t.from_m,
                to_m: t.to_m,
                start_s,
                end_s,
                work,
                invalid,
                max_speed_kmh: speed_kmh,
            };
            open = Some((pass, drive_m, facts.error_m));
        }
    }
    passes.extend(open);
    // A pass longer than its vehicle can have driven during it (the slack of its fixes'
    // error counted once, not per leg), or faster than its band allows: the match is wrong.
    let mut passes: Vec<Pass> = passes
        .into_iter()
        .map(|(mut p, driven_m, error_m)| {
            let allowed_m =
                driven_m * rules.max_implied_speed_ratio + rules.path_slack_sigmas * error_m;
            if p.invalid.is_none() && p.length_m() > allowed_m {
                p.invalid = Some(InvalidReason::PoorGps);
            }
            p
        })
        .collect();
    for p in passes.iter_mut().filter(|p| p.invalid.is_none()) {
        let band_m = band_kmh / 3.6 * (p.end_s - p.start_s);
        if p.length_m() > band_m * rules.max_implied_speed_ratio {
            p.invalid = Some(InvalidReason::PoorGps);
        }
    }
    for p in &mut passes {
        let segment_m = network.segments()[p.segment as usize].length_m;
        let short = p.length_m() < rules.min_pass_length_m
            && p.length_m() < rules.covered_ratio * segment_m;
        if p.invalid.is_none() && short {
            p.invalid = Some(InvalidReason::TooShort);
        }
    }
    passes
}

/// What one leg of a matched trace shows, before the rules judge it.
struct LegFacts {
    dt: f64,
    /// Length of the matched drive.
    leg_m: f64,
    /// The later fix's reported speed, else the matched drive's.
    speed_kmh: f64,
    /// It starts where the leg before ended.
    follows: bool,
    /// Faster than the work's band for long enough to be overspeed work.
    overspeed: bool,
    /// What the vehicle can have driven: at its reported speeds (either one's when only
    /// one has a speed, its band when neither has), or across a silence at its band when
    /// that is faster.
    drive_m: f64,
    /// The larger expected error of its ends.
    error_m: f64,
    /// The longest drive the fixes at its ends allow: `drive_m` ×
    /// `max_implied_speed_ratio`, plus `path_slack_sigmas` of their expected errors.
    allowed_m: f64,
}

/// Readings over the band for less than `min_s` in a row are the speed's measurement noise
/// around a truck working at the top of its band, not overspeed work.
fn forgive_overspeed_blips(facts: &mut [LegFacts], min_s: f64) {
    let mut k = 0;
    while k < facts.len() {
        if !facts[k].overspeed {
            k += 1;
            continue;
        }
        let (mut end, mut run_s) = (k, 0.0);
        while end < facts.len() && facts[end].overspeed && (end == k || facts[end].follows) {
            run_s += facts[end].dt;
            end += 1;
        }
        if run_s < min_s {
            facts[k..end].iter_mut().for_each(|f| f.overspeed = false);
        }
        k = end;
    }
}

/// Whether the drive of one leg counts, and why not.
fn leg_condition(
    network: &RoadNetwork,
    leg: &Leg,
    a: &FixState,
    b: &FixState,
    facts: &LegFacts,
    matched: &MatchedTrace,
    rules: &CoverageRules,
) -> Option<InvalidReason> {
    // The tools must be on at both ends: across a silence nobody saw them switch.
    if !(a.tools_on && b.tools_on) {
        return Some(InvalidReason::ToolOff);
    }
    let Some(to) = matched.points[leg.to_point] else {
        return Some(InvalidReason::PoorGps);
    };
    // Off the road by more than the fix's own error explains (a lane off the centre line
    // is not error).
    let half_width_m = network.segments()[to.segment as usize].width_m / 2.0;
    // Across the road, not along it: a fix 3.5 σ ahead of its smoothed place but on the
    // road is an ordinary along-track error (one of 2 % at σ 20 m) and no sign of another
    // road.
    let off_road = to.off_road_m > rules.max_match_sigmas * to.error_m + half_width_m;
    // Longer than the vehicle can have driven, beyond what the error of the two places
    // explains.
    if b.satellites.is_some_and(|s| s < rules.min_satellites)
        || off_road
        || facts.leg_m > facts.allowed_m
    {
        Some(InvalidReason::PoorGps)
    } else if facts.overspeed {
        Some(InvalidReason::Overspeed)
    } else {
        None
    }
}

/// A router made when first needed: most traces never ask.
#[derive(Default)]
struct LazyRouter(Option<Router>);

/// A stretch of a leg's drive that no fix was at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stretch {
    /// From the first fix's place to the end of its street.
    AfterFirstFix,
    /// From the start of the last fix's street to its place.
    BeforeLastFix,
    /// A whole street in between.
    Between(Edge),
}

/// Whether the vehicle could have driven from `leg`'s first fix to its last within its
/// `allowed_m` without the `stretch`: turning back on the first fix's street (if it may),
/// arriving at the last fix's place from the far end of its street (if it may), or around
/// a street in between.
fn avoidable(
    network: &RoadNetwork,
    router: &mut LazyRouter,
    matched: &MatchedTrace,
    leg: &Leg,
    stretch: Stretch,
    allowed_m: f64,
) -> bool {
    let (Some(a), Some(b)) = (matched.points[leg.from_point], matched.points[leg.to_point]) else {
        return true;
    };
    let (first, last) = (
        &network.segments()[a.segment as usize],
        &network.segments()[b.segment as usize],
    );
    let (first_edge, last_edge) = ((a.segment, a.forward), (b.segment, b.forward));
    // Where the alternative drive leaves the first street, and how far that is.
    let (source, leave_m) = match stretch {
        Stretch::AfterFirstFix if first.oneway => return false,
        Stretch::AfterFirstFix => (first.start_node(a.forward), a.offset_m),
        _ => (first.end_node(a.forward), first.length_m - a.offset_m),
    };
    // Where it joins the last street, and how far it still is from there.
    let (target, join_m) = match stretch {
        Stretch::BeforeLastFix if last.oneway => return false,
        Stretch::BeforeLastFix => (last.end_node(b.forward), last.length_m - b.offset_m),
        _ => (last.start_node(b.forward), b.offset_m),
    };
    let avoid = match stretch {
        Stretch::AfterFirstFix => first_edge,
        Stretch::BeforeLastFix => last_edge,
        Stretch::Between(edge) if edge == first_edge || edge == last_edge => {
            // A fix is on it.
            return false;
        }
        Stretch::Between(edge) => {
            // Staying on the one street the fixes were both on avoids it.
            if first_edge == last_edge && (0.0..=allowed_m).contains(&(b.offset_m - a.offset_m)) {
                return true;
            }
            edge
        }
    };
    let budget_m = allowed_m - leave_m - join_m;
    if budget_m < 0.0 {
        return false;
    }
    let router = router.0.get_or_insert_with(|| Router::new(network));
    router.search_avoiding(network, source, budget_m, Some(avoid));
    router.distance_m(target).is_some()
}

/// Stretches this close continue a pass (rounding at the seams of legs).
const CONTIGUOUS_M: f64 = 0.5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{Leg, MatchedPoint, Traversal};

    fn demo() -> RoadNetwork {
        RoadNetwork::demo()
    }

    /// A trace along segment 0 forward, a fix every `step_m` from its start (clamped to its
    /// end): hand-made matcher output, so that only the pass rules are tested.
    fn straight_trace(net: &RoadNetwork, points: usize, step_m: f64) -> MatchedTrace {
        let length_m = net.segments()[0].length_m;
        let mut trace = MatchedTrace::default();
        for i in 0..points {
            let offset_m = (i as f64 * step_m).min(length_m);
            trace.points.push(Some(MatchedPoint {
                segment: 0,
                forward: true,
                offset_m,
                distance_m: 2.0,
                off_road_m: 2.0,
                error_m: 5.0,
            }));
            if i > 0 {
                let start = trace.traversals.len();
                trace.traversals.push(Traversal {
                    segment: 0,
                    forward: true,
                    from_m: ((i - 1) as f64 * step_m).min(length_m),
                    to_m: offset_m,
                });
                trace.legs.push(Leg {
                    from_point: i - 1,
                    to_point: i,
                    traversals: start..start + 1,
                });
            }
        }
        trace
    }

    fn fix(time_s: f64, speed_kmh: f64, tools_on: bool) -> FixState {
        FixState {
            time_s,
            speed_kmh: Some(speed_kmh),
            satellites: Some(10),
            tools_on,
        }
    }

    #[test]
    fn a_steady_working_drive_is_one_valid_pass() {
        let net = demo();
        let step_m = net.segments()[0].length_m / 20.0;
        let trace = straight_trace(&net, 21, step_m);
        let fixes: Vec<FixState> = (0..21).map(|i| fix(i as f64 * 6.0, 6.0, true)).collect();
        let passes = derive_passes(
            &net,
            WorkType::Sweep,
            &fixes,
            &trace,
            &CoverageRules::default(),
        );
        assert_eq!(passes.len(), 1, "{passes:?}");
        let p = passes[0];
        assert!(p.is_valid());
        assert_eq!((p.segment, p.forward, p.from_m), (0, true, 0.0));
        assert!((p.to_m - net.segments()[0].length_m).abs() < 1e-9);
        assert_eq!((p.start_s, p.end_s), (0.0, 120.0));
    }

    /// Regression (poor_gps at σ 20 m): a fix far along the road from its smoothed place but
    /// on the road is not off it; one as far across the road is.
    #[test]
    fn a_fix_ahead_of_its_place_on_the_road_is_not_off_the_road() {
        let net = demo();
        let fixes: Vec<FixState> = (0..21).map(|i| fix(i as f64 * 6.0, 6.0, true)).collect();
        let mut ahead = straight_trace(&net, 21, 10.0);
        let point = ahead.points[15].as_mut().unwrap();
        (point.distance_m, point.off_road_m) = (40.0, 1.0);
        let rules = CoverageRules::default();
        let passes = derive_passes(&net, WorkType::Sweep, &fixes, &ahead, &rules);
        assert!(passes.len() == 1 && passes[0].is_valid(), "{passes:?}");
        let mut across = ahead.clone();
        across.points[15].as_mut().unwrap().off_road_m = 40.0;
        let passes = derive_passes(&net, WorkType::Sweep, &fixes, &across, &rules);
        assert!(
            passes
                .iter()
                .any(|p| p.invalid == Some(InvalidReason::PoorGps)),
            "{passes:?}"
        );
    }

    #[test]
    fn tool_off_overspeed_and_poor_gps_split_the_pass_with_their_reasons() {
        let net = demo();
        let mut trace = straight_trace(&net, 21, 10.0);
        // A fix 40 m off its road at an expected error of 5 m.
        trace.points[15].as_mut().unwrap().distance_m = 40.0;
        trace.points[15].as_mut().unwrap().off_road_m = 40.0;
        let fixes: Vec<FixState> = (0..21)
            .map(|i| {
                let mut f = fix(i as f64 * 6.0, 6.0, true);
                match i {
                    5..=7 => f.tools_on = false,
                    10..=12 => f.speed_kmh = Some(8.1),
                    16 => f.satellites = Some(3),
                    _ => {}
                }
                f
            })
            .collect();
        let passes = derive_passes(
            &net,
            WorkType::Sweep,
            &fixes,
            &trace,
            &CoverageRules::default(),
        );
        let summary: Vec<(f64, f64, Option<InvalidReason>)> = passes
            .iter()
            .map(|p| (p.from_m, p.to_m, p.invalid))
            .collect();
        assert_eq!(
            summary,
            [
                (0.0, 40.0, None),
                // Off at 5–7: the legs to them and the leg from 7 (on at one end only).
                (40.0, 80.0, Some(InvalidReason::ToolOff)),
                (80.0, 90.0, None),
                (90.0, 120.0, Some(InvalidReason::Overspeed)),
                (120.0, 140.0, None),
                (140.0, 160.0, Some(InvalidReason::PoorGps)),
                (160.0, 200.0, None),
            ]
        );
    }

    #[test]
    fn the_speed_band_boundary_is_inclusive() {
        let net = demo();
        let trace = straight_trace(&net, 3, 10.0);
        let rules = CoverageRules::default();
        let at = |kmh: f64| {
            let fixes = [
                fix(0.0, kmh, true),
                fix(5.0, kmh, true),
                fix(10.0, kmh, true),
            ];
            derive_passes(&net, WorkType::Flush, &fixes, &trace, &rules)[0].invalid
        };
        let band = rules.band_kmh(WorkType::Flush);
        assert_eq!(at(band), None);
        assert_eq!(at(band + 0.1), Some(InvalidReason::Overspeed));
    }

    /// A drive from an approach road across a diamond to an exit road, with fixes only on
    /// the approach and the exit (a drop-out): the streets between are credited only if
    /// the vehicle could not have got across any other way in the time.
    #[test]
    fn a_street_no_fix_was_on_counts_only_when_it_could_not_be_avoided() {
        use crate::test_networks::network;
        // Approach 0, north arm 1–2, south arm 3–4 (or two streets far away), exit 5.
        let nodes = [
            (-100.0, 0.0),
            (0.0, 0.0),
            (50.0, 40.0),
            (50.0, -40.0),
            (100.0, 0.0),
            (200.0, 0.0),
            (500.0, 500.0),
            (600.0, 500.0),
        ];
        let arms = |south: bool| {
            let (three, four) = if south {
                ((1, 3, false), (3, 4, false))
            } else {
                ((6, 7, false), (7, 6, false))
            };
            network(
                &nodes,
                &[
                    (0, 1, false),
                    (1, 2, false),
                    (2, 4, false),
                    three,
                    four,
                    (4, 5, false),
                ],
            )
        };
        let run = |net: &RoadNetwork| {
            let length = |s: u32| net.segments()[s as usize].length_m;
            let full = |segment: u32| Traversal {
                segment,
                forward: true,
                from_m: 0.0,
                to_m: length(segment),
            };
            let point = |segment: u32, offset_m: f64| {
                Some(MatchedPoint {
                    segment,
                    forward: true,
                    offset_m,
                    distance_m: 2.0,
                    off_road_m: 2.0,
                    error_m: 5.0,
                })
            };
            let trace = MatchedTrace {
                points: vec![point(0, 95.0), point(5, 5.0)],
                legs: vec![Leg {
                    from_point: 0,
                    to_point: 1,
                    traversals: 0..4,
                }],
                traversals: vec![
                    Traversal {
                        from_m: 95.0,
                        ..full(0)
                    },
                    full(1),
                    full(2),
                    Traversal {
                        to_m: 5.0,
                        ..full(5)
                    },
                ],
            };
            // As long apart as the drive takes at 6 km/h.
            let drive_s = (10.0 + length(1) + length(2)) / (6.0 / 3.6);
            let fixes = [fix(0.0, 6.0, true), fix(drive_s, 6.0, true)];
            let passes = derive_passes(
                net,
                WorkType::Sweep,
                &fixes,
                &trace,
                &CoverageRules::default(),
            );
            [1, 2].map(|s| passes.iter().find(|p| p.segment == s).unwrap().invalid)
        };
        assert_eq!(
            run(&arms(true)),
            [Some(InvalidReason::PoorGps); 2],
            "either arm"
        );
        assert_eq!(run(&arms(false)), [None; 2], "the only way across");
    }

    /// A flusher seen 5 m into a 400 m street, then, after two minutes of silence, 5 m into
    /// the next one. The rest of the first street was credited although the flusher could
    /// as well have turned back and gone round the block (found in review): only where it
    /// could not have turned back does the silence's drive count.
    #[test]
    fn the_rest_of_a_street_across_a_silence_counts_only_if_it_could_not_be_avoided() {
        use crate::test_networks::network;
        // A: (0,0)→(400,0); B: (400,0)→(400,50); round the block (0,0)→(0,50)→(400,50).
        let nodes = [(0.0, 0.0), (400.0, 0.0), (400.0, 50.0), (0.0, 50.0)];
        let run = |a_oneway: bool| {
            let net = network(
                &nodes,
                &[
                    (0, 1, a_oneway),
                    (1, 2, false),
                    (0, 3, false),
                    (3, 2, false),
                ],
            );
            let length = |s: u32| net.segments()[s as usize].length_m;
            let point = |segment: u32, offset_m: f64| {
                Some(MatchedPoint {
                    segment,
                    forward: true,
                    offset_m,
                    distance_m: 2.0,
                    off_road_m: 2.0,
                    error_m: 5.0,
                })
            };
            let trace = MatchedTrace {
                points: vec![point(0, 5.0), point(1, 5.0)],
                legs: vec![Leg {
                    from_point: 0,
                    to_point: 1,
                    traversals: 0..2,
                }],
                traversals: vec![
                    Traversal {
                        segment: 0,
                        forward: true,
                        from_m: 5.0,
                        to_m: length(0),
                    },
                    Traversal {
                        segment: 1,
                        forward: true,
                        from_m: 0.0,
                        to_m: 5.0,
                    },
                ],
            };
            let fixes = [fix(0.0, 12.0, true), fix(120.0, 12.0, true)];
            let passes = derive_passes(
                &net,
                WorkType::Flush,
                &fixes,
                &trace,
                &CoverageRules::default(),
            );
            passes.iter().find(|p| p.segment == 0).unwrap().invalid
        };
        assert_eq!(
            run(false),
            Some(InvalidReason::PoorGps),
            "it could have turned back"
        );
        assert_eq!(run(true), None, "one-way: it could not have");
    }

    #[test]
    fn a_short_touch_of_a_long_segment_is_too_short_and_a_gap_is_not_credited() {
        let net = demo();
        let rules = CoverageRules::default();
        let trace = straight_trace(&net, 2, 6.0);
        let fixes = [fix(0.0, 5.0, true), fix(4.0, 5.0, true)];
        let passes = derive_passes(&net, WorkType::Sweep, &fixes, &trace, &rules);
        assert_eq!(passes[0].invalid, Some(InvalidReason::TooShort));

        let trace = straight_trace(&net, 3, 50.0);
        let fixes = [
            fix(0.0, 5.0, true),
            fix(36.0, 5.0, true),
            fix(36.0 + rules.max_gap_s + 1.0, 5.0, true),
        ];
        let passes = derive_passes(&net, WorkType::Sweep, &fixes, &trace, &rules);
        assert_eq!(passes.len(), 1);
        assert_eq!((passes[0].from_m, passes[0].to_m), (0.0, 50.0));
    }

    /// A sprinkler stood in one street for five minutes with its receiver off, and the
    /// matcher rightly broke the trace there; the pass on either side of the silence used
    /// to be joined into one across it, crediting five minutes nobody saw.
    #[test]
    fn a_silence_between_runs_ends_the_pass() {
        let net = demo();
        // Runs [0, 1] and [2, 3], the second starting where the first ended: no leg joins
        // 1 and 2.
        let mut trace = straight_trace(&net, 3, 10.0);
        trace.points.insert(1, trace.points[1]);
        trace.legs[1].from_point = 2;
        trace.legs[1].to_point = 3;
        let fixes = [
            fix(0.0, 6.0, true),
            fix(6.0, 6.0, true),
            fix(306.0, 6.0, true),
            fix(312.0, 6.0, true),
        ];
        let passes = derive_passes(
            &net,
            WorkType::Sprinkle,
            &fixes,
            &trace,
            &CoverageRules::default(),
        );
        let spans: Vec<(f64, f64)> = passes.iter().map(|p| (p.start_s, p.end_s)).collect();
        assert_eq!(spans, [(0.0, 6.0), (306.0, 312.0)], "{passes:?}");
    }

    /// A washer-sweeper working at 7.6–7.9 km/h reports 8.1 now and then (Doppler noise of a
    /// few tenths): each such reading used to cut a one-second "overspeed" hole in its pass,
    /// and with two vehicles' holes to line up, deep-cleaning came out 10–14 % low.
    #[test]
    fn a_reading_over_the_band_for_a_moment_is_noise_not_overspeed() {
        let net = demo();
        let trace = straight_trace(&net, 21, 2.0);
        let rules = CoverageRules::default();
        let band = rules.band_kmh(WorkType::WashSweep);
        let with_over = |over: &[usize]| {
            let fixes: Vec<FixState> = (0..21)
                .map(|i| {
                    fix(
                        i as f64,
                        if over.contains(&i) {
                            band + 0.2
                        } else {
                            band - 0.3
                        },
                        true,
                    )
                })
                .collect();
            derive_passes(&net, WorkType::WashSweep, &fixes, &trace, &rules)
        };
        let blips = with_over(&[4, 9, 10, 15]);
        assert_eq!(blips.len(), 1, "{blips:?}");
        assert!(blips[0].is_valid());
        // Six seconds over the band in a row is overspeed work.
        let sustained = with_over(&[8, 9, 10, 11, 12, 13]);
        let reasons: Vec<Option<InvalidReason>> = sustained.iter().map(|p| p.invalid).collect();
        assert_eq!(reasons, [None, Some(InvalidReason::Overspeed), None]);
    }

    /// A flusher drove off with its pump off, lost its fix for 50 s, and came back with the
    /// pump on: the drive across the silence took the later fix's state and was credited as
    /// flushing nobody saw.
    #[test]
    fn a_silence_between_tools_off_and_tools_on_is_not_work() {
        let net = demo();
        let trace = straight_trace(&net, 3, 100.0);
        let rules = CoverageRules::default();
        let fixes = [
            fix(0.0, 14.0, false),
            fix(50.0, 14.0, true),
            fix(51.0, 14.0, true),
        ];
        let passes = derive_passes(&net, WorkType::Flush, &fixes, &trace, &rules);
        assert_eq!(
            passes[0].invalid,
            Some(InvalidReason::ToolOff),
            "{passes:?}"
        );
        assert_eq!((passes[0].from_m, passes[0].to_m), (0.0, 100.0));
    }
}
