//! What the city benches share: their settings, a city's sections and the process's memory.

#![allow(dead_code)]

use std::sync::Arc;

use cleanfleet_roads::{RoadNetwork, ZoneConfig};

/// The road network named by the first argument (`.osm.pbf` or `.geojson`), or the demo
/// town; with its path.
pub fn roads_from_args() -> (Option<String>, Arc<RoadNetwork>) {
    let roads = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let network = Arc::new(match &roads {
        Some(path) => RoadNetwork::from_file(path, false).expect("roads"),
        None => RoadNetwork::demo(),
    });
    (roads, network)
}

/// The environment variable `name`, or `default`.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Resident and peak resident memory of this process, MiB.
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The network's south-west and north-east corners, (lon, lat).
pub fn bounds(network: &RoadNetwork) -> ((f64, f64), (f64, f64)) {
    let points = network.segments().iter().flat_map(|s| s.points.iter());
    let (mut min, mut max) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
    for &(lon, lat) in points {
        min = (min.0.min(lon), min.1.min(lat));
        max = (max.0.max(lon), max.1.max(lat));
    }
    (min, max)
}

/// Four sections, the network's quadrants; the north two of one contractor, the south two of
/// another, each with a quarter of the fleet under contract.
pub fn quadrants(network: &RoadNetwork, devices: &[String]) -> Vec<ZoneConfig> {
    let (min, max) = bounds(network);
    let mid = ((min.0 + max.0) / 2.0, (min.1 + max.1) / 2.0);
    let (west, east) = ((min.0 - 0.01, mid.0), (mid.0, max.0 + 0.01));
    let (south, north) = ((min.1 - 0.01, mid.1), (mid.1, max.1 + 0.01));
    let quadrant =
        |id: &str, contractor: &str, lon: (f64, f64), lat: (f64, f64), n: usize| ZoneConfig {
            id: id.into(),
            contractor: Some(contractor.into()),
            polygons: vec![vec![
                (lon.0, lat.0),
                (lon.1, lat.0),
                (lon.1, lat.1),
                (lon.0, lat.1),
            ]],
            devices: devices.iter().skip(n).step_by(4).cloned().collect(),
            ..ZoneConfig::default()
        };
    vec![
        quadrant("NW", "north-clean", west, north, 0),
        quadrant("NE", "north-clean", east, north, 1),
        quadrant("SW", "south-clean", west, south, 2),
        quadrant("SE", "south-clean", east, south, 3),
    ]
}
