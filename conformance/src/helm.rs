//! Running the Helm 4 binary the test command installs (`COXSWAIN_TEST_HELM`) against a test
//! server, with its own HOME so that runs share no Helm state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Helm with one kubeconfig and one home directory.
#[derive(Debug, Clone)]
pub struct Helm {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
}

impl Helm {
    /// The installed Helm; panics with the fix when `COXSWAIN_TEST_HELM` is unset.
    pub fn new(kubeconfig: &Path, home: &Path) -> Self {
        let binary = PathBuf::from(
            std::env::var("COXSWAIN_TEST_HELM")
                .expect("COXSWAIN_TEST_HELM must name helm 4 (scripts/test.sh installs it)"),
        );
        Self {
            binary,
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
        }
    }

    /// Runs helm (in the home directory) and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .current_dir(&self.home)
            .output()
            .expect("run helm")
    }

    /// Runs helm, asserts it succeeded, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "helm {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
