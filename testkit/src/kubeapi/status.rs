//! Errors as the API server reports them: `Status` objects with a reason and an HTTP code.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// A failed API request, as a Kubernetes `Status` object describes it.
///
/// The HTTP handlers answer with it as the response body; the test controls on
/// [`FakeApiServer`](super::FakeApiServer) return it, so a test sees the same `reason` and
/// `code` a client would.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct StatusError {
    /// The HTTP status code (`404`, `409`, `410`, ...).
    pub code: u16,
    /// The machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Expired`, ...).
    pub reason: String,
    /// The human-readable message, worded as the real API server words it.
    pub message: String,
    /// `details` of the `Status` (name, group, kind, retryAfterSeconds), if any.
    pub details: Option<Value>,
}

impl StatusError {
    /// An error with `code`, `reason` and `message` and no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        StatusError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    /// The error an injected fault answers with: the reason the API server gives for `code`.
    pub fn for_code(code: u16, message: impl Into<String>) -> Self {
        let mut error = StatusError::new(code, reason_for_code(code), message);
        if code == 429 {
            error.details = Some(json!({ "retryAfterSeconds": 1 }));
        }
        error
    }

    /// `404 NotFound` for the object `name` of type `rt`.
    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        StatusError::new(404, "NotFound", format!("{rt} \"{name}\" not found"))
            .with_details(rt, name)
    }

    /// `409 AlreadyExists` for a create of an existing object.
    pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> Self {
        StatusError::new(
            409,
            "AlreadyExists",
            format!("{rt} \"{name}\" already exists"),
        )
        .with_details(rt, name)
    }

    /// `409 Conflict` for a write whose `resourceVersion` (or uid) precondition is stale.
    pub(crate) fn conflict(rt: &ResourceType, name: &str) -> Self {
        StatusError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {rt} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .with_details(rt, name)
    }

    /// `410 Expired` for a watch or list from a compacted resource version.
    pub(crate) fn expired(requested: u64, oldest: u64) -> Self {
        StatusError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// `400 BadRequest`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        StatusError::new(400, "BadRequest", message)
    }

    /// `422 Invalid` for the object `name` of type `rt`, with the field and what is wrong.
    pub(crate) fn invalid(rt: &ResourceType, name: &str, cause: &str) -> Self {
        StatusError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {cause}", rt.kind),
        )
        .with_details(rt, name)
    }

    /// `404 NotFound` for a path that names no served resource.
    pub(crate) fn no_route(path: &str) -> Self {
        StatusError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// `405 MethodNotAllowed`.
    pub(crate) fn method_not_allowed() -> Self {
        StatusError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// `415 UnsupportedMediaType` for a patch of an unknown content type.
    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        StatusError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted \
                 media types include: application/json, application/yaml, \
                 application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json, application/apply-patch+yaml"
            ),
        )
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        let mut details = json!({ "name": name, "kind": rt.plural });
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        self.details = Some(details);
        self
    }

    /// The `Status` object.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// The reason the API server gives with an HTTP code.
fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}
