//! Matching a track outside the store: a GPX, CSV or GeoJSON file of fixes, matched and cut
//! into passes exactly as the coverage stage does, so that a contractor or an auditor can
//! check any track (`cleanfleet match`, `POST /api/v1/match`).
//!
//! Formats (time and position required, the rest optional):
//! - **GPX** 1.0 or 1.1: every track point of every track (`<time>`, and `<speed>` in m/s
//!   (GPX 1.0), `<hdop>`, `<sat>`).
//! - **CSV** with a header: `time` (RFC 3339, or Unix seconds), `lat`, `lon`, and optionally
//!   `speed_kmh`, `heading_deg`, `hdop`, `satellites`, `tools_on` (`true`/`false`/`1`/`0`).
//! - **GeoJSON**: a FeatureCollection of Point features whose properties hold `time` and
//!   the optional fields above, or LineString features with a `times` (or `coordTimes`)
//!   array beside their coordinates.

use std::io::Cursor;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

use crate::chunk::chunked_match;
use crate::index::SegmentIndex;
use crate::matcher::{MatchedPoint, Matcher, Observation};
use crate::passes::{FixState, InvalidReason, Pass, WorkType};
use crate::rules::CoverageRules;
use cleanfleet_model::{apart_m, SAME_PLACE_M};
use cleanfleet_roads::RoadNetwork;

/// One fix of a track file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackFix {
    pub time_s: f64,
    pub lon: f64,
    pub lat: f64,
    pub speed_kmh: Option<f64>,
    pub heading_deg: Option<f64>,
    pub hdop: Option<f64>,
    pub satellites: Option<u8>,
    /// `None` when the file does not say: the tools are taken to be on.
    pub tools_on: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackFormat {
    Gpx,
    Csv,
    GeoJson,
}

impl TrackFormat {
    /// From a file name's extension (`.gpx`, `.csv`, `.geojson` or `.json`).
    pub fn from_path(path: &std::path::Path) -> Option<TrackFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        TrackFormat::parse(&ext)
    }

    /// From its name (`gpx`, `csv`, `geojson`, `json`) or a media type
    /// (`application/gpx+xml`, `text/csv`, `application/geo+json`, `application/json`).
    pub fn parse(name: &str) -> Option<TrackFormat> {
        let name = name
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "gpx" | "application/gpx+xml" | "application/gpx" => Some(TrackFormat::Gpx),
            "csv" | "text/csv" => Some(TrackFormat::Csv),
            "geojson" | "json" | "application/geo+json" | "application/json" => {
                Some(TrackFormat::GeoJson)
            }
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrackError {
    #[error("not a readable {format} track: {message}")]
    Unreadable {
        format: &'static str,
        message: String,
    },
    #[error("fix {index}: {message}")]
    BadFix { index: usize, message: String },
    #[error("the track has no fixes")]
    Empty,
    #[error(
        "fixes {first} and {second} have the same time {time} but are {apart_m:.1} m apart: which one is true?"
    )]
    Collision {
        first: usize,
        second: usize,
        time: String,
        apart_m: f64,
    },
}

/// Reads a track file's fixes, in file order.
pub fn parse_track(format: TrackFormat, bytes: &[u8]) -> Result<Vec<TrackFix>, TrackError> {
    let fixes = match format {
        TrackFormat::Gpx => parse_gpx(bytes)?,
        TrackFormat::Csv => parse_csv(bytes)?,
        TrackFormat::GeoJson => parse_geojson(bytes)?,
    };
    for (index, f) in fixes.iter().enumerate() {
        check_fix(f).map_err(|message| TrackError::BadFix { index, message })?;
    }
    if fixes.is_empty() {
        return Err(TrackError::Empty);
    }
    Ok(fixes)
}

fn check_fix(f: &TrackFix) -> Result<(), String> {
    if !(f.lat.is_finite() && (-90.0..=90.0).contains(&f.lat)) {
        return Err(format!("lat {} is not a latitude", f.lat));
    }
    if !(f.lon.is_finite() && (-180.0..=180.0).contains(&f.lon)) {
        return Err(format!("lon {} is not a longitude", f.lon));
    }
    if f.speed_kmh.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
        return Err("speed_kmh must be 0 or more".into());
    }
    if f.hdop
        .is_some_and(|h| !(h.is_finite() && (0.0..=100.0).contains(&h)))
    {
        return Err("hdop must be 0 to 100".into());
    }
    if f.heading_deg.is_some_and(|h| !h.is_finite()) {
        return Err("heading_deg must be a number".into());
    }
    Ok(())
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn timestamp(s: f64) -> Timestamp {
    Timestamp::from_millisecond((s * 1000.0).round() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// RFC 3339, or Unix seconds, between 1990 and 2100.
fn parse_time(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let time_s = match text.parse::<f64>() {
        Ok(unix_s) => unix_s,
        Err(_) => text
            .parse::<Timestamp>()
            .map(seconds)
            .map_err(|e| format!("time {text:?}: {e}"))?,
    };
    check_time(time_s)
}

/// Times a vehicle's track can have.
fn check_time(time_s: f64) -> Result<f64, String> {
    const FROM_S: f64 = 631_152_000.0; // 1990-01-01
    const UNTIL_S: f64 = 4_102_444_800.0; // 2100-01-01
    if (FROM_S..UNTIL_S).contains(&time_s) {
        Ok(time_s)
    } else {
        Err(format!("time {time_s} is not between 1990 and 2100"))
    }
}

fn parse_gpx(bytes: &[u8]) -> Result<Vec<TrackFix>, TrackError> {
    let unreadable = |message: String| TrackError::Unreadable {
        format: "GPX",
        message,
    };
    let gpx = gpx::read(Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    let points = gpx
        .tracks
        .iter()
        .flat_map(|t| &t.segments)
        .flat_map(|s| &s.points);
    let mut fixes = Vec::new();
    for (index, p) in points.enumerate() {
        let bad = |message: String| TrackError::BadFix { index, message };
        let time = p.time.ok_or_else(|| bad("no <time>".into()))?;
        let text = time.format().map_err(|e| bad(e.to_string()))?;
        let point = p.point();
        fixes.push(TrackFix {
            time_s: parse_time(&text).map_err(bad)?,
            lon: point.x(),
            lat: point.y(),
            speed_kmh: p.speed.map(|m_s| m_s * 3.6),
            heading_deg: None,
            hdop: p.hdop,
            satellites: p.sat.map(|s| s.min(u64::from(u8::MAX)) as u8),
            tools_on: None,
        });
    }
    Ok(fixes)
}

fn parse_csv(bytes: &[u8]) -> Result<Vec<TrackFix>, TrackError> {
    let unreadable = |message: String| TrackError::Unreadable {
        format: "CSV",
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| unreadable(e.to_string()))?
        .iter()
        .map(str::to_ascii_lowercase)
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(time), Some(lat), Some(lon)) = (column("time"), column("lat"), column("lon")) else {
        return Err(unreadable(
            "the header must name the columns time, lat and lon".into(),
        ));
    };
    let optional = ["speed_kmh", "heading_deg", "hdop", "satellites", "tools_on"].map(column);
    let mut fixes = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|e| unreadable(e.to_string()))?;
        let bad = |message: String| TrackError::BadFix { index, message };
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |name: &str, i: usize| -> Result<f64, TrackError> {
            field(i)
                .parse::<f64>()
                .map_err(|_| bad(format!("{name} {:?} is not a number", field(i))))
        };
        let maybe = |k: usize, name: &str| -> Result<Option<f64>, TrackError> {
            match optional[k] {
                Some(i) if !field(i).is_empty() => number(name, i).map(Some),
                _ => Ok(None),
            }
        };
        let tools_on = match optional[4].map(field) {
            None | Some("") => None,
            Some("1") | Some("true") => Some(true),
            Some("0") | Some("false") => Some(false),
            Some(other) => return Err(bad(format!("tools_on {other:?} is not true or false"))),
        };
        fixes.push(TrackFix {
            time_s: parse_time(field(time)).map_err(bad)?,
            lat: number("lat", lat)?,
            lon: number("lon", lon)?,
            speed_kmh: maybe(0, "speed_kmh")?,
            heading_deg: maybe(1, "heading_deg")?,
            hdop: maybe(2, "hdop")?,
            satellites: maybe(3, "satellites")?.map(|s| s.clamp(0.0, 255.0) as u8),
            tools_on,
        });
    }
    Ok(fixes)
}

fn parse_geojson(bytes: &[u8]) -> Result<Vec<TrackFix>, TrackError> {
    let unreadable = |message: String| TrackError::Unreadable {
        format: "GeoJSON",
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| unreadable(e.to_string()))?;
    let geojson: geojson::GeoJson = text
        .parse()
        .map_err(|e: geojson::Error| unreadable(e.to_string()))?;
    let features = match geojson {
        geojson::GeoJson::FeatureCollection(c) => c.features,
        geojson::GeoJson::Feature(f) => vec![f],
        geojson::GeoJson::Geometry(_) => {
            return Err(unreadable(
                "a bare geometry has no times: send Features with a time property".into(),
            ))
        }
    };
    let mut fixes = Vec::new();
    for feature in &features {
        let property = |name: &str| feature.properties.as_ref().and_then(|p| p.get(name));
        let number = |name: &str| property(name).and_then(Value::as_f64);
        let index = fixes.len();
        let bad = |index: usize, message: String| TrackError::BadFix { index, message };
        let time_of = |value: Option<&Value>, index: usize| -> Result<f64, TrackError> {
            match value {
                Some(Value::String(s)) => parse_time(s).map_err(|e| bad(index, e)),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .ok_or_else(|| "time is not a number".to_owned())
                    .and_then(check_time)
                    .map_err(|e| bad(index, e)),
                _ => Err(bad(index, "no time".into())),
            }
        };
        let fix = |time_s: f64, position: &[f64]| TrackFix {
            time_s,
            lon: position[0],
            lat: position[1],
            speed_kmh: number("speed_kmh"),
            heading_deg: number("heading_deg"),
            hdop: number("hdop"),
            satellites: number("satellites").map(|s| s.clamp(0.0, 255.0) as u8),
            tools_on: property("tools_on").and_then(Value::as_bool),
        };
        match feature.geometry.as_ref().map(|g| &g.value) {
            Some(geojson::GeometryValue::Point { coordinates }) if coordinates.len() >= 2 => {
                fixes.push(fix(
                    time_of(property("time"), index)?,
                    coordinates.as_slice(),
                ));
            }
            Some(geojson::GeometryValue::LineString {
                coordinates: positions,
            }) => {
                let times = property("times")
                    .or_else(|| property("coordTimes"))
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad(index, "a LineString needs a times array".into()))?;
                if times.len() != positions.len() {
                    return Err(bad(
                        index,
                        format!("{} times for {} positions", times.len(), positions.len()),
                    ));
                }
                for (k, (t, position)) in times.iter().zip(positions).enumerate() {
                    if position.len() < 2 {
                        return Err(bad(index + k, "a position needs lon and lat".into()));
                    }
                    let mut f = fix(time_of(Some(t), index + k)?, position.as_slice());
                    // Per-point speeds and the like are the Point form's.
                    (f.speed_kmh, f.heading_deg, f.hdop, f.satellites) = (None, None, None, None);
                    fixes.push(f);
                }
            }
            _ => {
                return Err(bad(
                    index,
                    "a feature must be a Point or a LineString".into(),
                ))
            }
        }
    }
    Ok(fixes)
}

/// A track's fixes in time order, exact repeats dropped (returned as their count); fixes
/// with the same time but another position are an error, never silently one of them.
pub fn in_time_order(mut fixes: Vec<TrackFix>) -> Result<(Vec<TrackFix>, usize), TrackError> {
    let mut order: Vec<usize> = (0..fixes.len()).collect();
    order.sort_by(|&a, &b| fixes[a].time_s.total_cmp(&fixes[b].time_s).then(a.cmp(&b)));
    let mut kept: Vec<(usize, TrackFix)> = Vec::with_capacity(fixes.len());
    for i in order {
        let f = fixes[i];
        if let Some(&(first, last)) = kept.last() {
            if last.time_s == f.time_s {
                let apart_m = apart_m((last.lat, last.lon), (f.lat, f.lon));
                if apart_m > SAME_PLACE_M {
                    return Err(TrackError::Collision {
                        first: first.min(i),
                        second: first.max(i),
                        time: timestamp(f.time_s).to_string(),
                        apart_m,
                    });
                }
                continue;
            }
        }
        kept.push((i, f));
    }
    let repeats = fixes.len() - kept.len();
    fixes = kept.into_iter().map(|(_, f)| f).collect();
    Ok((fixes, repeats))
}

/// A track matched and cut into passes.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackMatch {
    pub fixes: Vec<TrackFix>,
    pub work: WorkType,
    /// Where each fix was placed, by the match of its own hour (with context): the match
    /// the passes come from.
    pub points: Vec<Option<MatchedPoint>>,
    /// The passes as the coverage stage computes them (hour by hour with context).
    pub passes: Vec<Pass>,
}

/// Matches a track's fixes (in time order, see [`in_time_order`]) as a vehicle doing `work`.
pub fn match_track(
    network: &RoadNetwork,
    matcher: &mut Matcher,
    rules: &CoverageRules,
    work: WorkType,
    fixes: Vec<TrackFix>,
) -> TrackMatch {
    let observations: Vec<Observation> = fixes
        .iter()
        .map(|f| Observation {
            time_s: f.time_s,
            lon: f.lon,
            lat: f.lat,
            heading_deg: f.heading_deg,
            speed_kmh: f.speed_kmh,
            hdop: f.hdop,
        })
        .collect();
    let states: Vec<FixState> = fixes
        .iter()
        .map(|f| FixState {
            time_s: f.time_s,
            speed_kmh: f.speed_kmh,
            satellites: f.satellites,
            tools_on: f.tools_on.unwrap_or(true),
        })
        .collect();
    let (points, passes) = chunked_match(network, matcher, rules, work, &observations, &states);
    TrackMatch {
        fixes,
        work,
        points,
        passes,
    }
}

#[derive(Serialize)]
struct PassJson {
    segment: u32,
    osm_way_id: Option<i64>,
    name: Option<String>,
    forward: bool,
    from_m: f64,
    to_m: f64,
    length_m: f64,
    start: Timestamp,
    end: Timestamp,
    duration_s: f64,
    /// Length ÷ duration.
    implied_speed_kmh: Option<f64>,
    max_speed_kmh: f64,
    work: WorkType,
    valid: bool,
    invalid_reason: Option<InvalidReason>,
}

impl TrackMatch {
    /// The result as JSON: a summary, each fix and where it was placed, the passes with
    /// their validity, and the matched drive as a GeoJSON FeatureCollection (one LineString
    /// per pass, one Point per placed fix).
    pub fn to_json(&self, network: &RoadNetwork, index: &SegmentIndex, repeats: usize) -> Value {
        let place = |m: &MatchedPoint| {
            let segment = &network.segments()[m.segment as usize];
            let along_m = if m.forward {
                m.offset_m
            } else {
                segment.length_m - m.offset_m
            };
            index.plane().to_lon_lat(index.point_at(m.segment, along_m))
        };
        let points: Vec<Value> = self
            .fixes
            .iter()
            .zip(&self.points)
            .enumerate()
            .map(|(i, (f, m))| {
                json!({
                    "index": i,
                    "time": timestamp(f.time_s),
                    "lon": f.lon,
                    "lat": f.lat,
                    "matched": m.as_ref().map(|m| {
                        let (lon, lat) = place(m);
                        json!({
                            "segment": m.segment,
                            "forward": m.forward,
                            "offset_m": m.offset_m,
                            "distance_m": m.distance_m,
                            "expected_error_m": m.error_m,
                            "lon": lon,
                            "lat": lat,
                        })
                    }),
                })
            })
            .collect();
        let passes: Vec<PassJson> = self
            .passes
            .iter()
            .map(|p| {
                let segment = &network.segments()[p.segment as usize];
                let duration_s = p.end_s - p.start_s;
                PassJson {
                    segment: p.segment,
                    osm_way_id: segment.osm_way_id,
                    name: segment.name.clone(),
                    forward: p.forward,
                    from_m: p.from_m,
                    to_m: p.to_m,
                    length_m: p.length_m(),
                    start: timestamp(p.start_s),
                    end: timestamp(p.end_s),
                    duration_s,
                    implied_speed_kmh: (duration_s > 0.0).then(|| p.length_m() / duration_s * 3.6),
                    max_speed_kmh: p.max_speed_kmh,
                    work: p.work,
                    valid: p.is_valid(),
                    invalid_reason: p.invalid,
                }
            })
            .collect();
        let mut features: Vec<Value> = self
            .passes
            .iter()
            .zip(&passes)
            .map(|(p, properties)| {
                let line = index.stretch(p.segment, p.forward, p.from_m, p.to_m);
                json!({
                    "type": "Feature",
                    "geometry": {"type": "LineString", "coordinates": line.iter().map(|&(x, y)| [x, y]).collect::<Vec<_>>()},
                    "properties": properties,
                })
            })
            .collect();
        for (i, m) in self.points.iter().enumerate() {
            if let Some(m) = m {
                let (lon, lat) = place(m);
                features.push(json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                    "properties": {"fix": i, "time": timestamp(self.fixes[i].time_s), "segment": m.segment, "distance_m": m.distance_m},
                }));
            }
        }
        let length_by = |valid: bool| -> f64 {
            self.passes
                .iter()
                .filter(|p| p.is_valid() == valid)
                .map(Pass::length_m)
                .sum()
        };
        let mut invalid_m: Vec<(InvalidReason, f64)> = Vec::new();
        for p in &self.passes {
            if let Some(reason) = p.invalid {
                match invalid_m.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, m)) => *m += p.length_m(),
                    None => invalid_m.push((reason, p.length_m())),
                }
            }
        }
        let invalid_m: serde_json::Map<String, Value> = invalid_m
            .into_iter()
            .map(|(r, m)| (r.as_str().to_owned(), json!(m)))
            .collect();
        json!({
            "work": self.work,
            "tools_assumed_on": self.fixes.iter().all(|f| f.tools_on.is_none()),
            "summary": {
                "fixes": self.fixes.len(),
                "repeats_dropped": repeats,
                "fixes_matched": self.points.iter().filter(|p| p.is_some()).count(),
                "passes": self.passes.len(),
                "valid_passes": self.passes.iter().filter(|p| p.is_valid()).count(),
                "valid_length_m": length_by(true),
                "invalid_length_m": length_by(false),
                "invalid_length_m_by_reason": invalid_m,
            },
            "fixes": points,
            "passes": passes,
            "path": {"type": "FeatureCollection", "features": features},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPX: &str = r#"<?xml version="1.0"?>
<gpx version="1.0" creator="test" xmlns="http://www.topografix.com/GPX/1/0">
  <trk><trkseg>
    <trkpt lat="32.0" lon="120.86"><time>2026-12-01T08:00:00Z</time><speed>1.5</speed><hdop>1.2</hdop><sat>9</sat></trkpt>
    <trkpt lat="32.00002" lon="120.86"><time>2026-12-01T08:00:01Z</time></trkpt>
  </trkseg></trk>
</gpx>"#;

    #[test]
    fn every_format_reads_time_position_and_the_optional_fields() {
        let gpx = parse_track(TrackFormat::Gpx, GPX.as_bytes()).unwrap();
        assert_eq!(gpx.len(), 2);
        assert_eq!(
            gpx[0].time_s,
            seconds("2026-12-01T08:00:00Z".parse().unwrap())
        );
        assert!((gpx[0].speed_kmh.unwrap() - 5.4).abs() < 1e-9);
        assert_eq!((gpx[0].hdop, gpx[0].satellites), (Some(1.2), Some(9)));
        assert_eq!(gpx[1].speed_kmh, None);

        let csv = "time,lat,lon,speed_kmh,tools_on\n2026-12-01T08:00:00Z,32.0,120.86,5.4,true\n1796112001,32.00002,120.86,,0\n";
        let csv = parse_track(TrackFormat::Csv, csv.as_bytes()).unwrap();
        assert_eq!((csv[0].speed_kmh, csv[0].tools_on), (Some(5.4), Some(true)));
        assert_eq!(
            (csv[1].time_s, csv[1].speed_kmh, csv[1].tools_on),
            (1796112001.0, None, Some(false))
        );

        let points = r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","geometry":{"type":"Point","coordinates":[120.86,32.0]},"properties":{"time":"2026-12-01T08:00:00Z","hdop":2.0}},
            {"type":"Feature","geometry":{"type":"LineString","coordinates":[[120.86,32.0001],[120.86,32.0002]]},"properties":{"times":["2026-12-01T08:00:05Z",1796112006]}}]}"#;
        let geojson = parse_track(TrackFormat::GeoJson, points.as_bytes()).unwrap();
        assert_eq!(geojson.len(), 3);
        assert_eq!(geojson[0].hdop, Some(2.0));
        assert_eq!(geojson[2].time_s, 1796112006.0);
    }

    #[test]
    fn bad_tracks_say_which_fix_and_why() {
        let no_time = "time,lat,lon\n,32.0,120.86\n";
        assert!(matches!(
            parse_track(TrackFormat::Csv, no_time.as_bytes()),
            Err(TrackError::BadFix { index: 0, .. })
        ));
        let no_column = "t,lat,lon\n1,32.0,120.86\n";
        assert!(matches!(
            parse_track(TrackFormat::Csv, no_column.as_bytes()),
            Err(TrackError::Unreadable { format: "CSV", .. })
        ));
        let off_earth = "time,lat,lon\n1000000000,95.0,120.86\n";
        assert_eq!(
            parse_track(TrackFormat::Csv, off_earth.as_bytes()),
            Err(TrackError::BadFix {
                index: 0,
                message: "lat 95 is not a latitude".into()
            })
        );
        assert_eq!(
            parse_track(TrackFormat::Csv, b"time,lat,lon\n"),
            Err(TrackError::Empty)
        );
        assert!(parse_track(TrackFormat::Gpx, b"<gpx").is_err());
        assert_eq!(
            TrackFormat::parse("text/csv; charset=utf-8"),
            Some(TrackFormat::Csv)
        );
        assert_eq!(
            TrackFormat::from_path("a/b.GPX".as_ref()),
            Some(TrackFormat::Gpx)
        );
    }

    /// A review found `-inf` read as a time: the hour-by-hour walk from it never ended, and
    /// one request held a thread for good.
    #[test]
    fn a_time_off_the_calendar_is_refused_and_far_apart_fixes_are_matched_quickly() {
        for time in ["-inf", "inf", "NaN", "1e300", "-5"] {
            let csv = format!("time,lat,lon\n{time},43.73,7.42\n1000000000,43.73,7.42\n");
            assert!(
                matches!(
                    parse_track(TrackFormat::Csv, csv.as_bytes()),
                    Err(TrackError::BadFix { index: 0, .. })
                ),
                "{time}"
            );
        }
        let geojson = r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[7.42,43.73]},"properties":{"time":1e300}}"#;
        assert!(parse_track(TrackFormat::GeoJson, geojson.as_bytes()).is_err());
        // Fixes eighty years apart: two windows, not 700,000 hours.
        let net = RoadNetwork::demo();
        let csv =
            "time,lat,lon\n1990-01-02T00:00:00Z,32.0,120.86\n2070-01-01T00:00:00Z,32.0,120.86\n";
        let (fixes, _) =
            in_time_order(parse_track(TrackFormat::Csv, csv.as_bytes()).unwrap()).unwrap();
        let mut matcher = Matcher::new(&net, crate::MatchConfig::default());
        let started = std::time::Instant::now();
        match_track(
            &net,
            &mut matcher,
            &CoverageRules::default(),
            WorkType::Sweep,
            fixes,
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn fixes_of_one_time_are_one_fix_twice_or_an_error_never_silently_one() {
        let fix = |time_s: f64, lat: f64| TrackFix {
            time_s,
            lon: 120.86,
            lat,
            speed_kmh: None,
            heading_deg: None,
            hdop: None,
            satellites: None,
            tools_on: None,
        };
        let (sorted, repeats) =
            in_time_order(vec![fix(2.0, 32.0), fix(1.0, 32.0), fix(2.0, 32.0)]).unwrap();
        assert_eq!(repeats, 1);
        assert_eq!(
            sorted.iter().map(|f| f.time_s).collect::<Vec<_>>(),
            [1.0, 2.0]
        );
        let collision = in_time_order(vec![fix(1.0, 32.0), fix(2.0, 32.0), fix(2.0, 32.001)]);
        assert!(matches!(
            collision,
            Err(TrackError::Collision {
                first: 1,
                second: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_track_along_a_street_matches_into_passes_with_a_geojson_path() {
        let net = RoadNetwork::demo();
        let s = &net.segments()[0];
        let ((lon0, lat0), (lon1, lat1)) = (s.points[0], s.points[s.points.len() - 1]);
        // Along segment 0 at 6 km/h, a fix a second.
        let seconds_needed = (s.length_m / (6.0 / 3.6)).floor() as usize;
        let fixes: Vec<TrackFix> = (0..=seconds_needed)
            .map(|i| {
                let t = i as f64 / seconds_needed as f64;
                TrackFix {
                    time_s: 1_796_112_000.0 + i as f64,
                    lon: lon0 + t * (lon1 - lon0),
                    lat: lat0 + t * (lat1 - lat0),
                    speed_kmh: Some(6.0),
                    heading_deg: None,
                    hdop: Some(1.0),
                    satellites: Some(10),
                    tools_on: None,
                }
            })
            .collect();
        let mut matcher = Matcher::new(&net, crate::MatchConfig::default());
        let result = match_track(
            &net,
            &mut matcher,
            &CoverageRules::default(),
            WorkType::Sweep,
            fixes,
        );
        let json = result.to_json(&net, matcher.index(), 0);
        assert_eq!(json["tools_assumed_on"], true);
        assert!(json["summary"]["valid_length_m"].as_f64().unwrap() > 0.5 * s.length_m);
        let features = json["path"]["features"].as_array().unwrap();
        assert!(features
            .iter()
            .any(|f| f["geometry"]["type"] == "LineString" && f["properties"]["valid"] == true));
        assert_eq!(json["fixes"].as_array().unwrap().len(), result.fixes.len());
    }
}
