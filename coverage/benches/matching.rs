//! Map-matching and coverage accuracy and speed on simulated fleets with known ground truth.
//!
//! `cargo bench -p cleanfleet-coverage --bench matching [-- /abs/path/NETWORK.osm.pbf]`:
//! simulates an 8-hour shift of 12 cleaning vehicles on the demo town (or the given OSM
//! extract) at GPS noise σ = 5, 10 and 20 m, matches each vehicle's fixes, derives passes and
//! the day's segment status, and compares with the simulator's ground truth: the share of
//! fixes matched to their true segment, the city's covered, mechanised and deep-cleaned
//! shares (computed against true, and the relative error), covered-segment precision and
//! recall, and matching throughput on one core. Each noise level runs with every fix and
//! with 10 % of fixes lost at random.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use cleanfleet_coverage::{
    derive_passes, segment_status, CoverageRules, CoverageSummary, FixState, InvalidReason,
    MatchConfig, Matcher, Observation, Pass, SegmentStatus, WorkType,
};
use cleanfleet_model::{decode, Body, DeviceKind, Fix, Limits};
use cleanfleet_roads::RoadNetwork;
use cleanfleet_sim::{FaultConfig, Fleet, FleetMix, SimConfig, Truth};
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHIFT_H: i64 = 8;

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// The simulator's true passes as coverage passes, under the same rules.
fn true_passes(network: &RoadNetwork, truth: &Truth, rules: &CoverageRules) -> Vec<Pass> {
    truth
        .passes
        .iter()
        .filter_map(|p| {
            let work = WorkType::of_kind(truth.devices[p.device].kind)?;
            let length_m = p.to_m - p.from_m;
            let segment_m = network.segments()[p.segment as usize].length_m;
            let invalid = if p.overspeed {
                Some(InvalidReason::Overspeed)
            } else if length_m < rules.min_pass_length_m
                && length_m < rules.covered_ratio * segment_m
            {
                Some(InvalidReason::TooShort)
            } else {
                None
            };
            Some(Pass {
                segment: p.segment,
                forward: p.forward,
                from_m: p.from_m,
                to_m: p.to_m,
                start_s: seconds(p.start),
                end_s: seconds(p.end),
                work,
                invalid,
                max_speed_kmh: 0.0,
            })
        })
        .collect()
}

struct Outcome {
    fixes: usize,
    on_segment: usize,
    matching_s: f64,
    statuses: Vec<SegmentStatus>,
}

/// Matches every vehicle's fixes (less the `lost` share) and derives the day's status.
fn compute(
    network: &RoadNetwork,
    traces: &HashMap<usize, (DeviceKind, Vec<Fix>)>,
    truth_on: &HashMap<(usize, u64), u32>,
    config: &MatchConfig,
    rules: &CoverageRules,
    lost: f64,
) -> Outcome {
    let mut matcher = Matcher::new(network, config.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut outcome = Outcome {
        fixes: 0,
        on_segment: 0,
        matching_s: 0.0,
        statuses: Vec::new(),
    };
    let mut passes = Vec::new();
    let mut devices: Vec<&usize> = traces.keys().collect();
    devices.sort_unstable();
    for device in devices {
        let (kind, fixes) = &traces[device];
        let Some(work) = WorkType::of_kind(*kind) else {
            continue;
        };
        let kept: Vec<&Fix> = fixes.iter().filter(|_| !rng.random_bool(lost)).collect();
        let observations: Vec<Observation> =
            kept.iter().map(|f| Observation::from_fix(f)).collect();
        let started = Instant::now();
        let matched = matcher.match_trace(&observations);
        outcome.matching_s += started.elapsed().as_secs_f64();
        let states: Vec<FixState> = kept.iter().map(|f| FixState::from_fix(f, work)).collect();
        passes.extend(derive_passes(network, work, &states, &matched, rules));
        for (f, m) in kept.iter().zip(&matched.points) {
            outcome.fixes += 1;
            let truth = truth_on[&(*device, f.seq.unwrap())];
            outcome.on_segment += usize::from(m.is_some_and(|m| m.segment == truth));
        }
    }
    outcome.statuses = segment_status(network, &passes, rules);
    outcome
}

fn main() {
    let path = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (name, network) = match &path {
        Some(p) => (
            p.clone(),
            RoadNetwork::from_osm_pbf(std::path::Path::new(p), false).unwrap(),
        ),
        None => ("demo town".to_owned(), RoadNetwork::demo()),
    };
    let network = Arc::new(network);
    let rules = CoverageRules::default();
    println!(
        "coverage on {name}: {} segments, {:.0} km; 12 vehicles (4 sweepers, 2 washer-sweepers, \
         2 flushers, 2 sprinklers, 2 collection trucks), 1 Hz, {SHIFT_H} h",
        network.segments().len(),
        network.total_length_m() / 1000.0
    );
    println!(
        "sigma_m lost  fixes    on_true_seg  covered(true)     err   mech(true)        err   deep(true)        err  precision recall  fixes/s/core"
    );
    for sigma_m in [5.0, 10.0, 20.0] {
        let config = SimConfig {
            seed: 2026,
            fleet: FleetMix {
                sweepers: 4,
                washer_sweepers: 2,
                flushers: 2,
                sprinklers: 2,
                collection_trucks: 2,
                ..FleetMix::NONE
            },
            faults: FaultConfig {
                gps_sigma_m: sigma_m,
                ..FaultConfig::default()
            },
            ..SimConfig::default()
        };
        let start: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
        let (messages, truth) = Fleet::simulate(
            network.clone(),
            &config,
            start,
            SignedDuration::from_hours(SHIFT_H),
        )
        .unwrap();
        let truth = &truth;
        let truth_on: HashMap<(usize, u64), u32> = truth
            .path
            .iter()
            .filter_map(|p| Some(((p.device, p.seq), p.on?.segment)))
            .collect();
        let mut traces: HashMap<usize, (DeviceKind, Vec<Fix>)> = HashMap::new();
        for m in &messages {
            let decoded = decode(&m.topic, &m.payload, m.time, &Limits::default()).unwrap();
            if let Body::Fixes(fixes) = decoded.body {
                let kind = truth.devices[m.device].kind;
                traces
                    .entry(m.device)
                    .or_insert_with(|| (kind, Vec::new()))
                    .1
                    .extend(fixes);
            }
        }
        for (_, fixes) in traces.values_mut() {
            fixes.sort_by_key(|f| f.time);
            fixes.dedup_by_key(|f| f.time);
        }
        let true_statuses = segment_status(&network, &true_passes(&network, truth, &rules), &rules);
        let truth_summary = CoverageSummary::of(&network, &true_statuses, |_| true);
        let match_config = MatchConfig {
            gps_sigma_m: sigma_m,
            beta_m: 1.6 * sigma_m,
            reverse_tolerance_m: 4.0 * sigma_m,
            search_radius_m: (5.0 * sigma_m).max(50.0),
            min_move_m: 2.0 * sigma_m,
            max_candidates: 12,
            ..MatchConfig::default()
        };
        for lost in [0.0, 0.1] {
            let outcome = compute(&network, &traces, &truth_on, &match_config, &rules, lost);
            let summary = CoverageSummary::of(&network, &outcome.statuses, |_| true);
            let error = |computed: f64, truth: f64| {
                if truth > 0.0 {
                    100.0 * (computed - truth).abs() / truth
                } else {
                    f64::NAN
                }
            };
            let (c, t) = (
                summary.covered_share_by_length(),
                truth_summary.covered_share_by_length(),
            );
            let (mc, mt) = (
                summary.mechanised_rate_by_length(),
                truth_summary.mechanised_rate_by_length(),
            );
            let (dc, dt) = (
                summary.deep_cleaned_share_by_length(),
                truth_summary.deep_cleaned_share_by_length(),
            );
            let both = outcome
                .statuses
                .iter()
                .zip(&true_statuses)
                .filter(|(a, b)| a.covered && b.covered)
                .count() as f64;
            let computed_n = outcome.statuses.iter().filter(|s| s.covered).count() as f64;
            let true_n = true_statuses.iter().filter(|s| s.covered).count() as f64;
            println!(
                "{sigma_m:>7.0} {:>4.0}% {:>6} {:>11.2}%  {:>5.2}% ({:>5.2}%) {:>5.2}%  {:>5.2}% ({:>5.2}%) {:>5.2}%  {:>5.2}% ({:>5.2}%) {:>5.2}%  {:>8.3} {:>6.3} {:>13.0}",
                lost * 100.0,
                outcome.fixes,
                100.0 * outcome.on_segment as f64 / outcome.fixes as f64,
                100.0 * c,
                100.0 * t,
                error(c, t),
                100.0 * mc,
                100.0 * mt,
                error(mc, mt),
                100.0 * dc,
                100.0 * dt,
                error(dc, dt),
                both / computed_n,
                both / true_n,
                outcome.fixes as f64 / outcome.matching_s,
            );
        }
    }
}
