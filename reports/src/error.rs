//! Why a report cannot be made: something the request names does not exist, or a value makes
//! no sense. Both name what the caller got wrong.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// A section, contractor or grid cell the request names is not the city's (or not one the
    /// caller may see: a contractor asking for another's finds nothing).
    #[error("no {resource} {id:?}")]
    NotFound { resource: &'static str, id: String },
    /// A request field's value makes no sense.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl ReportError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ReportError::Invalid {
            field,
            message: message.into(),
        }
    }
}
