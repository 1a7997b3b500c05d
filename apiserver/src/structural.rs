//! Structural schemas of custom resources: validating objects against a CRD's OpenAPI v3 schema
//! with upstream's messages, filling in `default`s, and checking that a CRD's schema is structural
//! (every node typed, no references) before it is accepted.

use serde_json::{Map, Value, json};

use crate::error::Cause;

/// Deepest schema or object nesting walked.
const MAX_DEPTH: usize = 100;

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The JSON type name upstream reports for a value.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn invalid(path: &str, value: &Value, detail: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {}: {detail}", display(value)),
        field: path.to_string(),
    }
}

/// A value as upstream prints it in messages: strings quoted, the rest as JSON.
fn display(value: &Value) -> String {
    match value {
        Value::String(_) => value.to_string(),
        Value::Object(_) | Value::Array(_) => format!("{:?}", type_name(value)),
        other => other.to_string(),
    }
}

/// Field errors of `value` (at `path`) against `schema`.
pub fn validate(value: &Value, schema: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_at(value, schema, path, &mut causes, 0);
    causes
}

fn validate_at(value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = crate::openapi::deref(schema);
    if value.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            let expected = schema.get("type").and_then(Value::as_str).unwrap_or("object");
            causes.push(invalid(
                path,
                &json!("null"),
                format!("{path} in body must be of type {expected}: \"null\""),
            ));
        }
        return;
    }
    let actual = type_name(value);
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(actual, "integer" | "string") {
            causes.push(invalid(
                path,
                &json!(actual),
                format!("{path} in body must be of type integer,string: {:?}", actual),
            ));
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let fits = expected == actual || (expected == "number" && actual == "integer");
        if !fits {
            causes.push(invalid(
                path,
                &json!(actual),
                format!("{path} in body must be of type {expected}: {:?}", actual),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                value,
                supported.join(", ")
            ),
            field: path.to_string(),
        });
    }
    match value {
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
                let exclusive = flag(schema, "exclusiveMinimum");
                if n < minimum || (exclusive && n == minimum) {
                    let relation = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    causes.push(invalid(
                        path,
                        value,
                        format!("{path} in body should be {relation} {}", number_text(minimum)),
                    ));
                }
            }
            if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64) {
                let exclusive = flag(schema, "exclusiveMaximum");
                if n > maximum || (exclusive && n == maximum) {
                    let relation = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    causes.push(invalid(
                        path,
                        value,
                        format!("{path} in body should be {relation} {}", number_text(maximum)),
                    ));
                }
            }
        }
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    message: format!("Too long: may not be more than {max} bytes"),
                    field: path.to_string(),
                });
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && length < min
            {
                causes.push(invalid(
                    path,
                    value,
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(format) = schema.get("format").and_then(Value::as_str)
                && !format_holds(format, text)
            {
                causes.push(invalid(
                    path,
                    value,
                    format!(
                        "{path} in body must be of type {format}: {}",
                        Value::String(text.clone())
                    ),
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && let Ok(regex) = regex::Regex::new(pattern)
                && !regex.is_match(text)
            {
                causes.push(invalid(
                    path,
                    value,
                    format!("{path} in body should match '{pattern}'"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                causes.push(Cause {
                    reason: "FieldValueTooMany",
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                    field: path.to_string(),
                });
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                causes.push(invalid(
                    path,
                    &json!(items.len()),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    validate_at(item, item_schema, &format!("{path}[{index}]"), causes, depth + 1);
                }
            }
            duplicates(items, schema, path, causes);
        }
        Value::Object(map) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    causes.push(Cause::required(join(path, name)));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, child) in map {
                // The root's type and metadata are checked by the server, not the schema.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(key)).or(additional) {
                    validate_at(child, child_schema, &join(path, key), causes, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: set` items and `map` keys that appear twice.
fn duplicates(items: &[Value], schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let identity = |item: &Value| -> Value {
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") if !keys.is_empty() => {
                json!(
                    keys.iter()
                        .map(|k| (k.to_string(), item.get(*k).cloned().unwrap_or(Value::Null)))
                        .collect::<Map<_, _>>()
                )
            }
            _ => item.clone(),
        }
    };
    if !matches!(
        schema.get("x-kubernetes-list-type").and_then(Value::as_str),
        Some("set" | "map")
    ) {
        return;
    }
    let mut seen: Vec<Value> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let id = identity(item);
        if seen.contains(&id) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                message: format!("Duplicate value: {id}"),
                field: format!("{path}[{index}]"),
            });
        } else {
            seen.push(id);
        }
    }
}

/// Whether a string has a `format` upstream checks; unknown formats hold.
fn format_holds(format: &str, text: &str) -> bool {
    use base64::Engine;
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD.decode(text).is_ok(),
        "uuid" => {
            let parts: Vec<&str> = text.split('-').collect();
            parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => text
            .split_once('/')
            .is_some_and(|(ip, bits)| ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()),
        "hostname" => {
            !text.is_empty()
                && text.len() <= 253
                && text.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        }
        "email" => text
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.')),
        _ => true,
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Fills in the schema's `default`s for fields missing from objects that are present.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    apply_defaults_at(value, schema, 0);
}

fn apply_defaults_at(value: &mut Value, schema: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = crate::openapi::deref(schema);
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child_schema) in properties {
                    if !map.contains_key(key)
                        && let Some(default) = child_schema.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults_at(child, child_schema, depth + 1);
                    }
                }
            } else if let Some(additional) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for child in map.values_mut() {
                    apply_defaults_at(child, additional, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults_at(item, item_schema, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Why a CRD version's schema is not structural (empty when it is), as upstream words it.
pub fn structural_errors(schema: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        match schema.get("type").and_then(Value::as_str) {
            Some(other) => causes.push(Cause::invalid(
                format!("{path}.type"),
                other,
                "must be object at the root",
            )),
            None => causes.push(Cause {
                reason: "FieldValueRequired",
                message: "Required value: must not be empty at the root".into(),
                field: format!("{path}.type"),
            }),
        }
    }
    check_node(schema, path, &mut causes, 0);
    causes
}

fn check_node(schema: &Value, path: &str, causes: &mut Vec<Cause>, depth: usize) {
    if depth > MAX_DEPTH {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: "Invalid value: the schema is nested too deeply".into(),
            field: path.to_string(),
        });
        return;
    }
    let Some(map) = schema.as_object() else {
        return;
    };
    if map.contains_key("$ref") {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            message: "Forbidden: $ref is not supported".into(),
            field: format!("{path}.$ref"),
        });
    }
    let children = |key: &str| map.get(key).and_then(Value::as_object);
    if let Some(properties) = children("properties") {
        for (name, child) in properties {
            let child_path = format!("{path}.properties[{name}]");
            check_typed(child, &child_path, causes);
            check_node(child, &child_path, causes, depth + 1);
        }
    }
    if let Some(items) = map.get("items") {
        let child_path = format!("{path}.items");
        check_typed(items, &child_path, causes);
        check_node(items, &child_path, causes, depth + 1);
    }
    if let Some(additional) = map.get("additionalProperties").filter(|a| a.is_object()) {
        let child_path = format!("{path}.additionalProperties");
        check_typed(additional, &child_path, causes);
        check_node(additional, &child_path, causes, depth + 1);
    }
}

/// A specified field needs a type unless it is int-or-string or keeps unknown fields.
fn check_typed(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let typed = schema
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed
        && !flag(schema, "x-kubernetes-int-or-string")
        && !flag(schema, "x-kubernetes-preserve-unknown-fields")
    {
        causes.push(Cause {
            reason: "FieldValueRequired",
            message: "Required value: must not be empty for specified object fields".into(),
            field: format!("{path}.type"),
        });
    }
}

/// A schema's root with the fields every object has, for pruning and publishing.
pub fn with_object_meta(schema: &Value) -> Value {
    let mut root = schema.clone();
    if !root.is_object() {
        root = json!({ "type": "object" });
    }
    let properties = root
        .as_object_mut()
        .map(|map| map.entry("properties").or_insert_with(|| json!({})));
    if let Some(Value::Object(properties)) = properties {
        let mut base = Map::new();
        base.insert("apiVersion".into(), json!({ "type": "string" }));
        base.insert("kind".into(), json!({ "type": "string" }));
        base.insert(
            "metadata".into(),
            json!({ "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" }),
        );
        for (key, value) in base {
            properties.entry(key).or_insert(value);
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "minLength": 1, "pattern": "^[a-z0-9:.]+$"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "color": {"type": "string", "enum": ["red", "green"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}}
                    }
                }
            }
        })
    }

    #[test]
    fn objects_are_checked_with_upstream_messages() {
        let object =
            json!({"spec": {"replicas": "three", "color": "blue", "port": true, "tags": ["a", "b", "c"]}});
        let messages: Vec<String> = validate(&object, &schema(), "")
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert!(
            messages.contains(&"spec.image: Required value".to_string()),
            "{messages:?}"
        );
        assert!(messages.contains(
            &"spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"".to_string()
        ));
        assert!(messages.contains(
            &"spec.color: Unsupported value: \"blue\": supported values: \"red\", \"green\"".to_string()
        ));
        assert!(messages.contains(&"spec.tags: Too many: 3: must have at most 2 items".to_string()));
        assert!(messages.iter().any(|m| m.starts_with("spec.port: Invalid value")));
        let out_of_range = json!({"spec": {"image": "nginx", "replicas": 11}});
        assert_eq!(
            validate(&out_of_range, &schema(), "")[0].message,
            "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
        );
    }

    #[test]
    fn formats_are_checked() {
        let schema = json!({"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "ip": {"type": "string", "format": "ipv4"}
        }});
        let good = json!({"at": "2026-01-01T00:00:00Z", "id": "0c2820fd-70bc-4169-8c9b-3bf31e67110b", "ip": "10.0.0.1"});
        assert!(validate(&good, &schema, "").is_empty());
        let bad = json!({"at": "yesterday", "id": "x", "ip": "10.0.0"});
        let messages: Vec<String> = validate(&bad, &schema, "")
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert!(
            messages.contains(
                &"Invalid value: \"yesterday\": at in body must be of type date-time: \"yesterday\""
                    .to_string()
            ),
            "{messages:?}"
        );
        assert_eq!(messages.len(), 3);
    }

    #[test]
    fn defaults_fill_present_objects() {
        let mut object = json!({"spec": {"image": "nginx"}});
        apply_defaults(&mut object, &schema());
        assert_eq!(object["spec"]["replicas"], 1);
        let mut empty = json!({});
        apply_defaults(&mut empty, &schema());
        assert_eq!(empty, json!({}));
    }

    #[test]
    fn untyped_fields_are_not_structural() {
        let schema =
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
        let causes = structural_errors(&schema, "spec.versions[0].schema.openAPIV3Schema");
        assert_eq!(
            causes[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"
        );
        assert_eq!(
            causes[0].message,
            "Required value: must not be empty for specified object fields"
        );
    }
}
