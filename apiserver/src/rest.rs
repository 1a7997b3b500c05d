//! The one generic REST handler: get, list, watch, create, update, patch, delete and
//! deletecollection for every registered resource, driven by its [`ResourceKind`] and strategy.
//! It must not know about any particular resource; rules live in strategies.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use coxswain_storage::{
    ClusterScope, LabelSelector, ListRequest, ObjectKey, Preconditions, ReadRevision, Scope, Store,
    StoredObject, WatchEvent, WatchRequest,
};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::allocator;
use crate::deletion::{self, DeleteOptions, Deletion};
use crate::error::{ApiError, ApiResult, Cause};
use crate::fields::FieldSelector;
use crate::object;
use crate::registry::{GroupResource, ResourceKind};
use crate::request::Target;
use crate::strategy;
use crate::table;

/// Request bodies above this size get 413, as upstream's 3 MiB limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Most operations one JSON patch may have, as upstream.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// How many times an unconditional update retries after losing a race.
const UPDATE_ATTEMPTS: usize = 16;

/// One resource request, parsed.
#[derive(Debug)]
pub struct ResourceRequest<'a> {
    pub cluster: &'a str,
    pub target: &'a Target,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: &'a std::collections::HashMap<String, String>,
    pub body: Bytes,
}

impl ResourceRequest<'_> {
    fn kind(&self) -> &ResourceKind {
        &self.target.kind
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("as=Table"))
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(
            self.cluster,
            self.kind().storage_resource(),
            self.target.namespace.clone().unwrap_or_default(),
            name,
        )
    }

    fn group_resource(&self) -> GroupResource {
        self.kind().group_resource()
    }
}

/// Serves a resource request.
pub async fn serve(store: &Arc<dyn Store>, request: ResourceRequest<'_>) -> ApiResult<Response> {
    // A deprecated version of a custom resource warns on every request, as upstream.
    let deprecation = request
        .kind()
        .custom
        .as_ref()
        .and_then(|c| c.deprecation_warning.clone());
    let response = serve_request(store, request).await?;
    Ok(match deprecation {
        Some(warning) => with_warnings(response, &[warning]),
        None => response,
    })
}

async fn serve_request(store: &Arc<dyn Store>, request: ResourceRequest<'_>) -> ApiResult<Response> {
    let target = request.target;
    let subresource = target.subresource.as_deref();
    match (request.method.clone(), target.name.as_deref(), subresource) {
        (Method::GET, None, None) => {
            if request.param("watch").is_some_and(|w| w == "true" || w == "1") {
                watch(store, &request).await
            } else {
                list(store, &request).await
            }
        }
        (Method::GET, Some(name), None | Some("status")) => get(store, &request, name).await,
        (Method::GET, Some(name), Some("scale")) => {
            let stored = get_object(store, &request, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(request.kind(), &stored)?))
        }
        (Method::POST, None, None) => create(store, &request).await,
        (Method::POST, Some(name), Some("binding")) => bind(store, &request, name).await,
        (Method::POST, Some(name), Some("eviction")) => evict(store, &request, name).await,
        (Method::PUT, Some(name), _) => update(store, &request, name).await,
        (Method::PATCH, Some(name), _) => patch(store, &request, name).await,
        (Method::DELETE, Some(name), None) => delete(store, &request, name).await,
        (Method::DELETE, None, None) if request.kind().verbs.contains(&"deletecollection") => {
            delete_collection(store, &request).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn success_status() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 })
}

/// `pods/binding`: assigns an unassigned pod to a node (what a scheduler posts).
async fn bind(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Response> {
    let binding = body_json(request)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("Binding", "", name, vec![Cause::required("target.name")]))?
        .to_string();
    let key = request.key(name);
    let stored = store
        .get(&key)
        .await
        .map_err(|err| ApiError::storage(err, &request.group_resource(), name))?;
    let mut pod = parse(&stored)?;
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(ApiError::conflict_message(
            &request.group_resource(),
            name,
            format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
            ),
        ));
    }
    if request.dry_run() {
        return Ok(json_response(StatusCode::CREATED, &success_status()));
    }
    pod["spec"]["nodeName"] = json!(node);
    let bytes = Bytes::from(serde_json::to_vec(&pod).unwrap_or_default());
    store
        .update(&key, bytes, &Preconditions::revision(stored.revision))
        .await
        .map_err(|err| ApiError::storage(err, &request.group_resource(), name))?;
    Ok(json_response(StatusCode::CREATED, &success_status()))
}

/// `pods/eviction`: deletes the pod (disruption budgets are not consulted yet).
async fn evict(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Response> {
    let eviction = if request.body.is_empty() {
        json!({})
    } else {
        body_json(request)?
    };
    let mut preconditions = Preconditions::none();
    if let Some(uid) = eviction
        .pointer("/deleteOptions/preconditions/uid")
        .and_then(Value::as_str)
    {
        preconditions.uid = Some(uid.to_string());
    }
    if !request.dry_run() {
        store
            .delete(&request.key(name), &preconditions)
            .await
            .map_err(|err| ApiError::storage(err, &request.group_resource(), name))?;
    }
    Ok(json_response(StatusCode::CREATED, &success_status()))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    bytes_response(status, Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
}

fn bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn parse(stored: &StoredObject) -> ApiResult<Value> {
    stored.json().map_err(|err| ApiError::internal(err.to_string()))
}

/// The bytes to store for an object in its served form.
fn storage_bytes(kind: &ResourceKind, object: &Value) -> Bytes {
    let stored = match &kind.stored_as {
        Some((_, conversion)) => conversion.to_storage(object.clone()),
        None => object.clone(),
    };
    Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
}

/// A written object's response: the stored bytes as they are, unless the resource is served in
/// another form.
fn written_response(kind: &ResourceKind, status: StatusCode, stored: &StoredObject) -> ApiResult<Response> {
    if kind.stored_as.is_none() {
        return Ok(bytes_response(status, stored.value.clone()));
    }
    Ok(json_response(status, &presented(kind, parse(stored)?)))
}

/// The stored object as the request's version presents it (versions of one resource share storage).
fn presented(kind: &ResourceKind, mut object: Value) -> Value {
    if let Some((_, conversion)) = &kind.stored_as {
        object = conversion.to_served(object);
    }
    if object.get("apiVersion").and_then(Value::as_str) != Some(kind.api_version().as_str()) {
        object["apiVersion"] = json!(kind.api_version());
    }
    // Custom resources are defaulted on read too, so objects stored before a default was added
    // show it (as upstream does when it reads from storage).
    if let Some(custom) = &kind.custom {
        crate::structural::apply_defaults(&mut object, &custom.schema);
    }
    object
}

async fn get_object(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Value> {
    let stored = store
        .get(&request.key(name))
        .await
        .map_err(|err| ApiError::storage(err, &request.group_resource(), name))?;
    Ok(presented(request.kind(), parse(&stored)?))
}

async fn get(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Response> {
    let object = get_object(store, request, name).await?;
    if request.wants_table() {
        let kind = request.kind();
        let rv = object
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(json!(""));
        let table = table::for_kind(kind, &[object], json!({ "resourceVersion": rv }), true);
        return Ok(json_response(StatusCode::OK, &table));
    }
    Ok(json_response(StatusCode::OK, &object))
}

/// `resourceVersion` + `resourceVersionMatch` of a list.
fn read_revision(request: &ResourceRequest<'_>) -> ApiResult<ReadRevision> {
    let version = request.param("resourceVersion");
    let parsed = match version {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {text:?}: must be an unsigned integer"
            ))
        })?),
    };
    Ok(match (request.param("resourceVersionMatch"), parsed) {
        (Some("Exact"), Some(rv)) => ReadRevision::Exact(rv),
        (Some("NotOlderThan"), Some(rv)) => ReadRevision::NotOlderThan(rv),
        (Some(other), None) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch {other:?} is forbidden unless resourceVersion is provided"
            )));
        }
        (Some(other), Some(_)) if other != "Exact" && other != "NotOlderThan" => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
        (_, Some(0)) => ReadRevision::Any,
        (_, Some(rv)) => ReadRevision::NotOlderThan(rv),
        (_, None) => ReadRevision::Latest,
    })
}

fn scope(request: &ResourceRequest<'_>) -> Scope {
    Scope::new(
        ClusterScope::one(request.cluster),
        request.kind().storage_resource(),
        request.target.namespace.clone(),
    )
}

fn selectors(request: &ResourceRequest<'_>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(request.param("labelSelector").unwrap_or(""))
        .map_err(|err| ApiError::bad_request(format!("unable to parse requirement: {err}")))?;
    let fields = FieldSelector::parse(request.param("fieldSelector").unwrap_or(""), request.kind())?;
    Ok((labels, fields))
}

async fn list(store: &Arc<dyn Store>, request: &ResourceRequest<'_>) -> ApiResult<Response> {
    let (labels, fields) = selectors(request)?;
    let mut list_request = ListRequest::new(scope(request));
    list_request.selector = labels;
    list_request.revision = read_revision(request)?;
    list_request.continue_token = request.param("continue").map(str::to_string);
    if let Some(limit) = request.param("limit") {
        let limit: u64 = limit
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {limit:?}")))?;
        if limit > 0 {
            list_request.limit = Some(limit);
        }
    }
    let page = store
        .list(&list_request)
        .await
        .map_err(|err| ApiError::storage(err, &request.group_resource(), ""))?;
    let kind = request.kind();
    let mut items = Vec::with_capacity(page.items.len());
    for stored in &page.items {
        let object = presented(kind, parse(stored)?);
        if fields.matches(&object) {
            items.push(object);
        }
    }
    let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    if request.wants_table() {
        return Ok(json_response(
            StatusCode::OK,
            &table::for_kind(kind, &items, metadata, true),
        ));
    }
    let list = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// One line of a watch stream.
fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn watch(store: &Arc<dyn Store>, request: &ResourceRequest<'_>) -> ApiResult<Response> {
    let (labels, fields) = selectors(request)?;
    let kind = request.kind().clone();
    let bookmarks = request.param("allowWatchBookmarks") == Some("true");
    let send_initial = request.param("sendInitialEvents") == Some("true");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            vec![Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true".into(),
                field: "allowWatchBookmarks".into(),
            }],
        ));
    }
    let version = request.param("resourceVersion");
    let after: Option<u64> = match version {
        None | Some("0") => None,
        Some(text) => Some(text.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {text:?}: must be an unsigned integer"
            ))
        })?),
    };
    let timeout = match request.param("timeoutSeconds") {
        Some(text) => Some(Duration::from_secs(text.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {text:?}"))
        })?)),
        None => None,
    };
    let table = request.wants_table();

    // Synthetic ADDED events for the current state unless the client resumes from a revision.
    let initial = after.is_none() || send_initial;
    let mut initial_objects = Vec::new();
    let start = if initial {
        let mut list_request = ListRequest::new(scope(request));
        list_request.selector = labels.clone();
        list_request.revision = match after {
            Some(rv) => ReadRevision::NotOlderThan(rv),
            None => ReadRevision::Latest,
        };
        let page = store
            .list(&list_request)
            .await
            .map_err(|err| ApiError::storage(err, &request.group_resource(), ""))?;
        for stored in &page.items {
            let object = presented(&kind, parse(stored)?);
            if fields.matches(&object) {
                initial_objects.push(object);
            }
        }
        Some(page.revision)
    } else {
        after
    };
    let stream = store
        .watch(WatchRequest {
            scope: scope(request),
            after_revision: start,
            progress_interval: bookmarks.then_some(Duration::from_secs(60)),
        })
        .await;
    let events = match stream {
        Ok(events) => events,
        Err(err) => {
            // Upstream answers 200 and reports an expired revision as an ERROR event.
            let status = ApiError::storage(err, &kind.group_resource(), "").status();
            let body = event_line("ERROR", &status);
            return Ok(watch_response(Body::from(body)));
        }
    };

    let mut first_table = true;
    let encode = move |event: &str, object: Value, first: &mut bool| -> Bytes {
        if table && event != "BOOKMARK" && event != "ERROR" {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            let t = table::for_kind(&kind, &[object], json!({ "resourceVersion": rv }), *first);
            *first = false;
            event_line(event, &t)
        } else {
            event_line(event, &object)
        }
    };
    let kind_for_stream = request.kind().clone();
    let bookmark = move |revision: u64, end_of_initial: bool| {
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if end_of_initial {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({ "kind": kind_for_stream.kind, "apiVersion": kind_for_stream.api_version(), "metadata": metadata })
    };

    let mut prelude = Vec::new();
    for object in initial_objects {
        prelude.push(encode("ADDED", object, &mut first_table));
    }
    if send_initial && let Some(revision) = start {
        prelude.push(event_line("BOOKMARK", &bookmark(revision, true)));
    }
    let kind = request.kind().clone();
    let live = events.filter_map(move |event| {
        let line = match event {
            Ok(WatchEvent::Progress { revision }) => {
                bookmarks.then(|| event_line("BOOKMARK", &bookmark(revision, false)))
            }
            Ok(event) => {
                let name = match &event {
                    WatchEvent::Added(_) => "ADDED",
                    WatchEvent::Modified(_) => "MODIFIED",
                    _ => "DELETED",
                };
                event
                    .object()
                    .and_then(|stored| stored.json().ok())
                    .map(|object| presented(&kind, object))
                    .filter(|object| fields.matches(object) && labels_match(&labels, object))
                    .map(|object| encode(name, object, &mut first_table))
            }
            Err(err) => Some(event_line(
                "ERROR",
                &ApiError::storage(err, &kind.group_resource(), "").status(),
            )),
        };
        std::future::ready(line.map(Ok::<_, std::convert::Infallible>))
    });
    let stream = futures::stream::iter(prelude.into_iter().map(Ok)).chain(live);
    let body = match timeout {
        // timeoutSeconds bounds the whole watch, however busy it is.
        Some(limit) => Body::from_stream(stream.take_until(tokio::time::sleep(limit))),
        None => Body::from_stream(stream),
    };
    Ok(watch_response(body))
}

fn labels_match(selector: &LabelSelector, object: &Value) -> bool {
    let labels: coxswain_storage::Labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    selector.matches(&labels)
}

fn watch_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

/// Parses a JSON request body.
fn body_json(request: &ResourceRequest<'_>) -> ApiResult<Value> {
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media == crate::protobuf::MEDIA_TYPE {
        return crate::protobuf::decode(&request.body)
            .map_err(|err| ApiError::bad_request(format!("failed to decode the protobuf body: {err}")));
    }
    if media == "application/yaml" {
        return decode_yaml(&request.body);
    }
    if !matches!(media, "application/json" | "" | "*/*") && !media.ends_with("+json") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    decode_json(&request.body)
}

/// A YAML body (one document). The parser bounds nesting and alias expansion, so alias bombs and
/// deep documents are errors, not memory or stack exhaustion.
pub fn decode_yaml(body: &[u8]) -> ApiResult<Value> {
    serde_yaml::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("error converting YAML to JSON: {err}")))
}

/// Deep documents are refused before they can exhaust the stack (serde_json stops at 128 levels).
pub fn decode_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {err}")))
}

/// `fieldValidation`: what happens to fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn field_validation(request: &ResourceRequest<'_>) -> ApiResult<FieldValidation> {
    match request.param("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

/// Drops fields the schema does not know; under Strict they are an error, under Warn warnings.
fn check_unknown_fields(request: &ResourceRequest<'_>, object: &mut Value) -> ApiResult<Vec<String>> {
    let kind = request.kind();
    let mode = field_validation(request)?;
    let unknown = crate::schema::prune_unknown(object, kind.schema());
    if unknown.is_empty() || mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let texts: Vec<String> = unknown
        .iter()
        .map(|path| format!("unknown field {path:?}"))
        .collect();
    if mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "{kind_name} in version {version:?} cannot be handled as a {kind_name}: strict decoding error: {}",
            texts.join(", "),
            kind_name = kind.kind,
            version = kind.version,
        )));
    }
    Ok(texts)
}

/// Adds `Warning: 299 - "…"` headers.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", serde_json::to_string(warning).unwrap_or_default());
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// The metadata checks every resource gets, plus the strategy's validation.
fn validate(kind: &ResourceKind, object: &Value, old: Option<&Value>) -> ApiResult<()> {
    let name = object::name_of(object).unwrap_or_default();
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else {
        causes.extend(strategy::validate_name(kind.strategy.name_rule(), name));
    }
    if let Some(metadata) = object.get("metadata") {
        causes.extend(crate::validation::metadata_maps(metadata));
    }
    causes.extend(match old {
        None => kind.strategy.validate(object),
        Some(old) => kind.strategy.validate_update(object, old),
    });
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind.kind, kind.group, name, causes))
    }
}

/// Refuses writes into a missing or terminating namespace.
async fn check_namespace(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<()> {
    let Some(namespace) = &request.target.namespace else {
        return Ok(());
    };
    let key = ObjectKey::new(request.cluster, "core/namespaces", "", namespace.as_str());
    let namespaces = GroupResource::new("", "namespaces");
    let stored = store
        .get(&key)
        .await
        .map_err(|err| ApiError::storage(err, &namespaces, namespace))?;
    let object = parse(&stored)?;
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(
            &request.group_resource(),
            name,
            format!("unable to create new content in namespace {namespace} because it is being terminated"),
        ));
    }
    Ok(())
}

async fn create(store: &Arc<dyn Store>, request: &ResourceRequest<'_>) -> ApiResult<Response> {
    let object = body_json(request)?;
    create_object(store, request, object, None).await
}

/// Creates `object`; `applied` is set (to `force`) when this is a server-side apply of an object
/// that did not exist, which records an Apply entry for exactly the applied fields.
async fn create_object(
    store: &Arc<dyn Store>,
    request: &ResourceRequest<'_>,
    mut object: Value,
    applied: Option<bool>,
) -> ApiResult<Response> {
    let kind = request.kind();
    object::check_type(&mut object, kind, kind.kind)?;
    let warnings = check_unknown_fields(request, &mut object)?;
    let submitted = object.clone();
    let metadata = strategy::ensure_object(&mut object, "metadata");
    match (
        &request.target.namespace,
        metadata.get("namespace").and_then(Value::as_str),
    ) {
        (Some(url), Some(body)) if !body.is_empty() && body != url => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (Some(url), _) => {
            metadata.insert("namespace".into(), json!(url));
        }
        (None, _) => {
            metadata.remove("namespace");
        }
    }
    let name_missing = metadata
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if name_missing
        && let Some(prefix) = metadata.get("generateName").and_then(Value::as_str)
        && !prefix.is_empty()
    {
        let name = format!("{prefix}{}", object::random_suffix());
        metadata.insert("name".into(), json!(name));
    }
    for server_set in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        metadata.remove(server_set);
    }
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("creationTimestamp".into(), json!(object::now()));
    if kind.has_status() {
        object["status"] = json!({});
    }
    kind.strategy.prepare_for_create(&mut object);
    if kind.strategy.tracks_generation() {
        object["metadata"]["generation"] = json!(1);
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    match applied {
        None => record_update(request, None, &mut object),
        Some(force) => {
            let applied = with_writer(request, |writer| {
                crate::apply::apply(writer, force, None, &submitted)
            })?;
            object["metadata"]["managedFields"] = applied
                .pointer("/metadata/managedFields")
                .cloned()
                .unwrap_or(json!([]));
        }
    }
    validate(kind, &object, None)?;
    let name = object::name_of(&object).unwrap_or_default().to_string();
    check_namespace(store, request, &name).await?;
    if request.dry_run() {
        return Ok(with_warnings(
            json_response(StatusCode::CREATED, &object),
            &warnings,
        ));
    }
    let held = match &kind.hooks {
        Some(hooks) => {
            hooks
                .reserve_for_create(store.as_ref(), request.cluster, &mut object)
                .await?
        }
        None => Vec::new(),
    };
    let bytes = storage_bytes(kind, &object);
    let stored = match store.create(&request.key(&name), bytes).await {
        Ok(stored) => stored,
        Err(err) => {
            allocator::release(store.as_ref(), &held).await;
            return Err(ApiError::storage(err, &request.group_resource(), &name));
        }
    };
    Ok(with_warnings(
        written_response(kind, StatusCode::CREATED, &stored)?,
        &warnings,
    ))
}

/// Runs `f` with the field manager of this request (for `managedFields`).
fn with_writer<R>(request: &ResourceRequest<'_>, f: impl FnOnce(&crate::managed::Writer<'_>) -> R) -> R {
    let kind = request.kind();
    let user_agent = request
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let manager = crate::managed::manager_name(request.param("fieldManager"), user_agent);
    let api_version = kind.api_version();
    let time = object::now();
    f(&crate::managed::Writer {
        manager: &manager,
        api_version: &api_version,
        group: kind.group,
        schema: kind.schema(),
        version: kind.version,
        kind: kind.kind,
        subresource: request.target.subresource.as_deref(),
        time: &time,
    })
}

/// Records this request's write in `managedFields` (an Update operation).
fn record_update(request: &ResourceRequest<'_>, old: Option<&Value>, new: &mut Value) {
    with_writer(request, |writer| crate::managed::record_update(writer, old, new));
}

/// How a write records field ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// An Update operation, recorded from the difference between old and new.
    Update,
    /// A server-side apply: the new object's managedFields are already computed.
    Applied,
}

/// The new state of an object from a full replacement `incoming` of the part the request may write.
fn merge_update(
    kind: &ResourceKind,
    subresource: Option<&str>,
    old: &Value,
    mut incoming: Value,
) -> ApiResult<Value> {
    if subresource == Some("status") {
        let mut new = old.clone();
        new["status"] = incoming.get("status").cloned().unwrap_or(json!({}));
        return Ok(new);
    }
    if subresource == Some("finalize") {
        let mut new = old.clone();
        new["spec"] = incoming.get("spec").cloned().unwrap_or(json!({}));
        return Ok(new);
    }
    // Server-owned metadata stays as stored.
    let metadata = strategy::ensure_object(&mut incoming, "metadata");
    for owned in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match old.pointer(&format!("/metadata/{owned}")) {
            Some(value) => metadata.insert(owned.into(), value.clone()),
            None => metadata.remove(owned),
        };
    }
    kind.strategy.prepare_for_update(&mut incoming, old);
    if kind.strategy.tracks_generation() && object::spec_part(&incoming) != object::spec_part(old) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        incoming["metadata"]["generation"] = json!(generation + 1);
    }
    Ok(incoming)
}

/// Read–modify–write of one object. `modify` gets the stored object and returns the new one; a
/// resourceVersion in the new object is a precondition. Writes nothing when nothing changed.
async fn write_update(
    store: &Arc<dyn Store>,
    request: &ResourceRequest<'_>,
    name: &str,
    ownership: Ownership,
    mut modify: impl FnMut(&Value) -> ApiResult<Value>,
) -> ApiResult<Response> {
    let kind = request.kind();
    let key = request.key(name);
    for _ in 0..UPDATE_ATTEMPTS {
        let stored = store
            .get(&key)
            .await
            .map_err(|err| ApiError::storage(err, &request.group_resource(), name))?;
        let old = presented(kind, parse(&stored)?);
        let mut new = modify(&old)?;
        object::check_type(&mut new, kind, kind.kind)?;
        let warnings = check_unknown_fields(request, &mut new)?;
        // managedFields are the server's: an Update keeps the stored ones unless the request
        // replaces them (kubectl does when it moves client-side apply ownership to server-side
        // apply) or clears them with an empty list.
        let mut base = old.clone();
        if ownership == Ownership::Update {
            let fields = match new.pointer("/metadata/managedFields") {
                Some(Value::Array(given)) if given.iter().all(Value::is_object) => {
                    Value::Array(given.clone())
                }
                _ => old
                    .pointer("/metadata/managedFields")
                    .cloned()
                    .unwrap_or(json!([])),
            };
            base["metadata"]["managedFields"] = fields.clone();
            new["metadata"]["managedFields"] = fields;
            record_update(request, Some(&base), &mut new);
        }
        if object::name_of(&new) != Some(name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name_of(&new).unwrap_or_default()
            )));
        }
        let wanted = object::resource_version(&new)?;
        if let Some(wanted) = wanted
            && wanted != stored.revision
        {
            return Err(ApiError::conflict(&request.group_resource(), name));
        }
        validate(kind, &new, Some(&old))?;
        let (held, given_up) = match (&kind.hooks, request.dry_run()) {
            (Some(hooks), false) => {
                hooks
                    .reserve_for_update(store.as_ref(), request.cluster, &old, &mut new)
                    .await?
            }
            _ => (Vec::new(), Vec::new()),
        };
        if object::comparable(&new) == object::comparable(&old) || request.dry_run() {
            allocator::release(store.as_ref(), &held).await;
            let shown = if request.dry_run() { &new } else { &old };
            return Ok(with_warnings(json_response(StatusCode::OK, shown), &warnings));
        }
        let bytes = storage_bytes(kind, &new);
        let outcome = store
            .update(&key, bytes, &Preconditions::revision(stored.revision))
            .await;
        if outcome.is_err() {
            allocator::release(store.as_ref(), &held).await;
        } else {
            allocator::release(store.as_ref(), &given_up).await;
        }
        match outcome {
            Ok(written) => {
                // A finalizer-held deletion completes when the last finalizer goes.
                deletion::finish_if_released(store.as_ref(), Some(kind), &written).await;
                return Ok(with_warnings(
                    written_response(kind, StatusCode::OK, &written)?,
                    &warnings,
                ));
            }
            Err(coxswain_storage::Error::Conflict { .. }) if wanted.is_none() => continue,
            Err(err) => return Err(ApiError::storage(err, &request.group_resource(), name)),
        }
    }
    Err(ApiError::conflict(&request.group_resource(), name))
}

async fn update(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Response> {
    let kind = request.kind().clone();
    let subresource = request.target.subresource.clone();
    let incoming = body_json_or_untyped(request)?;
    if subresource.as_deref() == Some("scale") {
        let replicas = incoming.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
        let wanted = object::resource_version(&incoming)?;
        let response = write_update(store, request, name, Ownership::Update, |old| {
            let mut new = old.clone();
            set_at(&mut new, replicas_pointer(&kind), replicas.clone());
            if let Some(rv) = wanted {
                new["metadata"]["resourceVersion"] = json!(rv.to_string());
            }
            merge_update(&kind, None, old, new)
        })
        .await?;
        return scale_response(&kind, response).await;
    }
    write_update(store, request, name, Ownership::Update, |old| {
        merge_update(&kind, subresource.as_deref(), old, incoming.clone())
    })
    .await
}

/// kubectl's `scale --current-replicas` PUT has no Content-Type (CLIENTS.md B6): JSON it is.
fn body_json_or_untyped(request: &ResourceRequest<'_>) -> ApiResult<Value> {
    if request.headers.get(header::CONTENT_TYPE).is_none() {
        return decode_json(&request.body);
    }
    body_json(request)
}

async fn scale_response(kind: &ResourceKind, response: Response) -> ApiResult<Response> {
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), MAX_BODY_BYTES * 4)
        .await
        .map_err(|err| ApiError::internal(err.to_string()))?;
    let object = decode_json(&body)?;
    Ok(json_response(status, &scale_of(kind, &object)?))
}

/// Where a scalable kind keeps its desired replicas, as a JSON pointer.
fn replicas_pointer(kind: &ResourceKind) -> &str {
    match kind.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(scale) => &scale.spec_replicas,
        None => "/spec/replicas",
    }
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_at(object: &mut Value, pointer: &str, value: Value) {
    let mut node = object;
    let steps: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    for step in parents {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        let child = map.entry(step.clone()).or_insert_with(|| json!({}));
        if !child.is_object() {
            *child = json!({});
        }
        node = child;
    }
    if let Some(map) = node.as_object_mut() {
        map.insert(last.clone(), value);
    }
}

/// The autoscaling/v1 Scale of a scalable object.
fn scale_of(kind: &ResourceKind, object: &Value) -> ApiResult<Value> {
    let metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(scale) = kind.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        let selector = scale
            .label_selector
            .as_deref()
            .and_then(|pointer| object.pointer(pointer))
            .cloned()
            .unwrap_or(json!(""));
        let mut status = json!({
            "replicas": object.pointer(&scale.status_replicas).cloned().unwrap_or(json!(0)),
        });
        if selector != json!("") {
            status["selector"] = selector;
        }
        return Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": scale_metadata(&metadata),
            "spec": { "replicas": object.pointer(&scale.spec_replicas).cloned().unwrap_or(json!(0)) },
            "status": status,
        }));
    }
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .or_else(|| object.pointer("/spec/selector"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata(&metadata),
        "spec": { "replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0)) },
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

fn scale_metadata(metadata: &Value) -> Value {
    json!({
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "uid": metadata.get("uid"),
        "resourceVersion": metadata.get("resourceVersion"),
        "creationTimestamp": metadata.get("creationTimestamp"),
    })
}

const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// PatchOptions checks upstream makes before anything else: apply needs a field manager, `force`
/// belongs to apply only.
fn validate_patch_options(request: &ResourceRequest<'_>, is_apply: bool) -> ApiResult<()> {
    let mut causes = Vec::new();
    if is_apply && request.param("fieldManager").is_none() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            message: "Required value: is required for apply patch".into(),
            field: "fieldManager".into(),
        });
    }
    if !is_apply && request.query.contains_key("force") {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            message: "Forbidden: may not be specified for non-apply patch".into(),
            field: "force".into(),
        });
    }
    if let Some(manager) = request.param("fieldManager")
        && manager.len() > 128
    {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: "Too long: may not be more than 128 bytes".into(),
            field: "fieldManager".into(),
        });
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("PatchOptions", "meta.k8s.io", "", causes))
    }
}

async fn patch(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Response> {
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    validate_patch_options(request, content_type == APPLY_PATCH)?;
    if content_type == APPLY_PATCH {
        return server_side_apply(store, request, name).await;
    }
    let kind = request.kind().clone();
    let subresource = request.target.subresource.clone();
    let patch = decode_json(&request.body)?;
    let apply_patch = |document: &Value, document_kind: (&str, &str, &str)| -> ApiResult<Value> {
        let mut patched = document.clone();
        match content_type.as_str() {
            "application/json-patch+json" => {
                let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|err| ApiError::bad_request(format!("invalid JSON patch: {err}")))?;
                if operations.0.len() > MAX_JSON_PATCH_OPERATIONS {
                    return Err(ApiError::too_large_because(format!(
                        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                        operations.0.len()
                    )));
                }
                json_patch::patch(&mut patched, &operations).map_err(|err| {
                    ApiError::invalid(
                        kind.kind,
                        kind.group,
                        name,
                        vec![Cause {
                            reason: "FieldValueInvalid",
                            message: err.to_string(),
                            field: String::new(),
                        }],
                    )
                })?;
            }
            "application/merge-patch+json" => {
                crate::patch::apply(&mut patched, &patch, crate::patch::Kind::Merge, None);
            }
            "application/strategic-merge-patch+json" if kind.custom.is_some() => {
                return Err(ApiError::unsupported_patch_type(&[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    APPLY_PATCH,
                ]));
            }
            "application/strategic-merge-patch+json" => {
                let schema = crate::openapi::schema_of(document_kind.0, document_kind.1, document_kind.2);
                crate::patch::apply(&mut patched, &patch, crate::patch::Kind::Strategic, schema);
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        Ok(patched)
    };
    if subresource.as_deref() == Some("scale") {
        let response = write_update(store, request, name, Ownership::Update, |old| {
            let scale = apply_patch(&scale_of(&kind, old)?, ("autoscaling", "v1", "Scale"))?;
            let mut new = old.clone();
            let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
            set_at(&mut new, replicas_pointer(&kind), replicas);
            merge_update(&kind, None, old, new)
        })
        .await?;
        return scale_response(&kind, response).await;
    }
    write_update(store, request, name, Ownership::Update, |old| {
        let patched = apply_patch(old, (kind.group, kind.version, kind.kind))?;
        let mut new = merge_update(&kind, subresource.as_deref(), old, patched)?;
        keep_revision_unless_given(&patch, old, &mut new);
        Ok(new)
    })
    .await
}

/// A patch's resourceVersion is a precondition only when the patch itself carries one.
fn keep_revision_unless_given(patch: &Value, old: &Value, new: &mut Value) {
    if patch.pointer("/metadata/resourceVersion").is_none()
        && let Some(rv) = old.pointer("/metadata/resourceVersion")
    {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
}

/// `PATCH` with `application/apply-patch+yaml`: server-side apply of the body (YAML or JSON) on
/// the object, its `status` or its `scale`; creates the object when it does not exist.
async fn server_side_apply(
    store: &Arc<dyn Store>,
    request: &ResourceRequest<'_>,
    name: &str,
) -> ApiResult<Response> {
    let kind = request.kind().clone();
    let subresource = request.target.subresource.clone();
    let force = request.param("force") == Some("true");
    let config = decode_yaml(&request.body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration must be a YAML or JSON object",
        ));
    }
    if let (Some(url), Some(body)) = (
        &request.target.namespace,
        config.pointer("/metadata/namespace").and_then(Value::as_str),
    ) && !body.is_empty()
        && body != url
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if subresource.as_deref() == Some("scale") {
        // Scale is autoscaling/v1 whatever the parent's group.
        if config
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Scale")
        {
            return Err(ApiError::bad_request(
                "the apply configuration of scale must be a Scale",
            ));
        }
        let replicas = config.pointer("/spec/replicas").cloned();
        let response = write_update(store, request, name, Ownership::Applied, |old| {
            let mut part = json!({ "apiVersion": kind.api_version(), "kind": kind.kind });
            if let Some(replicas) = &replicas {
                set_at(&mut part, replicas_pointer(&kind), replicas.clone());
            }
            let applied = with_writer(request, |writer| {
                crate::apply::apply(writer, force, Some(old), &part)
            })?;
            let mut new = merge_update(&kind, None, old, applied)?;
            keep_revision_unless_given(&config, old, &mut new);
            Ok(new)
        })
        .await?;
        return scale_response(&kind, response).await;
    }
    let mut typed = config.clone();
    object::check_type(&mut typed, &kind, kind.kind)?;
    match store.get(&request.key(name)).await {
        Err(coxswain_storage::Error::NotFound { .. }) if subresource.is_none() => {
            if object::name_of(&typed) != Some(name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    object::name_of(&typed).unwrap_or_default()
                )));
            }
            return create_object(store, request, typed, Some(force)).await;
        }
        Err(err) => return Err(ApiError::storage(err, &request.group_resource(), name)),
        Ok(_) => {}
    }
    write_update(store, request, name, Ownership::Applied, |old| {
        let applied = with_writer(request, |writer| {
            crate::apply::apply(writer, force, Some(old), &typed)
        })?;
        let fields = applied.pointer("/metadata/managedFields").cloned();
        let mut new = merge_update(&kind, subresource.as_deref(), old, applied)?;
        match fields {
            Some(fields) => new["metadata"]["managedFields"] = fields,
            None => {
                if let Some(metadata) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.remove("managedFields");
                }
            }
        }
        keep_revision_unless_given(&config, old, &mut new);
        Ok(new)
    })
    .await
}

/// DeleteOptions from the body (JSON or protobuf; may be empty) and the query.
fn delete_options(request: &ResourceRequest<'_>) -> ApiResult<DeleteOptions> {
    let body = if request.body.is_empty() {
        None
    } else {
        Some(body_json_or_untyped(request)?)
    };
    DeleteOptions::parse(body.as_ref(), |name| request.param(name))
}

fn deleted_status(kind: &ResourceKind, object: &Value) -> Value {
    let mut details = json!({
        "name": object::name_of(object).unwrap_or_default(),
        "kind": kind.resource,
        "uid": object.pointer("/metadata/uid").cloned().unwrap_or(json!("")),
    });
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details })
}

async fn delete(store: &Arc<dyn Store>, request: &ResourceRequest<'_>, name: &str) -> ApiResult<Response> {
    let kind = request.kind();
    let options = delete_options(request)?;
    let stored = store
        .get(&request.key(name))
        .await
        .map_err(|err| ApiError::storage(err, &request.group_resource(), name))?;
    let response =
        match deletion::delete_object(store.as_ref(), kind, request.cluster, &stored, &options).await? {
            Deletion::Deleted(object) => {
                json_response(StatusCode::OK, &deleted_status(kind, &presented(kind, object)))
            }
            Deletion::Pending(object) => json_response(StatusCode::OK, &presented(kind, object)),
        };
    Ok(with_warnings(response, &deletion::warnings(kind, &options)))
}

async fn delete_collection(store: &Arc<dyn Store>, request: &ResourceRequest<'_>) -> ApiResult<Response> {
    let (labels, fields) = selectors(request)?;
    let mut list_request = ListRequest::new(scope(request));
    list_request.selector = labels;
    let page = store
        .list(&list_request)
        .await
        .map_err(|err| ApiError::storage(err, &request.group_resource(), ""))?;
    let kind = request.kind();
    let mut options = delete_options(request)?;
    // Each object's own revision is the precondition; the request's apply to none of them.
    options.preconditions = Preconditions::none();
    let mut deleted = Vec::new();
    for stored in page.items {
        let object = presented(kind, parse(&stored)?);
        if !fields.matches(&object) {
            continue;
        }
        match deletion::delete_object(store.as_ref(), kind, request.cluster, &stored, &options).await {
            Ok(Deletion::Deleted(_)) => deleted.push(object),
            Ok(Deletion::Pending(pending)) => deleted.push(presented(kind, pending)),
            // Gone or changed since the list: another deleter got there first.
            Err(err) if err.code == StatusCode::NOT_FOUND || err.code == StatusCode::CONFLICT => {}
            Err(err) => return Err(err),
        }
    }
    let list = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": { "resourceVersion": page.revision.to_string() },
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}
