//! Smart bins' overflow alerts and how soon each was emptied (DOMAIN.md "Bins"): for the
//! dispatcher's list, and behind the assessment's late-response deductions.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use cleanfleet_inspection::overflow::{overflow_alerts, OverflowAlert};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use cleanfleet_reports::CoverageContext;

use crate::coverage::{answers_known_until, context, day};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::ApiState;

/// How far back a bin's last emptying is looked for, to see an overflow open when a range
/// begins from its start (an alert raised earlier belongs to its own day).
const OVERFLOW_LOOKBACK: SignedDuration = SignedDuration::from_hours(7 * 24);

/// The overflow alerts raised in `from..to`, with their answers as far as the readings go;
/// of one contractor's bins (those its sections list) when `contractor` is given.
pub(crate) async fn alerts_between(
    state: &ApiState,
    ctx: &CoverageContext,
    from: Timestamp,
    to: Timestamp,
    contractor: Option<&str>,
) -> Result<Vec<OverflowAlert>, ApiError> {
    let rules = &ctx.bins;
    let known_until = answers_known_until(state, to, rules.max_response_s);
    let mut by_bin: BTreeMap<String, Vec<(Timestamp, f64)>> = BTreeMap::new();
    for r in state
        .store
        .bin_readings(
            from,
            known_until.max(to),
            rules.emptied_fill_ratio,
            OVERFLOW_LOOKBACK,
        )
        .await?
    {
        by_bin
            .entry(r.device_id.unwrap_or_default())
            .or_default()
            .push((r.time, r.fill_ratio));
    }
    Ok(by_bin
        .iter()
        .flat_map(|(bin, readings)| overflow_alerts(rules, bin, readings, known_until))
        .filter(|a| from <= a.raised && a.raised < to)
        .filter(|a| {
            contractor.is_none() || ctx.zones.contractor_of_device(&a.device_id) == contractor
        })
        .collect())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// Local date in the city's time zone, `YYYY-MM-DD`. Default: today.
    #[param(value_type = Option<String>)]
    date: Option<Date>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertList {
    date: String,
    overflow_fill_ratio: f64,
    emptied_fill_ratio: f64,
    max_response_s: f64,
    /// By bin and time raised.
    #[schema(value_type = Vec<Object>)]
    alerts: Vec<OverflowAlert>,
}

/// The day's bin overflow alerts: raised by a reading at or above the overflow fill, answered
/// by the first reading at or below the emptied fill, in time or late (a contractor's token:
/// the bins its sections list).
#[utoipa::path(get, path = "/api/v1/bins/alerts", params(AlertParams),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn list_alerts(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    Query(params): Query<AlertParams>,
) -> Result<Json<AlertList>, ApiError> {
    let ctx = context(&state)?;
    let (date, from, to) = day(&state, ctx, params.date)?;
    let mine = principal.as_deref().and_then(Principal::contractor);
    let alerts = alerts_between(&state, ctx, from, to, mine).await?;
    Ok(Json(AlertList {
        date: date.to_string(),
        overflow_fill_ratio: ctx.bins.overflow_fill_ratio,
        emptied_fill_ratio: ctx.bins.emptied_fill_ratio,
        max_response_s: ctx.bins.max_response_s,
        alerts,
    }))
}
