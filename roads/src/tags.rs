//! Interpretation of the OSM tags of a highway way.

use crate::RoadClass;

/// Lane width used for `lanes` × lane width when a way has no `width`.
const LANE_WIDTH_M: f64 = 3.5;

/// Widths outside this range are tagging errors (a `width` of 0 or 700), not roads.
const PLAUSIBLE_WIDTH_M: std::ops::RangeInclusive<f64> = 1.0..=100.0;

const METRES_PER_FOOT: f64 = 0.3048;

/// Which way traffic may drive along the node order of a way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Both,
    /// Only in the node order.
    Forward,
    /// Only against the node order (`oneway=-1`).
    Backward,
}

/// What the network keeps of a road way's tags.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WayAttributes {
    pub class: RoadClass,
    pub name: Option<String>,
    pub direction: Direction,
    pub width_m: f64,
}

/// The attributes of a way, or `None` when it is not a road for cleaning.
pub(crate) fn way_attributes<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<WayAttributes> {
    let mut highway = None;
    let mut name = None;
    let mut oneway = None;
    let mut junction = None;
    let mut width = None;
    let mut lanes = None;
    let mut area = false;
    for (key, value) in tags {
        match key {
            "highway" => highway = Some(value),
            "name" => name = Some(value),
            "oneway" => oneway = Some(value),
            "junction" => junction = Some(value),
            "width" => width = Some(value),
            "lanes" => lanes = Some(value),
            // A highway area (a square, a parking lot outline) is a polygon, not a carriageway.
            "area" => area = value == "yes",
            _ => {}
        }
    }
    let highway = highway?;
    let class = RoadClass::from_highway(highway)?;
    if area {
        return None;
    }
    let implied_oneway =
        highway == "motorway" || matches!(junction, Some("roundabout" | "circular"));
    let direction = match oneway {
        Some("yes" | "1" | "true") => Direction::Forward,
        Some("-1" | "reverse") => Direction::Backward,
        // An explicit "no" overrides the implied one-way of a motorway or roundabout; unknown
        // values ("reversible", "alternating") change direction over the day, so both are driven.
        Some(_) => Direction::Both,
        None if implied_oneway => Direction::Forward,
        None => Direction::Both,
    };
    let width_m = width
        .and_then(parse_width_m)
        .or_else(|| {
            lanes
                .and_then(parse_lanes)
                .map(|n| f64::from(n) * LANE_WIDTH_M)
        })
        .unwrap_or_else(|| class.default_width_m());
    Some(WayAttributes {
        class,
        name: name.filter(|n| !n.trim().is_empty()).map(str::to_owned),
        direction,
        width_m,
    })
}

/// Parses an OSM `width` value: metres by default ("7", "7.5", "7,5", "7 m", "7m"), or feet
/// ("24 ft", `24'`, `24'6"`). Implausible values give `None`.
pub(crate) fn parse_width_m(value: &str) -> Option<f64> {
    let value = value.trim();
    let metres = if let Some(number) = value
        .strip_suffix("ft")
        .or_else(|| value.strip_suffix('\''))
    {
        parse_number(number)? * METRES_PER_FOOT
    } else if let Some((feet, inches)) = value.split_once('\'') {
        let inches = inches.trim().strip_suffix('"')?;
        (parse_number(feet)? + parse_number(inches)? / 12.0) * METRES_PER_FOOT
    } else {
        let number = value
            .strip_suffix("m")
            .or_else(|| value.strip_suffix("meters"))
            .or_else(|| value.strip_suffix("metres"))
            .unwrap_or(value);
        parse_number(number)?
    };
    PLAUSIBLE_WIDTH_M.contains(&metres).then_some(metres)
}

fn parse_number(text: &str) -> Option<f64> {
    // A decimal comma is common in European data ("7,5").
    let n: f64 = text.trim().replace(',', ".").parse().ok()?;
    n.is_finite().then_some(n)
}

/// Parses an OSM `lanes` value, a positive count of lanes.
fn parse_lanes(value: &str) -> Option<u32> {
    value.trim().parse().ok().filter(|&n| (1..=20).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(tags: &[(&str, &str)]) -> Option<WayAttributes> {
        way_attributes(tags.iter().copied())
    }

    #[test]
    fn width_parsing() {
        let cases = [
            ("7", Some(7.0)),
            ("7 m", Some(7.0)),
            ("7m", Some(7.0)),
            ("7.5", Some(7.5)),
            (" 7.5 m ", Some(7.5)),
            ("7,5", Some(7.5)),
            ("12 meters", Some(12.0)),
            ("10 ft", Some(3.048)),
            ("10'", Some(3.048)),
            ("10'6\"", Some(10.5 * 0.3048)),
            ("0", None),
            ("-3", None),
            ("700", None),
            ("wide", None),
            ("", None),
            ("NaN", None),
            ("inf", None),
        ];
        for (text, expected) in cases {
            let got = parse_width_m(text);
            match (got, expected) {
                (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "{text:?}: {g} != {e}"),
                _ => assert_eq!(got, expected, "{text:?}"),
            }
        }
    }

    #[test]
    fn width_falls_back_to_lanes_then_class_default() {
        let w = |tags: &[(&str, &str)]| attrs(tags).unwrap().width_m;
        assert_eq!(w(&[("highway", "primary"), ("width", "18.5")]), 18.5);
        assert_eq!(w(&[("highway", "primary"), ("lanes", "4")]), 14.0);
        assert_eq!(
            w(&[("highway", "primary"), ("width", "bad"), ("lanes", "2")]),
            7.0,
            "an unparsable width falls back to lanes"
        );
        assert_eq!(w(&[("highway", "primary"), ("lanes", "2;3")]), 14.0);
        assert_eq!(w(&[("highway", "secondary")]), 10.0);
        assert_eq!(w(&[("highway", "tertiary")]), 7.0);
        assert_eq!(w(&[("highway", "service")]), 5.0);
    }

    #[test]
    fn oneway_rules() {
        let d = |tags: &[(&str, &str)]| attrs(tags).unwrap().direction;
        assert_eq!(d(&[("highway", "residential")]), Direction::Both);
        for v in ["yes", "1", "true"] {
            assert_eq!(
                d(&[("highway", "residential"), ("oneway", v)]),
                Direction::Forward
            );
        }
        assert_eq!(
            d(&[("highway", "residential"), ("oneway", "-1")]),
            Direction::Backward
        );
        assert_eq!(
            d(&[("highway", "residential"), ("oneway", "no")]),
            Direction::Both
        );
        assert_eq!(d(&[("highway", "motorway")]), Direction::Forward);
        assert_eq!(
            d(&[("highway", "motorway"), ("oneway", "no")]),
            Direction::Both
        );
        assert_eq!(
            d(&[("highway", "tertiary"), ("junction", "roundabout")]),
            Direction::Forward
        );
        assert_eq!(
            d(&[("highway", "primary"), ("oneway", "reversible")]),
            Direction::Both
        );
    }

    #[test]
    fn non_roads_and_areas_are_skipped() {
        assert!(attrs(&[("highway", "footway")]).is_none());
        assert!(attrs(&[("name", "Renmin Road")]).is_none());
        assert!(attrs(&[("highway", "service"), ("area", "yes")]).is_none());
        let a = attrs(&[("highway", "primary"), ("name", "Renmin Road")]).unwrap();
        assert_eq!(a.class, RoadClass::I);
        assert_eq!(a.name.as_deref(), Some("Renmin Road"));
        assert_eq!(
            attrs(&[("highway", "primary"), ("name", " ")])
                .unwrap()
                .name,
            None
        );
    }
}
