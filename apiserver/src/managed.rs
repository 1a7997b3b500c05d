//! `metadata.managedFields` for Update operations (create, update, patch): which manager last set
//! which fields, as `FieldsV1` sets. A manager takes the fields its write added or changed, other
//! managers lose them, and removed fields leave every set. List items are keyed as the schema says
//! (`k:{…}` for map lists, `v:…` for sets; other lists and `map-type: atomic` fields are leaves).
//! Server-side apply (Apply operations) builds on these sets in [`crate::apply`].

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::openapi::deref_schema as deref;

/// One step of a field path, in its FieldsV1 spelling (`f:name`, `k:{"name":"c"}`, `v:"x"`).
pub(crate) type Step = String;
pub(crate) type Path = Vec<Step>;

/// Metadata fields the server owns; never part of a manager's set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The value a missing list-map key field identifies an item by: upstream declares `protocol`
/// (of container and service ports, the only defaulted key fields) as defaulting to `TCP`.
pub(crate) fn key_default(name: &str) -> Option<Value> {
    (name == "protocol").then(|| json!("TCP"))
}

/// A map-list item's FieldsV1 step: `k:` and its key fields (missing ones at their default).
pub(crate) fn key_step<S: AsRef<str>>(item: &Value, keys: &[S]) -> Step {
    let mut key = Map::new();
    for name in keys {
        let name = name.as_ref();
        if let Some(value) = item.get(name).cloned().or_else(|| key_default(name)) {
            key.insert(name.to_string(), value);
        }
    }
    format!("k:{}", Value::Object(key))
}

/// Every path of `value`: leaves, plus the item itself for list items and map entries' parents.
fn collect(value: &Value, schema: Option<&Value>, path: &mut Path, out: &mut Vec<(Path, Value)>) {
    let schema = deref(schema);
    let atomic =
        schema.is_some_and(|s| s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic"));
    match value {
        Value::Object(map) if !map.is_empty() && !atomic => {
            let properties = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            let additional = schema
                .and_then(|s| s.get("additionalProperties"))
                .filter(|s| s.is_object());
            if properties.is_none() && schema.is_some() && additional.is_none() {
                // A free-form object (no properties, no value schema): one leaf.
                out.push((path.clone(), value.clone()));
                return;
            }
            if additional.is_some() {
                out.push((path.clone(), Value::Null));
            }
            for (key, child) in map {
                if path.len() == 1 && path[0] == "f:metadata" && SERVER_METADATA.contains(&key.as_str()) {
                    continue;
                }
                let child_schema = properties.and_then(|p| p.get(key)).or(additional);
                path.push(format!("f:{key}"));
                collect(child, child_schema, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let list_type = schema
                .and_then(|s| s.get("x-kubernetes-list-type"))
                .and_then(Value::as_str);
            let keys: Vec<&str> = schema
                .and_then(|s| s.get("x-kubernetes-list-map-keys"))
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let item_schema = schema.and_then(|s| s.get("items"));
            match list_type {
                Some("map") if !keys.is_empty() => {
                    for item in items {
                        path.push(key_step(item, &keys));
                        out.push((path.clone(), Value::Null));
                        collect(item, item_schema, path, out);
                        path.pop();
                    }
                }
                Some("set") => {
                    for item in items {
                        path.push(format!("v:{item}"));
                        out.push((path.clone(), item.clone()));
                        path.pop();
                    }
                }
                _ => out.push((path.clone(), value.clone())),
            }
        }
        _ => out.push((path.clone(), value.clone())),
    }
}

/// The paths of an object with their values (item and parent markers carry `null`).
pub(crate) fn paths_of(object: &Value, schema: Option<&Value>, status: bool) -> Vec<(Path, Value)> {
    let mut out = Vec::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        if key == "apiVersion" || key == "kind" || (key == "status") != status {
            continue;
        }
        let child_schema = schema.and_then(|s| s.pointer(&format!("/properties/{key}")));
        let mut path = vec![format!("f:{key}")];
        collect(value, child_schema, &mut path, &mut out);
    }
    out.retain(|(path, _)| !(path.len() == 1 && path[0] == "f:metadata"));
    out
}

/// A FieldsV1 document from a set of paths.
pub(crate) fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for step in path {
            let entry = node.entry(step.clone()).or_insert_with(|| json!({}));
            let Value::Object(next) = entry else {
                break;
            };
            node = next;
        }
    }
    // A node that is itself in the set and has children gets ".".
    fn mark(node: &mut Map<String, Value>, path: &mut Path, paths: &BTreeSet<Path>) {
        for (step, child) in node.iter_mut() {
            path.push(step.clone());
            if let Value::Object(inner) = child
                && !inner.is_empty()
            {
                mark(inner, path, paths);
                if paths.contains(path) {
                    inner.insert(".".into(), json!({}));
                }
            }
            path.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), paths);
    Value::Object(root)
}

/// The paths in a FieldsV1 document.
pub(crate) fn from_fields_v1(fields: &Value) -> BTreeSet<Path> {
    fn walk(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(map) = node.as_object() else {
            return;
        };
        if map.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (step, child) in map {
            if step == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(step.clone());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

/// Who writes, and where.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    /// The kind's schema, if it has one (field ownership follows its list and map types).
    pub schema: Option<&'a Value>,
    /// `status` for the status subresource.
    pub subresource: Option<&'a str>,
    pub time: &'a str,
}

/// Records an Update by `writer` that turned `old` (None on create) into `new`, setting
/// `new.metadata.managedFields`.
pub fn record_update(writer: &Writer<'_>, old: Option<&Value>, new: &mut Value) {
    let status = writer.subresource == Some("status");
    let new_paths = paths_of(new, writer.schema, status);
    let old_paths = old
        .map(|o| paths_of(o, writer.schema, status))
        .unwrap_or_default();
    let old_values: std::collections::HashMap<&Path, &Value> =
        old_paths.iter().map(|(p, v)| (p, v)).collect();
    let new_set: BTreeSet<Path> = new_paths.iter().map(|(p, _)| p.clone()).collect();
    let changed: BTreeSet<Path> = new_paths
        .iter()
        .filter(|(path, value)| old_values.get(path) != Some(&value))
        .map(|(path, _)| path.clone())
        .collect();
    let removed: BTreeSet<Path> = old_paths
        .iter()
        .filter(|(path, _)| !new_set.contains(path))
        .map(|(path, _)| path.clone())
        .collect();

    let mut entries: Vec<Value> = match old.and_then(|o| o.pointer("/metadata/managedFields")) {
        Some(Value::Array(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    if changed.is_empty() && removed.is_empty() {
        // The write took no field from anyone: ownership and timestamps stay as they were.
        set_entries(new, entries);
        return;
    }
    let mine = |entry: &Value| {
        entry.get("manager").and_then(Value::as_str) == Some(writer.manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Update")
            && entry.get("subresource").and_then(Value::as_str) == writer.subresource
    };
    let mut own: BTreeSet<Path> = entries
        .iter()
        .find(|e| mine(e))
        .and_then(|e| e.get("fieldsV1"))
        .map(from_fields_v1)
        .unwrap_or_default();
    own.extend(changed.iter().cloned());
    own.retain(|p| !removed.contains(p));
    let mut updated = Vec::new();
    for entry in entries.drain(..) {
        if mine(&entry) {
            continue;
        }
        let mut fields = entry.get("fieldsV1").map(from_fields_v1).unwrap_or_default();
        let before = fields.len();
        fields.retain(|p| !changed.contains(p) && !removed.contains(p));
        if fields.is_empty() {
            continue;
        }
        let mut entry = entry;
        if fields.len() != before {
            entry["fieldsV1"] = to_fields_v1(&fields);
        }
        updated.push(entry);
    }
    if !own.is_empty() {
        let mut entry = json!({
            "manager": writer.manager,
            "operation": "Update",
            "apiVersion": writer.api_version,
            "time": writer.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&own),
        });
        if let Some(sub) = writer.subresource {
            entry["subresource"] = json!(sub);
        }
        updated.push(entry);
    }
    set_entries(new, updated);
}

/// Most Update entries kept; older ones are merged into one `ancient-changes` entry, as upstream.
const MAX_UPDATE_ENTRIES: usize = 10;

/// Stores `entries` as `object.metadata.managedFields`, capped and in upstream's order (Apply
/// entries first, then by time, manager, apiVersion and subresource).
pub(crate) fn set_entries(object: &mut Value, mut entries: Vec<Value>) {
    let text =
        |entry: &Value, field: &str| entry.get(field).and_then(Value::as_str).unwrap_or("").to_string();
    let order = |entry: &Value| {
        (
            text(entry, "operation"),
            text(entry, "time"),
            text(entry, "manager"),
            text(entry, "subresource"),
            text(entry, "apiVersion"),
        )
    };
    entries.sort_by_key(order);
    let updates = entries
        .iter()
        .filter(|e| text(e, "operation") == "Update")
        .count();
    if updates > MAX_UPDATE_ENTRIES {
        // The oldest Update entries (they sort first among updates) become one.
        let mut merged: BTreeSet<Path> = BTreeSet::new();
        let mut excess = updates - MAX_UPDATE_ENTRIES + 1;
        let mut last: Option<Value> = None;
        entries.retain(|entry| {
            if excess == 0 || text(entry, "operation") != "Update" {
                return true;
            }
            excess -= 1;
            merged.extend(entry.get("fieldsV1").map(from_fields_v1).unwrap_or_default());
            last = Some(entry.clone());
            false
        });
        if let Some(mut ancient) = last {
            ancient["manager"] = json!("ancient-changes");
            ancient["fieldsV1"] = to_fields_v1(&merged);
            if let Some(map) = ancient.as_object_mut() {
                map.remove("subresource");
            }
            entries.push(ancient);
            entries.sort_by_key(order);
        }
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// The manager of a request: `fieldManager`, else the user agent's product (`kubectl`, `helm`).
pub fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(manager) = field_manager.filter(|m| !m.is_empty()) {
        return manager.to_string();
    }
    user_agent
        .and_then(|agent| agent.split('/').next())
        .filter(|product| !product.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// What the tests of this module and of `apply` share.
#[cfg(test)]
pub(crate) mod testing {
    use super::Writer;

    /// A writer of apps/v1 Deployments at a fixed time.
    pub(crate) fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "apps/v1",
            group: "apps",
            version: "v1",
            kind: "Deployment",
            schema: crate::openapi::schema_of("apps", "v1", "Deployment"),
            subresource: None,
            time: "2026-01-01T00:00:00Z",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testing::writer;

    #[test]
    fn create_then_a_second_manager_takes_what_it_changes() {
        let mut created = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "x", "resources": {}}]}}
            },
            "status": {}
        });
        record_update(&writer("kubectl-create"), None, &mut created);
        let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
        assert_eq!(
            fields["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"],
            json!({".": {}, "f:image": {}, "f:name": {}, "f:resources": {}})
        );
        assert!(fields.get("f:status").is_none());

        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(&writer("kubectl-scale"), Some(&created), &mut scaled);
        let entries = scaled["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert_eq!(entries[1]["manager"], "kubectl-scale");
        assert_eq!(entries[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(
            manager_name(None, Some("kubectl/v1.35.2 (linux/amd64)")),
            "kubectl"
        );
    }
}
