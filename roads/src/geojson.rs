//! Road networks from GeoJSON: LineString and MultiLineString features whose properties are
//! OSM-style tags (`highway`, `name`, `oneway`, `width`, `lanes`; `osm_id` or a numeric
//! feature id). Lines meet where they share a vertex (to 1e-7°), as OSM ways share nodes.

use std::collections::HashMap;
use std::path::Path;

use geojson::{FeatureCollection, GeometryValue};
use serde_json::Value;

use crate::build::{build, Way};
use crate::tags::way_attributes;
use crate::{RoadNetwork, RoadsError};

/// Vertices closer than this (in degrees) are one node.
const VERTEX_RESOLUTION: f64 = 1e-7;

impl RoadNetwork {
    /// Reads a GeoJSON FeatureCollection of road lines; features that are not roads of class
    /// I–IV (by their `highway` property) are skipped.
    pub fn from_geojson(path: impl AsRef<Path>) -> Result<RoadNetwork, RoadsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RoadsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let not_geojson = |reason: String| RoadsError::NotGeoJson {
            path: path.to_owned(),
            reason,
        };
        let collection: FeatureCollection = text
            .parse()
            .map_err(|e: geojson::Error| not_geojson(e.to_string()))?;
        let mut node_ids: HashMap<(i64, i64), i64> = HashMap::new();
        let mut positions: HashMap<i64, (f64, f64)> = HashMap::new();
        let mut ways = Vec::new();
        for feature in &collection.features {
            let Some(geometry) = &feature.geometry else {
                continue;
            };
            let lines: Vec<&Vec<geojson::Position>> = match &geometry.value {
                GeometryValue::LineString { coordinates } => vec![coordinates],
                GeometryValue::MultiLineString { coordinates } => coordinates.iter().collect(),
                _ => continue,
            };
            let properties = feature.properties.clone().unwrap_or_default();
            let text_of = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_owned()),
                _ => None,
            };
            let tags: Vec<(String, String)> = properties
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), text_of(v)?)))
                .collect();
            let Some(attributes) =
                way_attributes(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            else {
                continue;
            };
            let osm_way_id = properties
                .get("osm_id")
                .and_then(Value::as_i64)
                .or_else(|| match &feature.id {
                    Some(geojson::feature::Id::Number(n)) => n.as_i64(),
                    _ => None,
                });
            for line in lines {
                let mut ids = Vec::with_capacity(line.len());
                for position in line {
                    let p = position.as_slice();
                    if p.len() < 2 || !p[0].is_finite() || !p[1].is_finite() {
                        return Err(not_geojson(
                            "a line has a position without longitude and latitude".into(),
                        ));
                    }
                    let key = (
                        (p[0] / VERTEX_RESOLUTION).round() as i64,
                        (p[1] / VERTEX_RESOLUTION).round() as i64,
                    );
                    let next_id = node_ids.len() as i64;
                    let id = *node_ids.entry(key).or_insert(next_id);
                    positions.entry(id).or_insert((p[0], p[1]));
                    ids.push(id);
                }
                ways.push(Way {
                    osm_way_id,
                    attributes: attributes.clone(),
                    node_ids: ids,
                });
            }
        }
        build(&ways, &positions)?.ok_or_else(|| RoadsError::NoRoads {
            path: path.to_owned(),
        })
    }

    /// Reads a road network file by its name: GeoJSON for `.geojson` and `.json`, else an
    /// OpenStreetMap PBF (with a progress bar on the terminal when `progress`).
    pub fn from_file(path: impl AsRef<Path>, progress: bool) -> Result<RoadNetwork, RoadsError> {
        let path = path.as_ref();
        let name = path.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".geojson") || name.ends_with(".json") {
            RoadNetwork::from_geojson(path)
        } else {
            RoadNetwork::from_osm_pbf(path, progress)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoadClass;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("roads.geojson");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn lines_meeting_at_a_vertex_are_split_there_with_their_tags() {
        let dir = tempfile::tempdir().unwrap();
        // A primary road west-east through (7.421, 43.73), a one-way residential street
        // starting there northwards, and a footway that is no road.
        let path = write(
            &dir,
            r#"{"type":"FeatureCollection","features":[
              {"type":"Feature","id":11,"properties":{"highway":"primary","name":"Main","lanes":3},
               "geometry":{"type":"LineString","coordinates":[[7.42,43.73],[7.421,43.73],[7.422,43.73]]}},
              {"type":"Feature","properties":{"highway":"residential","oneway":"yes","osm_id":22},
               "geometry":{"type":"LineString","coordinates":[[7.421,43.73],[7.421,43.731]]}},
              {"type":"Feature","properties":{"highway":"footway"},
               "geometry":{"type":"LineString","coordinates":[[7.42,43.73],[7.42,43.731]]}}
            ]}"#,
        );
        let net = RoadNetwork::from_file(&path, false).unwrap();
        assert_eq!(
            net.segments().len(),
            3,
            "the primary is cut where the street joins"
        );
        let main: Vec<_> = net
            .segments()
            .iter()
            .filter(|s| s.osm_way_id == Some(11))
            .collect();
        assert_eq!(main.len(), 2);
        assert!(main
            .iter()
            .all(|s| s.class == RoadClass::I && s.name.as_deref() == Some("Main")));
        assert!(
            main.iter().all(|s| (s.length_m - 80.4).abs() < 1.0),
            "{main:?}"
        );
        let street = net
            .segments()
            .iter()
            .find(|s| s.osm_way_id == Some(22))
            .unwrap();
        assert!(street.oneway && street.class == RoadClass::IV);
        assert_eq!(net.nodes().len(), 4);
    }

    #[test]
    fn files_that_are_not_road_networks_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = RoadNetwork::from_geojson(write(&dir, "{ not json")).unwrap_err();
        assert!(matches!(err, RoadsError::NotGeoJson { .. }), "{err}");
        let points = r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{"highway":"primary"},"geometry":{"type":"Point","coordinates":[7.42,43.73]}}]}"#;
        let err = RoadNetwork::from_geojson(write(&dir, points)).unwrap_err();
        assert!(matches!(err, RoadsError::NoRoads { .. }), "{err}");
        assert!(err.to_string().contains("contains no roads"));
    }
}
