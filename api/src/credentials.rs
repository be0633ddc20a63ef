//! Broker credentials over HTTP: the admin's issue, list, rotate and revoke (what `cleanfleet
//! devices` does), and the hooks an external broker (EMQX's HTTP authentication and
//! authorization, `deploy/emqx/`) asks who a client is and what it may do, by the same rules
//! as the embedded broker (`cleanfleet_identity::Principal`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cleanfleet_identity::Role;
use cleanfleet_store::credentials::{self, CredentialError};
use cleanfleet_store::{CredentialRecord, StoreError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Query, Username};
use crate::ApiState;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// A credential as listed: never its secret or hash.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialView {
    username: String,
    /// A device kind, or `ingest`.
    role: String,
    issued: Timestamp,
    /// When the secret was last replaced; `issued` until then.
    rotated: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked: Option<Timestamp>,
}

impl From<CredentialRecord> for CredentialView {
    fn from(c: CredentialRecord) -> Self {
        CredentialView {
            username: c.username,
            role: c.role.as_str().to_owned(),
            issued: c.issued_at,
            rotated: c.rotated_at,
            revoked: c.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialPage {
    items: Vec<CredentialView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CredentialPageParams {
    /// Usernames after this one (keyset pagination).
    after: Option<String>,
    /// 1..=1000, default 100.
    limit: Option<u32>,
}

/// Every credential, revoked ones too, by username. Admins only.
#[utoipa::path(get, path = "/api/v1/credentials", params(CredentialPageParams),
    responses((status = 200, body = CredentialPage), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_credentials(
    State(state): State<ApiState>,
    Query(p): Query<CredentialPageParams>,
) -> Result<Json<CredentialPage>, ApiError> {
    let limit = match p.limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => n as usize,
        _ => {
            return Err(ApiError::invalid(
                "limit",
                format!("must be 1..={MAX_PAGE}"),
            ))
        }
    };
    let mut items: Vec<CredentialView> = state
        .credentials
        .credentials()
        .await?
        .into_iter()
        .filter(|c| p.after.as_ref().is_none_or(|after| &c.username > after))
        .take(limit + 1)
        .map(CredentialView::from)
        .collect();
    let next_after = (items.len() > limit).then(|| {
        items.truncate(limit);
        items[limit - 1].username.clone()
    });
    Ok(Json(CredentialPage { items, next_after }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCredential {
    /// The device id (or a service's name under `cleanfleet-`).
    username: String,
    /// A device kind (`sweeper`, `bin`, ...), or `ingest`.
    role: String,
}

/// A secret just made: shown once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IssuedSecret {
    username: String,
    role: String,
    secret: String,
    /// When it was issued or rotated: the records it delivers name this time.
    at: Timestamp,
}

fn credential_error(e: CredentialError) -> ApiError {
    match e {
        CredentialError::Username(e) => ApiError::invalid("username", e.to_string()),
        CredentialError::NoLiveCredential(username) => ApiError::NotFound {
            resource: "live credential",
            id: username,
        },
        CredentialError::OtherRole { .. } => ApiError::Conflict {
            field: "role".into(),
            message: e.to_string(),
        },
        CredentialError::Store(StoreError::Conflict(message)) => ApiError::Conflict {
            field: "username".into(),
            message,
        },
        CredentialError::Store(e) => e.into(),
    }
}

/// Issues a credential; the answer holds its secret, the only time it is shown. A username
/// once issued, even revoked, is 409.
#[utoipa::path(post, path = "/api/v1/credentials", request_body = NewCredential,
    responses((status = 201, body = IssuedSecret), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn issue_credential(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<NewCredential>,
) -> Result<Response, ApiError> {
    let role: Role = body
        .role
        .parse()
        .map_err(|e: cleanfleet_identity::IdentityError| {
            ApiError::invalid("role", e.to_string())
        })?;
    let at = state.clock.now();
    let secret = credentials::issue(state.credentials.as_ref(), role, &body.username, at)
        .await
        .map_err(credential_error)?;
    let issued = IssuedSecret {
        username: body.username,
        role: role.as_str().to_owned(),
        secret,
        at,
    };
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// A new secret for a live credential; the old one stops working at once (connections on
/// it are closed within the broker's recheck interval).
#[utoipa::path(post, path = "/api/v1/credentials/{username}/rotate",
    params(("username" = String, Path)),
    responses((status = 200, body = IssuedSecret), (status = 404, body = ErrorBody)))]
pub(crate) async fn rotate_credential(
    State(state): State<ApiState>,
    Username(username): Username,
) -> Result<Json<IssuedSecret>, ApiError> {
    let at = state.clock.now();
    let secret = credentials::rotate(state.credentials.as_ref(), &username, at)
        .await
        .map_err(credential_error)?;
    let role = state
        .credentials
        .credential(&username)
        .await?
        .map(|c| c.role.as_str().to_owned())
        .unwrap_or_default();
    Ok(Json(IssuedSecret {
        username,
        role,
        secret,
        at,
    }))
}

/// Revokes a credential for good: it logs nobody in, and its username is not issued again.
#[utoipa::path(post, path = "/api/v1/credentials/{username}/revoke",
    params(("username" = String, Path)),
    responses((status = 200, body = CredentialView), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_credential(
    State(state): State<ApiState>,
    Username(username): Username,
) -> Result<Json<CredentialView>, ApiError> {
    credentials::revoke(state.credentials.as_ref(), &username, state.clock.now())
        .await
        .map_err(credential_error)?;
    let record = state
        .credentials
        .credential(&username)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("{username:?} vanished on revocation")))?;
    Ok(Json(record.into()))
}

/// EMQX's HTTP authentication request (`deploy/emqx/cleanfleet.hocon`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrokerLogin {
    username: String,
    password: String,
    clientid: String,
}

/// `allow` or `deny`, as EMQX reads it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BrokerVerdict {
    result: &'static str,
    /// Never: every client is bound by the rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    is_superuser: Option<bool>,
}

fn verdict(allow: bool, login: bool) -> Json<BrokerVerdict> {
    Json(BrokerVerdict {
        result: if allow { "allow" } else { "deny" },
        is_superuser: login.then_some(false),
    })
}

/// Whether a client may connect: a live credential, its secret, and the client id its role
/// may use (a device's own id; a service's under `cleanfleet-`). 503 when the store cannot
/// be asked (EMQX then treats it as `ignore`).
#[utoipa::path(post, path = "/api/v1/mqtt/authenticate", request_body = BrokerLogin,
    responses((status = 200, body = BrokerVerdict), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn broker_authenticate(
    State(state): State<ApiState>,
    JsonBody(login): JsonBody<BrokerLogin>,
) -> Result<Json<BrokerVerdict>, ApiError> {
    let principal = state
        .mqtt_logins
        .authenticate(&login.username, &login.password)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot check the login: {e}")))?;
    let allow = principal.is_some_and(|p| p.may_use_client_id(&login.clientid));
    Ok(verdict(allow, true))
}

/// EMQX's HTTP authorization request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrokerAction {
    username: String,
    clientid: String,
    /// `publish` or `subscribe`.
    action: String,
    /// The topic published to, or the filter subscribed to (`$share/...` included).
    topic: String,
}

/// Whether a logged-in client may publish to a topic or subscribe to a filter, by its live
/// credential's role: a device publishes only under its own kind and id and subscribes to
/// nothing; only ingest subscribes to the data topics. A revoked credential may do nothing.
#[utoipa::path(post, path = "/api/v1/mqtt/authorize", request_body = BrokerAction,
    responses((status = 200, body = BrokerVerdict), (status = 400, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn broker_authorize(
    State(state): State<ApiState>,
    JsonBody(request): JsonBody<BrokerAction>,
) -> Result<Json<BrokerVerdict>, ApiError> {
    let principal = state
        .mqtt_logins
        .certified(&request.username)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot check the credential: {e}")))?
        .filter(|p| p.may_use_client_id(&request.clientid));
    let allow = match request.action.as_str() {
        "publish" => principal.is_some_and(|p| p.may_publish(&request.topic)),
        "subscribe" => principal.is_some_and(|p| p.may_subscribe(&request.topic)),
        _ => return Err(ApiError::invalid("action", "publish or subscribe")),
    };
    Ok(verdict(allow, false))
}
