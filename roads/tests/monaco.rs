//! Import of the real Monaco extract (`shared/data/monaco.osm.pbf`, © OpenStreetMap
//! contributors, ODbL 1.0), which lives outside the repository.

use cleanfleet_roads::test_data::monaco_pbf as monaco_path;
use cleanfleet_roads::{RoadClass, RoadNetwork};

#[test]
fn imports_monaco() {
    let Some(path) = monaco_path() else {
        return;
    };
    let net = RoadNetwork::from_osm_pbf(&path, false).unwrap();
    let segments = net.segments();
    let total_km = net.total_length_m() / 1000.0;
    eprintln!(
        "monaco: {} segments, {} nodes, {total_km:.1} km",
        segments.len(),
        net.nodes().len()
    );
    assert!(
        (2_000..10_000).contains(&segments.len()),
        "{} segments",
        segments.len()
    );
    // The extract is a rectangle of about 11 km × 6 km around Monaco, with its French
    // neighbours: 1,763 road ways (class I–IV) of 356 km when this test was written.
    assert!((250.0..500.0).contains(&total_km), "{total_km} km");
    // The extract's own bounding box is 7.35..7.49 E, 43.715..43.770 N.
    for s in segments {
        for &(lon, lat) in &s.points {
            assert!(
                (43.70..43.775).contains(&lat),
                "segment {} at lat {lat}",
                s.id
            );
            assert!((7.34..7.50).contains(&lon), "segment {} at lon {lon}", s.id);
        }
        assert!(s.width_m >= 1.0 && s.width_m <= 100.0);
    }
    for class in [RoadClass::I, RoadClass::II, RoadClass::III, RoadClass::IV] {
        assert!(
            segments.iter().any(|s| s.class == class),
            "no class {class} roads"
        );
    }
    assert!(segments.iter().any(|s| s.oneway));
    assert!(segments
        .iter()
        .any(|s| s.name.as_deref() == Some("Boulevard Albert 1er")));
    // Every segment end is a node with a traversal out of it or into it.
    let with_exit = (0..net.nodes().len() as u32)
        .filter(|&n| net.outgoing(n).next().is_some())
        .count();
    assert!(with_exit as f64 > 0.9 * net.nodes().len() as f64);
}
