//! Coverage in chunks: one device's passes of one window of device time (an hour,
//! [`COVERAGE_CHUNK_MS`]), matched with the fixes around it as context
//! ([`COVERAGE_CONTEXT_MS`]) so that the window's edges match as well as its middle, and cut
//! to the window so that neighbouring windows never credit the same time twice.
//!
//! **A window's passes are a function of the fixes in the window and its context**, so a
//! window needs computing again only when a fix lands there, whatever the arrival order.

use std::ops::Range;

use cleanfleet_model::{COVERAGE_CHUNK_MS, COVERAGE_CONTEXT_MS};
use cleanfleet_roads::RoadNetwork;

use crate::matcher::{MatchedPoint, MatchedTrace, Matcher, Observation};
use crate::passes::{derive_passes, FixState, Pass, WorkType};
use crate::rules::CoverageRules;

/// A window's length in seconds.
pub const CHUNK_S: f64 = COVERAGE_CHUNK_MS as f64 / 1000.0;
/// The context matched on either side of a window, in seconds.
pub const CONTEXT_S: f64 = COVERAGE_CONTEXT_MS as f64 / 1000.0;

/// One device's window matched: the match of its fixes in and around it (`observations`
/// and `fixes` side by side, in time order, context included), and the passes in the window,
/// in time order.
pub fn match_window(
    network: &RoadNetwork,
    matcher: &mut Matcher,
    rules: &CoverageRules,
    work: WorkType,
    observations: &[Observation],
    fixes: &[FixState],
    window_s: Range<f64>,
) -> (MatchedTrace, Vec<Pass>) {
    let matched = matcher.match_trace(observations);
    let passes = cut_to_window(
        derive_passes(network, work, fixes, &matched, rules),
        window_s,
    );
    (matched, passes)
}

/// A whole trace's passes as the coverage stage computes them: window by window, each with
/// its context. For benchmarks. The observations' times must be finite and in order.
pub fn chunked_passes(
    network: &RoadNetwork,
    matcher: &mut Matcher,
    rules: &CoverageRules,
    work: WorkType,
    observations: &[Observation],
    fixes: &[FixState],
) -> Vec<Pass> {
    chunked_match(network, matcher, rules, work, observations, fixes).1
}

/// [`chunked_passes`], with where each fix was placed by its own window's match: what a
/// track checked outside the store is shown (`crate::track`).
pub fn chunked_match(
    network: &RoadNetwork,
    matcher: &mut Matcher,
    rules: &CoverageRules,
    work: WorkType,
    observations: &[Observation],
    fixes: &[FixState],
) -> (Vec<Option<MatchedPoint>>, Vec<Pass>) {
    let mut points = vec![None; observations.len()];
    let mut passes = Vec::new();
    // Window by window, each that holds a fix (in time order), skipping empty hours.
    let mut next = 0;
    while next < observations.len() {
        let start_s = (observations[next].time_s / CHUNK_S).floor() * CHUNK_S;
        let window = start_s..start_s + CHUNK_S;
        let from = observations.partition_point(|o| o.time_s < window.start - CONTEXT_S);
        let to = observations.partition_point(|o| o.time_s < window.end + CONTEXT_S);
        let own_end = observations
            .partition_point(|o| o.time_s < window.end)
            .max(next + 1);
        let (matched, in_window) = match_window(
            network,
            matcher,
            rules,
            work,
            &observations[from..to],
            &fixes[from..to],
            window,
        );
        points[next..own_end].copy_from_slice(&matched.points[next - from..own_end - from]);
        passes.extend(in_window);
        next = own_end;
    }
    (points, passes)
}

/// The parts of `passes` inside `window_s` (its start included, its end not), their covered
/// interval cut in proportion to time. Whether a part counts is the whole pass's verdict.
fn cut_to_window(passes: Vec<Pass>, window_s: Range<f64>) -> Vec<Pass> {
    passes
        .into_iter()
        .filter_map(|p| {
            if p.end_s <= p.start_s {
                return window_s.contains(&p.start_s).then_some(p);
            }
            let (start_s, end_s) = (p.start_s.max(window_s.start), p.end_s.min(window_s.end));
            if start_s >= end_s {
                return None;
            }
            let at =
                |t: f64| p.from_m + (p.to_m - p.from_m) * (t - p.start_s) / (p.end_s - p.start_s);
            Some(Pass {
                from_m: if start_s > p.start_s {
                    at(start_s)
                } else {
                    p.from_m
                },
                to_m: if end_s < p.end_s { at(end_s) } else { p.to_m },
                start_s,
                end_s,
                ..p
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::InvalidReason;

    fn pass(start_s: f64, end_s: f64, from_m: f64, to_m: f64) -> Pass {
        Pass {
            segment: 3,
            forward: true,
            from_m,
            to_m,
            start_s,
            end_s,
            work: WorkType::Sweep,
            invalid: None,
            max_speed_kmh: 6.0,
        }
    }

    /// A slow sweeper on a long street starts a pass at 59:00 that ends at 75:00, past the
    /// first hour's context: the first hour used to keep the whole pass (cut short where its
    /// context ends, 70:00) and the second none of it (it started in the first), so 70:00–
    /// 75:00 was never credited; and where the two hours matched the seam differently, both
    /// credited the same minutes.
    #[test]
    fn a_pass_across_an_hour_is_split_at_the_hour_not_lost_or_doubled() {
        let p = pass(3540.0, 4500.0, 0.0, 960.0);
        let first = cut_to_window(vec![p], 0.0..3600.0);
        let second = cut_to_window(vec![p], 3600.0..7200.0);
        assert_eq!(first, [pass(3540.0, 3600.0, 0.0, 60.0)]);
        assert_eq!(second, [pass(3600.0, 4500.0, 60.0, 960.0)]);
        let before = cut_to_window(vec![p], 0.0..3540.0);
        assert!(before.is_empty());
    }

    #[test]
    fn a_part_keeps_the_whole_pass_verdict_and_instants_belong_to_one_window() {
        let mut p = pass(3590.0, 3610.0, 100.0, 104.0);
        p.invalid = Some(InvalidReason::Overspeed);
        let parts: Vec<Pass> = [0.0..3600.0, 3600.0..7200.0]
            .into_iter()
            .flat_map(|w| cut_to_window(vec![p], w))
            .collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|q| q.invalid == p.invalid));
        assert!((parts.iter().map(Pass::length_m).sum::<f64>() - 4.0).abs() < 1e-9);
        let standing = pass(3600.0, 3600.0, 5.0, 5.0);
        assert!(cut_to_window(vec![standing], 0.0..3600.0).is_empty());
        assert_eq!(cut_to_window(vec![standing], 3600.0..7200.0).len(), 1);
    }
}
