//! Names that carry their owner's pid, and the removal of what dead owners left behind.
//!
//! Every namespace, etcd member and temporary directory this kit creates is named
//! `flb{pid}-…` after the test process that owns it. When a test process dies without running
//! its destructors (SIGKILL, a CI timeout), the next process that starts a harness finds these
//! names, sees that the pid is gone and removes them: it kills processes left in the namespaces,
//! deletes the namespaces (which deletes their veths), kills orphaned etcd processes and removes
//! temporary directories.

use std::fs;
use std::path::Path;
use std::process::{self, Command};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use crate::error::{Result, TestkitError};
use crate::process::{Signal, pid_alive, run, run_checked, send_signal};

/// The prefix of every name this kit gives out.
pub(crate) const PREFIX: &str = "flb";

/// Where `ip netns add` puts its namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// `flb{pid}-`: the start of every name owned by this process.
pub(crate) fn own_prefix() -> String {
    format!("{PREFIX}{}-", process::id())
}

/// The owner pid of a name `flb{pid}-{rest}`, and `rest`; `None` for names not ours.
fn split_owner(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    if digits == 0 {
        return None;
    }
    let pid = rest[..digits].parse().ok()?;
    let tail = rest[digits..].strip_prefix('-')?;
    Some((pid, tail))
}

/// The owner of a lab namespace name `flb{pid}-{lab}-{host}`.
fn namespace_owner(name: &str) -> Option<u32> {
    let (pid, tail) = split_owner(name)?;
    let (lab, host) = tail.split_once('-')?;
    let lab_ok = !lab.is_empty() && lab.bytes().all(|b| b.is_ascii_digit());
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric());
    (lab_ok && host_ok).then_some(pid)
}

/// The owner of an etcd member name `flb{pid}-e{n}` or `flb{pid}-e{n}m{i}`.
fn etcd_owner(name: &str) -> Option<u32> {
    let (pid, tail) = split_owner(name)?;
    let rest = tail.strip_prefix('e')?;
    let ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'm');
    ok.then_some(pid)
}

/// The owner of a temporary directory `flb{pid}-etcd-…` or `flb{pid}-lab{n}-…`.
fn tempdir_owner(name: &str) -> Option<u32> {
    let (pid, tail) = split_owner(name)?;
    (tail.starts_with("etcd-") || tail.starts_with("lab")).then_some(pid)
}

/// Whether a thing owned by `pid` is left over: its owner is gone (and is not us).
fn is_stale(pid: u32) -> bool {
    pid != process::id() && !pid_alive(pid)
}

/// Removes everything that dead test processes left behind; see the module docs.
///
/// Returns a line per removed thing. Removal is best effort: it goes on after a failure and
/// returns the first error at the end.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut first_error = None;
    let mut note = |result: Result<()>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    for ns in list_names(Path::new(NETNS_DIR)) {
        if namespace_owner(&ns).is_some_and(is_stale) {
            note(delete_namespace(&ns));
            removed.push(format!("namespace {ns}"));
        }
    }
    for (pid, name) in etcd_processes() {
        if etcd_owner(&name).is_some_and(is_stale) {
            note(send_signal(&[pid], Signal::Kill));
            removed.push(format!("etcd {name} (pid {pid})"));
        }
    }
    let tmp = std::env::temp_dir();
    for dir in list_names(&tmp) {
        if tempdir_owner(&dir).is_some_and(is_stale) {
            let path = tmp.join(&dir);
            note(
                fs::remove_dir_all(&path)
                    .map_err(|e| TestkitError::io(format!("removing {}", path.display()), e)),
            );
            removed.push(format!("directory {}", path.display()));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Runs [`cleanup_stale`] once per process, reporting on stderr instead of failing: a leftover
/// from another run must not fail this one.
pub(crate) fn cleanup_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match cleanup_stale() {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => eprintln!("ferrolb-testkit: removed leftovers: {}", removed.join(", ")),
        Err(e) => eprintln!("ferrolb-testkit: could not remove all leftovers: {e}"),
    });
}

/// Kills every process in network namespace `ns`, then deletes it.
///
/// Deleting a namespace removes its interfaces only once no process holds it any more, so
/// processes are killed first (and again, should one have entered meanwhile, until none is left
/// or about a second has passed): a process left inside would keep the veths alive.
pub(crate) fn delete_namespace(ns: &str) -> Result<()> {
    for _ in 0..50 {
        let pids = namespace_pids(ns);
        if pids.is_empty() {
            break;
        }
        // A process may exit on its own meanwhile; the next round sees.
        let _ = send_signal(&pids, Signal::Kill);
        thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "delete", ns]);
    match run_checked(&mut cmd) {
        Ok(_) => Ok(()),
        // Someone else (a concurrent cleanup) got there first.
        Err(_) if !Path::new(NETNS_DIR).join(ns).exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The live processes in namespace `ns` (`ip netns pids`; exited ones are not listed).
fn namespace_pids(ns: &str) -> Vec<u32> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "pids", ns]);
    match run(&mut cmd) {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&pid| pid_alive(pid))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The names in directory `dir`, or none if it cannot be read.
fn list_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `(pid, --name)` of every running `etcd` process.
fn etcd_processes() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in list_names(Path::new("/proc")) {
        let Ok(pid) = entry.parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_etcd = args
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|f| f == "etcd"));
        if !is_etcd {
            continue;
        }
        if let Some(name) = args.iter().find_map(|a| a.strip_prefix("--name=")) {
            found.push((pid, name.to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_carry_their_owner() {
        assert_eq!(namespace_owner("flb4242-0-node1"), Some(4242));
        assert_eq!(namespace_owner("flb4242-12-sw"), Some(4242));
        assert_eq!(namespace_owner("flb-0-node1"), None);
        assert_eq!(namespace_owner("flb4242-x-node1"), None);
        assert_eq!(namespace_owner("flb4242-0-"), None);
        assert_eq!(namespace_owner("flb4242-0-no_de"), None);
        assert_eq!(namespace_owner("flannel-0-node1"), None);
        assert_eq!(namespace_owner("cni-1234"), None);
    }

    #[test]
    fn etcd_names_carry_their_owner() {
        assert_eq!(etcd_owner("flb77-e3"), Some(77));
        assert_eq!(etcd_owner("flb77-e3m2"), Some(77));
        assert_eq!(etcd_owner("flb77-node1"), None);
        assert_eq!(etcd_owner("default"), None);
    }

    #[test]
    fn tempdir_names_carry_their_owner() {
        assert_eq!(tempdir_owner("flb9-etcd-AbCd12"), Some(9));
        assert_eq!(tempdir_owner("flb9-lab3-AbCd12"), Some(9));
        assert_eq!(tempdir_owner("flb9-other"), None);
        assert_eq!(tempdir_owner("rustcXYZ"), None);
    }

    #[test]
    fn our_own_names_are_never_stale() {
        assert!(!is_stale(process::id()));
    }
}
