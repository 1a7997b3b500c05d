//! `x-kubernetes-validations` of custom resources: the CEL rules of a definition's schema, compiled
//! once when the definition is registered (with the Kubernetes CEL functions of the `kube-cel`
//! crate) and checked on every write — transition rules (`oldSelf`) on updates only — plus the
//! definition-time check that rejects rules that do not compile or exceed the cost budget.

use std::sync::Mutex;

use kube_cel::{CompilationError, CompiledSchema, ErrorKind, Validator, WarningKind};
use serde_json::{Value, json};

use crate::error::Cause;

/// A schema's compiled rules and the evaluator, used by one write at a time.
pub struct Rules {
    compiled: Mutex<(Validator, CompiledSchema)>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules").finish_non_exhaustive()
    }
}

/// Whether a schema has any rule at all.
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.contains_key("x-kubernetes-validations") || map.values().any(has_rules),
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

/// The value a rule's error path (`spec.items[2].name`) names.
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (field, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !field.is_empty() {
            node = node.get(field)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index = index.trim_end_matches(']');
            node = match index.parse::<usize>() {
                Ok(i) => node.get(i)?,
                Err(_) => node.get(index.trim_matches('"'))?,
            };
        }
    }
    Some(node)
}

fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        Some(Value::Object(_)) => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
        Some(Value::Bool(_)) => "boolean",
        _ => "null",
    }
}

impl Rules {
    /// Compiles the rules of `schema`; `None` when it has none.
    pub fn compile(schema: &Value) -> Option<Self> {
        if !has_rules(schema) {
            return None;
        }
        Some(Self {
            compiled: Mutex::new((Validator::new(), kube_cel::compile_schema(schema))),
        })
    }

    /// The rule failures of a write, as field causes with upstream's wording.
    pub fn check(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let Ok(guard) = self.compiled.lock() else {
            return vec![Cause {
                reason: "InternalError",
                message: "Internal error: the validation rules are unavailable".into(),
                field: String::new(),
            }];
        };
        let (validator, compiled) = &*guard;
        let Err(errors) = validator.validate_compiled(compiled, object, old) else {
            return Vec::new();
        };
        errors
            .into_vec()
            .into_iter()
            .map(|error| {
                let reason = match error.reason.as_deref() {
                    Some("FieldValueForbidden") => "FieldValueForbidden",
                    Some("FieldValueRequired") => "FieldValueRequired",
                    Some("FieldValueDuplicate") => "FieldValueDuplicate",
                    _ => "FieldValueInvalid",
                };
                let message = match (reason, &error.kind) {
                    ("FieldValueForbidden", _) => format!("Forbidden: {}", error.message),
                    ("FieldValueRequired", _) => format!("Required value: {}", error.message),
                    ("FieldValueDuplicate", _) => format!("Duplicate value: {}", error.message),
                    (_, ErrorKind::ValidationFailure) => format!(
                        "Invalid value: {}: {}",
                        json!(type_name(value_at(object, &error.field_path))),
                        error.message
                    ),
                    _ => format!("Invalid value: {}: {}", json!(type_name(None)), error.message),
                };
                Cause {
                    reason,
                    message,
                    field: error.field_path,
                }
            })
            .collect()
    }
}

/// Why a definition's rules cannot be accepted: rules that do not compile or would cost more than
/// upstream's budget. `path` is the schema's path in the definition.
pub fn definition_errors(schema: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    walk(schema, path, &mut causes, 0);
    causes
}

fn walk(schema: &Value, path: &str, causes: &mut Vec<Cause>, depth: usize) {
    if depth > 64 {
        return;
    }
    let Some(map) = schema.as_object() else {
        return;
    };
    if let Some(rules) = map.get("x-kubernetes-validations").and_then(Value::as_array) {
        let compiled = kube_cel::compile_schema(&json!({
            "type": map.get("type").cloned().unwrap_or(Value::Null),
            "properties": map.get("properties").cloned().unwrap_or(json!({})),
            "items": map.get("items").cloned().unwrap_or(Value::Null),
            "x-kubernetes-validations": rules,
        }));
        for (index, error) in compiled.validations.iter().enumerate() {
            let rule_path = format!("{path}.x-kubernetes-validations[{index}]");
            let rule_text = rules
                .get(index)
                .and_then(|r| r.get("rule"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            match error {
                Err(CompilationError::MessageExpressionParse { source, .. }) => causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {}: messageExpression compilation failed: {source}",
                        json!(rules.get(index).and_then(|r| r.get("messageExpression")))
                    ),
                    field: format!("{rule_path}.messageExpression"),
                }),
                Err(other) => causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {}: compilation failed: {}",
                        json!(rule_text),
                        std::error::Error::source(other).map_or_else(|| other.to_string(), |s| s.to_string())
                    ),
                    field: format!("{rule_path}.rule"),
                }),
                Ok(_) => {
                    for warning in kube_cel::estimate_rule_cost(rule_text, &compiled) {
                        if warning.kind == WarningKind::CostExceeded {
                            causes.push(Cause {
                                reason: "FieldValueForbidden",
                                message: format!(
                                    "Forbidden: estimated rule cost exceeds budget ({}); try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared",
                                    warning.message
                                ),
                                field: format!("{rule_path}.rule"),
                            });
                        }
                    }
                }
            }
        }
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            walk(child, &format!("{path}.properties[{name}]"), causes, depth + 1);
        }
    }
    if let Some(items) = map.get("items") {
        walk(items, &format!("{path}.items"), causes, depth + 1);
    }
    if let Some(additional) = map.get("additionalProperties") {
        walk(
            additional,
            &format!("{path}.additionalProperties"),
            causes,
            depth + 1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                    {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"},
                    {"rule": "self.replicas != 7", "messageExpression": "'replicas ' + string(self.replicas) + ' is unlucky'"}
                ],
                "properties": {
                    "replicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "mode": {"type": "string"}
                }
            }}
        })
    }

    #[test]
    fn rules_run_on_writes_and_transition_rules_on_updates() {
        let rules = Rules::compile(&schema()).unwrap();
        let ok = json!({"spec": {"replicas": 2, "maxReplicas": 3, "mode": "a"}});
        assert!(rules.check(&ok, None).is_empty());
        let too_many = json!({"spec": {"replicas": 4, "maxReplicas": 3, "mode": "a"}});
        let causes = rules.check(&too_many, None);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"object\": replicas must not exceed maxReplicas"
        );
        let changed = json!({"spec": {"replicas": 2, "maxReplicas": 3, "mode": "b"}});
        assert!(rules.check(&changed, None).is_empty(), "no oldSelf on create");
        assert_eq!(
            rules.check(&changed, Some(&ok))[0].message,
            "Invalid value: \"object\": mode is immutable"
        );
        let unlucky = json!({"spec": {"replicas": 7, "maxReplicas": 9, "mode": "a"}});
        assert_eq!(
            rules.check(&unlucky, None)[0].message,
            "Invalid value: \"object\": replicas 7 is unlucky"
        );
        assert!(Rules::compile(&json!({"type": "object"})).is_none());
    }

    #[test]
    fn rules_that_do_not_compile_are_reported_where_they_are() {
        let broken = json!({"type": "object", "properties": {"spec": {
            "type": "object", "x-kubernetes-validations": [{"rule": "self.replicas >"}]
        }}});
        let causes = definition_errors(&broken, "spec.versions[0].schema.openAPIV3Schema");
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
        );
        assert!(
            causes[0].message.contains("compilation failed"),
            "{}",
            causes[0].message
        );
        assert!(definition_errors(&schema(), "x").is_empty());
    }
}
