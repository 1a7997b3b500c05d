//! Resources served in one form and stored in another: `events.k8s.io/v1` Events share the
//! storage of core `v1` Events, as upstream's do, so an event written through either API is read
//! through both. Pure JSON field renames.

use serde_json::{Map, Value};

/// Converts between a served form and the stored form of a resource.
pub trait Conversion: Send + Sync {
    fn to_storage(&self, object: Value) -> Value;
    fn to_served(&self, object: Value) -> Value;
}

/// (events.k8s.io/v1 field, core/v1 field).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(
    object: Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
    kind: &str,
) -> Value {
    let Value::Object(mut map) = object else {
        return object;
    };
    for (from, to) in pairs {
        if let Some(value) = map.remove(from) {
            map.insert(to.to_string(), value);
        }
    }
    map.insert("apiVersion".into(), Value::String(api_version.into()));
    map.insert("kind".into(), Value::String(kind.into()));
    Value::Object(map)
}

/// events.k8s.io/v1 Events over core/v1 Event storage.
#[derive(Debug, Clone, Copy)]
pub struct EventsV1;

impl Conversion for EventsV1 {
    fn to_storage(&self, object: Value) -> Value {
        rename(object, EVENT_FIELDS.iter().copied(), "v1", "Event")
    }

    fn to_served(&self, object: Value) -> Value {
        let mut converted = rename(
            object,
            EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)),
            "events.k8s.io/v1",
            "Event",
        );
        // Core-only fields have no place in events.k8s.io/v1.
        if let Some(map) = converted.as_object_mut() {
            let known: Map<String, Value> = std::mem::take(map)
                .into_iter()
                .filter(|(key, _)| {
                    !matches!(key.as_str(), "reportingComponent" | "involvedObject" | "message")
                })
                .collect();
            *map = known;
        }
        converted
    }
}

/// autoscaling/v1 HorizontalPodAutoscalers over the autoscaling/v2 stored form: the v1 CPU
/// utilisation target is the v2 `Resource` metric for `cpu`; other v2 metrics are not visible in v1.
#[derive(Debug, Clone, Copy)]
pub struct HorizontalPodAutoscalerV1;

fn cpu_metric(list: Option<&Value>, part: &str, field: &str) -> Option<Value> {
    list?.as_array()?.iter().find_map(|metric| {
        let resource = metric.get("resource")?;
        (metric.get("type")?.as_str()? == "Resource" && resource.get("name")?.as_str()? == "cpu")
            .then(|| resource.get(part)?.get(field).cloned())
            .flatten()
    })
}

impl Conversion for HorizontalPodAutoscalerV1 {
    fn to_storage(&self, object: Value) -> Value {
        let Value::Object(mut map) = object else {
            return object;
        };
        map.insert("apiVersion".into(), Value::String("autoscaling/v2".into()));
        if let Some(Value::Object(spec)) = map.get_mut("spec")
            && let Some(target) = spec.remove("targetCPUUtilizationPercentage")
        {
            spec.insert(
                "metrics".into(),
                serde_json::json!([{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": target } } }]),
            );
        }
        if let Some(Value::Object(status)) = map.get_mut("status") {
            if let Some(current) = status.remove("currentCPUUtilizationPercentage") {
                status.insert(
                    "currentMetrics".into(),
                    serde_json::json!([{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": current } } }]),
                );
            }
            status.entry("desiredReplicas").or_insert(Value::from(0));
        }
        Value::Object(map)
    }

    fn to_served(&self, object: Value) -> Value {
        let Value::Object(mut map) = object else {
            return object;
        };
        map.insert("apiVersion".into(), Value::String("autoscaling/v1".into()));
        if let Some(Value::Object(spec)) = map.get_mut("spec") {
            let metrics = spec.remove("metrics");
            spec.remove("behavior");
            if let Some(target) = cpu_metric(metrics.as_ref(), "target", "averageUtilization") {
                spec.insert("targetCPUUtilizationPercentage".into(), target);
            }
        }
        if let Some(Value::Object(status)) = map.get_mut("status") {
            let metrics = status.remove("currentMetrics");
            status.remove("conditions");
            if let Some(current) = cpu_metric(metrics.as_ref(), "current", "averageUtilization") {
                status.insert("currentCPUUtilizationPercentage".into(), current);
            }
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_the_two_apis() {
        let new_style = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled",
            "type": "Normal", "reportingController": "kubelet", "reportingInstance": "n1",
            "eventTime": "2026-01-01T00:00:00.000000Z", "action": "Pull"
        });
        let stored = EventsV1.to_storage(new_style.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(EventsV1.to_served(stored), new_style);
    }

    #[test]
    fn hpa_v1_cpu_target_is_the_v2_cpu_metric() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                     "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}
        });
        let stored = HorizontalPodAutoscalerV1.to_storage(v1.clone());
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(HorizontalPodAutoscalerV1.to_served(stored), v1);
    }
}
