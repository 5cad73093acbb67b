//! The real Helm (built from `helm.sh/helm/v3` by `scripts/kube-binaries.sh`), with its caches
//! and configuration in a temporary directory so that nothing of the user's leaks in.

use std::process::Command;

use crate::error::{Result, TestkitError};
use crate::process::run_checked;

/// The Kubernetes version charts are rendered for: that of the `kube-apiserver` the tests run
/// (`testkit/kube-bin/go.mod`). A Helm built from its module without release flags would
/// otherwise assume 1.20.
pub const KUBE_VERSION: &str = "v1.37.2";

/// Runs `helm ARGS` and returns its stdout; fails with its stderr unless it succeeds.
pub fn helm(args: &[&str]) -> Result<String> {
    let home =
        tempfile::tempdir().map_err(|e| TestkitError::io("creating Helm's temporary home", e))?;
    let mut cmd = Command::new(crate::go_bin("helm")?);
    cmd.env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .args(args);
    let out = run_checked(&mut cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
