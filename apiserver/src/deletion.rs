//! Deleting one object the way every deleting path must (the REST handler, deletecollection and the
//! garbage collector): DeleteOptions preconditions, graceful deletion, finalizers, and the garbage
//! collector's `orphan` / `foregroundDeletion` finalizers chosen from the propagation policy — as
//! upstream's generic registry store does before it removes anything.

use coxswain_storage::{Preconditions, Store, StoredObject};
use serde_json::{Value, json};

use crate::allocator;
use crate::error::{ApiError, ApiResult, Cause};
use crate::object;
use crate::registry::ResourceKind;

/// Held by an owner deleted with `propagationPolicy=Orphan` until its dependents' owner references
/// to it are removed.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Held by an owner deleted with `propagationPolicy=Foreground` until its blocking dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "Orphan" => Some(Self::Orphan),
            "Background" => Some(Self::Background),
            "Foreground" => Some(Self::Foreground),
            _ => None,
        }
    }
}

/// What a delete request asks for.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub preconditions: Preconditions,
    pub propagation: Option<Propagation>,
    /// The deprecated `orphanDependents` flag.
    pub orphan_dependents: Option<bool>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (`None` when the request had none) and the query parameters
    /// (`param` returns a non-empty query value), validated as upstream validates them.
    pub fn parse<'a>(body: Option<&Value>, param: impl Fn(&str) -> Option<&'a str>) -> ApiResult<Self> {
        let from_body = |name: &str| body.and_then(|b| b.get(name)).filter(|v| !v.is_null());
        let mut options = DeleteOptions {
            dry_run: param("dryRun") == Some("All")
                || from_body("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|v| v == "All")),
            ..DeleteOptions::default()
        };
        options.grace_period = match param("gracePeriodSeconds") {
            Some(text) => Some(
                text.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {text:?}")))?,
            ),
            None => from_body("gracePeriodSeconds").and_then(Value::as_i64),
        };
        let propagation = param("propagationPolicy").map(str::to_string).or_else(|| {
            from_body("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let orphan = match param("orphanDependents") {
            Some(text) => Some(text == "true" || text == "1"),
            None => from_body("orphanDependents").and_then(Value::as_bool),
        };
        let mut causes = Vec::new();
        if let Some(text) = &propagation {
            match Propagation::parse(text) {
                Some(policy) => options.propagation = Some(policy),
                None => causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: {}: supported values: \"Foreground\", \"Background\", \"Orphan\"",
                        json!(text)
                    ),
                    field: "propagationPolicy".into(),
                }),
            }
            if orphan.is_some() {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {}: orphanDependents and deletionPropagation cannot be both set",
                        json!(text)
                    ),
                    field: "propagationPolicy".into(),
                });
            }
        }
        if let Some(grace) = options.grace_period
            && grace < 0
        {
            // Upstream treats a negative grace period as "immediately", i.e. 1 second for pods.
            options.grace_period = Some(1);
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid("DeleteOptions", "meta.k8s.io", "", causes));
        }
        options.orphan_dependents = orphan;
        if let Some(uid) = body
            .and_then(|b| b.pointer("/preconditions/uid"))
            .and_then(Value::as_str)
        {
            options.preconditions.uid = Some(uid.to_string());
        }
        if let Some(rv) = body
            .and_then(|b| b.pointer("/preconditions/resourceVersion"))
            .and_then(Value::as_str)
        {
            options.preconditions.resource_version = Some(rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid precondition resourceVersion {rv:?}"))
            })?);
        }
        Ok(options)
    }
}

/// What a deletion did.
#[derive(Debug)]
pub enum Deletion {
    /// Removed from storage; the object as it was last (storage form).
    Deleted(Value),
    /// Kept, with a deletionTimestamp, until its grace period ends or its finalizers are removed
    /// (storage form, as now stored).
    Pending(Value),
}

/// The finalizers of an object's metadata.
pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|f| Some(f.as_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The finalizers the object should carry after this delete: both garbage-collector finalizers are
/// dropped, then the one the policy asks for is added. Without an explicit policy an existing choice
/// stands, else the resource's default applies.
fn finalizers_after(kind: &ResourceKind, current: &[String], options: &DeleteOptions) -> Vec<String> {
    let has = |name: &str| current.iter().any(|f| f == name);
    let policy = match (options.propagation, options.orphan_dependents) {
        (Some(policy), _) => policy,
        (None, Some(true)) => Propagation::Orphan,
        (None, Some(false)) => Propagation::Background,
        (None, None) if has(ORPHAN_FINALIZER) => Propagation::Orphan,
        (None, None) if has(FOREGROUND_FINALIZER) => Propagation::Foreground,
        (None, None) => default_propagation(kind),
    };
    let mut wanted: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    match policy {
        Propagation::Orphan => wanted.push(ORPHAN_FINALIZER.to_string()),
        Propagation::Foreground => wanted.push(FOREGROUND_FINALIZER.to_string()),
        Propagation::Background => {}
    }
    wanted
}

/// Upstream keeps orphaning as the default where it was the behaviour before server-side cascading
/// deletion: core/v1 ReplicationControllers and batch/v1 Jobs.
fn default_propagation(kind: &ResourceKind) -> Propagation {
    match (kind.group, kind.resource) {
        ("", "replicationcontrollers") | ("batch", "jobs") => Propagation::Orphan,
        _ => Propagation::Background,
    }
}

/// Warnings upstream attaches to a delete.
pub fn warnings(kind: &ResourceKind, options: &DeleteOptions) -> Vec<String> {
    if (kind.group, kind.resource) == ("batch", "jobs")
        && options.propagation.is_none()
        && options.orphan_dependents.is_none()
    {
        return vec![
            "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning"
                .to_string(),
        ];
    }
    Vec::new()
}

/// Deletes `stored` (an object of `kind` in `cluster`, as read) as `options` say. A conflict
/// (the object changed since it was read) is returned as the storage error for the caller to retry.
pub async fn delete_object(
    store: &dyn Store,
    kind: &ResourceKind,
    cluster: &str,
    stored: &StoredObject,
    options: &DeleteOptions,
) -> ApiResult<Deletion> {
    let resource = kind.group_resource();
    let name = stored.key.name.as_str();
    let storage_error = |err| ApiError::storage(err, &resource, name);
    let mut object = stored.json().map_err(|err| ApiError::internal(err.to_string()))?;
    if let Some(rv) = options.preconditions.resource_version
        && rv != stored.revision
    {
        return Err(precondition_failed(
            kind,
            stored,
            format!(
                "ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                stored.revision
            ),
        ));
    }
    let uid = object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(wanted) = &options.preconditions.uid
        && *wanted != uid
    {
        return Err(precondition_failed(
            kind,
            stored,
            format!("UID in precondition: {wanted}, UID in object meta: {uid}"),
        ));
    }
    let is_namespace = kind.group.is_empty() && kind.resource == "namespaces";
    let current = finalizers(&object);
    let wanted = if is_namespace {
        current.clone()
    } else {
        finalizers_after(kind, &current, options)
    };
    let graceful = kind
        .strategy
        .graceful_delete_seconds(&object, options.grace_period);
    let marked = object.pointer("/metadata/deletionTimestamp").is_some();
    if graceful.is_none() && wanted.is_empty() && !is_namespace {
        if !options.dry_run {
            store
                .delete(&stored.key, &Preconditions::revision(stored.revision))
                .await
                .map_err(storage_error)?;
            if let Some(hooks) = &kind.hooks {
                allocator::release(store, &hooks.held(cluster, &object)).await;
            }
        }
        return Ok(Deletion::Deleted(object));
    }
    let mut changed = wanted != current;
    if changed {
        object["metadata"]["finalizers"] = json!(wanted);
    }
    match graceful {
        Some(grace) => {
            let current_grace = object
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            // A grace period can only be shortened.
            if current_grace.is_none_or(|c| grace < c) {
                let deadline = chrono::Utc::now() + chrono::Duration::seconds(grace);
                object["metadata"]["deletionTimestamp"] =
                    json!(deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                changed = true;
            }
        }
        None if !marked => {
            object["metadata"]["deletionTimestamp"] = json!(object::now());
            object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                match object.get_mut("status").and_then(Value::as_object_mut) {
                    Some(status) => {
                        status.insert("phase".into(), json!("Terminating"));
                    }
                    None => object["status"] = json!({ "phase": "Terminating" }),
                }
            }
            changed = true;
        }
        None => {}
    }
    if !changed || options.dry_run {
        return Ok(Deletion::Pending(object));
    }
    let bytes = bytes::Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
    let written = store
        .update(&stored.key, bytes, &Preconditions::revision(stored.revision))
        .await
        .map_err(storage_error)?;
    written
        .json()
        .map(Deletion::Pending)
        .map_err(|err| ApiError::internal(err.to_string()))
}

/// A failed DeleteOptions precondition: 409 with the text upstream's storage layer puts in it.
fn precondition_failed(kind: &ResourceKind, stored: &StoredObject, why: String) -> ApiError {
    let resource = kind.group_resource();
    let name = &stored.key.name;
    let key = if stored.key.namespace.is_empty() {
        format!("/registry/{}/{name}", kind.resource)
    } else {
        format!("/registry/{}/{}/{name}", kind.resource, stored.key.namespace)
    };
    ApiError::conflict_message(
        &resource,
        name,
        format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {why}"
        ),
    )
}

/// Completes the deletion of an object whose deletionTimestamp is set and whose last finalizer was
/// just removed (`written` is the object as stored without finalizers).
pub async fn finish_if_released(store: &dyn Store, kind: Option<&ResourceKind>, written: &StoredObject) {
    let Ok(object) = written.json() else {
        return;
    };
    if object.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(&object).is_empty() {
        return;
    }
    match store
        .delete(&written.key, &Preconditions::revision(written.revision))
        .await
    {
        Ok(_) => {
            if let Some(hooks) = kind.and_then(|k| k.hooks.as_ref()) {
                allocator::release(store, &hooks.held(&written.key.cluster, &object)).await;
            }
        }
        Err(coxswain_storage::Error::NotFound { .. } | coxswain_storage::Error::Conflict { .. }) => {}
        Err(err) => tracing::warn!(key = %written.key, error = %err, "could not complete a deletion"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    fn kind(group: &str, resource: &str) -> ResourceKind {
        let registry = registry::builtin();
        registry
            .get(group, "v1", resource)
            .cloned()
            .unwrap_or_else(|| panic!("{group}/{resource} is registered"))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_policy_picks_the_garbage_collector_finalizer() {
        let configmaps = kind("", "configmaps");
        let with = |propagation| DeleteOptions {
            propagation,
            ..DeleteOptions::default()
        };
        let held = names(&["example.com/x", ORPHAN_FINALIZER]);
        assert_eq!(
            finalizers_after(&configmaps, &held, &with(Some(Propagation::Foreground))),
            names(&["example.com/x", FOREGROUND_FINALIZER])
        );
        assert_eq!(
            finalizers_after(&configmaps, &held, &with(Some(Propagation::Background))),
            names(&["example.com/x"])
        );
        // Without a policy an earlier choice stands, else the resource's default applies.
        assert_eq!(finalizers_after(&configmaps, &held, &with(None)), held);
        assert!(finalizers_after(&configmaps, &[], &with(None)).is_empty());
        assert_eq!(
            finalizers_after(&kind("batch", "jobs"), &[], &with(None)),
            names(&[ORPHAN_FINALIZER])
        );
        assert_eq!(
            finalizers_after(&kind("", "replicationcontrollers"), &[], &with(None)),
            names(&[ORPHAN_FINALIZER])
        );
        let legacy = DeleteOptions {
            orphan_dependents: Some(true),
            ..DeleteOptions::default()
        };
        assert_eq!(
            finalizers_after(&configmaps, &[], &legacy),
            names(&[ORPHAN_FINALIZER])
        );
    }

    #[test]
    fn delete_options_are_validated() {
        let body = json!({"propagationPolicy": "Sideways", "orphanDependents": true});
        let err = DeleteOptions::parse(Some(&body), |_| None).unwrap_err();
        assert_eq!(err.code.as_u16(), 422);
        assert!(err.message.starts_with(
            "DeleteOptions.meta.k8s.io \"\" is invalid: [propagationPolicy: Unsupported value: \"Sideways\""
        ));
        let body =
            json!({"propagationPolicy": "Foreground", "preconditions": {"uid": "u", "resourceVersion": "7"}});
        let options = DeleteOptions::parse(Some(&body), |name| (name == "dryRun").then_some("All")).unwrap();
        assert_eq!(options.propagation, Some(Propagation::Foreground));
        assert_eq!(options.preconditions.uid.as_deref(), Some("u"));
        assert_eq!(options.preconditions.resource_version, Some(7));
        assert!(options.dry_run);
        let err =
            DeleteOptions::parse(None, |name| (name == "gracePeriodSeconds").then_some("soon")).unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
    }
}
