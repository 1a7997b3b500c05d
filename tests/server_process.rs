//! The `coxswain` binary as a process: `server` is ready quickly and says where its kubeconfig is,
//! accepts client certificates and static bearer tokens (and tells anonymous and wrong-token
//! requests apart), `kubeconfig --cluster` addresses a logical cluster, and SIGTERM stops it
//! cleanly. Needs a kubectl: `COXSWAIN_TEST_KUBECTL` or `/usr/bin/kubectl`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kubectl_binary() -> PathBuf {
    std::env::var("COXSWAIN_TEST_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/kubectl"))
}

fn kubectl(home: &Path, args: &[&str]) -> Output {
    Command::new(kubectl_binary())
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits for the child to exit, up to `deadline`.
fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            started.elapsed() < deadline,
            "the server did not exit within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn server_process_authenticates_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "secret-token,alice,1001,\"dev,ops\"\n").expect("token file");
    let mut server = Command::new(env!("CARGO_BIN_EXE_coxswain"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--token-auth-file")
        .arg(&tokens)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start coxswain server");
    let guard = StopOnDrop(server.id());
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    // "coxswain is ready on https://127.0.0.1:PORT after N ms; kubeconfig: PATH"
    let url = line.split_whitespace().nth(4).expect("url").to_string();
    let ready_ms: u64 = line
        .split_whitespace()
        .nth(6)
        .expect("ms")
        .parse()
        .expect("ms number");
    assert!(ready_ms < 1000, "ready after {ready_ms} ms: {line}");
    let kubeconfig = data.join("admin.kubeconfig");
    assert!(
        line.trim_end().ends_with(&kubeconfig.display().to_string()),
        "{line}"
    );
    let home = dir.path();
    let config = kubeconfig.to_string_lossy().into_owned();

    let admin = kubectl(home, &["--kubeconfig", &config, "get", "ns", "-o", "name"]);
    assert!(admin.status.success(), "{}", stderr(&admin));
    let ca = data.join("pki/ca.crt").to_string_lossy().into_owned();
    let base = [
        "--kubeconfig",
        "/dev/null",
        "--server",
        url.as_str(),
        "--certificate-authority",
        ca.as_str(),
    ];
    let with_token = kubectl(
        home,
        &[&base[..], &["--token", "secret-token", "get", "ns"]].concat(),
    );
    assert!(with_token.status.success(), "{}", stderr(&with_token));
    let wrong = kubectl(home, &[&base[..], &["--token", "wrong", "get", "ns"]].concat());
    assert!(
        !wrong.status.success() && stderr(&wrong).contains("Unauthorized"),
        "{}",
        stderr(&wrong)
    );
    // Without credentials (kubectl would prompt for a password, so Python's client asks).
    let anonymous = |path: &str| {
        let script = "import ssl,sys,urllib.request,urllib.error\n\
ctx=ssl.create_default_context(cafile=sys.argv[2])\n\
try:\n    r=urllib.request.urlopen(sys.argv[1],context=ctx); print(r.status); print(r.read().decode())\n\
except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n";
        let output = Command::new("python3")
            .args(["-c", script, &format!("{url}{path}"), &ca])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let forbidden = anonymous("/api/v1/namespaces");
    assert!(
        forbidden.starts_with("403")
            && forbidden.contains(r#"User \"system:anonymous\" cannot get path \"/api/v1/namespaces\""#),
        "{forbidden}"
    );
    let version = anonymous("/version");
    assert!(
        version.starts_with("200") && version.contains("v1.35"),
        "anonymous may read /version: {version}"
    );

    // YAML bodies and responses, with a static token; an alias bomb is refused.
    let http = |method: &str, path: &str, content_type: &str, accept: &str, body: &str| {
        let script = "import ssl,sys,urllib.request,urllib.error\n\
ctx=ssl.create_default_context(cafile=sys.argv[2])\n\
req=urllib.request.Request(sys.argv[1],data=sys.argv[5].encode() or None,method=sys.argv[3],\n\
  headers={'Authorization':'Bearer secret-token','Content-Type':sys.argv[4],'Accept':sys.argv[6]})\n\
try:\n    r=urllib.request.urlopen(req,context=ctx); print(r.status); print(r.read().decode())\n\
except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n";
        let output = Command::new("python3")
            .args([
                "-c",
                script,
                &format!("{url}{path}"),
                &ca,
                method,
                content_type,
                body,
                accept,
            ])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  greeting: hello\n";
    let created = http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        "application/json",
        yaml,
    );
    assert!(created.starts_with("201"), "{created}");
    let read = http(
        "GET",
        "/api/v1/namespaces/default/configmaps/from-yaml",
        "application/json",
        "application/yaml",
        "",
    );
    assert!(
        read.starts_with("200") && read.contains("greeting: hello") && read.contains("kind: ConfigMap"),
        "{read}"
    );
    let mut bomb = String::from("a: &a [\"lol\"]\n");
    for level in 1..12 {
        let previous = (b'a' + level - 1) as char;
        let name = (b'a' + level) as char;
        bomb.push_str(&format!("{name}: &{name} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]\n"));
    }
    let refused = http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        "application/json",
        &bomb,
    );
    assert!(
        refused.starts_with("400") && refused.contains("error converting YAML to JSON"),
        "{refused}"
    );

    // A kubeconfig for a logical cluster.
    let addr = url.trim_start_matches("https://");
    let tenant = Command::new(env!("CARGO_BIN_EXE_coxswain"))
        .args(["kubeconfig", "--cluster", "t1", "--listen", addr, "--data-dir"])
        .arg(&data)
        .output()
        .expect("coxswain kubeconfig");
    assert!(tenant.status.success());
    let tenant_config = dir.path().join("t1.kubeconfig");
    std::fs::write(&tenant_config, &tenant.stdout).expect("write kubeconfig");
    let tenant_path = tenant_config.to_string_lossy().into_owned();
    let created = kubectl(
        home,
        &["--kubeconfig", &tenant_path, "create", "namespace", "only-in-t1"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let root = kubectl(home, &["--kubeconfig", &config, "get", "ns", "only-in-t1"]);
    assert!(
        stderr(&root).contains(r#"namespaces "only-in-t1" not found"#),
        "{}",
        stderr(&root)
    );

    // SIGTERM: stop accepting, finish, exit 0.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = wait_exit(&mut server, Duration::from_secs(20));
    std::mem::forget(guard);
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Kills the server this test started (by its pid) if the test fails before stopping it.
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}
