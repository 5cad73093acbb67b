//! Fault injection (failed and delayed requests) and the request log with its write counters.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::status::StatusError;

/// Selects requests by method and by a substring of the path with its query.
///
/// ```
/// use ferrolb_testkit::kubeapi::Matcher;
///
/// let status_patches = Matcher::new("PATCH", "/status");
/// let service_watches = Matcher::any().method("GET").path("/services?").path("watch=true");
/// # let _ = (status_patches, service_watches);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    method: Option<String>,
    paths: Vec<String>,
}

impl Matcher {
    /// Every request.
    pub fn any() -> Matcher {
        Matcher::default()
    }

    /// Requests with `method` (`"PATCH"`, case-insensitive) whose path and query contain
    /// `path_contains`.
    pub fn new(method: &str, path_contains: &str) -> Matcher {
        Matcher::any().method(method).path(path_contains)
    }

    /// Also requires the HTTP method, case-insensitively.
    pub fn method(mut self, method: &str) -> Matcher {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Also requires `contains` in the path and query (`/api/v1/namespaces/a/services/b/status`,
    /// `...?watch=true&...`); several calls require each.
    pub fn path(mut self, contains: &str) -> Matcher {
        self.paths.push(contains.to_string());
        self
    }

    /// Whether a request with `method` and `target` (path, then `?query` if any) matches.
    pub(crate) fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.paths.iter().all(|p| target.contains(p.as_str()))
    }
}

/// The faults currently armed.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Each with the code to answer and how many more requests to fail.
    failures: Vec<(Matcher, u16, usize)>,
    delays: Vec<(Matcher, Duration)>,
}

impl Faults {
    /// Arms `count` failures with `code` for matching requests.
    pub fn fail(&mut self, matcher: Matcher, code: u16, count: usize) {
        if count > 0 {
            self.failures.push((matcher, code, count));
        }
    }

    /// Delays every matching request by `duration`.
    pub fn delay(&mut self, matcher: Matcher, duration: Duration) {
        self.delays.push((matcher, duration));
    }

    /// Disarms everything.
    pub fn clear(&mut self) {
        self.failures.clear();
        self.delays.clear();
    }

    /// The longest delay for this request, if any.
    pub fn delay_for(&self, method: &str, target: &str) -> Option<Duration> {
        self.delays
            .iter()
            .filter(|(m, _)| m.matches(method, target))
            .map(|(_, d)| *d)
            .max()
    }

    /// Takes one armed failure for this request (the oldest that matches), if any.
    pub fn take_failure(&mut self, method: &str, target: &str) -> Option<StatusError> {
        let index = self
            .failures
            .iter()
            .position(|(m, _, _)| m.matches(method, target))?;
        let (_, code, count) = &mut self.failures[index];
        let code = *code;
        *count -= 1;
        if *count == 0 {
            self.failures.remove(index);
        }
        Some(StatusError::for_code(
            code,
            format!("injected failure for {method} {target}"),
        ))
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The HTTP method (`GET`, `PATCH`, ...).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (empty if none).
    pub query: String,
    /// The HTTP status code of the answer (`200` for a watch that started).
    pub status: u16,
    /// The resource addressed, as `services` or `events.events.k8s.io`; `None` for discovery.
    pub resource: Option<String>,
    /// The subresource addressed (`status`), if any.
    pub subresource: Option<String>,
    /// Whether the answer was an injected failure ([`FakeApiServer::fail_next`]).
    ///
    /// [`FakeApiServer::fail_next`]: super::FakeApiServer::fail_next
    pub injected: bool,
}

impl RequestRecord {
    /// Whether the request was a write: `POST`, `PUT`, `PATCH` or `DELETE`.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// Whether the answer was a success (2xx).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How many records the log keeps; the write counters count on past that.
const MAX_RECORDS: usize = 10_000;

/// The recent requests and the counts of successful writes.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
    /// Successful writes by (resource, subresource).
    writes: HashMap<(String, Option<String>), usize>,
}

impl RequestLog {
    /// Records an answered request.
    pub fn record(&mut self, record: RequestRecord) {
        if record.is_write()
            && record.succeeded()
            && let Some(resource) = &record.resource
        {
            *self
                .writes
                .entry((resource.clone(), record.subresource.clone()))
                .or_default() += 1;
        }
        self.records.push_back(record);
        while self.records.len() > MAX_RECORDS {
            self.records.pop_front();
        }
    }

    /// The recent requests, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }

    /// Successful writes of `resource` (qualified name) and `subresource`.
    pub fn writes(&self, resource: &str, subresource: Option<&str>) -> usize {
        self.writes
            .get(&(resource.to_string(), subresource.map(str::to_string)))
            .copied()
            .unwrap_or(0)
    }

    /// Successful writes of anything.
    pub fn total_writes(&self) -> usize {
        self.writes.values().sum()
    }

    /// Forgets the records and zeroes the counters.
    pub fn clear(&mut self) {
        self.records.clear();
        self.writes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_taken_count_times_then_disarmed() {
        let mut faults = Faults::default();
        faults.fail(Matcher::new("patch", "/status"), 409, 2);
        assert!(faults.take_failure("GET", "/a/status").is_none());
        assert!(faults.take_failure("PATCH", "/a").is_none());
        let error = faults.take_failure("PATCH", "/a/status").expect("first");
        assert_eq!((error.code, error.reason.as_str()), (409, "Conflict"));
        assert!(faults.take_failure("PATCH", "/b/status").is_some());
        assert!(faults.take_failure("PATCH", "/b/status").is_none());
    }

    #[test]
    fn matchers_require_every_path_substring() {
        let m = Matcher::any().path("/services").path("watch=true");
        assert!(m.matches("GET", "/api/v1/services?watch=true"));
        assert!(!m.matches("GET", "/api/v1/services"));
    }
}
