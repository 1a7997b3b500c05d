//! Server-side apply: merges an apply configuration into the live object following the schema's
//! list and map types, checks it against the fields other managers own (409 `FieldManagerConflict`
//! unless forced), removes the fields this manager applied before and no longer applies (when no
//! one else owns them), and records the manager's Apply entry in `managedFields` — the semantics of
//! upstream's structured-merge-diff, on the FieldsV1 sets of [`crate::managed`].

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Cause};
use crate::managed::{self, Path, Writer};
use crate::openapi::{deref_schema as deref, field_schema};

/// Deepest nesting an apply configuration may have (deeper documents are rejected while decoding).
const MAX_DEPTH: usize = 200;

/// A map replaced as a whole: `map-type: atomic`, or a schema that describes no fields at all.
fn atomic_map(schema: Option<&Value>) -> bool {
    let Some(schema) = deref(schema) else {
        return false;
    };
    schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
        || (schema.get("properties").is_none()
            && !schema.get("additionalProperties").is_some_and(Value::is_object))
}

fn list_keys(schema: Option<&Value>) -> Option<Vec<String>> {
    let schema = deref(schema)?;
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    let keys: Vec<String> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|k| Some(k.as_str()?.to_string()))
        .collect();
    (!keys.is_empty()).then_some(keys)
}

fn is_set(schema: Option<&Value>) -> bool {
    deref(schema)
        .and_then(|s| s.get("x-kubernetes-list-type"))
        .and_then(Value::as_str)
        == Some("set")
}

/// Whether two map-list items have the same key (a missing key field counts as its default).
fn same_item(a: &Value, b: &Value, keys: &[String]) -> bool {
    keys.iter().all(|k| {
        let field = |item: &Value| item.get(k).cloned().or_else(|| managed::key_default(k));
        field(a) == field(b)
    })
}

/// Merges `config` into `target`: maps field by field, map lists item by item (by their keys),
/// sets as unions, everything else replaced.
fn merge(target: &mut Value, config: &Value, schema: Option<&Value>, depth: usize) {
    if depth > MAX_DEPTH {
        *target = config.clone();
        return;
    }
    match (target, config) {
        (Value::Object(live), Value::Object(applied)) if !atomic_map(schema) => {
            for (key, value) in applied {
                if value.is_null() {
                    live.remove(key);
                    continue;
                }
                let child = field_schema(schema, key);
                match live.get_mut(key) {
                    Some(existing) => merge(existing, value, child, depth + 1),
                    None => {
                        live.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied)) => {
            let items = deref(schema).and_then(|s| s.get("items"));
            if let Some(keys) = list_keys(schema) {
                // Applied items in the applied order, each merged into its live counterpart; then
                // the live items the configuration does not mention.
                let mut result = Vec::with_capacity(live.len().max(applied.len()));
                let mut rest: Vec<Value> = std::mem::take(live);
                for item in applied {
                    match rest.iter().position(|l| same_item(l, item, &keys)) {
                        Some(index) => {
                            let mut existing = rest.remove(index);
                            merge(&mut existing, item, items, depth + 1);
                            result.push(existing);
                        }
                        None => result.push(item.clone()),
                    }
                }
                result.extend(rest);
                *live = result;
            } else if is_set(schema) {
                for item in applied {
                    if !live.contains(item) {
                        live.push(item.clone());
                    }
                }
            } else {
                *live = applied.clone();
            }
        }
        (target, config) => *target = config.clone(),
    }
}

/// The key step (`k:{…}` or `v:…`) of a list item, as FieldsV1 spells it.
fn item_step(item: &Value, keys: Option<&[String]>) -> Path {
    match keys {
        Some(keys) => vec![managed::key_step(item, keys)],
        None => vec![format!("v:{item}")],
    }
}

/// Map-list items or set values given twice in an apply configuration, as upstream reports them
/// (`.spec.ports: duplicate entries for key [port=80,protocol="TCP"]`).
fn duplicates(
    value: &Value,
    schema: Option<&Value>,
    path: &mut Path,
    errors: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(format!("f:{key}"));
                duplicates(child, field_schema(schema, key), path, errors, depth + 1);
                path.pop();
            }
        }
        Value::Array(items) => {
            let keys = list_keys(schema);
            if keys.is_none() && !is_set(schema) {
                return;
            }
            let item_schema = deref(schema).and_then(|s| s.get("items"));
            let mut seen: Vec<Path> = Vec::new();
            for item in items {
                let step = item_step(item, keys.as_deref());
                if seen.contains(&step) {
                    let message = format!(
                        "{}: duplicate entries for key {}",
                        path_text(path),
                        path_text(&step)
                    );
                    if !errors.contains(&message) {
                        errors.push(message);
                    }
                    continue;
                }
                if keys.is_some() {
                    path.extend(step.iter().cloned());
                    duplicates(item, item_schema, path, errors, depth + 1);
                    path.truncate(path.len() - step.len());
                }
                seen.push(step);
            }
        }
        _ => {}
    }
}

/// The value a FieldsV1 path names, if present.
fn value_at<'a>(root: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut node = root;
    for step in path {
        node = step_into(node, step)?;
    }
    Some(node)
}

fn step_into<'a>(node: &'a Value, step: &str) -> Option<&'a Value> {
    if let Some(field) = step.strip_prefix("f:") {
        return node.get(field);
    }
    let items = node.as_array()?;
    if let Some(key) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        return items.iter().find(|item| {
            key.iter()
                .all(|(k, v)| item.get(k).cloned().or_else(|| managed::key_default(k)).as_ref() == Some(v))
        });
    }
    let value: Value = serde_json::from_str(step.strip_prefix("v:")?).ok()?;
    items.iter().find(|item| **item == value)
}

/// Removes what a FieldsV1 path names (a field, or a whole list item), if present.
fn remove_at(root: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for step in parents {
        let next = if let Some(field) = step.strip_prefix("f:") {
            node.get_mut(field)
        } else {
            let Some(index) = item_index(node, step) else {
                return;
            };
            node.get_mut(index)
        };
        match next {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(index) = item_index(node, last)
        && let Some(items) = node.as_array_mut()
    {
        items.remove(index);
    }
}

fn item_index(node: &Value, step: &str) -> Option<usize> {
    let found = step_into(node, step)?;
    node.as_array()?.iter().position(|item| std::ptr::eq(item, found))
}

/// A path as upstream prints it: `.spec.template.spec.containers[name="web"].image`.
pub fn path_text(path: &Path) -> String {
    let mut text = String::new();
    for step in path {
        if let Some(field) = step.strip_prefix("f:") {
            text.push('.');
            text.push_str(field);
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = step.strip_prefix("v:") {
            text.push_str(&format!("[={value}]"));
        }
    }
    text
}

/// How upstream names a manager in conflict messages.
fn manager_label(entry: &Value) -> String {
    let text = |field: &str| entry.get(field).and_then(Value::as_str).unwrap_or("");
    let mut label = json!(text("manager")).to_string();
    if !text("subresource").is_empty() {
        label.push_str(&format!(" with subresource {}", json!(text("subresource"))));
    }
    if text("operation") == "Update" {
        label.push_str(&format!(" using {}", text("apiVersion")));
    }
    label
}

/// 409 for fields another manager owns, as upstream words it.
fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(manager, path)| Cause {
            reason: "FieldManagerConflict",
            message: format!("conflict with {manager}"),
            field: path_text(path),
        })
        .collect();
    let message = if let [(manager, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {manager}: {}",
            path_text(path)
        )
    } else {
        let managers: BTreeSet<&String> = conflicts.iter().map(|(m, _)| m).collect();
        let mut lines = Vec::new();
        for manager in managers {
            lines.push(format!("conflicts with {manager}:"));
            for (_, path) in conflicts.iter().filter(|(m, _)| m == manager) {
                lines.push(format!("- {}", path_text(path)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::apply_conflict(message, causes)
}

/// The manager whose applies take over what client-side apply last applied.
const UPGRADING_MANAGER: &str = "kubectl";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields of the live object's last-applied-configuration annotation (same apiVersion) that
/// still have the values it applied.
fn last_applied_fields(writer: &Writer<'_>, status: bool, live: &Value) -> Option<BTreeSet<Path>> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(writer.api_version) {
        return None;
    }
    let paths: BTreeSet<Path> = managed::paths_of(&last, writer.schema, status)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let same: BTreeSet<Path> = paths
        .iter()
        .filter(|path| {
            let has_children = paths.iter().any(|p| p.len() > path.len() && p.starts_with(path));
            match (value_at(&last, path), value_at(live, path)) {
                (Some(_), Some(_)) if has_children => true,
                (Some(applied), Some(current)) => applied == current,
                _ => false,
            }
        })
        .cloned()
        .collect();
    Some(same)
}

fn fields_of(entry: &Value) -> BTreeSet<Path> {
    entry
        .get("fieldsV1")
        .map(managed::from_fields_v1)
        .unwrap_or_default()
}

/// Applies `config` for `writer` to `live` (None: the object does not exist yet) and returns the
/// new object with its `managedFields`. The caller restores server-owned metadata, defaults and
/// validates.
pub fn apply(writer: &Writer<'_>, force: bool, live: Option<&Value>, config: &Value) -> ApiResult<Value> {
    let status = writer.subresource == Some("status");
    let schema = writer.schema;
    // Only the part this endpoint writes: the status subresource applies status, the main resource
    // everything else.
    let mut applied = config.clone();
    if let Some(map) = applied.as_object_mut() {
        if status {
            map.retain(|key, _| matches!(key.as_str(), "status" | "apiVersion" | "kind"));
        } else {
            map.remove("status");
        }
        if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
            metadata.remove("managedFields");
            metadata.remove("resourceVersion");
        }
    }
    let mut errors = Vec::new();
    duplicates(&applied, schema, &mut Vec::new(), &mut errors, 0);
    if !errors.is_empty() {
        let name = config
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let object = match config.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
            _ => name.to_string(),
        };
        let detail = if let [only] = errors.as_slice() {
            only.clone()
        } else {
            format!("errors:\n  {}", errors.join("\n  "))
        };
        return Err(ApiError::bad_request(format!(
            "failed to create typed patch object ({object}; {}, Kind={}): {detail}",
            writer.api_version, writer.kind
        )));
    }
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut merged = base.clone();
    merge(&mut merged, &applied, schema, 0);

    let applied_set: BTreeSet<Path> = managed::paths_of(&applied, writer.schema, status)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    // Paths with something below them in the configuration: list items and map parents.
    let parents: BTreeSet<Path> = applied_set
        .iter()
        .flat_map(|path| (1..path.len()).map(move |n| path[..n].to_vec()))
        .collect();

    let mine = |entry: &Value| {
        entry.get("manager").and_then(Value::as_str) == Some(writer.manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply")
            && entry.get("subresource").and_then(Value::as_str) == writer.subresource
    };
    let entries: Vec<Value> = match base.pointer("/metadata/managedFields") {
        Some(Value::Array(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    let previous = entries.iter().find(|e| mine(e)).cloned();
    let previous_set = previous.as_ref().map(fields_of).unwrap_or_default();

    let mut conflicts: Vec<(String, Path)> = Vec::new();
    let mut others: Vec<(Value, BTreeSet<Path>)> = Vec::new();
    for entry in entries.into_iter().filter(|e| !mine(e)) {
        let mut owned = fields_of(&entry);
        let contested: Vec<Path> = owned
            .intersection(&applied_set)
            .filter(|path| {
                if parents.contains(*path) {
                    value_at(&base, path).is_none()
                } else {
                    value_at(&merged, path) != value_at(&base, path)
                }
            })
            .cloned()
            .collect();
        if !contested.is_empty() {
            if force {
                owned.retain(|path| !contested.contains(path));
            } else {
                let label = manager_label(&entry);
                conflicts.extend(contested.into_iter().map(|path| (label.clone(), path)));
            }
        }
        others.push((entry, owned));
    }
    if !conflicts.is_empty() {
        if writer.manager == UPGRADING_MANAGER
            && let Some(allowed) = last_applied_fields(writer, status, &base)
        {
            // The upgrade from client-side apply: fields kubectl itself last applied (still as
            // applied) are taken over without a conflict.
            conflicts.retain(|(_, path)| !allowed.contains(path));
            if conflicts.is_empty() {
                return apply(writer, true, live, config);
            }
        }
        return Err(conflict_error(&conflicts));
    }

    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    let owned_by_others: BTreeSet<&Path> = others.iter().flat_map(|(_, owned)| owned.iter()).collect();
    let mut dropped: Vec<&Path> = previous_set
        .iter()
        .filter(|path| !applied_set.contains(*path) && !owned_by_others.contains(path))
        .collect();
    dropped.sort_by_key(|path| path.len());
    for path in dropped {
        remove_at(&mut merged, path);
    }

    let mut result: Vec<Value> = Vec::new();
    for (mut entry, owned) in others {
        if owned.is_empty() {
            continue;
        }
        if owned != fields_of(&entry) {
            entry["fieldsV1"] = managed::to_fields_v1(&owned);
        }
        result.push(entry);
    }
    if !applied_set.is_empty() {
        let unchanged = previous.as_ref().filter(|p| {
            previous_set == applied_set
                && p.get("apiVersion").and_then(Value::as_str) == Some(writer.api_version)
        });
        let entry = match unchanged {
            Some(previous) => previous.clone(),
            None => {
                let mut entry = json!({
                    "manager": writer.manager,
                    "operation": "Apply",
                    "apiVersion": writer.api_version,
                    "time": writer.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": managed::to_fields_v1(&applied_set),
                });
                if let Some(sub) = writer.subresource {
                    entry["subresource"] = json!(sub);
                }
                entry
            }
        };
        result.push(entry);
    }
    if !merged.is_object() {
        merged = json!({});
    }
    managed::set_entries(&mut merged, result);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::managed::testing::writer;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        })
    }

    #[test]
    fn a_second_apply_of_the_same_configuration_changes_nothing() {
        let first = apply(&writer("kubectl"), false, None, &deployment(1, "nginx")).unwrap();
        let entries = first["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["operation"], "Apply");
        let fields = &entries[0]["fieldsV1"];
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"],
            json!({".": {}, "f:image": {}, "f:name": {}})
        );
        let mut later = writer("kubectl");
        later.time = "2026-01-02T00:00:00Z";
        let second = apply(&later, false, Some(&first), &deployment(1, "nginx")).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let applied = apply(&writer("kubectl"), false, None, &deployment(1, "nginx")).unwrap();
        let mine = apply(&writer("other"), false, Some(&applied), &deployment(1, "nginx")).unwrap();
        assert_eq!(
            mine["metadata"]["managedFields"].as_array().unwrap().len(),
            2,
            "same values are shared, not conflicts"
        );
        let err = apply(&writer("other"), false, Some(&applied), &deployment(3, "nginx")).unwrap_err();
        assert_eq!(err.code.as_u16(), 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        let forced = apply(&writer("other"), true, Some(&applied), &deployment(3, "busybox")).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = forced["metadata"]["managedFields"].as_array().unwrap();
        let kubectl = entries.iter().find(|e| e["manager"] == "kubectl").unwrap();
        assert!(kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        let err = apply(&writer("kubectl"), false, Some(&forced), &deployment(1, "nginx")).unwrap_err();
        assert!(
            err.message
                .starts_with("Apply failed with 2 conflicts: conflicts with \"other\":\n- "),
            "{}",
            err.message
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
        let mut config = deployment(1, "nginx");
        config["metadata"]["labels"]["tier"] = json!("front");
        config["metadata"]["annotations"] = json!({"note": "x"});
        let first = apply(&writer("kubectl"), false, None, &config).unwrap();
        let mut shared = deployment(1, "nginx");
        shared["metadata"]["annotations"] = json!({"note": "x"});
        let both = apply(&writer("other"), false, Some(&first), &shared).unwrap();
        let second = apply(&writer("kubectl"), false, Some(&both), &deployment(1, "nginx")).unwrap();
        assert!(second["metadata"]["labels"].get("tier").is_none());
        assert_eq!(
            second["metadata"]["annotations"]["note"], "x",
            "still owned by other"
        );
    }

    #[test]
    fn duplicate_map_list_keys_are_rejected() {
        let mut config = deployment(1, "nginx");
        config["metadata"]["namespace"] = json!("default");
        config["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}]);
        let err = apply(&writer("kubectl"), false, None, &config).unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
        assert_eq!(
            err.message,
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): \
             .spec.template.spec.containers[name=\"web\"].ports: duplicate entries for key [containerPort=80,protocol=\"TCP\"]"
        );
    }

    #[test]
    fn paths_print_like_upstream() {
        let path: Path = vec![
            "f:spec".into(),
            "f:ports".into(),
            "k:{\"port\":80,\"protocol\":\"TCP\"}".into(),
            "f:targetPort".into(),
        ];
        assert_eq!(
            path_text(&path),
            ".spec.ports[port=80,protocol=\"TCP\"].targetPort"
        );
    }
}
