//! The kubectl scenario suite: a fresh Coxswain server per backend (SQLite, and PostgreSQL from
//! `COXSWAIN_TEST_POSTGRES_URL`), driven by every kubectl binary the test command installed.
//! Needs: `COXSWAIN_TEST_KUBECTL` (kubectl 1.35) and/or `/usr/bin/kubectl`; PostgreSQL for the
//! `postgres_` test.

use std::time::Duration;

use coxswain_conformance::kubectl::{Kubectl, TestServer, kubectl_binaries};
use coxswain_storage::testing::fresh_database;

const APP_V1: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
"#;

fn changed_app() -> String {
    APP_V1.replace("greeting: hello", "greeting: bonjour")
}

fn config_map(name: &str, labels: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{{labels}}}}},"data":{{"k":"v"}}}}"#
    )
}

async fn scenario(storage: &str) {
    let mut server = TestServer::start(storage).await;
    for (index, binary) in kubectl_binaries().into_iter().enumerate() {
        let home = tempfile::tempdir().expect("home");
        let kubectl = Kubectl::new(&binary, &server.kubeconfig(), home.path());
        let ns = format!("scenario-{index}");
        eprintln!("== {} on {storage}", binary.display());
        basics(&kubectl).await;
        workloads(&kubectl, &ns).await;
        lists_and_selectors(&kubectl, &ns).await;
        watch(&kubectl, &ns).await;
        garbage_collection(&kubectl, &ns).await;
        errors(&kubectl, &ns).await;
        bad_input(&kubectl, &ns, home.path()).await;
        let tenant = Kubectl::new(&binary, &server.cluster_kubeconfig("t1"), home.path());
        logical_clusters(&kubectl, &tenant, &ns).await;
    }

    // Everything survives a restart with the same uid and resourceVersion.
    let kubectl = Kubectl::new(&kubectl_binaries()[0], &server.kubeconfig(), &server.data_dir);
    kubectl.ok(&["create", "namespace", "keep"]).await;
    kubectl
        .ok_with_input(&["create", "-n", "keep", "-f", "-"], &config_map("kept", ""))
        .await;
    let before = kubectl
        .ok(&[
            "get",
            "cm",
            "kept",
            "-n",
            "keep",
            "-o",
            "jsonpath={.metadata.uid} {.metadata.resourceVersion}",
        ])
        .await;
    let mut watch_from = before.split(' ').nth(1).expect("rv").to_string();
    server = server.restart().await;
    let after = kubectl
        .ok(&[
            "get",
            "cm",
            "kept",
            "-n",
            "keep",
            "-o",
            "jsonpath={.metadata.uid} {.metadata.resourceVersion}",
        ])
        .await;
    assert_eq!(before, after, "uid and resourceVersion survive a restart");
    // A watch from before the restart receives what changed since.
    kubectl
        .ok(&["label", "cm", "kept", "-n", "keep", "after=restart"])
        .await;
    watch_from = watch_from.trim().to_string();
    let raw = kubectl
        .ok(&[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/keep/configmaps?watch=true&resourceVersion={watch_from}&timeoutSeconds=1"
            ),
        ])
        .await;
    assert!(
        raw.contains(r#""type":"MODIFIED""#) && raw.contains("restart"),
        "{raw}"
    );
    server.server.shutdown().await;
}

async fn basics(kubectl: &Kubectl) {
    let version = kubectl.ok(&["version"]).await;
    assert!(version.contains("Server Version: v1.35"), "{version}");
    let resources = kubectl.ok(&["api-resources"]).await;
    for (name, short) in [
        ("pods", "po"),
        ("services", "svc"),
        ("deployments", "deploy"),
        ("configmaps", "cm"),
        ("replicasets", "rs"),
        ("statefulsets", "sts"),
        ("cronjobs", "cj"),
        ("ingresses", "ing"),
        ("horizontalpodautoscalers", "hpa"),
        ("poddisruptionbudgets", "pdb"),
    ] {
        assert!(
            resources
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.split_whitespace().nth(1) == Some(short)),
            "api-resources lacks {name} ({short}):\n{resources}"
        );
    }
    let versions = kubectl.ok(&["api-versions"]).await;
    for expected in ["apps/v1", "batch/v1", "autoscaling/v2", "v1"] {
        assert!(versions.lines().any(|l| l == expected), "{versions}");
    }
    let namespaces = kubectl.ok(&["get", "ns", "-o", "name"]).await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(&format!("namespace/{ns}")), "{namespaces}");
    }
}

async fn workloads(kubectl: &Kubectl, ns: &str) {
    // Imperative creates send protobuf bodies (CLIENTS.md B1).
    kubectl.ok(&["create", "namespace", ns]).await;
    kubectl
        .ok(&[
            "create",
            "configmap",
            "imperative",
            "-n",
            ns,
            "--from-literal=a=b",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "imperative",
            "-n",
            ns,
            "--from-literal=p=q",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "deployment",
            "imperative",
            "-n",
            ns,
            "--image=busybox:1.36",
            "--replicas=2",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "service",
            "clusterip",
            "imperative",
            "-n",
            ns,
            "--tcp=80:8080",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "job",
            "imperative",
            "-n",
            ns,
            "--image=busybox:1.36",
            "--",
            "true",
        ])
        .await;
    let imperative = kubectl
        .ok(&[
            "get",
            "cm,secret,deploy,svc,job",
            "imperative",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.kind}:{.metadata.name} {end}",
        ])
        .await;
    assert_eq!(
        imperative.trim(),
        "ConfigMap:imperative Secret:imperative Deployment:imperative Service:imperative Job:imperative"
    );
    let secret = kubectl
        .ok(&[
            "get",
            "secret",
            "imperative",
            "-n",
            ns,
            "-o",
            "jsonpath={.type} {.data.p}",
        ])
        .await;
    assert_eq!(secret, "Opaque cQ==");
    let deployment = kubectl
        .ok(&[
            "get",
            "deploy",
            "imperative",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas} {.spec.strategy.type} {.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(deployment, "2 RollingUpdate busybox:1.36");
    let created = kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], APP_V1)
        .await;
    for line in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
    ] {
        assert!(created.contains(line), "{created}");
    }
    // Upstream defaults are visible.
    let strategy = kubectl
        .ok(&["get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.template.spec.containers[0].imagePullPolicy}"])
        .await;
    assert_eq!(strategy, "25% 10 IfNotPresent");
    // apply of a changed file: configured / unchanged as appropriate.
    let applied = kubectl
        .ok_with_input(&["apply", "-n", ns, "-f", "-"], &changed_app())
        .await;
    assert!(applied.contains("configmap/web-config configured"), "{applied}");
    let again = kubectl
        .ok_with_input(&["apply", "-n", ns, "-f", "-"], &changed_app())
        .await;
    assert!(again.contains("configmap/web-config unchanged"), "{again}");
    let greeting = kubectl
        .ok(&[
            "get",
            "cm",
            "web-config",
            "-n",
            ns,
            "-o",
            "jsonpath={.data.greeting}",
        ])
        .await;
    assert_eq!(greeting, "bonjour");

    let wide = kubectl
        .ok(&["get", "deploy", "web", "-n", ns, "-o", "wide"])
        .await;
    assert!(
        wide.starts_with("NAME")
            && wide.contains("CONTAINERS")
            && wide.contains("nginx:1.27")
            && wide.contains("app=web"),
        "{wide}"
    );
    let yaml = kubectl.ok(&["get", "svc", "web", "-n", ns, "-o", "yaml"]).await;
    assert!(
        yaml.contains("sessionAffinity: None") && yaml.contains("targetPort: 80"),
        "{yaml}"
    );
    let names = kubectl
        .ok(&["get", "deploy,svc,cm", "-n", ns, "-o", "name"])
        .await;
    assert!(
        names.contains("deployment.apps/web") && names.contains("service/web"),
        "{names}"
    );
    let columns = kubectl
        .ok(&[
            "get",
            "cm",
            "web-config",
            "-n",
            ns,
            "-o",
            "custom-columns=NAME:.metadata.name,GREETING:.data.greeting",
        ])
        .await;
    assert!(columns.contains("web-config   bonjour"), "{columns}");
    let all = kubectl.ok(&["get", "all", "-n", ns]).await;
    assert!(
        all.contains("deployment.apps/web") && all.contains("service/web"),
        "{all}"
    );
    let describe = kubectl.ok(&["describe", "deploy", "web", "-n", ns]).await;
    assert!(
        describe.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{describe}"
    );

    // Patches, labels, annotations.
    kubectl
        .ok(&["label", "cm", "web-config", "-n", ns, "tier=front"])
        .await;
    kubectl
        .ok(&["label", "cm", "web-config", "-n", ns, "tier=back", "--overwrite"])
        .await;
    kubectl
        .ok(&["annotate", "cm", "web-config", "-n", ns, "note=x"])
        .await;
    kubectl
        .ok(&["annotate", "cm", "web-config", "-n", ns, "note-"])
        .await;
    kubectl
        .ok(&[
            "patch",
            "cm",
            "web-config",
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/extra","value":"1"}]"#,
        ])
        .await;
    kubectl
        .ok(&[
            "patch",
            "cm",
            "web-config",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"data":{"greeting":null}}"#,
        ])
        .await;
    let data = kubectl
        .ok(&[
            "get",
            "cm",
            "web-config",
            "-n",
            ns,
            "-o",
            "jsonpath={.data} {.metadata.labels.tier} [{.metadata.annotations.note}]",
        ])
        .await;
    assert_eq!(data, r#"{"extra":"1"} back []"#);
    kubectl
        .ok(&[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
        ])
        .await;
    kubectl
        .ok(&[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#,
        ])
        .await;
    let containers = kubectl
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name} {.metadata.generation}",
        ])
        .await;
    assert_eq!(
        containers, "nginx 3",
        "strategic merge by name; generation bumped by spec changes only"
    );

    // Scale, and scale with a precondition.
    kubectl
        .ok(&["scale", "deploy", "web", "-n", ns, "--replicas=3"])
        .await;
    kubectl
        .ok(&[
            "scale",
            "deploy",
            "web",
            "-n",
            ns,
            "--current-replicas=3",
            "--replicas=2",
        ])
        .await;
    let stale = kubectl
        .fails(&[
            "scale",
            "deploy",
            "web",
            "-n",
            ns,
            "--current-replicas=5",
            "--replicas=1",
        ])
        .await;
    assert!(stale.contains("Expected replicas to be 5, was 2"), "{stale}");
    let replicas = kubectl
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "2");
    kubectl
        .ok(&["set", "image", "deploy/web", "-n", ns, "nginx=nginx:1.28"])
        .await;
    let image = kubectl
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "nginx:1.28");

    // Every write is recorded in managedFields as an Update by its manager.
    let managers = kubectl
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "--show-managed-fields",
            "-o",
            "jsonpath={range .metadata.managedFields[*]}{.manager}:{.operation}:{.subresource} {end}",
        ])
        .await;
    for entry in [
        "kubectl-create:Update:",
        "kubectl-client-side-apply:Update:",
        "kubectl:Update:scale",
        "kubectl-set:Update:",
    ] {
        assert!(
            managers.split_whitespace().any(|m| m == entry),
            "{entry} missing from {managers}"
        );
    }
    let image_owner = kubectl
        .ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            ns,
            "--show-managed-fields",
            "-o",
            "json",
        ])
        .await;
    let image_owner: serde_json::Value = serde_json::from_str(&image_owner).expect("json");
    let owners: Vec<&str> = image_owner["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter(|e| {
            e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
                .get("f:image")
                .is_some()
        })
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(owners, ["kubectl-set"], "set image took the image field");

    // ClusterIPs are allocated once each; a NodePort is held until its Service is deleted.
    let ips = kubectl
        .ok(&[
            "get",
            "svc",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.spec.clusterIP} {end}",
        ])
        .await;
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert_ne!(ips[0], ips[1]);
    assert!(ips.iter().all(|ip| ip.starts_with("10.")), "{ips:?}");
    let fixed = "--node-port=30080";
    kubectl
        .ok(&[
            "create", "service", "nodeport", "fixed-a", "-n", ns, "--tcp=80", fixed,
        ])
        .await;
    let taken = kubectl
        .fails(&[
            "create", "service", "nodeport", "fixed-b", "-n", ns, "--tcp=80", fixed,
        ])
        .await;
    assert!(taken.contains("provided port is already allocated"), "{taken}");
    kubectl.ok(&["delete", "svc", "fixed-a", "-n", ns]).await;
    kubectl
        .ok(&[
            "create", "service", "nodeport", "fixed-b", "-n", ns, "--tcp=80", fixed,
        ])
        .await;
    kubectl.ok(&["delete", "svc", "fixed-b", "-n", ns]).await;

    // diff shows the change and changes nothing; edit goes through an editor.
    let changed = APP_V1.replace("greeting: hello", "greeting: hallo");
    let diff = kubectl
        .run_with_input(&["diff", "-n", ns, "-f", "-"], &changed)
        .await;
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "{diff_text}");
    assert!(diff_text.contains("+  greeting: hallo"), "{diff_text}");
    let unchanged = kubectl
        .ok(&[
            "get",
            "cm",
            "web-config",
            "-n",
            ns,
            "-o",
            "jsonpath={.data.extra} [{.data.greeting}]",
        ])
        .await;
    assert_eq!(unchanged, "1 []");
    let editor = r#"sed -i s/extra:\ \"1\"/extra:\ \"2\"/"#;
    let edit = kubectl
        .command_with_env(&["edit", "cm", "web-config", "-n", ns], "KUBE_EDITOR", editor)
        .await;
    assert!(edit.status.success(), "{}", String::from_utf8_lossy(&edit.stderr));
    let edited = kubectl
        .ok(&[
            "get",
            "cm",
            "web-config",
            "-n",
            ns,
            "-o",
            "jsonpath={.data.extra}",
        ])
        .await;
    assert_eq!(edited, "2");

    // OpenAPI: explain, and strict field validation.
    let explain = kubectl.ok(&["explain", "pod.spec.containers"]).await;
    assert!(
        explain.contains("List of containers belonging to the pod."),
        "{explain}"
    );
    let recursive = kubectl
        .ok(&["explain", "deployment.spec.strategy", "--recursive"])
        .await;
    assert!(
        recursive.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{recursive}"
    );
    // The protobuf form of /openapi/v2.
    let v2 = kubectl
        .ok(&[
            "explain",
            "deployment.spec.strategy",
            "--output=plaintext-openapiv2",
        ])
        .await;
    assert!(
        v2.contains("RESOURCE: strategy <Object>") && v2.contains("rollingUpdate\t<Object>"),
        "{v2}"
    );
    let typo = APP_V1
        .replace("name: web\n  labels", "name: typo\n  labels")
        .replace(
            "    matchLabels: {app: web}",
            "    matchLabels: {app: web}\n  replicass: 2",
        );
    let strict = kubectl
        .fails_with_input(&["create", "-n", ns, "-f", "-"], &typo)
        .await;
    assert!(
        strict.contains(r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replicass""#),
        "{strict}"
    );

    // Pods and services describe as upstream's describers expect.
    kubectl
        .ok(&[
            "run",
            "sleeper",
            "-n",
            ns,
            "--image=busybox:1.36",
            "--",
            "sleep",
            "1000",
        ])
        .await;
    let pods = kubectl.ok(&["get", "pods", "-n", ns, "-o", "wide"]).await;
    assert!(
        pods.starts_with("NAME")
            && pods.contains("READINESS GATES")
            && pods.contains("sleeper")
            && pods.contains("Pending"),
        "{pods}"
    );
    let pod = kubectl.ok(&["describe", "pod", "sleeper", "-n", ns]).await;
    assert!(
        pod.contains("Status:       Pending") && pod.contains("QoS Class:        BestEffort"),
        "{pod}"
    );
    let service = kubectl.ok(&["describe", "svc", "web", "-n", ns]).await;
    assert!(
        service.contains("Type:                     ClusterIP")
            && service.contains("TargetPort:               80/TCP"),
        "{service}"
    );
    kubectl
        .ok(&[
            "delete",
            "pod",
            "sleeper",
            "-n",
            ns,
            "--cascade=orphan",
            "--grace-period=30",
        ])
        .await;

    // pods/binding assigns a node once; pods/eviction deletes.
    kubectl
        .ok(&["run", "bound", "-n", ns, "--image=busybox:1.36"])
        .await;
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"bound"},"target":{"kind":"Node","name":"node-1"}}"#;
    let bind_path = format!("/api/v1/namespaces/{ns}/pods/bound/binding");
    kubectl
        .ok_with_input(&["create", "--raw", &bind_path, "-f", "-"], binding)
        .await;
    let node = kubectl
        .ok(&["get", "pod", "bound", "-n", ns, "-o", "jsonpath={.spec.nodeName}"])
        .await;
    assert_eq!(node, "node-1");
    let again = kubectl
        .fails_with_input(&["create", "--raw", &bind_path, "-f", "-"], binding)
        .await;
    assert!(
        again.contains(r#"pod bound is already assigned to node \"node-1\""#)
            || again.contains(r#"pod bound is already assigned to node "node-1""#),
        "{again}"
    );
    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"bound"}}"#;
    let evict_path = format!("/api/v1/namespaces/{ns}/pods/bound/eviction");
    kubectl
        .ok_with_input(&["create", "--raw", &evict_path, "-f", "-"], eviction)
        .await;
    let evicted = kubectl.fails(&["get", "pod", "bound", "-n", ns]).await;
    assert!(evicted.contains(r#"pods "bound" not found"#), "{evicted}");

    // A pod on a node is deleted gracefully: marked Terminating until grace 0 forces it.
    kubectl
        .ok(&["run", "graceful", "-n", ns, "--image=busybox:1.36"])
        .await;
    let bind_graceful = format!("/api/v1/namespaces/{ns}/pods/graceful/binding");
    kubectl
        .ok_with_input(
            &["create", "--raw", &bind_graceful, "-f", "-"],
            &binding.replace("\"bound\"", "\"graceful\""),
        )
        .await;
    kubectl
        .ok(&["delete", "pod", "graceful", "-n", ns, "--wait=false"])
        .await;
    let marked = kubectl
        .ok(&[
            "get",
            "pod",
            "graceful",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ])
        .await;
    assert_eq!(marked, "30");
    let listed = kubectl.ok(&["get", "pod", "graceful", "-n", ns]).await;
    assert!(listed.contains("Terminating"), "{listed}");
    kubectl
        .ok(&[
            "delete",
            "pod",
            "graceful",
            "-n",
            ns,
            "--force",
            "--grace-period=0",
        ])
        .await;
    let gone = kubectl.fails(&["get", "pod", "graceful", "-n", ns]).await;
    assert!(gone.contains(r#"pods "graceful" not found"#), "{gone}");

    // wait --for=delete returns once the object is gone (kubectl 1.35 uses a watch-list).
    kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], &config_map("doomed", ""))
        .await;
    let pending = kubectl
        .fails(&["wait", "--for=delete", "cm/doomed", "-n", ns, "--timeout=1s"])
        .await;
    assert!(
        pending.contains("timed out waiting for the condition"),
        "{pending}"
    );
    // Whether the wait starts before or after the delete, it must end in success.
    let waiter = {
        let kubectl = kubectl.clone();
        let ns = ns.to_string();
        tokio::spawn(async move {
            kubectl
                .ok(&["wait", "--for=delete", "cm/doomed", "-n", &ns, "--timeout=60s"])
                .await
        })
    };
    kubectl
        .ok(&["delete", "cm", "doomed", "-n", ns, "--cascade=background"])
        .await;
    waiter.await.expect("wait task");

    // events.k8s.io/v1 and core v1 Events are one resource seen two ways.
    let event = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: pulled\nregarding: {kind: Pod, name: sleeper}\nnote: pulled the image\nreason: Pulled\ntype: Normal\nreportingController: kubelet\nreportingInstance: node-1\neventTime: \"2026-01-01T00:00:00.000000Z\"\naction: Pull\n";
    kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], event)
        .await;
    let core = kubectl
        .ok(&[
            "get",
            "events.v1.",
            "pulled",
            "-n",
            ns,
            "-o",
            "jsonpath={.apiVersion} {.message} {.involvedObject.name}",
        ])
        .await;
    assert_eq!(core, "v1 pulled the image sleeper");
    let modern = kubectl
        .ok(&[
            "get",
            "events.v1.events.k8s.io",
            "pulled",
            "-n",
            ns,
            "-o",
            "jsonpath={.note} {.regarding.name}",
        ])
        .await;
    assert_eq!(modern, "pulled the image sleeper");

    // autoscaling/v1 and v2 are one resource: v1's CPU target is v2's cpu metric.
    let hpa = r#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"web"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":1,"maxReplicas":4,"targetCPUUtilizationPercentage":70}}"#;
    kubectl.ok_with_input(&["create", "-n", ns, "-f", "-"], hpa).await;
    let v2 = kubectl
        .ok(&[
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
        ])
        .await;
    assert_eq!(v2, "70");
    let v1 = kubectl
        .ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}",
        ])
        .await;
    assert_eq!(v1, "autoscaling/v1 70");
    kubectl
        .ok(&[
            "autoscale",
            "deployment",
            "imperative",
            "-n",
            ns,
            "--max=3",
            "--cpu-percent=60",
        ])
        .await;
    let autoscaled = kubectl
        .ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "imperative",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.maxReplicas} {.spec.targetCPUUtilizationPercentage}",
        ])
        .await;
    assert_eq!(autoscaled, "3 60");
    let hpa_table = kubectl.ok(&["get", "hpa", "imperative", "-n", ns]).await;
    assert!(
        hpa_table.starts_with("NAME")
            && hpa_table.contains("Deployment/imperative")
            && hpa_table.contains("cpu: <unknown>/60%"),
        "{hpa_table}"
    );
    let events_table = kubectl.ok(&["get", "events", "-n", ns]).await;
    assert!(
        events_table.starts_with("LAST SEEN   TYPE     REASON   OBJECT"),
        "{events_table}"
    );

    // Server-side dry run writes nothing.
    kubectl
        .ok_with_input(
            &["create", "-n", ns, "--dry-run=server", "-f", "-"],
            &config_map("dry", ""),
        )
        .await;
    let missing = kubectl.fails(&["get", "cm", "dry", "-n", ns]).await;
    assert!(missing.contains(r#"configmaps "dry" not found"#), "{missing}");
}

async fn lists_and_selectors(kubectl: &Kubectl, ns: &str) {
    for i in 0..5 {
        let labels = format!(r#""batch":"b","index":"i{i}""#);
        kubectl
            .ok_with_input(
                &["create", "-n", ns, "-f", "-"],
                &config_map(&format!("page-{i}"), &labels),
            )
            .await;
    }
    let chunked = kubectl
        .ok(&[
            "get",
            "cm",
            "-n",
            ns,
            "-l",
            "batch=b",
            "--chunk-size=2",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(chunked.lines().count(), 5, "{chunked}");
    let selected = kubectl
        .ok(&["get", "cm", "-n", ns, "-l", "batch=b,index!=i0", "-o", "name"])
        .await;
    assert_eq!(selected.lines().count(), 4, "{selected}");
    let by_field = kubectl
        .ok(&[
            "get",
            "cm",
            "-n",
            ns,
            "--field-selector",
            "metadata.name=page-3",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(by_field.trim(), "configmap/page-3");
    let labels = kubectl
        .ok(&["get", "cm", "page-1", "-n", ns, "--show-labels"])
        .await;
    assert!(labels.contains("batch=b,index=i1"), "{labels}");
    let everywhere = kubectl.ok(&["get", "cm", "-A", "-l", "batch=b"]).await;
    assert!(
        everywhere.starts_with("NAMESPACE") && everywhere.contains(ns),
        "{everywhere}"
    );
    let deleted = kubectl.ok(&["delete", "cm", "-n", ns, "-l", "index=i0"]).await;
    assert!(deleted.contains(r#"configmap "page-0" deleted"#), "{deleted}");
    kubectl.ok(&["delete", "cm", "page-1", "-n", ns]).await;
    kubectl
        .ok(&[
            "delete",
            "cm",
            "page-2",
            "-n",
            ns,
            "--cascade=foreground",
            "--grace-period=0",
        ])
        .await;
    let left = kubectl
        .ok(&["get", "cm", "-n", ns, "-l", "batch=b", "-o", "name"])
        .await;
    assert_eq!(left.lines().count(), 2, "{left}");
    kubectl.ok(&["delete", "cm", "--all", "-n", ns]).await;
    let none = kubectl.run(&["get", "cm", "-n", ns]).await;
    assert!(String::from_utf8_lossy(&none.stderr).contains("No resources found"));
}

/// A ConfigMap owned by `owner` (a ConfigMap with that uid); `extra` goes into its metadata.
fn dependent(name: &str, owner: &str, uid: &str, extra: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}",{extra}"ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"{owner}","uid":"{uid}","blockOwnerDeletion":true}}]}}}}"#
    )
}

/// Creates a ConfigMap to own others; returns its uid.
async fn owner(kubectl: &Kubectl, ns: &str, name: &str) -> String {
    kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], &config_map(name, ""))
        .await;
    kubectl
        .ok(&["get", "cm", name, "-n", ns, "-o", "jsonpath={.metadata.uid}"])
        .await
}

/// Waits (with a deadline) until the named objects are gone.
async fn wait_deleted(kubectl: &Kubectl, ns: &str, objects: &[&str]) {
    let mut args = vec!["wait", "--for=delete", "-n", ns, "--timeout=20s"];
    args.extend_from_slice(objects);
    kubectl.ok(&args).await;
}

async fn garbage_collection(kubectl: &Kubectl, ns: &str) {
    // Background (kubectl's default): the owner goes at once, its dependents after it.
    let uid = owner(kubectl, ns, "gc-bg").await;
    for name in ["gc-bg-1", "gc-bg-2"] {
        kubectl
            .ok_with_input(
                &["create", "-n", ns, "-f", "-"],
                &dependent(name, "gc-bg", &uid, ""),
            )
            .await;
    }
    kubectl.ok(&["delete", "cm", "gc-bg", "-n", ns]).await;
    wait_deleted(kubectl, ns, &["cm/gc-bg-1", "cm/gc-bg-2"]).await;

    // Foreground: the owner waits, marked, for its blocking dependent (held by a finalizer here).
    let uid = owner(kubectl, ns, "gc-fg").await;
    kubectl
        .ok_with_input(
            &["create", "-n", ns, "-f", "-"],
            &dependent("gc-fg-1", "gc-fg", &uid, r#""finalizers":["example.com/hold"],"#),
        )
        .await;
    kubectl
        .ok(&[
            "delete",
            "cm",
            "gc-fg",
            "-n",
            ns,
            "--cascade=foreground",
            "--wait=false",
        ])
        .await;
    let waiting = kubectl
        .ok(&[
            "get",
            "cm",
            "gc-fg",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.finalizers} {.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(waiting.starts_with(r#"["foregroundDeletion"] 20"#), "{waiting}");
    kubectl
        .ok(&[
            "patch",
            "cm",
            "gc-fg-1",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .await;
    wait_deleted(kubectl, ns, &["cm/gc-fg", "cm/gc-fg-1"]).await;

    // Orphan: the dependent stays, without its owner reference.
    let uid = owner(kubectl, ns, "gc-or").await;
    kubectl
        .ok_with_input(
            &["create", "-n", ns, "-f", "-"],
            &dependent("gc-or-1", "gc-or", &uid, ""),
        )
        .await;
    kubectl
        .ok(&["delete", "cm", "gc-or", "-n", ns, "--cascade=orphan"])
        .await;
    let orphaned = kubectl
        .ok(&[
            "get",
            "cm",
            "gc-or-1",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ])
        .await;
    assert_eq!(orphaned, "", "orphaned dependents lose their owner reference");
    kubectl.ok(&["delete", "cm", "gc-or-1", "-n", ns]).await;

    // A reference to an owner that does not exist is collected.
    kubectl
        .ok_with_input(
            &["create", "-n", ns, "-f", "-"],
            &dependent(
                "gc-dangling",
                "nobody",
                "00000000-0000-0000-0000-000000000000",
                "",
            ),
        )
        .await;
    wait_deleted(kubectl, ns, &["cm/gc-dangling"]).await;

    // DeleteOptions are validated; a Job deleted without a policy warns that its pods stay.
    let path = format!("/api/v1/namespaces/{ns}/configmaps/none?propagationPolicy=Sideways");
    let invalid = kubectl.fails(&["delete", "--raw", &path]).await;
    assert!(
        invalid.contains(r#"The DeleteOptions "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan""#),
        "{invalid}"
    );
    kubectl
        .ok(&["create", "job", "gc-job", "-n", ns, "--image=busybox:1.36"])
        .await;
    let raw = kubectl
        .run(&[
            "delete",
            "--raw",
            &format!("/apis/batch/v1/namespaces/{ns}/jobs/gc-job"),
        ])
        .await;
    assert!(raw.status.success());
    assert!(
        String::from_utf8_lossy(&raw.stderr)
            .contains("child pods are preserved by default when jobs are deleted"),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
}

async fn watch(kubectl: &Kubectl, ns: &str) {
    // The watch is established once its initial list shows the marker.
    kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], &config_map("marker", ""))
        .await;
    let mut watcher = kubectl.spawn(&["get", "cm", "-n", ns, "-w", "--output-watch-events"]);
    watcher
        .until(Duration::from_secs(30), |out| out.contains("marker"))
        .await;
    kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], &config_map("watched", ""))
        .await;
    kubectl
        .ok(&["label", "cm", "watched", "-n", ns, "seen=yes"])
        .await;
    kubectl.ok(&["delete", "cm", "watched", "-n", ns]).await;
    watcher
        .until(Duration::from_secs(30), |out| {
            out.lines()
                .any(|l| l.starts_with("DELETED") && l.contains("watched"))
        })
        .await;
    let output = watcher.stop().await;
    let events: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("watched"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(events, ["ADDED", "MODIFIED", "DELETED"], "{output}");
    kubectl.ok(&["delete", "cm", "--all", "-n", ns]).await;
}

async fn errors(kubectl: &Kubectl, ns: &str) {
    let invalid = kubectl
        .fails_with_input(&["create", "-n", ns, "-f", "-"], &config_map("bad_name", ""))
        .await;
    assert!(
        invalid.contains(r#"The ConfigMap "bad_name" is invalid: metadata.name: Invalid value: "bad_name": a lowercase RFC 1123 subdomain must consist of"#),
        "{invalid}"
    );
    kubectl
        .ok_with_input(&["create", "-n", ns, "-f", "-"], &config_map("stale", ""))
        .await;
    let old = kubectl.ok(&["get", "cm", "stale", "-n", ns, "-o", "yaml"]).await;
    kubectl.ok(&["label", "cm", "stale", "-n", ns, "moved=on"]).await;
    let conflict = kubectl
        .fails_with_input(&["replace", "-n", ns, "-f", "-"], &old)
        .await;
    assert!(
        conflict.contains(r#"Operation cannot be fulfilled on configmaps "stale": the object has been modified; please apply your changes to the latest version and try again"#),
        "{conflict}"
    );
    let exists = kubectl
        .fails_with_input(&["create", "-n", ns, "-f", "-"], &config_map("stale", ""))
        .await;
    assert!(
        exists.contains(r#"configmaps "stale" already exists"#),
        "{exists}"
    );
    let missing_ns = kubectl
        .fails_with_input(&["create", "-n", "nowhere", "-f", "-"], &config_map("x", ""))
        .await;
    assert!(
        missing_ns.contains(r#"namespaces "nowhere" not found"#),
        "{missing_ns}"
    );
    // A namespace whose content is held by a finalizer stays Terminating and takes no new content.
    let held = format!("{ns}-held");
    kubectl.ok(&["create", "namespace", &held]).await;
    let holder = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"holder","finalizers":["example.com/hold"]}}"#;
    kubectl
        .ok_with_input(&["create", "-n", &held, "-f", "-"], holder)
        .await;
    kubectl.ok(&["delete", "namespace", &held, "--wait=false"]).await;
    let phase = kubectl
        .ok(&["get", "namespace", &held, "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(phase, "Terminating");
    let refused = kubectl
        .fails_with_input(&["create", "-n", &held, "-f", "-"], &config_map("late", ""))
        .await;
    assert!(
        refused.contains(&format!(
            r#"configmaps "late" is forbidden: unable to create new content in namespace {held} because it is being terminated"#
        )),
        "{refused}"
    );
    kubectl
        .ok(&[
            "patch",
            "cm",
            "holder",
            "-n",
            &held,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .await;
    kubectl
        .ok(&[
            "wait",
            "--for=delete",
            &format!("namespace/{held}"),
            "--timeout=60s",
        ])
        .await;

    let unknown = kubectl.fails(&["get", "widgets"]).await;
    assert!(
        unknown.contains(r#"the server doesn't have a resource type "widgets""#),
        "{unknown}"
    );
}

/// Bad input gets a Status error and writes nothing.
async fn bad_input(kubectl: &Kubectl, ns: &str, dir: &std::path::Path) {
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let write = |name: &str, text: String| {
        let file = dir.join(name);
        std::fs::write(&file, text).expect("write body");
        file.to_string_lossy().into_owned()
    };
    let big = write(
        "big.json",
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
            "a".repeat(4 << 20)
        ),
    );
    let too_large = kubectl.fails(&["create", "--raw", &path, "-f", &big]).await;
    assert!(
        too_large.contains("Request entity too large: limit is 3145728"),
        "{too_large}"
    );
    let truncated = write(
        "truncated.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x""#.into(),
    );
    let malformed = kubectl.fails(&["create", "--raw", &path, "-f", &truncated]).await;
    assert!(malformed.contains("(BadRequest)"), "{malformed}");
    let deep = write(
        "deep.json",
        format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)),
    );
    let nested = kubectl.fails(&["create", "--raw", &path, "-f", &deep]).await;
    assert!(nested.contains("(BadRequest)"), "{nested}");
    let selector = kubectl.fails(&["get", "cm", "-n", ns, "-l", "a in ("]).await;
    assert!(selector.contains("(BadRequest)"), "{selector}");
    let token = kubectl
        .fails(&["get", "--raw", &format!("{path}?continue=garbage")])
        .await;
    assert!(token.contains("continue key is not valid"), "{token}");
    let left = kubectl.ok(&["get", "cm", "-n", ns, "-o", "name"]).await;
    assert!(!left.contains("big") && !left.contains("configmap/x"), "{left}");
}

async fn logical_clusters(root: &Kubectl, tenant: &Kubectl, ns: &str) {
    let namespaces = tenant.ok(&["get", "ns", "-o", "name"]).await;
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
    assert!(
        !namespaces.contains(&format!("namespace/{ns}")),
        "root's namespace leaked: {namespaces}"
    );
    root.ok_with_input(
        &["create", "-n", "default", "-f", "-"],
        &config_map("root-only", ""),
    )
    .await;
    let missing = tenant.fails(&["get", "cm", "root-only", "-n", "default"]).await;
    assert!(missing.contains("not found"), "{missing}");
    tenant
        .ok_with_input(
            &["create", "-n", "default", "-f", "-"],
            &config_map("tenant-only", ""),
        )
        .await;
    let root_view = root.ok(&["get", "cm", "-A", "-o", "name"]).await;
    assert!(!root_view.contains("tenant-only"), "{root_view}");
    root.ok(&["delete", "cm", "root-only", "-n", "default"]).await;
    tenant.ok(&["delete", "cm", "tenant-only", "-n", "default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kubectl_scenario() {
    scenario("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kubectl_scenario() {
    let base = std::env::var("COXSWAIN_TEST_POSTGRES_URL")
        .expect("COXSWAIN_TEST_POSTGRES_URL must name a PostgreSQL server (scripts/test.sh starts one)");
    scenario(&fresh_database(&base).await).await;
}
