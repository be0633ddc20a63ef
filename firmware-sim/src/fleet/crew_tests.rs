use std::collections::HashMap;

use cleanfleet_model::{decode, Body, Decoded, Fix, Limits, WorkState};
use cleanfleet_roads::Segment;

use super::crew::{ROUND_POINTS, WALK_KMH};
use super::*;
use crate::FleetMix;

const START: &str = "2026-11-21T06:00:00Z";

fn start() -> Timestamp {
    START.parse().unwrap()
}

fn fleet(seed: u64, mix: FleetMix) -> Fleet {
    let config = SimConfig {
        seed,
        fleet: mix,
        ..SimConfig::default()
    };
    Fleet::new(Arc::new(RoadNetwork::demo()), &config, start()).unwrap()
}

fn run(fleet: &mut Fleet, hours: i64) -> Vec<SimMessage> {
    let mut messages = fleet.step_until(start() + SignedDuration::from_hours(hours));
    messages.extend(fleet.flush());
    messages
}

fn decoded(m: &SimMessage) -> Decoded {
    decode(&m.topic, &m.payload, m.time, &Limits::default())
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", m.topic, String::from_utf8_lossy(&m.payload)))
}

/// Distance in metres from `p` to the nearest of `segments`.
fn distance_m<'a>(segments: impl IntoIterator<Item = &'a Segment>, p: (f64, f64)) -> f64 {
    let m_per_deg_lat = 111_195.08;
    let m_per_deg_lon = m_per_deg_lat * p.1.to_radians().cos();
    let local = |q: (f64, f64)| ((q.0 - p.0) * m_per_deg_lon, (q.1 - p.1) * m_per_deg_lat);
    segments
        .into_iter()
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

fn local_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let m_per_deg_lat = 111_195.08;
    let m_per_deg_lon = m_per_deg_lat * a.1.to_radians().cos();
    ((b.0 - a.0) * m_per_deg_lon).hypot((b.1 - a.1) * m_per_deg_lat)
}

#[test]
fn wearables_walk_the_network_at_walking_speed() {
    let net = RoadNetwork::demo();
    let mut fleet = fleet(
        11,
        FleetMix {
            wearables: 20,
            ..FleetMix::NONE
        },
    );
    fleet.record_truth();
    let messages = run(&mut fleet, 6);
    let devices = fleet.devices().to_vec();
    assert_eq!(devices[0].id, "cw-01");
    assert_eq!(devices[19].id, "cw-20");
    let truth = fleet.truth().unwrap();

    let mut fixes: HashMap<usize, Vec<Fix>> = HashMap::new();
    for m in &messages {
        let d = decoded(m);
        assert_eq!(d.kind, DeviceKind::Wearable);
        assert_eq!(d.device_id, devices[m.device].id);
        assert!(m.topic.ends_with("/fixes"), "{}", m.topic);
        let Body::Fixes(f) = d.body else {
            panic!("{}: not fixes", m.topic)
        };
        assert_eq!(m.content, Content::Fixes(f.len()));
        assert!(f.len() <= 10);
        fixes.entry(m.device).or_default().extend(f);
    }
    let mut sos = 0;
    let mut total = 0;
    for (device, f) in &fixes {
        // A fix every 5 s, in order: 6 h is 4320 fixes.
        assert!((4319..=4320).contains(&f.len()), "{}", f.len());
        for w in f.windows(2) {
            assert_eq!(w[1].seq.unwrap(), w[0].seq.unwrap() + 1);
            assert_eq!(
                w[1].time.duration_since(w[0].time),
                SignedDuration::from_secs(5)
            );
        }
        for (i, fix) in f.iter().enumerate() {
            let speed = fix.speed_kmh.unwrap();
            assert!(
                (WALK_KMH.0..=WALK_KMH.1).contains(&speed),
                "{} at {speed} km/h",
                devices[*device].id
            );
            assert_eq!(fix.work, WorkState::default());
            assert_eq!(fix.load_kg, None);
            assert_ne!(fix.sos, Some(false));
            sos += usize::from(fix.sos == Some(true));
            if i % 50 == 0 {
                // GPS error of σ = 3 m per axis.
                let off_m = distance_m(net.segments(), (fix.lon, fix.lat));
                assert!(off_m < 20.0, "{} is {off_m} m off", devices[*device].id);
            }
        }
        total += f.len();
    }
    assert_eq!(fixes.len(), 20);

    // The truth: on the network, walking-speed steps, every SOS recorded.
    let points: Vec<&PathPoint> = truth.path.iter().collect();
    assert_eq!(points.len(), total);
    let mut by_device: HashMap<usize, Vec<&PathPoint>> = HashMap::new();
    for p in &points {
        by_device.entry(p.device).or_default().push(p);
    }
    let mut walked_m = 0.0;
    let mut steps = 0;
    for path in by_device.values() {
        for (i, w) in path.windows(2).enumerate() {
            let step_m = local_m((w[0].lon, w[0].lat), (w[1].lon, w[1].lat));
            // At most 5 km/h for 5 s, in a straight line.
            assert!(step_m <= 5.0 / 3.6 * 5.0 + 0.05, "{step_m} m in 5 s");
            walked_m += step_m;
            steps += 1;
            if i % 100 == 0 {
                let off_m = distance_m(net.segments(), (w[0].lon, w[0].lat));
                assert!(off_m < 0.5, "{off_m} m off the network");
            }
        }
    }
    let mean_kmh = walked_m / steps as f64 / 5.0 * 3.6;
    assert!((2.8..=5.0).contains(&mean_kmh), "{mean_kmh} km/h");
    assert_eq!(truth.sos.len(), sos);
    assert!(sos >= 1, "no SOS in 120 wearable-hours");
    assert!(sos < 30, "{sos} SOS presses");
    for event in &truth.sos {
        let fix = fixes[&event.device]
            .iter()
            .find(|f| f.seq == Some(event.seq))
            .unwrap();
        assert_eq!(fix.sos, Some(true));
    }
}

#[test]
fn scale_samples_weigh_the_dust_since_the_last_cleaning() {
    let net = RoadNetwork::demo();
    let mut fleet = fleet(
        5,
        FleetMix {
            sweepers: 6,
            washer_sweepers: 2,
            flushers: 2,
            sprinklers: 2,
            scales: 20,
            ..FleetMix::NONE
        },
    );
    fleet.record_truth();
    let messages = run(&mut fleet, 8);
    let devices = fleet.devices().to_vec();
    assert_eq!(devices[12].id, "sc-01");
    assert_eq!(devices[12].kind, DeviceKind::Scale);
    let truth = fleet.truth().unwrap();
    let by_id: HashMap<&str, &SampleTruth> = truth
        .samples
        .iter()
        .map(|s| (s.sample_id.as_str(), s))
        .collect();
    assert_eq!(by_id.len(), truth.samples.len(), "sample ids are unique");

    let mut samples = 0;
    let mut times: HashMap<usize, Vec<Timestamp>> = HashMap::new();
    for m in messages.iter().filter(|m| m.content == Content::Sample) {
        let d = decoded(m);
        assert_eq!(d.kind, DeviceKind::Scale);
        assert_eq!(d.device_id, devices[m.device].id);
        let Body::Sample(s) = d.body else {
            panic!("{}: not a sample", m.topic)
        };
        samples += 1;
        let t = by_id[s.sample_id.as_str()];
        assert_eq!(t.device, m.device);
        assert_eq!(
            (s.lon, s.lat, s.grams, s.time),
            (t.lon, t.lat, t.grams, t.time)
        );
        assert_eq!(s.area_m2, 1.0);
        assert!(s.grams >= 0.0);
        assert!(s.litter_count.unwrap() <= 5);
        assert_eq!(s.inspector, format!("insp-{}", &d.device_id[3..]));
        let off_m = distance_m([&net.segments()[t.segment as usize]], (s.lon, s.lat));
        assert!(off_m <= 5.0, "{} is {off_m} m off its segment", s.sample_id);
        if let Some(cleaned) = t.last_cleaned {
            assert!(cleaned <= t.time);
        }
        times.entry(m.device).or_default().push(s.time);
    }
    assert_eq!(samples, truth.samples.len());
    // Road inspections of five points 2–4 minutes apart on one street, 20–40 minutes between
    // roads: 9 to 15 inspections in 8 hours.
    let road_of = |s: &SampleTruth| {
        let segment = &net.segments()[s.segment as usize];
        segment
            .name
            .clone()
            .unwrap_or_else(|| segment.id.to_string())
    };
    for (device, t) in &times {
        let rounds: Vec<&[Timestamp]> = t
            .chunk_by(|a, b| b.duration_since(*a) <= SignedDuration::from_mins(4))
            .collect();
        assert!(
            (9..=15).contains(&rounds.len()),
            "{} inspections",
            rounds.len()
        );
        let (last, complete) = rounds.split_last().unwrap();
        assert!(last.len() <= ROUND_POINTS);
        for round in complete {
            assert_eq!(round.len(), ROUND_POINTS, "{round:?}");
        }
        for w in rounds.windows(2) {
            let gap = w[1][0].duration_since(*w[0].last().unwrap());
            assert!(gap >= SignedDuration::from_mins(20) && gap <= SignedDuration::from_mins(41));
        }
        let own: Vec<&SampleTruth> = truth
            .samples
            .iter()
            .filter(|s| s.device == *device)
            .collect();
        for round in own.chunks(ROUND_POINTS) {
            assert!(
                round.iter().all(|s| road_of(s) == road_of(round[0])),
                "one road per inspection"
            );
        }
    }

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let hours_since = |s: &SampleTruth| {
        s.last_cleaned
            .map(|c| s.time.duration_since(c).as_secs_f64() / 3600.0)
    };
    let fresh: Vec<f64> = truth
        .samples
        .iter()
        .filter(|s| hours_since(s).is_some_and(|h| h < 1.0))
        .map(|s| s.grams)
        .collect();
    let stale: Vec<f64> = truth
        .samples
        .iter()
        .filter(|s| hours_since(s).is_none_or(|h| h >= 3.0))
        .map(|s| s.grams)
        .collect();
    assert!(fresh.len() >= 10, "{} fresh samples", fresh.len());
    assert!(stale.len() >= 10, "{} stale samples", stale.len());
    assert!(
        mean(&fresh) + 5.0 < mean(&stale),
        "fresh {} g, stale {} g",
        mean(&fresh),
        mean(&stale)
    );
    assert!(mean(&fresh) < SAMPLE_BASE_G + SAMPLE_G_PER_HOUR * 1.5);

    // The truth's JSON lines carry the samples.
    let mut out = Vec::new();
    truth.write_json_lines(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["type"] == "sample")
        .collect();
    assert_eq!(lines.len(), truth.samples.len());
    assert!(lines[0]["device_id"].as_str().unwrap().starts_with("sc-"));
    assert!(lines[0]["segment"].is_u64());
}

#[test]
fn crew_changes_nothing_the_other_devices_send() {
    let until = start() + SignedDuration::from_mins(40);
    let config = |wearables, scales| SimConfig {
        seed: 9,
        fleet: FleetMix {
            wearables,
            scales,
            ..FleetMix::default()
        },
        ..SimConfig::default()
    };
    let net = Arc::new(RoadNetwork::demo());
    let plain = Fleet::new(net.clone(), &config(0, 0), start())
        .unwrap()
        .step_until(until);
    let mut crewed = Fleet::new(net, &config(3, 2), start()).unwrap();
    let others = crewed.devices().len() - 5;
    assert_eq!(others, 20);
    let messages = crewed.step_until(until);
    let without_crew: Vec<SimMessage> = messages
        .iter()
        .filter(|m| m.device < others)
        .cloned()
        .collect();
    assert_eq!(without_crew, plain);
    assert!(messages.iter().any(|m| m.content == Content::Sample));
    for m in messages.iter().filter(|m| m.device >= others) {
        decoded(m);
    }
}
