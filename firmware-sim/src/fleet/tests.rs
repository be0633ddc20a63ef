use std::collections::HashMap;

use cleanfleet_model::{decode, Body, Decoded, Fix, Limits};

use super::vehicle::{work_band_kmh, work_tools, COLLECT_FILL_RATIO};
use super::*;

const START: &str = "2026-11-21T06:00:00Z";

fn start() -> Timestamp {
    START.parse().unwrap()
}

fn demo_fleet(seed: u64) -> Fleet {
    let config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    Fleet::new(Arc::new(RoadNetwork::demo()), &config, start()).unwrap()
}

fn decoded(m: &SimMessage) -> Decoded {
    decode(&m.topic, &m.payload, m.time, &Limits::default())
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", m.topic, String::from_utf8_lossy(&m.payload)))
}

#[test]
fn same_seed_gives_the_same_messages() {
    let until = start() + SignedDuration::from_mins(30);
    let a = demo_fleet(7).step_until(until);
    let b = demo_fleet(7).step_until(until);
    assert!(a.len() > 1000, "{} messages", a.len());
    assert_eq!(a, b);
    let c = demo_fleet(8).step_until(until);
    assert_ne!(a, c);
}

#[test]
fn stepping_in_pieces_equals_stepping_at_once() {
    let until = start() + SignedDuration::from_mins(10);
    let whole = demo_fleet(3).step_until(until);
    let mut fleet = demo_fleet(3);
    let mut pieces = Vec::new();
    let mut t = start();
    while t < until {
        t += SignedDuration::from_millis(2500);
        pieces.extend(fleet.step_until(t));
    }
    assert_eq!(whole, pieces);
    assert_eq!(fleet.now(), until);
}

#[test]
fn devices_and_ids() {
    let fleet = demo_fleet(1);
    let ids: Vec<&str> = fleet.devices().iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids[..8],
        ["sw-01", "sw-02", "ws-01", "fl-01", "sp-01", "ct-01", "bin-001", "bin-002"]
    );
    assert_eq!(ids[ids.len() - 4..], ["wc-01", "wb-01", "sc-01", "sc-02"]);
    assert_eq!(ids.len(), 22);
    for d in fleet.devices() {
        let fixed = matches!(
            d.kind,
            DeviceKind::Bin | DeviceKind::Toilet | DeviceKind::Weighbridge
        );
        assert_eq!(d.position.is_some(), fixed, "{}", d.id);
    }
    let big = FleetMix {
        bins: 1200,
        ..FleetMix::NONE
    };
    assert_eq!(big.device_ids(DeviceKind::Bin).last().unwrap(), "bin-1200");
    // What a city issues credentials for is the fleet, in the same order.
    let listed: Vec<String> = SimConfig::default()
        .fleet
        .devices()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(listed, ids);
}

/// Distance in metres from `p` to the nearest segment of the network.
fn distance_to_network_m(net: &RoadNetwork, p: (f64, f64)) -> f64 {
    let m_per_deg_lat = 111_195.08;
    let m_per_deg_lon = m_per_deg_lat * p.1.to_radians().cos();
    let local = |q: (f64, f64)| ((q.0 - p.0) * m_per_deg_lon, (q.1 - p.1) * m_per_deg_lat);
    net.segments()
        .iter()
        .flat_map(|s| s.points.windows(2))
        .map(|w| {
            let (a, b) = (local(w[0]), local(w[1]));
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 {
                (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            (a.0 + t * dx).hypot(a.1 + t * dy)
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn one_hour_in_the_demo_town() {
    let net = RoadNetwork::demo();
    let mut fleet = demo_fleet(42);
    let end = start() + SignedDuration::from_hours(1);
    let mut messages = Vec::new();
    let mut truth: HashMap<(usize, Timestamp), (f64, f64)> = HashMap::new();
    while fleet.now() < end {
        messages.extend(fleet.step_until(fleet.next_tick()));
        for (device, position) in fleet.vehicle_positions() {
            truth.insert((device, fleet.now()), position);
        }
    }
    messages.extend(fleet.flush());
    let devices = fleet.devices().to_vec();

    // Vehicles stay on the road network.
    for (&(device, _), &position) in truth.iter().step_by(7) {
        let off_m = distance_to_network_m(&net, position);
        assert!(
            off_m < 1.0,
            "{} is {off_m} m off the road",
            devices[device].id
        );
    }

    let mut fixes: HashMap<usize, Vec<Fix>> = HashMap::new();
    let mut bin_fills: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut toilet_readings = 0;
    let mut tickets = Vec::new();
    let mut reading_seqs: HashMap<usize, Vec<u64>> = HashMap::new();
    for m in &messages {
        let d = decoded(m);
        let device = &devices[m.device];
        assert_eq!(
            (d.kind, d.device_id.as_str()),
            (device.kind, device.id.as_str())
        );
        match d.body {
            Body::Fixes(f) => {
                assert_eq!(m.content, Content::Fixes(f.len()));
                assert!(f.len() <= 10);
                fixes.entry(m.device).or_default().extend(f);
            }
            Body::Bin(r) => {
                bin_fills.entry(m.device).or_default().push(r.fill_ratio);
                reading_seqs
                    .entry(m.device)
                    .or_default()
                    .push(r.seq.unwrap());
                assert!(r.temperature_c.unwrap() < 40.0 || r.temperature_c.unwrap() > 55.0);
            }
            Body::Toilet(r) => {
                toilet_readings += 1;
                reading_seqs
                    .entry(m.device)
                    .or_default()
                    .push(r.seq.unwrap());
                assert!(r.nh3_mg_m3.unwrap() >= 0.0 && r.h2s_mg_m3.unwrap() >= 0.0);
            }
            Body::Ticket(t) => tickets.push(t),
            Body::Sample(s) => assert!(s.grams >= 0.0 && s.sample_id.starts_with("SC-")),
            other => panic!("unexpected {other:?}"),
        }
    }

    let mut noise_m = Vec::new();
    for (device, fixes) in &fixes {
        let kind = devices[*device].kind;
        let id = &devices[*device].id;
        assert_eq!(fixes.len(), 3600, "{id}: one fix a second");
        assert!(fixes
            .windows(2)
            .all(|w| w[1].seq > w[0].seq && w[1].time > w[0].time));
        assert!(fixes.windows(2).all(|w| w[1].odometer_m >= w[0].odometer_m));
        let mut working = 0;
        let mut overspeed = 0;
        for f in fixes {
            let speed = f.speed_kmh.unwrap();
            if f.work.any() {
                working += 1;
                assert_eq!(f.work, work_tools(kind), "{id}");
                let band = work_band_kmh(kind).unwrap();
                assert!(
                    speed <= 1.6 * band && speed > 0.0,
                    "{id} works at {speed} km/h (band {band})"
                );
                overspeed += usize::from(speed > band);
            } else {
                assert!(speed <= 40.0, "{id} drives at {speed} km/h");
            }
            let true_position = truth[&(*device, f.time)];
            let m_per_deg = 111_195.08;
            let dx = (f.lon - true_position.0) * m_per_deg * f.lat.to_radians().cos();
            let dy = (f.lat - true_position.1) * m_per_deg;
            noise_m.push(dx.hypot(dy));
        }
        if work_band_kmh(kind).is_some() {
            assert!(working > 600, "{id} worked only {working} s in an hour");
            assert!(
                overspeed * 4 < working,
                "{id}: {overspeed} of {working} s overspeed"
            );
        }
    }
    assert_eq!(fixes.len(), 6, "every vehicle sent fixes");
    // With σ = 3 m per axis the error is Rayleigh distributed: mean 3·√(π/2) ≈ 3.76 m.
    let mean_m = noise_m.iter().sum::<f64>() / noise_m.len() as f64;
    assert!((3.4..4.1).contains(&mean_m), "mean GPS error {mean_m} m");
    assert!(noise_m.iter().all(|&e| e < 25.0));

    assert_eq!(bin_fills.len(), 12, "every bin reported");
    let collections = bin_fills
        .values()
        .flat_map(|f| f.windows(2))
        .filter(|w| w[0] >= COLLECT_FILL_RATIO && w[1] <= 0.1)
        .count();
    assert!(collections >= 3, "{collections} collections in an hour");
    assert!(!tickets.is_empty(), "no weighbridge ticket in an hour");
    for t in &tickets {
        assert_eq!(t.vehicle_id, "ct-01");
        assert!(t.net_kg > 0.0 && t.time_out > t.time_in);
    }
    assert!(
        (11..=13).contains(&toilet_readings),
        "{toilet_readings} toilet readings"
    );
    for seqs in reading_seqs.values() {
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    }
}

#[test]
fn batches_follow_the_configured_size() {
    let config = SimConfig {
        batch_fixes: 7,
        fix_interval_s: 2.0,
        fleet: crate::FleetMix {
            sweepers: 1,
            ..crate::FleetMix::NONE
        },
        ..SimConfig::default()
    };
    let mut fleet = Fleet::new(Arc::new(RoadNetwork::demo()), &config, start()).unwrap();
    let messages = fleet.step_until(start() + SignedDuration::from_secs(30));
    // 15 fixes at 2 s: two full batches of 7, one fix left for the flush.
    let counts: Vec<Content> = messages.iter().map(|m| m.content).collect();
    assert_eq!(counts, [Content::Fixes(7), Content::Fixes(7)]);
    assert_eq!(messages[1].time, start() + SignedDuration::from_secs(28));
    let rest = fleet.flush();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].content, Content::Fixes(1));
    assert!(fleet.flush().is_empty());
}

#[test]
fn local_hour_follows_longitude() {
    let t: Timestamp = "2026-11-21T00:30:00Z".parse().unwrap();
    assert!((local_hour(t, SignedDuration::from_hours(8)) - 8.5).abs() < 1e-9);
    assert!((local_hour(t, SignedDuration::from_hours(-3)) - 21.5).abs() < 1e-9);
}
