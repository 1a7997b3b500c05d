//! Requests kubectl will not send, over raw HTTPS (SQLite and PostgreSQL): server-side apply bad
//! input gets upstream's status codes and messages and writes nothing; an apply that creates
//! answers 201 with an Apply entry; `force` belongs to apply only; apply on status and scale; a
//! watch asked for in protobuf streams length-prefixed WatchEvents.

use coxswain_conformance::kubectl::TestServer;
use coxswain_conformance::raw::{RawResponse, request, request_with_accept};
use coxswain_storage::testing::fresh_database;

const APPLY: &str = "application/apply-patch+yaml";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

async fn apply(server: &TestServer, path: &str, body: &str) -> RawResponse {
    request(server, "PATCH", path, APPLY, body.as_bytes()).await
}

fn expect(response: &RawResponse, status: u16, text: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    assert!(
        response.body.contains(text),
        "expected {text:?} in {}",
        response.body
    );
}

async fn scenario(storage: &str) {
    let server = TestServer::start(storage).await;
    let cfg = format!("{CONFIGMAPS}/cfg?fieldManager=tester");
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n";

    let missing_manager = apply(&server, &format!("{CONFIGMAPS}/cfg"), config).await;
    expect(
        &missing_manager,
        422,
        r#"PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"#,
    );
    let malformed = apply(
        &server,
        &cfg,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [name: cfg\n",
    )
    .await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    let wrong_kind = apply(&server, &cfg, &config.replace("kind: ConfigMap", "kind: Secret")).await;
    assert_eq!(wrong_kind.status, 400, "{}", wrong_kind.body);
    let wrong_name = apply(&server, &cfg, &config.replace("name: cfg", "name: other")).await;
    expect(
        &wrong_name,
        400,
        "the name of the object (other) does not match the name on the URL (cfg)",
    );
    let wrong_namespace = apply(
        &server,
        &cfg,
        &config.replace("name: cfg", "name: cfg\n  namespace: kube-system"),
    )
    .await;
    expect(
        &wrong_namespace,
        400,
        "the namespace of the provided object does not match the namespace sent on the request",
    );
    let bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n\
        a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let bombed = apply(&server, &cfg, bomb).await;
    assert_eq!(bombed.status, 400, "{}", bombed.body);
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {}1{}\n",
        "{a: ".repeat(10_000),
        "}".repeat(10_000)
    );
    let nested = apply(&server, &cfg, &deep).await;
    assert_eq!(nested.status, 400, "{}", nested.body);
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports:\n  - port: 80\n  - port: 80\n    protocol: TCP\n";
    let duplicated = apply(
        &server,
        "/api/v1/namespaces/default/services/svc?fieldManager=tester",
        service,
    )
    .await;
    expect(
        &duplicated,
        400,
        r#"failed to create typed patch object (svc; v1, Kind=Service): .spec.ports: duplicate entries for key [port=80,protocol=\"TCP\"]"#,
    );
    let listed = request(&server, "GET", CONFIGMAPS, "application/json", b"").await;
    assert!(
        !listed.body.contains(r#""name":"cfg""#),
        "bad input wrote: {}",
        listed.body
    );
    let services = request(
        &server,
        "GET",
        "/api/v1/namespaces/default/services",
        "application/json",
        b"",
    )
    .await;
    assert!(!services.body.contains(r#""name":"svc""#), "{}", services.body);

    // An apply that creates answers 201 with the applier's Apply entry; applying again is a no-op.
    let created = apply(&server, &cfg, config).await;
    expect(&created, 201, r#""operation":"Apply""#);
    let again = apply(&server, &cfg, config).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let revision = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).expect("json")["metadata"]["resourceVersion"].clone()
    };
    assert_eq!(revision(&created.body), revision(&again.body));

    // force is for apply only; a JSON patch may have at most 10,000 operations.
    let merge = request(
        &server,
        "PATCH",
        &format!("{CONFIGMAPS}/cfg?force=true"),
        "application/merge-patch+json",
        br#"{"data":{"b":"2"}}"#,
    )
    .await;
    expect(
        &merge,
        422,
        "force: Forbidden: may not be specified for non-apply patch",
    );
    let operations = vec![r#"{"op":"add","path":"/data/x","value":"y"}"#; 10_001].join(",");
    let huge = request(
        &server,
        "PATCH",
        &format!("{CONFIGMAPS}/cfg"),
        "application/json-patch+json",
        format!("[{operations}]").as_bytes(),
    )
    .await;
    expect(
        &huge,
        413,
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001",
    );
    let unchanged = request(
        &server,
        "GET",
        &format!("{CONFIGMAPS}/cfg"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(revision(&unchanged.body), revision(&created.body));
    subresources(&server).await;
    protobuf_watch(&server).await;
    server.server.shutdown().await;
}

/// `Accept: application/vnd.kubernetes.protobuf` on a watch: frames of a 4-byte big-endian length
/// and a WatchEvent whose object carries the `k8s\0` envelope.
async fn protobuf_watch(server: &TestServer) {
    let response = request_with_accept(
        server,
        &format!("{CONFIGMAPS}?watch=true&timeoutSeconds=1"),
        "application/vnd.kubernetes.protobuf, application/json",
    )
    .await;
    assert_eq!(response.status, 200);
    let body = response.body_bytes;
    assert!(body.len() > 4, "no events");
    let length = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let frame = &body[4..4 + length];
    assert_eq!(&frame[..2], &[0x0a, 5], "the first field is the type ADDED");
    assert_eq!(&frame[2..7], b"ADDED");
    assert!(frame.windows(4).any(|w| w == b"k8s\0"), "the object is enveloped");
}

/// Apply on the status and scale subresources records entries for those subresources.
async fn subresources(server: &TestServer) {
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  \
        selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
        spec: {containers: [{name: web, image: nginx}]}\n";
    let created = apply(
        server,
        &format!("{deployments}/web?fieldManager=tester"),
        deployment,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let status = apply(
        server,
        &format!("{deployments}/web/status?fieldManager=controller"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nstatus: {replicas: 1, readyReplicas: 1}\n",
    )
    .await;
    expect(&status, 200, r#""readyReplicas":1"#);
    // Another applier's replicas conflict on the scale subresource too, until forced.
    let scale = "apiVersion: autoscaling/v1\nkind: Scale\nmetadata: {name: web}\nspec: {replicas: 4}\n";
    let refused = apply(
        server,
        &format!("{deployments}/web/scale?fieldManager=autoscaler"),
        scale,
    )
    .await;
    expect(&refused, 409, r#"conflict with \"tester\": .spec.replicas"#);
    let scaled = apply(
        server,
        &format!("{deployments}/web/scale?fieldManager=autoscaler&force=true"),
        scale,
    )
    .await;
    expect(&scaled, 200, r#""replicas":4"#);
    let read = request(
        server,
        "GET",
        &format!("{deployments}/web"),
        "application/json",
        b"",
    )
    .await;
    let object: serde_json::Value = serde_json::from_str(&read.body).expect("json");
    assert_eq!(object["spec"]["replicas"], 4);
    let managed = object["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    // Upstream orders entries by operation, then time (seconds), then manager; the three applies
    // may straddle a second boundary, so the order is checked by that rule and the content as a set.
    let order: Vec<(String, String, String)> = managed
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or("").to_string();
            (text("operation"), text("time"), text("manager"))
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "managedFields not in upstream order");
    let mut entries: Vec<String> = managed
        .iter()
        .map(|e| format!("{}/{}/{}", e["manager"], e["operation"], e["subresource"]))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            r#""autoscaler"/"Apply"/"scale""#,
            r#""controller"/"Apply"/"status""#,
            r#""tester"/"Apply"/null"#,
        ],
        "{entries:?}"
    );
    // The scale applier now owns spec.replicas: the original applier conflicts on it.
    let conflict = apply(
        server,
        &format!("{deployments}/web?fieldManager=tester"),
        deployment,
    )
    .await;
    expect(
        &conflict,
        409,
        r#"Apply failed with 1 conflict: conflict with \"autoscaler\" with subresource \"scale\": .spec.replicas"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_apply_requests() {
    scenario("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_apply_requests() {
    let base = std::env::var("COXSWAIN_TEST_POSTGRES_URL")
        .expect("COXSWAIN_TEST_POSTGRES_URL must name a PostgreSQL server (scripts/test.sh starts one)");
    scenario(&fresh_database(&base).await).await;
}
