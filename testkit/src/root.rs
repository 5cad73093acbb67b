//! Tests that need root fail loudly without it, unless skipping was asked for.

use std::fs;

/// The environment variable that turns "needs root" failures into skips.
pub const SKIP_ROOT_TESTS_VAR: &str = "FERROLB_SKIP_ROOT_TESTS";

/// Whether this process runs with effective uid 0 (read from `/proc/self/status`).
pub fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}

/// Decides whether a test that needs root may run: `true` when running as root.
///
/// Without root, it prints a skip notice and returns `false` when
/// `FERROLB_SKIP_ROOT_TESTS=1` is set, so the test can return early; otherwise it panics, so a
/// test that needs root never passes silently. CI runs as root, so there these tests always run.
/// Most tests use the [`require_root!`](crate::require_root!) macro, which returns for them.
///
/// # Panics
///
/// When not root and `FERROLB_SKIP_ROOT_TESTS` is not `1`.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    if std::env::var(SKIP_ROOT_TESTS_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: needs root ({SKIP_ROOT_TESTS_VAR}=1 is set)");
        return false;
    }
    panic!(
        "{test} needs root (it creates network namespaces); run it as root, \
         or set {SKIP_ROOT_TESTS_VAR}=1 to skip it"
    );
}

/// Returns from the calling test unless it runs as root; see [`require_root()`].
///
/// `require_root!()` for tests returning `()`, `require_root!(value)` to return `value` (for
/// example `Ok(())`) from tests returning a `Result`.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
    ($skipped:expr) => {
        if !$crate::require_root() {
            return $skipped;
        }
    };
}
