//! Kubernetes protobuf responses: a JSON object encoded with the same schema table the decoder
//! uses, framed as `k8s\0` + `runtime.Unknown`. A value the table cannot express is an error, and
//! the caller answers in JSON instead (which every client accepts).

use base64::Engine;
use serde_json::Value;

use super::{MAGIC, MAX_DEPTH, ProtobufError, Result, Schema, schema};

pub(crate) fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn key(tag: u32, wire: u8, out: &mut Vec<u8>) {
    varint((u64::from(tag) << 3) | u64::from(wire), out);
}

pub(crate) fn bytes_field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    key(tag, 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

const WRONG: ProtobufError = ProtobufError::Malformed("a JSON value does not fit its protobuf field");

/// Go's duration syntax (`1h2m3.5s`, `500ms`) in nanoseconds.
fn parse_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(if negative { -(total as i64) } else { total as i64 })
}

/// The fields of a special type, or `None` for an ordinary message.
fn special(type_name: &str, value: &Value, out: &mut Vec<u8>) -> Result<bool> {
    let short = type_name.rsplit('.').next().unwrap_or_default();
    match short {
        "Time" | "MicroTime" if type_name.contains("meta.v1") => {
            let text = value.as_str().ok_or(WRONG)?;
            let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| WRONG)?;
            key(1, 0, out);
            varint(time.timestamp() as u64, out);
            if time.timestamp_subsec_nanos() != 0 {
                key(2, 0, out);
                varint(u64::from(time.timestamp_subsec_nanos()), out);
            }
        }
        "Duration" if type_name.contains("meta.v1") => {
            let nanos = parse_duration(value.as_str().ok_or(WRONG)?).ok_or(WRONG)?;
            key(1, 0, out);
            varint(nanos as u64, out);
        }
        "Quantity" => {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                _ => return Err(WRONG),
            };
            bytes_field(1, text.as_bytes(), out);
        }
        "IntOrString" => match value {
            Value::Number(number) => {
                key(1, 0, out);
                varint(0, out);
                key(2, 0, out);
                varint(number.as_i64().ok_or(WRONG)? as u64, out);
            }
            Value::String(text) => {
                key(1, 0, out);
                varint(1, out);
                bytes_field(3, text.as_bytes(), out);
            }
            _ => return Err(WRONG),
        },
        "RawExtension" | "FieldsV1" | "JSON" => {
            let raw = serde_json::to_vec(value).map_err(|_| WRONG)?;
            bytes_field(1, &raw, out);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn scalar(kind: &str, tag: u32, value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match kind {
        "string" => bytes_field(tag, value.as_str().ok_or(WRONG)?.as_bytes(), out),
        "bytes" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().ok_or(WRONG)?)
                .map_err(|_| WRONG)?;
            bytes_field(tag, &decoded, out);
        }
        "bool" => {
            key(tag, 0, out);
            varint(u64::from(value.as_bool().ok_or(WRONG)?), out);
        }
        "int32" | "int64" => {
            key(tag, 0, out);
            varint(value.as_i64().ok_or(WRONG)? as u64, out);
        }
        "uint32" | "uint64" => {
            key(tag, 0, out);
            varint(value.as_u64().ok_or(WRONG)?, out);
        }
        "double" => {
            key(tag, 1, out);
            out.extend_from_slice(&value.as_f64().ok_or(WRONG)?.to_le_bytes());
        }
        "float" => {
            key(tag, 5, out);
            out.extend_from_slice(&(value.as_f64().ok_or(WRONG)? as f32).to_le_bytes());
        }
        _ => return Err(WRONG),
    }
    Ok(())
}

fn message(schema: &Schema, type_name: &str, value: &Value, depth: usize) -> Result<Vec<u8>> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut out = Vec::new();
    if special(type_name, value, &mut out)? {
        return Ok(out);
    }
    let fields = schema
        .types
        .get(type_name)
        .ok_or_else(|| ProtobufError::UnknownKind(type_name.to_string()))?;
    let object = value.as_object().ok_or(WRONG)?;
    let mut specs: Vec<_> = fields.values().collect();
    specs.sort_by_key(|spec| spec.tag);
    for spec in specs {
        let Some(field) = object.get(&spec.name).filter(|v| !v.is_null()) else {
            continue;
        };
        if let Some(value_kind) = &spec.map {
            let entries = field.as_object().ok_or(WRONG)?;
            for (map_key, map_value) in entries {
                let mut entry = Vec::new();
                bytes_field(1, map_key.as_bytes(), &mut entry);
                match (value_kind.as_str(), &spec.message_type) {
                    ("message", Some(inner)) => {
                        bytes_field(2, &message(schema, inner, map_value, depth + 1)?, &mut entry)
                    }
                    (kind, _) => scalar(kind, 2, map_value, &mut entry)?,
                }
                bytes_field(spec.tag, &entry, &mut out);
            }
            continue;
        }
        let items: Vec<&Value> = if spec.repeated {
            field.as_array().ok_or(WRONG)?.iter().collect()
        } else {
            vec![field]
        };
        let kind = spec.kind.as_deref().unwrap_or("message");
        for item in items {
            if kind == "message" {
                let inner = spec.message_type.as_deref().ok_or(WRONG)?;
                bytes_field(spec.tag, &message(schema, inner, item, depth + 1)?, &mut out);
            } else {
                scalar(kind, spec.tag, item, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Encodes an object that carries `apiVersion` and `kind`.
pub fn encode(object: &Value) -> Result<Vec<u8>> {
    let schema = schema()?;
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let type_name = schema
        .kinds
        .get(&format!("{api_version}/{kind}"))
        .ok_or_else(|| ProtobufError::UnknownKind(format!("{api_version}, Kind={kind}")))?;
    let raw = message(schema, type_name, object, 0)?;
    let mut type_meta = Vec::new();
    bytes_field(1, api_version.as_bytes(), &mut type_meta);
    bytes_field(2, kind.as_bytes(), &mut type_meta);
    let mut body = MAGIC.to_vec();
    bytes_field(1, &type_meta, &mut body);
    bytes_field(2, &raw, &mut body);
    bytes_field(3, b"", &mut body);
    bytes_field(4, b"", &mut body);
    Ok(body)
}

/// One event of a protobuf watch stream: a `metav1.WatchEvent` (its object encoded with the
/// envelope, as [`encode`] does), preceded by its length as four big-endian bytes.
pub fn watch_frame(event: &Value) -> Result<Vec<u8>> {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
    let object = encode(event.get("object").unwrap_or(&Value::Null))?;
    let mut raw_extension = Vec::new();
    bytes_field(1, &object, &mut raw_extension);
    let mut message = Vec::new();
    bytes_field(1, kind.as_bytes(), &mut message);
    bytes_field(2, &raw_extension, &mut message);
    let length =
        u32::try_from(message.len()).map_err(|_| ProtobufError::Malformed("a watch event over 4 GiB"))?;
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend_from_slice(&message);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoding_then_decoding_gives_the_object_back() {
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "web"},
                "managedFields": [{"manager": "m", "operation": "Update", "time": "2026-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                    "name": "c", "image": "nginx", "args": ["a", "b"],
                    "resources": {"limits": {"cpu": "500m"}},
                    "ports": [{"containerPort": 80, "protocol": "TCP"}]
                }]}}
            },
            "status": {}
        });
        let bytes = encode(&deployment).unwrap();
        let back = super::super::decode(&bytes).unwrap();
        assert_eq!(back, deployment);
        assert_eq!(parse_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert!(encode(&json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}})).is_err());
    }

    #[test]
    fn a_watch_frame_is_a_length_prefixed_event_around_an_enveloped_object() {
        let object =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let frame = watch_frame(&json!({"type": "MODIFIED", "object": object})).unwrap();
        let length = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(length, frame.len() - 4);
        let mut expected = Vec::new();
        bytes_field(1, b"MODIFIED", &mut expected);
        let enveloped = encode(&object).unwrap();
        let mut raw = Vec::new();
        bytes_field(1, &enveloped, &mut raw);
        bytes_field(2, &raw, &mut expected);
        assert_eq!(&frame[4..], expected.as_slice());
        assert_eq!(crate::protobuf::decode(&enveloped).unwrap(), object);
    }
}
