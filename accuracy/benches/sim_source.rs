//! The firmware simulator's fleets as [`VehicleRun`]s, so that the bench scores the matcher on
//! them by the same independent truth rules as on the generator's. Only the simulator's
//! messages and its record of where the vehicles worked are used; its own scoring is not.

use std::sync::Arc;

use cleanfleet_accuracy::{GenFix, TruthStretch, VehicleRun};
use cleanfleet_coverage::{CoverageRules, WorkType};
use cleanfleet_model::{decode, Body, Limits};
use cleanfleet_roads::RoadNetwork;
use cleanfleet_sim::{FaultConfig, Fleet, FleetMix, SimConfig};
use jiff::{SignedDuration, Timestamp};

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// The simulator's cleaning vehicles for `hours` at GPS σ `sigma_m` (its white noise), with
/// multipath jumps on 1 % of fixes; every fix arrives (the simulator replays drop-outs).
pub fn simulated_runs(
    network: &Arc<RoadNetwork>,
    seed: u64,
    hours: f64,
    sigma_m: f64,
) -> Vec<VehicleRun> {
    let config = SimConfig {
        seed,
        fleet: FleetMix {
            sweepers: 2,
            washer_sweepers: 2,
            flushers: 2,
            sprinklers: 1,
            ..FleetMix::NONE
        },
        faults: FaultConfig {
            gps_sigma_m: sigma_m,
            multipath_jump_rate: 0.01,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    let start: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
    let span = SignedDuration::from_secs_f64(hours * 3600.0);
    let (messages, truth) = Fleet::simulate(network.clone(), &config, start, span).unwrap();
    let rules = CoverageRules::default();
    let mut runs: Vec<VehicleRun> = truth
        .devices
        .iter()
        .map(|d| VehicleRun {
            id: d.device_id.clone(),
            work: WorkType::of_kind(d.kind).unwrap_or(WorkType::Sweep),
            follows: None,
            fixes: Vec::new(),
            truth: Vec::new(),
            driven_m: 0.0,
        })
        .collect();
    for m in &messages {
        let Ok(decoded) = decode(&m.topic, &m.payload, m.time, &Limits::default()) else {
            continue;
        };
        let Body::Fixes(fixes) = decoded.body else {
            continue;
        };
        let run = &mut runs[m.device];
        let work = run.work;
        run.fixes.extend(fixes.iter().map(|f| GenFix {
            time_s: seconds(f.time),
            lon: f.lon,
            lat: f.lat,
            speed_kmh: f.speed_kmh,
            heading_deg: f.heading_deg,
            hdop: f.hdop,
            satellites: f.satellites,
            tools_on: work.tools_on(&f.work),
        }));
    }
    for p in &truth.passes {
        let work = runs[p.device].work;
        runs[p.device].truth.push(TruthStretch {
            segment: p.segment,
            forward: p.forward,
            from_m: p.from_m,
            to_m: p.to_m,
            start_s: seconds(p.start),
            end_s: seconds(p.end),
            tools_on: true,
            // Overspeed passes are over the band: not work.
            max_speed_kmh: if p.overspeed {
                2.0 * rules.band_kmh(work)
            } else {
                0.0
            },
        });
    }
    // The path interleaves the vehicles, each in time order.
    let mut last: Vec<Option<(f64, f64)>> = vec![None; runs.len()];
    for p in &truth.path {
        let now = (seconds(p.time), p.speed_kmh);
        if let Some((t, v)) = last[p.device] {
            runs[p.device].driven_m += (v + now.1) / 2.0 / 3.6 * (now.0 - t).max(0.0);
        }
        last[p.device] = Some(now);
    }
    let cleaning: Vec<bool> = truth
        .devices
        .iter()
        .map(|d| WorkType::of_kind(d.kind).is_some())
        .collect();
    let mut k = 0;
    runs.retain(|r| {
        let keep = cleaning[k] && !r.fixes.is_empty();
        k += 1;
        keep
    });
    for run in &mut runs {
        // Drop-outs replayed late arrive out of order; a retransmit twice.
        run.fixes.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
        run.fixes.dedup_by(|a, b| a.time_s == b.time_s);
    }
    runs
}
