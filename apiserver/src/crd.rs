//! CustomResourceDefinitions: the definition resource's defaults and validation, the custom
//! resources a definition serves (one [`ResourceKind`] per served version, with its schema, printer
//! columns and subresources), the per-logical-cluster APIs ([`Apis`]), and the controller that
//! accepts names, sets the `NamesAccepted`/`Established` conditions, registers the APIs and, when
//! a definition is deleted, deletes its objects before letting the definition go.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use coxswain_storage::{
    ClusterScope, ListRequest, Preconditions, Scope, Store, StoredObject, WatchEvent, WatchRequest,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::Cause;
use crate::jsonpath::JsonPath;
use crate::registry::{
    CustomResource, PrinterColumn, Registry, ResourceKind, SCALE, STATUS, ScalePaths, Subresource,
};
use crate::strategy::Strategy;
use crate::structural;

/// Where definitions are stored.
pub const DEFINITIONS: &str = "apiextensions.k8s.io/customresourcedefinitions";
/// Holds a deleted definition until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// Groups that need the API-approval annotation.
const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

/// The `&'static` names a [`ResourceKind`] holds, made once per distinct text.
fn intern(text: &str) -> &'static str {
    static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let Ok(mut guard) = STRINGS.lock() else {
        return Box::leak(text.to_string().into_boxed_str());
    };
    let strings = guard.get_or_insert_with(HashSet::new);
    if let Some(existing) = strings.get(text) {
        return existing;
    }
    let leaked: &'static str = Box::leak(text.to_string().into_boxed_str());
    strings.insert(leaked);
    leaked
}

fn intern_list(items: &[String]) -> &'static [&'static str] {
    static LISTS: Mutex<Option<HashMap<Vec<String>, &'static [&'static str]>>> = Mutex::new(None);
    let make = || -> &'static [&'static str] {
        Box::leak(
            items
                .iter()
                .map(|i| intern(i))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    };
    let Ok(mut guard) = LISTS.lock() else {
        return make();
    };
    let lists = guard.get_or_insert_with(HashMap::new);
    if let Some(existing) = lists.get(items) {
        return existing;
    }
    let made = make();
    lists.insert(items.to_vec(), made);
    made
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| Some(i.as_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `spec.names` with upstream's defaults (singular: the lower-cased kind; listKind: kind + List).
fn names_with_defaults(crd: &Value) -> Value {
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    let kind = text(&names, "/kind").to_string();
    if text(&names, "/singular").is_empty() && !kind.is_empty() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if text(&names, "/listKind").is_empty() && !kind.is_empty() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    names
}

/// The definition resource's strategy.
#[derive(Debug, Clone, Copy)]
pub struct DefinitionStrategy;

impl Strategy for DefinitionStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        let names = names_with_defaults(object);
        if object.get("spec").is_some_and(Value::is_object) {
            object["spec"]["names"] = names;
            if object.pointer("/spec/conversion").is_none() {
                object["spec"]["conversion"] = json!({ "strategy": "None" });
            }
        }
        let mut finalizers = strings(object, "/metadata/finalizers");
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            finalizers.push(CLEANUP_FINALIZER.to_string());
            object["metadata"]["finalizers"] = json!(finalizers);
        }
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        let names = names_with_defaults(object);
        if object.get("spec").is_some_and(Value::is_object) {
            object["spec"]["names"] = names;
        }
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        validate_definition(object)
    }

    fn validate_update(&self, object: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = validate_definition(object);
        if object.pointer("/spec/scope") != old.pointer("/spec/scope") {
            causes.push(Cause::immutable("spec.scope"));
        }
        if object.pointer("/spec/group") != old.pointer("/spec/group") {
            causes.push(Cause::immutable("spec.group"));
        }
        causes
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Upstream's checks of a definition, as field causes.
fn validate_definition(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let name = text(crd, "/metadata/name");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    } else if (group.ends_with(".k8s.io") || group.ends_with(".kubernetes.io") || group == "k8s.io")
        && crd
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(APPROVAL_ANNOTATION))
            .is_none()
    {
        causes.push(Cause {
            reason: "FieldValueRequired",
            message: format!(
                "Required value: protected groups must have approval annotation \"{APPROVAL_ANNOTATION}\", see https://github.com/kubernetes/enhancements/pull/1111"
            ),
            field: format!("metadata.annotations[{APPROVAL_ANNOTATION}]"),
        });
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    } else if !is_dns_label(plural) {
        causes.push(Cause::invalid(
            "spec.names.plural",
            plural,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match text(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => causes.push(Cause::required("spec.scope")),
        other => causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                json!(other)
            ),
            field: "spec.scope".into(),
        }),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: "Invalid value: \"null\": must have exactly one version marked as storage version"
                .into(),
            field: "spec.versions".into(),
        });
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .count();
        if storage != 1 {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: must have exactly one version marked as storage version",
                    json!(versions)
                ),
                field: "spec.versions".into(),
            });
        }
        let mut seen = HashSet::new();
        for (index, version) in versions.iter().enumerate() {
            let path = format!("spec.versions[{index}]");
            let version_name = text(version, "/name");
            if version_name.is_empty() {
                causes.push(Cause::required(format!("{path}.name")));
            } else if !is_dns_label(version_name) {
                causes.push(Cause::invalid(
                    format!("{path}.name"),
                    version_name,
                    "must be a DNS-1035 label",
                ));
            } else if !seen.insert(version_name.to_string()) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    message: format!("Duplicate value: {}", json!(version_name)),
                    field: format!("{path}.name"),
                });
            }
            match version.pointer("/schema/openAPIV3Schema") {
                None => causes.push(Cause {
                    reason: "FieldValueRequired",
                    message: "Required value: schemas are required".into(),
                    field: format!("{path}.schema.openAPIV3Schema"),
                }),
                Some(schema) => {
                    let schema_path = format!("{path}.schema.openAPIV3Schema");
                    causes.extend(structural::structural_errors(schema, &schema_path));
                    causes.extend(crate::cel::definition_errors(schema, &schema_path));
                }
            }
            for (column_index, column) in version
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let column_path = format!("{path}.additionalPrinterColumns[{column_index}]");
                if let Err(err) = JsonPath::parse(text(column, "/jsonPath")) {
                    causes.push(Cause::invalid(
                        format!("{column_path}.jsonPath"),
                        text(column, "/jsonPath"),
                        err,
                    ));
                }
            }
        }
    }
    causes
}

/// A custom resource's strategy: the definition's schema validates and defaults its objects; with
/// a status subresource the main resource does not change status, nor create it.
#[derive(Debug)]
pub struct CustomStrategy {
    schema: Value,
    status: bool,
    rules: Option<crate::cel::Rules>,
}

impl Strategy for CustomStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        if self.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        structural::apply_defaults(object, &self.schema);
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        if self.status {
            match old.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        structural::apply_defaults(object, &self.schema);
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        let mut causes = structural::validate(object, &self.schema, "");
        if causes.is_empty()
            && let Some(rules) = &self.rules
        {
            causes.extend(rules.check(object, None));
        }
        causes
    }

    fn validate_update(&self, object: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = structural::validate(object, &self.schema, "");
        if causes.is_empty()
            && let Some(rules) = &self.rules
        {
            causes.extend(rules.check(object, Some(old)));
        }
        causes
    }
}

/// The served kinds of an established definition: one per served version.
pub fn kinds_of(crd: &Value) -> Vec<ResourceKind> {
    let names = crd
        .pointer("/status/acceptedNames")
        .filter(|n| n.get("plural").is_some())
        .cloned()
        .unwrap_or_else(|| names_with_defaults(crd));
    let group = intern(text(crd, "/spec/group"));
    let plural = intern(text(&names, "/plural"));
    let singular = intern(text(&names, "/singular"));
    let kind = intern(text(&names, "/kind"));
    let namespaced = text(crd, "/spec/scope") == "Namespaced";
    let short_names = intern_list(&strings(&names, "/shortNames"));
    let categories = intern_list(&strings(&names, "/categories"));
    let mut kinds = Vec::new();
    for version in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if version.get("served") != Some(&json!(true)) {
            continue;
        }
        let schema = version
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }));
        let status = version.pointer("/subresources/status").is_some();
        let scale = version.pointer("/subresources/scale").map(|scale| ScalePaths {
            spec_replicas: pointer_of(text(scale, "/specReplicasPath")),
            status_replicas: pointer_of(text(scale, "/statusReplicasPath")),
            label_selector: scale
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(pointer_of),
        });
        let subresources: &'static [Subresource] = match (status, scale.is_some()) {
            (true, true) => &[STATUS, SCALE],
            (true, false) => &[STATUS],
            (false, true) => &[SCALE],
            (false, false) => &[],
        };
        let printer_columns = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|column| PrinterColumn {
                name: text(column, "/name").to_string(),
                kind: text(column, "/type").to_string(),
                format: text(column, "/format").to_string(),
                description: text(column, "/description").to_string(),
                priority: column.get("priority").and_then(Value::as_u64).unwrap_or(0) as u32,
                json_path: text(column, "/jsonPath").to_string(),
            })
            .collect();
        let version_name = intern(text(version, "/name"));
        let deprecation_warning = (version.get("deprecated") == Some(&json!(true))).then(|| {
            version
                .get("deprecationWarning")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{group}/{version_name} {kind} is deprecated"))
        });
        kinds.push(ResourceKind {
            group,
            version: version_name,
            resource: plural,
            singular,
            kind,
            namespaced,
            verbs: crate::registry::ALL_VERBS,
            short_names,
            categories,
            subresources,
            columns: &[],
            strategy: Arc::new(CustomStrategy {
                rules: crate::cel::Rules::compile(&schema),
                schema: schema.clone(),
                status,
            }),
            hooks: None,
            stored_as: None,
            custom: Some(Arc::new(CustomResource {
                schema: structural::with_object_meta(&schema),
                printer_columns,
                scale,
                deprecation_warning,
            })),
        });
    }
    kinds
}

/// A scale path (`.spec.replicas`) as a JSON pointer.
fn pointer_of(path: &str) -> String {
    JsonPath::parse(path)
        .ok()
        .and_then(|p| p.pointer())
        .unwrap_or_default()
}

/// The APIs of every logical cluster: the built-ins, plus each cluster's custom resources.
#[derive(Debug)]
pub struct Apis {
    base: Arc<Registry>,
    clusters: RwLock<HashMap<String, Arc<Registry>>>,
    /// Woken whenever a cluster's custom resources change.
    changed: tokio::sync::Notify,
}

impl Apis {
    pub fn new(base: Arc<Registry>) -> Self {
        Self {
            base,
            clusters: RwLock::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The built-in API.
    pub fn base(&self) -> &Arc<Registry> {
        &self.base
    }

    /// What `cluster` serves.
    pub fn for_cluster(&self, cluster: &str) -> Arc<Registry> {
        self.clusters
            .read()
            .ok()
            .and_then(|clusters| clusters.get(cluster).cloned())
            .unwrap_or_else(|| self.base.clone())
    }

    /// Whether `cluster` serves custom resources.
    pub fn has_custom(&self, cluster: &str) -> bool {
        self.clusters
            .read()
            .is_ok_and(|clusters| clusters.contains_key(cluster))
    }

    /// Every storage resource some logical cluster serves.
    pub fn all_storage_resources(&self) -> HashSet<String> {
        let mut resources: HashSet<String> = self
            .base
            .storage_resources()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        if let Ok(clusters) = self.clusters.read() {
            for registry in clusters.values() {
                resources.extend(registry.storage_resources().into_iter().map(|(r, _)| r));
            }
        }
        resources
    }

    /// Completes when some cluster's custom resources change after this call.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn set(&self, cluster: &str, kinds: Vec<ResourceKind>) {
        let Ok(mut clusters) = self.clusters.write() else {
            return;
        };
        let before: Option<Vec<(String, String)>> = clusters.get(cluster).map(|r| custom_names(r));
        if kinds.is_empty() {
            clusters.remove(cluster);
        } else {
            clusters.insert(cluster.to_string(), Arc::new(self.base.with_kinds(kinds)));
        }
        if clusters.get(cluster).map(|r| custom_names(r)) != before {
            self.changed.notify_waiters();
        }
    }
}

/// The (group/version, resource) of a registry's custom resources.
fn custom_names(registry: &Registry) -> Vec<(String, String)> {
    registry
        .kinds()
        .filter(|k| k.custom.is_some())
        .map(|k| (k.api_version(), k.resource.to_string()))
        .collect()
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, previous: &Value) -> Value {
    let status_text = if status { "True" } else { "False" };
    let earlier = previous
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|c| c.get("type") == Some(&json!(kind))));
    let since = match earlier {
        Some(c) if c.get("status") == Some(&json!(status_text)) => c
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(crate::object::now())),
        _ => json!(crate::object::now()),
    };
    json!({ "type": kind, "status": status_text, "lastTransitionTime": since, "reason": reason, "message": message })
}

/// The status a definition should have, given the names other definitions already hold.
fn desired_status(
    crd: &Value,
    taken: &mut HashMap<(String, String), String>,
    base: &Registry,
) -> (Value, bool) {
    let names = names_with_defaults(crd);
    let group = text(crd, "/spec/group").to_string();
    let me = text(crd, "/metadata/name").to_string();
    let plural = text(&names, "/plural").to_string();
    let kind = text(&names, "/kind").to_string();
    let singular = text(&names, "/singular").to_string();
    let list_kind = text(&names, "/listKind").to_string();
    let short_names = strings(&names, "/shortNames");
    // (reason, message) of the first name another definition (or a built-in resource) holds, checked
    // in upstream's order.
    let held_elsewhere = |what: &str, value: &str| {
        taken
            .get(&(group.clone(), format!("{what}:{value}")))
            .is_some_and(|owner| *owner != me)
    };
    let built_in = |value: &str| {
        base.kinds()
            .any(|k| k.group == group && (k.resource == value || k.kind == value))
    };
    let mut conflict: Option<(&str, String)> = None;
    for (reason, what, value) in [
        ("PluralConflict", "plural", &plural),
        ("SingularConflict", "singular", &singular),
        ("KindConflict", "kind", &kind),
        ("ListKindConflict", "listKind", &list_kind),
    ] {
        if conflict.is_none() && (held_elsewhere(what, value) || built_in(value)) {
            conflict = Some((reason, format!("{value:?} is already in use")));
        }
    }
    for short in &short_names {
        if conflict.is_none() && held_elsewhere("shortName", short) {
            conflict = Some(("ShortNamesConflict", format!("{short:?} is already in use")));
        }
    }
    let accepted = conflict.is_none();
    if accepted {
        for (what, value) in [
            ("plural", &plural),
            ("singular", &singular),
            ("kind", &kind),
            ("listKind", &list_kind),
        ] {
            taken.insert((group.clone(), format!("{what}:{value}")), me.clone());
        }
        for short in &short_names {
            taken.insert((group.clone(), format!("shortName:{short}")), me.clone());
        }
    }
    let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
    let mut conditions = vec![if accepted {
        condition("NamesAccepted", true, "NoConflicts", "no conflicts found", crd)
    } else {
        let (reason, message) = conflict.unwrap_or(("NameConflict", String::new()));
        condition("NamesAccepted", false, reason, &message, crd)
    }];
    conditions.push(if accepted {
        condition(
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
            crd,
        )
    } else {
        condition(
            "Established",
            false,
            "NotAccepted",
            "not all names are accepted",
            crd,
        )
    });
    if terminating {
        conditions.push(condition(
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            crd,
        ));
    }
    let mut stored: Vec<String> = strings(crd, "/status/storedVersions");
    for version in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = text(version, "/name").to_string();
        if version.get("storage") == Some(&json!(true)) && !stored.contains(&name) {
            stored.push(name);
        }
    }
    let accepted_names = if accepted {
        names
    } else {
        crd.pointer("/status/acceptedNames")
            .cloned()
            .unwrap_or_else(|| json!({ "plural": "", "kind": "" }))
    };
    (
        json!({ "conditions": conditions, "acceptedNames": accepted_names, "storedVersions": stored }),
        accepted && !terminating,
    )
}

/// Brings one logical cluster's definitions and APIs up to date; returns whether there is more to
/// do (a deleted definition's objects still going).
async fn reconcile_cluster(store: &dyn Store, apis: &Apis, cluster: &str) -> coxswain_storage::Result<bool> {
    let request = ListRequest::new(Scope::new(ClusterScope::one(cluster), DEFINITIONS, None));
    let mut definitions: Vec<(StoredObject, Value)> = Vec::new();
    for stored in store.list(&request).await?.items {
        let object = stored.json()?;
        definitions.push((stored, object));
    }
    definitions.sort_by(|a, b| {
        (
            text(&a.1, "/metadata/creationTimestamp"),
            text(&a.1, "/metadata/name"),
        )
            .cmp(&(
                text(&b.1, "/metadata/creationTimestamp"),
                text(&b.1, "/metadata/name"),
            ))
    });
    let mut taken = HashMap::new();
    let mut kinds = Vec::new();
    let mut pending = false;
    for (mut stored, object) in definitions {
        let (status, serve) = desired_status(&object, &mut taken, apis.base());
        let mut current = object.clone();
        if current.get("status").map(without_times) != Some(without_times(&status)) {
            current["status"] = status;
            let bytes = Bytes::from(serde_json::to_vec(&current).unwrap_or_default());
            match store
                .update(&stored.key, bytes, &Preconditions::revision(stored.revision))
                .await
            {
                Ok(written) => stored = written,
                // Changed or gone meanwhile: its own event brings it back here.
                Err(coxswain_storage::Error::Conflict { .. } | coxswain_storage::Error::NotFound { .. }) => {
                    pending = true;
                    continue;
                }
                Err(err) => return Err(err),
            }
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            pending |= !finish_deletion(store, cluster, &stored, &current).await?;
            continue;
        }
        if serve {
            kinds.extend(kinds_of(&current));
        }
    }
    apis.set(cluster, kinds);
    Ok(pending)
}

/// A status without its conditions' transition times, for "did anything change" comparisons.
fn without_times(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(Value::Array(conditions)) = status.get_mut("conditions") {
        for condition in conditions {
            if let Some(map) = condition.as_object_mut() {
                map.remove("lastTransitionTime");
            }
        }
    }
    status
}

/// Deletes a deleted definition's objects, then releases it; true when it is gone.
async fn finish_deletion(
    store: &dyn Store,
    cluster: &str,
    stored: &StoredObject,
    crd: &Value,
) -> coxswain_storage::Result<bool> {
    let resource = format!(
        "{}/{}",
        text(crd, "/spec/group"),
        text(crd, "/status/acceptedNames/plural")
    );
    if !text(crd, "/status/acceptedNames/plural").is_empty() {
        let request = ListRequest::new(Scope::new(ClusterScope::one(cluster), resource, None));
        for object in store.list(&request).await?.items {
            match store.delete(&object.key, &Preconditions::none()).await {
                Ok(_) | Err(coxswain_storage::Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    let mut released = crd.clone();
    if let Some(Value::Array(finalizers)) = released.pointer_mut("/metadata/finalizers") {
        finalizers.retain(|f| f.as_str() != Some(CLEANUP_FINALIZER));
    }
    let bytes = Bytes::from(serde_json::to_vec(&released).unwrap_or_default());
    match store
        .update(&stored.key, bytes, &Preconditions::revision(stored.revision))
        .await
    {
        Ok(written) => {
            crate::deletion::finish_if_released(store, None, &written).await;
            info!(%cluster, name = %stored.key.name, "custom resource definition deleted with its objects");
            Ok(true)
        }
        Err(coxswain_storage::Error::Conflict { .. } | coxswain_storage::Error::NotFound { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Registers the definitions of every logical cluster (at start, before serving).
pub async fn load(store: &dyn Store, apis: &Apis) -> coxswain_storage::Result<()> {
    let request = ListRequest::new(Scope::new(ClusterScope::All, DEFINITIONS, None));
    let clusters: HashSet<String> = store
        .list(&request)
        .await?
        .items
        .into_iter()
        .map(|stored| stored.key.cluster)
        .collect();
    for cluster in clusters {
        reconcile_cluster(store, apis, &cluster).await?;
    }
    Ok(())
}

/// Follows definition changes in every logical cluster and reconciles the cluster each is in.
pub fn spawn_controller(
    store: Arc<dyn Store>,
    apis: Arc<Apis>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let retry = Duration::from_millis(500);
        loop {
            let revision = match store.current_revision().await {
                Ok(revision) => revision,
                Err(err) => {
                    debug!(error = %err, "definition controller cannot read the revision; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(retry) => continue,
                    }
                }
            };
            let request = WatchRequest {
                scope: Scope::new(ClusterScope::All, DEFINITIONS, None),
                after_revision: Some(revision),
                progress_interval: None,
            };
            let mut events = match store.watch(request).await {
                Ok(events) => events,
                Err(err) => {
                    debug!(error = %err, "definition controller cannot watch; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(retry) => continue,
                    }
                }
            };
            // Whatever changed before the watch started is picked up by reconciling everything.
            if let Err(err) = load(store.as_ref(), &apis).await {
                warn!(error = %err, "cannot reconcile custom resource definitions");
            }
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = events.next() => next,
                };
                let cluster = match next {
                    Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o))) => {
                        o.key.cluster
                    }
                    Some(Ok(WatchEvent::Progress { .. })) => continue,
                    Some(Err(err)) => {
                        debug!(error = %err, "definition watch failed; starting again");
                        break;
                    }
                    None => break,
                };
                let mut attempt = 0;
                loop {
                    match reconcile_cluster(store.as_ref(), &apis, &cluster).await {
                        Ok(false) => break,
                        Ok(true) if attempt > 50 => break,
                        Ok(true) => {}
                        Err(err) => {
                            warn!(%cluster, error = %err, "cannot reconcile custom resource definitions")
                        }
                    }
                    attempt += 1;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    })
}
