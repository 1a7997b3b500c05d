//! The registry: every resource the server knows, as configuration for the one generic REST handler
//! (scope, kind, names, subresources, table columns, strategy). Built-in resources are listed in
//! [`builtin`]; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::allocator::{ServiceAllocator, ServiceNetwork, WriteHooks};
use crate::conversion::{Conversion, EventsV1, HorizontalPodAutoscalerV1};
use crate::strategy::{self, Strategy};
use crate::table::Column;

/// A resource within its API group, as upstream prints it (`deployments.apps`, `configmaps`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            resource: resource.into(),
        }
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A subresource and the kind its requests and responses carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// (group, version, kind) of the body; `None` means the parent's kind.
    pub kind: Option<(&'static str, &'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

pub(crate) const STATUS: Subresource = Subresource {
    name: "status",
    kind: None,
    verbs: &["get", "patch", "update"],
};
pub(crate) const SCALE: Subresource = Subresource {
    name: "scale",
    kind: Some(("autoscaling", "v1", "Scale")),
    verbs: &["get", "patch", "update"],
};
const BINDING: Subresource = Subresource {
    name: "binding",
    kind: Some(("", "v1", "Binding")),
    verbs: &["create"],
};
const EVICTION: Subresource = Subresource {
    name: "eviction",
    kind: Some(("policy", "v1", "Eviction")),
    verbs: &["create"],
};
const FINALIZE: Subresource = Subresource {
    name: "finalize",
    kind: None,
    verbs: &["update"],
};

pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION_DELETE: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// One served resource in one group-version.
#[derive(Clone)]
pub struct ResourceKind {
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: the URL segment.
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub columns: &'static [Column],
    pub strategy: Arc<dyn Strategy>,
    /// Things held outside the object (ClusterIPs, NodePorts), if any.
    pub hooks: Option<Arc<dyn WriteHooks>>,
    /// Another resource's storage this one is served from, with the conversion between them.
    pub stored_as: Option<(&'static str, Arc<dyn Conversion>)>,
    /// Set for resources defined by a CustomResourceDefinition.
    pub custom: Option<Arc<CustomResource>>,
}

/// What a custom resource's definition adds to its configuration.
#[derive(Debug, Clone)]
pub struct CustomResource {
    /// The version's schema, with `apiVersion`, `kind` and `metadata` added at the root.
    pub schema: serde_json::Value,
    pub printer_columns: Vec<PrinterColumn>,
    /// The scale subresource's paths, as JSON pointers.
    pub scale: Option<ScalePaths>,
    /// Served but deprecated: a warning on every request.
    pub deprecation_warning: Option<String>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: u32,
    pub json_path: String,
}

/// Where a custom resource keeps what its scale subresource shows.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl fmt::Debug for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceKind")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl ResourceKind {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(self.group, self.resource)
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource's name in storage keys: one per group and resource, shared by its versions.
    pub fn storage_resource(&self) -> String {
        if let Some((resource, _)) = &self.stored_as {
            return (*resource).to_string();
        }
        format!(
            "{}/{}",
            if self.group.is_empty() { "core" } else { self.group },
            self.resource
        )
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// The schema of this resource's objects: the definition's for a custom resource, else
    /// upstream's.
    pub fn schema(&self) -> Option<&serde_json::Value> {
        match &self.custom {
            Some(custom) => Some(&custom.schema),
            None => crate::openapi::schema_of(self.group, self.version, self.kind),
        }
    }
}

/// All served resources, by (group, version, resource).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<(String, String, String), ResourceKind>,
    /// Group names in discovery order (core first, then as registered).
    group_order: Vec<String>,
}

impl Registry {
    pub fn add(&mut self, kind: ResourceKind) {
        if !self.group_order.iter().any(|g| g == kind.group) {
            self.group_order.push(kind.group.to_string());
        }
        self.kinds.insert(
            (kind.group.into(), kind.version.into(), kind.resource.into()),
            kind,
        );
    }

    pub fn get(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceKind> {
        self.kinds
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
    }

    /// Resources of a group-version in name order.
    pub fn group_version(&self, group: &str, version: &str) -> Vec<&ResourceKind> {
        self.kinds
            .values()
            .filter(|k| k.group == group && k.version == version)
            .collect()
    }

    /// Groups with their versions, preferred version first, in discovery order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        self.group_order
            .iter()
            .map(|group| {
                let mut versions: Vec<String> = Vec::new();
                for kind in self.kinds.values().filter(|k| k.group == group) {
                    if !versions.iter().any(|v| v == kind.version) {
                        versions.push(kind.version.to_string());
                    }
                }
                versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                (group.clone(), versions)
            })
            .collect()
    }

    /// The hooks of the resource stored as `storage_resource`.
    pub fn hooks_for(&self, storage_resource: &str) -> Option<Arc<dyn WriteHooks>> {
        self.kinds
            .values()
            .find(|k| k.storage_resource() == storage_resource)
            .and_then(|k| k.hooks.clone())
    }

    /// Every kind stored under `storage_resource` (all versions), for namespace cleanup.
    /// The served resource of a kind: in `version` if served there, else in another version of
    /// the group (versions share storage).
    pub fn find_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceKind> {
        let in_group = || self.kinds.values().filter(|k| k.group == group && k.kind == kind);
        in_group()
            .find(|k| k.version == version)
            .or_else(|| in_group().find(|k| k.stored_as.is_none()))
    }

    /// The resource whose own form is kept under a storage resource name.
    pub fn kind_for_storage(&self, storage_resource: &str) -> Option<&ResourceKind> {
        self.kinds
            .values()
            .find(|k| k.stored_as.is_none() && k.storage_resource() == storage_resource)
    }

    /// This registry plus `kinds` (custom resources of one logical cluster).
    pub fn with_kinds(&self, kinds: Vec<ResourceKind>) -> Registry {
        let mut registry = self.clone();
        for kind in kinds {
            registry.add(kind);
        }
        registry
    }

    /// Every served resource.
    pub fn kinds(&self) -> impl Iterator<Item = &ResourceKind> {
        self.kinds.values()
    }

    pub fn storage_resources(&self) -> Vec<(String, bool)> {
        let mut seen: Vec<(String, bool)> = Vec::new();
        for kind in self.kinds.values() {
            let resource = kind.storage_resource();
            if !seen.iter().any(|(r, _)| *r == resource) {
                seen.push((resource, kind.namespaced));
            }
        }
        seen
    }
}

/// Kubernetes version ordering: GA above beta above alpha, higher numbers first.
fn version_priority(version: &str) -> (u8, u32, u32) {
    let rest = version.trim_start_matches('v');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

#[allow(clippy::too_many_arguments)]
fn kind(
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceKind {
    ResourceKind {
        group,
        version,
        resource,
        singular,
        kind,
        namespaced,
        verbs: ALL_VERBS,
        short_names,
        categories,
        subresources,
        columns: crate::table::columns_for(group, resource),
        strategy: strategy::for_resource(group, resource),
        hooks: None,
        stored_as: None,
        custom: None,
    }
}

/// The built-in API with the default service network.
pub fn builtin() -> Registry {
    builtin_with(ServiceNetwork::default())
}

/// The built-in API of Kubernetes v1.35 that Coxswain serves.
pub fn builtin_with(network: ServiceNetwork) -> Registry {
    const ALL: &[&str] = &["all"];
    let mut registry = Registry::default();
    let core = [
        kind(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
            &[],
            &[STATUS, FINALIZE],
        ),
        kind(
            "",
            "v1",
            "pods",
            "pod",
            "Pod",
            true,
            &["po"],
            ALL,
            &[STATUS, BINDING, EVICTION],
        ),
        kind(
            "",
            "v1",
            "services",
            "service",
            "Service",
            true,
            &["svc"],
            ALL,
            &[STATUS],
        ),
        kind(
            "",
            "v1",
            "endpoints",
            "endpoints",
            "Endpoints",
            true,
            &["ep"],
            &[],
            &[],
        ),
        kind(
            "",
            "v1",
            "configmaps",
            "configmap",
            "ConfigMap",
            true,
            &["cm"],
            &[],
            &[],
        ),
        kind("", "v1", "secrets", "secret", "Secret", true, &[], &[], &[]),
        kind(
            "",
            "v1",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
            &["sa"],
            &[],
            &[],
        ),
        kind("", "v1", "nodes", "node", "Node", false, &["no"], &[], &[STATUS]),
        kind("", "v1", "events", "event", "Event", true, &["ev"], &[], &[]),
        kind(
            "",
            "v1",
            "limitranges",
            "limitrange",
            "LimitRange",
            true,
            &["limits"],
            &[],
            &[],
        ),
        kind(
            "",
            "v1",
            "resourcequotas",
            "resourcequota",
            "ResourceQuota",
            true,
            &["quota"],
            &[],
            &[STATUS],
        ),
        kind(
            "",
            "v1",
            "persistentvolumes",
            "persistentvolume",
            "PersistentVolume",
            false,
            &["pv"],
            &[],
            &[STATUS],
        ),
        kind(
            "",
            "v1",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            &[],
            &[STATUS],
        ),
        kind(
            "",
            "v1",
            "replicationcontrollers",
            "replicationcontroller",
            "ReplicationController",
            true,
            &["rc"],
            ALL,
            &[STATUS, SCALE],
        ),
        kind(
            "",
            "v1",
            "podtemplates",
            "podtemplate",
            "PodTemplate",
            true,
            &[],
            &[],
            &[],
        ),
        kind(
            "apps",
            "v1",
            "deployments",
            "deployment",
            "Deployment",
            true,
            &["deploy"],
            ALL,
            &[STATUS, SCALE],
        ),
        kind(
            "apps",
            "v1",
            "replicasets",
            "replicaset",
            "ReplicaSet",
            true,
            &["rs"],
            ALL,
            &[STATUS, SCALE],
        ),
        kind(
            "apps",
            "v1",
            "statefulsets",
            "statefulset",
            "StatefulSet",
            true,
            &["sts"],
            ALL,
            &[STATUS, SCALE],
        ),
        kind(
            "apps",
            "v1",
            "daemonsets",
            "daemonset",
            "DaemonSet",
            true,
            &["ds"],
            ALL,
            &[STATUS],
        ),
        kind(
            "apps",
            "v1",
            "controllerrevisions",
            "controllerrevision",
            "ControllerRevision",
            true,
            &[],
            &[],
            &[],
        ),
        kind("batch", "v1", "jobs", "job", "Job", true, &[], ALL, &[STATUS]),
        kind(
            "batch",
            "v1",
            "cronjobs",
            "cronjob",
            "CronJob",
            true,
            &["cj"],
            ALL,
            &[STATUS],
        ),
        kind(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            ALL,
            &[STATUS],
        ),
        kind(
            "autoscaling",
            "v1",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            ALL,
            &[STATUS],
        ),
        kind(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "ingress",
            "Ingress",
            true,
            &["ing"],
            &[],
            &[STATUS],
        ),
        kind(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "ingressclass",
            "IngressClass",
            false,
            &[],
            &[],
            &[],
        ),
        kind(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "networkpolicy",
            "NetworkPolicy",
            true,
            &["netpol"],
            &[],
            &[],
        ),
        kind(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            &[],
            &[STATUS],
        ),
        kind(
            "coordination.k8s.io",
            "v1",
            "leases",
            "lease",
            "Lease",
            true,
            &[],
            &[],
            &[],
        ),
        kind(
            "events.k8s.io",
            "v1",
            "events",
            "event",
            "Event",
            true,
            &["ev"],
            &[],
            &[],
        ),
        kind(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "endpointslice",
            "EndpointSlice",
            true,
            &[],
            &[],
            &[],
        ),
        kind(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "role",
            "Role",
            true,
            &[],
            &[],
            &[],
        ),
        kind(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "rolebinding",
            "RoleBinding",
            true,
            &[],
            &[],
            &[],
        ),
        kind(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "clusterrole",
            "ClusterRole",
            false,
            &[],
            &[],
            &[],
        ),
        kind(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
            false,
            &[],
            &[],
            &[],
        ),
        kind(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "storageclass",
            "StorageClass",
            false,
            &["sc"],
            &[],
            &[],
        ),
        kind(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            &["api-extensions"],
            &[STATUS],
        ),
        kind(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "priorityclass",
            "PriorityClass",
            false,
            &["pc"],
            &[],
            &[],
        ),
    ];
    for mut kind in core {
        if kind.resource == "namespaces" {
            kind.verbs = NO_COLLECTION_DELETE;
        }
        if kind.group == "events.k8s.io" {
            kind.stored_as = Some(("core/events", Arc::new(EventsV1)));
        }
        if kind.group == "autoscaling" && kind.version == "v1" {
            kind.stored_as = Some((
                "autoscaling/horizontalpodautoscalers",
                Arc::new(HorizontalPodAutoscalerV1),
            ));
        }
        if kind.group.is_empty() && kind.resource == "services" {
            kind.hooks = Some(ServiceAllocator::new(network));
        }
        registry.add(kind);
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_list_core_first_and_the_preferred_version_first() {
        let registry = builtin();
        let groups = registry.groups();
        assert_eq!(groups[0].0, "");
        let autoscaling = groups.iter().find(|(g, _)| g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, ["v2", "v1"]);
        assert_eq!(
            registry
                .get("apps", "v1", "deployments")
                .unwrap()
                .storage_resource(),
            "apps/deployments"
        );
        assert!(version_priority("v1") > version_priority("v2beta1"));
        assert!(version_priority("v1beta2") > version_priority("v1beta1"));
    }
}
