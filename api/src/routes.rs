use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use cleanfleet_ingest::IngestMetrics;
use cleanfleet_model::{DeviceKind, Fix, RejectReason};
use cleanfleet_store::{DeadLetterQuery, DeviceQuery, DeviceSummary, Store, StoreStats};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{DeviceId, Query};
use crate::ApiState;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
const DEFAULT_TRACK_POINTS: u32 = 10_000;
const MAX_TRACK_POINTS: u32 = 100_000;
const MAX_TRACK_WINDOW: SignedDuration = SignedDuration::from_hours(24 * 31);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cleanfleet API",
        description = "City sanitation fleet data: devices, tracks, coverage and passes, dead letters, ingest statistics."
    ),
    paths(
        healthz,
        readyz,
        list_devices,
        get_device,
        list_vehicles,
        list_bins,
        crate::bins::list_alerts,
        vehicle_track,
        device_provenance,
        list_dead_letters,
        ingest_stats,
        crate::coverage::coverage_report,
        crate::coverage::coverage_segments,
        crate::coverage::list_passes,
        crate::coverage::list_zones,
        crate::coverage::coverage_vehicles,
        crate::coverage::coverage_daily,
        crate::coverage::coverage_sections,
        crate::inspection::submit_sample,
        crate::inspection::list_samples,
        crate::inspection::list_inspections,
        crate::inspection::failed_samples,
        crate::inspection::contractor_assessment,
        crate::coverage::get_segment,
        crate::matching::match_track_request,
        crate::credentials::list_credentials,
        crate::credentials::issue_credential,
        crate::credentials::rotate_credential,
        crate::credentials::revoke_credential,
        crate::credentials::broker_authenticate,
        crate::credentials::broker_authorize
    ),
    components(schemas(
        ErrorBody,
        DevicePage,
        TrackGeometry,
        DeviceSummary,
        DeadLetterPage,
        DeadLetterView,
        IngestStats,
        StoreStats,
        ProcessCounters,
        crate::bins::AlertList,
        crate::coverage::CoverageReport,
        cleanfleet_reports::DayCoverage,
        cleanfleet_reports::Share,
        cleanfleet_reports::Missed,
        crate::coverage::PassPage,
        cleanfleet_reports::ZoneList,
        cleanfleet_reports::VehicleDay,
        cleanfleet_reports::DayShares,
        crate::coverage::DailyReport,
        cleanfleet_reports::DailyCoverage,
        cleanfleet_reports::SectionDay,
        cleanfleet_reports::SampleView,
        crate::inspection::SampleList,
        cleanfleet_reports::InspectionView,
        crate::inspection::InspectionList,
        cleanfleet_model::InspectionSample,
        crate::coverage::SectionDayList,
        crate::coverage::VehicleDayList,
        cleanfleet_reports::ZoneView,
        cleanfleet_store::PassRecord,
        cleanfleet_store::CoverageBacklog,
        cleanfleet_store::Source,
        cleanfleet_store::SourceRun,
        cleanfleet_store::Trust,
        Provenance,
        crate::credentials::CredentialView,
        crate::credentials::CredentialPage,
        crate::credentials::NewCredential,
        crate::credentials::IssuedSecret,
        crate::credentials::BrokerLogin,
        crate::credentials::BrokerAction,
        crate::credentials::BrokerVerdict
    ))
)]
pub struct ApiDoc;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{device_id}", get(get_device))
        .route(
            "/api/v1/devices/{device_id}/provenance",
            get(device_provenance),
        )
        .route("/api/v1/vehicles", get(list_vehicles))
        .route("/api/v1/vehicles/{device_id}/track", get(vehicle_track))
        .route("/api/v1/bins", get(list_bins))
        .route("/api/v1/bins/alerts", get(crate::bins::list_alerts))
        .route("/api/v1/dead-letters", get(list_dead_letters))
        .route("/api/v1/ingest/stats", get(ingest_stats))
        .route("/api/v1/coverage", get(crate::coverage::coverage_report))
        .route(
            "/api/v1/coverage/segments",
            get(crate::coverage::coverage_segments),
        )
        .route("/api/v1/passes", get(crate::coverage::list_passes))
        .route("/api/v1/zones", get(crate::coverage::list_zones))
        .route(
            "/api/v1/match",
            post(crate::matching::match_track_request)
                .layer(DefaultBodyLimit::max(crate::matching::MAX_TRACK_BYTES)),
        )
        .route(
            "/api/v1/coverage/vehicles",
            get(crate::coverage::coverage_vehicles),
        )
        .route(
            "/api/v1/coverage/daily",
            get(crate::coverage::coverage_daily),
        )
        .route(
            "/api/v1/coverage/sections",
            get(crate::coverage::coverage_sections),
        )
        .route(
            "/api/v1/samples",
            get(crate::inspection::list_samples).post(crate::inspection::submit_sample),
        )
        .route(
            "/api/v1/inspections",
            get(crate::inspection::list_inspections),
        )
        .route(
            "/api/v1/inspections/failed-samples",
            get(crate::inspection::failed_samples),
        )
        .route(
            "/api/v1/assessment",
            get(crate::inspection::contractor_assessment),
        )
        .route(
            "/api/v1/segments/{segment}",
            get(crate::coverage::get_segment),
        )
        .route(
            "/api/v1/credentials",
            get(crate::credentials::list_credentials).post(crate::credentials::issue_credential),
        )
        .route(
            "/api/v1/credentials/{username}/rotate",
            post(crate::credentials::rotate_credential),
        )
        .route(
            "/api/v1/credentials/{username}/revoke",
            post(crate::credentials::revoke_credential),
        )
        .route(
            "/api/v1/mqtt/authenticate",
            post(crate::credentials::broker_authenticate),
        )
        .route(
            "/api/v1/mqtt/authorize",
            post(crate::credentials::broker_authorize),
        )
        .fallback(no_such_route)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// What the probes (`/healthz`, `/readyz`, `/metrics`) look at: the API's, or those of a
/// stage running without it (`cleanfleet ingest`, `coverage`, `broker` on their metrics port).
#[derive(Clone)]
pub struct Probes {
    pub store: Arc<dyn Store>,
    pub registry: prometheus::Registry,
    /// Present when ingestion runs in this process: it must be connected to be ready.
    pub ingest: Option<IngestMetrics>,
}

impl axum::extract::FromRef<ApiState> for Probes {
    fn from_ref(state: &ApiState) -> Probes {
        Probes {
            store: state.store.clone(),
            registry: state.registry.clone(),
            ingest: state.ingest.clone(),
        }
    }
}

/// Any path that is not a route: 404 JSON.
async fn no_such_route() -> ApiError {
    ApiError::NotFound {
        resource: "route",
        id: String::new(),
    }
}

/// The probes alone, for a process without the API.
pub fn probe_routes(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(no_such_route)
        .with_state(probes)
}

/// Readiness: the store answers and, when ingestion runs here, it is connected to the broker.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "not ready", body = ErrorBody)))]
async fn readyz(State(state): State<Probes>) -> Result<Json<Value>, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|_| ApiError::Unavailable("the store does not answer".into()))?;
    if let Some(ingest) = &state.ingest {
        if ingest.broker_connected.get() == 0 {
            return Err(ApiError::Unavailable(
                "ingestion is not connected to the MQTT broker".into(),
            ));
        }
    }
    Ok(Json(json!({ "status": "ready" })))
}

async fn metrics(State(state): State<Probes>) -> Response {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&state.registry.gather())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::invalid("limit", "must be at least 1")),
        n if n > MAX_PAGE => Err(ApiError::invalid(
            "limit",
            format!("must be at most {MAX_PAGE}"),
        )),
        n => Ok(n),
    }
}

/// A page of devices; pass `next_cursor` as `after` for the next page.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<DeviceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeviceListParams {
    /// Comma-separated device kinds, e.g. `sweeper,flusher`.
    kind: Option<String>,
    /// Cursor: the `next_cursor` of the previous page.
    after: Option<String>,
    /// Page size, 1..=1000, default 100.
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageParams {
    after: Option<String>,
    limit: Option<u32>,
}

fn parse_kinds(kinds: &str) -> Result<Vec<DeviceKind>, ApiError> {
    let mut parsed: Vec<DeviceKind> = kinds
        .split(',')
        .map(|k| {
            k.trim().parse().map_err(|()| {
                let known: Vec<&str> = DeviceKind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::invalid(
                    "kind",
                    format!("unknown kind {k:?}; one of {}", known.join(", ")),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

/// The devices a caller may see: all (`None`) for city staff; for a contractor, those its
/// sections list.
fn own_devices(state: &ApiState, principal: Option<&Principal>) -> Option<Vec<String>> {
    let mine = principal?.contractor()?;
    Some(
        state
            .coverage
            .as_ref()
            .map(|ctx| ctx.zones.devices_of(mine).map(str::to_owned).collect())
            .unwrap_or_default(),
    )
}

/// 404 for a device the caller may not see, as if it did not exist.
fn check_visible(
    state: &ApiState,
    principal: Option<&Principal>,
    device_id: &str,
) -> Result<(), ApiError> {
    match own_devices(state, principal) {
        Some(own) if !own.iter().any(|d| d == device_id) => Err(ApiError::NotFound {
            resource: "device",
            id: device_id.to_owned(),
        }),
        _ => Ok(()),
    }
}

async fn device_page(
    state: &ApiState,
    principal: Option<&Principal>,
    kinds: Vec<DeviceKind>,
    after: Option<String>,
    limit: Option<u32>,
) -> Result<Json<DevicePage>, ApiError> {
    let limit = page_limit(limit)?;
    let items = state
        .store
        .devices(DeviceQuery {
            kinds,
            after,
            limit,
            only: own_devices(state, principal),
        })
        .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|d| d.device_id.clone()))
        .flatten();
    Ok(Json(DevicePage { items, next_cursor }))
}

/// All devices with their latest state, by id (a contractor's token: the devices its
/// sections list).
#[utoipa::path(get, path = "/api/v1/devices", params(DeviceListParams), responses(
    (status = 200, body = DevicePage), (status = 400, body = ErrorBody)))]
async fn list_devices(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    Query(p): Query<DeviceListParams>,
) -> Result<Json<DevicePage>, ApiError> {
    let kinds = p.kind.as_deref().map(parse_kinds).transpose()?;
    device_page(
        &state,
        principal.as_deref(),
        kinds.unwrap_or_default(),
        p.after,
        p.limit,
    )
    .await
}

/// Vehicles (sweepers, washer-sweepers, flushers, sprinklers, collection trucks) with their
/// latest position and work state (a contractor's token: its own).
#[utoipa::path(get, path = "/api/v1/vehicles", params(PageParams), responses(
    (status = 200, body = DevicePage), (status = 400, body = ErrorBody)))]
async fn list_vehicles(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    Query(p): Query<PageParams>,
) -> Result<Json<DevicePage>, ApiError> {
    let kinds = DeviceKind::ALL
        .into_iter()
        .filter(|k| k.is_vehicle())
        .collect();
    device_page(&state, principal.as_deref(), kinds, p.after, p.limit).await
}

/// Smart bins with their latest fill level.
#[utoipa::path(get, path = "/api/v1/bins", params(PageParams), responses(
    (status = 200, body = DevicePage), (status = 400, body = ErrorBody)))]
async fn list_bins(
    State(state): State<ApiState>,
    Query(p): Query<PageParams>,
) -> Result<Json<DevicePage>, ApiError> {
    device_page(&state, None, vec![DeviceKind::Bin], p.after, p.limit).await
}

/// One device with its latest state.
#[utoipa::path(get, path = "/api/v1/devices/{device_id}", params(("device_id" = String, Path)), responses(
    (status = 200, body = DeviceSummary), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_device(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    DeviceId(id): DeviceId,
) -> Result<Json<DeviceSummary>, ApiError> {
    check_visible(&state, principal.as_deref(), &id)?;
    state
        .store
        .device(&id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            resource: "device",
            id,
        })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TrackParams {
    /// RFC 3339 start (inclusive). Default: 24 h before `to`.
    from: Option<Timestamp>,
    /// RFC 3339 end (exclusive). Default: now.
    to: Option<Timestamp>,
    /// `line` (default): one LineString feature with per-point times; `points`: one Point
    /// feature per fix with all its fields.
    geometry: Option<TrackGeometry>,
    /// Most fixes returned, 1..=100000, default 10000.
    limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum TrackGeometry {
    #[default]
    Line,
    Points,
}

/// A range of at most 31 days, by default the 24 h before now.
fn time_window(
    state: &ApiState,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let to = to.unwrap_or_else(|| state.clock.now());
    let from = match from {
        Some(from) => from,
        None => to
            .checked_sub(SignedDuration::from_hours(24))
            .map_err(|_| ApiError::invalid("to", "too early to look 24 h back from"))?,
    };
    if from >= to {
        return Err(ApiError::invalid("to", "must be after `from`"));
    }
    if to.duration_since(from) > MAX_TRACK_WINDOW {
        return Err(ApiError::invalid(
            "from",
            "the range may span at most 31 days",
        ));
    }
    Ok((from, to))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WindowParams {
    /// RFC 3339 start (inclusive). Default: 24 h before `to`.
    from: Option<Timestamp>,
    /// RFC 3339 end (exclusive). Default: now. At most 31 days after `from`.
    to: Option<Timestamp>,
}

/// Who delivered a device's records: for each stream, its records in time order as runs of
/// one source each.
#[derive(Debug, Serialize, ToSchema)]
struct Provenance {
    device_id: String,
    from: Timestamp,
    to: Timestamp,
    runs: Vec<cleanfleet_store::SourceRun>,
}

/// The provenance of every record of one device timed in a range: which login (the
/// device's credential, and which of its secrets) or API token delivered it, through which
/// broker, and how far that vouches for it (`trust`).
#[utoipa::path(get, path = "/api/v1/devices/{device_id}/provenance",
    params(("device_id" = String, Path), WindowParams),
    responses((status = 200, body = Provenance), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn device_provenance(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    DeviceId(id): DeviceId,
    Query(p): Query<WindowParams>,
) -> Result<Json<Provenance>, ApiError> {
    check_visible(&state, principal.as_deref(), &id)?;
    let (from, to) = time_window(&state, p.from, p.to)?;
    if state.store.device(&id).await?.is_none() {
        return Err(ApiError::NotFound {
            resource: "device",
            id,
        });
    }
    let runs = state.provenance.provenance(&id, from, to).await?;
    Ok(Json(Provenance {
        device_id: id,
        from,
        to,
        runs,
    }))
}

/// A vehicle's (or wearable's) track over a time range as RFC 7946 GeoJSON.
#[utoipa::path(get, path = "/api/v1/vehicles/{device_id}/track",
    params(("device_id" = String, Path), TrackParams),
    responses((status = 200, description = "GeoJSON FeatureCollection", content_type = "application/geo+json"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn vehicle_track(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    DeviceId(id): DeviceId,
    Query(p): Query<TrackParams>,
) -> Result<Response, ApiError> {
    check_visible(&state, principal.as_deref(), &id)?;
    let (from, to) = time_window(&state, p.from, p.to)?;
    let limit = match p.limit.unwrap_or(DEFAULT_TRACK_POINTS) {
        n @ 1..=MAX_TRACK_POINTS => n,
        _ => {
            return Err(ApiError::invalid(
                "limit",
                format!("must be 1..={MAX_TRACK_POINTS}"),
            ))
        }
    };
    let device = state.store.device(&id).await?.ok_or(ApiError::NotFound {
        resource: "device",
        id: id.clone(),
    })?;
    if !device.kind.reports_fixes() {
        return Err(ApiError::NotFound {
            resource: "vehicle",
            id,
        });
    }
    let fixes = state.store.track(&id, from, to, limit).await?;
    let body = track_geojson(&id, from, to, &fixes, p.geometry.unwrap_or_default());
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(body)).into_response())
}

fn track_geojson(
    device_id: &str,
    from: Timestamp,
    to: Timestamp,
    fixes: &[Fix],
    geometry: TrackGeometry,
) -> Value {
    let position = |f: &Fix| json!([f.lon, f.lat]);
    let features: Vec<Value> = match geometry {
        TrackGeometry::Line if fixes.len() >= 2 => vec![json!({
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": fixes.iter().map(position).collect::<Vec<_>>(),
            },
            "properties": {
                "device_id": device_id,
                "fix_count": fixes.len(),
                "times": fixes.iter().map(|f| f.time.to_string()).collect::<Vec<_>>(),
                "speeds_kmh": fixes.iter().map(|f| f.speed_kmh).collect::<Vec<_>>(),
                "working": fixes.iter().map(|f| f.work.any()).collect::<Vec<_>>(),
            },
        })],
        _ => fixes
            .iter()
            .map(|f| {
                let mut properties = serde_json::to_value(f).unwrap_or_default();
                if let Value::Object(map) = &mut properties {
                    map.remove("lat");
                    map.remove("lon");
                    map.insert("device_id".into(), device_id.into());
                }
                json!({
                    "type": "Feature",
                    "geometry": { "type": "Point", "coordinates": position(f) },
                    "properties": properties,
                })
            })
            .collect(),
    };
    json!({
        "type": "FeatureCollection",
        "features": features,
        "properties": { "device_id": device_id, "from": from.to_string(), "to": to.to_string() },
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadLetterParams {
    /// Only this reject reason, e.g. `malformed_json`.
    reason: Option<String>,
    /// Cursor: the `next_cursor` of the previous page (newest first).
    before_id: Option<i64>,
    limit: Option<u32>,
}

/// A rejected message as kept, with its raw payload.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    pub topic: String,
    pub reason: String,
    pub detail: String,
    /// The raw payload, base64.
    pub payload_base64: String,
    /// The payload as text, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    pub first_received: Timestamp,
    pub last_received: Timestamp,
    /// Deliveries of this exact message (redelivery and retransmits included).
    pub times_seen: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// Rejected messages, newest first.
#[utoipa::path(get, path = "/api/v1/dead-letters", params(DeadLetterParams), responses(
    (status = 200, body = DeadLetterPage), (status = 400, body = ErrorBody)))]
async fn list_dead_letters(
    State(state): State<ApiState>,
    Query(p): Query<DeadLetterParams>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let limit = page_limit(p.limit)?;
    let reason = p
        .reason
        .as_deref()
        .map(|r| {
            RejectReason::parse(r)
                .ok_or_else(|| ApiError::invalid("reason", format!("unknown reject reason {r:?}")))
        })
        .transpose()?;
    let letters = state
        .store
        .dead_letters(DeadLetterQuery {
            reason,
            before_id: p.before_id,
            limit,
        })
        .await?;
    let next_cursor = (letters.len() == limit as usize)
        .then(|| letters.last().map(|d| d.id))
        .flatten();
    let items = letters
        .into_iter()
        .map(|d| DeadLetterView {
            id: d.id,
            topic: d.topic,
            reason: d.reason,
            detail: d.detail,
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&d.payload),
            payload_text: String::from_utf8(d.payload).ok(),
            first_received: d.first_received,
            last_received: d.last_received,
            times_seen: d.times_seen,
        })
        .collect();
    Ok(Json(DeadLetterPage { items, next_cursor }))
}

/// Counters of this ingest process since it started (absent when ingestion runs elsewhere).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessCounters {
    pub broker_connected: bool,
    pub broker_reconnects: u64,
    pub accepted_messages_by_stream: BTreeMap<String, u64>,
    pub rejected_messages_by_reason: BTreeMap<String, u64>,
    pub fixes_stored: u64,
    pub duplicate_records: u64,
    pub queue_depth_messages: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestStats {
    /// What the store holds: durable, whichever process ingested it.
    pub store: StoreStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessCounters>,
}

/// Ingest statistics: store contents and this process's counters.
#[utoipa::path(get, path = "/api/v1/ingest/stats", responses((status = 200, body = IngestStats)))]
async fn ingest_stats(State(state): State<ApiState>) -> Result<Json<IngestStats>, ApiError> {
    let store = state.store.stats().await?;
    let process = state.ingest.as_ref().map(|m| {
        let by_label = |vec: &prometheus::IntCounterVec, labels: Vec<&'static str>| {
            labels
                .into_iter()
                .map(|l| (l.to_owned(), vec.with_label_values(&[l]).get()))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        ProcessCounters {
            broker_connected: m.broker_connected.get() == 1,
            broker_reconnects: m.broker_reconnects.get(),
            accepted_messages_by_stream: by_label(
                &m.accepted_messages,
                cleanfleet_model::Stream::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect(),
            ),
            rejected_messages_by_reason: by_label(
                &m.rejected_messages,
                RejectReason::ALL.iter().map(|r| r.as_str()).collect(),
            ),
            fixes_stored: m.fixes.get(),
            duplicate_records: m.duplicate_records.get(),
            queue_depth_messages: m.queue_depth.get(),
        }
    });
    Ok(Json(IngestStats { store, process }))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::ApiDoc;

    /// A response that flattens a report (`#[serde(flatten)]`) documents the report's fields:
    /// every `$ref` in the document resolves, and `/api/v1/coverage`'s body has `covered`.
    #[test]
    fn flattened_reports_are_documented_and_every_reference_resolves() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in &all {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(schemas[name].is_object(), "unresolved {r}");
        }
        let report = schemas["CoverageReport"].to_string();
        assert!(report.contains("DayCoverage"), "{report}");
        assert!(schemas["DayCoverage"]["properties"]["covered"].is_object());
        assert!(schemas["DailyReport"].to_string().contains("DailyCoverage"));
    }
}
