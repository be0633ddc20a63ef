//! Weight-based cleanliness (以克论净): inspectors' samples (from scales over MQTT, or submitted
//! here by an inspector's app), the roads' results against their class limits, and the
//! cleaning behind each result.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cleanfleet_inspection::{
    last_cleaning, litter_clearances, place, road_of, road_results, Cleaning, DevicePass,
    LitterClearance, Placement, RoadResult, Sample,
};
use cleanfleet_model::{decode, InspectionSample, Limits};
use cleanfleet_store::{Delivery, IngestItem, Source};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use cleanfleet_reports::{
    engine_passes, may_see_work, overspeed_runs, status_between, CoverageContext, Scope,
};

use crate::coverage::{answers_known_until, context, day, DayParams, OneDay};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::ApiState;

/// The device id a contractor sees for another contractor's vehicle.
const ANOTHER_CONTRACTORS: &str = "(another contractor's vehicle)";

/// How far back the last cleaning of a sampled road is looked for.
const CLEANING_LOOKBACK: SignedDuration = SignedDuration::from_hours(48);

fn sample_of(device_id: String, s: InspectionSample) -> Sample {
    Sample {
        device_id,
        sample_id: s.sample_id,
        inspector: s.inspector,
        time: s.time,
        lon: s.lon,
        lat: s.lat,
        grams: s.grams,
        area_m2: s.area_m2,
        litter_count: s.litter_count,
        photo_ref: s.photo_ref,
    }
}

/// A sample with the road it was taken on and its own verdict.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SampleView {
    device_id: String,
    sample_id: String,
    inspector: String,
    time: Timestamp,
    lon: f64,
    lat: f64,
    grams: f64,
    area_m2: f64,
    g_per_m2: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    litter_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo_ref: Option<String>,
    /// The segment it lies on; absent when no road is within `max_distance_to_road_m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance_to_road_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    road: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_g_per_m2: Option<f64>,
    /// This sample alone is within its road's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    within_limit: Option<bool>,
    /// Who delivered it: the scale's credential, or the inspector app's API token
    /// (`trust`: `credential`, `token`, `topic_only`, `unauthenticated`, `unknown`).
    /// Absent in the answer to a submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
}

fn view(
    ctx: &CoverageContext,
    s: &Sample,
    placement: Option<Placement>,
    source: Option<&Source>,
) -> SampleView {
    let road = placement.map(|p| road_of(&ctx.network, p.segment));
    let limit = road
        .as_ref()
        .map(|r| ctx.inspection.limits_g_per_m2.of(r.class));
    SampleView {
        device_id: s.device_id.clone(),
        sample_id: s.sample_id.clone(),
        inspector: s.inspector.clone(),
        time: s.time,
        lon: s.lon,
        lat: s.lat,
        grams: s.grams,
        area_m2: s.area_m2,
        g_per_m2: s.g_per_m2(),
        litter_count: s.litter_count,
        photo_ref: s.photo_ref.clone(),
        segment: placement.map(|p| p.segment),
        distance_to_road_m: placement.map(|p| p.distance_m),
        road: road.as_ref().map(|r| r.road.clone()),
        class: road.as_ref().map(|r| r.class.to_string()),
        limit_g_per_m2: limit,
        within_limit: limit.map(|l| s.g_per_m2() <= l),
        source: source.cloned(),
    }
}

/// An inspector's app submits a sample: `device_id` names the app (or scale). With an
/// inspector's token the inspector is the token's and the device its app (`[api.auth]`
/// `device`): both may be left out, and naming another is 403. Refused with the field at
/// fault, changing nothing, when a value is out of range, no road is near, or the sample was
/// already submitted.
#[utoipa::path(post, path = "/api/v1/samples", request_body = InspectionSample,
    responses((status = 201, body = SampleView), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn submit_sample(
    State(state): State<ApiState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    JsonBody(mut body): JsonBody<serde_json::Map<String, Value>>,
) -> Result<Response, ApiError> {
    let ctx = context(&state)?;
    // An inspector's token speaks for its own inspector and app: those fields are taken
    // from it (and may be left out); another name is refused, never stored.
    if let Some(p) = principal
        .as_deref()
        .filter(|p| p.role == crate::auth::Role::Inspector)
    {
        let device = p.device.clone().unwrap_or_default();
        for (field, own) in [("inspector", &p.name), ("device_id", &device)] {
            match body.get(field) {
                None | Some(Value::Null) => {
                    body.insert(field.to_owned(), Value::String(own.clone()));
                }
                Some(Value::String(given)) if given == own => {}
                Some(given) => {
                    return Err(ApiError::Forbidden(format!(
                        "{field}: this token submits samples as {own:?}, not {given}"
                    )))
                }
            }
        }
    }
    let sample: InspectionSample = crate::extract::from_json(Value::Object(body))?;
    let Some(device_id) = sample.device_id.clone() else {
        return Err(ApiError::invalid(
            "device_id",
            "required: the app or scale sending the sample",
        ));
    };
    if !cleanfleet_model::is_valid_device_id(&device_id) {
        return Err(ApiError::invalid(
            "device_id",
            "must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit",
        ));
    }
    // The device contract's checks, exactly as for a scale over MQTT.
    let topic = format!("cleanfleet/v1/scale/{device_id}/sample");
    let payload = serde_json::to_vec(&sample).expect("a sample serializes");
    let now = state.clock.now();
    let decoded = decode(&topic, &payload, now, &Limits::default()).map_err(|r| {
        let field = r.detail.split(':').next().unwrap_or("body").trim();
        let field = if field.is_empty() || field.contains(' ') {
            "body"
        } else {
            field
        };
        ApiError::invalid(field, r.detail.clone())
    })?;
    let Some(placement) = place(&ctx.index, &ctx.inspection, sample.lon, sample.lat) else {
        return Err(ApiError::invalid(
            "lat",
            format!(
                "no road within {} m of ({}, {})",
                ctx.inspection.max_distance_to_road_m, sample.lon, sample.lat
            ),
        ));
    };
    if state
        .store
        .sample_exists(&device_id, &sample.sample_id)
        .await?
    {
        return Err(ApiError::Conflict {
            field: "sample_id".into(),
            message: format!(
                "{device_id} already submitted sample {:?}",
                sample.sample_id
            ),
        });
    }
    let token = principal
        .as_deref()
        .filter(|p| p.authenticated)
        .map(|p| p.name.clone());
    state
        .store
        .write_batch(vec![IngestItem::Accepted {
            message: decoded,
            received: now,
            delivery: std::sync::Arc::new(Delivery::Api { token }),
        }])
        .await?;
    let body = view(ctx, &sample_of(device_id, sample), Some(placement), None);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SampleList {
    date: String,
    samples: Vec<SampleView>,
}

async fn day_samples(
    state: &ApiState,
    ctx: &CoverageContext,
    date: Option<jiff::civil::Date>,
) -> Result<(String, Vec<(Sample, Option<Placement>, Source)>), ApiError> {
    let (date, from, to) = day(state, ctx, date)?;
    let samples = state
        .store
        .samples(from, to)
        .await?
        .into_iter()
        .map(|stored| {
            let s = stored.sample;
            let placement = place(&ctx.index, &ctx.inspection, s.lon, s.lat);
            (sample_of(stored.device_id, s), placement, stored.source)
        })
        .collect();
    Ok((date.to_string(), samples))
}

/// The day's samples with the road each lies on and its own verdict.
#[utoipa::path(get, path = "/api/v1/samples", params(DayParams),
    responses((status = 200, body = SampleList), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn list_samples(
    State(state): State<ApiState>,
    OneDay {
        ctx, params, scope, ..
    }: OneDay,
) -> Result<Json<SampleList>, ApiError> {
    let ctx = ctx.as_ref();
    let (date, samples) = day_samples(&state, ctx, params.date).await?;
    let samples = samples
        .iter()
        .filter(|(_, p, _)| match p {
            Some(p) => scope.contains(&ctx.network.segments()[p.segment as usize]),
            // Samples on no road belong to no section: only the city sees them.
            None => scope.is_city(),
        })
        .map(|(s, p, source)| view(ctx, s, *p, Some(source)))
        .collect();
    Ok(Json(SampleList { date, samples }))
}

/// A road's inspection with the cleaning behind it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InspectionView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub(crate) result: RoadResult,
    /// The section and contractor of the first segment sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contractor: Option<String>,
    /// How its points fall into sections: a road that crosses a section boundary is judged
    /// once, and a failed one costs each contractor its share of the points.
    parts: Vec<InspectionPart>,
    /// The last valid cleaning of the road's sampled segments before the first sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    last_cleaned: Option<Cleaning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hours_since_cleaned: Option<f64>,
    /// A sampled segment was deep-cleaned that day.
    deep_cleaned_that_day: bool,
    /// Each sample that counted litter: how long it stayed until a valid cleaning reached its
    /// place, against `max_litter_dwell_s`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub(crate) litter_clearance: Vec<LitterClearance>,
}

/// The points of a road inspection that lie in one section (or in none).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct InspectionPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contractor: Option<String>,
    points: usize,
}

fn parts_of(ctx: &CoverageContext, result: &RoadResult) -> Vec<InspectionPart> {
    let mut parts: BTreeMap<Option<&str>, InspectionPart> = BTreeMap::new();
    for &segment in &result.sample_segments {
        let section = ctx.zones.section_of(segment);
        parts
            .entry(section.map(|z| z.id.as_str()))
            .or_insert_with(|| InspectionPart {
                section: section.map(|z| z.id.clone()),
                contractor: section.and_then(|z| z.contractor.clone()),
                points: 0,
            })
            .points += 1;
    }
    parts.into_values().collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InspectionList {
    date: String,
    aggregate: String,
    inspections: Vec<InspectionView>,
    /// Samples farther than `max_distance_to_road_m` from every road, left out.
    unplaced_samples: Vec<String>,
}

pub(crate) async fn inspections_of_day(
    state: &ApiState,
    ctx: &CoverageContext,
    date: Option<jiff::civil::Date>,
    scope: &Scope,
    viewer: Option<&str>,
) -> Result<
    (
        String,
        Vec<InspectionView>,
        Vec<(Sample, Option<Placement>, Source)>,
    ),
    ApiError,
> {
    let (day_name, samples) = day_samples(state, ctx, date).await?;
    // Every road is judged once on all its points, whichever sections they lie in; a
    // viewer sees the roads with a point in its scope (docs/inspection.md).
    let placed: Vec<(Sample, Placement)> = samples
        .iter()
        .filter_map(|(s, p, _)| Some((s.clone(), (*p)?)))
        .collect();
    let in_scope = |segment: u32| scope.contains(&ctx.network.segments()[segment as usize]);
    let (_, from, to) = day(state, ctx, date)?;
    // Litter seen late in the day is cleared the next: look that far ahead.
    let known_until = answers_known_until(state, to, ctx.inspection.max_litter_dwell_s);
    let records = state
        .store
        .passes(from - CLEANING_LOOKBACK, known_until.max(to), None)
        .await?;
    // Judged on every pass, so that everyone sees the same result; only the vehicles a
    // contractor may not see are not named to it.
    let passes: Vec<DevicePass> = records
        .iter()
        .zip(engine_passes(&ctx.network, &records))
        .map(|(r, pass)| DevicePass {
            device_id: r.device_id.clone(),
            pass,
        })
        .collect();
    let statuses = status_between(ctx, &records, from, to);
    let views = road_results(&ctx.network, &ctx.inspection, &ctx.time_zone, &placed)
        .into_iter()
        .filter(|result| result.points_on(in_scope) > 0)
        .map(|result| {
            let redact = |c: &mut Cleaning| {
                if !may_see_work(&ctx.zones, viewer, &c.device_id, c.segment) {
                    c.device_id = ANOTHER_CONTRACTORS.to_owned();
                }
            };
            let mut last = last_cleaning(
                &passes,
                &result.segments,
                &ctx.rules.covering_work,
                result.time,
            );
            last.iter_mut().for_each(redact);
            let section = ctx.zones.section_of(result.segments[0]);
            // Litter is answered for where it lies: a viewer sees its own points'.
            let points: Vec<&(Sample, Placement)> = placed
                .iter()
                .filter(|(s, p)| {
                    s.inspector == result.inspector
                        && result.samples.contains(&s.sample_id)
                        && result.segments.contains(&p.segment)
                        && in_scope(p.segment)
                })
                .collect();
            let mut litter = litter_clearances(
                &ctx.network,
                &ctx.inspection,
                &passes,
                &ctx.rules.covering_work,
                &points,
                known_until,
            );
            litter
                .iter_mut()
                .filter_map(|l| l.cleared_by.as_mut())
                .for_each(redact);
            InspectionView {
                litter_clearance: litter,
                hours_since_cleaned: last
                    .as_ref()
                    .map(|l| result.time.duration_since(l.time).as_secs_f64() / 3600.0),
                deep_cleaned_that_day: result
                    .segments
                    .iter()
                    .any(|&s| statuses[s as usize].deep_cleaned),
                section: section.map(|z| z.id.clone()),
                contractor: section.and_then(|z| z.contractor.clone()),
                parts: parts_of(ctx, &result),
                last_cleaned: last,
                result,
            }
        })
        .collect();
    Ok((day_name, views, samples))
}

/// The day's road inspections: the result of each road's points (mean or median, g/m²)
/// against its class limit, with when, by which vehicle and with what work it was last
/// validly cleaned; in scope like `/api/v1/coverage`.
#[utoipa::path(get, path = "/api/v1/inspections", params(DayParams),
    responses((status = 200, body = InspectionList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn list_inspections(
    State(state): State<ApiState>,
    OneDay {
        ctx,
        params,
        scope,
        viewer,
    }: OneDay,
) -> Result<Json<InspectionList>, ApiError> {
    let ctx = ctx.as_ref();
    let city = scope.is_city();
    let (date, inspections, samples) =
        inspections_of_day(&state, ctx, params.date, &scope, viewer.as_deref()).await?;
    Ok(Json(InspectionList {
        date,
        aggregate: serde_json::to_value(ctx.inspection.aggregate)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        inspections,
        unplaced_samples: samples
            .iter()
            .filter(|(_, p, _)| city && p.is_none())
            .map(|(s, _, _)| s.sample_id.clone())
            .collect(),
    }))
}

/// The samples of the day's failed road inspections as GeoJSON Points, for a map.
#[utoipa::path(get, path = "/api/v1/inspections/failed-samples", params(DayParams),
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json"),
              (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn failed_samples(
    State(state): State<ApiState>,
    OneDay {
        ctx,
        params,
        scope,
        viewer,
    }: OneDay,
) -> Result<Response, ApiError> {
    let ctx = ctx.as_ref();
    let (date, inspections, samples) =
        inspections_of_day(&state, ctx, params.date, &scope, viewer.as_deref()).await?;
    let mut features: Vec<Value> = Vec::new();
    for inspection in inspections.iter().filter(|i| !i.result.passed) {
        for (s, p, source) in &samples {
            // Of a road across a section boundary, a viewer sees the points in its scope.
            let Some(placement) = p.filter(|p| {
                scope.contains(&ctx.network.segments()[p.segment as usize])
                    && inspection.result.segments.contains(&p.segment)
            }) else {
                continue;
            };
            let ours = inspection.result.samples.contains(&s.sample_id)
                && inspection.result.inspector == s.inspector;
            if !ours {
                continue;
            }
            let v = view(ctx, s, *p, Some(source));
            let section = ctx.zones.section_of(placement.segment);
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": {
                    "sample": v,
                    "road_result_g_per_m2": inspection.result.result_g_per_m2,
                    "contractor": section.and_then(|z| z.contractor.clone()),
                    "last_cleaned": inspection.last_cleaned,
                },
            }));
        }
    }
    let body = json!({"type": "FeatureCollection", "date": date, "features": features});
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(body)).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AssessmentParams {
    /// The contractor assessed (a contractor's own token may leave it out).
    contractor: Option<String>,
    /// A month, `YYYY-MM`.
    month: Option<String>,
    /// A quarter, `YYYY-Qn`.
    quarter: Option<String>,
    /// `json` (default), `csv` (the deductions, one per line) or `xlsx` (a workbook with a
    /// summary sheet and the deductions).
    format: Option<String>,
}

/// The first day and the day after the last of a month (`2026-11`) or quarter (`2026-Q4`).
fn period(
    params: &AssessmentParams,
) -> Result<(String, jiff::civil::Date, jiff::civil::Date), ApiError> {
    let bad = |field: &str, what: &str| ApiError::invalid(field, what.to_owned());
    match (&params.month, &params.quarter) {
        (Some(month), None) => {
            let first: jiff::civil::Date = format!("{month}-01")
                .parse()
                .map_err(|_| bad("month", "must be YYYY-MM"))?;
            let next = first
                .checked_add(jiff::Span::new().months(1))
                .map_err(|_| bad("month", "out of range"))?;
            Ok((month.clone(), first, next))
        }
        (None, Some(quarter)) => {
            let (year, q) = quarter
                .split_once("-Q")
                .and_then(|(y, q)| Some((y.parse::<i16>().ok()?, q.parse::<i8>().ok()?)))
                .filter(|(_, q)| (1..=4).contains(q))
                .ok_or_else(|| bad("quarter", "must be YYYY-Qn with n 1 to 4"))?;
            let first = jiff::civil::Date::new(year, (q - 1) * 3 + 1, 1)
                .map_err(|_| bad("quarter", "out of range"))?;
            let next = first
                .checked_add(jiff::Span::new().months(3))
                .map_err(|_| bad("quarter", "out of range"))?;
            Ok((quarter.clone(), first, next))
        }
        (Some(_), Some(_)) => Err(bad("quarter", "give a month or a quarter, not both")),
        (None, None) => Err(bad(
            "month",
            "required: a month (YYYY-MM) or a quarter (YYYY-Qn)",
        )),
    }
}

/// A text cell a spreadsheet will not run: one that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return (a formula, to Excel and LibreOffice) gets a leading `'` (OWASP's rule for
/// CSV injection). Sample ids and inspector names are whatever a device sent.
fn safe_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A contractor's score for a month or quarter: every deduction (failed weight checks,
/// missed segments, coverage short of target, overspeed work, bin overflows emptied late)
/// with the records behind it, and the pay factor the score earns. Incidents count on their
/// day; shares and misses are judged on the finished days with data (docs/inspection.md).
#[utoipa::path(get, path = "/api/v1/assessment", params(AssessmentParams),
    responses((status = 200, description = "Assessment as JSON, or CSV with format=csv"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn contractor_assessment(
    State(state): State<ApiState>,
    crate::extract::Query(params): crate::extract::Query<AssessmentParams>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> Result<Response, ApiError> {
    let ctx = context(&state)?;
    let own = principal
        .as_deref()
        .and_then(crate::auth::Principal::contractor);
    let contractor = match (own, &params.contractor) {
        (Some(mine), Some(asked)) if mine != asked => {
            return Err(ApiError::NotFound {
                resource: "contractor",
                id: asked.clone(),
            })
        }
        (Some(mine), _) => mine.to_owned(),
        (None, Some(asked)) => asked.clone(),
        (None, None) => return Err(ApiError::invalid("contractor", "required")),
    };
    let format = match params.format.as_deref() {
        None | Some("json") => ReportFormat::Json,
        Some("csv") => ReportFormat::Csv,
        Some("xlsx") => ReportFormat::Xlsx,
        Some(_) => return Err(ApiError::invalid("format", "json, csv or xlsx")),
    };
    let (name, first, end) = period(&params)?;
    let period = assess_contractor(&state, ctx, &contractor, first, end).await?;
    let a = &period.assessment;
    let to_date = end.yesterday().map(|d| d.to_string()).unwrap_or_default();
    if format == ReportFormat::Xlsx {
        let bytes = assessment_xlsx(&contractor, &name, &first.to_string(), &to_date, a)
            .map_err(|e| ApiError::Unavailable(format!("cannot write the workbook: {e}")))?;
        let file = format!("attachment; filename=\"assessment-{contractor}-{name}.xlsx\"");
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned(),
                ),
                (header::CONTENT_DISPOSITION, file),
            ],
            bytes,
        )
            .into_response());
    }
    if format == ReportFormat::Csv {
        let mut out = csv::Writer::from_writer(Vec::new());
        let write = |out: &mut csv::Writer<Vec<u8>>, row: &[String]| {
            out.write_record(row)
                .map_err(|e| ApiError::Internal(format!("cannot write the CSV: {e}")))
        };
        write(
            &mut out,
            &["date", "kind", "points", "detail", "records"].map(String::from),
        )?;
        for d in &a.deductions {
            let row = [
                d.date.to_string(),
                safe_cell(&d.kind.to_string()),
                d.points.to_string(),
                safe_cell(&d.detail),
                safe_cell(&d.records.join(";")),
            ];
            write(&mut out, &row)?;
        }
        let text = out
            .into_inner()
            .map_err(|e| ApiError::Internal(format!("cannot write the CSV: {e}")))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(Json(json!({
        "contractor": contractor,
        "period": name,
        "from": first.to_string(),
        "to": to_date,
        "days_assessed": period.days_assessed,
        "days_judged": period.days_judged,
        "days_without_data": period.days_without_data,
        "in_progress": period.in_progress,
        "base_score": a.base_score,
        "deducted": a.deducted,
        "score": a.score,
        "pay_factor": a.pay_factor,
        "deductions": a.deductions,
        "data": {
            "all_verified": period.evidence.iter().all(|d| d.verified),
            "unverified_devices": period
                .evidence
                .iter()
                .filter(|d| !d.verified)
                .map(|d| d.device_id.as_str())
                .collect::<Vec<_>>(),
            "devices": period.evidence,
        },
    }))
    .into_response())
}

/// A contractor's assessment over `first..end` (days after today not counted). 404 for a
/// contractor with no sections.
pub(crate) async fn assess_contractor(
    state: &ApiState,
    ctx: &CoverageContext,
    contractor: &str,
    first: jiff::civil::Date,
    end: jiff::civil::Date,
) -> Result<PeriodAssessment, ApiError> {
    use cleanfleet_inspection::assessment::{assess, DayCoverage, DayRecord, FailedCheck};
    let (mut days_without_data, mut in_progress) = (Vec::new(), None);
    let members: std::collections::HashSet<u32> = ctx
        .zones
        .sections()
        .iter()
        .filter(|z| z.contractor.as_deref() == Some(contractor))
        .flat_map(|z| z.segments.iter().copied())
        .collect();
    if members.is_empty() {
        return Err(ApiError::NotFound {
            resource: "contractor",
            id: contractor.to_owned(),
        });
    }
    let today = state.clock.now().to_zoned(ctx.time_zone.clone()).date();
    let (_, from, _) = day(state, ctx, Some(first))?;
    let (_, _, to) = day(
        state,
        ctx,
        Some(
            end.yesterday()
                .map_err(|e| ApiError::invalid("month", e.to_string()))?,
        ),
    )?;
    let records = state.store.passes(from, to, None).await?;
    let samples: Vec<(Sample, Placement)> = state
        .store
        .samples(from, to)
        .await?
        .into_iter()
        .filter_map(|stored| {
            let s = stored.sample;
            let p = place(&ctx.index, &ctx.inspection, s.lon, s.lat)?;
            Some((sample_of(stored.device_id, s), p))
        })
        .collect();
    // Roads are judged once on all their points; the contractor answers for those with a
    // point in its sections, for its share of the points.
    let results: Vec<RoadResult> =
        road_results(&ctx.network, &ctx.inspection, &ctx.time_zone, &samples)
            .into_iter()
            .filter(|r| r.points_on(|s| members.contains(&s)) > 0)
            .collect();
    let late_alerts: Vec<cleanfleet_inspection::overflow::OverflowAlert> =
        crate::bins::alerts_between(state, ctx, from, to, Some(contractor))
            .await?
            .into_iter()
            .filter(|a| a.in_time == Some(false))
            .collect();
    let mut days = Vec::new();
    let mut date = first;
    while date < end && date <= today {
        let (_, start, stop) = day(state, ctx, Some(date))?;
        let coverage = if date == today {
            in_progress = Some(date.to_string());
            None
        } else if !state.store.received_any(start, stop).await? {
            days_without_data.push(date.to_string());
            None
        } else {
            let statuses = status_between(ctx, &records, start, stop);
            let s = cleanfleet_coverage::CoverageSummary::of(&ctx.network, &statuses, |seg| {
                members.contains(&seg.id)
            });
            Some(DayCoverage {
                covered_share: s.covered_share_by_length(),
                deep_cleaned_share: s.deep_cleaned_share_by_length(),
                missed_segments: statuses
                    .iter()
                    .filter(|st| members.contains(&st.segment) && !st.covered)
                    .map(|st| st.segment)
                    .collect(),
            })
        };
        let mut overspeed: Vec<&cleanfleet_store::PassRecord> = records
            .iter()
            .filter(|r| start <= r.start && r.start < stop)
            .filter(|r| may_see_work(&ctx.zones, Some(contractor), &r.device_id, r.segment))
            .collect();
        overspeed.sort_by(|a, b| (&a.device_id, a.start).cmp(&(&b.device_id, b.start)));
        let events = overspeed_runs(overspeed)
            .into_iter()
            .map(|r| (r.device_id.clone(), r.start.to_string()))
            .collect();
        days.push(DayRecord {
            date: date.to_string(),
            coverage,
            failed_checks: results
                .iter()
                .filter(|r| r.date == date.to_string() && !r.passed)
                .map(|r| FailedCheck {
                    road: r.road.clone(),
                    class: r.class,
                    samples: r.samples.clone(),
                    points_here: r.points_on(|s| members.contains(&s)),
                    points: r.points,
                })
                .collect(),
            overspeed_events: events,
            late_overflow_responses: late_alerts
                .iter()
                .filter(|a| start <= a.raised && a.raised < stop)
                .map(|a| (a.device_id.clone(), a.raised.to_string()))
                .collect(),
        });
        date = date
            .tomorrow()
            .map_err(|e| ApiError::invalid("month", e.to_string()))?;
    }
    // The devices whose records the numbers rest on, and what of theirs is used.
    let mut uses: BTreeMap<&str, BTreeSet<&'static str>> = BTreeMap::new();
    for r in &records {
        let counted = members.contains(&r.segment)
            || (r.invalid.as_deref() == Some("overspeed")
                && may_see_work(&ctx.zones, Some(contractor), &r.device_id, r.segment));
        if counted {
            uses.entry(&r.device_id).or_default().insert("passes");
        }
    }
    for (sample, _) in samples.iter().filter(|(s, _)| {
        results
            .iter()
            .any(|r| r.inspector == s.inspector && r.samples.contains(&s.sample_id))
    }) {
        uses.entry(&sample.device_id).or_default().insert("samples");
    }
    for alert in &late_alerts {
        uses.entry(&alert.device_id)
            .or_default()
            .insert("bin_readings");
    }
    let mut sources: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    for (device, source) in state
        .provenance
        .device_sources(uses.keys().map(|d| d.to_string()).collect(), from, to)
        .await?
    {
        sources.entry(device).or_default().push(source);
    }
    let evidence = uses
        .into_iter()
        .map(|(device, uses)| {
            let sources = sources.remove(device).unwrap_or_default();
            DeviceEvidence {
                verified: !sources.is_empty() && sources.iter().all(|s| s.trust.is_verified()),
                device_id: device.to_owned(),
                uses: uses.into_iter().collect(),
                sources,
            }
        })
        .collect();
    Ok(PeriodAssessment {
        assessment: assess(&ctx.assessment, &days),
        days_assessed: days.len(),
        days_judged: days.iter().filter(|d| d.coverage.is_some()).count(),
        days_without_data,
        in_progress,
        evidence,
    })
}

/// A device whose records an assessment rests on, and who delivered them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeviceEvidence {
    pub(crate) device_id: String,
    /// What of its records the assessment uses: `passes` (its work, from its fixes),
    /// `samples`, `bin_readings`.
    pub(crate) uses: Vec<&'static str>,
    /// Every source of its records on the period's days (UTC days, whole).
    pub(crate) sources: Vec<Source>,
    /// Every one of them is a device credential or an API token.
    pub(crate) verified: bool,
}

/// A contractor's assessment over a period, and which of its days its shares rest on.
pub(crate) struct PeriodAssessment {
    pub(crate) assessment: cleanfleet_inspection::assessment::Assessment,
    /// Days of the period up to today: their incidents count.
    pub(crate) days_assessed: usize,
    /// Of those, the days over and with data: the shares and misses rest on them.
    pub(crate) days_judged: usize,
    /// Days over with no stored work at all: their shares are not judged.
    pub(crate) days_without_data: Vec<String>,
    /// Today, when in the period: its incidents count, its shares once it is over.
    pub(crate) in_progress: Option<String>,
    /// The devices its numbers rest on, by id, with their records' provenance.
    pub(crate) evidence: Vec<DeviceEvidence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Json,
    Csv,
    Xlsx,
}

/// The assessment as a workbook: a summary sheet and one row per deduction.
fn assessment_xlsx(
    contractor: &str,
    period: &str,
    from: &str,
    to: &str,
    a: &cleanfleet_inspection::assessment::Assessment,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let summary = book.add_worksheet().set_name("Summary")?;
    let rows: [(&str, String); 7] = [
        ("Contractor", contractor.to_owned()),
        ("Period", period.to_owned()),
        ("From", from.to_owned()),
        ("To", to.to_owned()),
        ("Base score", a.base_score.to_string()),
        ("Score", a.score.to_string()),
        ("Pay factor", a.pay_factor.to_string()),
    ];
    for (row, (label, value)) in rows.iter().enumerate() {
        summary.write_string_with_format(row as u32, 0, *label, &bold)?;
        match value.parse::<f64>() {
            Ok(number) if row >= 4 => summary.write_number(row as u32, 1, number)?,
            _ => summary.write_string(row as u32, 1, value)?,
        };
    }
    summary.set_column_width(0, 14)?;
    summary.set_column_width(1, 24)?;
    let sheet = book.add_worksheet().set_name("Deductions")?;
    for (col, title) in ["Date", "Kind", "Points", "Detail", "Records"]
        .iter()
        .enumerate()
    {
        sheet.write_string_with_format(0, col as u16, *title, &bold)?;
    }
    for (i, d) in a.deductions.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_string(row, 0, &d.date)?;
        sheet.write_string(row, 1, &d.kind)?;
        sheet.write_number(row, 2, d.points)?;
        sheet.write_string(row, 3, &d.detail)?;
        sheet.write_string(row, 4, d.records.join("; "))?;
    }
    sheet.set_column_width(1, 22)?;
    sheet.set_column_width(3, 48)?;
    sheet.set_column_width(4, 60)?;
    book.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        for formula in [
            "=HYPERLINK(\"http://x\")",
            "=cmd|' /C calc'!A0",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(safe_cell(formula), format!("'{formula}"));
        }
        for plain in ["A-9", "insp-1", "failed_weight_check", ""] {
            assert_eq!(safe_cell(plain), plain);
        }
        // Written as CSV, the cell reads back as the text with its guard.
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record([safe_cell("=1+1;S2"), "x".into()])
            .unwrap();
        let bytes = out.into_inner().unwrap();
        let mut back = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes.as_slice());
        let row = back.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "'=1+1;S2");
    }
}
