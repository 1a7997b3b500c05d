//! CustomResourceDefinitions with kubectl 1.35 and Helm 4 against a fresh server (SQLite and
//! PostgreSQL): a definition with a schema, defaults, printer columns, categories, short names and
//! status and scale subresources; its objects through every kubectl path the issue names; the API
//! after a restart; isolation between logical clusters; a chart with a CRD in `crds/`; and the
//! objects going with their definition.

use coxswain_conformance::helm::Helm;
use coxswain_conformance::kubectl::{Kubectl, TestServer, kubectl_binaries};
use coxswain_storage::testing::fresh_database;

const CRONTAB_CRD: &str = include_str!("crontab-crd.yaml");
const CRONTAB: &str = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: my-cron\nspec:\n  cronSpec: \"* * * * */5\"\n  image: my-cron-image\n";
const NAME: &str = "crd/crontabs.stable.example.com";

const WIDGET_CHART: &str = "apiVersion: v2\nname: widgets\nversion: 0.1.0\n";
const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
"#;
const WIDGET: &str =
    "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {{ .Release.Name }}-widget\nspec: {}\n";

async fn scenario(storage: &str) {
    let mut server = TestServer::start(storage).await;
    let home = tempfile::tempdir().expect("home");
    let kubectl = Kubectl::new(&kubectl_binaries()[0], &server.kubeconfig(), home.path());

    kubectl.ok_with_input(&["apply", "-f", "-"], CRONTAB_CRD).await;
    kubectl
        .ok(&["wait", "--for=condition=Established", NAME, "--timeout=20s"])
        .await;
    let conditions = kubectl
        .ok(&[
            "get",
            NAME,
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status} {end}",
        ])
        .await;
    assert_eq!(conditions.trim(), "NamesAccepted=True Established=True");
    let resources = kubectl
        .ok(&["api-resources", "--api-group=stable.example.com"])
        .await;
    assert!(
        resources.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]),
        "{resources}"
    );

    kubectl.ok_with_input(&["apply", "-f", "-"], CRONTAB).await;
    let table = kubectl.ok(&["get", "ct"]).await;
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "READY", "AGE"], "{table}");
    assert!(
        table.contains("my-cron   * * * * */5   1"),
        "the default replicas: {table}"
    );
    let explained = kubectl.ok(&["explain", "crontab.spec"]).await;
    assert!(
        explained.contains("cronSpec\t<string> -required-") && explained.contains("The cron schedule."),
        "{explained}"
    );

    kubectl.ok(&["scale", "ct", "my-cron", "--replicas=3"]).await;
    kubectl
        .ok(&[
            "patch",
            "ct",
            "my-cron",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":3,"labelSelector":"app=cron","conditions":[{"type":"Ready","status":"True"}]}}"#,
        ])
        .await;
    let state = kubectl
        .ok(&[
            "get",
            "ct",
            "my-cron",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.metadata.generation}",
        ])
        .await;
    assert_eq!(state, "3 3 2", "status changes do not bump the generation");
    let table = kubectl.ok(&["get", "ct", "my-cron", "--no-headers"]).await;
    let cells: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(
        &cells[..8],
        ["my-cron", "*", "*", "*", "*", "*/5", "3", "True"],
        "{table}"
    );
    let scale = kubectl
        .ok(&[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs/my-cron/scale",
        ])
        .await;
    assert!(
        scale.contains(r#""status":{"replicas":3,"selector":"app=cron"}"#),
        "{scale}"
    );
    kubectl
        .ok(&[
            "wait",
            "--for=jsonpath={.status.replicas}=3",
            "ct/my-cron",
            "--timeout=10s",
        ])
        .await;
    let everything = kubectl.ok(&["get", "all", "-o", "name"]).await;
    assert!(
        everything.contains("crontab.stable.example.com/my-cron"),
        "{everything}"
    );

    let invalid = kubectl
        .fails_with_input(
            &["apply", "-f", "-"],
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: bad}\nspec: {cronSpec: nope, replicas: 20}\n",
        )
        .await;
    assert!(
        invalid.contains(
            r#"spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"#
        ) && invalid.contains(r#"spec.cronSpec: Invalid value: "nope": spec.cronSpec in body should match"#),
        "{invalid}"
    );
    let forbidden = kubectl
        .fails_with_input(
            &["apply", "-f", "-"],
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: bad}\nspec: {cronSpec: \"* * * * *\", image: forbidden}\n",
        )
        .await;
    assert!(
        forbidden.contains(r#"spec: Invalid value: "object": the image forbidden is not allowed"#),
        "{forbidden}"
    );
    let immutable = kubectl
        .fails(&[
            "patch",
            "ct",
            "my-cron",
            "--type=merge",
            "-p",
            r#"{"spec":{"image":"other"}}"#,
        ])
        .await;
    assert!(
        immutable.contains(r#"spec.image: Invalid value: "string": image is immutable"#),
        "{immutable}"
    );
    let broken_rule = kubectl
        .fails_with_input(
            &["apply", "-f", "-"],
            &CRONTAB_CRD.replace("self == oldSelf", "self == oldSelf &&"),
        )
        .await;
    assert!(
        broken_rule.contains("spec.versions[2].schema.openAPIV3Schema.properties[spec].properties[image].x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf &&\": compilation failed"),
        "{broken_rule}"
    );
    let unknown = kubectl
        .fails_with_input(
            &["apply", "-f", "-"],
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: bad}\nspec: {cronSpec: \"* * * * *\", colour: red}\n",
        )
        .await;
    assert!(unknown.contains(r#"unknown field "spec.colour""#), "{unknown}");
    let strategic = kubectl
        .fails(&["patch", "ct", "my-cron", "-p", r#"{"spec":{"image":"x"}}"#])
        .await;
    assert!(
        strategic.contains("the body of the request was in an unknown format"),
        "{strategic}"
    );
    let not_structural = kubectl
        .fails_with_input(
            &["apply", "-f", "-"],
            &CRONTAB_CRD
                .replace("crontabs.stable.example.com", "loose.stable.example.com")
                .replace("plural: crontabs", "plural: loose")
                .replace("kind: CronTab", "kind: Loose")
                .replace("shortNames: [ct]", "shortNames: [lo]")
                .replace(
                    "            type: object\n            required",
                    "            required",
                ),
        )
        .await;
    assert!(
        not_structural.contains("spec.versions[2].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"),
        "{not_structural}"
    );

    // A definition whose kind another one already serves is not accepted, and serves nothing.
    let clash = CRONTAB_CRD
        .replace("crontabs.stable.example.com", "crontabz.stable.example.com")
        .replace("plural: crontabs", "plural: crontabz")
        .replace("singular: crontab", "singular: crontabz")
        .replace("shortNames: [ct]", "shortNames: [ctz]");
    kubectl.ok_with_input(&["apply", "-f", "-"], &clash).await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=NamesAccepted=False",
            "crd/crontabz.stable.example.com",
            "--timeout=20s",
        ])
        .await;
    let refused = kubectl
        .ok(&[
            "get",
            "crd/crontabz.stable.example.com",
            "-o",
            r#"jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason}/{.message};{end}"#,
        ])
        .await;
    assert_eq!(
        refused,
        r#"NamesAccepted=False/KindConflict/"CronTab" is already in use;Established=False/NotAccepted/not all names are accepted;"#
    );
    kubectl
        .fails(&[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabz",
        ])
        .await;
    kubectl.ok(&["delete", "crd/crontabz.stable.example.com"]).await;

    // Server-side apply of a custom resource: a repeated apply changes nothing.
    let applied = CRONTAB.replace("my-cron", "ssa-cron");
    let server_side = ["apply", "--server-side", "-f", "-"];
    kubectl.ok_with_input(&server_side, &applied).await;
    let revision = [
        "get",
        "ct",
        "ssa-cron",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ];
    let before = kubectl.ok(&revision).await;
    kubectl.ok_with_input(&server_side, &applied).await;
    assert_eq!(kubectl.ok(&revision).await, before);
    kubectl.ok(&["delete", "ct", "ssa-cron"]).await;

    // The garbage collector follows custom resources too: a CronTab owned by a ConfigMap goes
    // with it.
    kubectl.ok(&["create", "configmap", "cron-owner"]).await;
    let owner_uid = kubectl
        .ok(&["get", "cm", "cron-owner", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let owned = CRONTAB.replace(
        "  name: my-cron\n",
        &format!(
            "  name: owned-cron\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: cron-owner, uid: {owner_uid}}}]\n"
        ),
    );
    kubectl.ok_with_input(&["apply", "-f", "-"], &owned).await;
    kubectl.ok(&["delete", "cm", "cron-owner"]).await;
    kubectl
        .ok(&["wait", "--for=delete", "ct/owned-cron", "--timeout=20s"])
        .await;

    // Served versions share the storage version's objects; a deprecated one warns; an unserved
    // one is not there.
    let beta = kubectl
        .run(&[
            "get",
            "crontabs.v1beta1.stable.example.com",
            "my-cron",
            "-o",
            "jsonpath={.apiVersion} {.spec.replicas}",
        ])
        .await;
    assert_eq!(
        String::from_utf8_lossy(&beta.stdout),
        "stable.example.com/v1beta1 3"
    );
    assert!(
        String::from_utf8_lossy(&beta.stderr)
            .contains("Warning: stable.example.com/v1beta1 CronTab is deprecated; use stable.example.com/v1"),
        "{}",
        String::from_utf8_lossy(&beta.stderr)
    );
    kubectl
        .fails(&[
            "get",
            "--raw",
            "/apis/stable.example.com/v1alpha1/namespaces/default/crontabs",
        ])
        .await;

    // Another logical cluster has its own definitions.
    let tenant = Kubectl::new(
        &kubectl_binaries()[0],
        &server.cluster_kubeconfig("t1"),
        home.path(),
    );
    let none = tenant.run(&["get", "crd"]).await;
    assert!(String::from_utf8_lossy(&none.stderr).contains("No resources found"));
    let missing = tenant.fails(&["get", "crontabs"]).await;
    assert!(
        missing.contains("the server doesn't have a resource type \"crontabs\""),
        "{missing}"
    );
    tenant.ok_with_input(&["apply", "-f", "-"], WIDGET_CRD).await;
    tenant
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=20s",
        ])
        .await;
    let root_definitions = kubectl.ok(&["get", "crd", "-o", "name"]).await;
    assert_eq!(
        root_definitions.trim(),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com",
        "t1's definition is not visible in root"
    );
    let root_widgets = kubectl.fails(&["get", "widgets"]).await;
    assert!(
        root_widgets.contains("the server doesn't have a resource type"),
        "{root_widgets}"
    );

    // A default added to the schema later shows on objects stored before it (defaulting on read).
    let with_suspend = CRONTAB_CRD.replace(
        "              replicas:\n",
        "              suspend:\n                type: boolean\n                default: false\n              replicas:\n",
    );
    assert_ne!(with_suspend, CRONTAB_CRD);
    kubectl.ok_with_input(&["apply", "-f", "-"], &with_suspend).await;
    kubectl
        .ok(&[
            "wait",
            "--for=jsonpath={.spec.suspend}=false",
            "ct/my-cron",
            "--timeout=20s",
        ])
        .await;

    // The API is back after a restart without any client action.
    server = server.restart().await;
    let after = kubectl
        .ok(&["get", "ct", "my-cron", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(after, "3");

    // A chart with its CRD in crds/ and an object of it in templates/.
    let chart = home.path().join("widgets");
    std::fs::create_dir_all(chart.join("crds")).expect("crds dir");
    std::fs::create_dir_all(chart.join("templates")).expect("templates dir");
    std::fs::write(chart.join("Chart.yaml"), WIDGET_CHART).expect("Chart.yaml");
    std::fs::write(chart.join("crds/widget.yaml"), WIDGET_CRD).expect("crd");
    std::fs::write(chart.join("templates/widget.yaml"), WIDGET).expect("template");
    let helm = Helm::new(&server.kubeconfig(), home.path());
    helm.ok(&["install", "shop", "./widgets"]);
    let size = kubectl
        .ok(&["get", "widget", "shop-widget", "-o", "jsonpath={.spec.size}"])
        .await;
    assert_eq!(size, "3", "defaulted from the schema");
    helm.ok(&["uninstall", "shop"]);

    // Deleting a definition deletes its objects, then the API.
    kubectl.ok(&["delete", NAME, "--timeout=30s"]).await;
    let gone = kubectl
        .fails(&[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs",
        ])
        .await;
    assert!(gone.contains("NotFound"), "{gone}");
    kubectl.ok_with_input(&["apply", "-f", "-"], CRONTAB_CRD).await;
    kubectl
        .ok(&["wait", "--for=condition=Established", NAME, "--timeout=20s"])
        .await;
    let left = kubectl.run(&["get", "ct"]).await;
    assert!(String::from_utf8_lossy(&left.stderr).contains("No resources found"));
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_custom_resources() {
    scenario("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_custom_resources() {
    let base = std::env::var("COXSWAIN_TEST_POSTGRES_URL")
        .expect("COXSWAIN_TEST_POSTGRES_URL must name a PostgreSQL server (scripts/test.sh starts one)");
    scenario(&fresh_database(&base).await).await;
}
