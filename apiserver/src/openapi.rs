//! OpenAPI v3 documents built from the registry: the index and one document per group-version
//! with every path and operation upstream serves, each PATCH carrying `fieldValidation` and
//! `x-kubernetes-group-version-kind` (what kubectl's strict validation checks for, CLIENTS.md B2).
//! Schemas (`components.schemas`) are not filled in yet.

use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceKind};

fn gvk(kind: &ResourceKind) -> Value {
    json!({ "group": kind.group, "version": kind.version, "kind": kind.kind })
}

fn query_parameter(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(kind: &ResourceKind, action: &str, id: String, extra: Vec<Value>) -> Value {
    json!({
        "operationId": id,
        "tags": [],
        "parameters": extra,
        "responses": { "200": { "description": "OK" }, "401": { "description": "Unauthorized" } },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind),
    })
}

fn paths_of(kind: &ResourceKind, paths: &mut serde_json::Map<String, Value>) {
    let prefix = if kind.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    let (collection, item) = if kind.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", kind.resource),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", kind.resource),
        )
    } else {
        (
            format!("{prefix}/{}", kind.resource),
            format!("{prefix}/{}/{{name}}", kind.resource),
        )
    };
    let write_params = || {
        vec![
            query_parameter(
                "dryRun",
                "When present, indicates that modifications should not be persisted.",
            ),
            query_parameter(
                "fieldManager",
                "fieldManager is a name associated with the actor or entity that is making these changes.",
            ),
            query_parameter(
                "fieldValidation",
                "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
            ),
        ]
    };
    let id = |verb: &str| format!("{verb}{}", kind.kind);
    paths.insert(
        collection,
        json!({
            "get": operation(kind, "list", id("list"), vec![]),
            "post": operation(kind, "post", id("create"), write_params()),
            "delete": operation(kind, "deletecollection", id("deleteCollection"), vec![]),
        }),
    );
    let mut patch_params = write_params();
    patch_params.push(query_parameter(
        "force",
        "Force is going to \"force\" Apply requests.",
    ));
    paths.insert(
        item.clone(),
        json!({
            "get": operation(kind, "get", id("read"), vec![]),
            "put": operation(kind, "put", id("replace"), write_params()),
            "patch": operation(kind, "patch", id("patch"), patch_params.clone()),
            "delete": operation(kind, "delete", id("delete"), vec![]),
        }),
    );
    for sub in kind.subresources {
        let mut sub_kind = kind.clone();
        if let Some((group, version, name)) = sub.kind {
            sub_kind.group = group;
            sub_kind.version = version;
            sub_kind.kind = name;
        }
        let mut operations = serde_json::Map::new();
        for verb in sub.verbs {
            let (method, action) = match *verb {
                "get" => ("get", "get"),
                "update" => ("put", "put"),
                "patch" => ("patch", "patch"),
                "create" => ("post", "post"),
                _ => continue,
            };
            let params = if method == "get" {
                vec![]
            } else {
                patch_params.clone()
            };
            operations.insert(
                method.into(),
                operation(
                    &sub_kind,
                    action,
                    format!("{method}{}{}", kind.kind, sub.name),
                    params,
                ),
            );
        }
        paths.insert(format!("{item}/{}", sub.name), Value::Object(operations));
    }
}

/// The document for one group-version, `None` if nothing is served there.
pub fn group_version_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds = registry.group_version(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for kind in kinds {
        paths_of(kind, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.35.0" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

fn hash(document: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    document.to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

/// `/openapi/v3`: every group-version with its document's URL and hash.
pub fn index(registry: &Registry, url_prefix: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let Some(document) = group_version_document(registry, &group, &version) else {
                continue;
            };
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            paths.insert(
                path.clone(),
                json!({ "serverRelativeURL": format!("{url_prefix}/openapi/v3/{path}?hash={}", hash(&document)) }),
            );
        }
    }
    json!({ "paths": paths })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin;

    #[test]
    fn patch_operations_list_field_validation() {
        let registry = builtin();
        let doc = group_version_document(&registry, "apps", "v1").unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let index = index(&registry, "");
        assert!(
            index["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
    }
}
