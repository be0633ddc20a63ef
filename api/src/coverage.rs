//! Coverage endpoints: a day's shares for the city or a road class, the segments' status as
//! GeoJSON for a map, and the passes behind them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use cleanfleet_coverage::{
    segment_status, CoverageRules, CoverageSummary, InvalidReason, MatchConfig, MissReason, Pass,
    SectionPlan, SegmentIndex, SegmentStatus, WorkType,
};
use cleanfleet_inspection::InspectionRules;
use cleanfleet_roads::{RoadClass, RoadNetwork, Segment, ZoneConfig, Zones};
use cleanfleet_store::{CoverageBacklog, PassRecord};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::ApiState;

/// What the coverage endpoints need besides the store.
pub struct CoverageContext {
    pub network: Arc<RoadNetwork>,
    /// The network's R-tree, to place inspectors' samples.
    pub index: Arc<SegmentIndex>,
    pub inspection: InspectionRules,
    pub assessment: cleanfleet_inspection::assessment::AssessmentRules,
    pub bins: cleanfleet_inspection::overflow::BinRules,
    pub zones: Arc<Zones>,
    pub rules: CoverageRules,
    /// The coverage stage's matcher settings, to match tracks on request the same way.
    pub matcher: MatchConfig,
    pub plans: Vec<SectionPlan>,
    pub time_zone: TimeZone,
    /// Its IANA name, as configured.
    pub time_zone_name: String,
}

const MAX_PASSES: u32 = 100_000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DayParams {
    /// Local date in the city's time zone, `YYYY-MM-DD`. Default: today.
    #[param(value_type = Option<String>)]
    pub(crate) date: Option<Date>,
    /// First day of a range (`/api/v1/coverage/daily` only), `YYYY-MM-DD`.
    #[param(value_type = Option<String>)]
    from: Option<Date>,
    /// Last day of a range, inclusive (`/api/v1/coverage/daily` only).
    #[param(value_type = Option<String>)]
    to: Option<Date>,
    /// Only segments of this road class: `I`, `II`, `III` or `IV`.
    #[param(value_type = Option<String>)]
    class: Option<RoadClass>,
    /// Only this section's segments.
    section: Option<String>,
    /// Only the segments of this contractor's sections.
    contractor: Option<String>,
    /// Only this grid cell's segments.
    grid: Option<String>,
    /// Only segments whose midpoint lies in this polygon: `lon lat,lon lat,...` (WGS 84, at
    /// least 3 points).
    polygon: Option<String>,
}

impl DayParams {
    /// Today in a contractor's sections.
    pub(crate) fn contractor_today(contractor: &str) -> DayParams {
        DayParams {
            contractor: Some(contractor.to_owned()),
            ..DayParams::default()
        }
    }
}

/// Which segments a request is about: every filter given must hold.
pub(crate) struct Scope {
    class: Option<RoadClass>,
    sections: Option<Vec<bool>>,
    grid: Option<Vec<bool>>,
    polygon: Option<Vec<bool>>,
    name: String,
}

impl Scope {
    pub(crate) fn new(ctx: &CoverageContext, p: &DayParams) -> Result<Scope, ApiError> {
        let segments = ctx.network.segments().len();
        let member = |ids: &mut dyn Iterator<Item = u32>| {
            let mut m = vec![false; segments];
            for s in ids {
                m[s as usize] = true;
            }
            m
        };
        let mut names = Vec::new();
        let mut sections: Option<Vec<bool>> = None;
        if let Some(id) = &p.section {
            let zone = ctx.zones.section(id).ok_or_else(|| ApiError::NotFound {
                resource: "section",
                id: id.clone(),
            })?;
            sections = Some(member(&mut zone.segments.iter().copied()));
            names.push(format!("section:{id}"));
        }
        if let Some(contractor) = &p.contractor {
            let zones: Vec<_> = ctx
                .zones
                .sections()
                .iter()
                .filter(|z| z.contractor.as_deref() == Some(contractor.as_str()))
                .collect();
            if zones.is_empty() {
                return Err(ApiError::NotFound {
                    resource: "contractor",
                    id: contractor.clone(),
                });
            }
            let theirs = member(&mut zones.iter().flat_map(|z| z.segments.iter().copied()));
            sections = Some(match sections {
                Some(s) => s.iter().zip(&theirs).map(|(a, b)| *a && *b).collect(),
                None => theirs,
            });
            names.push(format!("contractor:{contractor}"));
        }
        let grid = match &p.grid {
            Some(id) => {
                let zone = ctx.zones.grid(id).ok_or_else(|| ApiError::NotFound {
                    resource: "grid cell",
                    id: id.clone(),
                })?;
                names.push(format!("grid:{id}"));
                Some(member(&mut zone.segments.iter().copied()))
            }
            None => None,
        };
        let polygon = match &p.polygon {
            Some(text) => {
                let bad = || {
                    ApiError::invalid(
                        "polygon",
                        "must be at least 3 points `lon lat` separated by commas",
                    )
                };
                let ring: Vec<(f64, f64)> = text
                    .split(',')
                    .map(|point| {
                        let mut numbers = point.split_whitespace().map(str::parse::<f64>);
                        match (numbers.next(), numbers.next(), numbers.next()) {
                            (Some(Ok(lon)), Some(Ok(lat)), None)
                                if (-180.0..=180.0).contains(&lon)
                                    && (-90.0..=90.0).contains(&lat) =>
                            {
                                Ok((lon, lat))
                            }
                            _ => Err(bad()),
                        }
                    })
                    .collect::<Result<_, _>>()?;
                if ring.len() < 3 {
                    return Err(bad());
                }
                let zone = ZoneConfig {
                    id: "polygon".into(),
                    polygons: vec![ring],
                    ..ZoneConfig::default()
                };
                let zones = Zones::new(&ctx.network, &[zone], &[])
                    .map_err(|e| ApiError::invalid("polygon", e.to_string()))?;
                names.push("polygon".into());
                Some(member(&mut zones.sections()[0].segments.iter().copied()))
            }
            None => None,
        };
        if let Some(c) = p.class {
            names.push(format!("class:{c}"));
        }
        Ok(Scope {
            class: p.class,
            sections,
            grid,
            polygon,
            name: if names.is_empty() {
                "city".into()
            } else {
                names.join(" ")
            },
        })
    }

    /// No filter: the whole city.
    pub(crate) fn is_city(&self) -> bool {
        self.class.is_none()
            && self.sections.is_none()
            && self.grid.is_none()
            && self.polygon.is_none()
    }

    pub(crate) fn contains(&self, s: &Segment) -> bool {
        let i = s.id as usize;
        self.class.is_none_or(|c| s.class == c)
            && self.sections.as_ref().is_none_or(|m| m[i])
            && self.grid.as_ref().is_none_or(|m| m[i])
            && self.polygon.as_ref().is_none_or(|m| m[i])
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Share {
    length_m: f64,
    area_m2: f64,
    share_by_length: f64,
    share_by_area: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Missed {
    reason: String,
    segments: usize,
    length_m: f64,
}

/// A day's coverage of a scope.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoverageReport {
    date: String,
    time_zone: String,
    /// `city`, or `class:I` etc.
    scope: String,
    segments: usize,
    total_length_m: f64,
    total_area_m2: f64,
    covered: Share,
    mechanised: Share,
    deep_cleaned: Share,
    /// Segments not covered, by reason.
    missed: Vec<Missed>,
    /// Traversals with the tools on.
    passes: usize,
    valid_passes: usize,
    /// How far matching has got: the numbers are current with the stored fixes before
    /// `stale_from`.
    matching: CoverageBacklog,
}

pub(crate) fn context(state: &ApiState) -> Result<&CoverageContext, ApiError> {
    state.coverage.as_deref().ok_or_else(no_coverage)
}

/// [`context`], to take along to a blocking thread.
pub(crate) fn shared_context(state: &ApiState) -> Result<Arc<CoverageContext>, ApiError> {
    state.coverage.clone().ok_or_else(no_coverage)
}

fn no_coverage() -> ApiError {
    ApiError::Unavailable("coverage is not configured in this process".into())
}

/// How far the evidence for answers (a cleaning after litter, an emptying after an overflow)
/// to events raised before `to` is looked at: until `limit_s` and an hour more have passed
/// after `to`, or until now if sooner.
pub(crate) fn answers_known_until(state: &ApiState, to: Timestamp, limit_s: f64) -> Timestamp {
    let ahead = jiff::SignedDuration::from_secs_f64(limit_s) + jiff::SignedDuration::from_hours(1);
    (to + ahead).min(state.clock.now())
}

/// The day's bounds in the city's time zone.
pub(crate) fn day(
    state: &ApiState,
    ctx: &CoverageContext,
    date: Option<Date>,
) -> Result<(Date, Timestamp, Timestamp), ApiError> {
    let date = date.unwrap_or_else(|| state.clock.now().to_zoned(ctx.time_zone.clone()).date());
    let bad = |e: jiff::Error| ApiError::invalid("date", e.to_string());
    let start = date
        .to_zoned(ctx.time_zone.clone())
        .map_err(bad)?
        .timestamp();
    let next = date.tomorrow().map_err(bad)?;
    let end = next
        .to_zoned(ctx.time_zone.clone())
        .map_err(bad)?
        .timestamp();
    Ok((date, start, end))
}

/// Stored passes as the engine's, dropping any that do not fit this network (computed on
/// another one before the store was told).
pub(crate) fn engine_passes(network: &RoadNetwork, records: &[PassRecord]) -> Vec<Pass> {
    let seconds = |t: Timestamp| t.as_millisecond() as f64 / 1000.0;
    records
        .iter()
        .filter(|r| (r.segment as usize) < network.segments().len())
        .filter_map(|r| {
            Some(Pass {
                segment: r.segment,
                forward: r.forward,
                from_m: r.from_m,
                to_m: r.to_m,
                start_s: seconds(r.start),
                end_s: seconds(r.end),
                work: WorkType::parse(&r.work)?,
                invalid: match &r.invalid {
                    Some(reason) => Some(InvalidReason::parse(reason)?),
                    None => None,
                },
                max_speed_kmh: r.max_speed_kmh,
            })
        })
        .collect()
}

pub(crate) async fn day_status(
    state: &ApiState,
    params: &DayParams,
) -> Result<(Date, Vec<PassRecord>, Vec<SegmentStatus>), ApiError> {
    let ctx = context(state)?;
    let (date, from, to) = day(state, ctx, params.date)?;
    let records = state.store.passes(from, to, None).await?;
    let statuses = segment_status(
        &ctx.network,
        &engine_passes(&ctx.network, &records),
        &ctx.rules,
    );
    Ok((date, records, statuses))
}

/// A day's covered, mechanised and deep-cleaned shares, by length and by area, with the
/// segments missed and why.
#[utoipa::path(get, path = "/api/v1/coverage", params(DayParams),
    responses((status = 200, body = CoverageReport), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn coverage_report(
    State(state): State<ApiState>,
    OneDay {
        ctx, params, scope, ..
    }: OneDay,
) -> Result<Json<CoverageReport>, ApiError> {
    let ctx = ctx.as_ref();
    let (date, records, statuses) = day_status(&state, &params).await?;
    let in_scope = |s: &Segment| scope.contains(s);
    let s = CoverageSummary::of(&ctx.network, &statuses, in_scope);
    let share = |length_m: f64, area_m2: f64| Share {
        length_m,
        area_m2,
        share_by_length: ratio(length_m, s.total_length_m),
        share_by_area: ratio(area_m2, s.total_area_m2),
    };
    let mut missed: Vec<Missed> = Vec::new();
    for status in &statuses {
        let segment = &ctx.network.segments()[status.segment as usize];
        let Some(reason) = status.missed.filter(|_| scope.contains(segment)) else {
            continue;
        };
        let reason = miss_name(reason);
        match missed.iter_mut().find(|m| m.reason == reason) {
            Some(m) => {
                m.segments += 1;
                m.length_m += segment.length_m;
            }
            None => missed.push(Missed {
                reason,
                segments: 1,
                length_m: segment.length_m,
            }),
        }
    }
    missed.sort_by(|a, b| a.reason.cmp(&b.reason));
    let scoped: Vec<&PassRecord> = records
        .iter()
        .filter(|r| r.invalid.as_deref() != Some(InvalidReason::ToolOff.as_str()))
        .filter(|r| {
            ctx.network
                .segments()
                .get(r.segment as usize)
                .is_some_and(in_scope)
        })
        .collect();
    Ok(Json(CoverageReport {
        date: date.to_string(),
        time_zone: ctx.time_zone_name.clone(),
        scope: scope.name.clone(),
        segments: s.segments,
        total_length_m: s.total_length_m,
        total_area_m2: s.total_area_m2,
        covered: share(s.covered_length_m, s.covered_area_m2),
        mechanised: share(s.mechanised_length_m, s.mechanised_area_m2),
        deep_cleaned: share(s.deep_cleaned_length_m, s.deep_cleaned_area_m2),
        missed,
        passes: scoped.len(),
        valid_passes: scoped.iter().filter(|r| r.invalid.is_none()).count(),
        matching: state.store.coverage_backlog().await?,
    }))
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

fn miss_name(reason: MissReason) -> String {
    match serde_json::to_value(reason) {
        Ok(Value::String(s)) => s,
        _ => format!("{reason:?}"),
    }
}

/// Every segment in scope with its status for the day, as an RFC 7946 FeatureCollection of
/// LineStrings, ready for a map.
#[utoipa::path(get, path = "/api/v1/coverage/segments", params(DayParams),
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json"),
              (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn coverage_segments(
    State(state): State<ApiState>,
    OneDay {
        ctx, params, scope, ..
    }: OneDay,
) -> Result<Response, ApiError> {
    let ctx = ctx.as_ref();
    let (date, _, statuses) = day_status(&state, &params).await?;
    let features: Vec<Value> = statuses
        .iter()
        .filter_map(|status| {
            let s = &ctx.network.segments()[status.segment as usize];
            scope.contains(s).then(|| {
                let mut feature = segment_feature(ctx, s);
                let properties = &mut feature["properties"];
                properties["covered"] = json!(status.covered);
                properties["covered_ratio"] = json!(status.covered_ratio);
                properties["mechanised"] = json!(status.mechanised);
                properties["deep_cleaned"] = json!(status.deep_cleaned);
                properties["missed"] = json!(status.missed.map(miss_name));
                feature
            })
        })
        .collect();
    let body = json!({
        "type": "FeatureCollection",
        "date": date.to_string(),
        "time_zone": ctx.time_zone_name,
        "matching": state.store.coverage_backlog().await?,
        "features": features,
    });
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(body)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PassParams {
    /// Local date in the city's time zone, `YYYY-MM-DD`. Default: today.
    #[param(value_type = Option<String>)]
    date: Option<Date>,
    /// Only this vehicle's passes.
    vehicle: Option<String>,
    /// Most passes returned, 1..=100000, default 10000.
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PassPage {
    date: String,
    passes: Vec<PassRecord>,
    /// More passes matched than `limit`.
    truncated: bool,
    /// How far matching has got.
    matching: CoverageBacklog,
}

/// The day's work passes (starting that day), by start time.
#[utoipa::path(get, path = "/api/v1/passes", params(PassParams),
    responses((status = 200, body = PassPage), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn list_passes(
    State(state): State<ApiState>,
    Query(params): Query<PassParams>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<PassPage>, ApiError> {
    let ctx = context(&state)?;
    if let Some(v) = &params.vehicle {
        if !cleanfleet_model::is_valid_device_id(v) {
            return Err(ApiError::invalid("vehicle", "not a device id"));
        }
    }
    let limit = match params.limit.unwrap_or(10_000) {
        n @ 1..=MAX_PASSES => n as usize,
        _ => {
            return Err(ApiError::invalid(
                "limit",
                format!("must be 1..={MAX_PASSES}"),
            ))
        }
    };
    let (date, from, to) = day(&state, ctx, params.date)?;
    let mut passes = state.store.passes(from, to, params.vehicle.clone()).await?;
    let viewer = principal.as_deref().and_then(Principal::contractor);
    passes.retain(|p| may_see_work(ctx, viewer, &p.device_id, p.segment));
    let truncated = passes.len() > limit;
    passes.truncate(limit);
    Ok(Json(PassPage {
        date: date.to_string(),
        passes,
        truncated,
        matching: state.store.coverage_backlog().await?,
    }))
}

/// A section or grid cell with the extent of its streets.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ZoneView {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contractor: Option<String>,
    segments: usize,
    length_m: f64,
    area_m2: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ZoneList {
    sections: Vec<ZoneView>,
    grids: Vec<ZoneView>,
}

fn zone_view(network: &RoadNetwork, zone: &cleanfleet_roads::Zone) -> ZoneView {
    let segments = || {
        zone.segments
            .iter()
            .map(|&s| &network.segments()[s as usize])
    };
    ZoneView {
        id: zone.id.clone(),
        name: zone.name.clone(),
        contractor: zone.contractor.clone(),
        segments: zone.segments.len(),
        length_m: segments().map(|s| s.length_m).sum(),
        area_m2: segments().map(|s| s.length_m * s.width_m).sum(),
    }
}

/// The city's sections (with their contractors) and grid cells.
#[utoipa::path(get, path = "/api/v1/zones",
    responses((status = 200, body = ZoneList), (status = 503, body = ErrorBody)))]
pub(crate) async fn list_zones(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<ZoneList>, ApiError> {
    let ctx = context(&state)?;
    let view = |zones: &[cleanfleet_roads::Zone]| {
        zones.iter().map(|z| zone_view(&ctx.network, z)).collect()
    };
    // A contractor sees its own sections and no grid cells (they are the city's).
    if let Some(mine) = principal.as_deref().and_then(Principal::contractor) {
        let own: Vec<cleanfleet_roads::Zone> = ctx
            .zones
            .sections()
            .iter()
            .filter(|z| z.contractor.as_deref() == Some(mine))
            .cloned()
            .collect();
        return Ok(Json(ZoneList {
            sections: view(&own),
            grids: Vec::new(),
        }));
    }
    Ok(Json(ZoneList {
        sections: view(ctx.zones.sections()),
        grids: view(ctx.zones.grids()),
    }))
}

/// One road segment: its geometry and attributes, and the section, contractor and grid cell
/// it belongs to, as a GeoJSON Feature.
#[utoipa::path(get, path = "/api/v1/segments/{segment}",
    params(("segment" = u32, Path, description = "Segment index")),
    responses((status = 200, description = "GeoJSON Feature", content_type = "application/geo+json"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn get_segment(
    State(state): State<ApiState>,
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    principal: Option<Extension<Principal>>,
) -> Result<Response, ApiError> {
    let ctx = context(&state)?;
    let axum::extract::Path(raw) = path.map_err(|e| ApiError::invalid("segment", e.body_text()))?;
    let id: u32 = raw
        .parse()
        .map_err(|_| ApiError::invalid("segment", "must be a segment index (a whole number)"))?;
    let s = ctx
        .network
        .segments()
        .get(id as usize)
        .filter(|s| may_see(ctx, principal.as_deref(), s.id))
        .ok_or(ApiError::NotFound {
            resource: "segment",
            id: raw,
        })?;
    let body = segment_feature(ctx, s);
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(body)).into_response())
}

/// A segment as a GeoJSON Feature: its line, attributes, section, contractor and grid cell.
fn segment_feature(ctx: &CoverageContext, s: &Segment) -> Value {
    let section = ctx.zones.section_of(s.id);
    json!({
        "type": "Feature",
        "geometry": {
            "type": "LineString",
            "coordinates": s.points.iter().map(|&(lon, lat)| json!([lon, lat])).collect::<Vec<_>>(),
        },
        "properties": {
            "segment": s.id,
            "osm_way_id": s.osm_way_id,
            "name": s.name,
            "class": s.class.to_string(),
            "oneway": s.oneway,
            "length_m": s.length_m,
            "width_m": s.width_m,
            "section": section.map(|z| z.id.clone()),
            "contractor": section.and_then(|z| z.contractor.clone()),
            "grid": ctx.zones.grid_of(s.id).map(|z| z.id.clone()),
        },
    })
}

/// One vehicle's (or crew member's) work on a day.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct VehicleDay {
    device_id: String,
    /// Every traversal matched to the road, tools on or off.
    passes: usize,
    /// Traversals with the tools on.
    working_passes: usize,
    valid_passes: usize,
    /// Driven on the road network, as matched.
    mileage_m: f64,
    working_mileage_m: f64,
    valid_mileage_m: f64,
    /// Working distance over working time.
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_working_speed_kmh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_working_speed_kmh: Option<f64>,
    /// Runs of overspeed work (超速作业), however many passes each spans.
    overspeed_events: usize,
    /// Sections it worked in.
    sections: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VehicleDayList {
    date: String,
    vehicles: Vec<VehicleDay>,
    /// How far matching has got: the numbers are current with the stored fixes before
    /// `stale_from`.
    matching: CoverageBacklog,
}

/// Passes further apart than this start a new overspeed event.
pub(crate) const OVERSPEED_EVENT_GAP_S: f64 = 60.0;

fn vehicle_days(ctx: &CoverageContext, records: &[PassRecord], scope: &Scope) -> Vec<VehicleDay> {
    let mut by_device: std::collections::BTreeMap<&str, Vec<&PassRecord>> = Default::default();
    for r in records {
        let Some(segment) = ctx.network.segments().get(r.segment as usize) else {
            continue;
        };
        if scope.contains(segment) {
            by_device.entry(r.device_id.as_str()).or_default().push(r);
        }
    }
    by_device
        .into_iter()
        .map(|(device_id, mut passes)| {
            passes.sort_by_key(|p| p.start);
            let mut day = VehicleDay {
                device_id: device_id.to_owned(),
                ..VehicleDay::default()
            };
            let (mut working_s, mut last_overspeed_end): (f64, Option<Timestamp>) = (0.0, None);
            let mut sections = std::collections::BTreeSet::new();
            for p in &passes {
                let length_m = p.to_m - p.from_m;
                day.passes += 1;
                day.mileage_m += length_m;
                let working = p.invalid.as_deref() != Some(InvalidReason::ToolOff.as_str());
                if !working {
                    continue;
                }
                day.working_passes += 1;
                day.working_mileage_m += length_m;
                working_s += p.end.duration_since(p.start).as_secs_f64();
                day.max_working_speed_kmh = Some(
                    day.max_working_speed_kmh
                        .unwrap_or(0.0)
                        .max(p.max_speed_kmh),
                );
                if p.invalid.is_none() {
                    day.valid_passes += 1;
                    day.valid_mileage_m += length_m;
                }
                if p.invalid.as_deref() == Some(InvalidReason::Overspeed.as_str()) {
                    let continues = last_overspeed_end.is_some_and(|end| {
                        p.start.duration_since(end).as_secs_f64() <= OVERSPEED_EVENT_GAP_S
                    });
                    day.overspeed_events += usize::from(!continues);
                    last_overspeed_end = Some(p.end);
                }
                if let Some(section) = ctx.zones.section_of(p.segment) {
                    sections.insert(section.id.clone());
                }
            }
            day.mean_working_speed_kmh =
                (working_s > 0.0).then(|| day.working_mileage_m / working_s * 3.6);
            day.sections = sections.into_iter().collect();
            day
        })
        .collect()
}

/// Per vehicle for a day: passes, valid passes, actual and valid mileage, mean and max
/// working speed, overspeed-work events; in scope like `/api/v1/coverage`.
#[utoipa::path(get, path = "/api/v1/coverage/vehicles", params(DayParams),
    responses((status = 200, body = VehicleDayList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn coverage_vehicles(
    State(state): State<ApiState>,
    OneDay {
        ctx,
        params,
        scope,
        viewer,
    }: OneDay,
) -> Result<Json<VehicleDayList>, ApiError> {
    let ctx = ctx.as_ref();
    let (date, from, to) = day(&state, ctx, params.date)?;
    let mut records = state.store.passes(from, to, None).await?;
    records.retain(|r| may_see_work(ctx, viewer.as_deref(), &r.device_id, r.segment));
    Ok(Json(VehicleDayList {
        date: date.to_string(),
        vehicles: vehicle_days(ctx, &records, &scope),
        matching: state.store.coverage_backlog().await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        start_s: i64,
        length_m: f64,
        invalid: Option<InvalidReason>,
        max_speed_kmh: f64,
    ) -> PassRecord {
        let start = Timestamp::from_second(1_800_000_000 + start_s).unwrap();
        PassRecord {
            device_id: "sw-01".into(),
            segment: 3,
            forward: true,
            from_m: 0.0,
            to_m: length_m,
            start,
            // 6 km/h: 100 m a minute.
            end: start + jiff::SignedDuration::from_secs_f64(length_m / 100.0 * 60.0),
            work: "sweep".into(),
            invalid: invalid.map(|r| r.as_str().to_owned()),
            max_speed_kmh,
        }
    }

    /// The demo town's network, with `sections` (the demo's when `None`).
    fn context(sections: Option<Vec<cleanfleet_roads::ZoneConfig>>) -> CoverageContext {
        let network = Arc::new(RoadNetwork::demo());
        let (demo, grids) = Zones::demo_configs(&network);
        let sections = sections.unwrap_or(demo);
        CoverageContext {
            zones: Arc::new(Zones::new(&network, &sections, &grids).unwrap()),
            index: Arc::new(SegmentIndex::new(&network)),
            inspection: InspectionRules::default(),
            assessment: Default::default(),
            bins: Default::default(),
            network,
            rules: CoverageRules::default(),
            matcher: MatchConfig::default(),
            plans: Vec::new(),
            time_zone: TimeZone::UTC,
            time_zone_name: "UTC".into(),
        }
    }

    #[test]
    fn a_contractor_sees_its_own_devices_work_and_unowned_work_on_its_streets() {
        let (mut demo, _) = Zones::demo_configs(&RoadNetwork::demo());
        // A fifth section of no contractor, claiming one segment and listing sw-09.
        demo.insert(
            0,
            cleanfleet_roads::ZoneConfig {
                id: "X".into(),
                segments: vec![0],
                devices: vec!["sw-09".into()],
                ..Default::default()
            },
        );
        let ctx = context(Some(demo));
        let of = |contractor: &str| {
            ctx.network
                .segments()
                .iter()
                .find(|s| {
                    ctx.zones
                        .section_of(s.id)
                        .and_then(|z| z.contractor.as_deref())
                        == Some(contractor)
                })
                .unwrap()
                .id
        };
        let (acme_street, green_street) = (of("acme-cleaning"), of("green-city"));
        let acme = Some("acme-cleaning");
        // Its own vehicle, anywhere.
        assert!(may_see_work(&ctx, acme, "sw-01", acme_street));
        assert!(may_see_work(&ctx, acme, "sw-01", green_street));
        // Another contractor's, nowhere, not even on acme's streets.
        assert!(!may_see_work(&ctx, acme, "sw-02", acme_street));
        // Unlisted, or listed under a section of no contractor: on acme's streets only.
        for unowned in ["sw-05", "sw-09"] {
            assert!(may_see_work(&ctx, acme, unowned, acme_street), "{unowned}");
            assert!(
                !may_see_work(&ctx, acme, unowned, green_street),
                "{unowned}"
            );
            assert!(
                !may_see_work(&ctx, acme, unowned, 0),
                "{unowned}: X is nobody's"
            );
        }
        // City staff see everything.
        assert!(may_see_work(&ctx, None, "sw-02", acme_street));
    }

    #[test]
    fn a_vehicles_day_sums_its_passes_and_counts_overspeed_runs_once() {
        let ctx = context(None);
        let records = [
            record(0, 100.0, Some(InvalidReason::ToolOff), 30.0),
            record(100, 200.0, None, 7.0),
            record(300, 50.0, Some(InvalidReason::Overspeed), 11.0),
            record(330, 50.0, Some(InvalidReason::Overspeed), 12.0),
            record(1000, 100.0, Some(InvalidReason::Overspeed), 10.0),
            record(2000, 5.0, Some(InvalidReason::TooShort), 6.0),
        ];
        let scope = Scope {
            class: None,
            sections: None,
            grid: None,
            polygon: None,
            name: "city".into(),
        };
        let days = vehicle_days(&ctx, &records, &scope);
        assert_eq!(days.len(), 1);
        let d = &days[0];
        assert_eq!((d.passes, d.working_passes, d.valid_passes), (6, 5, 1));
        assert_eq!(
            (d.mileage_m, d.working_mileage_m, d.valid_mileage_m),
            (505.0, 405.0, 200.0)
        );
        assert_eq!(d.overspeed_events, 2, "two runs of overspeed work");
        assert_eq!(d.max_working_speed_kmh, Some(12.0));
        assert!((d.mean_working_speed_kmh.unwrap() - 6.0).abs() < 1e-9);
        assert_eq!(d.sections, [ctx.zones.section_of(3).unwrap().id.clone()]);
    }
}

/// Rejects a range on the endpoints that report one day.
pub(crate) fn one_day(params: &DayParams) -> Result<(), ApiError> {
    for (field, given) in [("from", params.from.is_some()), ("to", params.to.is_some())] {
        if given {
            return Err(ApiError::invalid(
                field,
                "ranges are for /api/v1/coverage/daily; here give `date`",
            ));
        }
    }
    Ok(())
}

const MAX_RANGE_DAYS: i32 = 92;

/// One day's shares (of length and of area) in a range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DayShares {
    date: String,
    covered_share_by_length: f64,
    covered_share_by_area: f64,
    mechanised_rate_by_length: f64,
    mechanised_rate_by_area: f64,
    deep_cleaned_share_by_length: f64,
    deep_cleaned_share_by_area: f64,
    valid_passes: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DailyReport {
    from: String,
    to: String,
    time_zone: String,
    scope: String,
    segments: usize,
    total_length_m: f64,
    total_area_m2: f64,
    days: Vec<DayShares>,
    /// Means of the days' shares.
    mean: DayShares,
    /// How far matching has got: the numbers are current with the stored fixes before
    /// `stale_from`.
    matching: CoverageBacklog,
}

/// Each day's covered, mechanised and deep-cleaned shares over a range of up to 92 days, and
/// their means; in scope like `/api/v1/coverage`.
#[utoipa::path(get, path = "/api/v1/coverage/daily", params(DayParams),
    responses((status = 200, body = DailyReport), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn coverage_daily(
    State(state): State<ApiState>,
    Query(params): Query<DayParams>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<DailyReport>, ApiError> {
    let ctx = context(&state)?;
    let params = restrict(params, principal.as_deref(), ctx)?;
    if params.date.is_some() {
        return Err(ApiError::invalid("date", "give a range as `from` and `to`"));
    }
    let (Some(first), Some(last)) = (params.from, params.to) else {
        let missing = if params.from.is_none() { "from" } else { "to" };
        return Err(ApiError::invalid(
            missing,
            "required: the range's first and last day",
        ));
    };
    let span = first
        .until(last)
        .map_err(|e| ApiError::invalid("to", e.to_string()))?;
    let days = span.get_days();
    if days < 0 {
        return Err(ApiError::invalid("to", "must not be before `from`"));
    }
    if days >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid(
            "to",
            format!("a range spans at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let scope = Scope::new(ctx, &params)?;
    let (_, from, _) = day(&state, ctx, Some(first))?;
    let (_, _, to) = day(&state, ctx, Some(last))?;
    let records = state.store.passes(from, to, None).await?;
    let in_scope = |s: &Segment| scope.contains(s);
    let mut rows = Vec::new();
    let mut totals;
    let mut date = first;
    loop {
        let (_, start, end) = day(&state, ctx, Some(date))?;
        let statuses = status_between(ctx, &records, start, end);
        let s = CoverageSummary::of(&ctx.network, &statuses, in_scope);
        totals = s;
        let valid_passes = records
            .iter()
            .filter(|r| start <= r.start && r.start < end && r.invalid.is_none())
            .filter(|r| {
                ctx.network
                    .segments()
                    .get(r.segment as usize)
                    .is_some_and(in_scope)
            })
            .count();
        rows.push(shares(date.to_string(), &s, valid_passes));
        if date >= last {
            break;
        }
        date = date
            .tomorrow()
            .map_err(|e| ApiError::invalid("to", e.to_string()))?;
    }
    let n = rows.len() as f64;
    let mean = |f: fn(&DayShares) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let mean_row = DayShares {
        date: format!("{first}/{last}"),
        covered_share_by_length: mean(|r| r.covered_share_by_length),
        covered_share_by_area: mean(|r| r.covered_share_by_area),
        mechanised_rate_by_length: mean(|r| r.mechanised_rate_by_length),
        mechanised_rate_by_area: mean(|r| r.mechanised_rate_by_area),
        deep_cleaned_share_by_length: mean(|r| r.deep_cleaned_share_by_length),
        deep_cleaned_share_by_area: mean(|r| r.deep_cleaned_share_by_area),
        valid_passes: rows.iter().map(|r| r.valid_passes).sum::<usize>() / rows.len(),
    };
    Ok(Json(DailyReport {
        from: first.to_string(),
        to: last.to_string(),
        time_zone: ctx.time_zone_name.clone(),
        scope: scope.name.clone(),
        segments: totals.segments,
        total_length_m: totals.total_length_m,
        total_area_m2: totals.total_area_m2,
        days: rows,
        mean: mean_row,
        matching: state.store.coverage_backlog().await?,
    }))
}

fn shares(date: String, s: &CoverageSummary, valid_passes: usize) -> DayShares {
    DayShares {
        date,
        covered_share_by_length: ratio(s.covered_length_m, s.total_length_m),
        covered_share_by_area: ratio(s.covered_area_m2, s.total_area_m2),
        mechanised_rate_by_length: ratio(s.mechanised_length_m, s.total_length_m),
        mechanised_rate_by_area: ratio(s.mechanised_area_m2, s.total_area_m2),
        deep_cleaned_share_by_length: ratio(s.deep_cleaned_length_m, s.total_length_m),
        deep_cleaned_share_by_area: ratio(s.deep_cleaned_area_m2, s.total_area_m2),
        valid_passes,
    }
}

/// A section's day: its coverage against its plan.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SectionDay {
    section: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contractor: Option<String>,
    segments: usize,
    length_m: f64,
    covered_share_by_length: f64,
    covered_share_by_area: f64,
    mechanised_rate_by_length: f64,
    deep_cleaned_share_by_length: f64,
    /// Segments not covered (漏扫).
    missed_segments: usize,
    /// Traversals with the tools on.
    passes: usize,
    valid_passes: usize,
    valid_mileage_m: f64,
    /// From `[[coverage.plans]]`; absent without a plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_passes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_mileage_m: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SectionDayList {
    date: String,
    sections: Vec<SectionDay>,
    /// How far matching has got: the numbers are current with the stored fixes before
    /// `stale_from`.
    matching: CoverageBacklog,
}

/// Per section (of one contractor, with `contractor`) for a day: coverage shares, missed
/// segments, passes and valid passes and mileage against the plan.
#[utoipa::path(get, path = "/api/v1/coverage/sections", params(DayParams),
    responses((status = 200, body = SectionDayList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn coverage_sections(
    State(state): State<ApiState>,
    OneDay {
        ctx, params, scope, ..
    }: OneDay,
) -> Result<Json<SectionDayList>, ApiError> {
    let ctx = ctx.as_ref();
    let (date, records, statuses) = day_status(&state, &params).await?;
    let mut sections = Vec::new();
    for zone in ctx.zones.sections() {
        let members: std::collections::HashSet<u32> = zone
            .segments
            .iter()
            .copied()
            .filter(|&s| scope.contains(&ctx.network.segments()[s as usize]))
            .collect();
        if members.is_empty() {
            continue;
        }
        let s = CoverageSummary::of(&ctx.network, &statuses, |seg| members.contains(&seg.id));
        let theirs = || records.iter().filter(|r| members.contains(&r.segment));
        let working =
            || theirs().filter(|r| r.invalid.as_deref() != Some(InvalidReason::ToolOff.as_str()));
        let plan = ctx.plans.iter().find(|p| p.section == zone.id);
        let sides_m: f64 = members
            .iter()
            .map(|&id| {
                let seg = &ctx.network.segments()[id as usize];
                f64::from(ctx.rules.sides(seg)) * seg.length_m
            })
            .sum();
        let sides: u32 = members
            .iter()
            .map(|&id| ctx.rules.sides(&ctx.network.segments()[id as usize]))
            .sum();
        sections.push(SectionDay {
            section: zone.id.clone(),
            name: zone.name.clone(),
            contractor: zone.contractor.clone(),
            segments: s.segments,
            length_m: s.total_length_m,
            covered_share_by_length: s.covered_share_by_length(),
            covered_share_by_area: s.covered_share_by_area(),
            mechanised_rate_by_length: s.mechanised_rate_by_length(),
            deep_cleaned_share_by_length: s.deep_cleaned_share_by_length(),
            missed_segments: statuses
                .iter()
                .filter(|st| members.contains(&st.segment) && !st.covered)
                .count(),
            passes: working().count(),
            valid_passes: working().filter(|r| r.invalid.is_none()).count(),
            valid_mileage_m: working()
                .filter(|r| r.invalid.is_none())
                .map(|r| r.to_m - r.from_m)
                .sum(),
            planned_passes: plan.map(|p| p.passes_per_side * f64::from(sides)),
            planned_mileage_m: plan.map(|p| p.passes_per_side * sides_m),
        });
    }
    Ok(Json(SectionDayList {
        date: date.to_string(),
        sections,
        matching: state.store.coverage_backlog().await?,
    }))
}

/// A contractor sees only its own sections: its scope narrows to them, and asking for another
/// contractor, or a section not its own, finds nothing (404).
pub(crate) fn restrict(
    mut params: DayParams,
    principal: Option<&Principal>,
    ctx: &CoverageContext,
) -> Result<DayParams, ApiError> {
    let Some(mine) = principal.and_then(Principal::contractor) else {
        return Ok(params);
    };
    if let Some(other) = params.contractor.as_deref().filter(|c| *c != mine) {
        return Err(ApiError::NotFound {
            resource: "contractor",
            id: other.to_owned(),
        });
    }
    if let Some(section) = &params.section {
        let owner = ctx
            .zones
            .section(section)
            .and_then(|z| z.contractor.as_deref());
        if owner != Some(mine) {
            return Err(ApiError::NotFound {
                resource: "section",
                id: section.clone(),
            });
        }
    }
    params.contractor = Some(mine.to_owned());
    Ok(params)
}

/// Whether a contractor (`viewer`; `None` for city staff) may see a device's work on a
/// segment: its own devices' anywhere, and on its own sections that of devices under no
/// contractor; never another contractor's.
pub(crate) fn may_see_work(
    ctx: &CoverageContext,
    viewer: Option<&str>,
    device_id: &str,
    segment: u32,
) -> bool {
    let Some(mine) = viewer else {
        return true;
    };
    match ctx.zones.contractor_of_device(device_id) {
        Some(owner) => owner == mine,
        None => {
            ctx.zones
                .section_of(segment)
                .and_then(|z| z.contractor.as_deref())
                == Some(mine)
        }
    }
}

/// Whether a segment lies in a contractor's sections (any segment for city staff).
pub(crate) fn may_see(ctx: &CoverageContext, principal: Option<&Principal>, segment: u32) -> bool {
    match principal.and_then(Principal::contractor) {
        None => true,
        Some(mine) => {
            ctx.zones
                .section_of(segment)
                .and_then(|z| z.contractor.as_deref())
                == Some(mine)
        }
    }
}

/// A one-day request in the caller's scope: the coverage context, the parameters (narrowed
/// to a contractor's own sections) and the segments they select.
pub(crate) struct OneDay {
    pub ctx: Arc<CoverageContext>,
    pub params: DayParams,
    pub scope: Scope,
    /// The contractor whose data alone the caller may see; `None` for city staff.
    pub viewer: Option<String>,
}

impl axum::extract::FromRequestParts<ApiState> for OneDay {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, ApiError> {
        let Query(params) = Query::<DayParams>::from_request_parts(parts, state).await?;
        let ctx = state.coverage.clone().ok_or_else(|| {
            ApiError::Unavailable("coverage is not configured in this process".into())
        })?;
        let principal = parts.extensions.get::<Principal>().cloned();
        let params = restrict(params, principal.as_ref(), &ctx)?;
        one_day(&params)?;
        let scope = Scope::new(&ctx, &params)?;
        let viewer = principal
            .as_ref()
            .and_then(Principal::contractor)
            .map(str::to_owned);
        Ok(OneDay {
            ctx,
            params,
            scope,
            viewer,
        })
    }
}

/// Segment status from those of `records` that start in `from..to`.
pub(crate) fn status_between(
    ctx: &CoverageContext,
    records: &[PassRecord],
    from: Timestamp,
    to: Timestamp,
) -> Vec<SegmentStatus> {
    let within: Vec<PassRecord> = records
        .iter()
        .filter(|r| from <= r.start && r.start < to)
        .cloned()
        .collect();
    segment_status(
        &ctx.network,
        &engine_passes(&ctx.network, &within),
        &ctx.rules,
    )
}
