//! `/openapi/v2` in protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): the
//! Swagger 2.0 JSON document encoded as gnostic's `openapi.v2.Document` message. Field numbers
//! follow gnostic's OpenAPIv2.proto; vendor extensions and free-form values are `Any` messages whose
//! `yaml` field holds the value (JSON being YAML), which is how kube-openapi reads them.

use serde_json::{Map, Value};

use crate::protobuf::{bytes_field, key, varint};

/// The content types clients ask for: kubectl uses the older `@` form, which Go's MIME parser
/// rejects in a response, so responses carry the dotted form.
pub const MEDIA_TYPES: [&str; 2] = [
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];
pub const RESPONSE_MEDIA_TYPE: &str = MEDIA_TYPES[1];

/// A message being written; zero values are left out, as proto3 does.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn string(&mut self, tag: u32, value: Option<&Value>) -> &mut Self {
        if let Some(text) = value.and_then(Value::as_str).filter(|t| !t.is_empty()) {
            bytes_field(tag, text.as_bytes(), &mut self.0);
        }
        self
    }

    fn strings(&mut self, tag: u32, value: Option<&Value>) -> &mut Self {
        match value {
            Some(Value::Array(items)) => {
                for text in items.iter().filter_map(Value::as_str) {
                    bytes_field(tag, text.as_bytes(), &mut self.0);
                }
            }
            Some(Value::String(text)) => bytes_field(tag, text.as_bytes(), &mut self.0),
            _ => {}
        }
        self
    }

    fn boolean(&mut self, tag: u32, value: Option<&Value>) -> &mut Self {
        if value.and_then(Value::as_bool) == Some(true) {
            key(tag, 0, &mut self.0);
            varint(1, &mut self.0);
        }
        self
    }

    fn double(&mut self, tag: u32, value: Option<&Value>) -> &mut Self {
        if let Some(number) = value.and_then(Value::as_f64).filter(|n| *n != 0.0) {
            key(tag, 1, &mut self.0);
            self.0.extend_from_slice(&number.to_le_bytes());
        }
        self
    }

    fn int64(&mut self, tag: u32, value: Option<&Value>) -> &mut Self {
        if let Some(number) = value.and_then(Value::as_i64).filter(|n| *n != 0) {
            key(tag, 0, &mut self.0);
            varint(number as u64, &mut self.0);
        }
        self
    }

    fn message(&mut self, tag: u32, message: Message) -> &mut Self {
        bytes_field(tag, &message.0, &mut self.0);
        self
    }

    fn any(&mut self, tag: u32, value: Option<&Value>) -> &mut Self {
        if let Some(value) = value {
            self.message(tag, any(value));
        }
        self
    }

    /// `x-…` keys of `object` as repeated NamedAny.
    fn extensions(&mut self, tag: u32, object: &Map<String, Value>) -> &mut Self {
        for (name, value) in object.iter().filter(|(name, _)| name.starts_with("x-")) {
            let mut named = Message::default();
            named
                .string(1, Some(&Value::String(name.clone())))
                .any(2, Some(value));
            self.message(tag, named);
        }
        self
    }
}

/// gnostic's `Any`: the value as YAML text.
fn any(value: &Value) -> Message {
    let mut message = Message::default();
    let text = serde_json::to_string(value).unwrap_or_default();
    bytes_field(2, text.as_bytes(), &mut message.0);
    message
}

fn object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object)
}

/// `openapi.v2.Schema`.
fn schema(value: &Value, depth: usize) -> Message {
    let mut message = Message::default();
    let Some(map) = value.as_object() else {
        return message;
    };
    if depth > 64 {
        return message;
    }
    let get = |name: &str| map.get(name);
    message
        .string(1, get("$ref"))
        .string(2, get("format"))
        .string(3, get("title"))
        .string(4, get("description"))
        .any(5, get("default"))
        .double(6, get("multipleOf"))
        .double(7, get("maximum"))
        .boolean(8, get("exclusiveMaximum"))
        .double(9, get("minimum"))
        .boolean(10, get("exclusiveMinimum"))
        .int64(11, get("maxLength"))
        .int64(12, get("minLength"))
        .string(13, get("pattern"))
        .int64(14, get("maxItems"))
        .int64(15, get("minItems"))
        .boolean(16, get("uniqueItems"))
        .int64(17, get("maxProperties"))
        .int64(18, get("minProperties"))
        .strings(19, get("required"));
    for item in get("enum").and_then(Value::as_array).into_iter().flatten() {
        message.message(20, any(item));
    }
    match get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Message::default();
            item.boolean(2, Some(&Value::Bool(*allowed)));
            message.message(21, item);
        }
        Some(nested @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(nested, depth + 1));
            message.message(21, item);
        }
        _ => {}
    }
    if let Some(kind) = get("type") {
        let mut item = Message::default();
        item.strings(1, Some(kind));
        message.message(22, item);
    }
    if let Some(items) = get("items") {
        let mut item = Message::default();
        match items {
            Value::Array(list) => {
                for nested in list {
                    item.message(1, schema(nested, depth + 1));
                }
            }
            nested => {
                item.message(1, schema(nested, depth + 1));
            }
        }
        message.message(23, item);
    }
    for nested in get("allOf").and_then(Value::as_array).into_iter().flatten() {
        message.message(24, schema(nested, depth + 1));
    }
    if let Some(properties) = object(get("properties")) {
        let mut list = Message::default();
        for (name, nested) in properties {
            let mut named = Message::default();
            named
                .string(1, Some(&Value::String(name.clone())))
                .message(2, schema(nested, depth + 1));
            list.message(1, named);
        }
        message.message(25, list);
    }
    message
        .string(26, get("discriminator"))
        .boolean(27, get("readOnly"))
        .any(30, get("example"))
        .extensions(31, map);
    message
}

/// `openapi.v2.ParametersItem` for one parameter (body or non-body).
fn parameter(value: &Value) -> Message {
    let mut item = Message::default();
    let Some(map) = value.as_object() else {
        return item;
    };
    if let Some(reference) = map.get("$ref") {
        let mut json_reference = Message::default();
        json_reference.string(1, Some(reference));
        item.message(2, json_reference);
        return item;
    }
    let get = |name: &str| map.get(name);
    let mut parameter = Message::default();
    if get("in").and_then(Value::as_str) == Some("body") {
        let mut body = Message::default();
        body.string(1, get("description"))
            .string(2, get("name"))
            .string(3, get("in"))
            .boolean(4, get("required"));
        if let Some(nested) = get("schema") {
            body.message(5, schema(nested, 0));
        }
        body.extensions(6, map);
        parameter.message(1, body);
    } else {
        // Query and path parameters share their first fields; their later numbers differ by one
        // because only the query form has allowEmptyValue.
        let path = get("in").and_then(Value::as_str) == Some("path");
        let mut sub = Message::default();
        sub.boolean(1, get("required"))
            .string(2, get("in"))
            .string(3, get("description"))
            .string(4, get("name"));
        let shift = if path { 0 } else { 1 };
        if !path {
            sub.boolean(5, get("allowEmptyValue"));
        }
        sub.string(5 + shift, get("type"))
            .string(6 + shift, get("format"))
            .boolean(19 + shift, get("uniqueItems"));
        let mut non_body = Message::default();
        non_body.message(if path { 4 } else { 3 }, sub);
        parameter.message(2, non_body);
    }
    item.message(1, parameter);
    item
}

/// `openapi.v2.Operation`.
fn operation(value: &Value) -> Message {
    let mut message = Message::default();
    let Some(map) = value.as_object() else {
        return message;
    };
    let get = |name: &str| map.get(name);
    message
        .strings(1, get("tags"))
        .string(2, get("summary"))
        .string(3, get("description"))
        .string(5, get("operationId"))
        .strings(6, get("produces"))
        .strings(7, get("consumes"));
    for item in get("parameters").and_then(Value::as_array).into_iter().flatten() {
        message.message(8, parameter(item));
    }
    if let Some(responses) = object(get("responses")) {
        let mut list = Message::default();
        for (code, response) in responses {
            let mut body = Message::default();
            body.string(1, response.get("description"));
            if let Some(nested) = response.get("schema") {
                let mut item = Message::default();
                item.message(1, schema(nested, 0));
                body.message(2, item);
            }
            let mut value = Message::default();
            value.message(1, body);
            let mut named = Message::default();
            named
                .string(1, Some(&Value::String(code.clone())))
                .message(2, value);
            list.message(1, named);
        }
        message.message(9, list);
    }
    message
        .strings(10, get("schemes"))
        .boolean(11, get("deprecated"))
        .extensions(13, map);
    message
}

/// `openapi.v2.PathItem`.
fn path_item(value: &Value) -> Message {
    let mut message = Message::default();
    let Some(map) = value.as_object() else {
        return message;
    };
    for (tag, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = map.get(verb) {
            message.message(tag, operation(op));
        }
    }
    for item in map
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(9, parameter(item));
    }
    message.extensions(10, map);
    message
}

/// Encodes a Swagger 2.0 document.
pub fn encode(document: &Value) -> Vec<u8> {
    let mut message = Message::default();
    let Some(map) = document.as_object() else {
        return message.0;
    };
    let get = |name: &str| map.get(name);
    message.string(1, get("swagger"));
    if let Some(info) = object(get("info")) {
        let mut body = Message::default();
        body.string(1, info.get("title"))
            .string(2, info.get("version"))
            .string(3, info.get("description"))
            .extensions(7, info);
        message.message(2, body);
    }
    message
        .string(3, get("host"))
        .string(4, get("basePath"))
        .strings(5, get("schemes"))
        .strings(6, get("consumes"))
        .strings(7, get("produces"));
    if let Some(paths) = object(get("paths")) {
        let mut body = Message::default();
        body.extensions(1, paths);
        for (path, item) in paths.iter().filter(|(p, _)| !p.starts_with("x-")) {
            let mut named = Message::default();
            named
                .string(1, Some(&Value::String(path.clone())))
                .message(2, path_item(item));
            body.message(2, named);
        }
        message.message(8, body);
    }
    if let Some(definitions) = object(get("definitions")) {
        let mut body = Message::default();
        for (name, definition) in definitions {
            let mut named = Message::default();
            named
                .string(1, Some(&Value::String(name.clone())))
                .message(2, schema(definition, 0));
            body.message(1, named);
        }
        message.message(9, body);
    }
    message.extensions(16, map);
    message.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schema_encodes_its_fields_by_gnostic_numbers() {
        let encoded = encode(&json!({
            "swagger": "2.0",
            "definitions": {"a": {"type": "string", "x-kubernetes-list-type": "atomic"}}
        }));
        // swagger = 1
        assert_eq!(&encoded[..5], b"\x0a\x032.0");
        // definitions = 9 → NamedSchema "a" → Schema { type = 22 (TypeItem), vendor_extension = 31 }
        assert_eq!(encoded[5], 9 << 3 | 2);
        let text = String::from_utf8_lossy(&encoded);
        assert!(text.contains("x-kubernetes-list-type") && text.contains("\"atomic\""));
        let type_item = [0xb2, 0x01, 8, 0x0a, 6];
        assert!(encoded.windows(type_item.len()).any(|w| w == type_item));
    }
}
