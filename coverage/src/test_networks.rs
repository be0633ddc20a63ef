//! Hand-made networks for the unit tests.

use cleanfleet_roads::{RoadClass, RoadNetwork, Segment};

use crate::Plane;

pub const ORIGIN: (f64, f64) = (7.42, 43.73);

/// A network from nodes in metres east and north of [`ORIGIN`] and straight class III
/// segments `(from, to, oneway)`.
pub fn network(nodes_m: &[(f64, f64)], segments: &[(u32, u32, bool)]) -> RoadNetwork {
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let nodes: Vec<(f64, f64)> = nodes_m
        .iter()
        .map(|&(x, y)| plane.to_lon_lat([x, y]))
        .collect();
    let segments = segments
        .iter()
        .enumerate()
        .map(|(id, &(from, to, oneway))| {
            let (a, b) = (nodes_m[from as usize], nodes_m[to as usize]);
            Segment {
                id: id as u32,
                osm_way_id: None,
                name: None,
                class: RoadClass::III,
                oneway,
                from_node: from,
                to_node: to,
                points: vec![nodes[from as usize], nodes[to as usize]],
                length_m: (b.0 - a.0).hypot(b.1 - a.1),
                width_m: 8.0,
            }
        })
        .collect();
    RoadNetwork::new(nodes, segments).unwrap()
}
