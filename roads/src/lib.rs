//! The cleanfleet road network: road segments between intersections, classified I–IV by the
//! OSM `highway` tag (see `DOMAIN.md`, "Roads"), with length, carriageway width and one-way
//! rules. The simulator drives on it; the coverage engine measures against it.
//!
//! A network comes from an OpenStreetMap PBF extract ([`RoadNetwork::from_osm_pbf`]), from the
//! built-in synthetic town ([`RoadNetwork::demo`]) or from hand-made parts
//! ([`RoadNetwork::new`]).

mod build;
mod class;
mod demo;
mod error;
mod geojson;
mod network;
mod osm;
mod tags;
pub mod test_data;
mod zones;

pub use class::RoadClass;
pub use error::RoadsError;
pub use network::{RoadNetwork, Segment};
pub use zones::{Zone, ZoneConfig, ZoneKind, Zones};
