//! Every failed request ends here: an [`ApiError`] is a `metav1.Status` with upstream's code, reason
//! and message, and storage errors are mapped to it in exactly one function ([`ApiError::storage`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::registry::GroupResource;

/// One field problem behind a 422 `Invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: "value": detail`.
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl std::fmt::Display) -> Self {
        Self {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", json!(value)),
            field: field.into(),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }

    /// An immutable field that changed.
    pub fn immutable(field: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueInvalid",
            message: "Invalid value: field is immutable".into(),
            field: field.into(),
        }
    }

    /// The text upstream prints for the cause: `field: message`.
    fn text(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A request that failed, as the client will see it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    details: Option<serde_json::Value>,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    fn object_details(resource: &GroupResource, name: &str) -> serde_json::Value {
        let mut details = json!({ "name": name, "kind": resource.resource });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        details
    }

    pub fn not_found(resource: &GroupResource, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} \"{name}\" not found"),
        )
        .with_details(Self::object_details(resource, name))
    }

    /// An unknown path or resource.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(resource: &GroupResource, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(Self::object_details(resource, name))
    }

    /// A stale resourceVersion or uid precondition.
    pub fn conflict(resource: &GroupResource, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(Self::object_details(resource, name))
    }

    /// 409 Conflict with a specific message.
    pub fn conflict_message(resource: &GroupResource, name: &str, message: String) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
            .with_details(Self::object_details(resource, name))
    }

    /// 409 for a server-side apply that would change fields other managers own.
    pub fn apply_conflict(message: String, causes: Vec<Cause>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message).with_details(json!({ "causes": causes }))
    }

    /// 422 with the causes listed as upstream prints them.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let texts: Vec<String> = causes.iter().map(Cause::text).collect();
        let summary = if texts.len() == 1 {
            texts[0].clone()
        } else {
            format!("[{}]", texts.join(", "))
        };
        let mut details = json!({ "name": name, "kind": kind, "causes": causes });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {summary}"),
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn forbidden(resource: &GroupResource, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{resource} \"{name}\" is forbidden: {why}"),
        )
        .with_details(Self::object_details(resource, name))
    }

    /// An anonymous (or otherwise unauthorised) request for a non-public path.
    pub fn forbidden_path(user: &str, verb: &str, path: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
        )
        .with_details(json!({}))
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 415 for a patch type the resource does not take (strategic merge on custom resources).
    pub fn unsupported_patch_type(accepted: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 413 with upstream's `Request entity too large: …` wording for `why`.
    pub fn too_large_because(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: {why}"),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }

    /// The one mapping from storage errors to API errors.
    pub fn storage(err: coxswain_storage::Error, resource: &GroupResource, name: &str) -> Self {
        use coxswain_storage::Error as E;
        match err {
            E::NotFound { .. } => Self::not_found(resource, name),
            E::AlreadyExists { .. } => Self::already_exists(resource, name),
            E::Conflict { .. } => Self::conflict(resource, name),
            E::Expired { requested, compacted } => {
                Self::expired(format!("too old resource version: {requested} ({compacted})"))
            }
            E::TooLargeRevision { requested, current } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            )
            .with_details(json!({ "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }], "retryAfterSeconds": 1 })),
            E::InvalidContinue(detail) => Self::bad_request(format!("continue key is not valid: {detail}")),
            E::InvalidSelector(detail) => Self::bad_request(format!("unable to parse requirement: {detail}")),
            E::InvalidKey(detail) | E::InvalidValue(detail) => Self::bad_request(detail),
            E::Backend(_) | E::Closed => {
                tracing::warn!(error = %err, "storage unavailable");
                Self::unavailable(format!("storage is unavailable: {err}"))
            }
            E::Corrupt(_) | E::Open(_) => {
                tracing::error!(error = %err, "storage failure");
                Self::internal(err.to_string())
            }
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> serde_json::Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code.as_u16(), self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut response = (self.code, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_upstream() {
        let cm = GroupResource::new("", "configmaps");
        assert_eq!(
            ApiError::not_found(&cm, "nope").message,
            "configmaps \"nope\" not found"
        );
        let deploy = GroupResource::new("apps", "deployments");
        assert_eq!(
            ApiError::already_exists(&deploy, "web").message,
            "deployments.apps \"web\" already exists"
        );
        let invalid = ApiError::invalid(
            "ConfigMap",
            "",
            "bad_name",
            vec![Cause::invalid("metadata.name", "bad_name", "oops")],
        );
        assert_eq!(
            invalid.message,
            "ConfigMap \"bad_name\" is invalid: metadata.name: Invalid value: \"bad_name\": oops"
        );
        assert_eq!(invalid.status()["details"]["causes"][0]["field"], "metadata.name");
        let grouped = ApiError::invalid(
            "Deployment",
            "apps",
            "web",
            vec![Cause::required("spec.selector")],
        );
        assert_eq!(
            grouped.message,
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
    }
}
