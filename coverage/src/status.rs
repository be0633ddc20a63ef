//! A day's status of each segment from everyone's passes: covered, mechanically cleaned,
//! deep-cleaned, or missed and why; and the shares of a scope by length and by area.

use cleanfleet_roads::{RoadNetwork, Segment};
use serde::Serialize;

use crate::passes::{InvalidReason, Pass, WorkType};
use crate::rules::CoverageRules;

/// Why a segment did not count as covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// No covering work was done on it at all.
    NotVisited,
    /// Driven, but every covering pass was invalid; the reason of most of their length.
    ToolOff,
    Overspeed,
    PoorGps,
    TooShort,
    /// Valid passes covered less than the required share.
    Partial,
    /// A street cleaned on both sides was done on one side only.
    OneSide,
}

impl MissReason {
    pub const ALL: [MissReason; 7] = [
        MissReason::NotVisited,
        MissReason::ToolOff,
        MissReason::Overspeed,
        MissReason::PoorGps,
        MissReason::TooShort,
        MissReason::Partial,
        MissReason::OneSide,
    ];

    /// The name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::NotVisited => "not_visited",
            MissReason::ToolOff => "tool_off",
            MissReason::Overspeed => "overspeed",
            MissReason::PoorGps => "poor_gps",
            MissReason::TooShort => "too_short",
            MissReason::Partial => "partial",
            MissReason::OneSide => "one_side",
        }
    }

    pub fn parse(name: &str) -> Option<MissReason> {
        MissReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl From<InvalidReason> for MissReason {
    fn from(reason: InvalidReason) -> Self {
        match reason {
            InvalidReason::ToolOff => MissReason::ToolOff,
            InvalidReason::Overspeed => MissReason::Overspeed,
            InvalidReason::PoorGps => MissReason::PoorGps,
            InvalidReason::TooShort => MissReason::TooShort,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SegmentStatus {
    pub segment: u32,
    pub covered: bool,
    pub mechanised: bool,
    pub deep_cleaned: bool,
    /// Share covered by valid covering passes, on the side that has less when both sides
    /// count.
    pub covered_ratio: f64,
    /// Set when not covered.
    pub missed: Option<MissReason>,
}

/// The status of every segment of `network`, in segment order, from all passes of a day
/// (any vehicles, any order: the result does not depend on it).
pub fn segment_status(
    network: &RoadNetwork,
    passes: &[Pass],
    rules: &CoverageRules,
) -> Vec<SegmentStatus> {
    let mut by_segment: Vec<Vec<&Pass>> = vec![Vec::new(); network.segments().len()];
    for p in passes {
        by_segment[p.segment as usize].push(p);
    }
    network
        .segments()
        .iter()
        .zip(&by_segment)
        .map(|(segment, passes)| status_of(segment, passes, rules))
        .collect()
}

/// The status of one segment from all of its passes of a day (any order), as
/// [`segment_status`] gives it.
pub fn status_of(segment: &Segment, passes: &[&Pass], rules: &CoverageRules) -> SegmentStatus {
    let both_sides = rules.sides(segment) == 2;
    let length_m = segment.length_m;
    // Share of the segment an interval set covers, on the side(s) that count.
    let ratio = |intervals: &dyn Fn(bool) -> Vec<(f64, f64)>| -> (f64, f64) {
        if length_m <= 0.0 {
            return (1.0, 1.0);
        }
        if both_sides {
            let forward = union_m(intervals(true)) / length_m;
            let backward = union_m(intervals(false)) / length_m;
            (forward.min(backward), forward.max(backward))
        } else {
            let mut all = intervals(true);
            all.extend(intervals(false));
            let r = union_m(all) / length_m;
            (r, r)
        }
    };
    // Intervals in the segment's own direction (from `from_node`), so both sides compare.
    let along = |p: &Pass| {
        if p.forward {
            (p.from_m, p.to_m)
        } else {
            (length_m - p.to_m, length_m - p.from_m)
        }
    };
    let valid_of = |kinds: &[WorkType], forward: bool| -> Vec<(f64, f64)> {
        passes
            .iter()
            .filter(|p| p.forward == forward && p.is_valid() && kinds.contains(&p.work))
            .map(|p| along(p))
            .collect()
    };
    let (covered_ratio, best_side) = ratio(&|f| valid_of(&rules.covering_work, f));
    let (mechanised_ratio, _) = ratio(&|f| valid_of(&rules.mechanised_work, f));
    let deep = &rules.deep_clean;
    // When a pass was at `x` (in the segment's own direction): interpolated along it.
    let time_at = |p: &Pass, x: f64| {
        let driven_m = if p.forward { x } else { length_m - x };
        let share = if p.to_m > p.from_m {
            (driven_m - p.from_m) / (p.to_m - p.from_m)
        } else {
            0.0
        };
        p.start_s + (p.end_s - p.start_s) * share
    };
    let deep_intervals = |forward: bool| -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for first in passes
            .iter()
            .filter(|p| p.forward == forward && p.is_valid() && deep.first.contains(&p.work))
        {
            // On a street cleaned as one side, the sweep may come the other way.
            for then in passes.iter().filter(|p| {
                (p.forward == forward || !both_sides) && p.is_valid() && deep.then.contains(&p.work)
            }) {
                let (a, b) = (along(first), along(then));
                let (from, to) = (a.0.max(b.0), a.1.min(b.1));
                if to <= from {
                    continue;
                }
                // Point by point: the second work passed each place within `within_s`
                // after the first (how long after changes linearly along the overlap).
                let lag = |x: f64| time_at(then, x) - time_at(first, x);
                if let Some(part) = where_between(
                    (from, lag(from)),
                    (to, lag(to)),
                    -TIME_EPSILON_S,
                    deep.within_s + TIME_EPSILON_S,
                ) {
                    out.push(part);
                }
            }
        }
        out
    };
    let (deep_ratio, _) = ratio(&deep_intervals);
    let enough = |r: f64| r >= rules.covered_ratio;
    let covered = enough(covered_ratio);
    let missed = (!covered).then(|| {
        let covering: Vec<&&Pass> = passes
            .iter()
            .filter(|p| rules.covering_work.contains(&p.work))
            .collect();
        if covering.iter().any(|p| p.is_valid()) {
            if both_sides && enough(best_side) {
                MissReason::OneSide
            } else {
                MissReason::Partial
            }
        } else {
            // The invalid reason over the most length; ties to the first reason in order.
            let mut by_reason: Vec<(InvalidReason, f64)> = Vec::new();
            for p in &covering {
                let reason = p.invalid.expect("only invalid passes are left");
                match by_reason.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, m)) => *m += p.length_m(),
                    None => by_reason.push((reason, p.length_m())),
                }
            }
            by_reason.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            by_reason
                .first()
                .map_or(MissReason::NotVisited, |(r, _)| MissReason::from(*r))
        }
    });
    SegmentStatus {
        segment: segment.id,
        covered,
        mechanised: enough(mechanised_ratio),
        deep_cleaned: enough(deep_ratio),
        covered_ratio,
        missed,
    }
}

/// The part of `[x0, x1]` where a quantity that changes linearly from `y0` at `x0` to `y1`
/// at `x1` is within `low..=high`; `None` if nowhere (or only at a point).
fn where_between(
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    low: f64,
    high: f64,
) -> Option<(f64, f64)> {
    if y1 == y0 {
        return (low..=high).contains(&y0).then_some((x0, x1));
    }
    // x where the quantity reaches `y`.
    let at = |y: f64| x0 + (x1 - x0) * (y - y0) / (y1 - y0);
    let (x_low, x_high) = (at(low), at(high));
    let (enter, leave) = if y1 > y0 {
        (x_low, x_high)
    } else {
        (x_high, x_low)
    };
    let (from, to) = (x0.max(enter), x1.min(leave));
    (to > from).then_some((from, to))
}

/// Times closer than this are equal (they are sums of floating-point seconds).
const TIME_EPSILON_S: f64 = 1e-6;

/// Length of the union of intervals.
fn union_m(mut intervals: Vec<(f64, f64)>) -> f64 {
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (from, to) in intervals {
        match current.as_mut() {
            Some(c) if from <= c.1 => c.1 = c.1.max(to),
            _ => {
                total += current.map_or(0.0, |c| c.1 - c.0);
                current = Some((from, to));
            }
        }
    }
    total + current.map_or(0.0, |c| c.1 - c.0)
}

/// Shares of a scope, by length and by carriageway area (length × width).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CoverageSummary {
    pub segments: usize,
    pub total_length_m: f64,
    pub total_area_m2: f64,
    pub covered_length_m: f64,
    pub covered_area_m2: f64,
    pub mechanised_length_m: f64,
    pub mechanised_area_m2: f64,
    pub deep_cleaned_length_m: f64,
    pub deep_cleaned_area_m2: f64,
}

impl CoverageSummary {
    /// Sums the statuses of the segments `in_scope` accepts.
    pub fn of(
        network: &RoadNetwork,
        statuses: &[SegmentStatus],
        in_scope: impl Fn(&Segment) -> bool,
    ) -> CoverageSummary {
        let mut s = CoverageSummary::default();
        for status in statuses {
            let segment = &network.segments()[status.segment as usize];
            if !in_scope(segment) {
                continue;
            }
            let (length_m, area_m2) = (segment.length_m, segment.length_m * segment.width_m);
            s.segments += 1;
            s.total_length_m += length_m;
            s.total_area_m2 += area_m2;
            if status.covered {
                s.covered_length_m += length_m;
                s.covered_area_m2 += area_m2;
            }
            if status.mechanised {
                s.mechanised_length_m += length_m;
                s.mechanised_area_m2 += area_m2;
            }
            if status.deep_cleaned {
                s.deep_cleaned_length_m += length_m;
                s.deep_cleaned_area_m2 += area_m2;
            }
        }
        s
    }

    pub fn covered_share_by_length(&self) -> f64 {
        share(self.covered_length_m, self.total_length_m)
    }

    pub fn covered_share_by_area(&self) -> f64 {
        share(self.covered_area_m2, self.total_area_m2)
    }

    pub fn mechanised_rate_by_length(&self) -> f64 {
        share(self.mechanised_length_m, self.total_length_m)
    }

    pub fn deep_cleaned_share_by_length(&self) -> f64 {
        share(self.deep_cleaned_length_m, self.total_length_m)
    }
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use cleanfleet_roads::RoadClass;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn pass(
        segment: u32,
        forward: bool,
        from_m: f64,
        to_m: f64,
        work: WorkType,
        start_s: f64,
    ) -> Pass {
        Pass {
            segment,
            forward,
            from_m,
            to_m,
            start_s,
            end_s: start_s + (to_m - from_m) / 2.0,
            work,
            invalid: None,
            max_speed_kmh: 6.0,
        }
    }

    #[test]
    fn a_miss_reasons_name_is_its_json_and_parses_back() {
        for reason in MissReason::ALL {
            assert_eq!(serde_json::json!(reason), reason.as_str());
            assert_eq!(MissReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(MissReason::parse("lost"), None);
    }

    /// A segment of the demo town of `class`, two-way or not.
    fn find(net: &RoadNetwork, class: RoadClass, oneway: bool) -> &Segment {
        net.segments()
            .iter()
            .find(|s| s.class == class && s.oneway == oneway)
            .unwrap_or_else(|| panic!("no {class:?} oneway={oneway} in the demo town"))
    }

    #[test]
    fn covered_at_exactly_ninety_percent_and_not_below() {
        let net = RoadNetwork::demo();
        let rules = CoverageRules::default();
        let s = find(&net, RoadClass::IV, false);
        let status = |to_m: f64| {
            segment_status(
                &net,
                &[pass(s.id, true, 0.0, to_m, WorkType::Sweep, 0.0)],
                &rules,
            )[s.id as usize]
        };
        assert!(status(0.9 * s.length_m).covered);
        let short = status(0.9 * s.length_m - 0.01);
        assert!(!short.covered);
        assert_eq!(short.missed, Some(MissReason::Partial));
        // One side is enough on a class IV street, from either direction, pieced together.
        let pieces = [
            pass(s.id, true, 0.0, 0.5 * s.length_m, WorkType::Sweep, 0.0),
            pass(s.id, false, 0.0, 0.45 * s.length_m, WorkType::Sweep, 100.0),
        ];
        assert!(segment_status(&net, &pieces, &rules)[s.id as usize].covered);
    }

    #[test]
    fn main_roads_need_both_sides() {
        let net = RoadNetwork::demo();
        let rules = CoverageRules::default();
        let s = find(&net, RoadClass::I, false);
        let one = [pass(s.id, true, 0.0, s.length_m, WorkType::Sweep, 0.0)];
        let status = segment_status(&net, &one, &rules)[s.id as usize];
        assert!(!status.covered);
        assert_eq!(status.missed, Some(MissReason::OneSide));
        let both = [
            one[0],
            pass(s.id, false, 0.0, s.length_m, WorkType::Flush, 50.0),
        ];
        assert!(segment_status(&net, &both, &rules)[s.id as usize].covered);
    }

    #[test]
    fn deep_cleaning_needs_a_sweep_after_a_flush_within_the_window() {
        let net = RoadNetwork::demo();
        let rules = CoverageRules::default();
        let s = find(&net, RoadClass::III, false);
        let flush = pass(s.id, true, 0.0, s.length_m, WorkType::Flush, 1000.0);
        let deep = |sweep_start_s: f64| {
            let sweep = pass(
                s.id,
                true,
                0.0,
                s.length_m,
                WorkType::WashSweep,
                sweep_start_s,
            );
            segment_status(&net, &[sweep, flush], &rules)[s.id as usize].deep_cleaned
        };
        // Place by place: at the same pace, a sweep that starts `within_s` after the flush
        // reaches every place just in time.
        assert!(deep(flush.start_s + rules.deep_clean.within_s));
        assert!(!deep(flush.start_s + rules.deep_clean.within_s + 1.0));
        assert!(!deep(flush.start_s - 10.0), "a sweep before the flush");
        // A sweep that starts in time but is slow reaches the far end too late: only the part
        // swept within the window counts.
        let mut slow = pass(
            s.id,
            true,
            0.0,
            s.length_m,
            WorkType::Sweep,
            flush.start_s + rules.deep_clean.within_s - 100.0,
        );
        slow.end_s = slow.start_s + 1000.0;
        let status = segment_status(&net, &[flush, slow], &rules)[s.id as usize];
        assert!(status.covered && !status.deep_cleaned);
        // On a street cleaned as one side the sweep may come the other way; on a main road
        // it must be the same side.
        let back = pass(
            s.id,
            false,
            0.0,
            s.length_m,
            WorkType::Sweep,
            flush.end_s + 60.0,
        );
        assert!(segment_status(&net, &[flush, back], &rules)[s.id as usize].deep_cleaned);
        let main = find(&net, RoadClass::I, false);
        let main_flush = pass(main.id, true, 0.0, main.length_m, WorkType::Flush, 0.0);
        let main_back = pass(main.id, false, 0.0, main.length_m, WorkType::Sweep, 600.0);
        assert!(
            !segment_status(&net, &[main_flush, main_back], &rules)[main.id as usize].deep_cleaned
        );
        // Sprinkling is not cleaning: no coverage, no deep-cleaning.
        let sprinkled = [pass(s.id, true, 0.0, s.length_m, WorkType::Sprinkle, 0.0)];
        let status = segment_status(&net, &sprinkled, &rules)[s.id as usize];
        assert!(!status.covered && !status.mechanised);
        assert_eq!(status.missed, Some(MissReason::NotVisited));
    }

    #[test]
    fn invalid_passes_say_why_the_segment_was_missed() {
        let net = RoadNetwork::demo();
        let rules = CoverageRules::default();
        let s = find(&net, RoadClass::IV, false);
        let mut fast = pass(s.id, true, 0.0, s.length_m, WorkType::Sweep, 0.0);
        fast.invalid = Some(InvalidReason::Overspeed);
        let mut off = pass(s.id, true, 0.0, 0.3 * s.length_m, WorkType::Sweep, 0.0);
        off.invalid = Some(InvalidReason::ToolOff);
        let status = segment_status(&net, &[off, fast], &rules)[s.id as usize];
        assert_eq!(status.missed, Some(MissReason::Overspeed));
        assert_eq!(
            segment_status(&net, &[], &rules)[s.id as usize].missed,
            Some(MissReason::NotVisited)
        );
    }

    #[test]
    fn order_and_duplicates_do_not_change_the_status() {
        let net = RoadNetwork::demo();
        let rules = CoverageRules::default();
        let mut passes = Vec::new();
        for (i, s) in net.segments().iter().enumerate().step_by(3) {
            let work = [WorkType::Flush, WorkType::Sweep, WorkType::WashSweep][i % 3];
            passes.push(pass(
                s.id,
                i % 2 == 0,
                0.0,
                s.length_m * 0.95,
                work,
                i as f64 * 60.0,
            ));
            let forward = if i % 4 == 0 { i % 2 == 0 } else { i % 2 == 1 };
            passes.push(pass(
                s.id,
                forward,
                0.05 * s.length_m,
                s.length_m,
                WorkType::Sweep,
                i as f64 * 61.0,
            ));
        }
        let expected = segment_status(&net, &passes, &rules);
        assert!(expected.iter().any(|s| s.covered) && expected.iter().any(|s| s.deep_cleaned));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..5 {
            let mut shuffled = passes.clone();
            shuffled.extend(passes.iter().step_by(2).copied());
            shuffled.shuffle(&mut rng);
            assert_eq!(segment_status(&net, &shuffled, &rules), expected);
        }
    }

    #[test]
    fn summary_shares_by_length_and_area() {
        let net = RoadNetwork::demo();
        let rules = CoverageRules::default();
        let s = find(&net, RoadClass::IV, false);
        let statuses = segment_status(
            &net,
            &[pass(s.id, true, 0.0, s.length_m, WorkType::Sweep, 0.0)],
            &rules,
        );
        let all = CoverageSummary::of(&net, &statuses, |_| true);
        assert_eq!(all.segments, net.segments().len());
        assert!((all.covered_length_m - s.length_m).abs() < 1e-9);
        assert!((all.covered_share_by_length() - s.length_m / net.total_length_m()).abs() < 1e-12);
        assert!((all.covered_area_m2 - s.length_m * s.width_m).abs() < 1e-9);
        let only = CoverageSummary::of(&net, &statuses, |seg| seg.id == s.id);
        assert_eq!(only.covered_share_by_length(), 1.0);
        assert_eq!(only.mechanised_rate_by_length(), 1.0);
        assert_eq!(only.deep_cleaned_share_by_length(), 0.0);
    }
}
