//! cleanfleet's coverage pipeline, run on generated fleets: the coverage stage's own path
//! (`chunked_passes`: hour by hour with ten minutes of context, passes cut to the hour).

use std::ops::Range;
use std::time::Instant;

use cleanfleet_coverage::{chunked_passes, CoverageRules, MatchConfig, Matcher, Pass};
use cleanfleet_roads::RoadNetwork;

use crate::gen::VehicleRun;

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStats {
    /// Fixes matched, over all vehicles.
    pub fixes: usize,
    /// Wall time of the coverage stage's work, on one thread: matching window by window
    /// (each fix of a window's context is matched once more with its neighbour) and deriving
    /// the passes.
    pub stage_time_s: f64,
    /// Wall time of `Matcher::match_trace` alone on each whole trace, on one thread.
    pub match_time_s: f64,
    /// Per run (in order), the range of its passes in the returned list.
    pub vehicle_passes: Vec<Range<usize>>,
}

impl PipelineStats {
    /// Matching throughput on one core.
    pub fn fixes_per_s(&self) -> f64 {
        self.fixes as f64 / self.match_time_s
    }

    /// The coverage stage's throughput on one core, fixes in per second.
    pub fn stage_fixes_per_s(&self) -> f64 {
        self.fixes as f64 / self.stage_time_s
    }
}

/// Matches every run's fixes with one [`Matcher`] and cuts them into passes.
pub fn our_passes(
    network: &RoadNetwork,
    runs: &[VehicleRun],
    config: &MatchConfig,
    rules: &CoverageRules,
) -> (Vec<Pass>, PipelineStats) {
    let mut matcher = Matcher::new(network, config.clone());
    let mut passes = Vec::new();
    let mut stats = PipelineStats {
        fixes: 0,
        stage_time_s: 0.0,
        match_time_s: 0.0,
        vehicle_passes: Vec::with_capacity(runs.len()),
    };
    for run in runs {
        let observations = run.observations();
        let started = Instant::now();
        let first = passes.len();
        passes.extend(chunked_passes(
            network,
            &mut matcher,
            rules,
            run.work,
            &observations,
            &run.fix_states(),
        ));
        stats.stage_time_s += started.elapsed().as_secs_f64();
        let started = Instant::now();
        std::hint::black_box(matcher.match_trace(&observations));
        stats.match_time_s += started.elapsed().as_secs_f64();
        stats.fixes += observations.len();
        stats.vehicle_passes.push(first..passes.len());
    }
    (passes, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{generate, FleetMix, GenConfig};

    #[test]
    fn every_run_gets_its_own_range_of_passes() {
        let net = RoadNetwork::demo();
        let config = GenConfig {
            shift_hours: 0.25,
            fleet: FleetMix {
                sweepers: 2,
                washer_sweepers: 0,
                flushers: 0,
                sprinklers: 1,
            },
            ..GenConfig::default()
        };
        let runs = generate(&net, &config);
        let rules = CoverageRules::default();
        let (passes, stats) = our_passes(&net, &runs, &MatchConfig::default(), &rules);
        assert_eq!(
            stats.fixes,
            runs.iter().map(|r| r.fixes.len()).sum::<usize>()
        );
        assert_eq!(stats.vehicle_passes.len(), runs.len());
        let mut next = 0;
        for (run, range) in runs.iter().zip(&stats.vehicle_passes) {
            assert_eq!(range.start, next);
            next = range.end;
            assert!(passes[range.clone()].iter().all(|p| p.work == run.work));
            assert!(
                passes[range.clone()].iter().any(Pass::is_valid),
                "{}",
                run.id
            );
        }
        assert_eq!(next, passes.len());
        assert!(stats.match_time_s > 0.0 && stats.fixes_per_s().is_finite());
    }
}
