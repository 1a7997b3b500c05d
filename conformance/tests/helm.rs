//! Helm 4 against a fresh Coxswain server (SQLite and PostgreSQL): the release lifecycle of
//! `helm create`'s chart. Needs `COXSWAIN_TEST_HELM` (the test command installs Helm 4.1.4) and a
//! kubectl (`COXSWAIN_TEST_KUBECTL` or `/usr/bin/kubectl`) for checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coxswain_conformance::kubectl::{Kubectl, TestServer, kubectl_binaries};
use coxswain_storage::testing::fresh_database;

fn helm(binary: &Path, kubeconfig: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(home)
        .output()
        .expect("run helm")
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "helm {what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn lifecycle(storage: &str) {
    let binary = PathBuf::from(
        std::env::var("COXSWAIN_TEST_HELM")
            .expect("COXSWAIN_TEST_HELM must name helm 4 (scripts/test.sh installs it)"),
    );
    let server = TestServer::start(storage).await;
    let home = tempfile::tempdir().expect("home");
    let config = server.kubeconfig();
    let run = |args: &[&str]| helm(&binary, &config, home.path(), args);
    let kubectl = Kubectl::new(&kubectl_binaries()[0], &config, home.path());

    ok(run(&["create", "demo"]), "create");
    ok(run(&["install", "demo", "./demo"]), "install");
    let list = ok(run(&["list"]), "list");
    assert!(
        list.lines()
            .any(|l| l.starts_with("demo") && l.contains("deployed")),
        "{list}"
    );
    let status = ok(run(&["status", "demo"]), "status");
    assert!(status.contains("STATUS: deployed"), "{status}");
    let manifest = ok(run(&["get", "manifest", "demo"]), "get manifest");
    assert!(manifest.contains("kind: Deployment"), "{manifest}");
    let deployed = kubectl
        .ok(&["get", "deploy", "demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(deployed, "1");

    ok(
        run(&["upgrade", "demo", "./demo", "--set", "replicaCount=2"]),
        "upgrade",
    );
    let values = ok(run(&["get", "values", "demo"]), "get values");
    assert!(values.contains("replicaCount: 2"), "{values}");
    let upgraded = kubectl
        .ok(&["get", "deploy", "demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(upgraded, "2");
    let history = ok(run(&["history", "demo"]), "history");
    let statuses: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(2).map(str::trim))
        .collect();
    assert_eq!(statuses, ["superseded", "deployed"], "{history}");

    ok(run(&["rollback", "demo", "1"]), "rollback");
    let rolled_back = kubectl
        .ok(&["get", "deploy", "demo", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(rolled_back, "1");

    ok(run(&["uninstall", "demo"]), "uninstall");
    let left = kubectl
        .ok(&[
            "get",
            "deploy,svc,sa,secret",
            "-l",
            "app.kubernetes.io/instance=demo",
            "-o",
            "name",
        ])
        .await;
    assert!(left.trim().is_empty(), "objects of the release remain: {left}");
    let releases = kubectl
        .ok(&["get", "secret", "-l", "owner=helm", "-o", "name"])
        .await;
    assert!(releases.trim().is_empty(), "release secrets remain: {releases}");
    server.server.shutdown().await;
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
