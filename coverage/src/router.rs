//! Shortest drives between nearby nodes: Dijkstra bounded by a distance, with scratch space
//! reused across searches so that a search costs only the nodes it reaches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use cleanfleet_roads::RoadNetwork;

/// A traversal of a segment: `(segment, forward)`.
pub type Edge = (u32, bool);

pub struct Router {
    /// Per node, the best distance found by the current search; infinite if not reached.
    best_m: Vec<f64>,
    /// Per node, the traversal the best drive arrives by.
    via: Vec<Option<Edge>>,
    /// Nodes the current search wrote to, to reset them before the next.
    touched: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    source: Option<u32>,
}

impl Router {
    pub fn new(network: &RoadNetwork) -> Router {
        Router {
            best_m: vec![f64::INFINITY; network.nodes().len()],
            via: vec![None; network.nodes().len()],
            touched: Vec::new(),
            heap: BinaryHeap::new(),
            source: None,
        }
    }

    /// Searches every node within `bound_m` of `source`, driving only where allowed; then
    /// [`Router::distance_m`] and [`Router::path`] answer for this source.
    pub fn search(&mut self, network: &RoadNetwork, source: u32, bound_m: f64) {
        self.search_avoiding(network, source, bound_m, None);
    }

    /// [`Router::search`], never driving the traversal `avoid`.
    pub fn search_avoiding(
        &mut self,
        network: &RoadNetwork,
        source: u32,
        bound_m: f64,
        avoid: Option<Edge>,
    ) {
        for &n in &self.touched {
            self.best_m[n as usize] = f64::INFINITY;
            self.via[n as usize] = None;
        }
        self.touched.clear();
        self.heap.clear();
        self.source = Some(source);
        self.best_m[source as usize] = 0.0;
        self.touched.push(source);
        // Non-negative floats order like their bit patterns.
        self.heap.push(Reverse((0f64.to_bits(), source)));
        let segments = network.segments();
        while let Some(Reverse((bits, node))) = self.heap.pop() {
            let at_m = f64::from_bits(bits);
            if at_m > self.best_m[node as usize] {
                continue;
            }
            for (s, forward) in network.outgoing(node) {
                if avoid == Some((s, forward)) {
                    continue;
                }
                let segment = &segments[s as usize];
                let next = segment.end_node(forward);
                let candidate = at_m + segment.length_m;
                if candidate <= bound_m && candidate < self.best_m[next as usize] {
                    if self.best_m[next as usize].is_infinite() {
                        self.touched.push(next);
                    }
                    self.best_m[next as usize] = candidate;
                    self.via[next as usize] = Some((s, forward));
                    self.heap.push(Reverse((candidate.to_bits(), next)));
                }
            }
        }
    }

    /// Length of the shortest drive from the searched source to `node`; `None` if it is
    /// beyond the bound.
    pub fn distance_m(&self, node: u32) -> Option<f64> {
        let d = self.best_m[node as usize];
        d.is_finite().then_some(d)
    }

    /// The traversals of the shortest drive from the searched source to `node`, in order.
    pub fn path(&self, network: &RoadNetwork, node: u32) -> Option<Vec<Edge>> {
        self.distance_m(node)?;
        let source = self.source?;
        let mut path = Vec::new();
        let mut at = node;
        while at != source {
            let edge = self.via[at as usize]?;
            path.push(edge);
            at = network.segments()[edge.0 as usize].start_node(edge.1);
        }
        path.reverse();
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bellman-Ford over every allowed traversal: the reference for the bounded search.
    fn all_distances(network: &RoadNetwork, source: u32) -> Vec<f64> {
        let mut d = vec![f64::INFINITY; network.nodes().len()];
        d[source as usize] = 0.0;
        loop {
            let mut changed = false;
            for node in 0..network.nodes().len() as u32 {
                for (s, f) in network.outgoing(node) {
                    let seg = &network.segments()[s as usize];
                    let via = d[node as usize] + seg.length_m;
                    if via < d[seg.end_node(f) as usize] - 1e-9 {
                        d[seg.end_node(f) as usize] = via;
                        changed = true;
                    }
                }
            }
            if !changed {
                return d;
            }
        }
    }

    #[test]
    fn bounded_search_agrees_with_bellman_ford_and_resets() {
        let network = RoadNetwork::demo();
        let mut router = Router::new(&network);
        for (source, bound_m) in [
            (0, 450.0),
            (60, 1000.0),
            (5, 250.0),
            (60, 80.0),
            (0, 5000.0),
        ] {
            router.search(&network, source, bound_m);
            let reference = all_distances(&network, source);
            for node in 0..network.nodes().len() as u32 {
                let expected = reference[node as usize];
                match router.distance_m(node) {
                    Some(d) => assert!((d - expected).abs() < 1e-6 && d <= bound_m),
                    None => assert!(expected > bound_m, "{node}: {expected} within {bound_m}"),
                }
                if let Some(path) = router.path(&network, node) {
                    let length_m: f64 = path
                        .iter()
                        .map(|&(s, _)| network.segments()[s as usize].length_m)
                        .sum();
                    assert!((length_m - expected).abs() < 1e-6);
                    let mut at = source;
                    for &(s, f) in &path {
                        let seg = &network.segments()[s as usize];
                        assert_eq!(seg.start_node(f), at);
                        assert!(f || !seg.oneway);
                        at = seg.end_node(f);
                    }
                    assert_eq!(at, node);
                }
            }
        }
    }

    #[test]
    fn an_avoided_traversal_is_never_driven() {
        let network = RoadNetwork::demo();
        let mut router = Router::new(&network);
        for source in [0, 17, 60] {
            router.search(&network, source, 3000.0);
            // Avoid the first traversal of the drive to every node that has one.
            for node in 0..network.nodes().len() as u32 {
                let Some(path) = router.path(&network, node) else {
                    continue;
                };
                let Some(&avoid) = path.first() else { continue };
                let direct = router.distance_m(node).unwrap();
                let mut around = Router::new(&network);
                around.search_avoiding(&network, source, 3000.0, Some(avoid));
                if let Some(detour) = around.path(&network, node) {
                    assert!(!detour.contains(&avoid));
                    assert!(around.distance_m(node).unwrap() >= direct - 1e-9);
                }
            }
        }
    }
}
