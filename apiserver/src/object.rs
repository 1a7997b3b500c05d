//! Object metadata the server owns: uid, creationTimestamp, generateName, generation, and the
//! comparisons that decide whether an update changed anything. Pure functions over JSON.

use rand::Rng;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceKind;

/// RFC 3339 in UTC with second precision, as Kubernetes writes timestamps.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Five characters from upstream's generateName alphabet (no vowels, no confusable digits).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn name_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/name").and_then(Value::as_str)
}

/// The object's `metadata.resourceVersion` as a revision, if present and non-empty.
pub fn resource_version(object: &Value) -> ApiResult<Option<u64>> {
    match object.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => text.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {text:?}: must be an unsigned integer"
            ))
        }),
        Some(other) => Err(ApiError::bad_request(format!(
            "metadata.resourceVersion must be a string, got {other}"
        ))),
    }
}

/// Checks `apiVersion` and `kind` of a request body against the URL, filling them in when absent.
pub fn check_type(object: &mut Value, kind: &ResourceKind, body_kind: &str) -> ApiResult<()> {
    let expected_version = kind.api_version();
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(expected_version));
        }
        Some(version) if version == expected_version => {}
        Some(version) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({version}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(body_kind));
        }
        Some(found) if found == body_kind => {}
        Some(found) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({found}) does not match the expected kind ({body_kind})"
            )));
        }
    }
    if !map.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// Everything but metadata and status: what bumps `metadata.generation` when it changes.
pub fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The object without the field every write changes, for "did anything change" comparisons.
pub fn comparable(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin;

    #[test]
    fn type_checks() {
        let registry = builtin();
        let cm = registry.get("", "v1", "configmaps").unwrap();
        let mut object = json!({"metadata": {"name": "a"}});
        check_type(&mut object, cm, "ConfigMap").unwrap();
        assert_eq!(object["apiVersion"], "v1");
        let mut wrong = json!({"apiVersion": "apps/v1", "kind": "ConfigMap"});
        let err = check_type(&mut wrong, cm, "ConfigMap").unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
        assert_eq!(random_suffix().len(), 5);
        assert!(resource_version(&json!({"metadata": {"resourceVersion": "x"}})).is_err());
    }
}
