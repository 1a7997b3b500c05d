//! What the upstream schemas say about an object: which of its fields are unknown (and so pruned,
//! or rejected under `fieldValidation=Strict`, as decoding into upstream's typed structs does).

use serde_json::Value;

use crate::openapi;

/// Removes the fields of `value` that `schema` does not define, returning their paths
/// (`spec.template.spec.containers[0].imagee`).
fn prune_value(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>, depth: usize) {
    if depth > 100 {
        return;
    }
    let schema = openapi::deref(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    // An embedded object keeps its type and metadata whatever its schema lists.
    let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                let mut doomed = Vec::new();
                for (key, child) in map.iter_mut() {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    match properties.get(key) {
                        Some(child_schema) => {
                            prune_value(child, child_schema, &child_path, unknown, depth + 1)
                        }
                        None => {
                            unknown.push(child_path);
                            doomed.push(key.clone());
                        }
                    }
                }
                for key in doomed {
                    map.remove(&key);
                }
            } else if let Some(items) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (key, child) in map.iter_mut() {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    prune_value(child, items, &child_path, unknown, depth + 1);
                }
            }
        }
        Value::Array(list) => {
            if let Some(items) = schema.get("items") {
                for (index, child) in list.iter_mut().enumerate() {
                    prune_value(child, items, &format!("{path}[{index}]"), unknown, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Prunes `object` against `schema`; returns the unknown fields' paths. Kinds without a schema are
/// left alone.
pub fn prune_unknown(object: &mut Value, schema: Option<&Value>) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(schema) = schema {
        prune_value(object, schema, "", &mut unknown, 0);
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_and_pruned() {
        let mut deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "b"}, "bogus": 1},
            "spec": {
                "replicass": 2,
                "template": {"spec": {"containers": [{"name": "c", "imagee": "x", "resources": {"limits": {"cpu": "1"}}}]}},
                "strategy": {"rollingUpdate": {"maxSurge": 1}}
            }
        });
        let unknown = prune_unknown(&mut deployment, openapi::schema_of("apps", "v1", "Deployment"));
        assert_eq!(
            unknown,
            [
                "metadata.bogus",
                "spec.replicass",
                "spec.template.spec.containers[0].imagee"
            ]
        );
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "c", "resources": {"limits": {"cpu": "1"}}})
        );
        assert_eq!(deployment["metadata"]["labels"], json!({"a": "b"}));
    }
}
