//! Import from an OpenStreetMap PBF extract.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use osmpbf::{BlobDecode, BlobReader, BlobType};

use crate::build::{build, Way};
use crate::tags::way_attributes;
use crate::{RoadNetwork, RoadsError};

impl RoadNetwork {
    /// Imports the roads (highway classes I–IV) of an OSM PBF extract.
    ///
    /// Reads the file twice: first the road ways, then the positions of just their nodes, so
    /// memory stays proportional to the roads rather than to every node of the extract. With
    /// `progress`, a progress bar over both passes is drawn on stderr.
    pub fn from_osm_pbf(path: impl AsRef<Path>, progress: bool) -> Result<RoadNetwork, RoadsError> {
        let path = path.as_ref();
        let io_error = |source| RoadsError::Io {
            path: path.to_owned(),
            source,
        };
        let file_len_bytes = std::fs::metadata(path).map_err(io_error)?.len();
        let bar = if progress {
            let bar = ProgressBar::with_draw_target(
                Some(2 * file_len_bytes),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template("{msg:22} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };

        bar.set_message("reading road ways");
        let mut ways = Vec::new();
        let mut wanted_nodes = HashSet::new();
        for_each_block(path, &bar, |block| {
            for group in block.groups() {
                for way in group.ways() {
                    let Some(attributes) = way_attributes(way.tags()) else {
                        continue;
                    };
                    let node_ids: Vec<i64> = way.refs().collect();
                    wanted_nodes.extend(node_ids.iter().copied());
                    ways.push(Way {
                        osm_way_id: Some(way.id()),
                        attributes,
                        node_ids,
                    });
                }
            }
        })?;
        if ways.is_empty() {
            bar.finish_and_clear();
            return Err(RoadsError::NoRoads {
                path: path.to_owned(),
            });
        }

        bar.set_message("reading node positions");
        let mut positions = HashMap::with_capacity(wanted_nodes.len());
        for_each_block(path, &bar, |block| {
            for group in block.groups() {
                for node in group.nodes() {
                    if wanted_nodes.contains(&node.id()) {
                        positions.insert(node.id(), (node.lon(), node.lat()));
                    }
                }
                for node in group.dense_nodes() {
                    if wanted_nodes.contains(&node.id()) {
                        positions.insert(node.id(), (node.lon(), node.lat()));
                    }
                }
            }
        })?;
        bar.finish_and_clear();

        build(&ways, &positions)?.ok_or_else(|| RoadsError::NoRoads {
            path: path.to_owned(),
        })
    }
}

/// Calls `f` on every data block of the PBF file at `path`, advancing `bar` by bytes read.
fn for_each_block(
    path: &Path,
    bar: &ProgressBar,
    mut f: impl FnMut(&osmpbf::PrimitiveBlock),
) -> Result<(), RoadsError> {
    let file = File::open(path).map_err(|source| RoadsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader = BufReader::new(bar.wrap_read(file));
    let not_pbf = |reason: String| RoadsError::NotPbf {
        path: path.to_owned(),
        reason,
    };
    let damaged = |source| RoadsError::Pbf {
        path: path.to_owned(),
        source,
    };
    let mut blobs = BlobReader::new(reader);
    // Every PBF file opens with an OSMHeader blob; checking it turns "this is a PNG" into a
    // clear error instead of a protobuf decoding message from deep inside the file.
    match blobs.next() {
        None => return Err(not_pbf("the file is empty".into())),
        Some(Err(e)) => return Err(not_pbf(e.to_string())),
        Some(Ok(blob)) if blob.get_type() != BlobType::OsmHeader => {
            return Err(not_pbf(format!(
                "the first block is {:?}, not OSMHeader",
                blob.get_type().as_str()
            )))
        }
        Some(Ok(blob)) => {
            blob.to_headerblock().map_err(|e| not_pbf(e.to_string()))?;
        }
    }
    for blob in blobs {
        match blob.map_err(damaged)?.decode().map_err(damaged)? {
            BlobDecode::OsmData(block) => f(&block),
            // Further header blocks and unknown blob types carry no roads.
            BlobDecode::OsmHeader(_) | BlobDecode::Unknown(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::RoadClass;

    /// A minimal protobuf writer, enough to build PBF fixtures by hand.
    #[derive(Default)]
    struct Pb(Vec<u8>);

    impl Pb {
        fn varint(&mut self, mut v: u64) -> &mut Self {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        fn key(&mut self, field: u64, wire_type: u64) -> &mut Self {
            self.varint(field << 3 | wire_type)
        }
        fn uint(&mut self, field: u64, v: u64) -> &mut Self {
            self.key(field, 0).varint(v)
        }
        fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
            self.key(field, 2).varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        fn packed(&mut self, field: u64, values: impl IntoIterator<Item = u64>) -> &mut Self {
            let mut inner = Pb::default();
            for v in values {
                inner.varint(v);
            }
            self.bytes(field, &inner.0)
        }
        /// Packed sint64, delta coded as PBF stores ids, refs and coordinates.
        fn packed_delta(&mut self, field: u64, values: &[i64]) -> &mut Self {
            let mut previous = 0;
            let zigzag = |n: i64| ((n << 1) ^ (n >> 63)) as u64;
            let deltas: Vec<u64> = values
                .iter()
                .map(|&v| {
                    let d = v - previous;
                    previous = v;
                    zigzag(d)
                })
                .collect();
            self.packed(field, deltas)
        }
    }

    fn blob(kind: &str, data: &[u8]) -> Vec<u8> {
        let mut body = Pb::default();
        body.bytes(1, data).uint(2, data.len() as u64);
        let mut header = Pb::default();
        header
            .bytes(1, kind.as_bytes())
            .uint(3, body.0.len() as u64);
        let mut out = (header.0.len() as u32).to_be_bytes().to_vec();
        out.extend(header.0);
        out.extend(body.0);
        out
    }

    /// A way of a fixture: id, tags, node refs.
    type FixtureWay<'a> = (i64, &'a [(&'a str, &'a str)], &'a [i64]);

    /// A PBF file with nodes 1–4 on a line at 43.73° N (node 1 as a plain node, the others
    /// dense) and the given ways.
    fn pbf(ways: &[FixtureWay]) -> Vec<u8> {
        let mut strings: Vec<String> = vec![String::new()];
        let mut index = |s: &str| -> u64 {
            let i = strings.iter().position(|x| x == s).unwrap_or_else(|| {
                strings.push(s.to_owned());
                strings.len() - 1
            });
            i as u64
        };
        // Coordinates in units of 100 nanodegrees (the default granularity).
        let lat = 437_300_000i64;
        let lon = |i: i64| 74_200_000 + 10_000 * i;
        let mut plain = Pb::default();
        plain
            .uint(1, 2)
            .uint(8, (lat as u64) << 1)
            .uint(9, (lon(1) as u64) << 1);
        let mut dense = Pb::default();
        dense
            .packed_delta(1, &[2, 3, 4])
            .packed_delta(8, &[lat, lat, lat])
            .packed_delta(9, &[lon(2), lon(3), lon(4)]);
        let mut way_group = Pb::default();
        for (id, tags, refs) in ways {
            let keys: Vec<u64> = tags.iter().map(|(k, _)| index(k)).collect();
            let vals: Vec<u64> = tags.iter().map(|(_, v)| index(v)).collect();
            let mut way = Pb::default();
            way.uint(1, *id as u64)
                .packed(2, keys)
                .packed(3, vals)
                .packed_delta(8, refs);
            way_group.bytes(3, &way.0);
        }
        let mut node_group = Pb::default();
        // Node id 1 (zigzag 2) as a plain node.
        node_group.bytes(1, &plain.0).bytes(2, &dense.0);
        let mut table = Pb::default();
        for s in &strings {
            table.bytes(1, s.as_bytes());
        }
        let mut block = Pb::default();
        block
            .bytes(1, &table.0)
            .bytes(2, &node_group.0)
            .bytes(2, &way_group.0);
        let mut file = blob("OSMHeader", &[]);
        file.extend(blob("OSMData", &block.0));
        file
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn imports_roads_from_plain_and_dense_nodes() {
        let file = write(&pbf(&[
            (
                10,
                &[("highway", "residential"), ("name", "Rue Test")],
                &[1, 2, 3],
            ),
            (11, &[("highway", "footway")], &[3, 4]),
            (12, &[("highway", "secondary"), ("oneway", "-1")], &[3, 4]),
        ]));
        let net = RoadNetwork::from_osm_pbf(file.path(), false).unwrap();
        let s = net.segments();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].osm_way_id, Some(10));
        assert_eq!(s[0].name.as_deref(), Some("Rue Test"));
        assert_eq!(s[0].class, RoadClass::IV);
        assert_eq!(s[0].points.len(), 3, "node 2 is a shape point");
        assert!((s[0].points[0].0 - 7.421).abs() < 1e-9 && (s[0].points[0].1 - 43.73).abs() < 1e-9);
        assert_eq!(s[1].class, RoadClass::II);
        assert!(s[1].oneway);
        assert!(
            (s[1].points[0].0 - 7.424).abs() < 1e-9,
            "drawn in driving direction"
        );
        assert_eq!(net.nodes().len(), 3);
    }

    #[test]
    fn clear_errors_for_bad_inputs() {
        let missing = RoadNetwork::from_osm_pbf("/nonexistent/monaco.osm.pbf", false).unwrap_err();
        assert!(matches!(missing, RoadsError::Io { .. }), "{missing}");
        assert!(missing.to_string().contains("/nonexistent/monaco.osm.pbf"));

        let text = write(b"<?xml version='1.0'?><osm></osm>\n");
        let err = RoadNetwork::from_osm_pbf(text.path(), false).unwrap_err();
        assert!(matches!(err, RoadsError::NotPbf { .. }), "{err}");

        let empty = write(b"");
        let err = RoadNetwork::from_osm_pbf(empty.path(), false).unwrap_err();
        assert!(matches!(err, RoadsError::NotPbf { .. }), "{err}");

        let data_first = write(&blob("OSMData", &[]));
        let err = RoadNetwork::from_osm_pbf(data_first.path(), false).unwrap_err();
        assert!(err.to_string().contains("not OSMHeader"), "{err}");

        let no_roads = write(&pbf(&[
            (11, &[("highway", "footway")], &[1, 2]),
            (12, &[("building", "yes")], &[2, 3, 4, 2]),
        ]));
        let err = RoadNetwork::from_osm_pbf(no_roads.path(), false).unwrap_err();
        assert!(matches!(err, RoadsError::NoRoads { .. }), "{err}");

        let mut truncated = pbf(&[(10, &[("highway", "primary")], &[1, 2])]);
        truncated.truncate(truncated.len() - 5);
        let err = RoadNetwork::from_osm_pbf(write(&truncated).path(), false).unwrap_err();
        assert!(matches!(err, RoadsError::Pbf { .. }), "{err}");
    }
}
