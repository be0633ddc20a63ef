//! What the generator needs of the road network: positions along segments in metres, the part
//! of the network a truck can always drive out of and back into, and shortest drives.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use cleanfleet_coverage::Plane;
use cleanfleet_roads::RoadNetwork;
use geo::{Distance, Haversine, Point};

/// A traversal of a segment: `(segment, forward)`.
pub(crate) type Edge = (u32, bool);

/// Segment geometry in a local metric plane, indexed by the network's Haversine offsets so that
/// a position `along_m` from `from_node` agrees with `segment.length_m`.
pub(crate) struct Geometry {
    plane: Plane,
    segments: Vec<SegmentGeometry>,
}

struct SegmentGeometry {
    xy: Vec<[f64; 2]>,
    /// Haversine distance from the first point to each point.
    cumulative_m: Vec<f64>,
}

impl Geometry {
    pub(crate) fn new(network: &RoadNetwork) -> Geometry {
        let bbox = network.bbox();
        let centre = bbox.center();
        let plane = Plane::new(centre.x, centre.y);
        let segments = network
            .segments()
            .iter()
            .map(|s| {
                let mut cumulative_m = Vec::with_capacity(s.points.len());
                let mut total_m = 0.0;
                cumulative_m.push(0.0);
                for w in s.points.windows(2) {
                    total_m += Haversine.distance(Point::from(w[0]), Point::from(w[1]));
                    cumulative_m.push(total_m);
                }
                SegmentGeometry {
                    xy: s.points.iter().map(|&p| plane.to_xy(p)).collect(),
                    cumulative_m,
                }
            })
            .collect();
        Geometry { plane, segments }
    }

    pub(crate) fn lon_lat(&self, xy: [f64; 2]) -> (f64, f64) {
        self.plane.to_lon_lat(xy)
    }

    #[cfg(test)]
    pub(crate) fn xy(&self, lon_lat: (f64, f64)) -> [f64; 2] {
        self.plane.to_xy(lon_lat)
    }

    /// The point `along_m` from the segment's `from_node` and the bearing there (degrees from
    /// north) of the direction `from_node` → `to_node`.
    pub(crate) fn at(&self, segment: u32, along_m: f64) -> ([f64; 2], f64) {
        let g = &self.segments[segment as usize];
        let last_piece = g.xy.len() - 2;
        let piece = g
            .cumulative_m
            .partition_point(|&c| c <= along_m)
            .saturating_sub(1)
            .min(last_piece);
        let (c0, c1) = (g.cumulative_m[piece], g.cumulative_m[piece + 1]);
        let t = if c1 > c0 {
            ((along_m - c0) / (c1 - c0)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (a, b) = (g.xy[piece], g.xy[piece + 1]);
        let point = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
        (point, self.bearing_near(segment, piece))
    }

    /// Bearing of the piece `piece`, or of the nearest piece that has a length (OSM ways can
    /// repeat a point).
    fn bearing_near(&self, segment: u32, piece: usize) -> f64 {
        let g = &self.segments[segment as usize];
        let pieces = g.xy.len() - 1;
        (0..pieces)
            .flat_map(|d| [piece + d, piece.wrapping_sub(d)])
            .filter(|&p| p < pieces)
            .map(|p| (g.xy[p], g.xy[p + 1]))
            .find(|(a, b)| a != b)
            .map_or(0.0, |(a, b)| bearing_deg(a, b))
    }

    /// The driving direction's bearing where a traversal leaves its start node.
    pub(crate) fn start_bearing(&self, (segment, forward): Edge) -> f64 {
        let pieces = self.segments[segment as usize].xy.len() - 1;
        if forward {
            self.bearing_near(segment, 0)
        } else {
            (self.bearing_near(segment, pieces - 1) + 180.0).rem_euclid(360.0)
        }
    }

    /// The driving direction's bearing where a traversal arrives at its end node.
    pub(crate) fn end_bearing(&self, (segment, forward): Edge) -> f64 {
        let pieces = self.segments[segment as usize].xy.len() - 1;
        if forward {
            self.bearing_near(segment, pieces - 1)
        } else {
            (self.bearing_near(segment, 0) + 180.0).rem_euclid(360.0)
        }
    }
}

pub(crate) fn bearing_deg(a: [f64; 2], b: [f64; 2]) -> f64 {
    (b[0] - a[0])
        .atan2(b[1] - a[1])
        .to_degrees()
        .rem_euclid(360.0)
}

/// The turn between two bearings, 0 (straight on) to 180 (turning back), degrees.
pub(crate) fn turn_deg(from_deg: f64, to_deg: f64) -> f64 {
    let d = (to_deg - from_deg).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// The network as a directed graph restricted to its largest strongly connected part: from any
/// node of it a truck can reach any other and come back, so a plan inside it never strands a
/// vehicle at the end of a one-way street cut off by the extract's border.
pub(crate) struct Graph<'n> {
    network: &'n RoadNetwork,
    in_core: Vec<bool>,
}

impl<'n> Graph<'n> {
    pub(crate) fn new(network: &'n RoadNetwork) -> Graph<'n> {
        let in_core = largest_strong_component(network);
        Graph { network, in_core }
    }

    pub(crate) fn network(&self) -> &'n RoadNetwork {
        self.network
    }

    pub(crate) fn core_nodes(&self) -> Vec<u32> {
        (0..self.in_core.len() as u32)
            .filter(|&n| self.in_core[n as usize])
            .collect()
    }

    pub(crate) fn end_node(&self, (segment, forward): Edge) -> u32 {
        self.network.segments()[segment as usize].end_node(forward)
    }

    /// The traversals out of `node` that stay in the core.
    pub(crate) fn outgoing(&self, node: u32) -> impl Iterator<Item = Edge> + '_ {
        self.network
            .outgoing(node)
            .filter(|&e| self.in_core[self.end_node(e) as usize])
    }

    /// Dijkstra from `source` over the core, calling `settle(node, distance_m)` on each node in
    /// order of distance until it returns `false`. Returns the arrival traversal of every
    /// settled or reached node, for [`path_to`].
    pub(crate) fn search(
        &self,
        source: u32,
        mut settle: impl FnMut(u32, f64) -> bool,
    ) -> Vec<Option<Edge>> {
        let n = self.in_core.len();
        let mut best_m = vec![f64::INFINITY; n];
        let mut via: Vec<Option<Edge>> = vec![None; n];
        let mut done = vec![false; n];
        let mut heap = BinaryHeap::new();
        best_m[source as usize] = 0.0;
        heap.push(Queued(0.0, source));
        while let Some(Queued(d, node)) = heap.pop() {
            if done[node as usize] {
                continue;
            }
            done[node as usize] = true;
            if !settle(node, d) {
                break;
            }
            for e in self.outgoing(node) {
                let next = self.end_node(e);
                let nd = d + self.network.segments()[e.0 as usize].length_m;
                if nd < best_m[next as usize] {
                    best_m[next as usize] = nd;
                    via[next as usize] = Some(e);
                    heap.push(Queued(nd, next));
                }
            }
        }
        via
    }

    /// The shortest drive from `source` to the nearest other node for which `target` holds.
    pub(crate) fn route_to_nearest(
        &self,
        source: u32,
        target: impl Fn(u32) -> bool,
    ) -> Option<Vec<Edge>> {
        let mut found = None;
        let via = self.search(source, |node, _| {
            if node != source && target(node) {
                found = Some(node);
                return false;
            }
            true
        });
        found.map(|node| path_to(self.network, &via, source, node))
    }
}

/// The traversals from `source` to `node` by a search's arrival traversals.
pub(crate) fn path_to(
    network: &RoadNetwork,
    via: &[Option<Edge>],
    source: u32,
    node: u32,
) -> Vec<Edge> {
    let mut path = Vec::new();
    let mut at = node;
    while at != source {
        let e = via[at as usize].expect("a settled node has an arrival");
        path.push(e);
        at = network.segments()[e.0 as usize].start_node(e.1);
    }
    path.reverse();
    path
}

/// A heap entry ordered so that the nearest pops first.
struct Queued(f64, u32);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

/// Per node, whether it is in the strongly connected component with the most nodes
/// (Kosaraju, iteratively: a real extract has long chains that would overflow a recursion).
fn largest_strong_component(network: &RoadNetwork) -> Vec<bool> {
    let n = network.nodes().len();
    let end = |(s, f): Edge| network.segments()[s as usize].end_node(f);
    let forward: Vec<Vec<u32>> = (0..n as u32)
        .map(|u| network.outgoing(u).map(end).collect())
        .collect();
    let mut backward: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (u, targets) in forward.iter().enumerate() {
        for &v in targets {
            backward[v as usize].push(u as u32);
        }
    }
    // First pass: nodes in order of finishing a depth-first search of the forward graph.
    let mut finished = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in 0..n {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some(top) = stack.last_mut() {
            let u = top.0;
            if let Some(&v) = forward[u].get(top.1) {
                top.1 += 1;
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    stack.push((v as usize, 0));
                }
            } else {
                finished.push(u);
                stack.pop();
            }
        }
    }
    // Second pass: components of the backward graph, roots in reverse finishing order.
    let mut component = vec![usize::MAX; n];
    let mut sizes = Vec::new();
    for &root in finished.iter().rev() {
        if component[root] != usize::MAX {
            continue;
        }
        let id = sizes.len();
        let mut size = 0;
        component[root] = id;
        let mut stack = vec![root];
        while let Some(u) = stack.pop() {
            size += 1;
            for &v in &backward[u] {
                if component[v as usize] == usize::MAX {
                    component[v as usize] = id;
                    stack.push(v as usize);
                }
            }
        }
        sizes.push(size);
    }
    let largest = (0..sizes.len()).max_by_key(|&c| (sizes[c], std::cmp::Reverse(c)));
    component.iter().map(|&c| Some(c) == largest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_haversine_length_and_bearings_the_drawing() {
        let net = RoadNetwork::demo();
        let geometry = Geometry::new(&net);
        for s in net.segments().iter().take(20) {
            let (a, _) = geometry.at(s.id, 0.0);
            let (b, bearing) = geometry.at(s.id, s.length_m);
            let planar_m = (b[0] - a[0]).hypot(b[1] - a[1]);
            assert!(
                (planar_m - s.length_m).abs() < 0.01 * s.length_m,
                "{}",
                s.id
            );
            assert!(turn_deg(bearing, bearing_deg(a, b)) < 1.0);
            let back = geometry.start_bearing((s.id, false));
            assert!((turn_deg(bearing, back) - 180.0).abs() < 1.0);
        }
    }

    #[test]
    fn the_demo_town_is_one_strong_component_and_routes_respect_one_way_streets() {
        let net = RoadNetwork::demo();
        let graph = Graph::new(&net);
        assert_eq!(graph.core_nodes().len(), net.nodes().len());
        let oneway = net.segments().iter().find(|s| s.oneway).unwrap();
        // The drive from the one-way street's end to its start has to go round.
        let path = graph
            .route_to_nearest(oneway.to_node, |n| n == oneway.from_node)
            .unwrap();
        assert!(path.len() >= 3, "{path:?}");
        assert!(!path.contains(&(oneway.id, false)));
        let mut at = oneway.to_node;
        for &(s, f) in &path {
            assert_eq!(net.segments()[s as usize].start_node(f), at);
            at = graph.end_node((s, f));
        }
        assert_eq!(at, oneway.from_node);
    }
}
