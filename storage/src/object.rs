//! Stored objects and the little the store reads from or writes into their JSON: it owns
//! `metadata.resourceVersion`, reads `metadata.uid` for uid preconditions and `metadata.labels` for
//! label-selector push-down. Everything else in a value is opaque to the store.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::key::ObjectKey;

/// Label set of an object, ordered so that its JSON form is canonical.
pub type Labels = BTreeMap<String, String>;

/// One object as stored: its key, the revision of its last change and its JSON bytes (with
/// `metadata.resourceVersion` equal to `revision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: ObjectKey,
    pub revision: u64,
    pub value: Bytes,
}

impl StoredObject {
    /// Parses the value as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.value)
            .map_err(|err| Error::Corrupt(format!("{}: stored value is not JSON: {err}", self.key)))
    }
}

/// Preconditions of an update or delete: each one that is set must match the live object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub resource_version: Option<u64>,
    pub uid: Option<String>,
}

impl Preconditions {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn revision(revision: u64) -> Self {
        Self {
            resource_version: Some(revision),
            uid: None,
        }
    }

    /// Checks the preconditions against the live object's revision and uid.
    pub(crate) fn check(&self, key: &ObjectKey, revision: u64, uid: Option<&str>) -> Result<()> {
        if let Some(expected) = self.resource_version
            && expected != revision
        {
            return Err(Error::Conflict {
                key: key.clone(),
                detail: format!("resourceVersion is {revision}, expected {expected}"),
            });
        }
        if let Some(expected) = &self.uid
            && uid != Some(expected.as_str())
        {
            return Err(Error::Conflict {
                key: key.clone(),
                detail: format!("uid is {}, expected {expected}", uid.unwrap_or("<none>")),
            });
        }
        Ok(())
    }
}

/// A value checked and serialised before it reaches the sequencer, so that the sequencer's only
/// work per object is to splice the revision in: `body` is the object's JSON without
/// `metadata.resourceVersion`, and `revision_at` is the offset just inside `metadata`'s `{`.
#[derive(Debug, Clone)]
pub(crate) struct PreparedValue {
    body: Vec<u8>,
    revision_at: usize,
    metadata_empty: bool,
    pub(crate) uid: Option<String>,
    /// `metadata.labels` in canonical form (keys sorted), for the backends' label columns.
    pub(crate) labels_json: String,
}

impl PreparedValue {
    /// Checks and serialises a value. Nothing is parsed into a tree: the top level and `metadata`
    /// are split into their fields as raw JSON text (which checks that all of it is JSON), only
    /// `metadata.uid` and `metadata.labels` are read, and every field is copied as it came.
    pub(crate) fn parse(value: &[u8]) -> Result<Self> {
        let top: RawFields = serde_json::from_slice(value).map_err(|err| {
            if matches!(serde_json::from_slice::<Value>(value), Ok(ref v) if !v.is_object()) {
                Error::InvalidValue("value must be a JSON object".into())
            } else {
                Error::InvalidValue(format!("value is not JSON: {err}"))
            }
        })?;
        let metadata: RawFields = match top.get("metadata") {
            None => RawFields::new(),
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|_| Error::InvalidValue("metadata must be an object".into()))?,
        };
        let uid = match metadata.get("uid") {
            None => None,
            Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
                .map_err(|_| Error::InvalidValue("metadata.uid must be a string".into()))?,
        };
        let labels = labels_of(&metadata)?;
        let labels_json = serde_json::to_string(&labels).unwrap_or_else(|_| "{}".into());
        let mut body = Vec::with_capacity(value.len() + 16);
        body.extend_from_slice(b"{\"metadata\":{");
        let revision_at = body.len();
        let mut metadata_empty = true;
        for (key, raw) in metadata
            .iter()
            .filter(|(key, _)| key.as_str() != "resourceVersion")
        {
            if !metadata_empty {
                body.push(b',');
            }
            metadata_empty = false;
            put(&mut body, key);
            body.push(b':');
            body.extend_from_slice(raw.get().as_bytes());
        }
        body.push(b'}');
        for (key, raw) in top.iter().filter(|(key, _)| key.as_str() != "metadata") {
            body.push(b',');
            put(&mut body, key);
            body.push(b':');
            body.extend_from_slice(raw.get().as_bytes());
        }
        body.push(b'}');
        Ok(Self {
            body,
            revision_at,
            metadata_empty,
            uid,
            labels_json,
        })
    }

    /// The object's JSON with `metadata.resourceVersion` set to `revision`.
    pub(crate) fn stamped(&self, revision: u64) -> Bytes {
        let mut out = Vec::with_capacity(self.body.len() + 40);
        out.extend_from_slice(&self.body[..self.revision_at]);
        out.extend_from_slice(b"\"resourceVersion\":\"");
        out.extend_from_slice(revision.to_string().as_bytes());
        out.push(b'"');
        if !self.metadata_empty {
            out.push(b',');
        }
        out.extend_from_slice(&self.body[self.revision_at..]);
        Bytes::from(out)
    }
}

/// Appends `value`'s JSON to `out`. Serialising strings and `Value`s into a `Vec` cannot fail.
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

/// The fields of a JSON object, each as its raw JSON text, ordered by name.
type RawFields<'a> = BTreeMap<String, &'a serde_json::value::RawValue>;

fn labels_of(metadata: &RawFields) -> Result<Labels> {
    let Some(raw) = metadata.get("labels") else {
        return Ok(Labels::new());
    };
    let labels: Option<RawFields> = serde_json::from_str(raw.get())
        .map_err(|_| Error::InvalidValue("metadata.labels must be an object".into()))?;
    labels
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match serde_json::from_str::<String>(value.get()) {
            Ok(value) => Ok((key, value)),
            Err(_) => Err(Error::InvalidValue(format!(
                "label {key:?} must have a string value"
            ))),
        })
        .collect()
}

fn set_resource_version(object: &mut Map<String, Value>, revision: u64) {
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    if let Value::Object(metadata) = metadata {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// `value` with `metadata.resourceVersion` set to `revision` (used for the tombstone of a delete).
pub(crate) fn restamp(key: &ObjectKey, value: &[u8], revision: u64) -> Result<Bytes> {
    let mut parsed: Value = serde_json::from_slice(value)
        .map_err(|err| Error::Corrupt(format!("{key}: stored value is not JSON: {err}")))?;
    let Value::Object(object) = &mut parsed else {
        return Err(Error::Corrupt(format!(
            "{key}: stored value is not a JSON object"
        )));
    };
    set_resource_version(object, revision);
    Ok(Bytes::from(serde_json::to_vec(&parsed).unwrap_or_default()))
}

/// Two values equal but for `metadata.resourceVersion`: an update that changes nothing.
pub(crate) fn same_ignoring_revision(a: &Value, b: &Value) -> bool {
    fn strip(value: &Value) -> Value {
        let mut value = value.clone();
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        value
    }
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_sets_resource_version_and_keeps_the_rest() {
        let prepared =
            PreparedValue::parse(br#"{"kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}}}"#)
                .unwrap();
        assert_eq!(prepared.labels_json, r#"{"x":"1"}"#);
        let value: Value = serde_json::from_slice(&prepared.stamped(42)).unwrap();
        assert_eq!(value["metadata"]["resourceVersion"], "42");
        assert_eq!(value["metadata"]["name"], "a");
        assert_eq!(value["kind"], "ConfigMap");
        // An old resourceVersion is replaced, an absent or empty metadata gets one.
        for (input, expected) in [
            (
                r#"{"metadata":{"resourceVersion":"7","name":"b"}}"#,
                r#"{"metadata":{"resourceVersion":"9","name":"b"}}"#,
            ),
            (
                r#"{"kind":"X"}"#,
                r#"{"metadata":{"resourceVersion":"9"},"kind":"X"}"#,
            ),
            (
                r#"{"metadata":{},"a":[1,{"b":null}]}"#,
                r#"{"metadata":{"resourceVersion":"9"},"a":[1,{"b":null}]}"#,
            ),
        ] {
            let stamped = PreparedValue::parse(input.as_bytes()).unwrap().stamped(9);
            assert_eq!(std::str::from_utf8(&stamped).unwrap(), expected);
        }
    }

    #[test]
    fn non_object_values_and_non_string_labels_are_rejected() {
        assert!(matches!(
            PreparedValue::parse(b"[1]"),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            PreparedValue::parse(b"{\"metadata\":3}"),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            PreparedValue::parse(br#"{"metadata":{"labels":{"a":1}}}"#),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(PreparedValue::parse(b"{"), Err(Error::InvalidValue(_))));
    }
}
