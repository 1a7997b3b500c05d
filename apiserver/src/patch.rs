//! JSON merge patch (RFC 7386) and strategic merge patch. Strategic merge follows the schema's
//! `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`: lists with strategy `merge`
//! merge by their key (primitive lists merge as sets), other lists are replaced, and `retainKeys`
//! drops what `$retainKeys` does not name. Directives: `$patch` (replace, delete, merge),
//! `$retainKeys`, `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`. Without a schema
//! (unknown kinds), lists of objects merge by a guessed key (`name`, ports, …).

use serde_json::{Map, Value};

use crate::openapi::{deref_schema as deref, field_schema};

/// Merge keys tried, in order, when no schema names one.
const GUESSED_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "type",
    "ip",
    "devicePath",
    "mountPath",
];

/// How a patch is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RFC 7386: objects merge, everything else is replaced, `null` deletes.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
}

/// The schema behind a reference, if there is a schema.
/// Applies `patch` to `target` in place; `schema` is the target's type (strategic only).
pub fn apply(target: &mut Value, patch: &Value, kind: Kind, schema: Option<&Value>) {
    merge_value(target, patch, kind == Kind::Strategic, schema, 0);
}

/// The schema of a field of an object schema (a property, or the map's value schema).
fn strategy_of(schema: Option<&Value>) -> &str {
    schema
        .and_then(|s| s.get("x-kubernetes-patch-strategy"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn merge_value(target: &mut Value, patch: &Value, strategic: bool, schema: Option<&Value>, depth: usize) {
    let Value::Object(patch_map) = patch else {
        *target = strip(patch.clone());
        return;
    };
    if depth > 200 {
        return;
    }
    if strategic && patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip(patch.clone());
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    if strategic && let Some(Value::Array(retained)) = patch_map.get("$retainKeys") {
        let keep: Vec<&str> = retained.iter().filter_map(Value::as_str).collect();
        target_map.retain(|key, _| keep.contains(&key.as_str()) || patch_map.contains_key(key));
    }
    for (key, value) in patch_map {
        if strategic && key.starts_with('$') {
            if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(list)), Value::Array(doomed)) = (target_map.get_mut(field), value)
            {
                list.retain(|item| !doomed.contains(item));
            }
            continue;
        }
        let child_schema = field_schema(schema, key);
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(inner)
                if strategic && inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                target_map.remove(key);
            }
            Value::Array(items) if strategic => {
                let current = target_map.remove(key);
                target_map.insert(
                    key.clone(),
                    merge_list(current, items, child_schema, schema.is_some(), depth),
                );
            }
            _ => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                if value.is_object() && slot.is_object() {
                    merge_value(slot, value, strategic, child_schema, depth + 1);
                } else {
                    *slot = if strategic {
                        strip(value.clone())
                    } else {
                        value.clone()
                    };
                }
            }
        }
    }
}

/// The merge key of a list: the schema's, or (without a schema) a guessed one.
fn merge_key<'a>(schema: Option<&'a Value>, items: &[Value], have_schema: bool) -> Option<&'a str> {
    if have_schema {
        return schema
            .filter(|s| strategy_of(Some(s)).split(',').any(|p| p == "merge"))
            .and_then(|s| s.get("x-kubernetes-patch-merge-key"))
            .and_then(Value::as_str);
    }
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    GUESSED_KEYS.iter().copied().find(|key| {
        items
            .iter()
            .all(|item| item.get(*key).is_some() || item.get("$patch").is_some())
    })
}

fn merge_list(
    current: Option<Value>,
    patch_items: &[Value],
    schema: Option<&Value>,
    have_schema: bool,
    depth: usize,
) -> Value {
    let mut list = match current {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let replace = patch_items
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
    let merging = strategy_of(schema).split(',').any(|p| p == "merge");
    // Primitive lists with strategy merge are sets: add what is missing.
    if have_schema && merging && !replace && patch_items.iter().all(|i| !i.is_object()) {
        for item in patch_items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return Value::Array(list);
    }
    let Some(key) = merge_key(schema, patch_items, have_schema).filter(|_| !replace) else {
        return Value::Array(
            patch_items
                .iter()
                .filter(|item| item.get("$patch").is_none())
                .cloned()
                .map(strip)
                .collect(),
        );
    };
    let item_schema = deref(schema).and_then(|s| s.get("items"));
    for item in patch_items {
        let id = item.get(key);
        let position = list.iter().position(|existing| existing.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(index), true) => {
                list.remove(index);
            }
            (None, true) => {}
            (Some(index), false) => merge_value(&mut list[index], item, true, item_schema, depth + 1),
            (None, false) => list.push(strip(item.clone())),
        }
    }
    Value::Array(list)
}

/// Removes strategic-merge directives (keys starting with `$`) from a value being inserted.
fn strip(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|key, _| !key.starts_with('$'));
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        apply(
            &mut doc,
            &json!({"a": null, "b": {"c": 5}, "l": [3]}),
            Kind::Merge,
            None,
        );
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_follows_the_schema() {
        let schema = crate::openapi::schema_of("apps", "v1", "Deployment");
        assert!(schema.is_some());
        let mut doc = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "x", "args": ["1", "2"], "ports": [{"containerPort": 80}]}, {"name": "b", "image": "y"}],
        }}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
        "metadata": {"finalizers": ["one"]}});
        apply(
            &mut doc,
            &json!({"spec": {"template": {"spec": {
                "containers": [{"name": "a", "args": ["3"], "ports": [{"containerPort": 81}]}, {"name": "b", "$patch": "delete"}],
                "$setElementOrder/containers": [{"name": "a"}]
            }}, "strategy": {"type": "Recreate", "$retainKeys": ["type"]}},
            "metadata": {"finalizers": ["two"]}}),
            Kind::Strategic,
            schema,
        );
        let container = &doc["spec"]["template"]["spec"]["containers"];
        assert_eq!(container.as_array().unwrap().len(), 1, "b deleted");
        assert_eq!(
            container[0]["args"],
            json!(["3"]),
            "args is replaced (no merge strategy)"
        );
        assert_eq!(
            container[0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}]),
            "ports merge by containerPort"
        );
        assert_eq!(doc["spec"]["strategy"], json!({"type": "Recreate"}), "retainKeys");
        assert_eq!(
            doc["metadata"]["finalizers"],
            json!(["one", "two"]),
            "finalizers merge as a set"
        );
    }

    #[test]
    fn without_a_schema_containers_merge_by_name() {
        let mut doc = json!({"containers": [{"name": "a", "image": "x"}]});
        apply(
            &mut doc,
            &json!({"containers": [{"name": "a", "image": "z"}]}),
            Kind::Strategic,
            None,
        );
        assert_eq!(doc, json!({"containers": [{"name": "a", "image": "z"}]}));
    }
}
