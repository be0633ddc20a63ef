//! A synthetic town for demos and tests: no map file needed.

use std::collections::HashMap;

use crate::build::{build, Way};
use crate::tags::way_attributes;
use crate::RoadNetwork;

/// Centre of the demo town (lon, lat): central Nantong, whose 2017 plan set the deep-cleaning
/// targets in `DOMAIN.md`.
const CENTRE: (f64, f64) = (120.86, 32.00);
/// Streets every 200 m on an 11 × 11 grid make a 2 km × 2 km town.
const GRID_STEP_M: f64 = 200.0;
const GRID_LINES: i64 = 11;
/// Metres per degree of latitude on the sphere that Haversine lengths use (radius 6,371,008.8 m).
const METRES_PER_DEGREE: f64 = 111_195.08;

/// One street of the grid: which line it runs along and its OSM tags.
struct Street {
    /// `true` for an east-west street on grid row `line`, `false` for a north-south street on
    /// grid column `line`. Streets run west to east and south to north.
    east_west: bool,
    line: i64,
    tags: &'static [(&'static str, &'static str)],
}

const STREETS: &[Street] = &[
    // Class I avenues crossing in the centre.
    street(
        true,
        5,
        &[
            ("highway", "primary"),
            ("name", "Renmin Road"),
            ("lanes", "6"),
        ],
    ),
    street(
        false,
        5,
        &[
            ("highway", "trunk"),
            ("name", "Gongnong Road"),
            ("width", "24 m"),
        ],
    ),
    // Class II.
    street(
        true,
        2,
        &[
            ("highway", "secondary"),
            ("name", "Qingnian Road"),
            ("width", "12"),
        ],
    ),
    street(
        true,
        8,
        &[("highway", "secondary"), ("name", "Chongchuan Road")],
    ),
    street(
        false,
        2,
        &[("highway", "secondary"), ("name", "Hongxing Road")],
    ),
    street(
        false,
        8,
        &[("highway", "secondary"), ("name", "Youyi Road")],
    ),
    // Class III: the ring road and two one-way streets (one drawn against its direction).
    street(
        true,
        0,
        &[("highway", "tertiary"), ("name", "Huancheng South Road")],
    ),
    street(
        true,
        10,
        &[("highway", "tertiary"), ("name", "Huancheng North Road")],
    ),
    street(
        false,
        0,
        &[("highway", "tertiary"), ("name", "Huancheng West Road")],
    ),
    street(
        false,
        10,
        &[("highway", "tertiary"), ("name", "Huancheng East Road")],
    ),
    street(
        true,
        7,
        &[
            ("highway", "tertiary"),
            ("name", "Nanda Street"),
            ("oneway", "yes"),
        ],
    ),
    street(
        false,
        3,
        &[
            ("highway", "tertiary"),
            ("name", "Jianshe Street"),
            ("oneway", "-1"),
        ],
    ),
    // Class IV lanes, some without a name.
    street(
        true,
        1,
        &[("highway", "residential"), ("name", "Heping Lane")],
    ),
    street(true, 3, &[("highway", "residential")]),
    street(
        true,
        4,
        &[("highway", "living_street"), ("name", "Xinhua Lane")],
    ),
    street(true, 6, &[("highway", "service")]),
    street(
        true,
        9,
        &[("highway", "residential"), ("name", "Taoyuan Lane")],
    ),
    street(
        false,
        1,
        &[("highway", "residential"), ("name", "Xiyuan Lane")],
    ),
    street(
        false,
        4,
        &[("highway", "unclassified"), ("name", "Wenhua Lane")],
    ),
    street(false, 6, &[("highway", "residential")]),
    street(
        false,
        7,
        &[("highway", "residential"), ("name", "Gangzha Lane")],
    ),
    street(
        false,
        9,
        &[("highway", "residential"), ("name", "Dongfang Lane")],
    ),
];

const fn street(
    east_west: bool,
    line: i64,
    tags: &'static [(&'static str, &'static str)],
) -> Street {
    Street {
        east_west,
        line,
        tags,
    }
}

impl RoadNetwork {
    /// A synthetic 2 km × 2 km grid town around 32.00° N 120.86° E: streets every 200 m, class I
    /// avenues "Renmin Road" (east-west) and "Gongnong Road" (north-south) crossing in the
    /// centre, class II and III streets including a ring road and two one-way streets, and
    /// class IV lanes. 121 intersections, 220 segments of 200 m.
    pub fn demo() -> RoadNetwork {
        let node_id = |column: i64, row: i64| row * GRID_LINES + column;
        let metres_per_degree_lon = METRES_PER_DEGREE * CENTRE.1.to_radians().cos();
        let half_m = GRID_STEP_M * (GRID_LINES - 1) as f64 / 2.0;
        let positions: HashMap<i64, (f64, f64)> = (0..GRID_LINES)
            .flat_map(|row| (0..GRID_LINES).map(move |column| (column, row)))
            .map(|(column, row)| {
                let east_m = column as f64 * GRID_STEP_M - half_m;
                let north_m = row as f64 * GRID_STEP_M - half_m;
                let position = (
                    CENTRE.0 + east_m / metres_per_degree_lon,
                    CENTRE.1 + north_m / METRES_PER_DEGREE,
                );
                (node_id(column, row), position)
            })
            .collect();
        let ways: Vec<Way> = STREETS
            .iter()
            .map(|s| Way {
                osm_way_id: None,
                attributes: way_attributes(s.tags.iter().copied())
                    .expect("every demo street is a road"),
                node_ids: (0..GRID_LINES)
                    .map(|i| {
                        if s.east_west {
                            node_id(i, s.line)
                        } else {
                            node_id(s.line, i)
                        }
                    })
                    .collect(),
            })
            .collect();
        build(&ways, &positions)
            .expect("the demo town is a valid network")
            .expect("the demo town has streets")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::RoadClass;

    /// Nodes reachable from `start` along allowed driving directions, or against them.
    fn reachable(net: &RoadNetwork, start: u32, against: bool) -> BTreeSet<u32> {
        let mut incoming: HashMap<u32, Vec<u32>> = HashMap::new();
        for node in 0..net.nodes().len() as u32 {
            for (seg, forward) in net.outgoing(node) {
                let end = net.segments()[seg as usize].end_node(forward);
                incoming.entry(end).or_default().push(node);
            }
        }
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            let next: Vec<u32> = if against {
                incoming.get(&node).cloned().unwrap_or_default()
            } else {
                net.outgoing(node)
                    .map(|(seg, forward)| net.segments()[seg as usize].end_node(forward))
                    .collect()
            };
            for n in next {
                if seen.insert(n) {
                    stack.push(n);
                }
            }
        }
        seen
    }

    #[test]
    fn demo_town_is_connected_and_plausible() {
        let net = RoadNetwork::demo();
        assert_eq!(net.nodes().len(), 121);
        assert_eq!(net.segments().len(), 220);
        for s in net.segments() {
            assert!(
                (s.length_m - 200.0).abs() < 0.5,
                "segment {} is {} m",
                s.id,
                s.length_m
            );
        }
        assert!((net.total_length_m() - 44_000.0).abs() < 50.0);
        // Every intersection can reach and be reached from every other: strongly connected.
        assert_eq!(reachable(&net, 0, false).len(), 121);
        assert_eq!(reachable(&net, 0, true).len(), 121);

        let bbox = net.bbox();
        assert!((bbox.center().x - 120.86).abs() < 1e-9 && (bbox.center().y - 32.0).abs() < 1e-9);
        assert!((bbox.height() * METRES_PER_DEGREE - 2000.0).abs() < 1.0);

        let named = |name: &str| {
            net.segments()
                .iter()
                .filter(|s| s.name.as_deref() == Some(name))
                .collect::<Vec<_>>()
        };
        let renmin = named("Renmin Road");
        assert_eq!(renmin.len(), 10);
        assert!(renmin
            .iter()
            .all(|s| s.class == RoadClass::I && s.width_m == 21.0 && !s.oneway));
        assert!(named("Gongnong Road").iter().all(|s| s.width_m == 24.0));
        assert!(named("Nanda Street").iter().all(|s| s.oneway));
        // Jianshe Street is drawn south to north but one-way southwards.
        for s in named("Jianshe Street") {
            assert!(s.oneway && s.points[0].1 > s.points[1].1);
        }
        let count = |class| net.segments().iter().filter(|s| s.class == class).count();
        assert_eq!(
            [
                count(RoadClass::I),
                count(RoadClass::II),
                count(RoadClass::III),
                count(RoadClass::IV)
            ],
            [20, 40, 60, 100]
        );
        assert_eq!(net.segments().iter().filter(|s| s.oneway).count(), 20);
        assert!(net.segments().iter().any(|s| s.name.is_none()));
    }
}
