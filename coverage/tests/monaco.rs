//! A round trip on the real Monaco extract: import it, drive a simulated fleet on it with
//! GPS noise, match the fixes back onto it, and compare passes and coverage with the truth.

use std::collections::HashMap;
use std::sync::Arc;

use cleanfleet_coverage::{
    derive_passes, segment_status, CoverageRules, CoverageSummary, FixState, MatchConfig, Matcher,
    Observation, WorkType,
};
use cleanfleet_model::{decode, Body, Fix, Limits};
use cleanfleet_roads::RoadNetwork;
use cleanfleet_sim::{FaultConfig, Fleet, FleetMix, SimConfig};
use jiff::{SignedDuration, Timestamp};

#[test]
fn monaco_round_trip_matches_the_truth() {
    let Some(path) = cleanfleet_roads::test_data::monaco_pbf() else {
        return;
    };
    let network = Arc::new(RoadNetwork::from_osm_pbf(&path, false).unwrap());
    let config = SimConfig {
        seed: 11,
        fleet: FleetMix {
            sweepers: 2,
            washer_sweepers: 1,
            flushers: 1,
            ..FleetMix::NONE
        },
        faults: FaultConfig {
            gps_sigma_m: 5.0,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    let start: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
    let (messages, truth) = Fleet::simulate(
        network.clone(),
        &config,
        start,
        SignedDuration::from_hours(1),
    )
    .unwrap();
    let truth = &truth;
    let true_segment: HashMap<(usize, u64), u32> = truth
        .path
        .iter()
        .map(|p| ((p.device, p.seq), p.on.unwrap().segment))
        .collect();
    let mut traces: HashMap<usize, Vec<Fix>> = HashMap::new();
    for m in &messages {
        if let Body::Fixes(fixes) = decode(&m.topic, &m.payload, m.time, &Limits::default())
            .unwrap()
            .body
        {
            traces.entry(m.device).or_default().extend(fixes);
        }
    }
    let rules = CoverageRules::default();
    let mut matcher = Matcher::new(&network, MatchConfig::default());
    let (mut fixes, mut on_true_segment) = (0, 0);
    let mut passes = Vec::new();
    for (device, trace) in &traces {
        let work = WorkType::of_kind(truth.devices[*device].kind).unwrap();
        let observations: Vec<Observation> = trace.iter().map(Observation::from_fix).collect();
        let states: Vec<FixState> = trace.iter().map(|f| FixState::from_fix(f, work)).collect();
        let matched = matcher.match_trace(&observations);
        for (f, m) in trace.iter().zip(&matched.points) {
            fixes += 1;
            on_true_segment += usize::from(
                m.is_some_and(|m| m.segment == true_segment[&(*device, f.seq.unwrap())]),
            );
        }
        passes.extend(derive_passes(&network, work, &states, &matched, &rules));
    }
    let share = on_true_segment as f64 / fixes as f64;
    assert!(fixes == 4 * 3600, "{fixes}");
    assert!(share > 0.9, "{share} of fixes on their true segment");

    // The segments worked (more than 10 m of them), computed and true, agree closely.
    let computed: std::collections::HashSet<u32> = passes
        .iter()
        .filter(|p| p.is_valid() && p.length_m() > 10.0)
        .map(|p| p.segment)
        .collect();
    let worked: std::collections::HashSet<u32> = truth
        .passes
        .iter()
        .filter(|p| !p.overspeed && p.to_m - p.from_m > 10.0)
        .map(|p| p.segment)
        .collect();
    let both = computed.intersection(&worked).count() as f64;
    let (precision, recall) = (both / computed.len() as f64, both / worked.len() as f64);
    assert!(
        precision > 0.85 && recall > 0.85,
        "precision {precision}, recall {recall}"
    );
    let summary = CoverageSummary::of(&network, &segment_status(&network, &passes, &rules), |_| {
        true
    });
    assert!(summary.covered_length_m > 1000.0, "{summary:?}");
}
