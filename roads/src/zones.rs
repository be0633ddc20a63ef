//! Sections (标段, each with its contractor) and grid cells (网格): areas of the network a
//! city assigns work and responsibility by. A zone takes the segments listed for it (by
//! segment index or OSM way id) and the segments whose midpoint lies in its polygons; a
//! segment belongs to at most one section and one grid cell: the first zone, in the order
//! given, that claims it (explicit lists before polygons).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use geo::{Coord, Intersects, LineString, Point, Polygon};
use geojson::{FeatureCollection, GeometryValue};
use serde::Deserialize;

use crate::{RoadNetwork, RoadsError};

/// A section or grid cell as configured.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Who is paid for the section's cleaning (sections only).
    #[serde(default)]
    pub contractor: Option<String>,
    /// Outer rings as `[[lon, lat], ...]`; a segment whose midpoint lies inside (or on the
    /// edge) belongs here.
    #[serde(default)]
    pub polygons: Vec<Vec<(f64, f64)>>,
    /// Segment indexes of the network.
    #[serde(default)]
    pub segments: Vec<u32>,
    /// OSM way ids: every segment cut from them.
    #[serde(default)]
    pub osm_ways: Vec<i64>,
    /// Device ids of the vehicles, crew wearables and bins under the section's contract
    /// (sections only): its contractor sees them and answers for them, and the simulator works
    /// the vehicles here. A device is under one section at most.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// Which zones are sections and which grid cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    Section,
    Grid,
}

/// A zone with the segments it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: String,
    pub name: Option<String>,
    pub contractor: Option<String>,
    pub segments: Vec<u32>,
    /// The devices under the section's contract.
    pub devices: Vec<String>,
}

/// The sections and grid cells of a network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Zones {
    sections: Vec<Zone>,
    grids: Vec<Zone>,
    section_of: Vec<Option<u32>>,
    grid_of: Vec<Option<u32>>,
    section_of_device: HashMap<String, u32>,
}

impl Zones {
    /// Assigns the network's segments to `sections` and `grids`.
    pub fn new(
        network: &RoadNetwork,
        sections: &[ZoneConfig],
        grids: &[ZoneConfig],
    ) -> Result<Zones, RoadsError> {
        let (sections, section_of) = assign(network, sections, "section")?;
        let (grids, grid_of) = assign(network, grids, "grid cell")?;
        if let Some(g) = grids.iter().find(|g| !g.devices.is_empty()) {
            return Err(RoadsError::InvalidZones(format!(
                "grid cell {:?} lists devices: only sections have devices",
                g.id
            )));
        }
        let mut section_of_device = HashMap::new();
        for (z, section) in sections.iter().enumerate() {
            for device in &section.devices {
                if let Some(other) = section_of_device.insert(device.clone(), z as u32) {
                    return Err(RoadsError::InvalidZones(format!(
                        "device {device:?} is listed under sections {:?} and {:?}",
                        sections[other as usize].id, section.id
                    )));
                }
            }
        }
        Ok(Zones {
            sections,
            grids,
            section_of,
            grid_of,
            section_of_device,
        })
    }

    /// Zones from a GeoJSON FeatureCollection of Polygons and MultiPolygons whose properties
    /// have `kind` (`section` or `grid`), `id`, and optionally `name`, `contractor` and
    /// `devices` (an array of device ids).
    pub fn read_geojson(path: &Path) -> Result<Vec<(ZoneKind, ZoneConfig)>, RoadsError> {
        let text = std::fs::read_to_string(path).map_err(|source| RoadsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad =
            |reason: String| RoadsError::InvalidZones(format!("{}: {reason}", path.display()));
        let collection: FeatureCollection = text
            .parse()
            .map_err(|e: geojson::Error| bad(e.to_string()))?;
        let mut zones = Vec::new();
        for (n, feature) in collection.features.iter().enumerate() {
            let property = |key: &str| {
                feature
                    .properties
                    .as_ref()
                    .and_then(|p| p.get(key))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let kind = match property("kind").as_deref() {
                Some("section") => ZoneKind::Section,
                Some("grid") => ZoneKind::Grid,
                other => {
                    return Err(bad(format!(
                        "feature {n}: property kind must be \"section\" or \"grid\", not {other:?}"
                    )))
                }
            };
            let id =
                property("id").ok_or_else(|| bad(format!("feature {n}: no string property id")))?;
            let rings = |polygon: &Vec<Vec<geojson::Position>>| -> Option<Vec<(f64, f64)>> {
                let outer = polygon.first()?;
                Some(
                    outer
                        .iter()
                        .map(|p| (p.as_slice()[0], p.as_slice()[1]))
                        .collect(),
                )
            };
            let polygons: Vec<Vec<(f64, f64)>> = match feature.geometry.as_ref().map(|g| &g.value) {
                Some(GeometryValue::Polygon { coordinates }) => {
                    rings(coordinates).into_iter().collect()
                }
                Some(GeometryValue::MultiPolygon { coordinates }) => {
                    coordinates.iter().filter_map(rings).collect()
                }
                _ => {
                    return Err(bad(format!(
                        "zone {id:?}: geometry must be a Polygon or MultiPolygon"
                    )))
                }
            };
            let devices = devices(feature)
                .map_err(|what| bad(format!("zone {id:?}: property devices {what}")))?;
            zones.push((
                kind,
                ZoneConfig {
                    id,
                    name: property("name"),
                    contractor: property("contractor"),
                    polygons,
                    devices,
                    ..ZoneConfig::default()
                },
            ));
        }
        Ok(zones)
    }

    pub fn sections(&self) -> &[Zone] {
        &self.sections
    }

    pub fn grids(&self) -> &[Zone] {
        &self.grids
    }

    /// The section a segment belongs to, if any.
    pub fn section_of(&self, segment: u32) -> Option<&Zone> {
        let i = (*self.section_of.get(segment as usize)?)?;
        self.sections.get(i as usize)
    }

    pub fn grid_of(&self, segment: u32) -> Option<&Zone> {
        let i = (*self.grid_of.get(segment as usize)?)?;
        self.grids.get(i as usize)
    }

    /// The section whose contract a device is under, if any.
    pub fn section_of_device(&self, device_id: &str) -> Option<&Zone> {
        let i = *self.section_of_device.get(device_id)?;
        self.sections.get(i as usize)
    }

    /// The contractor a device works for: its section's.
    pub fn contractor_of_device(&self, device_id: &str) -> Option<&str> {
        self.section_of_device(device_id)?.contractor.as_deref()
    }

    /// The devices under a contractor's sections.
    pub fn devices_of<'a>(&'a self, contractor: &'a str) -> impl Iterator<Item = &'a str> {
        self.sections
            .iter()
            .filter(move |z| z.contractor.as_deref() == Some(contractor))
            .flat_map(|z| z.devices.iter().map(String::as_str))
    }

    pub fn section(&self, id: &str) -> Option<&Zone> {
        self.sections.iter().find(|z| z.id == id)
    }

    pub fn grid(&self, id: &str) -> Option<&Zone> {
        self.grids.iter().find(|z| z.id == id)
    }
}

fn assign(
    network: &RoadNetwork,
    configs: &[ZoneConfig],
    what: &str,
) -> Result<(Vec<Zone>, Vec<Option<u32>>), RoadsError> {
    let bad = |reason: String| Err(RoadsError::InvalidZones(reason));
    let mut seen = HashSet::new();
    let mut polygons = Vec::with_capacity(configs.len());
    for c in configs {
        if c.id.trim().is_empty() {
            return bad(format!("a {what} has an empty id"));
        }
        if !seen.insert(c.id.as_str()) {
            return bad(format!("{what} id {:?} is used twice", c.id));
        }
        if let Some(s) = c
            .segments
            .iter()
            .find(|&&s| s as usize >= network.segments().len())
        {
            return bad(format!(
                "{what} {:?}: segment {s} is not in the network",
                c.id
            ));
        }
        let mut zone_polygons = Vec::new();
        for ring in &c.polygons {
            if ring.len() < 3 || ring.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
                return bad(format!(
                    "{what} {:?}: a polygon needs at least 3 [lon, lat] points",
                    c.id
                ));
            }
            let coords: Vec<Coord> = ring.iter().map(|&(x, y)| Coord { x, y }).collect();
            zone_polygons.push(Polygon::new(LineString::from(coords), vec![]));
        }
        polygons.push(zone_polygons);
    }
    let mut owner: Vec<Option<u32>> = vec![None; network.segments().len()];
    for (z, c) in configs.iter().enumerate() {
        let ways: HashSet<i64> = c.osm_ways.iter().copied().collect();
        for s in network.segments() {
            let listed =
                c.segments.contains(&s.id) || s.osm_way_id.is_some_and(|w| ways.contains(&w));
            if listed && owner[s.id as usize].is_none() {
                owner[s.id as usize] = Some(z as u32);
            }
        }
    }
    for s in network.segments() {
        if owner[s.id as usize].is_some() {
            continue;
        }
        let middle = midpoint(&s.points);
        owner[s.id as usize] = polygons
            .iter()
            .position(|ps| ps.iter().any(|p| p.intersects(&middle)))
            .map(|z| z as u32);
    }
    let mut zones: Vec<Zone> = configs
        .iter()
        .map(|c| Zone {
            id: c.id.clone(),
            name: c.name.clone(),
            contractor: c.contractor.clone(),
            segments: Vec::new(),
            devices: c.devices.clone(),
        })
        .collect();
    for (segment, z) in owner.iter().enumerate() {
        if let Some(z) = z {
            zones[*z as usize].segments.push(segment as u32);
        }
    }
    Ok((zones, owner))
}

/// A feature's `devices` property: absent, or an array of strings.
fn devices(feature: &geojson::Feature) -> Result<Vec<String>, &'static str> {
    match feature.properties.as_ref().and_then(|p| p.get("devices")) {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("must hold strings only")
            })
            .collect(),
        Some(_) => Err("must be an array of device ids"),
    }
}

/// The point halfway along a polyline (by planar length in degrees: good enough to place a
/// segment in a district).
fn midpoint(points: &[(f64, f64)]) -> Point {
    let length = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0).hypot(b.1 - a.1);
    let total: f64 = points.windows(2).map(|w| length(w[0], w[1])).sum();
    let mut left = total / 2.0;
    for w in points.windows(2) {
        let piece = length(w[0], w[1]);
        if left <= piece && piece > 0.0 {
            let f = left / piece;
            return Point::new(
                w[0].0 + f * (w[1].0 - w[0].0),
                w[0].1 + f * (w[1].1 - w[0].1),
            );
        }
        left -= piece;
    }
    Point::new(points[0].0, points[0].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<(f64, f64)> {
        vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    }

    #[test]
    fn polygons_and_lists_assign_each_segment_once() {
        let net = RoadNetwork::demo();
        let bbox = net.bbox();
        let mid_x = (bbox.min().x + bbox.max().x) / 2.0;
        let west = ZoneConfig {
            id: "W".into(),
            contractor: Some("acme".into()),
            polygons: vec![square(
                bbox.min().x - 1.0,
                bbox.min().y - 1.0,
                mid_x,
                bbox.max().y + 1.0,
            )],
            ..ZoneConfig::default()
        };
        let east = ZoneConfig {
            id: "E".into(),
            contractor: Some("clean-co".into()),
            polygons: vec![square(
                mid_x,
                bbox.min().y - 1.0,
                bbox.max().x + 1.0,
                bbox.max().y + 1.0,
            )],
            // Listed explicitly: wins over the western polygon.
            segments: vec![0],
            ..ZoneConfig::default()
        };
        let zones = Zones::new(&net, &[west, east], &[]).unwrap();
        let (w, e) = (&zones.sections()[0], &zones.sections()[1]);
        assert_eq!(
            w.segments.len() + e.segments.len(),
            net.segments().len(),
            "every segment once"
        );
        assert!(e.segments.contains(&0) && !w.segments.contains(&0));
        assert!(w.segments.len() > 80 && e.segments.len() > 80);
        for &s in &w.segments {
            assert_eq!(zones.section_of(s).unwrap().id, "W");
            assert!(midpoint(&net.segments()[s as usize].points).x() <= mid_x + 1e-9 || s == 0);
        }
        assert_eq!(
            zones.section("E").unwrap().contractor.as_deref(),
            Some("clean-co")
        );
        assert!(zones.grid_of(0).is_none() && zones.grid("G").is_none());
    }

    fn zone(id: &str) -> ZoneConfig {
        ZoneConfig {
            id: id.into(),
            ..ZoneConfig::default()
        }
    }

    #[test]
    fn bad_zones_are_named() {
        let net = RoadNetwork::demo();
        let twice = Zones::new(&net, &[zone("A"), zone("A")], &[]).unwrap_err();
        assert!(twice.to_string().contains("\"A\" is used twice"), "{twice}");
        let far = ZoneConfig {
            segments: vec![99_999],
            ..zone("B")
        };
        let err = Zones::new(&net, &[], &[far]).unwrap_err();
        assert!(
            err.to_string().contains("grid cell \"B\": segment 99999"),
            "{err}"
        );
        let flat = ZoneConfig {
            polygons: vec![vec![(0.0, 0.0), (1.0, 1.0)]],
            ..zone("C")
        };
        assert!(Zones::new(&net, &[flat], &[]).is_err());
    }

    #[test]
    fn zones_read_from_geojson() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zones.geojson");
        std::fs::write(
            &path,
            r#"{"type":"FeatureCollection","features":[
              {"type":"Feature","properties":{"kind":"section","id":"S1","name":"North","contractor":"acme","devices":["sw-01","cw-07"]},
               "geometry":{"type":"Polygon","coordinates":[[[120,31],[121,31],[121,33],[120,33],[120,31]]]}},
              {"type":"Feature","properties":{"kind":"grid","id":"G-01"},
               "geometry":{"type":"MultiPolygon","coordinates":[[[[120,31],[121,31],[121,32],[120,31]]]]}}
            ]}"#,
        )
        .unwrap();
        let zones = Zones::read_geojson(&path).unwrap();
        assert_eq!(zones.len(), 2);
        assert_eq!(zones[0].0, ZoneKind::Section);
        assert_eq!(zones[0].1.contractor.as_deref(), Some("acme"));
        assert_eq!(zones[0].1.devices, ["sw-01", "cw-07"]);
        assert!(zones[1].1.devices.is_empty());
        assert_eq!(zones[1].1.polygons[0].len(), 4);
        std::fs::write(&path, r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"x"},"geometry":null}]}"#).unwrap();
        let err = Zones::read_geojson(&path).unwrap_err();
        assert!(err.to_string().contains("property kind"), "{err}");
        std::fs::write(&path, r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"kind":"section","id":"S","devices":"sw-01"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#).unwrap();
        let err = Zones::read_geojson(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("zone \"S\": property devices must be an array"),
            "{err}"
        );
    }

    #[test]
    fn a_device_works_for_the_contractor_of_the_one_section_listing_it() {
        let net = RoadNetwork::demo();
        let west = ZoneConfig {
            contractor: Some("acme".into()),
            devices: vec!["sw-01".into(), "cw-01".into()],
            ..zone("W")
        };
        let east = ZoneConfig {
            devices: vec!["sw-02".into()],
            ..zone("E")
        };
        let zones = Zones::new(&net, &[west.clone(), east.clone()], &[]).unwrap();
        assert_eq!(zones.section_of_device("cw-01").unwrap().id, "W");
        assert_eq!(zones.contractor_of_device("sw-01"), Some("acme"));
        assert_eq!(zones.section_of_device("sw-02").unwrap().id, "E");
        assert_eq!(
            zones.contractor_of_device("sw-02"),
            None,
            "E has no contractor"
        );
        assert_eq!(zones.section_of_device("sw-03"), None);

        let twice = ZoneConfig {
            devices: vec!["sw-01".into()],
            ..east
        };
        let err = Zones::new(&net, &[west, twice], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("device \"sw-01\" is listed under sections \"W\" and \"E\""),
            "{err}"
        );
        let grid = ZoneConfig {
            devices: vec!["sw-09".into()],
            ..zone("G")
        };
        let err = Zones::new(&net, &[], &[grid]).unwrap_err();
        assert!(
            err.to_string().contains("only sections have devices"),
            "{err}"
        );
    }
}

impl Zones {
    /// The demo town's zones: four quarter sections shared by two contractors
    /// (`acme-cleaning` the western half, `green-city` the eastern) and a 4 × 4 grid of cells.
    /// Zones by bounding box, so they suit any network, but only the demo is meant.
    pub fn demo_configs(network: &RoadNetwork) -> (Vec<ZoneConfig>, Vec<ZoneConfig>) {
        let b = network.bbox();
        let (x0, y0, x1, y1) = (
            b.min().x - 1e-4,
            b.min().y - 1e-4,
            b.max().x + 1e-4,
            b.max().y + 1e-4,
        );
        let split = |n: usize, i: usize, lo: f64, hi: f64| lo + (hi - lo) * i as f64 / n as f64;
        let cell = |n: usize, i: usize, j: usize| {
            let (a, c) = (split(n, i, x0, x1), split(n, i + 1, x0, x1));
            let (d, e) = (split(n, j, y0, y1), split(n, j + 1, y0, y1));
            vec![(a, d), (c, d), (c, e), (a, e), (a, d)]
        };
        // The devices are the simulator's default fleet: the flusher and the washer-sweeper
        // that follows it work one section together; three bins each.
        let sections = [
            (
                "SW",
                0,
                0,
                "acme-cleaning",
                &["fl-01", "ws-01", "bin-001", "bin-002", "bin-003"][..],
            ),
            (
                "NW",
                0,
                1,
                "acme-cleaning",
                &["sw-01", "bin-004", "bin-005", "bin-006"],
            ),
            (
                "SE",
                1,
                0,
                "green-city",
                &["sw-02", "ct-01", "bin-007", "bin-008", "bin-009"],
            ),
            (
                "NE",
                1,
                1,
                "green-city",
                &["sp-01", "bin-010", "bin-011", "bin-012"],
            ),
        ]
        .into_iter()
        .map(|(id, i, j, contractor, devices)| ZoneConfig {
            id: id.into(),
            name: Some(format!("{id} quarter")),
            contractor: Some(contractor.into()),
            polygons: vec![cell(2, i, j)],
            devices: devices.iter().map(|&d| d.to_owned()).collect(),
            ..ZoneConfig::default()
        })
        .collect();
        let grids = (0..4)
            .flat_map(|j| (0..4).map(move |i| (i, j)))
            .map(|(i, j)| ZoneConfig {
                id: format!("G{}{}", (b'A' + j as u8) as char, i + 1),
                polygons: vec![cell(4, i, j)],
                ..ZoneConfig::default()
            })
            .collect();
        (sections, grids)
    }
}

#[cfg(test)]
mod demo_tests {
    use super::*;

    #[test]
    fn the_demo_town_is_split_among_two_contractors_and_sixteen_cells() {
        let net = RoadNetwork::demo();
        let (sections, grids) = Zones::demo_configs(&net);
        let zones = Zones::new(&net, &sections, &grids).unwrap();
        assert_eq!(zones.sections().len(), 4);
        assert_eq!(zones.grids().len(), 16);
        for s in net.segments() {
            assert!(
                zones.section_of(s.id).is_some(),
                "segment {} has no section",
                s.id
            );
            assert!(
                zones.grid_of(s.id).is_some(),
                "segment {} has no grid cell",
                s.id
            );
        }
        let acme: usize = zones
            .sections()
            .iter()
            .filter(|z| z.contractor.as_deref() == Some("acme-cleaning"))
            .map(|z| z.segments.len())
            .sum();
        assert!((90..=130).contains(&acme), "{acme} of 220 segments");
    }
}
