//! [`FakeApiServer`]: the server thread, its kubeconfig, and the controls tests drive it with.

use std::ffi::OsStr;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::faults::{Faults, Matcher, RequestLog, RequestRecord};
use super::handlers::{self, App};
use super::resources::{self, RESOURCES, ResourceType};
use super::selector::Filter;
use super::status::StatusError;
use super::store::Store;
use crate::error::{Result, TestkitError};
use crate::process::run_checked;
use crate::stale::{cleanup_stale_once, own_prefix};

/// The names in the kubeconfig (cluster, user and context).
const CONFIG_NAME: &str = "ferrolb-fake";
/// The bearer token the kubeconfig's user presents (the server accepts anything).
const TOKEN: &str = "ferrolb-fake-token";

/// An in-memory Kubernetes API server on a free port of 127.0.0.1, plain HTTP, served by its
/// own thread with its own tokio runtime.
///
/// Dropping it stops the thread (open connections and watches are cut) and removes its
/// temporary directory with the kubeconfig. The test controls ([`create`](Self::create),
/// [`fail_next`](Self::fail_next), ...) may be called from any thread while clients use it;
/// they act on the store directly, so they are neither logged nor counted as writes.
///
/// Resource names given to the controls are plurals (`services`), qualified plurals
/// (`events.events.k8s.io`), singulars, short names or kinds; a bare `events` means the core
/// group's. The controls panic on a name the server does not serve: a typo must not read as
/// "no writes happened".
#[derive(Debug)]
pub struct FakeApiServer {
    url: String,
    port: u16,
    app: Arc<App>,
    kubeconfig: PathBuf,
    /// Holds the kubeconfig and kubectl's cache.
    dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts a server with the namespaces every cluster has (`default`, `kube-system`,
    /// `kube-public`, `kube-node-lease`) and nothing else.
    pub fn start() -> Result<FakeApiServer> {
        cleanup_stale_once();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| TestkitError::io("binding the fake API server's port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading the fake API server's port", e))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| TestkitError::io("configuring the fake API server's socket", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestkitError::io("building the fake API server's runtime", e))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| TestkitError::io("registering the fake API server's socket", e))?
        };
        let app = Arc::new(App {
            store: Store::new(),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog::default()),
            port,
        });
        let router = Router::new()
            .fallback(handlers::handle)
            .with_state(app.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("fake-apiserver-{port}"))
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        result = axum::serve(listener, router) => {
                            if let Err(e) = result {
                                eprintln!("ferrolb-testkit: fake API server stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels the connections and watches.
            })
            .map_err(|e| TestkitError::io("starting the fake API server's thread", e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}kubeapi-", own_prefix()))
            .tempdir()
            .map_err(|e| TestkitError::io("creating the fake API server's directory", e))?;
        let url = format!("http://127.0.0.1:{port}");
        let kubeconfig = dir.path().join("kubeconfig");
        fs::write(&kubeconfig, kubeconfig_text(&url))
            .map_err(|e| TestkitError::io(format!("writing {}", kubeconfig.display()), e))?;
        Ok(FakeApiServer {
            url,
            port,
            app,
            kubeconfig,
            dir,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:{port}`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A kubeconfig file for this server (cluster, user with a dummy token, context and
    /// `current-context`, default namespace `default`), for `kubectl --kubeconfig`,
    /// `KUBECONFIG=` and `kube::Config::from_custom_kubeconfig`. It lives as long as the server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// Runs `kubectl` against this server (with its kubeconfig, and a discovery cache of its
    /// own) and returns what it printed on stdout; fails with its stderr unless it succeeds.
    pub fn kubectl<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = run_checked(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(self.dir.path().join("kube-cache"))
                .args(args),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates an object as given, from its `apiVersion`, `kind` and `metadata` (a namespaced
    /// object without a namespace goes to `default`). Unlike a `POST`, a Service keeps the
    /// `status` it comes with. Returns the stored object; `409 AlreadyExists` if it exists.
    pub fn create(&self, object: Value) -> Result<Value, StatusError> {
        self.app.store.create_given(object)
    }

    /// Creates the object, or replaces it whole (status included, no resource version check;
    /// `uid` and `creationTimestamp` carry over). A replacement that changes nothing keeps the
    /// resource version and notifies no watch, as the real server does.
    pub fn upsert(&self, object: Value) -> Result<Value, StatusError> {
        self.app.store.upsert(object)
    }

    /// The stored object, if any. `namespace` is ignored for cluster-scoped types, and `None`
    /// means `default` for namespaced ones (so does it for [`delete`](Self::delete)).
    ///
    /// # Panics
    ///
    /// If the server does not serve `resource`.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.app.store.get(resource_type(resource), namespace, name)
    }

    /// Removes an object at once, whatever its finalizers (a `DELETED` event for watches), and
    /// returns it; deleting a namespace removes its objects too.
    ///
    /// # Panics
    ///
    /// If the server does not serve `resource`.
    pub fn delete(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.app
            .store
            .remove(resource_type(resource), namespace, name)
    }

    /// Every object of a type, in all namespaces, ordered by namespace and name.
    ///
    /// # Panics
    ///
    /// If the server does not serve `resource`.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        self.app
            .store
            .list(resource_type(resource), &Filter::default())
            .0
    }

    /// Every Event, of both APIs: core `v1` first, then `events.k8s.io/v1` (which kube's
    /// `Recorder` writes).
    pub fn events(&self) -> Vec<Value> {
        RESOURCES
            .iter()
            .filter(|r| r.kind == "Event")
            .flat_map(|r| self.app.store.list(r, &Filter::default()).0)
            .collect()
    }

    /// The last resource version handed out.
    pub fn resource_version(&self) -> u64 {
        self.app.store.resource_version()
    }

    /// Drops the watch history, as an etcd compaction does: a watch (or an `Exact` list) from
    /// an older resource version gets `410 Expired`, and every open watch ends with an `ERROR`
    /// event carrying that `410`, so clients re-list.
    pub fn compact(&self) {
        self.app.store.compact();
    }

    /// Ends every open watch stream without an error, as a dropped connection would; clients
    /// watch again from their last resource version.
    pub fn close_watches(&self) {
        self.app.store.close_watches();
    }

    /// The recent requests (up to 10,000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.app.log().records()
    }

    /// How many `POST`, `PUT`, `PATCH` and `DELETE` requests on `resource` succeeded:
    /// `subresource` `None` counts writes to the objects themselves, `Some("status")` writes to
    /// their status. Injected failures and test controls do not count.
    ///
    /// # Panics
    ///
    /// If the server does not serve `resource`.
    pub fn writes(&self, resource: &str, subresource: Option<&str>) -> usize {
        self.app
            .log()
            .writes(&resource_type(resource).qualified(), subresource)
    }

    /// How many write requests succeeded, on any resource and subresource.
    pub fn total_writes(&self) -> usize {
        self.app.log().total_writes()
    }

    /// Forgets the logged requests and zeroes the write counters (for "nothing written after
    /// this point" assertions).
    pub fn clear_requests(&self) {
        self.app.log().clear();
    }

    /// Makes the next `count` requests that `matcher` selects fail with `status` and a `Status`
    /// body whose reason fits the code (`500` InternalError, `409` Conflict, `429`
    /// TooManyRequests with `Retry-After: 1`, `503` ServiceUnavailable, `504` Timeout, ...),
    /// without executing them. Later requests succeed again.
    pub fn fail_next(&self, matcher: Matcher, status: u16, count: usize) {
        self.app.faults().fail(matcher, status, count);
    }

    /// Holds every request `matcher` selects for `duration` before it is executed (a client
    /// that gives up first leaves it unexecuted), until [`clear_faults`](Self::clear_faults).
    pub fn delay(&self, matcher: Matcher, duration: Duration) {
        self.app.faults().delay(matcher, duration);
    }

    /// Disarms every injected failure and delay.
    pub fn clear_faults(&self) {
        self.app.faults().clear();
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The served type a test names.
fn resource_type(name: &str) -> &'static ResourceType {
    match resources::by_name(name) {
        Some(rt) => rt,
        None => panic!(
            "the fake API server does not serve {name:?}; it serves {}",
            RESOURCES
                .iter()
                .map(|r| r.qualified())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONFIG_NAME}
  cluster:
    server: {url}
users:
- name: {CONFIG_NAME}
  user:
    token: {TOKEN}
contexts:
- name: {CONFIG_NAME}
  context:
    cluster: {CONFIG_NAME}
    user: {CONFIG_NAME}
    namespace: default
current-context: {CONFIG_NAME}
preferences: {{}}
"
    )
}
