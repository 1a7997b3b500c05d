//! Driving real `kubectl` binaries against a Coxswain server started in the test process: the
//! server (on 127.0.0.1:0, SQLite or PostgreSQL), and a `Kubectl` runner that asserts on exit
//! codes and output.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use coxswain_apiserver::{RunningServer, ServerConfig};

/// How long one kubectl invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A server for one test, with its data dir.
#[derive(Debug)]
pub struct TestServer {
    pub server: RunningServer,
    pub data_dir: PathBuf,
    pub storage: String,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on `storage` (`sqlite` or a postgres:// URL) with a fresh data dir.
    pub async fn start(storage: &str) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().to_path_buf();
        let server = Self::launch(storage, &data_dir, "127.0.0.1:0".parse().expect("addr")).await;
        Self {
            server,
            data_dir,
            storage: storage.to_string(),
            _temp: Some(temp),
        }
    }

    async fn launch(storage: &str, data_dir: &Path, listen: std::net::SocketAddr) -> RunningServer {
        coxswain_apiserver::start(ServerConfig {
            data_dir: data_dir.to_path_buf(),
            listen,
            storage: storage.to_string(),
            token_auth_file: None,
            service_network: Default::default(),
        })
        .await
        .expect("start the server")
    }

    /// Stops the server and starts it again on the same data dir and port.
    pub async fn restart(self) -> Self {
        let addr = self.server.addr;
        self.server.shutdown().await;
        let server = Self::launch(&self.storage, &self.data_dir, addr).await;
        Self { server, ..self }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.server.kubeconfig.clone()
    }

    /// Writes a kubeconfig for a logical cluster next to the admin one.
    pub fn cluster_kubeconfig(&self, cluster: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.kubeconfig()).expect("read kubeconfig");
        let server_line = text
            .lines()
            .find(|l| l.trim_start().starts_with("server:"))
            .expect("server line")
            .to_string();
        let url = server_line
            .trim()
            .trim_start_matches("server:")
            .trim()
            .to_string();
        let path = self.data_dir.join(format!("{cluster}.kubeconfig"));
        std::fs::write(&path, text.replace(&url, &format!("{url}/clusters/{cluster}")))
            .expect("write kubeconfig");
        path
    }
}

/// One kubectl binary with one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    /// Holds kubectl's discovery cache, so that versions do not share it.
    pub home: PathBuf,
}

impl Kubectl {
    pub fn new(binary: &Path, kubeconfig: &Path, home: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl with one more environment variable (such as `KUBE_EDITOR`).
    pub async fn command_with_env(&self, args: &[&str], name: &str, value: &str) -> Output {
        let child = self
            .command(args)
            .env(name, value)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
            .expect("kubectl output")
    }

    /// Runs kubectl with `stdin` fed in.
    pub async fn run_with_input(&self, args: &[&str], stdin: &str) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).await.expect("write stdin");
        }
        tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
            .expect("kubectl output")
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, "").await
    }

    /// Runs kubectl, asserts it succeeded, returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, "").await
    }

    pub async fn ok_with_input(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run_with_input(args, stdin).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs kubectl, asserts it failed, returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        self.fails_with_input(args, "").await
    }

    pub async fn fails_with_input(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run_with_input(args, stdin).await;
        assert!(
            !output.status.success(),
            "kubectl {args:?} succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Starts a long-running kubectl (such as `get -w`) whose stdout is collected.
    pub fn spawn(&self, args: &[&str]) -> Streamed {
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("piped stdout");
        Streamed {
            child,
            stdout,
            seen: String::new(),
        }
    }
}

/// A running kubectl and everything it has printed so far.
#[derive(Debug)]
pub struct Streamed {
    child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    pub seen: String,
}

impl Streamed {
    /// Reads until `done` holds for everything printed so far; fails the test at the deadline.
    pub async fn until(&mut self, deadline: Duration, done: impl Fn(&str) -> bool) -> &str {
        use tokio::io::AsyncReadExt;
        let started = Instant::now();
        let mut buffer = [0u8; 4096];
        while !done(&self.seen) {
            let left = deadline.saturating_sub(started.elapsed());
            assert!(!left.is_zero(), "timed out; output so far:\n{}", self.seen);
            match tokio::time::timeout(left, self.stdout.read(&mut buffer)).await {
                Ok(Ok(0)) => panic!("kubectl exited; output:\n{}", self.seen),
                Ok(Ok(n)) => self.seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Ok(Err(err)) => panic!("reading kubectl output: {err}"),
                Err(_) => panic!("timed out; output so far:\n{}", self.seen),
            }
        }
        &self.seen
    }

    /// Kills the process (by its handle) and waits for it.
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        self.seen
    }
}

/// The kubectl binaries to test with: `COXSWAIN_TEST_KUBECTL` (kubectl 1.35, installed by the test
/// command) and `/usr/bin/kubectl` (the 1.32 dispatcher) when present.
pub fn kubectl_binaries() -> Vec<PathBuf> {
    let mut binaries = Vec::new();
    if let Ok(path) = std::env::var("COXSWAIN_TEST_KUBECTL") {
        binaries.push(PathBuf::from(path));
    }
    let dispatcher = PathBuf::from("/usr/bin/kubectl");
    if dispatcher.exists() {
        binaries.push(dispatcher);
    }
    assert!(
        !binaries.is_empty(),
        "no kubectl: set COXSWAIN_TEST_KUBECTL (scripts/test.sh installs kubectl 1.35)"
    );
    binaries
}
