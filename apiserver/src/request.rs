//! Turning a URL into what it addresses: the logical cluster, then either a fixed endpoint
//! (discovery, health, OpenAPI) or a resource target (kind, namespace, name, subresource). Pure.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, ResourceKind};

/// The logical cluster plain paths serve.
pub const DEFAULT_CLUSTER: &str = "root";

/// What a path addresses.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList { group: String, version: String },
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3 { group: String, version: String },
    Resource(Box<Target>),
}

/// A resource request's target.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: ResourceKind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits `/clusters/<name>/rest` into the cluster and the rest of the path.
pub fn split_cluster(path: &str) -> ApiResult<(String, String)> {
    if let Some(rest) = path.strip_prefix("/clusters/") {
        let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() || !crate::validation::dns1123_label(name).is_empty() {
            return Err(ApiError::bad_request(format!(
                "invalid logical cluster name {name:?}"
            )));
        }
        return Ok((name.to_string(), format!("/{rest}")));
    }
    Ok((DEFAULT_CLUSTER.to_string(), path.to_string()))
}

/// Parses a path (without the cluster prefix).
pub fn endpoint(registry: &Registry, path: &str) -> ApiResult<Endpoint> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Ok(Endpoint::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Endpoint::Health),
        ["openapi", "v2"] => Ok(Endpoint::OpenApiV2),
        ["openapi", "v3"] => Ok(Endpoint::OpenApiV3Index),
        ["openapi", "v3", "api", "v1"] => Ok(Endpoint::OpenApiV3 {
            group: String::new(),
            version: "v1".into(),
        }),
        ["openapi", "v3", "apis", group, version] => Ok(Endpoint::OpenApiV3 {
            group: (*group).into(),
            version: (*version).into(),
        }),
        ["api"] => Ok(Endpoint::CoreVersions),
        ["api", "v1"] => Ok(Endpoint::ResourceList {
            group: String::new(),
            version: "v1".into(),
        }),
        ["api", "v1", rest @ ..] => resource(registry, "", "v1", rest),
        ["apis"] => Ok(Endpoint::Groups),
        ["apis", group] => Ok(Endpoint::Group((*group).into())),
        ["apis", group, version] => Ok(Endpoint::ResourceList {
            group: (*group).into(),
            version: (*version).into(),
        }),
        ["apis", group, version, rest @ ..] => resource(registry, group, version, rest),
        _ => Err(ApiError::no_route()),
    }
}

fn resource(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> ApiResult<Endpoint> {
    let lookup = |resource: &str| {
        registry
            .get(group, version, resource)
            .cloned()
            .ok_or_else(ApiError::no_route)
    };
    let target = match rest {
        ["namespaces", namespace, resource, tail @ ..]
            if !(matches!(*resource, "status" | "finalize") && tail.is_empty()) =>
        {
            let kind = lookup(resource)?;
            if !kind.namespaced {
                return Err(ApiError::no_route());
            }
            Target {
                kind,
                namespace: Some((*namespace).to_string()),
                name: tail.first().map(|s| (*s).to_string()),
                subresource: tail.get(1).map(|s| (*s).to_string()),
            }
        }
        [resource, tail @ ..] => {
            let kind = lookup(resource)?;
            if kind.namespaced && !tail.is_empty() {
                return Err(ApiError::no_route());
            }
            Target {
                kind,
                namespace: None,
                name: tail.first().map(|s| (*s).to_string()),
                subresource: tail.get(1).map(|s| (*s).to_string()),
            }
        }
        [] => return Err(ApiError::no_route()),
    };
    if rest.len() > if target.namespace.is_some() { 5 } else { 3 } {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &target.subresource
        && target.kind.subresource(sub).is_none()
    {
        return Err(ApiError::no_route());
    }
    Ok(Endpoint::Resource(Box::new(target)))
}

/// Query parameters, last value wins (as Go's `url.Values.Get` takes the first; kubectl never
/// repeats them).
pub fn query_map(query: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(decode(key)).or_insert_with(|| decode(value));
    }
    map
}

/// Percent-decoding with `+` as space, as `application/x-www-form-urlencoded` query strings use.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin;

    fn target(path: &str) -> Target {
        match endpoint(&builtin(), path).unwrap() {
            Endpoint::Resource(target) => *target,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        let t = target("/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (t.kind.resource, t.namespace.as_deref(), t.name.as_deref()),
            ("configmaps", Some("default"), Some("x"))
        );
        let t = target("/api/v1/namespaces/default");
        assert_eq!(
            (t.kind.resource, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = target("/api/v1/namespaces/ns1/status");
        assert_eq!(
            (t.kind.resource, t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let t = target("/apis/apps/v1/namespaces/a/deployments/web/scale");
        assert_eq!(t.subresource.as_deref(), Some("scale"));
        let t = target("/api/v1/pods");
        assert_eq!((t.kind.resource, t.namespace), ("pods", None));
        assert!(endpoint(&builtin(), "/api/v1/namespaces/a/configmaps/x/bogus").is_err());
        assert!(endpoint(&builtin(), "/apis/apps/v1/nothing").is_err());
    }

    #[test]
    fn clusters_and_queries() {
        assert_eq!(
            split_cluster("/clusters/t1/api/v1").unwrap(),
            ("t1".into(), "/api/v1".into())
        );
        assert_eq!(split_cluster("/api").unwrap(), ("root".into(), "/api".into()));
        assert!(split_cluster("/clusters/Bad_Name/api").is_err());
        let q = query_map(Some("labelSelector=a%3Db%2Ct%21%3Dx&limit=5&x=%zz"));
        assert_eq!(q["labelSelector"], "a=b,t!=x");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["x"], "%zz");
    }
}
