//! Candidate search: the road segments near a GPS fix, from an R-tree of their pieces.

use cleanfleet_roads::RoadNetwork;
use rstar::primitives::{GeomWithData, Line};
use rstar::RTree;

use crate::plane::{bearing_deg, distance, project_on_piece, Plane};

/// A segment near a point, at its nearest place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub segment: u32,
    /// Along the segment from its `from_node`, in metres of its Haversine length.
    pub offset_m: f64,
    /// From the point to the segment.
    pub distance_m: f64,
    /// Direction of the segment (from `from_node` to `to_node`) there, degrees from north.
    pub bearing_deg: f64,
}

type Piece = GeomWithData<Line<[f64; 2]>, u32>;

/// The network's geometry in the [`Plane`], indexed for nearest-segment queries.
pub struct SegmentIndex {
    plane: Plane,
    /// Per segment, its points in the plane.
    points: Vec<Vec<[f64; 2]>>,
    /// Per segment, planar distance from its start to each point.
    cumulative: Vec<Vec<f64>>,
    /// Per segment, Haversine length ÷ planar length, to report offsets in network metres.
    scale: Vec<f64>,
    /// Per piece (global index): its segment and index within it.
    pieces: Vec<(u32, u32)>,
    tree: RTree<Piece>,
}

impl SegmentIndex {
    pub fn new(network: &RoadNetwork) -> SegmentIndex {
        let centre = network.bbox().center();
        let plane = Plane::new(centre.x, centre.y);
        let mut points = Vec::with_capacity(network.segments().len());
        let mut cumulative = Vec::with_capacity(network.segments().len());
        let mut scale = Vec::with_capacity(network.segments().len());
        let mut pieces = Vec::new();
        let mut entries = Vec::new();
        for segment in network.segments() {
            let xy: Vec<[f64; 2]> = segment.points.iter().map(|&p| plane.to_xy(p)).collect();
            let mut along = Vec::with_capacity(xy.len());
            let mut total = 0.0;
            along.push(0.0);
            for (i, w) in xy.windows(2).enumerate() {
                total += distance(w[0], w[1]);
                along.push(total);
                entries.push(Piece::new(Line::new(w[0], w[1]), pieces.len() as u32));
                pieces.push((segment.id, i as u32));
            }
            scale.push(if total > 0.0 {
                segment.length_m / total
            } else {
                1.0
            });
            points.push(xy);
            cumulative.push(along);
        }
        SegmentIndex {
            plane,
            points,
            cumulative,
            scale,
            pieces,
            tree: RTree::bulk_load(entries),
        }
    }

    pub fn plane(&self) -> &Plane {
        &self.plane
    }

    /// The nearest place on `segment` to `p` (a point in the plane).
    pub fn project(&self, segment: u32, p: [f64; 2]) -> Candidate {
        let s = segment as usize;
        let points = &self.points[s];
        let mut best = (f64::INFINITY, 0, 0.0);
        for (i, w) in points.windows(2).enumerate() {
            let (t, d) = project_on_piece(p, w[0], w[1]);
            if d < best.0 {
                best = (d, i, t);
            }
        }
        self.candidate(segment, best.1, best.2, best.0)
    }

    fn candidate(&self, segment: u32, piece: usize, t: f64, distance_m: f64) -> Candidate {
        let s = segment as usize;
        let (a, b) = (self.points[s][piece], self.points[s][piece + 1]);
        let along = self.cumulative[s][piece] + t * distance(a, b);
        Candidate {
            segment,
            offset_m: along * self.scale[s],
            distance_m,
            bearing_deg: bearing_deg(a, b),
        }
    }

    /// Segments within `radius_m` of `p`, nearest first (ties by segment id), at most `max`,
    /// into `out` (cleared first).
    pub fn candidates(&self, p: [f64; 2], radius_m: f64, max: usize, out: &mut Vec<Candidate>) {
        out.clear();
        for piece in self.tree.locate_within_distance(p, radius_m * radius_m) {
            let (segment, i) = self.pieces[piece.data as usize];
            let line = piece.geom();
            let (t, d) = project_on_piece(p, line.from, line.to);
            match out.iter_mut().find(|c| c.segment == segment) {
                Some(c) if c.distance_m <= d => {}
                Some(c) => *c = self.candidate(segment, i as usize, t, d),
                None => out.push(self.candidate(segment, i as usize, t, d)),
            }
        }
        out.sort_by(|a, b| {
            a.distance_m
                .total_cmp(&b.distance_m)
                .then(a.segment.cmp(&b.segment))
        });
        out.truncate(max);
    }

    /// The distance from `p` to the nearest road; `None` for an empty network.
    pub fn nearest_distance_m(&self, p: [f64; 2]) -> Option<f64> {
        let piece = self.tree.nearest_neighbor(&p)?;
        let line = piece.geom();
        Some(project_on_piece(p, line.from, line.to).1)
    }

    /// The distance from `p` to the part of `segment` within `reach_m` of `offset_m` along
    /// it (measured from its `from_node`): how far off the road a fix placed there is. Only
    /// the pieces of that stretch are looked at, so a long winding road costs no more than a
    /// short one; the answer is never less than the distance to the whole segment.
    pub fn distance_near_m(&self, segment: u32, offset_m: f64, reach_m: f64, p: [f64; 2]) -> f64 {
        let s = segment as usize;
        let (points, cumulative) = (&self.points[s], &self.cumulative[s]);
        let (lo, hi) = (
            (offset_m - reach_m) / self.scale[s],
            (offset_m + reach_m) / self.scale[s],
        );
        let first = cumulative.partition_point(|&c| c < lo).saturating_sub(1);
        let last = cumulative
            .partition_point(|&c| c <= hi)
            .clamp(first + 1, points.len() - 1);
        (first..last)
            .map(|i| project_on_piece(p, points[i], points[i + 1]).1)
            .fold(f64::INFINITY, f64::min)
    }

    /// Where `offset_m` along `segment` lies in the plane.
    pub fn point_at(&self, segment: u32, offset_m: f64) -> [f64; 2] {
        let s = segment as usize;
        let along = offset_m / self.scale[s];
        let (points, cumulative) = (&self.points[s], &self.cumulative[s]);
        let i = cumulative
            .partition_point(|&c| c <= along)
            .clamp(1, points.len() - 1);
        let (a, b) = (points[i - 1], points[i]);
        let piece = cumulative[i] - cumulative[i - 1];
        let t = if piece > 0.0 {
            ((along - cumulative[i - 1]) / piece).clamp(0.0, 1.0)
        } else {
            0.0
        };
        [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]
    }

    /// The stretch `from_m..to_m` of `segment` in the driving direction (measured from the
    /// node it is entered at), as (lon, lat) points in driving order: for a map.
    pub fn stretch(&self, segment: u32, forward: bool, from_m: f64, to_m: f64) -> Vec<(f64, f64)> {
        let s = segment as usize;
        let length_m = self.cumulative[s].last().copied().unwrap_or(0.0) * self.scale[s];
        // In the segment's own direction.
        let (a_m, b_m) = if forward {
            (from_m, to_m)
        } else {
            (length_m - to_m, length_m - from_m)
        };
        let mut line = vec![self.point_at(segment, a_m)];
        for (p, &c) in self.points[s].iter().zip(&self.cumulative[s]) {
            let along_m = c * self.scale[s];
            if along_m > a_m && along_m < b_m {
                line.push(*p);
            }
        }
        line.push(self.point_at(segment, b_m));
        if !forward {
            line.reverse();
        }
        line.into_iter().map(|p| self.plane.to_lon_lat(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Every segment within the radius, by scanning all of them.
    fn brute_force(index: &SegmentIndex, p: [f64; 2], radius_m: f64) -> Vec<(u32, f64)> {
        let mut all: Vec<(u32, f64)> = (0..index.points.len() as u32)
            .map(|s| (s, index.project(s, p).distance_m))
            .filter(|&(_, d)| d <= radius_m)
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all
    }

    #[test]
    fn candidates_equal_a_brute_force_scan() {
        let network = RoadNetwork::demo();
        let index = SegmentIndex::new(&network);
        let bbox = network.bbox();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut out = Vec::new();
        let mut found = 0;
        for _ in 0..2000 {
            let lon = rng.random_range(bbox.min().x - 0.002..bbox.max().x + 0.002);
            let lat = rng.random_range(bbox.min().y - 0.002..bbox.max().y + 0.002);
            let p = index.plane().to_xy((lon, lat));
            let radius_m = rng.random_range(5.0..120.0);
            let max = rng.random_range(1..12);
            index.candidates(p, radius_m, max, &mut out);
            let expected = brute_force(&index, p, radius_m);
            let got: Vec<(u32, f64)> = out.iter().map(|c| (c.segment, c.distance_m)).collect();
            assert_eq!(got.len(), expected.len().min(max));
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(g.0, e.0, "at {p:?} radius {radius_m}");
                assert!((g.1 - e.1).abs() < 1e-9);
            }
            found += got.len();
        }
        assert!(
            found > 1000,
            "{found} candidates: the test must exercise hits"
        );
    }

    /// Against projecting on the whole segment, on Monaco's winding streets: never less,
    /// never more than the distance to the place itself, and equal with a reach of the whole
    /// segment.
    #[test]
    fn distance_near_a_place_bounds_the_whole_segments_projection() {
        let Some(path) = cleanfleet_roads::test_data::monaco_pbf() else {
            return;
        };
        let network = RoadNetwork::from_file(&path, false).unwrap();
        let index = SegmentIndex::new(&network);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut tighter = 0;
        for segment in network.segments().iter().filter(|s| s.points.len() > 4) {
            for _ in 0..5 {
                let offset_m = rng.random_range(0.0..=segment.length_m);
                let here = index.point_at(segment.id, offset_m);
                let p = [
                    here[0] + rng.random_range(-60.0..60.0),
                    here[1] + rng.random_range(-60.0..60.0),
                ];
                let reach_m = distance(p, here);
                let whole = index.project(segment.id, p).distance_m;
                let near = index.distance_near_m(segment.id, offset_m, reach_m, p);
                assert!(near >= whole - 1e-9 && near <= reach_m + 1e-9);
                let all = index.distance_near_m(segment.id, offset_m, f64::INFINITY, p);
                assert!((all - whole).abs() < 1e-9);
                tighter += usize::from(near < reach_m - 1.0);
            }
        }
        assert!(
            tighter > 100,
            "{tighter}: the test must see the road closer than the place"
        );
    }

    #[test]
    fn offsets_are_in_network_metres_and_round_trip() {
        let network = RoadNetwork::demo();
        let index = SegmentIndex::new(&network);
        for segment in network.segments().iter().step_by(17) {
            for f in [0.0, 0.25, 0.5, 1.0] {
                let offset_m = f * segment.length_m;
                let p = index.point_at(segment.id, offset_m);
                let c = index.project(segment.id, p);
                assert!(c.distance_m < 1e-6);
                assert!((c.offset_m - offset_m).abs() < 1e-6, "{c:?} vs {offset_m}");
            }
        }
    }
}
