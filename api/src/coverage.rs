//! Coverage endpoints: a day's shares for the city or a road class, the segments' status as
//! GeoJSON for a map, and the passes behind them. The reports themselves are
//! `cleanfleet-reports`'; here requests are parsed, authorised and answered.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use cleanfleet_reports::{
    daily_coverage, day_bounds, day_coverage, may_see, may_see_work, may_see_work_in, restrict,
    section_days, section_of_row, segment_feature, status_features_json, vehicle_day_rows,
    vehicle_days, zone_list, CoverageContext, DailyCoverage, DayCoverage, DayStatus, Scope,
    ScopeSpec, SectionDay, VehicleDay, ZoneList, MAX_RANGE_DAYS,
};
use cleanfleet_roads::RoadClass;
use cleanfleet_store::{CoverageBacklog, PassRecord};
use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::ApiState;

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
    /// The segments it asks about, narrowed to what the caller may see.
    fn scope(&self, ctx: &CoverageContext, viewer: Option<&str>) -> Result<Scope, ApiError> {
        let spec = ScopeSpec {
            class: self.class,
            section: self.section.clone(),
            contractor: self.contractor.clone(),
            grid: self.grid.clone(),
            polygon: self.polygon.clone(),
        };
        let spec = restrict(spec, viewer, &ctx.zones)?;
        Ok(Scope::new(ctx, &spec)?)
    }
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

/// The day's bounds in the city's time zone (today's without a date).
pub(crate) fn day(
    state: &ApiState,
    ctx: &CoverageContext,
    date: Option<Date>,
) -> Result<(Date, Timestamp, Timestamp), ApiError> {
    let date = date.unwrap_or_else(|| state.clock.now().to_zoned(ctx.time_zone.clone()).date());
    let (start, end) =
        day_bounds(&ctx.time_zone, date).map_err(|e| ApiError::invalid("date", e.to_string()))?;
    Ok((date, start, end))
}

/// The day's status of every segment, as the coverage stage stored it.
pub(crate) async fn day_status(
    state: &ApiState,
    date: Option<Date>,
) -> Result<(Date, DayStatus), ApiError> {
    let ctx = context(state)?;
    let (date, _, _) = day(state, ctx, date)?;
    let rows = state.store.segment_days(date, date, None).await?;
    Ok((date, DayStatus::from_rows(&DayStatus::idle(ctx), &rows)))
}

/// A day's coverage of a scope.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoverageReport {
    date: String,
    time_zone: String,
    #[serde(flatten)]
    coverage: DayCoverage,
    /// How far matching has got: the numbers are current with the stored fixes before
    /// `stale_from`.
    matching: CoverageBacklog,
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
    let (date, status) = day_status(&state, params.date).await?;
    Ok(Json(CoverageReport {
        date: date.to_string(),
        time_zone: ctx.time_zone_name.clone(),
        coverage: day_coverage(&ctx, &status, &scope),
        matching: state.store.coverage_backlog().await?,
    }))
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
    let (date, status) = day_status(&state, params.date).await?;
    let head = json!({
        "type": "FeatureCollection",
        "date": date.to_string(),
        "time_zone": ctx.time_zone_name,
        "matching": state.store.coverage_backlog().await?,
    })
    .to_string();
    // The head's members, then the features (rendered as text: most of them never change).
    let body = format!(
        r#"{},"features":{}}}"#,
        &head[..head.len() - 1],
        status_features_json(&ctx, &status.statuses, &scope)
    );
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], body).into_response())
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
    passes.retain(|p| may_see_work(&ctx.zones, viewer, &p.device_id, p.segment));
    let truncated = passes.len() > limit;
    passes.truncate(limit);
    Ok(Json(PassPage {
        date: date.to_string(),
        passes,
        truncated,
        matching: state.store.coverage_backlog().await?,
    }))
}

/// The city's sections (with their contractors) and grid cells.
#[utoipa::path(get, path = "/api/v1/zones",
    responses((status = 200, body = ZoneList), (status = 503, body = ErrorBody)))]
pub(crate) async fn list_zones(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<ZoneList>, ApiError> {
    let ctx = context(&state)?;
    let viewer = principal.as_deref().and_then(Principal::contractor);
    Ok(Json(zone_list(ctx, viewer)))
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
    let viewer = principal.as_deref().and_then(Principal::contractor);
    let s = ctx
        .network
        .segments()
        .get(id as usize)
        .filter(|s| may_see(&ctx.zones, viewer, s.id))
        .ok_or(ApiError::NotFound {
            resource: "segment",
            id: raw,
        })?;
    let body = segment_feature(ctx, s);
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(body)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VehicleDayList {
    date: String,
    vehicles: Vec<VehicleDay>,
    /// How far matching has got: the numbers are current with the stored fixes before
    /// `stale_from`.
    matching: CoverageBacklog,
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
    let (date, from, to) = day(&state, &ctx, params.date)?;
    let viewer = viewer.as_deref();
    let vehicles = match scope.row_filter() {
        Some(in_scope) => {
            let rows = state.store.vehicle_days(date, date).await?;
            vehicle_days(rows.iter().filter(|r| {
                let section = section_of_row(&ctx.zones, r);
                in_scope(section, &r.road_class)
                    && may_see_work_in(&ctx.zones, viewer, &r.device_id, section)
            }))
        }
        // A scope that cuts through sections (a grid cell, a polygon): the rows of the day's
        // passes on its segments.
        None => {
            let segments: Vec<u32> = ctx
                .network
                .segments()
                .iter()
                .filter(|s| scope.contains(s))
                .map(|s| s.id)
                .collect();
            let mut records = state.store.segment_passes(segments, from, to).await?;
            records.retain(|r| may_see_work(&ctx.zones, viewer, &r.device_id, r.segment));
            vehicle_days(&vehicle_day_rows(&ctx.network, &ctx.zones, date, &records))
        }
    };
    Ok(Json(VehicleDayList {
        date: date.to_string(),
        vehicles,
        matching: state.store.coverage_backlog().await?,
    }))
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

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DailyReport {
    from: String,
    to: String,
    time_zone: String,
    #[serde(flatten)]
    coverage: DailyCoverage,
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
    let viewer = principal.as_deref().and_then(Principal::contractor);
    let scope = params.scope(ctx, viewer)?;
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
    if span.get_days() < 0 {
        return Err(ApiError::invalid("to", "must not be before `from`"));
    }
    if span.get_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid(
            "to",
            format!("a range spans at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let mut dates = vec![first];
    while let Some(&date) = dates.last().filter(|&&d| d < last) {
        dates.push(
            date.tomorrow()
                .map_err(|e| ApiError::invalid("to", e.to_string()))?,
        );
    }
    // One day's statuses at a time: a quarter of a city's segments is never held at once.
    let rows = state.store.segment_days(first, last, None).await?;
    let idle = DayStatus::idle(ctx);
    let days = dates.into_iter().map(|date| {
        let from = rows.partition_point(|r| r.day < date);
        let to = rows.partition_point(|r| r.day <= date);
        (date, DayStatus::from_rows(&idle, &rows[from..to]))
    });
    Ok(Json(DailyReport {
        from: first.to_string(),
        to: last.to_string(),
        time_zone: ctx.time_zone_name.clone(),
        coverage: daily_coverage(ctx, &scope, days),
        matching: state.store.coverage_backlog().await?,
    }))
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
    let (date, status) = day_status(&state, params.date).await?;
    Ok(Json(SectionDayList {
        date: date.to_string(),
        sections: section_days(&ctx, &status, &scope),
        matching: state.store.coverage_backlog().await?,
    }))
}

/// A one-day request in the caller's scope: the coverage context, the parameters and the
/// segments they select (narrowed to a contractor's own sections).
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
        let ctx = shared_context(state)?;
        let viewer = parts
            .extensions
            .get::<Principal>()
            .and_then(Principal::contractor)
            .map(str::to_owned);
        let scope = params.scope(&ctx, viewer.as_deref())?;
        one_day(&params)?;
        Ok(OneDay {
            ctx,
            params,
            scope,
            viewer,
        })
    }
}
