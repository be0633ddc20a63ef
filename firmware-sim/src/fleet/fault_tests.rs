//! Ground truth and device faults.

use std::collections::{BTreeSet, HashMap};

use cleanfleet_model::{decode, Body, Fix, Limits};

use super::*;
use crate::FaultConfig;

fn start() -> Timestamp {
    "2026-11-21T06:00:00Z".parse().unwrap()
}

fn fleet(seed: u64, faults: FaultConfig) -> Fleet {
    let config = SimConfig {
        seed,
        faults,
        ..SimConfig::default()
    };
    let mut fleet = Fleet::new(Arc::new(RoadNetwork::demo()), &config, start()).unwrap();
    fleet.record_truth();
    fleet
}

fn noisy() -> FaultConfig {
    FaultConfig {
        gps_sigma_m: 3.0,
        multipath_jump_rate: 0.02,
        duplicate_rate: 0.1,
        offline_rate_per_hour: 2.0,
        offline_duration_s: 300.0,
        clock_skew_s: 30.0,
        bin_stuck_per_day: 1.0,
        bin_tilt_per_day: 1.0,
        bin_low_battery_ratio: 0.25,
    }
}

/// Runs for `hours` and flushes.
fn run(fleet: &mut Fleet, hours: i64) -> Vec<SimMessage> {
    let mut messages = fleet.step_until(start() + SignedDuration::from_hours(hours));
    messages.extend(fleet.flush());
    messages
}

fn body(m: &SimMessage) -> Body {
    decode(&m.topic, &m.payload, m.time, &Limits::default())
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", m.topic, String::from_utf8_lossy(&m.payload)))
        .body
}

/// Every fix sent, with its sender and the message's send time.
fn fixes(messages: &[SimMessage]) -> Vec<(usize, Timestamp, Fix)> {
    messages
        .iter()
        .filter_map(|m| match body(m) {
            Body::Fixes(f) => Some(f.into_iter().map(move |f| (m.device, m.time, f))),
            _ => None,
        })
        .flatten()
        .collect()
}

fn error_m(f: &Fix, p: &PathPoint) -> f64 {
    let m_per_deg = 111_195.08;
    let dx = (f.lon - p.lon) * m_per_deg * p.lat.to_radians().cos();
    let dy = (f.lat - p.lat) * m_per_deg;
    dx.hypot(dy)
}

fn path_by_seq(truth: &Truth) -> HashMap<(usize, u64), &PathPoint> {
    truth.path.iter().map(|p| ((p.device, p.seq), p)).collect()
}

#[test]
fn without_faults_fixes_are_the_truth_plus_gps_noise() {
    let mut fleet = fleet(42, FaultConfig::default());
    let messages = run(&mut fleet, 2);
    let truth = fleet.truth().unwrap();
    let path = path_by_seq(truth);
    let fixes = fixes(&messages);
    assert_eq!(fixes.len(), 6 * 7200, "one fix a second per vehicle");
    assert_eq!(truth.path.len(), fixes.len());
    let mut errors = Vec::new();
    for (device, _, f) in &fixes {
        let p = path[&(*device, f.seq.unwrap())];
        assert_eq!(f.time, p.time, "no clock skew");
        assert_eq!(f.work, p.work);
        assert!((f.speed_kmh.unwrap() - p.speed_kmh).abs() <= 0.05 + 1e-9);
        assert!(!p.multipath);
        assert!(f.hdop.unwrap() < 6.0);
        errors.push(error_m(f, p));
    }
    // σ = 3 m per axis: Rayleigh, mean 3·√(π/2) ≈ 3.76 m, 99.9 % below 3.72·σ ≈ 11.2 m.
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    assert!((3.6..3.95).contains(&mean), "mean GPS error {mean} m");
    let above = errors.iter().filter(|&&e| e > 11.2).count() as f64 / errors.len() as f64;
    assert!(above < 0.003, "{above} of fixes more than 11.2 m off");
    assert!(errors.iter().all(|&e| e < 25.0));
    assert!(truth.devices.iter().all(|d| d.clock_skew_s == 0.0));
    assert!(truth.offline.is_empty());

    // Bin readings report the true fill; trucks' collections are in the truth.
    let mut fills: HashMap<usize, Vec<(Timestamp, f64)>> = HashMap::new();
    for f in &truth.bin_fill {
        fills
            .entry(f.device)
            .or_default()
            .push((f.time, f.fill_ratio));
    }
    let mut readings = 0;
    for m in &messages {
        if let Body::Bin(r) = body(m) {
            let series = &fills[&m.device];
            let (_, fill) = series.iter().rev().find(|(t, _)| *t <= r.time).unwrap();
            assert!((r.fill_ratio - round_to(*fill, 3)).abs() < 1e-9);
            readings += 1;
        }
    }
    assert!(readings > 12 * 20, "{readings} bin readings");
    assert!(truth.collections.len() >= 3, "{:?}", truth.collections);
    for c in &truth.collections {
        assert_eq!(fleet.devices()[c.truck].kind, DeviceKind::CollectionTruck);
        assert_eq!(fleet.devices()[c.device].kind, DeviceKind::Bin);
        assert!(c.fill_ratio >= vehicle::COLLECT_FILL_RATIO && c.residue_ratio < 0.1);
        assert!(fills[&c.device].contains(&(c.time, c.residue_ratio)));
    }
}

#[test]
fn faults_leave_the_truth_alone() {
    let mut clean = fleet(9, FaultConfig::default());
    let mut faulty = fleet(9, noisy());
    let clean_messages = run(&mut clean, 1);
    let faulty_messages = run(&mut faulty, 1);
    assert_ne!(clean_messages, faulty_messages);
    let (a, b) = (clean.truth().unwrap(), faulty.truth().unwrap());
    let without_flag = |t: &Truth| {
        t.path
            .iter()
            .map(|p| PathPoint {
                multipath: false,
                ..p.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_flag(a), without_flag(b));
    assert_eq!(a.bin_fill, b.bin_fill);
    assert_eq!(a.collections, b.collections);
}

#[test]
fn same_seed_gives_the_same_faults() {
    let a = run(&mut fleet(7, noisy()), 1);
    let b = run(&mut fleet(7, noisy()), 1);
    assert_eq!(a, b);
    let c = run(&mut fleet(8, noisy()), 1);
    assert_ne!(a, c);
}

#[test]
fn fault_rates_follow_the_config() {
    let hours = 6;
    let faults = noisy();
    let mut fleet = fleet(11, faults.clone());
    let messages = run(&mut fleet, hours);
    let truth = fleet.truth().unwrap().clone();
    let path = path_by_seq(&truth);
    let vehicles = 6;

    // Duplicates: a fix batch sent again right after itself.
    let fix_messages: Vec<&SimMessage> = messages
        .iter()
        .filter(|m| matches!(m.content, Content::Fixes(_)))
        .collect();
    let duplicates = fix_messages.windows(2).filter(|w| w[0] == w[1]).count();
    let originals = fix_messages.len() - duplicates;
    assert_eq!(originals, vehicles * hours as usize * 360);
    let duplicate_rate = duplicates as f64 / originals as f64;
    assert!(
        (duplicate_rate - faults.duplicate_rate).abs() < 0.015,
        "duplicate rate {duplicate_rate}"
    );

    // Multipath: poor HDOP and a jump of at least 20 m less the noise.
    let sent = fixes(&messages);
    let mut unique = BTreeSet::new();
    let mut jumps = BTreeSet::new();
    for (device, _, f) in &sent {
        let p = path[&(*device, f.seq.unwrap())];
        unique.insert((*device, f.seq.unwrap()));
        if f.hdop.unwrap() >= 6.0 {
            assert!(f.satellites.unwrap() <= 6);
            assert!(error_m(f, p) > 5.0, "{} m", error_m(f, p));
            jumps.insert((*device, f.seq.unwrap()));
        }
    }
    let flagged: BTreeSet<(usize, u64)> = truth
        .path
        .iter()
        .filter(|p| p.multipath)
        .map(|p| (p.device, p.seq))
        .collect();
    assert_eq!(jumps, flagged);
    let jump_rate = jumps.len() as f64 / unique.len() as f64;
    assert!(
        (jump_rate - faults.multipath_jump_rate).abs() < 0.003,
        "multipath rate {jump_rate}"
    );

    // Drop-outs: about the configured rate per hour online, each as long as configured.
    let offline_s: f64 = truth
        .offline
        .iter()
        .map(|o| o.until.duration_since(o.from).as_secs_f64())
        .sum();
    let online_h = (vehicles as f64 * hours as f64) - offline_s / 3600.0;
    let rate = truth.offline.len() as f64 / online_h;
    assert!(
        (rate - faults.offline_rate_per_hour).abs() < 0.6,
        "{} drop-outs in {online_h} h online",
        truth.offline.len()
    );
    let end = start() + SignedDuration::from_hours(hours);
    for o in &truth.offline {
        let length = o.until.duration_since(o.from).as_secs_f64();
        assert!(
            length == faults.offline_duration_s
                || (o.until == end && length < faults.offline_duration_s),
            "{o:?}"
        );
        // Nothing sent while offline; the backlog goes out on reconnecting.
        assert!(!messages
            .iter()
            .any(|m| m.device == o.device && m.time > o.from && m.time < o.until));
        if length < faults.offline_duration_s {
            continue;
        }
        let replayed: Vec<u64> = sent
            .iter()
            .filter(|(d, t, f)| {
                *d == o.device && *t == o.until && path[&(*d, f.seq.unwrap())].time < o.until
            })
            .map(|(_, _, f)| f.seq.unwrap())
            .collect();
        assert!(replayed.len() >= 290, "{o:?}: {} replayed", replayed.len());
    }
    // Replays are out of order: some fix arrives after a later one of its device.
    let mut latest: HashMap<usize, u64> = HashMap::new();
    let mut out_of_order = 0;
    for (device, _, f) in &sent {
        let seq = f.seq.unwrap();
        let last = latest.entry(*device).or_default();
        if seq < *last {
            out_of_order += 1;
        }
        *last = seq.max(*last);
    }
    assert!(out_of_order > 100, "{out_of_order} fixes out of order");

    // Nothing lost: every fix generated was sent at least once.
    let generated: BTreeSet<(usize, u64)> = truth.path.iter().map(|p| (p.device, p.seq)).collect();
    assert_eq!(unique, generated);
}

#[test]
fn clock_skew_is_constant_per_device_and_bounded() {
    let mut fleet = fleet(5, noisy());
    let messages = run(&mut fleet, 1);
    let truth = fleet.truth().unwrap();
    let skews: Vec<SignedDuration> = truth
        .devices
        .iter()
        .map(|d| SignedDuration::from_secs_f64(d.clock_skew_s))
        .collect();
    assert!(skews.iter().all(|s| s.as_secs_f64().abs() <= 30.0));
    assert!(skews.iter().filter(|s| s.as_secs_f64().abs() > 1.0).count() > 10);
    let path = path_by_seq(truth);
    for (device, _, f) in fixes(&messages) {
        let p = path[&(device, f.seq.unwrap())];
        assert_eq!(f.time.duration_since(p.time), skews[device]);
    }
    let mut readings = 0;
    for m in &messages {
        let time = match body(m) {
            Body::Bin(r) => r.time,
            Body::Toilet(r) => r.time,
            Body::Ticket(t) => t.time_out,
            _ => continue,
        };
        assert_eq!(time.duration_since(m.time), skews[m.device]);
        readings += 1;
    }
    assert!(readings > 100);
}

#[test]
fn truth_is_written_as_json_lines() {
    let mut fleet = fleet(3, noisy());
    run(&mut fleet, 1);
    let path = std::env::temp_dir().join(format!("cleanfleet-truth-{}.jsonl", std::process::id()));
    fleet.write_truth(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let truth = fleet.truth().unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["device_id"].is_string(), "{line}");
        *counts
            .entry(v["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts["device"], truth.devices.len());
    assert_eq!(counts["path"], truth.path.len());
    assert_eq!(counts["bin_fill"], truth.bin_fill.len());
    assert_eq!(
        counts.get("collection").copied().unwrap_or(0),
        truth.collections.len()
    );
    assert_eq!(
        counts.get("offline").copied().unwrap_or(0),
        truth.offline.len()
    );
    assert!(!truth.offline.is_empty());
    assert_eq!(counts["pass"], truth.passes.len());
    assert_eq!(
        counts.get("deep_clean").copied().unwrap_or(0),
        truth.deep_cleaned().len()
    );
    let first_path = text
        .lines()
        .find(|l| l.contains(r#""type":"path""#))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(first_path).unwrap();
    for field in [
        "time",
        "lon",
        "lat",
        "speed_kmh",
        "work",
        "seq",
        "segment",
        "forward",
        "offset_m",
    ] {
        assert!(!v[field].is_null(), "{field} missing in {first_path}");
    }

    // Not recording: nothing to write but the file.
    let mut quiet = Fleet::new(
        Arc::new(RoadNetwork::demo()),
        &SimConfig::default(),
        start(),
    )
    .unwrap();
    assert!(quiet.truth().is_none());
    quiet.step_until(start() + SignedDuration::from_mins(1));
    assert!(quiet.truth().is_none());
}

/// A clean fleet's truth over `hours`.
fn clean_truth(seed: u64, hours: i64) -> Truth {
    let mut fleet = fleet(seed, FaultConfig::default());
    run(&mut fleet, hours);
    fleet.truth().unwrap().clone()
}

/// The pass was worked during the tick that ended at the point (a pass can end within the
/// tick, when the vehicle stops at an intersection).
fn worked_in_tick(pass: &WorkPass, point: &PathPoint) -> bool {
    let tick_start = point.time - SignedDuration::from_secs(1);
    pass.start < point.time && tick_start < pass.end
}

#[test]
fn every_working_point_lies_in_a_pass_of_its_traversal() {
    let truth = clean_truth(5, 2);
    let net = RoadNetwork::demo();
    assert!(truth.passes.len() > 100, "{} passes", truth.passes.len());
    for p in &truth.passes {
        let length_m = net.segments()[p.segment as usize].length_m;
        assert!(
            0.0 <= p.from_m && p.from_m < p.to_m && p.to_m <= length_m + 1e-9,
            "{p:?}"
        );
        assert!(p.start <= p.end, "{p:?}");
    }
    let mut by_traversal: HashMap<(usize, u32, bool), Vec<&WorkPass>> = HashMap::new();
    for p in &truth.passes {
        by_traversal
            .entry((p.device, p.segment, p.forward))
            .or_default()
            .push(p);
    }
    let mut working_points = 0;
    for point in truth.path.iter().filter(|p| p.work.any()) {
        let on = point.on.unwrap();
        let passes = &by_traversal[&(point.device, on.segment, on.forward)];
        let inside = passes.iter().any(|p| {
            p.from_m - 1e-6 <= on.offset_m
                && on.offset_m <= p.to_m + 1e-6
                && worked_in_tick(p, point)
        });
        assert!(inside, "{point:?} in no pass of {passes:?}");
        working_points += 1;
    }
    assert!(working_points > 10_000, "{working_points}");
    // Worked metres are the passes' lengths: speed × 1 s summed over working ticks, less
    // the rest of the ticks in which a vehicle stopped at an intersection.
    let worked_m: f64 = truth
        .path
        .iter()
        .filter(|p| p.work.any())
        .map(|p| p.speed_kmh / 3.6)
        .sum();
    let passes_m: f64 = truth.passes.iter().map(|p| p.to_m - p.from_m).sum();
    assert!(
        passes_m <= worked_m && passes_m > 0.995 * worked_m,
        "{worked_m} vs {passes_m}"
    );
}

#[test]
fn overspeed_passes_are_worked_above_the_band() {
    let truth = clean_truth(11, 4);
    let band = |device: usize| super::vehicle::work_band_kmh(truth.devices[device].kind).unwrap();
    let (fast, slow): (Vec<&WorkPass>, Vec<&WorkPass>) =
        truth.passes.iter().partition(|p| p.overspeed);
    assert!(
        !fast.is_empty() && fast.len() * 5 < slow.len(),
        "{} of {}",
        fast.len(),
        slow.len()
    );
    for point in truth.path.iter().filter(|p| p.work.any()) {
        let on = point.on.unwrap();
        let pass = truth
            .passes
            .iter()
            .find(|p| {
                (p.device, p.segment, p.forward) == (point.device, on.segment, on.forward)
                    && worked_in_tick(p, point)
            })
            .unwrap();
        assert_eq!(
            point.speed_kmh > band(point.device),
            pass.overspeed,
            "{point:?} {pass:?}"
        );
    }
}

#[test]
fn the_washer_sweeper_follows_its_flusher_and_deep_cleans() {
    let truth = clean_truth(2, 4);
    let id = |d: usize| truth.devices[d].device_id.as_str();
    let traversals = |device: &str| -> Vec<(u32, bool)> {
        let mut out: Vec<(u32, bool)> = Vec::new();
        for p in truth.path.iter().filter(|p| id(p.device) == device) {
            let on = p.on.unwrap();
            if out.last() != Some(&(on.segment, on.forward)) {
                out.push((on.segment, on.forward));
            }
        }
        out
    };
    let leader = traversals("fl-01");
    let follower = traversals("ws-01");
    assert!(follower.len() > 20, "{} traversals", follower.len());
    assert!(leader.len() >= follower.len());
    assert_eq!(
        leader[..follower.len()],
        follower[..],
        "ws-01 leaves fl-01's trail"
    );

    let deep = truth.deep_cleaned();
    let deep_m: f64 = deep.iter().map(|d| d.to_m - d.from_m).sum();
    assert!(deep_m > 2_000.0, "{deep_m} m deep-cleaned in 4 h");
    for d in &deep {
        assert_eq!(id(d.flusher), "fl-01");
        assert!(d.swept_from.duration_since(d.flushed_until) <= DEEP_CLEAN_WITHIN);
    }
    // Mostly by the follower; a free sweeper may pass by too.
    let by_follower_m: f64 = deep
        .iter()
        .filter(|d| id(d.sweeper) == "ws-01")
        .map(|d| d.to_m - d.from_m)
        .sum();
    assert!(
        by_follower_m > 0.8 * deep_m,
        "{by_follower_m} of {deep_m} m"
    );
}

#[test]
fn vehicles_sometimes_turn_back() {
    let truth = clean_truth(4, 4);
    let mut u_turns = 0;
    let mut last: HashMap<usize, (u32, bool)> = HashMap::new();
    for p in &truth.path {
        let on = p.on.unwrap();
        if let Some(prev) = last.insert(p.device, (on.segment, on.forward)) {
            u_turns += usize::from(prev == (on.segment, !on.forward));
        }
    }
    assert!(u_turns >= 3, "{u_turns} U-turns");
}

#[test]
fn bin_sensor_faults_follow_the_config() {
    let faults = FaultConfig {
        bin_stuck_per_day: 0.5,
        bin_tilt_per_day: 0.5,
        bin_low_battery_ratio: 0.3,
        ..FaultConfig::default()
    };
    let config = SimConfig {
        seed: 3,
        faults: faults.clone(),
        fleet: crate::FleetMix {
            bins: 200,
            ..crate::FleetMix::NONE
        },
        fix_interval_s: 60.0,
        ..SimConfig::default()
    };
    let mut fleet = Fleet::new(Arc::new(RoadNetwork::demo()), &config, start()).unwrap();
    fleet.record_truth();
    let days = 3;
    let messages = run(&mut fleet, 24 * days);
    let truth = fleet.truth().unwrap();
    let of = |kind: BinFaultKind| truth.bin_faults.iter().filter(move |f| f.fault == kind);

    let low = of(BinFaultKind::LowBattery).count() as f64 / 200.0;
    assert!((low - 0.3).abs() < 0.08, "low battery share {low}");
    let end = fleet.now();
    let faulty_days: f64 = truth
        .bin_faults
        .iter()
        .filter(|f| f.fault != BinFaultKind::LowBattery)
        .map(|f| {
            f.until
                .unwrap()
                .min(end)
                .duration_since(f.from)
                .as_secs_f64()
                / 86_400.0
        })
        .sum();
    let healthy_days = 200.0 * days as f64 - faulty_days;
    for kind in [BinFaultKind::StuckSensor, BinFaultKind::Tilt] {
        let rate = of(kind).count() as f64 / healthy_days;
        assert!(
            (rate - 0.5).abs() < 0.1,
            "{kind:?}: {rate} per healthy bin-day"
        );
    }

    // Readings show each fault while it lasts, and the truth otherwise.
    let during = |device: usize, t: Timestamp, kind: BinFaultKind| {
        truth.bin_faults.iter().any(|f| {
            f.device == device && f.fault == kind && f.from <= t && f.until.is_none_or(|u| t < u)
        })
    };
    let mut stuck_values: HashMap<usize, BTreeSet<u64>> = HashMap::new();
    let (mut tilted, mut stuck) = (0, 0);
    for m in &messages {
        let Body::Bin(r) = body(m) else { continue };
        let is_tilted = during(m.device, m.time, BinFaultKind::Tilt);
        assert_eq!(r.tilted, Some(is_tilted), "{r:?}");
        tilted += usize::from(is_tilted);
        if during(m.device, m.time, BinFaultKind::StuckSensor) {
            stuck += 1;
            stuck_values
                .entry(m.device)
                .or_default()
                .insert(r.fill_ratio.to_bits());
        }
        let low_battery = during(m.device, m.time, BinFaultKind::LowBattery);
        assert_eq!(r.battery_ratio.unwrap() < 0.15, low_battery, "{r:?}");
    }
    assert!(
        tilted > 50 && stuck > 200,
        "{tilted} tilted, {stuck} stuck readings"
    );
    // A stuck sensor repeats one value per episode: few distinct values per bin.
    let episodes = |d: usize| {
        truth
            .bin_faults
            .iter()
            .filter(|f| f.device == d && f.fault == BinFaultKind::StuckSensor)
            .count()
    };
    for (device, values) in &stuck_values {
        assert!(values.len() <= episodes(*device), "{device}: {values:?}");
    }
}

#[test]
fn vehicles_with_a_section_keep_to_it() {
    let network = Arc::new(RoadNetwork::demo());
    let (sections, grids) = cleanfleet_roads::Zones::demo_configs(&network);
    let zones = cleanfleet_roads::Zones::new(&network, &sections, &grids).unwrap();
    let mut config = SimConfig::default();
    config.fleet.sweepers = 3;
    let mut fleet = Fleet::new(network, &config, start()).unwrap();
    fleet.assign_sections(&zones);
    fleet.record_truth();
    run(&mut fleet, 3);
    let truth = fleet.truth().unwrap();
    // Listed under their sections in the demo town; sw-03 is listed nowhere and takes the
    // first section in turn.
    for (id, section) in [
        ("sw-01", "NW"),
        ("sw-02", "SE"),
        ("fl-01", "SW"),
        ("sp-01", "NE"),
        ("sw-03", "SW"),
    ] {
        let device = truth
            .devices
            .iter()
            .position(|d| d.device_id == id)
            .unwrap();
        let working: Vec<u32> = truth
            .path
            .iter()
            .filter(|p| p.device == device && p.work.any())
            .map(|p| p.on.unwrap().segment)
            .collect();
        let home = working
            .iter()
            .filter(|&&s| zones.section_of(s).unwrap().id == section)
            .count() as f64
            / working.len() as f64;
        // A quarter of the town by chance; most of its work with the bias.
        assert!(home > 0.6, "{id} worked {home:.2} of its time in {section}");
    }
}
