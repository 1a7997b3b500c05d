//! The HTTPS server: opens the store, prepares certificates and the admin kubeconfig, accepts TLS
//! connections (HTTP/1.1 and HTTP/2 by ALPN), authenticates, routes every request to discovery,
//! OpenAPI or the generic REST handler, and shuts down in order: stop accepting, let in-flight
//! requests finish, close the store.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coxswain_storage::{
    ClusterScope, ListRequest, ObjectKey, Preconditions, Scope, SqlStore, Store, StoreOptions,
};
use futures::{FutureExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::{Identity, Tokens};
use crate::discovery::{self, Aggregated};
use crate::error::{ApiError, ApiResult};
use crate::pki;
use crate::registry;
use crate::request::{self, DEFAULT_CLUSTER, Endpoint};
use crate::rest::{self, MAX_BODY_BYTES, ResourceRequest};

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `sqlite` or a `postgres://` URL.
    pub storage: String,
    pub token_auth_file: Option<PathBuf>,
    /// Where ClusterIPs and NodePorts come from.
    pub service_network: crate::allocator::ServiceNetwork,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] coxswain_storage::Error),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Tokens(#[from] crate::auth::TokenFileError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

/// What every request handler shares.
struct AppState {
    store: Arc<dyn Store>,
    /// The built-in API and each logical cluster's custom resources.
    apis: Arc<crate::crd::Apis>,
    tokens: Tokens,
    /// Logical clusters whose initial namespaces are known to exist.
    bootstrapped: Mutex<HashSet<String>>,
    /// `/openapi/v2`, built on first use (the registry does not change while serving).
    openapi_v2: std::sync::OnceLock<Value>,
    openapi_v2_protobuf: std::sync::OnceLock<bytes::Bytes>,
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, waits for in-flight requests (watches are cut after a grace period), and
    /// closes the store.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// A token that stops the server when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The namespaces every logical cluster has from the start.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Writes the admin kubeconfig for the server at `addr`; returns its path.
pub fn write_kubeconfig(
    data_dir: &Path,
    pki: &pki::ServerPki,
    addr: SocketAddr,
) -> Result<PathBuf, ServerError> {
    let path = data_dir.join("admin.kubeconfig");
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    std::fs::write(
        &path,
        pki::admin_kubeconfig(pki, &format!("https://{host}"), None),
    )
    .map_err(|source| ServerError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn tls_config(pki: &pki::ServerPki) -> Result<rustls::ServerConfig, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |err: &dyn std::fmt::Display| ServerError::Tls(err.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls(&e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pki.serving_cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Starts the server; returns once it accepts connections.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::Write {
        path: config.data_dir.clone(),
        source,
    })?;
    let tokens = match &config.token_auth_file {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    let store: Arc<dyn Store> =
        Arc::new(SqlStore::open(&config.storage, &config.data_dir, StoreOptions::default()).await?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Listen {
        addr: config.listen,
        source,
    })?;
    let pki = pki::ensure(&config.data_dir, addr)?;
    let kubeconfig = write_kubeconfig(&config.data_dir, &pki, addr)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    let state = Arc::new(AppState {
        store,
        apis: Arc::new(crate::crd::Apis::new(Arc::new(registry::builtin_with(
            config.service_network,
        )))),
        tokens,
        bootstrapped: Mutex::new(HashSet::new()),
        openapi_v2: std::sync::OnceLock::new(),
        openapi_v2_protobuf: std::sync::OnceLock::new(),
    });
    ensure_cluster(&state, DEFAULT_CLUSTER)
        .await
        .map_err(|err| ServerError::Tls(format!("cannot create the initial namespaces: {err}")))?;
    crate::crd::load(state.store.as_ref(), &state.apis).await?;
    resume_namespace_cleanup(&state).await;

    let shutdown = CancellationToken::new();
    let collector = crate::garbage::spawn(state.store.clone(), state.apis.clone(), shutdown.clone());
    let definitions = crate::crd::spawn_controller(state.store.clone(), state.apis.clone(), shutdown.clone());
    let serving = accept_loop(listener, acceptor, state, shutdown.clone());
    let task = tokio::spawn(async move {
        serving.await;
        let _ = collector.await;
        let _ = definitions.await;
    });
    Ok(RunningServer {
        addr,
        kubeconfig,
        shutdown,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| Identity::from_certificate(cert.as_ref()));
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let state = state.clone();
                let identity = identity.clone();
                async move {
                    // A bug must cost one request a 500, never the connection or the process.
                    let handled = std::panic::AssertUnwindSafe(handle(&state, identity, request))
                        .catch_unwind()
                        .await;
                    Ok::<_, std::convert::Infallible>(handled.unwrap_or_else(|_| {
                        warn!("a request handler panicked");
                        ApiError::internal("the request handler failed").into_response()
                    }))
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // In-flight requests finish; long watches are cut after a grace period.
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        info!("closing connections still open after the shutdown grace period");
    }
}

fn identify(
    state: &AppState,
    certificate: Option<Identity>,
    request: &Request<hyper::body::Incoming>,
) -> ApiResult<Identity> {
    if let Some(authorization) = request.headers().get(header::AUTHORIZATION) {
        let token = authorization
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        return state
            .tokens
            .identify(token)
            .cloned()
            .ok_or_else(ApiError::unauthorized);
    }
    Ok(certificate.unwrap_or_else(Identity::anonymous))
}

async fn handle(
    state: &Arc<AppState>,
    certificate: Option<Identity>,
    request: Request<hyper::body::Incoming>,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let wants_yaml = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.trim_start().starts_with("application/yaml"));
    let first_accepted = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .unwrap_or("")
        .to_string();
    let wants_protobuf = first_accepted.split(';').next().unwrap_or("").trim() == crate::protobuf::MEDIA_TYPE;
    // Tables have no protobuf form here; a table watch stays JSON.
    let wants_protobuf_events = wants_protobuf && !first_accepted.contains("as=");
    let watching = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let response = match route(state, certificate, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    let response = if wants_yaml && !watching {
        as_yaml(response).await
    } else if wants_protobuf && response.status().is_success() {
        if watching {
            if wants_protobuf_events {
                as_protobuf_watch(response)
            } else {
                response
            }
        } else {
            as_protobuf(response).await
        }
    } else {
        response
    };
    debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t == "application/json")
}

/// Re-encodes a JSON-lines watch stream as length-prefixed protobuf WatchEvents, event by event.
/// An event the schema table cannot express (none of the built-in kinds) is dropped with a warning.
fn as_protobuf_watch(response: Response) -> Response {
    if !is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let frames = body
        .into_data_stream()
        .scan(Vec::<u8>::new(), |pending, chunk| {
            let mut frames = Vec::new();
            match chunk {
                Ok(bytes) => {
                    pending.extend_from_slice(&bytes);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        let encoded = serde_json::from_slice::<Value>(&line)
                            .map_err(|err| err.to_string())
                            .and_then(|event| {
                                crate::protobuf::watch_frame(&event).map_err(|err| err.to_string())
                            });
                        match encoded {
                            Ok(frame) => frames.push(Ok(bytes::Bytes::from(frame))),
                            Err(err) => warn!(error = %err, "watch event without a protobuf form; dropped"),
                        }
                    }
                }
                Err(err) => frames.push(Err(err)),
            }
            std::future::ready(Some(futures::stream::iter(frames)))
        })
        .flatten();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::protobuf::WATCH_MEDIA_TYPE),
    );
    Response::from_parts(parts, Body::from_stream(frames))
}

/// Re-encodes a JSON response as Kubernetes protobuf when the schema table can express it; JSON
/// otherwise (protobuf clients all accept JSON too).
async fn as_protobuf(response: Response) -> Response {
    if !is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("cannot read the response body").into_response();
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| crate::protobuf::encode(&value).ok());
    match encoded {
        Some(protobuf) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::protobuf::MEDIA_TYPE),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(protobuf))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Re-encodes a JSON response as YAML (for `Accept: application/yaml`).
async fn as_yaml(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("cannot read the response body").into_response();
    };
    let yaml = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| serde_yaml::to_string(&value).ok());
    match yaml {
        Some(text) => {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Paths anonymous users may read (upstream's `system:public-info-viewer`).
fn public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
        || path.starts_with("/healthz/")
}

async fn route(
    state: &Arc<AppState>,
    certificate: Option<Identity>,
    request: Request<hyper::body::Incoming>,
) -> ApiResult<Response> {
    let identity = identify(state, certificate, &request)?;
    let (cluster, path) = request::split_cluster(request.uri().path())?;
    if identity.is_anonymous() && !public(&path) {
        let verb = request.method().as_str().to_lowercase();
        return Err(ApiError::forbidden_path(
            &identity.user,
            &verb,
            request.uri().path(),
        ));
    }
    let query = request::query_map(request.uri().query());
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let cluster_prefix = if cluster == DEFAULT_CLUSTER && !parts.uri.path().starts_with("/clusters/") {
        String::new()
    } else {
        format!("/clusters/{cluster}")
    };
    let json = |value: Value| json_response(&value, "application/json");
    let registry = state.apis.for_cluster(&cluster);
    match request::endpoint(&registry, &path)? {
        Endpoint::Version => Ok(json(discovery::version())),
        Endpoint::Health => Ok((StatusCode::OK, "ok").into_response()),
        Endpoint::CoreVersions => Ok(match Aggregated::from_accept(&accept) {
            Some(flavour) => json_response(
                &discovery::aggregated(&registry, flavour, true),
                &flavour.content_type(),
            ),
            None => json(discovery::core_versions()),
        }),
        Endpoint::Groups => Ok(match Aggregated::from_accept(&accept) {
            Some(flavour) => json_response(
                &discovery::aggregated(&registry, flavour, false),
                &flavour.content_type(),
            ),
            None => json(discovery::group_list(&registry)),
        }),
        Endpoint::Group(group) => discovery::group(&registry, &group)
            .map(json)
            .ok_or_else(ApiError::no_route),
        Endpoint::ResourceList { group, version } => discovery::resource_list(&registry, &group, &version)
            .map(json)
            .ok_or_else(ApiError::no_route),
        Endpoint::OpenApiV3Index => Ok(json(crate::openapi::index(&registry, &cluster_prefix))),
        Endpoint::OpenApiV3 { group, version } => {
            crate::openapi::group_version_document(&registry, &group, &version)
                .map(json)
                .ok_or_else(ApiError::no_route)
        }
        Endpoint::OpenApiV2 => {
            // The built-in document is made once; a cluster with custom resources gets its own.
            let custom = state.apis.has_custom(&cluster);
            let own;
            let document = if custom {
                own = crate::openapi::v2_document(&registry);
                &own
            } else {
                state
                    .openapi_v2
                    .get_or_init(|| crate::openapi::v2_document(&registry))
            };
            let first = accept.split(',').next().unwrap_or("").trim();
            if crate::openapi::v2_protobuf::MEDIA_TYPES
                .iter()
                .any(|t| first.starts_with(t))
            {
                let encoded = if custom {
                    bytes::Bytes::from(crate::openapi::v2_protobuf::encode(document))
                } else {
                    state
                        .openapi_v2_protobuf
                        .get_or_init(|| bytes::Bytes::from(crate::openapi::v2_protobuf::encode(document)))
                        .clone()
                };
                let mut response = (StatusCode::OK, encoded).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::openapi::v2_protobuf::RESPONSE_MEDIA_TYPE),
                );
                Ok(response)
            } else {
                Ok(json(document.clone()))
            }
        }
        Endpoint::Resource(target) => {
            ensure_cluster(state, &cluster).await?;
            let deleting_namespace = parts.method == axum::http::Method::DELETE
                && target.kind.group.is_empty()
                && target.kind.resource == "namespaces"
                && target.subresource.is_none();
            let namespace_name = target.name.clone();
            let response = rest::serve(
                &state.store,
                ResourceRequest {
                    cluster: &cluster,
                    target: &target,
                    method: &parts.method,
                    headers: &parts.headers,
                    query: &query,
                    body,
                },
            )
            .await?;
            if deleting_namespace
                && response.status().is_success()
                && query.get("dryRun").map(String::as_str) != Some("All")
                && let Some(name) = namespace_name
            {
                spawn_namespace_cleanup(state.clone(), cluster.clone(), name);
            }
            Ok(response)
        }
    }
}

fn json_response(value: &Value, content_type: &str) -> Response {
    let mut response = (StatusCode::OK, serde_json::to_vec(value).unwrap_or_default()).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Creates a logical cluster's initial namespaces the first time it is used.
async fn ensure_cluster(state: &AppState, cluster: &str) -> ApiResult<()> {
    if state
        .bootstrapped
        .lock()
        .map(|set| set.contains(cluster))
        .unwrap_or(false)
    {
        return Ok(());
    }
    for name in INITIAL_NAMESPACES {
        let key = ObjectKey::new(cluster, "core/namespaces", "", *name);
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": crate::object::now(),
                "labels": { "kubernetes.io/metadata.name": name },
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        });
        let bytes = bytes::Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        match state.store.create(&key, bytes).await {
            Ok(_) | Err(coxswain_storage::Error::AlreadyExists { .. }) => {}
            Err(err) => {
                return Err(ApiError::storage(
                    err,
                    &crate::registry::GroupResource::new("", "namespaces"),
                    name,
                ));
            }
        }
    }
    if let Ok(mut set) = state.bootstrapped.lock() {
        set.insert(cluster.to_string());
    }
    Ok(())
}

fn spawn_namespace_cleanup(state: Arc<AppState>, cluster: String, namespace: String) {
    tokio::spawn(async move {
        if let Err(err) = clean_namespace(&state, &cluster, &namespace).await {
            warn!(%cluster, %namespace, error = %err, "namespace cleanup failed; it resumes at the next start");
        }
    });
}

/// Deletes everything in a terminating namespace, then the namespace.
async fn clean_namespace(
    state: &AppState,
    cluster: &str,
    namespace: &str,
) -> Result<(), coxswain_storage::Error> {
    // Level-triggered: each pass looks at what is there now, and comes back later while objects
    // held by finalizers remain.
    let mut requeue = Duration::from_millis(200);
    while clean_pass(state, cluster, namespace).await? > 0 {
        tokio::time::sleep(requeue).await;
        requeue = (requeue * 2).min(Duration::from_secs(5));
    }
    let key = ObjectKey::new(cluster, "core/namespaces", "", namespace);
    match state.store.delete(&key, &Preconditions::none()).await {
        Ok(_) | Err(coxswain_storage::Error::NotFound { .. }) => {}
        Err(err) => return Err(err),
    }
    if INITIAL_NAMESPACES.contains(&namespace)
        && let Ok(mut set) = state.bootstrapped.lock()
    {
        set.remove(cluster);
    }
    info!(%cluster, %namespace, "namespace deleted");
    Ok(())
}

/// One pass over a terminating namespace: deletes what can go, marks what finalizers hold (with a
/// deletionTimestamp); returns how many objects remain.
async fn clean_pass(
    state: &AppState,
    cluster: &str,
    namespace: &str,
) -> Result<usize, coxswain_storage::Error> {
    let mut remaining = 0;
    let registry = state.apis.for_cluster(cluster);
    for (resource, namespaced) in registry.storage_resources() {
        if !namespaced {
            continue;
        }
        let request = ListRequest::new(Scope::new(
            ClusterScope::one(cluster),
            resource.clone(),
            Some(namespace.to_string()),
        ));
        let page = state.store.list(&request).await?;
        let hooks = registry.hooks_for(&resource);
        for object in page.items {
            let mut value = object.json()?;
            let held = value
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if held {
                remaining += 1;
                if value.pointer("/metadata/deletionTimestamp").is_none() {
                    value["metadata"]["deletionTimestamp"] = json!(crate::object::now());
                    value["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    let bytes = bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
                    match state
                        .store
                        .update(&object.key, bytes, &Preconditions::revision(object.revision))
                        .await
                    {
                        Ok(_)
                        | Err(
                            coxswain_storage::Error::Conflict { .. }
                            | coxswain_storage::Error::NotFound { .. },
                        ) => {}
                        Err(err) => return Err(err),
                    }
                }
                continue;
            }
            match state.store.delete(&object.key, &Preconditions::none()).await {
                Ok(deleted) => {
                    if let (Some(hooks), Ok(value)) = (&hooks, deleted.json()) {
                        crate::allocator::release(state.store.as_ref(), &hooks.held(cluster, &value)).await;
                    }
                }
                Err(coxswain_storage::Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(remaining)
}

/// Finishes the cleanup of namespaces that were terminating when the server stopped.
async fn resume_namespace_cleanup(state: &Arc<AppState>) {
    let request = ListRequest::new(Scope::new(ClusterScope::All, "core/namespaces", None));
    let Ok(page) = state.store.list(&request).await else {
        return;
    };
    for stored in page.items {
        let terminating = stored
            .json()
            .ok()
            .and_then(|object| object.pointer("/metadata/deletionTimestamp").cloned())
            .is_some();
        if terminating {
            spawn_namespace_cleanup(state.clone(), stored.key.cluster.clone(), stored.key.name.clone());
        }
    }
}
