use geo::{Coord, Distance, Haversine, Point, Rect};

use crate::{RoadClass, RoadsError};

/// A road between two intersections (or a way's end), drawn from `from_node` to `to_node`.
/// A one-way segment may only be driven in that direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Index in [`RoadNetwork::segments`].
    pub id: u32,
    /// The OSM way this segment was cut from.
    pub osm_way_id: Option<i64>,
    pub name: Option<String>,
    pub class: RoadClass,
    pub oneway: bool,
    /// Index in [`RoadNetwork::nodes`].
    pub from_node: u32,
    /// Index in [`RoadNetwork::nodes`].
    pub to_node: u32,
    /// The centre line as (lon, lat) in degrees, from `from_node` to `to_node`.
    pub points: Vec<(f64, f64)>,
    /// Great-circle (Haversine) length of `points`.
    pub length_m: f64,
    /// Carriageway width.
    pub width_m: f64,
}

impl Segment {
    /// The node a traversal starts from: `from_node` forward, `to_node` backward.
    pub fn start_node(&self, forward: bool) -> u32 {
        if forward {
            self.from_node
        } else {
            self.to_node
        }
    }

    /// The node a traversal arrives at: `to_node` forward, `from_node` backward.
    pub fn end_node(&self, forward: bool) -> u32 {
        if forward {
            self.to_node
        } else {
            self.from_node
        }
    }
}

/// Great-circle length of a polyline of (lon, lat) points.
pub(crate) fn polyline_length_m(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| Haversine.distance(Point::from(w[0]), Point::from(w[1])))
        .sum()
}

/// Road segments joined at nodes (intersections and dead ends), with the directed adjacency
/// that driving on it needs.
#[derive(Debug, Clone)]
pub struct RoadNetwork {
    nodes: Vec<(f64, f64)>,
    segments: Vec<Segment>,
    /// For node `n`, its outgoing traversals are `outgoing[offsets[n]..offsets[n + 1]]`.
    offsets: Vec<u32>,
    outgoing: Vec<(u32, bool)>,
}

impl RoadNetwork {
    /// Builds a network from its parts: `nodes` as (lon, lat) in degrees, and `segments`
    /// whose `id` is their index and whose nodes index `nodes`.
    pub fn new(nodes: Vec<(f64, f64)>, segments: Vec<Segment>) -> Result<Self, RoadsError> {
        validate(&nodes, &segments).map_err(RoadsError::InvalidNetwork)?;
        let mut degree = vec![0u32; nodes.len()];
        for s in &segments {
            degree[s.from_node as usize] += 1;
            if !s.oneway {
                degree[s.to_node as usize] += 1;
            }
        }
        let mut offsets = Vec::with_capacity(nodes.len() + 1);
        let mut total = 0u32;
        offsets.push(total);
        for d in &degree {
            total += d;
            offsets.push(total);
        }
        let mut fill = offsets[..nodes.len()].to_vec();
        let mut outgoing = vec![(0, false); total as usize];
        // Segment order within a node is deterministic (by id), which keeps seeded walks
        // reproducible.
        for s in &segments {
            let mut push = |node: u32, forward: bool| {
                let slot = &mut fill[node as usize];
                outgoing[*slot as usize] = (s.id, forward);
                *slot += 1;
            };
            push(s.from_node, true);
            if !s.oneway {
                push(s.to_node, false);
            }
        }
        Ok(RoadNetwork {
            nodes,
            segments,
            offsets,
            outgoing,
        })
    }

    /// Node positions as (lon, lat) in degrees.
    pub fn nodes(&self) -> &[(f64, f64)] {
        &self.nodes
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The traversals that may start at `node`: `(segment_id, forward)`, where `forward`
    /// means from `from_node` to `to_node`. One-way segments appear only forward.
    ///
    /// # Panics
    /// If `node` is not an index in [`RoadNetwork::nodes`].
    pub fn outgoing(&self, node: u32) -> impl Iterator<Item = (u32, bool)> + '_ {
        let n = node as usize;
        self.outgoing[self.offsets[n] as usize..self.offsets[n + 1] as usize]
            .iter()
            .copied()
    }

    pub fn total_length_m(&self) -> f64 {
        self.segments.iter().map(|s| s.length_m).sum()
    }

    /// The bounding box of all segment geometry; x is longitude, y latitude.
    pub fn bbox(&self) -> Rect<f64> {
        let mut min = Coord {
            x: f64::INFINITY,
            y: f64::INFINITY,
        };
        let mut max = Coord {
            x: f64::NEG_INFINITY,
            y: f64::NEG_INFINITY,
        };
        for &(lon, lat) in self.segments.iter().flat_map(|s| &s.points) {
            min.x = min.x.min(lon);
            min.y = min.y.min(lat);
            max.x = max.x.max(lon);
            max.y = max.y.max(lat);
        }
        Rect::new(min, max)
    }
}

fn validate(nodes: &[(f64, f64)], segments: &[Segment]) -> Result<(), String> {
    if segments.is_empty() {
        return Err("a network needs at least one segment".into());
    }
    if u32::try_from(nodes.len()).is_err() || u32::try_from(segments.len()).is_err() {
        return Err("more than 2^32 nodes or segments".into());
    }
    let valid_position = |&(lon, lat): &(f64, f64)| {
        lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat)
    };
    if let Some(i) = nodes.iter().position(|p| !valid_position(p)) {
        return Err(format!("node {i} has an invalid position {:?}", nodes[i]));
    }
    for (i, s) in segments.iter().enumerate() {
        let problem = if s.id as usize != i {
            Some(format!("has id {}", s.id))
        } else if s.from_node as usize >= nodes.len() || s.to_node as usize >= nodes.len() {
            Some(format!(
                "joins nodes {} and {}, but there are {} nodes",
                s.from_node,
                s.to_node,
                nodes.len()
            ))
        } else if s.points.len() < 2 {
            Some("has fewer than 2 points".into())
        } else if !s.points.iter().all(valid_position) {
            Some("has an invalid point".into())
        } else if !(s.length_m.is_finite() && s.length_m >= 0.0) {
            Some(format!("has length {} m", s.length_m))
        } else if !(s.width_m.is_finite() && s.width_m > 0.0) {
            Some(format!("has width {} m", s.width_m))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!("segment at index {i} {problem}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(id: u32, from: u32, to: u32, oneway: bool, nodes: &[(f64, f64)]) -> Segment {
        let points = vec![nodes[from as usize], nodes[to as usize]];
        Segment {
            id,
            osm_way_id: None,
            name: None,
            class: RoadClass::IV,
            oneway,
            from_node: from,
            to_node: to,
            length_m: polyline_length_m(&points),
            points,
            width_m: 5.0,
        }
    }

    #[test]
    fn outgoing_respects_oneway() {
        let nodes = vec![(7.0, 43.0), (7.001, 43.0), (7.001, 43.001)];
        let segments = vec![
            segment(0, 0, 1, false, &nodes),
            segment(1, 1, 2, true, &nodes),
        ];
        let net = RoadNetwork::new(nodes, segments).unwrap();
        assert_eq!(net.outgoing(0).collect::<Vec<_>>(), [(0, true)]);
        assert_eq!(net.outgoing(1).collect::<Vec<_>>(), [(0, false), (1, true)]);
        assert_eq!(
            net.outgoing(2).count(),
            0,
            "one-way segment 1 cannot be driven back"
        );
        assert_eq!(net.segments()[1].end_node(true), 2);
        assert_eq!(net.segments()[1].start_node(false), 2);
        let bbox = net.bbox();
        assert_eq!((bbox.min().x, bbox.min().y), (7.0, 43.0));
        assert_eq!((bbox.max().x, bbox.max().y), (7.001, 43.001));
        // 0.001° of longitude at 43° N is about 81 m, of latitude about 111 m.
        assert!(
            (net.total_length_m() - 192.5).abs() < 1.0,
            "{}",
            net.total_length_m()
        );
    }

    #[test]
    fn new_rejects_broken_parts() {
        let nodes = vec![(7.0, 43.0), (7.001, 43.0)];
        let good = segment(0, 0, 1, false, &nodes);
        type Case = (Vec<(f64, f64)>, Vec<Segment>, &'static str);
        let cases: Vec<Case> = vec![
            (nodes.clone(), vec![], "at least one segment"),
            (
                nodes.clone(),
                vec![Segment {
                    id: 3,
                    ..good.clone()
                }],
                "has id 3",
            ),
            (
                nodes.clone(),
                vec![Segment {
                    to_node: 9,
                    ..good.clone()
                }],
                "but there are 2 nodes",
            ),
            (
                nodes.clone(),
                vec![Segment {
                    points: vec![(7.0, 43.0)],
                    ..good.clone()
                }],
                "fewer than 2 points",
            ),
            (
                nodes.clone(),
                vec![Segment {
                    width_m: 0.0,
                    ..good.clone()
                }],
                "width 0",
            ),
            (
                nodes.clone(),
                vec![Segment {
                    length_m: f64::NAN,
                    ..good.clone()
                }],
                "length NaN",
            ),
            (
                vec![(7.0, 95.0), (7.001, 43.0)],
                vec![good.clone()],
                "invalid position",
            ),
        ];
        for (nodes, segments, expected) in cases {
            let err = RoadNetwork::new(nodes, segments).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }
}
