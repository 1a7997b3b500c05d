//! Field selectors (`fieldSelector=metadata.name=x,status.phase!=Running`): the fields each
//! resource supports, as upstream, and matching against a JSON object.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceKind;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    path: Vec<String>,
    equal: bool,
    value: String,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

/// Fields a resource can be selected by, beyond `metadata.name` and `metadata.namespace`.
fn extra_fields(kind: &ResourceKind) -> &'static [&'static str] {
    match (kind.group, kind.resource) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    pub fn parse(text: &str, kind: &ResourceKind) -> ApiResult<Self> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((field, value)) = term.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, true, value)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, true, value)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace")
                && !extra_fields(kind).contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push(Requirement {
                path: field.split('.').map(str::to_string).collect(),
                equal,
                value: value.trim().to_string(),
            });
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let mut current = Some(object);
            for part in &requirement.path {
                current = current.and_then(|v| v.get(part));
            }
            let actual = match current {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            };
            (actual == requirement.value) == requirement.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin;
    use serde_json::json;

    #[test]
    fn pods_select_by_node_and_phase() {
        let registry = builtin();
        let pods = registry.get("", "v1", "pods").unwrap();
        let selector = FieldSelector::parse("spec.nodeName=n1,status.phase!=Running", pods).unwrap();
        assert!(selector.matches(&json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}})));
        assert!(!selector.matches(&json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})));
        let cms = registry.get("", "v1", "configmaps").unwrap();
        let err = FieldSelector::parse("spec.nodeName=x", cms).unwrap_err();
        assert_eq!(err.message, "field label not supported: spec.nodeName");
        assert!(
            FieldSelector::parse("metadata.name=a", cms)
                .unwrap()
                .matches(&json!({"metadata": {"name": "a"}}))
        );
    }
}
