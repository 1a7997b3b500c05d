//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for): upstream's column sets per
//! resource, cells computed from the object, and `PartialObjectMetadata` rows.

use crate::jsonpath::JsonPath;
use crate::registry::{PrinterColumn, ResourceKind};
use serde_json::{Value, json};

/// One column: its definition and how a cell is computed.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: u32,
    pub cell: fn(&Value) -> Value,
}

const fn column(name: &'static str, kind: &'static str, priority: u32, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        kind,
        format: "",
        description: "",
        priority,
        cell,
    }
}

fn name_cell(object: &Value) -> Value {
    object.pointer("/metadata/name").cloned().unwrap_or(json!(""))
}

fn age_cell(object: &Value) -> Value {
    json!(age(object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)))
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
    cell: name_cell,
};
const AGE: Column = Column {
    name: "Age",
    kind: "string",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    priority: 0,
    cell: age_cell,
};

fn text(object: &Value, pointer: &str) -> Value {
    json!(object.pointer(pointer).and_then(Value::as_str).unwrap_or(""))
}

fn count(object: &Value, pointers: &[&str]) -> Value {
    json!(
        pointers
            .iter()
            .map(|p| object
                .pointer(p)
                .and_then(Value::as_object)
                .map_or(0, |m| m.len()))
            .sum::<usize>()
    )
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn selector_text(object: &Value, pointer: &str) -> Value {
    let Some(selector) = object.pointer(pointer) else {
        return json!("<none>");
    };
    let labels = selector.get("matchLabels").unwrap_or(selector);
    let pairs: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    json!(if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    })
}

fn containers_field(object: &Value, field: &str) -> Value {
    let names: Vec<&str> = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|c| c.get(field)?.as_str()).collect())
        .unwrap_or_default();
    json!(names.join(","))
}

fn service_ports(object: &Value) -> Value {
    let ports: Vec<String> = object
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| {
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
                        Some(node) => format!("{}:{node}/{protocol}", int(p, "/port")),
                        None => format!("{}/{protocol}", int(p, "/port")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    json!(if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    })
}

fn pod_ready(object: &Value) -> Value {
    let total = object
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| {
            s.iter().filter(|c| c.get("ready") == Some(&json!(true))).count()
        });
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(object: &Value) -> Value {
    json!(
        object
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map_or(0, |s| s.iter().map(|c| int(c, "/restartCount")).sum::<i64>())
    )
}

fn pod_status(object: &Value) -> Value {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let reason = object.pointer("/status/reason").and_then(Value::as_str);
    json!(
        reason
            .or(object.pointer("/status/phase").and_then(Value::as_str))
            .unwrap_or("Pending")
    )
}

fn or_none(value: Value) -> Value {
    match value.as_str() {
        Some("") | None => json!("<none>"),
        _ => value,
    }
}

const NAMESPACES: &[Column] = &[
    NAME,
    column("Status", "string", 0, |o| text(o, "/status/phase")),
    AGE,
];
const CONFIGMAPS: &[Column] = &[
    NAME,
    column("Data", "string", 0, |o| count(o, &["/data", "/binaryData"])),
    AGE,
];
const SECRETS: &[Column] = &[
    NAME,
    column("Type", "string", 0, |o| text(o, "/type")),
    column("Data", "string", 0, |o| count(o, &["/data"])),
    AGE,
];
const SERVICES: &[Column] = &[
    NAME,
    column("Type", "string", 0, |o| text(o, "/spec/type")),
    column("Cluster-IP", "string", 0, |o| or_none(text(o, "/spec/clusterIP"))),
    column("External-IP", "string", 0, |o| {
        let external: Vec<&str> = o
            .pointer("/spec/externalIPs")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        json!(if external.is_empty() {
            "<none>".to_string()
        } else {
            external.join(",")
        })
    }),
    column("Port(s)", "string", 0, service_ports),
    AGE,
    column("Selector", "string", 1, |o| selector_text(o, "/spec/selector")),
];
const DEPLOYMENTS: &[Column] = &[
    NAME,
    column("Ready", "string", 0, |o| {
        json!(format!(
            "{}/{}",
            int(o, "/status/readyReplicas"),
            int(o, "/spec/replicas")
        ))
    }),
    column("Up-to-date", "string", 0, |o| {
        json!(int(o, "/status/updatedReplicas"))
    }),
    column("Available", "string", 0, |o| {
        json!(int(o, "/status/availableReplicas"))
    }),
    AGE,
    column("Containers", "string", 1, |o| containers_field(o, "name")),
    column("Images", "string", 1, |o| containers_field(o, "image")),
    column("Selector", "string", 1, |o| selector_text(o, "/spec/selector")),
];
const REPLICASETS: &[Column] = &[
    NAME,
    column("Desired", "integer", 0, |o| json!(int(o, "/spec/replicas"))),
    column("Current", "integer", 0, |o| json!(int(o, "/status/replicas"))),
    column("Ready", "integer", 0, |o| json!(int(o, "/status/readyReplicas"))),
    AGE,
    column("Containers", "string", 1, |o| containers_field(o, "name")),
    column("Images", "string", 1, |o| containers_field(o, "image")),
    column("Selector", "string", 1, |o| selector_text(o, "/spec/selector")),
];
const PODS: &[Column] = &[
    NAME,
    column("Ready", "string", 0, pod_ready),
    column("Status", "string", 0, pod_status),
    column("Restarts", "string", 0, pod_restarts),
    AGE,
    column("IP", "string", 1, |o| or_none(text(o, "/status/podIP"))),
    column("Node", "string", 1, |o| or_none(text(o, "/spec/nodeName"))),
    column("Nominated Node", "string", 1, |o| {
        or_none(text(o, "/status/nominatedNodeName"))
    }),
    column("Readiness Gates", "string", 1, |_| json!("<none>")),
];
fn bool_text(object: &Value, pointer: &str) -> Value {
    json!(
        if object.pointer(pointer).and_then(Value::as_bool) == Some(true) {
            "True"
        } else {
            "False"
        }
    )
}

fn int_text(object: &Value, pointer: &str) -> Value {
    json!(int(object, pointer))
}

fn or_none_text(object: &Value, pointer: &str) -> Value {
    or_none(text(object, pointer))
}

fn job_status(object: &Value) -> Value {
    let conditions = object.pointer("/status/conditions").and_then(Value::as_array);
    let has = |kind: &str| {
        conditions.is_some_and(|list| {
            list.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(kind)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
    };
    json!(if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if object.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    })
}

fn job_completions(object: &Value) -> Value {
    let succeeded = int(object, "/status/succeeded");
    match object.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => json!(format!("{succeeded}/{completions}")),
        None => json!(format!(
            "{succeeded}/1 of {}",
            int(object, "/spec/parallelism").max(1)
        )),
    }
}

fn job_duration(object: &Value) -> Value {
    let parse = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match parse("/status/startTime") {
        None => json!(""),
        Some(start) => {
            let end = parse("/status/completionTime")
                .map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
            json!(human_duration(
                (end - start.with_timezone(&chrono::Utc)).num_seconds()
            ))
        }
    }
}

fn pod_template_field(object: &Value, field: &str, pointer: &str) -> Value {
    let names: Vec<&str> = object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|c| c.get(field)?.as_str()).collect())
        .unwrap_or_default();
    json!(names.join(","))
}

fn node_selector(object: &Value) -> Value {
    let pairs: Vec<String> = object
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    json!(if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    })
}

fn node_status(object: &Value) -> Value {
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if object.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn node_roles(object: &Value) -> Value {
    let roles: Vec<&str> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    json!(if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    })
}

fn endpoints_text(object: &Value) -> Value {
    let mut shown = Vec::new();
    for subset in object
        .pointer("/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for address in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = address.get("ip").and_then(Value::as_str).unwrap_or_default();
            for port in subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                shown.push(format!("{ip}:{}", int(port, "/port")));
            }
        }
    }
    json!(match shown.len() {
        0 => "<none>".to_string(),
        1..=3 => shown.join(","),
        n => format!("{} + {} more...", shown[..3].join(","), n - 3),
    })
}

const JOBS: &[Column] = &[
    NAME,
    column("Status", "string", 0, job_status),
    column("Completions", "string", 0, job_completions),
    column("Duration", "string", 0, job_duration),
    AGE,
    column("Containers", "string", 1, |o| {
        pod_template_field(o, "name", "/spec/template/spec/containers")
    }),
    column("Images", "string", 1, |o| {
        pod_template_field(o, "image", "/spec/template/spec/containers")
    }),
    column("Selector", "string", 1, |o| selector_text(o, "/spec/selector")),
];
const CRONJOBS: &[Column] = &[
    NAME,
    column("Schedule", "string", 0, |o| text(o, "/spec/schedule")),
    column("Timezone", "string", 0, |o| or_none_text(o, "/spec/timeZone")),
    column("Suspend", "boolean", 0, |o| bool_text(o, "/spec/suspend")),
    column("Active", "integer", 0, |o| {
        json!(
            o.pointer("/status/active")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        )
    }),
    column("Last Schedule", "string", 0, |o| {
        match o.pointer("/status/lastScheduleTime").and_then(Value::as_str) {
            Some(t) => json!(age(Some(t))),
            None => json!("<none>"),
        }
    }),
    AGE,
    column("Containers", "string", 1, |o| {
        pod_template_field(o, "name", "/spec/jobTemplate/spec/template/spec/containers")
    }),
    column("Images", "string", 1, |o| {
        pod_template_field(o, "image", "/spec/jobTemplate/spec/template/spec/containers")
    }),
    column("Selector", "string", 1, |o| {
        selector_text(o, "/spec/jobTemplate/spec/selector")
    }),
];
const STATEFULSETS: &[Column] = &[
    NAME,
    column("Ready", "string", 0, |o| {
        json!(format!(
            "{}/{}",
            int(o, "/status/readyReplicas"),
            int(o, "/spec/replicas")
        ))
    }),
    AGE,
    column("Containers", "string", 1, |o| containers_field(o, "name")),
    column("Images", "string", 1, |o| containers_field(o, "image")),
];
const DAEMONSETS: &[Column] = &[
    NAME,
    column("Desired", "integer", 0, |o| {
        int_text(o, "/status/desiredNumberScheduled")
    }),
    column("Current", "integer", 0, |o| {
        int_text(o, "/status/currentNumberScheduled")
    }),
    column("Ready", "integer", 0, |o| int_text(o, "/status/numberReady")),
    column("Up-to-date", "integer", 0, |o| {
        int_text(o, "/status/updatedNumberScheduled")
    }),
    column("Available", "integer", 0, |o| {
        int_text(o, "/status/numberAvailable")
    }),
    column("Node Selector", "string", 0, node_selector),
    AGE,
    column("Containers", "string", 1, |o| containers_field(o, "name")),
    column("Images", "string", 1, |o| containers_field(o, "image")),
    column("Selector", "string", 1, |o| selector_text(o, "/spec/selector")),
];
const SERVICEACCOUNTS: &[Column] = &[
    NAME,
    column("Secrets", "string", 0, |o| {
        json!(
            o.pointer("/secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        )
    }),
    AGE,
];
const NODES: &[Column] = &[
    NAME,
    column("Status", "string", 0, node_status),
    column("Roles", "string", 0, node_roles),
    AGE,
    column("Version", "string", 0, |o| {
        text(o, "/status/nodeInfo/kubeletVersion")
    }),
];
const ENDPOINTS: &[Column] = &[NAME, column("Endpoints", "string", 0, endpoints_text), AGE];
const LEASES: &[Column] = &[
    NAME,
    column("Holder", "string", 0, |o| text(o, "/spec/holderIdentity")),
    AGE,
];
const STORAGECLASSES: &[Column] = &[
    NAME,
    column("Provisioner", "string", 0, |o| text(o, "/provisioner")),
    column("ReclaimPolicy", "string", 0, |o| {
        json!(
            o.pointer("/reclaimPolicy")
                .and_then(Value::as_str)
                .unwrap_or("Delete")
        )
    }),
    column("VolumeBindingMode", "string", 0, |o| {
        json!(
            o.pointer("/volumeBindingMode")
                .and_then(Value::as_str)
                .unwrap_or("Immediate")
        )
    }),
    column("AllowVolumeExpansion", "string", 0, |o| {
        json!(o.pointer("/allowVolumeExpansion").and_then(Value::as_bool) == Some(true))
    }),
    AGE,
];
const PRIORITYCLASSES: &[Column] = &[
    NAME,
    column("Value", "integer", 0, |o| int_text(o, "/value")),
    column("Global-Default", "boolean", 0, |o| {
        json!(o.pointer("/globalDefault").and_then(Value::as_bool) == Some(true))
    }),
    AGE,
    column("PreemptionPolicy", "string", 0, |o| {
        json!(
            o.pointer("/preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")
        )
    }),
];
const ROLEBINDINGS: &[Column] = &[
    NAME,
    column("Role", "string", 0, |o| {
        json!(format!(
            "{}/{}",
            text(o, "/roleRef/kind").as_str().unwrap_or(""),
            text(o, "/roleRef/name").as_str().unwrap_or("")
        ))
    }),
    AGE,
];
const INGRESSES: &[Column] = &[
    NAME,
    column("Class", "string", 0, |o| {
        or_none_text(o, "/spec/ingressClassName")
    }),
    column("Hosts", "string", 0, |o| {
        let hosts: Vec<&str> = o
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .map(|rules| rules.iter().filter_map(|r| r.get("host")?.as_str()).collect())
            .unwrap_or_default();
        json!(if hosts.is_empty() {
            "*".to_string()
        } else {
            hosts.join(",")
        })
    }),
    column("Address", "string", 0, |o| {
        let addresses: Vec<&str> = o
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|i| i.get("ip").or_else(|| i.get("hostname"))?.as_str())
                    .collect()
            })
            .unwrap_or_default();
        json!(addresses.join(","))
    }),
    column("Ports", "string", 0, |o| {
        json!(if o.pointer("/spec/tls").is_some() {
            "80, 443"
        } else {
            "80"
        })
    }),
    AGE,
];

fn access_modes(object: &Value, pointer: &str) -> Value {
    let modes: Vec<&str> = object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(|mode| match mode {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect()
        })
        .unwrap_or_default();
    json!(modes.join(","))
}

fn int_or_string_or_na(object: &Value, pointer: &str) -> Value {
    match object.pointer(pointer) {
        Some(Value::Number(n)) => json!(n.to_string()),
        Some(Value::String(s)) => json!(s),
        _ => json!("N/A"),
    }
}

fn created_at(object: &Value) -> Value {
    object
        .pointer("/metadata/creationTimestamp")
        .cloned()
        .unwrap_or(json!(""))
}

fn hpa_targets(object: &Value) -> Value {
    let current = object
        .pointer("/status/currentMetrics/0/resource/current/averageUtilization")
        .and_then(Value::as_i64)
        .map_or("<unknown>".to_string(), |v| format!("{v}%"));
    if let Some(target) = object
        .pointer("/spec/targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
    {
        let current = object
            .pointer("/status/currentCPUUtilizationPercentage")
            .and_then(Value::as_i64)
            .map_or("<unknown>".to_string(), |v| format!("{v}%"));
        return json!(format!("cpu: {current}/{target}%"));
    }
    match object.pointer("/spec/metrics/0") {
        Some(metric) => {
            let name = metric
                .pointer("/resource/name")
                .and_then(Value::as_str)
                .unwrap_or("cpu");
            match metric
                .pointer("/resource/target/averageUtilization")
                .and_then(Value::as_i64)
            {
                Some(target) => json!(format!("{name}: {current}/{target}%")),
                None => json!(format!("{name}: {current}")),
            }
        }
        None => json!("<none>"),
    }
}

fn event_object(object: &Value) -> Value {
    json!(format!(
        "{}/{}",
        text(object, "/involvedObject/kind")
            .as_str()
            .unwrap_or("")
            .to_lowercase(),
        text(object, "/involvedObject/name").as_str().unwrap_or("")
    ))
}

fn event_last_seen(object: &Value) -> Value {
    let seen = object
        .pointer("/lastTimestamp")
        .or_else(|| object.pointer("/eventTime"))
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
        });
    json!(age(seen))
}

const HORIZONTALPODAUTOSCALERS: &[Column] = &[
    NAME,
    column("Reference", "string", 0, |o| {
        json!(format!(
            "{}/{}",
            text(o, "/spec/scaleTargetRef/kind").as_str().unwrap_or(""),
            text(o, "/spec/scaleTargetRef/name").as_str().unwrap_or("")
        ))
    }),
    column("Targets", "string", 0, hpa_targets),
    column("MinPods", "string", 0, |o| {
        json!(
            o.pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string()
        )
    }),
    column("MaxPods", "string", 0, |o| {
        json!(int(o, "/spec/maxReplicas").to_string())
    }),
    column("Replicas", "string", 0, |o| {
        json!(int(o, "/status/currentReplicas").to_string())
    }),
    AGE,
];
const PODDISRUPTIONBUDGETS: &[Column] = &[
    NAME,
    column("Min Available", "string", 0, |o| {
        int_or_string_or_na(o, "/spec/minAvailable")
    }),
    column("Max Unavailable", "string", 0, |o| {
        int_or_string_or_na(o, "/spec/maxUnavailable")
    }),
    column("Allowed Disruptions", "integer", 0, |o| {
        int_text(o, "/status/disruptionsAllowed")
    }),
    AGE,
];
const PERSISTENTVOLUMES: &[Column] = &[
    NAME,
    column("Capacity", "string", 0, |o| text(o, "/spec/capacity/storage")),
    column("Access Modes", "string", 0, |o| {
        access_modes(o, "/spec/accessModes")
    }),
    column("Reclaim Policy", "string", 0, |o| {
        text(o, "/spec/persistentVolumeReclaimPolicy")
    }),
    column("Status", "string", 0, |o| text(o, "/status/phase")),
    column("Claim", "string", 0, |o| {
        match (
            o.pointer("/spec/claimRef/namespace").and_then(Value::as_str),
            o.pointer("/spec/claimRef/name").and_then(Value::as_str),
        ) {
            (Some(ns), Some(name)) => json!(format!("{ns}/{name}")),
            _ => json!(""),
        }
    }),
    column("StorageClass", "string", 0, |o| text(o, "/spec/storageClassName")),
    column("VolumeAttributesClass", "string", 0, |o| {
        or_none_text(o, "/spec/volumeAttributesClassName")
    }),
    column("Reason", "string", 0, |o| text(o, "/status/reason")),
    AGE,
    column("VolumeMode", "string", 1, |o| {
        json!(
            o.pointer("/spec/volumeMode")
                .and_then(Value::as_str)
                .unwrap_or("Filesystem")
        )
    }),
];
const PERSISTENTVOLUMECLAIMS: &[Column] = &[
    NAME,
    column("Status", "string", 0, |o| text(o, "/status/phase")),
    column("Volume", "string", 0, |o| text(o, "/spec/volumeName")),
    column("Capacity", "string", 0, |o| text(o, "/status/capacity/storage")),
    column("Access Modes", "string", 0, |o| {
        access_modes(o, "/status/accessModes")
    }),
    column("StorageClass", "string", 0, |o| text(o, "/spec/storageClassName")),
    column("VolumeAttributesClass", "string", 0, |o| {
        or_none_text(o, "/spec/volumeAttributesClassName")
    }),
    AGE,
    column("VolumeMode", "string", 1, |o| {
        json!(
            o.pointer("/spec/volumeMode")
                .and_then(Value::as_str)
                .unwrap_or("Filesystem")
        )
    }),
];
const REPLICATIONCONTROLLERS: &[Column] = &[
    NAME,
    column("Desired", "integer", 0, |o| int_text(o, "/spec/replicas")),
    column("Current", "integer", 0, |o| int_text(o, "/status/replicas")),
    column("Ready", "integer", 0, |o| int_text(o, "/status/readyReplicas")),
    AGE,
    column("Containers", "string", 1, |o| containers_field(o, "name")),
    column("Images", "string", 1, |o| containers_field(o, "image")),
    column("Selector", "string", 1, |o| selector_text(o, "/spec/selector")),
];
const EVENTS: &[Column] = &[
    column("Last Seen", "string", 0, event_last_seen),
    column("Type", "string", 0, |o| text(o, "/type")),
    column("Reason", "string", 0, |o| text(o, "/reason")),
    column("Object", "string", 0, event_object),
    column("Message", "string", 0, |o| text(o, "/message")),
    column("Subobject", "string", 1, |o| text(o, "/involvedObject/fieldPath")),
    column("Source", "string", 1, |o| text(o, "/source/component")),
    column("First Seen", "string", 1, |o| {
        json!(age(o.pointer("/firstTimestamp").and_then(Value::as_str)))
    }),
    column("Count", "string", 1, |o| {
        json!(
            o.pointer("/count")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string()
        )
    }),
    Column { priority: 1, ..NAME },
];
const NETWORKPOLICIES: &[Column] = &[
    NAME,
    column("Pod-Selector", "string", 0, |o| {
        let selector = selector_text(o, "/spec/podSelector");
        if selector == json!("<none>") {
            json!("<none>")
        } else {
            selector
        }
    }),
    AGE,
];
const INGRESSCLASSES: &[Column] = &[
    NAME,
    column("Controller", "string", 0, |o| text(o, "/spec/controller")),
    column("Parameters", "string", 0, |o| {
        or_none_text(o, "/spec/parameters/name")
    }),
    AGE,
];
const CONTROLLERREVISIONS: &[Column] = &[
    NAME,
    column("Controller", "string", 0, |o| {
        let owner = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r.get("controller") == Some(&json!(true))));
        json!(owner.map_or(String::new(), |r| format!(
            "{}/{}",
            r.get("kind").and_then(Value::as_str).unwrap_or("").to_lowercase(),
            r.get("name").and_then(Value::as_str).unwrap_or("")
        )))
    }),
    column("Revision", "integer", 0, |o| int_text(o, "/revision")),
    AGE,
];
const CREATED_AT: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        kind: "date",
        format: "",
        description: "",
        priority: 0,
        cell: created_at,
    },
];
const ENDPOINTSLICES: &[Column] = &[
    NAME,
    column("AddressType", "string", 0, |o| text(o, "/addressType")),
    column("Ports", "string", 0, |o| {
        let ports: Vec<String> = o
            .pointer("/ports")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|p| p.get("port")?.as_i64().map(|n| n.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        })
    }),
    column("Endpoints", "string", 0, |o| {
        let addresses: Vec<&str> = o
            .pointer("/endpoints")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|e| e.pointer("/addresses/0")?.as_str())
                    .collect()
            })
            .unwrap_or_default();
        json!(if addresses.is_empty() {
            "<unset>".to_string()
        } else {
            addresses.join(",")
        })
    }),
    AGE,
];

const PODTEMPLATES: &[Column] = &[
    NAME,
    column("Containers", "string", 0, |o| {
        pod_template_field(o, "name", "/template/spec/containers")
    }),
    column("Images", "string", 0, |o| {
        pod_template_field(o, "image", "/template/spec/containers")
    }),
    column("Pod Labels", "string", 0, |o| {
        selector_text(o, "/template/metadata/labels")
    }),
];

/// `name: used/hard` for each resource in `status.hard` (sorted), the `limits.*` ones when
/// `limits` is true and the others otherwise; a resource not yet counted is used `0`.
fn quota_usage(object: &Value, limits: bool) -> Value {
    let Some(hard) = object.pointer("/status/hard").and_then(Value::as_object) else {
        return json!("");
    };
    let used = object.pointer("/status/used").and_then(Value::as_object);
    let entries: Vec<String> = hard
        .iter()
        .filter(|(name, _)| name.split_once('.').is_some_and(|(prefix, _)| prefix == "limits") == limits)
        .map(|(name, quantity)| {
            let used = used
                .and_then(|u| u.get(name))
                .and_then(Value::as_str)
                .unwrap_or("0");
            format!("{name}: {used}/{}", quantity.as_str().unwrap_or_default())
        })
        .collect();
    json!(entries.join(", "))
}

const RESOURCEQUOTAS: &[Column] = &[
    NAME,
    AGE,
    column("Request", "string", 0, |o| quota_usage(o, false)),
    column("Limit", "string", 0, |o| quota_usage(o, true)),
];

const DEFAULT: &[Column] = &[NAME, AGE];

/// Upstream's columns for a built-in resource.
pub fn columns_for(group: &str, resource: &str) -> &'static [Column] {
    match (group, resource) {
        ("", "namespaces") => NAMESPACES,
        ("", "configmaps") => CONFIGMAPS,
        ("", "secrets") => SECRETS,
        ("", "services") => SERVICES,
        ("", "pods") => PODS,
        ("apps", "deployments") => DEPLOYMENTS,
        ("apps", "replicasets") => REPLICASETS,
        ("apps", "statefulsets") => STATEFULSETS,
        ("apps", "daemonsets") => DAEMONSETS,
        ("batch", "jobs") => JOBS,
        ("batch", "cronjobs") => CRONJOBS,
        ("", "serviceaccounts") => SERVICEACCOUNTS,
        ("", "nodes") => NODES,
        ("", "endpoints") => ENDPOINTS,
        ("coordination.k8s.io", "leases") => LEASES,
        ("storage.k8s.io", "storageclasses") => STORAGECLASSES,
        ("scheduling.k8s.io", "priorityclasses") => PRIORITYCLASSES,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => ROLEBINDINGS,
        ("networking.k8s.io", "ingresses") => INGRESSES,
        ("networking.k8s.io", "networkpolicies") => NETWORKPOLICIES,
        ("networking.k8s.io", "ingressclasses") => INGRESSCLASSES,
        ("autoscaling", "horizontalpodautoscalers") => HORIZONTALPODAUTOSCALERS,
        ("policy", "poddisruptionbudgets") => PODDISRUPTIONBUDGETS,
        ("", "persistentvolumes") => PERSISTENTVOLUMES,
        ("", "persistentvolumeclaims") => PERSISTENTVOLUMECLAIMS,
        ("", "replicationcontrollers") => REPLICATIONCONTROLLERS,
        ("", "events") => EVENTS,
        ("apps", "controllerrevisions") => CONTROLLERREVISIONS,
        ("discovery.k8s.io", "endpointslices") => ENDPOINTSLICES,
        ("", "podtemplates") => PODTEMPLATES,
        ("", "resourcequotas") => RESOURCEQUOTAS,
        ("rbac.authorization.k8s.io", "roles" | "clusterroles")
        | ("", "limitranges")
        | ("apiextensions.k8s.io", "customresourcedefinitions") => CREATED_AT,
        _ => DEFAULT,
    }
}

/// `k8s.io/apimachinery` HumanDuration of the time since `timestamp`.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(created) = timestamp.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let seconds = (chrono::Utc::now() - created.with_timezone(&chrono::Utc)).num_seconds();
    human_duration(seconds)
}

fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let (d, h) = (hours / 24, hours % 24);
        return if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let (y, d) = (hours / 24 / 365, (hours / 24) % 365);
        return if d == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{d}d")
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The `PartialObjectMetadata` of a row.
fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

pub fn column_definitions(columns: &[Column]) -> Value {
    json!(
        columns
            .iter()
            .map(|c| json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            }))
            .collect::<Vec<_>>()
    )
}

pub fn rows(columns: &[Column], objects: &[Value]) -> Value {
    json!(
        objects
            .iter()
            .map(|object| json!({
                "cells": columns.iter().map(|c| (c.cell)(object)).collect::<Vec<_>>(),
                "object": partial_metadata(object),
            }))
            .collect::<Vec<_>>()
    )
}

/// A Table of `objects`; `with_definitions` is false for watch events after the first.
pub fn table(columns: &[Column], objects: &[Value], list_metadata: Value, with_definitions: bool) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": if with_definitions { column_definitions(columns) } else { Value::Null },
        "rows": rows(columns, objects),
    })
}

/// A Table for a resource: its built-in columns, or for a custom resource the Name column and its
/// definition's printer columns (an Age column when it has none).
pub fn for_kind(
    kind: &ResourceKind,
    objects: &[Value],
    list_metadata: Value,
    with_definitions: bool,
) -> Value {
    let Some(custom) = &kind.custom else {
        return table(kind.columns, objects, list_metadata, with_definitions);
    };
    let age = PrinterColumn {
        name: "Age".into(),
        kind: "date".into(),
        format: String::new(),
        description:
            "CreationTimestamp is a timestamp representing the server time when this object was created."
                .into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    };
    let columns: Vec<&PrinterColumn> = if custom.printer_columns.is_empty() {
        vec![&age]
    } else {
        custom.printer_columns.iter().collect()
    };
    let paths: Vec<Option<JsonPath>> = columns
        .iter()
        .map(|c| JsonPath::parse(&c.json_path).ok())
        .collect();
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0,
    })];
    definitions.extend(columns.iter().map(|c| {
        json!({ "name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority })
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![name_cell(object)];
            for (column, path) in columns.iter().zip(&paths) {
                let found = path.as_ref().and_then(|p| p.find(object).into_iter().next());
                cells.push(found.map_or(Value::Null, |value| custom_cell(&column.kind, value)));
            }
            json!({ "cells": cells, "object": partial_metadata(object) })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": if with_definitions { Value::Array(definitions) } else { Value::Null },
        "rows": rows,
    })
}

/// A printer column's cell: dates as ages, numbers and booleans as they are when the column says
/// so, anything else as text.
fn custom_cell(kind: &str, value: &Value) -> Value {
    match (kind, value) {
        ("date", Value::String(text)) => json!(age(Some(text))),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => value.clone(),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => value.clone(),
        ("string", Value::String(_)) => value.clone(),
        ("string", other) => json!(other.to_string()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }

    #[test]
    fn configmap_row() {
        let cm = json!({"metadata": {"name": "a", "creationTimestamp": "2020-01-01T00:00:00Z"}, "data": {"x": "1", "y": "2"}});
        let table = table(CONFIGMAPS, &[cm], json!({"resourceVersion": "5"}), true);
        assert_eq!(table["rows"][0]["cells"][0], "a");
        assert_eq!(table["rows"][0]["cells"][1], 2);
        assert_eq!(table["columnDefinitions"][1]["name"], "Data");
    }

    #[test]
    fn quota_and_pod_template_rows() {
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"},
            "used": {"pods": "3"}}});
        let cells = &table(RESOURCEQUOTAS, &[quota], json!({}), false)["rows"][0]["cells"];
        assert_eq!(cells[2], "pods: 3/10, requests.memory: 0/1Gi");
        assert_eq!(cells[3], "limits.cpu: 0/2");
        let template = json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}});
        let cells = &table(PODTEMPLATES, &[template], json!({}), false)["rows"][0]["cells"];
        assert_eq!(cells[1], "c1,c2");
        assert_eq!(cells[2], "i1,i2");
        assert_eq!(cells[3], "a=1,b=2");
    }
}
