//! Helm 4 against a fresh Coxswain server (SQLite and PostgreSQL): the release lifecycle of
//! `helm create`'s chart. Needs `COXSWAIN_TEST_HELM` (the test command installs Helm 4.1.4) and a
//! kubectl (`COXSWAIN_TEST_KUBECTL` or `/usr/bin/kubectl`) for checks.

use std::path::Path;

use coxswain_conformance::helm::Helm;
use coxswain_conformance::kubectl::{Kubectl, TestServer, kubectl_binaries};
use coxswain_storage::testing::fresh_database;

async fn lifecycle(storage: &str) {
    let server = TestServer::start(storage).await;
    let home = tempfile::tempdir().expect("home");
    let config = server.kubeconfig();
    let helm = Helm::new(&config, home.path());
    let kubectl = Kubectl::new(&kubectl_binaries()[0], &config, home.path());

    helm.ok(&["create", "demo"]);
    helm.ok(&["install", "demo", "./demo"]);
    let list = helm.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("demo") && l.contains("deployed")),
        "{list}"
    );
    let status = helm.ok(&["status", "demo"]);
    assert!(status.contains("STATUS: deployed"), "{status}");
    let manifest = helm.ok(&["get", "manifest", "demo"]);
    assert!(manifest.contains("kind: Deployment"), "{manifest}");
    let deployed = kubectl
        .ok(&["get", "deploy", "demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(deployed, "1");

    helm.ok(&["upgrade", "demo", "./demo", "--set", "replicaCount=2"]);
    let values = helm.ok(&["get", "values", "demo"]);
    assert!(values.contains("replicaCount: 2"), "{values}");
    let upgraded = kubectl
        .ok(&["get", "deploy", "demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(upgraded, "2");
    let history = helm.ok(&["history", "demo"]);
    let statuses: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(2).map(str::trim))
        .collect();
    assert_eq!(statuses, ["superseded", "deployed"], "{history}");

    helm.ok(&["rollback", "demo", "1"]);
    let rolled_back = kubectl
        .ok(&["get", "deploy", "demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(rolled_back, "1");

    helm.ok(&["uninstall", "demo"]);
    let left = release_objects(&kubectl, "deploy,svc,sa,secret", "demo").await;
    assert!(left.trim().is_empty(), "objects of the release remain: {left}");
    let releases = kubectl
        .ok(&["get", "secret", "-l", "owner=helm", "-o", "name"])
        .await;
    assert!(releases.trim().is_empty(), "release secrets remain: {releases}");
    client_side_patches(&helm, &kubectl).await;
    server_dry_run(&helm, &kubectl).await;
    stateful_chart(&helm, &kubectl, home.path()).await;
    three_managers(&helm, &kubectl).await;
    server.server.shutdown().await;
}

/// `--server-side=false`: Helm's three-way strategic merge patches instead of apply.
async fn client_side_patches(helm: &Helm, kubectl: &Kubectl) {
    helm.ok(&["install", "csa", "./demo", "--server-side=false"]);
    helm.ok(&[
        "upgrade",
        "csa",
        "./demo",
        "--server-side=false",
        "--set",
        "replicaCount=3",
    ]);
    let replicas = kubectl
        .ok(&["get", "deploy", "csa-demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(replicas, "3");
    let managers = kubectl
        .ok(&[
            "get",
            "deploy",
            "csa-demo",
            "-o",
            "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
        ])
        .await;
    assert!(
        !managers.contains("/Apply"),
        "no apply without server-side apply: {managers}"
    );
    helm.ok(&["uninstall", "csa"]);
}

/// `--dry-run=server` runs every write with dryRun=All: nothing is created.
async fn server_dry_run(helm: &Helm, kubectl: &Kubectl) {
    let out = helm.ok(&["install", "dry", "./demo", "--dry-run=server"]);
    assert!(out.contains("kind: Deployment"), "{out}");
    let left = release_objects(kubectl, "deploy,svc,secret", "dry").await;
    assert!(left.trim().is_empty(), "a dry run created {left}");
}

/// The names of the objects of `kinds` labelled as belonging to Helm release `release`.
async fn release_objects(kubectl: &Kubectl, kinds: &str, release: &str) -> String {
    let selector = format!("app.kubernetes.io/instance={release}");
    kubectl.ok(&["get", kinds, "-l", &selector, "-o", "name"]).await
}

const STACK_CHART: &str = "apiVersion: v2\nname: stack\nversion: 0.1.0\n";
const STACK_VALUES: &str = "message: hello\nreplicas: 1\n";
const STACK_TEMPLATE: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-secret
stringData:
  password: s3cret
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  message: {{ .Values.message | quote }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-svc
spec:
  type: NodePort
  selector: {app: stack}
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 30080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-db
spec:
  serviceName: {{ .Release.Name }}-svc
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: stack}
  template:
    metadata:
      labels: {app: stack}
    spec:
      containers:
      - name: db
        image: busybox:1.36
        ports:
        - containerPort: 8080
"#;

/// `helm upgrade --install` of a chart with a Secret, a ConfigMap, a fixed-NodePort Service and a
/// StatefulSet, installed and then upgraded.
async fn stateful_chart(helm: &Helm, kubectl: &Kubectl, home: &Path) {
    let chart = home.join("stack");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(chart.join("Chart.yaml"), STACK_CHART).expect("Chart.yaml");
    std::fs::write(chart.join("values.yaml"), STACK_VALUES).expect("values.yaml");
    std::fs::write(chart.join("templates/all.yaml"), STACK_TEMPLATE).expect("template");
    helm.ok(&["upgrade", "--install", "stack", "./stack"]);
    helm.ok(&[
        "upgrade",
        "--install",
        "stack",
        "./stack",
        "--set",
        "message=bye",
        "--set",
        "replicas=2",
    ]);
    let state = kubectl
        .ok(&[
            "get",
            "cm/stack-config",
            "svc/stack-svc",
            "sts/stack-db",
            "-o",
            "jsonpath={.items[0].data.message} {.items[1].spec.ports[0].nodePort} {.items[2].spec.replicas}",
        ])
        .await;
    assert_eq!(state, "bye 30080 2");
    let history = helm.ok(&["history", "stack"]);
    assert!(
        history.contains("superseded") && history.contains("deployed"),
        "{history}"
    );
    helm.ok(&["uninstall", "stack"]);
    let left = kubectl
        .ok(&["get", "secret/stack-secret", "--ignore-not-found", "-o", "name"])
        .await;
    assert!(left.trim().is_empty(), "{left}");
}

/// `helm template | kubectl apply --server-side`, a second manager changing one field, and the
/// conflict the next apply reports until it forces.
async fn three_managers(helm: &Helm, kubectl: &Kubectl) {
    let rendered = helm.ok(&["template", "tmpl", "./demo", "--skip-tests"]);
    kubectl.ok(&["create", "namespace", "ssa"]).await;
    let apply = ["apply", "--server-side", "-n", "ssa", "-f", "-"];
    kubectl.ok_with_input(&apply, &rendered).await;
    let revision = [
        "get",
        "deploy",
        "tmpl-demo",
        "-n",
        "ssa",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ];
    let before = kubectl.ok(&revision).await;
    kubectl.ok_with_input(&apply, &rendered).await;
    assert_eq!(
        kubectl.ok(&revision).await,
        before,
        "a repeated apply changes nothing"
    );

    kubectl
        .ok(&[
            "patch",
            "deploy",
            "tmpl-demo",
            "-n",
            "ssa",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ])
        .await;
    let managers = kubectl
        .ok(&[
            "get",
            "deploy",
            "tmpl-demo",
            "-n",
            "ssa",
            "-o",
            "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
        ])
        .await;
    assert_eq!(managers.trim(), "kubectl/Apply kubectl-patch/Update");
    let conflict = kubectl.fails_with_input(&apply, &rendered).await;
    assert!(
        conflict.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: .spec.replicas"#
        ),
        "{conflict}"
    );
    let forced = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        "ssa",
        "-f",
        "-",
    ];
    kubectl.ok_with_input(&forced, &rendered).await;
    let after = kubectl
        .ok(&[
            "get",
            "deploy",
            "tmpl-demo",
            "-n",
            "ssa",
            "-o",
            "jsonpath={.spec.replicas} {range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
        ])
        .await;
    assert_eq!(after.trim(), "1 kubectl/Apply");
    let shown = kubectl
        .ok(&[
            "get",
            "deploy",
            "tmpl-demo",
            "-n",
            "ssa",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .await;
    assert!(
        shown.contains("manager: kubectl\n    operation: Apply"),
        "{shown}"
    );

    // Client-side apply to server-side apply and back: kubectl moves the ownership itself.
    let config = |value: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"moved"}},"data":{{"k":"{value}"}}}}"#
        )
    };
    kubectl
        .ok_with_input(&["apply", "-n", "ssa", "-f", "-"], &config("a"))
        .await;
    kubectl.ok_with_input(&apply, &config("b")).await;
    let managers = [
        "get",
        "cm",
        "moved",
        "-n",
        "ssa",
        "-o",
        "jsonpath={.data.k} {range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ];
    // Entries are ordered by operation, then time in seconds, then manager: whether `kubectl`
    // comes before `kubectl-last-applied` depends on whether the two applies shared a second.
    let upgraded = kubectl.ok(&managers).await;
    let mut words = upgraded.split_whitespace();
    assert_eq!(words.next(), Some("b"), "{upgraded}");
    let entries: Vec<&str> = words.collect();
    assert!(
        entries.contains(&"kubectl/Apply") && !upgraded.contains("kubectl-client-side-apply"),
        "{upgraded}"
    );
    let back = kubectl
        .ok_with_input(&["apply", "-n", "ssa", "-f", "-"], &config("c"))
        .await;
    assert!(back.contains("configmap/moved configured"), "{back}");
    assert!(kubectl.ok(&managers).await.starts_with("c "));
    kubectl.ok(&["delete", "namespace", "ssa"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_helm_lifecycle() {
    lifecycle("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_helm_lifecycle() {
    let base = std::env::var("COXSWAIN_TEST_POSTGRES_URL")
        .expect("COXSWAIN_TEST_POSTGRES_URL must name a PostgreSQL server (scripts/test.sh starts one)");
    lifecycle(&fresh_database(&base).await).await;
}
