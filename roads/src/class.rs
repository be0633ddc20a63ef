use std::fmt;

use serde::{Deserialize, Serialize};

/// Road class for cleaning standards, from the OSM `highway` tag (`DOMAIN.md`, "Roads").
/// Ordered from the most to the least important; written `"I"` to `"IV"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RoadClass {
    /// 主干道: motorway, trunk, primary and their links.
    I,
    /// 次干道: secondary.
    II,
    /// 支路: tertiary.
    III,
    /// 背街小巷: residential, unclassified, living_street, service.
    IV,
}

impl RoadClass {
    /// The class of a `highway` value, or `None` for ways that are not cleaned as roads
    /// (footway, path, cycleway, steps, track, pedestrian, construction, proposed, ...).
    pub fn from_highway(highway: &str) -> Option<RoadClass> {
        match highway {
            "motorway" | "motorway_link" | "trunk" | "trunk_link" | "primary" | "primary_link" => {
                Some(RoadClass::I)
            }
            "secondary" | "secondary_link" => Some(RoadClass::II),
            "tertiary" | "tertiary_link" => Some(RoadClass::III),
            "residential" | "unclassified" | "living_street" | "service" => Some(RoadClass::IV),
            _ => None,
        }
    }

    /// Carriageway width when OSM has neither `width` nor `lanes`; a city may override it.
    pub fn default_width_m(self) -> f64 {
        match self {
            RoadClass::I => 14.0,
            RoadClass::II => 10.0,
            RoadClass::III => 7.0,
            RoadClass::IV => 5.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoadClass::I => "I",
            RoadClass::II => "II",
            RoadClass::III => "III",
            RoadClass::IV => "IV",
        }
    }
}

impl fmt::Display for RoadClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highway_values_map_to_classes() {
        let cases = [
            ("motorway", Some(RoadClass::I)),
            ("trunk_link", Some(RoadClass::I)),
            ("primary", Some(RoadClass::I)),
            ("secondary", Some(RoadClass::II)),
            ("tertiary_link", Some(RoadClass::III)),
            ("residential", Some(RoadClass::IV)),
            ("living_street", Some(RoadClass::IV)),
            ("service", Some(RoadClass::IV)),
            ("unclassified", Some(RoadClass::IV)),
            ("footway", None),
            ("path", None),
            ("cycleway", None),
            ("steps", None),
            ("track", None),
            ("pedestrian", None),
            ("construction", None),
            ("proposed", None),
        ];
        for (highway, class) in cases {
            assert_eq!(RoadClass::from_highway(highway), class, "{highway}");
        }
        assert!(RoadClass::I < RoadClass::IV);
        assert_eq!(RoadClass::III.to_string(), "III");
    }
}
