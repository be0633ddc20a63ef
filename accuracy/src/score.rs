//! cleanfleet's day status against the truth, segment by segment, weighted by length.

use std::ops::Range;

use cleanfleet_coverage::{segment_status, CoverageRules, MissReason, Pass, SegmentStatus};
use cleanfleet_roads::{RoadClass, RoadNetwork};

use crate::gen::VehicleRun;
use crate::truth::SegmentTruth;

/// A share of the network's length, as cleanfleet and as the truth have it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Share {
    pub ours_m: f64,
    pub true_m: f64,
    pub total_m: f64,
}

impl Share {
    pub fn ours(&self) -> f64 {
        self.ours_m / self.total_m
    }

    pub fn truth(&self) -> f64 {
        self.true_m / self.total_m
    }

    /// (ours − true) ÷ true; `None` when nothing is true.
    pub fn relative_error(&self) -> Option<f64> {
        (self.true_m > 0.0).then(|| (self.ours_m - self.true_m) / self.true_m)
    }
}

/// Length-weighted agreement of a yes/no status with the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrecisionRecall {
    /// Both say yes.
    pub both_m: f64,
    /// Only cleanfleet says yes.
    pub ours_only_m: f64,
    /// Only the truth says yes.
    pub true_only_m: f64,
}

impl PrecisionRecall {
    fn add(&mut self, ours: bool, truth: bool, length_m: f64) {
        match (ours, truth) {
            (true, true) => self.both_m += length_m,
            (true, false) => self.ours_only_m += length_m,
            (false, true) => self.true_only_m += length_m,
            (false, false) => {}
        }
    }

    /// Share of what cleanfleet credits that is true; `None` when it credits nothing.
    pub fn precision(&self) -> Option<f64> {
        let ours_m = self.both_m + self.ours_only_m;
        (ours_m > 0.0).then(|| self.both_m / ours_m)
    }

    /// Share of what is true that cleanfleet credits; `None` when nothing is true.
    pub fn recall(&self) -> Option<f64> {
        let true_m = self.both_m + self.true_only_m;
        (true_m > 0.0).then(|| self.both_m / true_m)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VehicleMileage {
    pub id: String,
    /// Sum of the lengths of cleanfleet's valid passes (有效里程).
    pub valid_m: f64,
    /// Length the vehicle really worked with tools on and within its band.
    pub true_valid_m: f64,
    pub driven_m: f64,
}

impl VehicleMileage {
    /// Valid mileage per driven metre: above 1 credits more than was driven.
    pub fn valid_per_driven(&self) -> f64 {
        self.valid_m / self.driven_m
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub covered: Share,
    pub deep_cleaned: Share,
    pub covered_pr: PrecisionRecall,
    pub deep_pr: PrecisionRecall,
    /// Covered and deep-cleaned agreement per road class, I to IV.
    pub by_class: Vec<(RoadClass, PrecisionRecall, PrecisionRecall)>,
    /// Valid passes whose length implies more than 1.25 × the work's band (plus 5 m): a
    /// truck cannot have worked that fast (DOMAIN.md, "GPS quality").
    pub implied_speed_violations: usize,
    pub implied_speed_violation_m: f64,
    /// Valid passes whose length implies more than twice the work's band (the independent
    /// evaluation's count).
    pub twice_band_violations: usize,
    /// Truly covered length that cleanfleet missed, by the reason it gives.
    pub missed_by_reason: Vec<(MissReason, f64)>,
    /// Truly deep-cleaned length that cleanfleet missed, by what its passes lack.
    pub deep_missed_by_cause: Vec<(DeepMiss, f64)>,
    /// Per run, in order.
    pub mileage: Vec<VehicleMileage>,
}

/// Why a truly deep-cleaned segment is not deep-cleaned by cleanfleet's passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeepMiss {
    /// Its valid first work (the flush) covers too little of it.
    FirstShort,
    /// Its valid second work (the sweep) covers too little of it.
    ThenShort,
    /// Both.
    BothShort,
    /// Each covers enough, but not enough of the same places in the right order and time.
    NotPaired,
}

fn add_by<K: PartialEq>(totals: &mut Vec<(K, f64)>, key: K, m: f64) {
    match totals.iter_mut().find(|(k, _)| *k == key) {
        Some((_, total)) => *total += m,
        None => totals.push((key, m)),
    }
}

impl Share {
    fn absorb(&mut self, other: &Share) {
        self.ours_m += other.ours_m;
        self.true_m += other.true_m;
        self.total_m += other.total_m;
    }
}

impl PrecisionRecall {
    fn absorb(&mut self, other: &PrecisionRecall) {
        self.both_m += other.both_m;
        self.ours_only_m += other.ours_only_m;
        self.true_only_m += other.true_only_m;
    }
}

impl Score {
    /// Adds another day's (or fleet's) score to this one: shares and agreement by summed
    /// length, counts summed, runs appended.
    pub fn absorb(&mut self, other: Score) {
        self.covered.absorb(&other.covered);
        self.deep_cleaned.absorb(&other.deep_cleaned);
        self.covered_pr.absorb(&other.covered_pr);
        self.deep_pr.absorb(&other.deep_pr);
        for (mine, theirs) in self.by_class.iter_mut().zip(&other.by_class) {
            mine.1.absorb(&theirs.1);
            mine.2.absorb(&theirs.2);
        }
        self.implied_speed_violations += other.implied_speed_violations;
        self.implied_speed_violation_m += other.implied_speed_violation_m;
        self.twice_band_violations += other.twice_band_violations;
        for (reason, m) in other.missed_by_reason {
            add_by(&mut self.missed_by_reason, reason, m);
        }
        self.missed_by_reason.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (cause, m) in other.deep_missed_by_cause {
            add_by(&mut self.deep_missed_by_cause, cause, m);
        }
        self.deep_missed_by_cause
            .sort_by(|a, b| b.1.total_cmp(&a.1));
        self.mileage.extend(other.mileage);
    }

    /// The run with the most valid mileage per driven metre.
    pub fn worst_mileage(&self) -> Option<&VehicleMileage> {
        self.mileage
            .iter()
            .max_by(|a, b| a.valid_per_driven().total_cmp(&b.valid_per_driven()))
    }
}

/// A pass may be this much faster than its band before its implied speed is implausible, and
/// this much longer (the ends of a pass are interpolated).
const IMPLIED_SPEED_FACTOR: f64 = 1.25;
const IMPLIED_SLACK_M: f64 = 5.0;

/// Scores cleanfleet's `statuses` (from `passes`, whose run `r` owns
/// `passes[vehicle_passes[r]]`) against `truth` for the fleet `runs`.
pub fn score(
    network: &RoadNetwork,
    runs: &[VehicleRun],
    truth: &[SegmentTruth],
    statuses: &[SegmentStatus],
    passes: &[Pass],
    vehicle_passes: &[Range<usize>],
    rules: &CoverageRules,
) -> Score {
    let classes = [RoadClass::I, RoadClass::II, RoadClass::III, RoadClass::IV];
    let mut covered = Share::default();
    let mut deep_cleaned = Share::default();
    let mut covered_pr = PrecisionRecall::default();
    let mut deep_pr = PrecisionRecall::default();
    let mut missed_by_reason: Vec<(MissReason, f64)> = Vec::new();
    let mut by_class: Vec<(RoadClass, PrecisionRecall, PrecisionRecall)> = classes
        .iter()
        .map(|&c| (c, PrecisionRecall::default(), PrecisionRecall::default()))
        .collect();
    for ((segment, ours), real) in network.segments().iter().zip(statuses).zip(truth) {
        let length_m = segment.length_m;
        for share in [&mut covered, &mut deep_cleaned] {
            share.total_m += length_m;
        }
        covered.ours_m += if ours.covered { length_m } else { 0.0 };
        covered.true_m += if real.covered { length_m } else { 0.0 };
        deep_cleaned.ours_m += if ours.deep_cleaned { length_m } else { 0.0 };
        deep_cleaned.true_m += if real.deep_cleaned { length_m } else { 0.0 };
        covered_pr.add(ours.covered, real.covered, length_m);
        if real.covered {
            if let Some(reason) = ours.missed {
                add_by(&mut missed_by_reason, reason, length_m);
            }
        }
        deep_pr.add(ours.deep_cleaned, real.deep_cleaned, length_m);
        let class = &mut by_class[classes
            .iter()
            .position(|&c| c == segment.class)
            .expect("every class is listed")];
        class.1.add(ours.covered, real.covered, length_m);
        class.2.add(ours.deep_cleaned, real.deep_cleaned, length_m);
    }
    let implausible: Vec<&Pass> = passes
        .iter()
        .filter(|p| {
            let most_m =
                rules.band_kmh(p.work) / 3.6 * (p.end_s - p.start_s) * IMPLIED_SPEED_FACTOR
                    + IMPLIED_SLACK_M;
            p.is_valid() && p.length_m() > most_m
        })
        .collect();
    let twice_band_violations = passes
        .iter()
        .filter(|p| {
            p.is_valid()
                && p.length_m() > 2.0 * rules.band_kmh(p.work) / 3.6 * (p.end_s - p.start_s)
        })
        .count();
    missed_by_reason.sort_by(|a, b| b.1.total_cmp(&a.1));
    let deep_missed_by_cause = deep_misses(network, truth, statuses, passes, rules);
    let mileage = runs
        .iter()
        .zip(vehicle_passes)
        .map(|(run, range)| VehicleMileage {
            id: run.id.clone(),
            valid_m: passes[range.clone()]
                .iter()
                .filter(|p| p.is_valid())
                .map(Pass::length_m)
                .sum(),
            true_valid_m: run
                .truth
                .iter()
                .filter(|s| s.is_work(run.work, rules))
                .map(|s| s.length_m())
                .sum(),
            driven_m: run.driven_m,
        })
        .collect();
    Score {
        covered,
        deep_cleaned,
        covered_pr,
        deep_pr,
        by_class,
        implied_speed_violations: implausible.len(),
        // A fold from +0, not `sum` (which starts at −0 and would print "-0.00").
        implied_speed_violation_m: implausible.iter().fold(0.0, |m, p| m + p.length_m()),
        twice_band_violations,
        missed_by_reason,
        deep_missed_by_cause,
        mileage,
    }
}

/// Truly deep-cleaned length that `statuses` miss, by [`DeepMiss`]: each of the deep rule's
/// works is judged as if it alone covered streets.
fn deep_misses(
    network: &RoadNetwork,
    truth: &[SegmentTruth],
    statuses: &[SegmentStatus],
    passes: &[Pass],
    rules: &CoverageRules,
) -> Vec<(DeepMiss, f64)> {
    let covering = |works: &[cleanfleet_coverage::WorkType]| {
        let alone = CoverageRules {
            covering_work: works.to_vec(),
            ..rules.clone()
        };
        segment_status(network, passes, &alone)
    };
    let first = covering(&rules.deep_clean.first);
    let then = covering(&rules.deep_clean.then);
    let mut out = Vec::new();
    for (i, segment) in network.segments().iter().enumerate() {
        if !truth[i].deep_cleaned || statuses[i].deep_cleaned {
            continue;
        }
        let cause = match (first[i].covered, then[i].covered) {
            (false, false) => DeepMiss::BothShort,
            (false, true) => DeepMiss::FirstShort,
            (true, false) => DeepMiss::ThenShort,
            (true, true) => DeepMiss::NotPaired,
        };
        add_by(&mut out, cause, segment.length_m);
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_recall_weigh_by_length() {
        let mut pr = PrecisionRecall::default();
        assert_eq!((pr.precision(), pr.recall()), (None, None));
        pr.add(true, true, 300.0);
        pr.add(true, false, 100.0);
        pr.add(false, true, 200.0);
        pr.add(false, false, 1000.0);
        assert_eq!(pr.precision(), Some(0.75));
        assert_eq!(pr.recall(), Some(0.6));
        let share = Share {
            ours_m: 400.0,
            true_m: 500.0,
            total_m: 1600.0,
        };
        assert_eq!(share.relative_error(), Some(-0.2));
        assert_eq!(share.ours(), 0.25);
    }
}
