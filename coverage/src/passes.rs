//! Work passes: continuous traversals of one segment in one direction, cut from a matched
//! trace by the vehicle's work state, with whether they count and why not (DOMAIN.md,
//! "Coverage rules").

use std::collections::HashMap;

use cleanfleet_model::{DeviceKind, WorkState};
use cleanfleet_roads::RoadNetwork;
use serde::{Deserialize, Serialize};

use crate::matcher::{Leg, MatchedTrace};
use crate::rules::CoverageRules;

/// What a pass does to the street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkType {
    Sweep,
    WashSweep,
    Flush,
    Sprinkle,
    /// A crew member on foot.
    Manual,
}

impl WorkType {
    pub const ALL: [WorkType; 5] = [
        WorkType::Sweep,
        WorkType::WashSweep,
        WorkType::Flush,
        WorkType::Sprinkle,
        WorkType::Manual,
    ];

    /// The name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkType::Sweep => "sweep",
            WorkType::WashSweep => "wash_sweep",
            WorkType::Flush => "flush",
            WorkType::Sprinkle => "sprinkle",
            WorkType::Manual => "manual",
        }
    }

    pub fn parse(name: &str) -> Option<WorkType> {
        WorkType::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// The work a device of `kind` exists for; `None` for devices that do not clean.
    pub fn of_kind(kind: DeviceKind) -> Option<WorkType> {
        match kind {
            DeviceKind::Sweeper => Some(WorkType::Sweep),
            DeviceKind::WasherSweeper => Some(WorkType::WashSweep),
            DeviceKind::Flusher => Some(WorkType::Flush),
            DeviceKind::Sprinkler => Some(WorkType::Sprinkle),
            DeviceKind::Wearable => Some(WorkType::Manual),
            _ => None,
        }
    }

    /// Whether the tools for this work are on.
    pub fn tools_on(self, work: &WorkState) -> bool {
        match self {
            WorkType::Sweep => work.brush || work.vacuum,
            WorkType::WashSweep => work.brush || work.vacuum || work.water_pump,
            WorkType::Flush => work.water_pump,
            WorkType::Sprinkle => work.spray || work.water_pump,
            // A crew member on shift works while walking their streets.
            WorkType::Manual => true,
        }
    }
}

/// Why a pass does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// The tools for the vehicle's work were off.
    ToolOff,
    /// Faster than the work's speed band (超速作业).
    Overspeed,
    /// The match cannot be trusted: too few satellites, the fix farther from the road than
    /// its own error explains, a matched drive longer than the vehicle's speeds allow, a
    /// pass faster than its band allows, or a stretch no fix was matched on.
    PoorGps,
    /// Shorter than `min_pass_length_m` on a longer segment.
    TooShort,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 4] = [
        InvalidReason::ToolOff,
        InvalidReason::Overspeed,
        InvalidReason::PoorGps,
        InvalidReason::TooShort,
    ];

    /// The name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::ToolOff => "tool_off",
            InvalidReason::Overspeed => "overspeed",
            InvalidReason::PoorGps => "poor_gps",
            InvalidReason::TooShort => "too_short",
        }
    }

    pub fn parse(name: &str) -> Option<InvalidReason> {
        InvalidReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// What ingest knows of a fix besides its position: one per matched observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixState {
    pub time_s: f64,
    pub speed_kmh: Option<f64>,
    pub hdop: Option<f64>,
    pub satellites: Option<u8>,
    pub tools_on: bool,
}

impl FixState {
    /// What pass rules use of a stored fix from a device doing `work`.
    pub fn from_fix(f: &cleanfleet_model::Fix, work: WorkType) -> FixState {
        FixState {
            time_s: f.time.as_millisecond() as f64 / 1000.0,
            speed_kmh: f.speed_kmh,
            hdop: f.hdop,
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
/// A stretch between two fixes takes the condition reported by the later one (firmware
/// reports the tools as they were while moving to it); stretches across a silence longer
/// than `rules.max_gap_s` are not credited.
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
    let mut passes: Vec<Pass> = Vec::new();
    let mut open: Option<Pass> = None;
    let mut last_point = None;
    for leg in &matched.legs {
        let (a, b) = (&fixes[leg.from_point], &fixes[leg.to_point]);
        let dt = b.time_s - a.time_s;
        let traversals = matched.leg_traversals(leg);
        // Where the matched trace broke (a silence, no road near), a pass ends.
        let follows = last_point == Some(leg.from_point);
        last_point = Some(leg.to_point);
        if !follows {
            passes.extend(open.take());
        }
        if dt > rules.max_gap_s {
            passes.extend(open.take());
            continue;
        }
        let leg_m: f64 = traversals.iter().map(|t| t.to_m - t.from_m).sum();
        let speed_kmh = b.speed_kmh.unwrap_or(if dt > 0.0 {
            leg_m / dt * 3.6
        } else if leg_m > 0.0 {
            f64::INFINITY
        } else {
            0.0
        });
        let invalid = leg_condition(network, work, leg, a, b, leg_m, speed_kmh, matched, rules);
        let mut along_m = 0.0;
        for t in traversals {
            let length_m = t.to_m - t.from_m;
            let at = |m: f64| {
                if leg_m > 0.0 {
                    a.time_s + dt * m / leg_m
                } else {
                    b.time_s
                }
            };
            let (start_s, end_s) = (at(along_m), at(along_m + length_m));
            along_m += length_m;
            if let Some(p) = open.as_mut() {
                let continues = (p.segment, p.forward) == (t.segment, t.forward)
                    && p.invalid == invalid
                    && t.from_m <= p.to_m + CONTIGUOUS_M
                    && t.to_m >= p.from_m;
                if continues {
                    p.to_m = p.to_m.max(t.to_m);
                    p.end_s = end_s;
                    p.max_speed_kmh = p.max_speed_kmh.max(speed_kmh);
                    continue;
                }
            }
            if length_m <= 0.0 {
                // Standing still starts nothing.
                continue;
            }
            passes.extend(open.take());
            open = Some(Pass {
                segment: t.segment,
                forward: t.forward,
                from_m: t.from_m,
                to_m: t.to_m,
                start_s,
                end_s,
                work,
                invalid,
                max_speed_kmh: speed_kmh,
            });
        }
    }
    passes.extend(open);
    // When a fix was matched onto each traversal, by (segment, direction).
    let mut matched_at: HashMap<(u32, bool), Vec<f64>> = HashMap::new();
    for (m, f) in matched.points.iter().zip(fixes) {
        if let Some(m) = m {
            matched_at
                .entry((m.segment, m.forward))
                .or_default()
                .push(f.time_s);
        }
    }
    for p in &mut passes {
        if p.invalid.is_some() {
            continue;
        }
        let supported = matched_at
            .get(&(p.segment, p.forward))
            .is_some_and(|times| {
                times
                    .iter()
                    .any(|&t| t >= p.start_s - SUPPORT_SLACK_S && t <= p.end_s + SUPPORT_SLACK_S)
            });
        let band_m = rules.band_kmh(work) / 3.6 * (p.end_s - p.start_s);
        let too_fast = p.length_m() > band_m * rules.max_implied_speed_ratio;
        if too_fast || (!supported && p.length_m() > rules.max_unsupported_pass_m) {
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

/// Whether the drive of one leg counts, and why not.
#[allow(clippy::too_many_arguments)]
fn leg_condition(
    network: &RoadNetwork,
    work: WorkType,
    leg: &Leg,
    a: &FixState,
    b: &FixState,
    leg_m: f64,
    speed_kmh: f64,
    matched: &MatchedTrace,
    rules: &CoverageRules,
) -> Option<InvalidReason> {
    if !b.tools_on {
        return Some(InvalidReason::ToolOff);
    }
    let (Some(from), Some(to)) = (matched.points[leg.from_point], matched.points[leg.to_point])
    else {
        return Some(InvalidReason::PoorGps);
    };
    // Off the road by more than the fix's own error explains (a lane off the centre line
    // is not error).
    let half_width_m = network.segments()[to.segment as usize].width_m / 2.0;
    let off_road = to.distance_m > rules.max_match_sigmas * to.error_m + half_width_m;
    // Longer than the vehicle's own speeds allow (GPS speed is Doppler, far more precise
    // than positions), beyond what the error of the two places explains.
    let dt = b.time_s - a.time_s;
    let reported_m = match (a.speed_kmh, b.speed_kmh) {
        (Some(va), Some(vb)) => (va + vb) / 2.0 / 3.6 * dt,
        _ => leg_m,
    };
    let allowed_m = reported_m * rules.max_implied_speed_ratio
        + rules.path_slack_sigmas * from.error_m.hypot(to.error_m);
    if b.satellites.is_some_and(|s| s < rules.min_satellites) || off_road || leg_m > allowed_m {
        Some(InvalidReason::PoorGps)
    } else if speed_kmh > rules.band_kmh(work) {
        Some(InvalidReason::Overspeed)
    } else {
        None
    }
}

/// Stretches this close continue a pass (rounding at the seams of legs).
const CONTIGUOUS_M: f64 = 0.5;
/// A fix this close in time to a pass supports it (times are interpolated along legs).
const SUPPORT_SLACK_S: f64 = 0.5;

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
            hdop: Some(0.9),
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

    #[test]
    fn tool_off_overspeed_and_poor_gps_split_the_pass_with_their_reasons() {
        let net = demo();
        let mut trace = straight_trace(&net, 21, 10.0);
        // A fix 40 m off its road at an expected error of 5 m.
        trace.points[15].as_mut().unwrap().distance_m = 40.0;
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
                (40.0, 70.0, Some(InvalidReason::ToolOff)),
                (70.0, 90.0, None),
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

    #[test]
    fn a_street_the_path_only_runs_through_between_fixes_is_not_credited() {
        let net = demo();
        let (a, b, c) = (0u32, 1u32, 2u32);
        let length = |s: u32| net.segments()[s as usize].length_m;
        let trace = MatchedTrace {
            points: vec![
                Some(MatchedPoint {
                    segment: a,
                    forward: true,
                    offset_m: length(a) - 5.0,
                    distance_m: 3.0,
                    error_m: 5.0,
                }),
                Some(MatchedPoint {
                    segment: c,
                    forward: true,
                    offset_m: 5.0,
                    distance_m: 3.0,
                    error_m: 5.0,
                }),
            ],
            legs: vec![Leg {
                from_point: 0,
                to_point: 1,
                traversals: 0..3,
            }],
            traversals: vec![
                Traversal {
                    segment: a,
                    forward: true,
                    from_m: length(a) - 5.0,
                    to_m: length(a),
                },
                Traversal {
                    segment: b,
                    forward: true,
                    from_m: 0.0,
                    to_m: length(b),
                },
                Traversal {
                    segment: c,
                    forward: true,
                    from_m: 0.0,
                    to_m: 5.0,
                },
            ],
        };
        // Fixes as far apart in time as the drive takes at 6 km/h.
        let drive_s = (length(b) + 10.0) / (6.0 / 3.6);
        let fixes = [fix(0.0, 6.0, true), fix(drive_s, 6.0, true)];
        let rules = CoverageRules {
            max_gap_s: drive_s + 1.0,
            ..CoverageRules::default()
        };
        let passes = derive_passes(&net, WorkType::Sweep, &fixes, &trace, &rules);
        let through = passes.iter().find(|p| p.segment == b).unwrap();
        assert!(length(b) > rules.max_unsupported_pass_m);
        assert_eq!(through.invalid, Some(InvalidReason::PoorGps));
        // With a fix on it, the same stretch counts.
        let mut supported = trace.clone();
        let middle = MatchedPoint {
            segment: b,
            forward: true,
            offset_m: length(b) / 2.0,
            distance_m: 3.0,
            error_m: 5.0,
        };
        supported.points.insert(1, Some(middle));
        let half = |from_m: f64, to_m: f64| Traversal {
            segment: b,
            forward: true,
            from_m,
            to_m,
        };
        supported.traversals = vec![
            trace.traversals[0],
            half(0.0, length(b) / 2.0),
            half(length(b) / 2.0, length(b)),
            trace.traversals[2],
        ];
        supported.legs = vec![
            Leg {
                from_point: 0,
                to_point: 1,
                traversals: 0..2,
            },
            Leg {
                from_point: 1,
                to_point: 2,
                traversals: 2..4,
            },
        ];
        let fixes = [
            fixes[0],
            fix(drive_s / 2.0, 6.0, true),
            fix(drive_s, 6.0, true),
        ];
        let passes = derive_passes(&net, WorkType::Sweep, &fixes, &supported, &rules);
        assert!(passes.iter().find(|p| p.segment == b).unwrap().is_valid());
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

    #[test]
    fn work_types_follow_the_kind_and_its_tools() {
        let brush = WorkState {
            brush: true,
            ..WorkState::default()
        };
        let water = WorkState {
            water_pump: true,
            ..WorkState::default()
        };
        assert_eq!(
            WorkType::of_kind(DeviceKind::Flusher),
            Some(WorkType::Flush)
        );
        assert_eq!(WorkType::of_kind(DeviceKind::CollectionTruck), None);
        assert!(WorkType::Sweep.tools_on(&brush) && !WorkType::Sweep.tools_on(&water));
        assert!(WorkType::Flush.tools_on(&water) && !WorkType::Flush.tools_on(&brush));
        assert!(WorkType::WashSweep.tools_on(&water) && WorkType::WashSweep.tools_on(&brush));
        assert!(!WorkType::Sprinkle.tools_on(&WorkState::default()));
    }

    #[test]
    fn names_match_serde_and_parse_back() {
        for w in WorkType::ALL {
            assert_eq!(serde_json::to_value(w).unwrap(), w.as_str());
            assert_eq!(WorkType::parse(w.as_str()), Some(w));
        }
        for r in InvalidReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(InvalidReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(WorkType::parse("mop"), None);
    }
}
