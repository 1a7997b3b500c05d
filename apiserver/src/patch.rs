//! JSON merge patch (RFC 7386) and, for now, an approximation of strategic merge patch: lists of
//! objects merge by a guessed merge key (`name`, or `containerPort`/`port`/`type`) instead of the
//! schema's `x-kubernetes-patch-merge-key`, and the `$patch`, `$retainKeys`,
//! `$deleteFromPrimitiveList` and `$setElementOrder` directives are honoured or dropped.

use serde_json::{Map, Value};

/// Merge keys tried, in order, for lists of objects under strategic merge.
const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "type",
    "ip",
    "devicePath",
    "mountPath",
];

/// Applies `patch` to `target` in place.
pub fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if strategic && patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        strip_directives(&mut replacement);
        *target = replacement;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if strategic && key.starts_with('$') {
            if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(list)), Value::Array(doomed)) = (target_map.get_mut(field), value)
            {
                list.retain(|item| !doomed.contains(item));
            }
            continue;
        }
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
                target_map.insert(key.clone(), merge_list(current, items));
            }
            _ => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                if value.is_object() && slot.is_object() {
                    merge(slot, value, strategic);
                } else {
                    let mut replacement = value.clone();
                    if strategic {
                        strip_directives(&mut replacement);
                    }
                    *slot = replacement;
                }
            }
        }
    }
}

fn merge_key(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS.iter().copied().find(|key| {
        items
            .iter()
            .all(|item| item.get(*key).is_some() || item.get("$patch").is_some())
    })
}

fn merge_list(current: Option<Value>, patch_items: &[Value]) -> Value {
    let Some(key) = merge_key(patch_items) else {
        let mut replacement = Value::Array(patch_items.to_vec());
        strip_directives(&mut replacement);
        return replacement;
    };
    let mut list = match current {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    if patch_items
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let mut replacement: Vec<Value> = patch_items
            .iter()
            .filter(|item| item.get("$patch").is_none())
            .cloned()
            .collect();
        replacement.iter_mut().for_each(strip_directives);
        return Value::Array(replacement);
    }
    for item in patch_items {
        let id = item.get(key);
        let position = list.iter().position(|existing| existing.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(index), true) => {
                list.remove(index);
            }
            (None, true) => {}
            (Some(index), false) => merge(&mut list[index], item, true),
            (None, false) => {
                let mut added = item.clone();
                strip_directives(&mut added);
                list.push(added);
            }
        }
    }
    Value::Array(list)
}

/// Removes strategic-merge directives (keys starting with `$`) from a value being inserted.
fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !key.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge(&mut doc, &json!({"a": null, "b": {"c": 5}, "l": [3]}), false);
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_honours_delete() {
        let mut doc =
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        merge(
            &mut doc,
            &json!({"spec": {"containers": [{"name": "a", "image": "z"}, {"name": "b", "$patch": "delete"}], "$setElementOrder/containers": [{"name": "a"}]}}),
            true,
        );
        assert_eq!(
            doc,
            json!({"spec": {"containers": [{"name": "a", "image": "z"}]}})
        );
        let mut labels = json!({"metadata": {"labels": {"a": "1"}}});
        merge(
            &mut labels,
            &json!({"metadata": {"labels": {"$patch": "delete"}}}),
            true,
        );
        assert_eq!(labels, json!({"metadata": {}}));
    }
}
