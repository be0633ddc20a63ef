//! `POST /api/v1/match`: any track, matched and cut into passes as the coverage stage would,
//! so that a contractor or an auditor can check it. Nothing is stored.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use cleanfleet_coverage::{
    in_time_order, match_track, parse_track, Matcher, TrackError, TrackFormat, WorkType,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use utoipa::IntoParams;

use crate::coverage::shared_context;
use crate::error::ApiError;
use crate::extract::Query;
use crate::ApiState;

/// Tracks matched at once, process-wide: matching is CPU work, and more at once would only
/// starve the rest of the API (and the store's blocking threads). Others get 503 and retry.
const MATCHING_AT_ONCE: usize = 2;
static MATCHING: Semaphore = Semaphore::const_new(MATCHING_AT_ONCE);

/// Most fixes one request may carry (a day at 1 Hz).
pub(crate) const MAX_TRACK_FIXES: usize = 86_400;
/// Largest request body, bytes (a day at 1 Hz as GPX).
pub(crate) const MAX_TRACK_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MatchParams {
    /// The vehicle's work: `sweep` (default), `wash_sweep`, `flush`, `sprinkle`, `manual`.
    work: Option<String>,
    /// `gpx`, `csv` or `geojson`; by default from the Content-Type (`application/gpx+xml`,
    /// `text/csv`, `application/geo+json`).
    format: Option<String>,
}

/// Matches the track in the body (GPX; CSV with `time,lat,lon` and optionally `speed_kmh,
/// heading_deg, hdop, satellites, tools_on`; or GeoJSON points with a `time` property) with
/// the city's matcher and rules. Answers a summary, each fix's matched place, the passes with
/// their validity (`from_m`/`to_m` along the driving direction from the node the pass enters
/// at, metres; times RFC 3339) and the matched path as a GeoJSON FeatureCollection. Fixes
/// with the same time but another position are refused, naming both.
#[utoipa::path(post, path = "/api/v1/match", params(MatchParams),
    request_body(content = String, description = "The track file", content_type = "application/gpx+xml"),
    responses((status = 200, description = "The matched track", body = Object),
              (status = 400, body = crate::error::ErrorBody),
              (status = 413, description = "Body larger than 32 MiB", body = crate::error::ErrorBody),
              (status = 503, description = "Matching is off, or busy with other tracks", body = crate::error::ErrorBody)))]
pub(crate) async fn match_track_request(
    State(state): State<ApiState>,
    Query(params): Query<MatchParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            field: "body".into(),
            message: format!("a track of at most {MAX_TRACK_BYTES} bytes"),
        },
        _ => ApiError::invalid("body", e.body_text()),
    })?;
    let ctx = shared_context(&state)?;
    let work = match params.work.as_deref() {
        None => WorkType::Sweep,
        Some(name) => WorkType::parse(name).ok_or_else(|| {
            ApiError::invalid("work", "one of sweep, wash_sweep, flush, sprinkle, manual")
        })?,
    };
    let format = match (&params.format, headers.get(header::CONTENT_TYPE)) {
        (Some(name), _) => TrackFormat::parse(name)
            .ok_or_else(|| ApiError::invalid("format", "one of gpx, csv, geojson"))?,
        (None, Some(media)) => media
            .to_str()
            .ok()
            .and_then(TrackFormat::parse)
            .ok_or_else(|| {
                ApiError::invalid(
                    "format",
                    "the Content-Type is not a track format: say format=gpx, csv or geojson",
                )
            })?,
        (None, None) => {
            return Err(ApiError::invalid(
                "format",
                "say format=gpx, csv or geojson",
            ))
        }
    };
    let Ok(permit) = MATCHING.try_acquire() else {
        return Err(ApiError::Unavailable(format!(
            "{MATCHING_AT_ONCE} tracks are being matched; try again in a few seconds"
        )));
    };
    // Matching is CPU work: off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let fixes = parse_track(format, &body).map_err(track_error)?;
        if fixes.len() > MAX_TRACK_FIXES {
            return Err(ApiError::invalid(
                "body",
                format!(
                    "{} fixes: at most {MAX_TRACK_FIXES} per request",
                    fixes.len()
                ),
            ));
        }
        let (fixes, repeats) = in_time_order(fixes).map_err(track_error)?;
        let mut matcher = Matcher::with_index(&ctx.network, ctx.index.clone(), ctx.matcher.clone());
        let result = match_track(&ctx.network, &mut matcher, &ctx.rules, work, fixes);
        Ok(result.to_json(&ctx.network, &ctx.index, repeats))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("matching a track failed: {e}")))??;
    Ok(Json(answer))
}

fn track_error(e: TrackError) -> ApiError {
    ApiError::invalid("body", e.to_string())
}
