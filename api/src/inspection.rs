//! Weight-based cleanliness (以克论净): inspectors' samples (from scales over MQTT, or submitted
//! here by an inspector's app), the roads' results against their class limits, and the
//! cleaning behind each result.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cleanfleet_inspection::{place, Placement, Sample};
use cleanfleet_model::{decode, InspectionSample, Limits};
use cleanfleet_store::{Delivery, IngestItem, Source};

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use cleanfleet_reports::{
    assess_period, assessment_reads, failed_sample_features, inspected_segments, road_inspections,
    sample_of, sample_view, CoverageContext, DayState, InspectionView, PeriodAssessment, PeriodDay,
    PeriodRecords, SampleView, Scope, CLEANING_LOOKBACK,
};

use crate::coverage::{answers_known_until, context, day, day_status, DayParams, OneDay};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::ApiState;

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
    let body = sample_view(ctx, &sample_of(device_id, sample), Some(placement), None);
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
        .map(|(s, p, source)| sample_view(ctx, s, *p, Some(source)))
        .collect();
    Ok(Json(SampleList { date, samples }))
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
    let (_, from, to) = day(state, ctx, date)?;
    // Litter seen late in the day is cleared the next: look that far ahead.
    let known_until = answers_known_until(state, to, ctx.inspection.max_litter_dwell_s);
    // Only the inspected roads' passes, and the day's stored status of every segment.
    let records = state
        .store
        .segment_passes(
            inspected_segments(ctx, &samples),
            from - CLEANING_LOOKBACK,
            known_until.max(to),
        )
        .await?;
    let (_, status) = day_status(state, date).await?;
    let views = road_inspections(
        ctx,
        &samples,
        &records,
        &status.statuses,
        scope,
        viewer,
        known_until,
    );
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
    let features = failed_sample_features(ctx, &inspections, &samples, &scope);
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
    let (segments, sections) = assessment_reads(ctx, contractor)?;
    let today = state.clock.now().to_zoned(ctx.time_zone.clone()).date();
    let mut days = Vec::new();
    let mut date = first;
    while date < end && date <= today {
        let (_, start, stop) = day(state, ctx, Some(date))?;
        let state_of_day = if date == today {
            DayState::InProgress
        } else if state.store.received_any(start, stop).await? {
            DayState::Judged
        } else {
            DayState::NoData
        };
        days.push(PeriodDay {
            date,
            start,
            end: stop,
            state: state_of_day,
        });
        date = date
            .tomorrow()
            .map_err(|e| ApiError::invalid("month", e.to_string()))?;
    }
    let (_, from, _) = day(state, ctx, Some(first))?;
    let last = end
        .yesterday()
        .map_err(|e| ApiError::invalid("month", e.to_string()))?;
    let (_, _, to) = day(state, ctx, Some(last))?;
    // The reads are independent: at once, each on a reader of its own.
    let store = &state.store;
    let (segment_rows, overspeed_rows, on_its_streets, samples, alerts) = tokio::try_join!(
        async { Ok(store.segment_days(first, last, Some(segments)).await?) },
        async { Ok(store.overspeed_days(first, last).await?) },
        async { Ok(store.devices_with_passes_in(first, last, sections).await?) },
        async { Ok(store.samples(from, to).await?) },
        crate::bins::alerts_between(state, ctx, from, to, Some(contractor)),
    )?;
    let samples: Vec<(Sample, Placement)> = samples
        .into_iter()
        .filter_map(|stored| {
            let s = stored.sample;
            let p = place(&ctx.index, &ctx.inspection, s.lon, s.lat)?;
            Some((sample_of(stored.device_id, s), p))
        })
        .collect();
    let late_alerts: Vec<cleanfleet_inspection::overflow::OverflowAlert> = alerts
        .into_iter()
        .filter(|a| a.in_time == Some(false))
        .collect();
    let period = assess_period(
        ctx,
        contractor,
        &days,
        PeriodRecords {
            segment_days: &segment_rows,
            overspeed_days: &overspeed_rows,
            on_its_streets: &on_its_streets,
            samples: &samples,
            late_alerts: &late_alerts,
        },
    )?;
    let sources = state
        .provenance
        .device_sources(period.evidence_devices(), from, to)
        .await?;
    Ok(period.with_sources(sources))
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
