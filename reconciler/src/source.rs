//! Reading the configuration and the Service manifests from files, and noticing when they change.
//!
//! A [`Watcher`] turns file-system events under the given paths into a "something changed"
//! signal; bursts (editors writing via rename, Kubernetes swapping a ConfigMap's `..data`
//! symlink) are collapsed by debouncing in the controller, and everything is re-read as a whole.
//! Because a watched directory can itself be replaced, the controller also re-reads on a timer and
//! compares content hashes, so a missed event costs at most one period. The reading and
//! validating itself happens in the controller, off the async thread ([`crate::check`]).

use std::path::{Path, PathBuf};

use ferrolb_core::diag::Diagnostic;
use ferrolb_core::load::SourceFile;
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Signals changes under some paths.
pub struct Watcher {
    _inner: RecommendedWatcher,
    /// Receives one `()` per burst of events (never more than one queued).
    pub changes: mpsc::Receiver<()>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watches `paths`: a directory recursively, a file through its parent directory (so that
    /// replacing the file is seen).
    pub fn new(paths: &[PathBuf]) -> notify::Result<Watcher> {
        let (tx, rx) = mpsc::channel(1);
        let mut inner =
            notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                // A full channel already holds a pending signal: nothing is lost by dropping this one.
                let _ = tx.try_send(());
            })?;
        for p in paths {
            if p.is_dir() {
                inner.watch(p, RecursiveMode::Recursive)?;
            } else {
                let parent = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                inner.watch(parent, RecursiveMode::NonRecursive)?;
            }
        }
        Ok(Watcher {
            _inner: inner,
            changes: rx,
        })
    }
}

/// A content hash of a set of files (names and bytes), as hex.
pub fn revision(files: &[SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update((f.bytes.len() as u64).to_be_bytes());
        h.update(&f.bytes);
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first errors of a report, one per line, for logs and status.
pub fn summarize(diagnostics: &[Diagnostic], max: usize) -> String {
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.severity == ferrolb_core::diag::Severity::Error)
        .map(ToString::to_string)
        .collect();
    let mut s = errors
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if errors.len() > max {
        s.push_str(&format!("\n(and {} more)", errors.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_changes_with_content_and_names_only() {
        let f = |n: &str, b: &[u8]| SourceFile {
            name: n.into(),
            bytes: b.to_vec(),
        };
        let a = revision(&[f("a.yaml", b"x")]);
        assert_eq!(a, revision(&[f("a.yaml", b"x")]));
        assert_ne!(a, revision(&[f("a.yaml", b"y")]));
        assert_ne!(a, revision(&[f("b.yaml", b"x")]));
        assert_ne!(revision(&[f("a", b"bc")]), revision(&[f("ab", b"c")]));
    }
}
