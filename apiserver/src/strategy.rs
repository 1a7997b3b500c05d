//! Per-resource strategies: the defaulting (mutating, `&mut`) and validation (read-only, returns
//! field errors) that make one generic handler behave like each upstream resource. A resource
//! without special rules uses [`Plain`].

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::Cause;
use crate::validation;

/// How an object's name is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most resources).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Rfc1035Label,
    /// Any name usable as a path segment (RBAC objects).
    PathSegment,
}

pub trait Strategy: Send + Sync {
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether `metadata.generation` counts changes to everything but metadata and status.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Server-set fields and defaults on create.
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Server-set fields and defaults on update; `old` is the stored object.
    fn prepare_for_update(&self, object: &mut Value, _old: &Value) {
        self.prepare_for_create(object);
    }

    /// Field errors of a new object (beyond the metadata checks every resource gets).
    fn validate(&self, _object: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Field errors of an update, such as changes to immutable fields.
    fn validate_update(&self, object: &Value, _old: &Value) -> Vec<Cause> {
        self.validate(object)
    }

    /// `Some(seconds)` when deleting `object` (with the client's requested grace period) only marks
    /// it, for its owner to finish; `None` deletes it now.
    fn graceful_delete_seconds(&self, _object: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }
}

/// No rules beyond metadata.
#[derive(Debug, Clone, Copy)]
pub struct Plain;
impl Strategy for Plain {}

/// Resources with a spec whose changes bump `metadata.generation`.
#[derive(Debug, Clone, Copy)]
pub struct Generational;
impl Strategy for Generational {
    fn tracks_generation(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy)]
struct RbacObject;
impl Strategy for RbacObject {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

#[derive(Debug, Clone, Copy)]
struct Namespace;
impl Strategy for Namespace {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, object: &mut Value) {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let metadata = ensure_object(object, "metadata");
        ensure_object_in(metadata, "labels").insert("kubernetes.io/metadata.name".into(), json!(name));
        let spec = ensure_object(object, "spec");
        if !spec.contains_key("finalizers") {
            spec.insert("finalizers".into(), json!(["kubernetes"]));
        }
        let status = ensure_object(object, "status");
        if !status.contains_key("phase") {
            status.insert("phase".into(), json!("Active"));
        }
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        // spec.finalizers changes only through /finalize; status through /status.
        if let Some(spec) = old.get("spec") {
            object["spec"] = spec.clone();
        }
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        self.prepare_for_create(object);
    }
}

#[derive(Debug, Clone, Copy)]
struct Secret;
impl Strategy for Secret {
    fn prepare_for_create(&self, object: &mut Value) {
        use base64::Engine;
        let Some(top) = object.as_object_mut() else {
            return;
        };
        if !top.contains_key("type") {
            top.insert("type".into(), json!("Opaque"));
        }
        // stringData is write-only: merged into data (base64) and dropped.
        if let Some(Value::Object(strings)) = top.remove("stringData") {
            let data = ensure_object_in(top, "data");
            for (key, value) in strings {
                if let Some(text) = value.as_str() {
                    data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
                }
            }
        }
    }

    fn validate_update(&self, object: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if object.get("type") != old.get("type") {
            causes.push(Cause::immutable("type"));
        }
        if old.get("immutable") == Some(&json!(true)) && object.get("data") != old.get("data") {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: field is immutable when `immutable` is set".into(),
                field: "data".into(),
            });
        }
        causes
    }
}

#[derive(Debug, Clone, Copy)]
struct Service;
impl Strategy for Service {
    fn name_rule(&self) -> NameRule {
        NameRule::Rfc1035Label
    }

    fn prepare_for_create(&self, object: &mut Value) {
        let spec = ensure_object(object, "spec");
        default(spec, "type", json!("ClusterIP"));
        default(spec, "sessionAffinity", json!("None"));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                default(port, "protocol", json!("TCP"));
                if let Some(number) = port.get("port").cloned() {
                    default(port, "targetPort", number);
                }
            }
        }
        ensure_object(object, "status")
            .entry("loadBalancer")
            .or_insert_with(|| json!({}));
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        self.prepare_for_create(object);
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(Value::Array(ports)) = object.pointer("/spec/ports") {
            for (index, port) in ports.iter().enumerate() {
                match port.get("port").and_then(Value::as_i64) {
                    Some(number) if (1..=65535).contains(&number) => {}
                    Some(number) => causes.push(Cause {
                        reason: "FieldValueInvalid",
                        message: format!("Invalid value: {number}: must be between 1 and 65535, inclusive"),
                        field: format!("spec.ports[{index}].port"),
                    }),
                    None => causes.push(Cause::required(format!("spec.ports[{index}].port"))),
                }
            }
        }
        causes
    }
}

/// Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, ReplicationControllers: a pod template
/// with upstream's defaults, and a generation.
#[derive(Debug, Clone, Copy)]
struct Workload {
    resource: &'static str,
}
impl Strategy for Workload {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        let resource = self.resource;
        let spec = ensure_object(object, "spec");
        if matches!(
            resource,
            "deployments" | "replicasets" | "statefulsets" | "replicationcontrollers"
        ) {
            default(spec, "replicas", json!(1));
        }
        match resource {
            "deployments" => {
                let strategy = ensure_object_in(spec, "strategy");
                default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let rolling = ensure_object_in(strategy, "rollingUpdate");
                    default(rolling, "maxUnavailable", json!("25%"));
                    default(rolling, "maxSurge", json!("25%"));
                }
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
            }
            "replicasets" | "replicationcontrollers" => {}
            "statefulsets" => {
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                let strategy = ensure_object_in(spec, "updateStrategy");
                default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    default(ensure_object_in(strategy, "rollingUpdate"), "partition", json!(0));
                }
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            "daemonsets" => {
                let strategy = ensure_object_in(spec, "updateStrategy");
                default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let rolling = ensure_object_in(strategy, "rollingUpdate");
                    default(rolling, "maxUnavailable", json!(1));
                    default(rolling, "maxSurge", json!(0));
                }
                default(spec, "revisionHistoryLimit", json!(10));
            }
            "jobs" => {
                default(spec, "parallelism", json!(1));
                default(spec, "backoffLimit", json!(6));
                default(spec, "completionMode", json!("NonIndexed"));
                default(spec, "suspend", json!(false));
                default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
                if !spec.contains_key("completions") {
                    spec.insert("completions".into(), json!(1));
                }
                default(spec, "manualSelector", json!(false));
            }
            _ => {}
        }
        if resource == "jobs"
            && spec.get("manualSelector") != Some(&json!(true))
            && !spec.contains_key("selector")
        {
            // Upstream generates the selector from the Job's uid and labels the pod template.
            let uid = object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            object["spec"]["selector"] =
                json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
            let template = ensure_object(&mut object["spec"], "template");
            let labels = ensure_object_in(ensure_object_in(template, "metadata"), "labels");
            for (key, value) in [
                ("batch.kubernetes.io/controller-uid", &uid),
                ("batch.kubernetes.io/job-name", &name),
                ("controller-uid", &uid),
                ("job-name", &name),
            ] {
                labels.insert(key.into(), json!(value));
            }
        }
        let spec = ensure_object(object, "spec");
        if let Some(Value::Object(template)) = spec.get_mut("template") {
            let default_restart = if resource == "jobs" { "Never" } else { "Always" };
            if let Some(Value::Object(pod_spec)) = template.get_mut("spec") {
                default_pod_spec(pod_spec, default_restart);
            }
        }
        if object.get("status").is_none() {
            object["status"] = json!({});
        }
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        self.prepare_for_create(object);
    }

    fn validate_update(&self, object: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.resource != "replicationcontrollers"
            && old.pointer("/spec/selector").is_some()
            && object.pointer("/spec/selector") != old.pointer("/spec/selector")
        {
            causes.push(Cause::immutable("spec.selector"));
        }
        causes
    }
}

#[derive(Debug, Clone, Copy)]
struct Pod;
impl Strategy for Pod {
    fn prepare_for_create(&self, object: &mut Value) {
        if let Some(Value::Object(spec)) = object.get_mut("spec") {
            default_pod_spec(spec, "Always");
        }
        let status = ensure_object(object, "status");
        default(status, "phase", json!("Pending"));
        default(status, "qosClass", json!("BestEffort"));
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        if let Some(Value::Object(spec)) = object.get_mut("spec") {
            default_pod_spec(spec, "Always");
        }
    }

    /// A pod on a node is deleted gracefully (its kubelet stops it, then deletes it with grace 0);
    /// one that never reached a node, or a grace period of 0, goes at once.
    fn graceful_delete_seconds(&self, object: &Value, requested: Option<i64>) -> Option<i64> {
        let on_node = object
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let grace = requested
            .or_else(|| {
                object
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0);
        let finished = matches!(
            object.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        (on_node && grace > 0 && !finished).then_some(grace)
    }
}

/// PersistentVolumes and PersistentVolumeClaims: upstream's defaults.
#[derive(Debug, Clone, Copy)]
struct Volume {
    claim: bool,
}
impl Strategy for Volume {
    fn prepare_for_create(&self, object: &mut Value) {
        let spec = ensure_object(object, "spec");
        default(spec, "volumeMode", json!("Filesystem"));
        if !self.claim {
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        }
        default(ensure_object(object, "status"), "phase", json!("Pending"));
    }

    fn prepare_for_update(&self, object: &mut Value, old: &Value) {
        if let Some(status) = old.get("status") {
            object["status"] = status.clone();
        }
        self.prepare_for_create(object);
    }
}

/// Upstream's pod spec defaults.
fn default_pod_spec(spec: &mut Map<String, Value>, restart_policy: &str) {
    default(spec, "restartPolicy", json!(restart_policy));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                default(container, "terminationMessagePath", json!("/dev/termination-log"));
                default(container, "terminationMessagePolicy", json!("File"));
                default(container, "resources", json!({}));
                let image = container.get("image").and_then(Value::as_str).unwrap_or("");
                let policy = if image_tag_is_latest(image) {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default(container, "imagePullPolicy", json!(policy));
                if let Some(Value::Array(ports)) = container.get_mut("ports") {
                    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// `Always` is the pull policy default for images tagged `latest` or without tag or digest.
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !map.contains_key(key) || map.get(key) == Some(&Value::Null) {
        map.insert(key.to_string(), value);
    }
}

/// `object[key]` as an object, replacing anything else there.
pub fn ensure_object<'a>(object: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    match object {
        Value::Object(map) => ensure_object_in(map, key),
        _ => unreachable!("just made an object"),
    }
}

pub fn ensure_object_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("just made an object"),
    }
}

/// The strategy of a built-in resource.
pub fn for_resource(group: &str, resource: &str) -> Arc<dyn Strategy> {
    match (group, resource) {
        ("", "namespaces") => Arc::new(Namespace),
        ("", "secrets") => Arc::new(Secret),
        ("", "services") => Arc::new(Service),
        ("", "pods") => Arc::new(Pod),
        ("", "persistentvolumes") => Arc::new(Volume { claim: false }),
        ("", "persistentvolumeclaims") => Arc::new(Volume { claim: true }),
        ("", "replicationcontrollers") => Arc::new(Workload {
            resource: "replicationcontrollers",
        }),
        ("apps", "deployments") => Arc::new(Workload {
            resource: "deployments",
        }),
        ("apps", "replicasets") => Arc::new(Workload {
            resource: "replicasets",
        }),
        ("apps", "statefulsets") => Arc::new(Workload {
            resource: "statefulsets",
        }),
        ("apps", "daemonsets") => Arc::new(Workload {
            resource: "daemonsets",
        }),
        ("batch", "jobs") => Arc::new(Workload { resource: "jobs" }),
        ("batch", "cronjobs") | ("autoscaling", _) | ("policy", _) | ("networking.k8s.io", "ingresses") => {
            Arc::new(Generational)
        }
        ("rbac.authorization.k8s.io", _) => Arc::new(RbacObject),
        ("apiextensions.k8s.io", "customresourcedefinitions") => Arc::new(crate::crd::DefinitionStrategy),
        _ => Arc::new(Plain),
    }
}

/// The name errors of `name` under `rule`, as causes on `metadata.name`.
pub fn validate_name(rule: NameRule, name: &str) -> Vec<Cause> {
    let problems = match rule {
        NameRule::Subdomain => validation::dns1123_subdomain(name),
        NameRule::Label => validation::dns1123_label(name),
        NameRule::Rfc1035Label => validation::dns1035_label(name),
        NameRule::PathSegment => validation::path_segment_name(name),
    };
    problems
        .into_iter()
        .map(|problem| Cause::invalid("metadata.name", name, problem))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_upstream() {
        let mut deployment = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox:1.36"}]}}}});
        Workload {
            resource: "deployments",
        }
        .prepare_for_create(&mut deployment);
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(deployment["spec"]["progressDeadlineSeconds"], 600);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            pod["containers"][1]["terminationMessagePath"],
            "/dev/termination-log"
        );
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut secret = json!({"stringData": {"a": "hello"}});
        Secret.prepare_for_create(&mut secret);
        assert_eq!(secret, json!({"type": "Opaque", "data": {"a": "aGVsbG8="}}));
    }
}
