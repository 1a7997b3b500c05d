//! Discovery documents built from the registry: `/version`, legacy `/api`, `/apis`, `/api/v1`,
//! `/apis/<g>/<v>`, and aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1), chosen by the
//! Accept header as kube-apiserver does.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceKind};

/// What `/version` reports. The minor version must read as one the gcloud kubectl dispatcher
/// accepts (CLIENTS.md B4).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": "v1.35.0",
        "gitCommit": "coxswain",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// The aggregated discovery flavour an Accept header asks for, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregated {
    V2,
    V2Beta1,
}

impl Aggregated {
    /// The first aggregated type listed in `accept`, as upstream negotiates it.
    pub fn from_accept(accept: &str) -> Option<Self> {
        for entry in accept.split(',') {
            let parameters: Vec<&str> = entry.split(';').map(str::trim).collect();
            let is = |wanted: &str| parameters.iter().any(|p| p.replace(' ', "") == wanted);
            if is("g=apidiscovery.k8s.io") && is("as=APIGroupDiscoveryList") {
                if is("v=v2") {
                    return Some(Self::V2);
                }
                if is("v=v2beta1") {
                    return Some(Self::V2Beta1);
                }
            }
        }
        None
    }

    fn version(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V2Beta1 => "v2beta1",
        }
    }

    pub fn content_type(self) -> String {
        format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            self.version()
        )
    }
}

/// `/api` (legacy).
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "" }],
    })
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or(json!({})),
    })
}

/// `/apis` (legacy).
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| group_entry(group, versions))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>` (legacy), `None` for an unknown group.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    registry
        .groups()
        .into_iter()
        .find(|(group, _)| group == name && !name.is_empty())
        .map(|(group, versions)| {
            let mut entry = group_entry(&group, &versions);
            entry["kind"] = json!("APIGroup");
            entry["apiVersion"] = json!("v1");
            entry
        })
}

/// `/api/v1` or `/apis/<g>/<v>` (legacy), `None` when nothing is served there.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds = registry.group_version(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for kind in &kinds {
        let mut entry = json!({
            "name": kind.resource,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": kind.verbs,
        });
        if !kind.short_names.is_empty() {
            entry["shortNames"] = json!(kind.short_names);
        }
        if !kind.categories.is_empty() {
            entry["categories"] = json!(kind.categories);
        }
        resources.push(entry);
        for sub in kind.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", kind.resource, sub.name),
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": sub.kind.map_or(kind.kind, |(_, _, k)| k),
                "verbs": sub.verbs,
            });
            if let Some((g, v, _)) = sub.kind {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn aggregated_resource(kind: &ResourceKind) -> Value {
    let mut entry = json!({
        "resource": kind.resource,
        "responseKind": { "group": kind.group, "version": kind.version, "kind": kind.kind },
        "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": kind.singular,
        "verbs": kind.verbs,
    });
    if !kind.short_names.is_empty() {
        entry["shortNames"] = json!(kind.short_names);
    }
    if !kind.categories.is_empty() {
        entry["categories"] = json!(kind.categories);
    }
    if !kind.subresources.is_empty() {
        entry["subresources"] = json!(
            kind.subresources
                .iter()
                .map(|sub| {
                    let (g, v, k) = sub.kind.unwrap_or((kind.group, kind.version, kind.kind));
                    json!({
                        "subresource": sub.name,
                        "responseKind": { "group": g, "version": v, "kind": k },
                        "verbs": sub.verbs,
                    })
                })
                .collect::<Vec<_>>()
        );
    }
    entry
}

/// Aggregated discovery of the core group (`/api`) or of every named group (`/apis`).
pub fn aggregated(registry: &Registry, flavour: Aggregated, core: bool) -> Value {
    let items: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    json!({
                        "version": version,
                        "resources": registry
                            .group_version(group, version)
                            .into_iter()
                            .map(aggregated_resource)
                            .collect::<Vec<_>>(),
                        "freshness": "Current",
                    })
                })
                .collect();
            let mut item = json!({ "metadata": { "creationTimestamp": null }, "versions": versions });
            if !group.is_empty() {
                item["metadata"]["name"] = json!(group);
            }
            item
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", flavour.version()),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin;

    #[test]
    fn accept_negotiation_picks_the_first_aggregated_type() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Aggregated::from_accept(kubectl), Some(Aggregated::V2));
        assert_eq!(Aggregated::from_accept("application/json"), None);
    }

    #[test]
    fn scale_subresource_names_autoscaling_v1() {
        let registry = builtin();
        let apps = resource_list(&registry, "apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        let aggregated = aggregated(&registry, Aggregated::V2, true);
        let pods = aggregated["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"][0], "po");
        assert_eq!(pods["categories"][0], "all");
    }
}
