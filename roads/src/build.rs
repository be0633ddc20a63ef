//! Cutting road ways into segments between intersections.

use std::collections::HashMap;

use crate::network::polyline_length_m;
use crate::tags::{Direction, WayAttributes};
use crate::{RoadNetwork, RoadsError, Segment};

/// A road way as OSM draws it: an ordered list of node ids.
#[derive(Debug, Clone)]
pub(crate) struct Way {
    pub osm_way_id: Option<i64>,
    pub attributes: WayAttributes,
    pub node_ids: Vec<i64>,
}

/// Splits `ways` at every node used more than once (by two ways, or twice by one) and at way
/// ends. `positions` gives (lon, lat) per node id; a way is also cut where a node has no
/// position, as happens where an extract clips a way at its boundary.
///
/// Returns `None` when no segment remains.
pub(crate) fn build(
    ways: &[Way],
    positions: &HashMap<i64, (f64, f64)>,
) -> Result<Option<RoadNetwork>, RoadsError> {
    let mut uses: HashMap<i64, u32> = HashMap::new();
    for way in ways {
        for id in &way.node_ids {
            *uses.entry(*id).or_default() += 1;
        }
    }
    let mut node_index: HashMap<i64, u32> = HashMap::new();
    let mut nodes = Vec::new();
    let mut segments = Vec::new();
    for way in ways {
        let mut ids = way.node_ids.clone();
        // Repeated consecutive refs are a tagging slip; they would make a zero-length piece.
        ids.dedup();
        for run in ids.split(|id| !positions.contains_key(id)) {
            let mut start = 0;
            for i in 1..run.len() {
                let is_end = i == run.len() - 1;
                if !is_end && uses[&run[i]] < 2 {
                    continue;
                }
                let mut graph_node = |id: i64| {
                    *node_index.entry(id).or_insert_with(|| {
                        nodes.push(positions[&id]);
                        (nodes.len() - 1) as u32
                    })
                };
                let mut from_node = graph_node(run[start]);
                let mut to_node = graph_node(run[i]);
                let mut points: Vec<(f64, f64)> =
                    run[start..=i].iter().map(|id| positions[id]).collect();
                if way.attributes.direction == Direction::Backward {
                    points.reverse();
                    std::mem::swap(&mut from_node, &mut to_node);
                }
                let id = u32::try_from(segments.len())
                    .map_err(|_| RoadsError::InvalidNetwork("more than 2^32 segments".into()))?;
                segments.push(Segment {
                    id,
                    osm_way_id: way.osm_way_id,
                    name: way.attributes.name.clone(),
                    class: way.attributes.class,
                    oneway: way.attributes.direction != Direction::Both,
                    from_node,
                    to_node,
                    length_m: polyline_length_m(&points),
                    points,
                    width_m: way.attributes.width_m,
                });
                start = i;
            }
        }
    }
    if segments.is_empty() {
        return Ok(None);
    }
    RoadNetwork::new(nodes, segments).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoadClass;

    fn way(id: i64, direction: Direction, node_ids: &[i64]) -> Way {
        Way {
            osm_way_id: Some(id),
            attributes: WayAttributes {
                class: RoadClass::III,
                name: Some(format!("way {id}")),
                direction,
                width_m: 7.0,
            },
            node_ids: node_ids.to_vec(),
        }
    }

    /// Nodes 1..=9 on a line of 0.001° steps eastwards, plus 10 and 11 north of node 3.
    fn positions() -> HashMap<i64, (f64, f64)> {
        let mut p: HashMap<i64, (f64, f64)> = (1..=9)
            .map(|i| (i, (7.0 + 0.001 * i as f64, 43.0)))
            .collect();
        p.insert(10, (7.003, 43.001));
        p.insert(11, (7.003, 43.002));
        p
    }

    #[test]
    fn ways_are_split_at_shared_nodes_only() {
        //   11
        //   |
        //   10
        //   |
        // 1-2-3-4-5      way 100: 1..5; way 200: 3,10,11 (a T junction at 3)
        let ways = [
            way(100, Direction::Both, &[1, 2, 3, 4, 5]),
            way(200, Direction::Both, &[3, 10, 11]),
        ];
        let net = build(&ways, &positions()).unwrap().unwrap();
        let s = net.segments();
        assert_eq!(s.len(), 3, "{s:#?}");
        // Way 100 is cut at node 3 only; node 2 and 4 stay shape points.
        assert_eq!(s[0].points, [(7.001, 43.0), (7.002, 43.0), (7.003, 43.0)]);
        assert_eq!(s[1].points, [(7.003, 43.0), (7.004, 43.0), (7.005, 43.0)]);
        assert_eq!(
            s[2].points,
            [(7.003, 43.0), (7.003, 43.001), (7.003, 43.002)]
        );
        assert_eq!(s[0].to_node, s[1].from_node);
        assert_eq!(s[0].to_node, s[2].from_node);
        assert_eq!(net.nodes().len(), 4, "ends 1, 5, 11 and junction 3");
        assert_eq!(s[2].osm_way_id, Some(200));
        assert_eq!(s[2].name.as_deref(), Some("way 200"));
        assert!(s
            .iter()
            .all(|s| !s.oneway && s.class == RoadClass::III && s.width_m == 7.0));
        // Two pieces of 0.001° of longitude at 43° N.
        assert!((s[0].length_m - 162.6).abs() < 0.5, "{}", s[0].length_m);
        let junction = s[0].to_node;
        assert_eq!(net.outgoing(junction).count(), 3);
    }

    #[test]
    fn crossing_ways_split_both_and_loops_close() {
        // Way 300 crosses way 100 at node 3 without ending there; way 400 is a closed loop
        // 6-7-8-6 touching nothing else.
        let mut p = positions();
        p.insert(12, (7.003, 42.999));
        let ways = [
            way(100, Direction::Both, &[1, 2, 3, 4, 5]),
            way(300, Direction::Forward, &[12, 3, 10]),
            way(400, Direction::Both, &[6, 7, 8, 6]),
        ];
        let net = build(&ways, &p).unwrap().unwrap();
        let s = net.segments();
        assert_eq!(s.len(), 5);
        assert!(s[2].oneway && s[3].oneway);
        assert_eq!(s[2].to_node, s[3].from_node);
        let lp = &s[4];
        assert_eq!(lp.from_node, lp.to_node, "a closed way is one loop segment");
        assert_eq!(lp.points.len(), 4);
        let junction = s[0].to_node;
        // At the crossing: both halves of way 100, and way 300 onward (not back: one-way).
        let out: Vec<_> = net.outgoing(junction).collect();
        assert_eq!(out, [(0, false), (1, true), (3, true)]);
    }

    #[test]
    fn reverse_oneway_is_redrawn_in_driving_direction() {
        let ways = [way(100, Direction::Backward, &[1, 2, 3])];
        let net = build(&ways, &positions()).unwrap().unwrap();
        let s = &net.segments()[0];
        assert!(s.oneway);
        assert_eq!(s.points, [(7.003, 43.0), (7.002, 43.0), (7.001, 43.0)]);
        assert_eq!(net.nodes()[s.from_node as usize], (7.003, 43.0));
        assert_eq!(net.outgoing(s.from_node).collect::<Vec<_>>(), [(0, true)]);
        assert_eq!(net.outgoing(s.to_node).count(), 0);
    }

    #[test]
    fn missing_nodes_cut_ways_and_duplicates_are_dropped() {
        // Node 50 has no position (clipped by the extract): the way becomes 1-2 and 3-4.
        let ways = [way(100, Direction::Both, &[1, 2, 2, 50, 3, 4])];
        let net = build(&ways, &positions()).unwrap().unwrap();
        let s = net.segments();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].points, [(7.001, 43.0), (7.002, 43.0)]);
        assert_eq!(s[1].points, [(7.003, 43.0), (7.004, 43.0)]);
        let nothing = build(&[way(1, Direction::Both, &[50, 51])], &positions()).unwrap();
        assert!(nothing.is_none());
        let single = build(&[way(1, Direction::Both, &[1, 50, 2])], &positions()).unwrap();
        assert!(single.is_none(), "single-node runs make no segment");
    }
}
