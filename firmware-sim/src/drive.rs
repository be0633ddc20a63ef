//! Where vehicles can drive, how they find their way, and where they are along a segment.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use cleanfleet_roads::{RoadNetwork, Segment};
use geo::{Bearing, Distance, Haversine, Point};

/// A traversal of a segment: `(segment_id, forward)`.
pub(crate) type Edge = (u32, bool);

/// The largest strongly connected part of the network. A vehicle inside it can always drive
/// on and reach any of its nodes, so a seeded random walk never strands at a one-way dead end
/// where an extract clips a road.
pub(crate) struct Core {
    contains: Vec<bool>,
    nodes: Vec<u32>,
}

impl Core {
    /// `None` when no node can be left and returned to.
    pub fn new(net: &RoadNetwork) -> Option<Core> {
        let component = strongly_connected_components(net);
        let node_count = net.nodes().len();
        let mut sizes = vec![0usize; node_count];
        for &c in &component {
            sizes[c as usize] += 1;
        }
        // A component of one node counts only with a loop segment back to itself.
        let mut has_cycle = vec![false; node_count];
        for s in net.segments() {
            if component[s.from_node as usize] == component[s.to_node as usize] {
                has_cycle[component[s.from_node as usize] as usize] = true;
            }
        }
        let best = (0..node_count)
            .filter(|&c| has_cycle[c])
            .max_by_key(|&c| (sizes[c], Reverse(c)))? as u32;
        let contains: Vec<bool> = component.iter().map(|&c| c == best).collect();
        let nodes = (0..node_count as u32)
            .filter(|&n| contains[n as usize])
            .collect();
        Some(Core { contains, nodes })
    }

    pub fn nodes(&self) -> &[u32] {
        &self.nodes
    }

    /// The traversals out of `node` that stay inside the core.
    pub fn exits<'a>(&'a self, net: &'a RoadNetwork, node: u32) -> impl Iterator<Item = Edge> + 'a {
        net.outgoing(node)
            .filter(move |&(s, f)| self.contains[net.segments()[s as usize].end_node(f) as usize])
    }

    /// The shortest drive from `from` to `to`, both core nodes.
    pub fn route(&self, net: &RoadNetwork, from: u32, to: u32) -> Option<Vec<Edge>> {
        let mut best_m = vec![f64::INFINITY; net.nodes().len()];
        let mut via: Vec<Option<Edge>> = vec![None; net.nodes().len()];
        // Non-negative floats order like their bit patterns, which makes them heap keys.
        let mut heap = BinaryHeap::from([Reverse((0f64.to_bits(), from))]);
        best_m[from as usize] = 0.0;
        while let Some(Reverse((bits, node))) = heap.pop() {
            let dist_m = f64::from_bits(bits);
            if node == to {
                break;
            }
            if dist_m > best_m[node as usize] {
                continue;
            }
            for (s, f) in self.exits(net, node) {
                let seg = &net.segments()[s as usize];
                let next = seg.end_node(f);
                let candidate = dist_m + seg.length_m;
                if candidate < best_m[next as usize] {
                    best_m[next as usize] = candidate;
                    via[next as usize] = Some((s, f));
                    heap.push(Reverse((candidate.to_bits(), next)));
                }
            }
        }
        if !best_m[to as usize].is_finite() {
            return None;
        }
        let mut path = Vec::new();
        let mut node = to;
        while node != from {
            let edge = via[node as usize]?;
            path.push(edge);
            node = net.segments()[edge.0 as usize].start_node(edge.1);
        }
        path.reverse();
        Some(path)
    }
}

/// Component id per node (Kosaraju, iterative so that long roads cannot overflow the stack).
fn strongly_connected_components(net: &RoadNetwork) -> Vec<u32> {
    let n = net.nodes().len();
    let segments = net.segments();
    let successors = |node: u32| {
        net.outgoing(node)
            .map(|(s, f)| segments[s as usize].end_node(f))
            .collect::<Vec<_>>()
    };
    let mut predecessors: Vec<Vec<u32>> = vec![Vec::new(); n];
    for node in 0..n as u32 {
        for next in successors(node) {
            predecessors[next as usize].push(node);
        }
    }
    // Pass 1: nodes in order of DFS completion.
    let mut visited = vec![false; n];
    let mut finished = Vec::with_capacity(n);
    for root in 0..n as u32 {
        if visited[root as usize] {
            continue;
        }
        visited[root as usize] = true;
        let mut stack = vec![(root, successors(root), 0usize)];
        while let Some((node, next, i)) = stack.last_mut() {
            if let Some(&succ) = next.get(*i) {
                *i += 1;
                if !visited[succ as usize] {
                    visited[succ as usize] = true;
                    stack.push((succ, successors(succ), 0));
                }
            } else {
                finished.push(*node);
                stack.pop();
            }
        }
    }
    // Pass 2: on the reversed graph, in reverse completion order, each tree is a component.
    let mut component = vec![u32::MAX; n];
    for &root in finished.iter().rev() {
        if component[root as usize] != u32::MAX {
            continue;
        }
        component[root as usize] = root;
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            for &prev in &predecessors[node as usize] {
                if component[prev as usize] == u32::MAX {
                    component[prev as usize] = root;
                    stack.push(prev);
                }
            }
        }
    }
    component
}

/// Position (lon, lat) `offset_m` along a traversal of `segment`, and the heading there in
/// degrees from north (`None` on a zero-length piece).
pub(crate) fn position_along(
    segment: &Segment,
    forward: bool,
    offset_m: f64,
) -> ((f64, f64), Option<f64>) {
    let points = &segment.points;
    let piece = |i: usize| {
        if forward {
            (points[i], points[i + 1])
        } else {
            let j = points.len() - 1 - i;
            (points[j], points[j - 1])
        }
    };
    let pieces = points.len() - 1;
    let mut left_m = offset_m.max(0.0);
    for i in 0..pieces {
        let (a, b) = piece(i);
        let (pa, pb) = (Point::from(a), Point::from(b));
        let length_m = Haversine.distance(pa, pb);
        if left_m <= length_m || i == pieces - 1 {
            let f = if length_m > 0.0 {
                (left_m / length_m).min(1.0)
            } else {
                0.0
            };
            let position = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
            let heading = (length_m > 0.0).then(|| Haversine.bearing(pa, pb).rem_euclid(360.0));
            return (position, heading);
        }
        left_m -= length_m;
    }
    unreachable!("a segment has at least two points")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_town_is_one_core_and_routes_respect_oneway() {
        let net = RoadNetwork::demo();
        let core = Core::new(&net).unwrap();
        assert_eq!(core.nodes().len(), net.nodes().len());
        let corner = |sign: f64| {
            (0..net.nodes().len() as u32)
                .max_by(|&a, &b| {
                    let key =
                        |n: u32| sign * (net.nodes()[n as usize].0 + net.nodes()[n as usize].1);
                    key(a).total_cmp(&key(b))
                })
                .unwrap()
        };
        let (from, to) = (corner(-1.0), corner(1.0));
        let path = core.route(&net, from, to).unwrap();
        // Opposite corners of a 10 × 10 block grid: 20 blocks of 200 m.
        let length_m: f64 = path
            .iter()
            .map(|&(s, _)| net.segments()[s as usize].length_m)
            .sum();
        assert!((length_m - 4000.0).abs() < 5.0, "{length_m}");
        let mut node = from;
        for &(s, f) in &path {
            let seg = &net.segments()[s as usize];
            assert_eq!(seg.start_node(f), node);
            assert!(
                f || !seg.oneway,
                "drove segment {s} against its one-way direction"
            );
            node = seg.end_node(f);
        }
        assert_eq!(node, to);
        assert_eq!(core.route(&net, 5, 5).unwrap(), []);
    }

    #[test]
    fn core_excludes_one_way_dead_ends() {
        // 0 <-> 1 two-way, 1 -> 2 one-way: node 2 can be reached but not left.
        let nodes = vec![(7.0, 43.0), (7.001, 43.0), (7.002, 43.0)];
        let seg = |id, from: u32, to: u32, oneway| {
            let points = vec![nodes[from as usize], nodes[to as usize]];
            Segment {
                id,
                osm_way_id: None,
                name: None,
                class: cleanfleet_roads::RoadClass::IV,
                oneway,
                from_node: from,
                to_node: to,
                points,
                length_m: 81.0,
                width_m: 5.0,
            }
        };
        let net =
            RoadNetwork::new(nodes.clone(), vec![seg(0, 0, 1, false), seg(1, 1, 2, true)]).unwrap();
        let core = Core::new(&net).unwrap();
        assert_eq!(core.nodes(), [0, 1]);
        assert_eq!(core.exits(&net, 1).collect::<Vec<_>>(), [(0, false)]);
        assert!(!core.contains[2]);

        let dead =
            RoadNetwork::new(nodes.clone(), vec![seg(0, 0, 1, true), seg(1, 1, 2, true)]).unwrap();
        assert!(Core::new(&dead).is_none());
    }

    #[test]
    fn positions_follow_the_geometry_in_both_directions() {
        let net = RoadNetwork::demo();
        let s = &net.segments()[0];
        let len = s.length_m;
        let (start, heading) = position_along(s, true, 0.0);
        assert_eq!(start, s.points[0]);
        let (end, _) = position_along(s, true, len + 10.0);
        assert_eq!(end, *s.points.last().unwrap());
        let (mid_f, hf) = position_along(s, true, len / 2.0);
        let (mid_b, hb) = position_along(s, false, len / 2.0);
        assert!((mid_f.0 - mid_b.0).abs() < 1e-9 && (mid_f.1 - mid_b.1).abs() < 1e-9);
        // Segment 0 runs east along the southern ring road.
        assert!((heading.unwrap() - 90.0).abs() < 0.1 && (hf.unwrap() - 90.0).abs() < 0.1);
        assert!((hb.unwrap() - 270.0).abs() < 0.1);
    }
}
