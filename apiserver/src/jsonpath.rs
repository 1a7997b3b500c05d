//! The JSONPath subset CustomResourceDefinitions use for printer columns and scale paths:
//! `.field`, `['field']`, `[n]`, `[*]` and `[?(@.field=="value")]` filters.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="value")]`: the items whose field equals the value.
    Filter(Vec<String>, Value),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parses `.spec.replicas`, `{.spec.replicas}` or `.status.conditions[?(@.type=="Ready")].status`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let text = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text);
        let mut steps = Vec::new();
        let mut rest = text.strip_prefix('$').unwrap_or(text);
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(format!("invalid JSONPath {text:?}"));
                }
                steps.push(Step::Field(after[..end].to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = bracket_end(after).ok_or_else(|| format!("unterminated [ in {text:?}"))?;
                let inner = after[..end].trim();
                steps.push(bracket(inner).ok_or_else(|| format!("unsupported JSONPath {text:?}"))?);
                rest = &after[end + 1..];
            } else {
                return Err(format!("invalid JSONPath {text:?}"));
            }
        }
        Ok(Self(steps))
    }

    /// The values the path selects in `root`.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for value in current {
                match step {
                    Step::Field(name) => next.extend(value.get(name.as_str())),
                    Step::Index(index) => next.extend(value.get(*index)),
                    Step::All => match value {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                    Step::Filter(fields, wanted) => {
                        for item in value.as_array().into_iter().flatten() {
                            let mut field = Some(item);
                            for name in fields {
                                field = field.and_then(|f| f.get(name.as_str()));
                            }
                            if field == Some(wanted) {
                                next.push(item);
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }

    /// The JSON pointer of a path made only of fields (scale subresource paths), if it is one.
    pub fn pointer(&self) -> Option<String> {
        let mut pointer = String::new();
        for step in &self.0 {
            let Step::Field(name) = step else {
                return None;
            };
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        Some(pointer)
    }
}

/// Where the bracket opened just before `text` closes, skipping quoted text.
fn bracket_end(text: &str) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ']') if depth == 0 => return Some(index),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(index) = inner.parse() {
        return Some(Step::Index(index));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name));
    }
    let filter = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (left, right) = filter.split_once("==")?;
    let fields: Vec<String> = left
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_string)
        .collect();
    let right = right.trim();
    let wanted = match unquote(right) {
        Some(text) => Value::String(text),
        None => serde_json::from_str(right).ok()?,
    };
    Some(Step::Filter(fields, wanted))
}

fn unquote(text: &str) -> Option<String> {
    let quoted =
        (text.starts_with('"') && text.ends_with('"')) || (text.starts_with('\'') && text.ends_with('\''));
    (quoted && text.len() >= 2).then(|| text[1..text.len() - 1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_indexes_and_filters() {
        let object = json!({
            "spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}
        });
        let find = |path: &str| {
            JsonPath::parse(path)
                .unwrap()
                .find(&object)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(find(".spec.replicas"), [json!(3)]);
        assert_eq!(find("{.spec.items[1].name}"), [json!("b")]);
        assert_eq!(find(".spec.items[*].name"), [json!("a"), json!("b")]);
        assert_eq!(
            find(r#".status.conditions[?(@.type=="Ready")].status"#),
            [json!("True")]
        );
        assert_eq!(find(".spec['replicas']"), [json!(3)]);
        assert!(find(".spec.missing").is_empty());
        assert_eq!(
            JsonPath::parse(".spec.replicas").unwrap().pointer().as_deref(),
            Some("/spec/replicas")
        );
        assert!(JsonPath::parse(".spec[").is_err());
    }
}
