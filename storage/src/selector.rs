//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`): parsed once, matched in memory, and
//! translated by each backend into SQL so that selective lists use an index instead of a scan.

use std::fmt;

use crate::error::{Error, Result};
use crate::object::Labels;

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// One value for `Equals`/`NotEquals`, one or more for `In`/`NotIn`, none otherwise.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses the Kubernetes label-selector syntax.
    pub fn parse(text: &str) -> Result<Self> {
        let requirements = split_top_level(text)?
            .into_iter()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_requirement)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { requirements })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, r) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match r.operator {
                Operator::Equals => write!(f, "{}={}", r.key, r.values.join(""))?,
                Operator::NotEquals => write!(f, "{}!={}", r.key, r.values.join(""))?,
                Operator::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                Operator::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                Operator::Exists => f.write_str(&r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Error::InvalidSelector(format!("unbalanced ')' in {text:?}")))?
            }
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(Error::InvalidSelector(format!("unbalanced '(' in {text:?}")));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: checked_key(key.trim(), part)?,
            operator: Operator::DoesNotExist,
            values: vec![],
        });
    }
    let key_end = part
        .find(|c: char| c.is_whitespace() || "!=()".contains(c))
        .unwrap_or(part.len());
    let key = checked_key(&part[..key_end], part)?;
    let rest = part[key_end..].trim_start();
    let single = |operator, value: &str| -> Result<Requirement> {
        Ok(Requirement {
            key: key.clone(),
            operator,
            values: vec![checked_value(value.trim(), part)?],
        })
    };
    if rest.is_empty() {
        Ok(Requirement {
            key,
            operator: Operator::Exists,
            values: vec![],
        })
    } else if let Some(value) = rest.strip_prefix("!=") {
        single(Operator::NotEquals, value)
    } else if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        single(Operator::Equals, value)
    } else if let Some(set) = word(rest, "notin") {
        Ok(Requirement {
            key,
            operator: Operator::NotIn,
            values: parse_set(set, part)?,
        })
    } else if let Some(set) = word(rest, "in") {
        Ok(Requirement {
            key,
            operator: Operator::In,
            values: parse_set(set, part)?,
        })
    } else {
        Err(Error::InvalidSelector(format!(
            "unable to parse requirement {part:?}: expected one of '=', '==', '!=', 'in', 'notin'"
        )))
    }
}

fn word<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(keyword)?;
    (rest.starts_with(char::is_whitespace) || rest.starts_with('(')).then(|| rest.trim_start())
}

fn parse_set(text: &str, part: &str) -> Result<Vec<String>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| {
            Error::InvalidSelector(format!(
                "unable to parse requirement {part:?}: expected a set '(…)'"
            ))
        })?;
    let values = inner
        .split(',')
        .map(|v| checked_value(v.trim(), part))
        .collect::<Result<Vec<_>>>()?;
    if values.iter().all(String::is_empty) {
        return Err(Error::InvalidSelector(format!(
            "unable to parse requirement {part:?}: for 'in', 'notin' operators, values set can't be empty"
        )));
    }
    Ok(values)
}

fn checked_key(key: &str, part: &str) -> Result<String> {
    if key.is_empty() || key.len() > 317 || key.chars().any(|c| c.is_whitespace() || "!=(),".contains(c)) {
        return Err(Error::InvalidSelector(format!(
            "unable to parse requirement {part:?}: invalid label key {key:?}"
        )));
    }
    Ok(key.to_string())
}

fn checked_value(value: &str, part: &str) -> Result<String> {
    if value.len() > 63 || value.chars().any(|c| c.is_whitespace() || "!=(),".contains(c)) {
        return Err(Error::InvalidSelector(format!(
            "unable to parse requirement {part:?}: invalid label value {value:?}"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let selector = LabelSelector::parse("a=b, c!=d,e in (x, y),f notin (z),g,!h,i==j").unwrap();
        let ops: Vec<_> = selector.requirements.iter().map(|r| r.operator).collect();
        assert_eq!(
            ops,
            [
                Operator::Equals,
                Operator::NotEquals,
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
                Operator::Equals
            ]
        );
        assert_eq!(selector.requirements[2].values, ["x", "y"]);
    }

    #[test]
    fn matching_follows_kubernetes_semantics() {
        let selector = LabelSelector::parse("app=web,tier!=db,!legacy").unwrap();
        assert!(selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("legacy", "")])));
        assert!(!selector.matches(&labels(&[])));
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for text in ["a in (b", "a in ()", "a=(b)", "a b", "=b", "a in x"] {
            assert!(
                matches!(LabelSelector::parse(text), Err(Error::InvalidSelector(_))),
                "{text}"
            );
        }
    }
}
