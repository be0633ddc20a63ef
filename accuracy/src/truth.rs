//! The true day status of every segment, from what the vehicles really did, by brute force:
//! every segment side is sampled every [`SAMPLE_STEP_M`] and each sample is judged on its
//! own. Only the numbers come from [`CoverageRules`]; the logic is DOMAIN.md's, written here
//! without cleanfleet's `segment_status`.

use cleanfleet_coverage::{CoverageRules, WorkType};
use cleanfleet_roads::RoadNetwork;

use crate::gen::{TruthStretch, VehicleRun};

/// Spacing of the samples along a segment (the last is at most this from the end).
pub const SAMPLE_STEP_M: f64 = 0.5;
/// Shares are counts of samples: this much below the threshold is float rounding.
const SHARE_EPSILON: f64 = 1e-9;
/// Times closer than this are equal: they are interpolated sums of floating-point seconds.
const TIME_EPSILON_S: f64 = 1e-6;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentTruth {
    pub segment: u32,
    pub covered: bool,
    pub deep_cleaned: bool,
    /// Share of samples worked, on the counting side that has less.
    pub covered_ratio: f64,
    /// Share of samples deep-cleaned, on the counting side that has less.
    pub deep_ratio: f64,
}

/// The true status of every segment of `network`, in segment order.
///
/// A sample is worked on a side when a stretch of covering work passed over it with the tools
/// on and no faster than the work's band. A side is covered when `covered_ratio` of its
/// samples are; two-way segments of `both_sides_classes` have a side per direction and need
/// both, other segments have one side driven in either direction. A sample is deep-cleaned
/// when valid work of `deep_clean.first` passed it at t₁ and valid work of `deep_clean.then`
/// at t₂ with 0 ≤ t₂ − t₁ ≤ `within_s` (the same side); a segment is deep-cleaned when
/// `covered_ratio` of each side's samples are. The time a stretch passed a sample is
/// interpolated by distance along it.
pub fn true_status(
    network: &RoadNetwork,
    runs: &[VehicleRun],
    rules: &CoverageRules,
) -> Vec<SegmentTruth> {
    let mut by_segment: Vec<Vec<(WorkType, TruthStretch)>> =
        vec![Vec::new(); network.segments().len()];
    for run in runs {
        for s in &run.truth {
            if s.is_work(run.work, rules) && s.to_m > s.from_m {
                by_segment[s.segment as usize].push((run.work, *s));
            }
        }
    }
    status_of(network, &by_segment, rules)
}

/// [`true_status`] of only the work the fixes saw: each stretch is cut to the times between
/// delivered fixes at most `longest_gap_s` apart, so that work done inside a drop-out
/// (a tool switched on, a dead end driven, unseen) does not count. What no matcher can know
/// from the fixes alone; the difference to [`true_status`] is the drop-outs' share.
pub fn seen_status(
    network: &RoadNetwork,
    runs: &[VehicleRun],
    rules: &CoverageRules,
    longest_gap_s: f64,
) -> Vec<SegmentTruth> {
    let mut by_segment: Vec<Vec<(WorkType, TruthStretch)>> =
        vec![Vec::new(); network.segments().len()];
    for run in runs {
        let seen: Vec<(f64, f64)> = run
            .fixes
            .windows(2)
            .map(|w| (w[0].time_s, w[1].time_s))
            .filter(|(a, b)| b - a <= longest_gap_s)
            .collect();
        for s in run.truth.iter().filter(|s| s.is_work(run.work, rules)) {
            // The seen intervals are in time order: those that overlap the stretch.
            let first = seen.partition_point(|&(_, b)| b <= s.start_s);
            for &(a, b) in seen[first..].iter().take_while(|&&(a, _)| a < s.end_s) {
                let part = s.between(a.max(s.start_s), b.min(s.end_s));
                if let Some(part) = part.filter(|p| p.to_m > p.from_m) {
                    by_segment[s.segment as usize].push((run.work, part));
                }
            }
        }
    }
    status_of(network, &by_segment, rules)
}

fn status_of(
    network: &RoadNetwork,
    by_segment: &[Vec<(WorkType, TruthStretch)>],
    rules: &CoverageRules,
) -> Vec<SegmentTruth> {
    network
        .segments()
        .iter()
        .zip(by_segment)
        .map(|(segment, stretches)| {
            let sides = rules.sides(segment) as usize;
            let length_m = segment.length_m;
            let samples = ((length_m / SAMPLE_STEP_M).ceil() as usize).max(1);
            // Sample k sits at (k + ½) × length / samples from `from_node`.
            let at_m = |k: usize| (k as f64 + 0.5) * length_m / samples as f64;
            let mut worked = vec![vec![false; samples]; sides];
            // Per side and sample, when deep-cleaning's first and second work passed.
            let mut first_s = vec![vec![Vec::new(); samples]; sides];
            let mut then_s = vec![vec![Vec::new(); samples]; sides];
            for (work, s) in stretches {
                let work = *work;
                let side = if sides == 2 && !s.forward { 1 } else { 0 };
                // The stretch in the segment's own direction.
                let (a_m, b_m) = if s.forward {
                    (s.from_m, s.to_m)
                } else {
                    (length_m - s.to_m, length_m - s.from_m)
                };
                let covering = rules.covering_work.contains(&work);
                let first = rules.deep_clean.first.contains(&work);
                let then = rules.deep_clean.then.contains(&work);
                let lowest = ((a_m * samples as f64 / length_m - 0.5).floor().max(0.0)) as usize;
                for k in lowest..samples {
                    let x_m = at_m(k);
                    if x_m > b_m {
                        break;
                    }
                    if x_m < a_m {
                        continue;
                    }
                    worked[side][k] |= covering;
                    let driven_m = if s.forward { x_m } else { length_m - x_m };
                    let time_s = s.start_s
                        + (s.end_s - s.start_s) * (driven_m - s.from_m) / (s.to_m - s.from_m);
                    if first {
                        first_s[side][k].push(time_s);
                    }
                    if then {
                        then_s[side][k].push(time_s);
                    }
                }
            }
            let within_s = rules.deep_clean.within_s;
            let share = |hits: usize| hits as f64 / samples as f64;
            let covered_ratio = (0..sides)
                .map(|side| share(worked[side].iter().filter(|&&w| w).count()))
                .fold(f64::INFINITY, f64::min);
            let deep_ratio = (0..sides)
                .map(|side| {
                    let deep = (0..samples)
                        .filter(|&k| {
                            first_s[side][k].iter().any(|&t1| {
                                then_s[side][k].iter().any(|&t2| {
                                    t2 >= t1 - TIME_EPSILON_S
                                        && t2 - t1 <= within_s + TIME_EPSILON_S
                                })
                            })
                        })
                        .count();
                    share(deep)
                })
                .fold(f64::INFINITY, f64::min);
            let enough = |r: f64| r >= rules.covered_ratio - SHARE_EPSILON;
            SegmentTruth {
                segment: segment.id,
                covered: enough(covered_ratio),
                deep_cleaned: enough(deep_ratio),
                covered_ratio,
                deep_ratio,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cleanfleet_roads::{RoadClass, Segment};

    use super::*;

    const MAIN: u32 = 0;
    const LANE: u32 = 1;
    const LENGTH_M: f64 = 100.0;

    /// A class I avenue and a class IV lane, both two-way and exactly 100 m long.
    fn network() -> RoadNetwork {
        let nodes = vec![(7.0, 43.0), (7.00123, 43.0), (7.00246, 43.0)];
        let segment = |id: u32, class: RoadClass| Segment {
            id,
            osm_way_id: None,
            name: None,
            class,
            oneway: false,
            from_node: id,
            to_node: id + 1,
            points: vec![nodes[id as usize], nodes[id as usize + 1]],
            length_m: LENGTH_M,
            width_m: 7.0,
        };
        let segments = vec![segment(MAIN, RoadClass::I), segment(LANE, RoadClass::IV)];
        RoadNetwork::new(nodes, segments).unwrap()
    }

    fn run(work: WorkType, truth: Vec<TruthStretch>) -> VehicleRun {
        VehicleRun {
            id: work.as_str().into(),
            work,
            follows: None,
            fixes: Vec::new(),
            driven_m: truth.iter().map(TruthStretch::length_m).sum(),
            truth,
        }
    }

    /// A working stretch at 6 km/h over `from_m..to_m` of `segment`, starting at `start_s`.
    fn stretch(segment: u32, forward: bool, from_m: f64, to_m: f64, start_s: f64) -> TruthStretch {
        TruthStretch {
            segment,
            forward,
            from_m,
            to_m,
            start_s,
            end_s: start_s + (to_m - from_m) / (6.0 / 3.6),
            tools_on: true,
            max_speed_kmh: 6.0,
        }
    }

    fn status(runs: &[VehicleRun], segment: u32) -> SegmentTruth {
        true_status(&network(), runs, &CoverageRules::default())[segment as usize]
    }

    /// A fix at each second of `0..=to_s` except those strictly inside `gap_s`.
    fn fixes_with_gap(to_s: u32, gap_s: (f64, f64)) -> Vec<crate::gen::GenFix> {
        (0..=to_s)
            .map(f64::from)
            .filter(|&t| t <= gap_s.0 || t >= gap_s.1)
            .map(|time_s| crate::gen::GenFix {
                time_s,
                lon: 7.0,
                lat: 43.0,
                speed_kmh: None,
                heading_deg: None,
                hdop: None,
                satellites: None,
                tools_on: true,
            })
            .collect()
    }

    #[test]
    fn seen_work_leaves_out_what_was_done_inside_a_long_drop_out() {
        let rules = CoverageRules::default();
        // 100 m at 6 km/h: 60 s; nothing delivered from 15 s to 45 s, a half of the lane.
        let mut sweep = run(
            WorkType::Sweep,
            vec![stretch(LANE, true, 0.0, LENGTH_M, 0.0)],
        );
        sweep.fixes = fixes_with_gap(60, (15.0, 45.0));
        let seen = seen_status(&network(), std::slice::from_ref(&sweep), &rules, 10.0);
        assert!(
            (seen[LANE as usize].covered_ratio - 0.5).abs() < 0.01,
            "{seen:?}"
        );
        assert!(status(&[sweep.clone()], LANE).covered);
        // A gap no longer than the limit hides nothing.
        sweep.fixes = fixes_with_gap(60, (15.0, 25.0));
        let seen = seen_status(&network(), &[sweep], &rules, 10.0);
        assert!(seen[LANE as usize].covered_ratio > 0.99, "{seen:?}");
    }

    #[test]
    fn a_side_is_covered_from_exactly_the_covered_ratio() {
        let ratio = CoverageRules::default().covered_ratio;
        let up_to = |to_m: f64| {
            status(
                &[run(
                    WorkType::Sweep,
                    vec![stretch(LANE, true, 0.0, to_m, 0.0)],
                )],
                LANE,
            )
        };
        let exactly = up_to(ratio * LENGTH_M);
        assert!(exactly.covered, "{exactly:?}");
        assert!((exactly.covered_ratio - ratio).abs() < 1e-12, "{exactly:?}");
        let short = up_to(ratio * LENGTH_M - SAMPLE_STEP_M);
        assert!(!short.covered, "{short:?}");
        assert!(true_status(&network(), &[], &CoverageRules::default())
            .iter()
            .all(|s| !s.covered && s.covered_ratio == 0.0 && !s.deep_cleaned));
    }

    #[test]
    fn main_roads_need_both_sides_and_other_roads_either_direction() {
        let one_side = [run(
            WorkType::Sweep,
            vec![
                stretch(MAIN, true, 0.0, LENGTH_M, 0.0),
                // Half the lane each way makes the whole lane.
                stretch(LANE, true, 0.0, 50.0, 1000.0),
                stretch(LANE, false, 0.0, 50.0, 2000.0),
            ],
        )];
        let main = status(&one_side, MAIN);
        assert!(!main.covered && main.covered_ratio == 0.0, "{main:?}");
        assert!(status(&one_side, LANE).covered);
        let both_sides = [run(
            WorkType::WashSweep,
            vec![
                stretch(MAIN, true, 0.0, LENGTH_M, 0.0),
                stretch(MAIN, false, 0.0, LENGTH_M, 500.0),
            ],
        )];
        assert!(status(&both_sides, MAIN).covered);
    }

    #[test]
    fn overspeed_tools_off_and_sprinkling_do_not_cover() {
        let rules = CoverageRules::default();
        let whole = stretch(LANE, true, 0.0, LENGTH_M, 0.0);
        let band_kmh = rules.band_kmh(WorkType::Sweep);
        let covered = |work: WorkType, s: TruthStretch| status(&[run(work, vec![s])], LANE).covered;
        let at = |kmh: f64| TruthStretch {
            max_speed_kmh: kmh,
            ..whole
        };
        assert!(covered(WorkType::Sweep, at(band_kmh)));
        assert!(!covered(WorkType::Sweep, at(band_kmh + 0.01)));
        let off = TruthStretch {
            tools_on: false,
            ..whole
        };
        assert!(!covered(WorkType::Sweep, off));
        assert!(!covered(WorkType::Sprinkle, whole));
        assert!(covered(
            WorkType::Flush,
            at(rules.band_kmh(WorkType::Flush))
        ));
    }

    #[test]
    fn deep_cleaning_is_a_flush_then_a_sweep_within_two_hours() {
        let within_s = CoverageRules::default().deep_clean.within_s;
        let deep = |segment: u32, flush: TruthStretch, sweep: TruthStretch| {
            let runs = [
                run(WorkType::Flush, vec![flush]),
                run(WorkType::Sweep, vec![sweep]),
            ];
            status(&runs, segment)
        };
        let flush = stretch(LANE, true, 0.0, LENGTH_M, 1000.0);
        // The sweep passes every sample exactly `lag_s` after the flush did.
        let sweep_after = |lag_s: f64| TruthStretch {
            start_s: flush.start_s + lag_s,
            end_s: flush.end_s + lag_s,
            ..flush
        };
        let exactly = deep(LANE, flush, sweep_after(within_s));
        assert!(exactly.deep_cleaned && exactly.covered, "{exactly:?}");
        let late = deep(LANE, flush, sweep_after(within_s + 1.0));
        assert!(
            !late.deep_cleaned && late.covered && late.deep_ratio == 0.0,
            "{late:?}"
        );
        let sweep_first = deep(LANE, flush, sweep_after(-600.0));
        assert!(!sweep_first.deep_cleaned, "{sweep_first:?}");
        // A one-sided road takes the sweep in either direction.
        let against = TruthStretch {
            forward: false,
            ..sweep_after(600.0)
        };
        assert!(deep(LANE, flush, against).deep_cleaned);
        // On a main road it must follow on the same side: one side done is not enough.
        let flush_main = stretch(MAIN, true, 0.0, LENGTH_M, 0.0);
        let same_side = stretch(MAIN, true, 0.0, LENGTH_M, 600.0);
        let other_side = stretch(MAIN, false, 0.0, LENGTH_M, 600.0);
        assert!(!deep(MAIN, flush_main, other_side).deep_cleaned);
        let one_side = deep(MAIN, flush_main, same_side);
        assert!(
            !one_side.deep_cleaned && one_side.deep_ratio == 0.0,
            "{one_side:?}"
        );
        // A flush over half the lane deep-cleans half of it.
        let half_flush = stretch(LANE, true, 0.0, 50.0, 0.0);
        let half = deep(LANE, half_flush, stretch(LANE, true, 0.0, LENGTH_M, 100.0));
        assert!(
            !half.deep_cleaned && (half.deep_ratio - 0.5).abs() < 1e-12,
            "{half:?}"
        );
    }
}
