//! The fleet on a real network: the Monaco extract (`shared/data/monaco.osm.pbf`, ©
//! OpenStreetMap contributors, ODbL 1.0), which lives outside the repository and has one-way
//! dead ends where the extract clips roads.

use std::sync::Arc;

use cleanfleet_model::{decode, Body, Limits};
use cleanfleet_roads::RoadNetwork;
use cleanfleet_sim::{Content, Fleet, SimConfig};
use jiff::{SignedDuration, Timestamp};

fn monaco() -> Option<RoadNetwork> {
    let path = cleanfleet_roads::test_data::monaco_pbf()?;
    Some(RoadNetwork::from_osm_pbf(&path, false).unwrap())
}

#[test]
fn fleet_drives_monaco_for_half_an_hour() {
    let Some(network) = monaco() else {
        return;
    };
    let start: Timestamp = "2026-11-21T08:00:00Z".parse().unwrap();
    let mut fleet = Fleet::new(Arc::new(network), &SimConfig::default(), start).unwrap();
    let end = start + SignedDuration::from_mins(30);
    let mut messages = fleet.step_until(end);
    messages.extend(fleet.flush());
    let mut fixes = 0;
    let (min_lat, max_lat) = (43.70, 43.775);
    for m in &messages {
        let d = decode(&m.topic, &m.payload, m.time, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", m.topic));
        if let Body::Fixes(f) = d.body {
            assert_eq!(m.content, Content::Fixes(f.len()));
            for fix in &f {
                assert!(
                    (min_lat..max_lat).contains(&fix.lat),
                    "{} at {}",
                    d.device_id,
                    fix.lat
                );
            }
            fixes += f.len();
        }
    }
    assert_eq!(fixes, 6 * 1800, "six vehicles, one fix a second");
    for d in fleet.devices().iter().filter(|d| d.position.is_some()) {
        let (_, lat) = d.position.unwrap();
        assert!(
            (min_lat..max_lat).contains(&lat),
            "{} stands at {lat}",
            d.id
        );
    }
}
