//! Request extractors whose rejections name the offending field.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query string parsed into `T`; unknown parameters and bad values are 400s naming the field.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| field_error(e, "query"))
    }
}

/// A device id path segment, checked against the contract's id rules.
pub struct DeviceId(pub String);

/// A credential's username path segment: a device id, or a service's name (the same rules).
pub struct Username(pub String);

/// The one path segment, named `field` in errors, checked against the id rules.
async fn id_segment<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    field: &'static str,
) -> Result<String, ApiError> {
    let Path(id) = Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::invalid(field, e.body_text()))?;
    if !cleanfleet_model::is_valid_device_id(&id) {
        return Err(ApiError::invalid(
            field,
            "must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit",
        ));
    }
    Ok(id)
}

impl<S: Send + Sync> FromRequestParts<S> for DeviceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        id_segment(parts, state, "device_id").await.map(DeviceId)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Username {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        id_segment(parts, state, "username").await.map(Username)
    }
}

/// A JSON request body parsed into `T`; a bad body is a 400 naming the field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| match e.status() {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
                    field: "body".into(),
                    message: e.body_text(),
                },
                _ => ApiError::invalid("body", e.body_text()),
            })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de)
            .map(JsonBody)
            .map_err(|e| field_error(e, "body"))
    }
}

/// A JSON value (a body already read and amended) parsed into `T`; a 400 naming the field.
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| field_error(e, "body"))
}

/// A deserialization error as a 400 naming the field: the path to it, or for unknown and
/// missing fields the name the message quotes ("unknown field `x`"), else `whole`.
fn field_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, whole: &str) -> ApiError {
    let path = e.path().to_string();
    let message = e.into_inner().to_string();
    let field = if path != "." {
        path
    } else {
        message.split('`').nth(1).unwrap_or(whole).to_owned()
    };
    ApiError::invalid(field, message)
}
