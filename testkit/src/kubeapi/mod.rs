//! A fake Kubernetes API server, in memory, for tests of code that uses the `kube` client and
//! for `kubectl`.
//!
//! No real API server can run on the test machines, so [`FakeApiServer`] speaks enough of the
//! API over plain HTTP on 127.0.0.1 that kube's `Api`, `watcher`/reflector and `Recorder`, and
//! `kubectl get`, work against it unchanged:
//!
//! ```text
//!   kube::Client ─┐                 ┌── handlers: routing, faults, verbs, request log
//!   kubectl ──────┼── HTTP/1.1 ──►  ├── discovery: /version /api /apis /api/v1 ...
//!   curl ─────────┘   (own thread,  ├── watch: JSON lines, bookmarks, 410 Expired
//!                     own runtime)  └── store: objects, resource versions, history ──► watches
//!   test code ── controls (create, get, compact, fail_next, writes, ...) ──┘
//! ```
//!
//! Served: core `v1` `namespaces`, `nodes`, `services` (each with `status`) and `events`;
//! `discovery.k8s.io/v1` `endpointslices`; `events.k8s.io/v1` `events` (what kube's `Recorder`
//! writes: a `POST`, then merge patches as an event repeats).
//!
//! # Faithful
//!
//! - Paths, scopes, discovery documents (`kubectl api-resources` works, `svc` and the other
//!   short names too), `Status` errors with the real reasons, codes and messages
//!   (`NotFound`, `AlreadyExists`, `Conflict`, `Expired`, `Invalid`, `BadRequest`,
//!   `MethodNotAllowed`, `UnsupportedMediaType`).
//! - One global resource version; `uid`, `creationTimestamp` (kept if given), `generation`
//!   (bumped when anything but metadata and status changes), `managedFields` entries per
//!   manager (`fieldManager`, or the user agent up to its first `/`).
//! - Verbs: list (label and field selectors, `limit`/`continue`), get, create (`generateName`),
//!   update with the `resourceVersion` precondition (`409 Conflict`), delete (with
//!   preconditions; with finalizers only a `deletionTimestamp`, until an update empties them),
//!   patch as merge patch, strategic merge patch, JSON patch and server-side apply (JSON or
//!   YAML), `dryRun=All`. Writes to `/status` change only `.status`; writes to a type with a
//!   status subresource keep its `.status`; a create drops a Service's status. A write that
//!   changes nothing keeps the resource version and notifies no one.
//! - Service defaults: a cluster IP from 10.96.0.0/12, node ports from 30000–32767 for
//!   NodePort and LoadBalancer Services, `targetPort`, protocol and policies, an empty
//!   `status.loadBalancer`; allocated values carry over when an update leaves them out.
//! - Watches: from a resource version (replayed from the history, then live) or from "now"
//!   (synthetic `ADDED` events first), `sendInitialEvents` with the `initial-events-end`
//!   bookmark, selectors (an object leaving the selection is a `DELETED`), bookmarks,
//!   `timeoutSeconds`, and `ERROR` with `410 Expired` for a compacted resource version.
//! - `Table` answers for kubectl's human output (`kubectl get svc` shows NAME, TYPE,
//!   CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE).
//!
//! # Simplified
//!
//! - No authentication or authorization: any token, or none, may do anything.
//! - No validation beyond names, namespaces, `apiVersion` and `kind`: any JSON is stored.
//!   Namespaces need not exist for objects to be created in them; deleting a namespace
//!   removes its objects at once (no `Terminating` phase).
//! - Server-side apply merges the applied fields into the object like a JSON merge patch:
//!   no field ownership, no conflicts, no removal of fields a manager stops applying, lists
//!   replaced whole; strategic merge patch is a merge patch too (lists replaced, `$`
//!   directives dropped).
//! - Lists are always current: `resourceVersion` and `resourceVersionMatch=NotOlderThan` are
//!   accepted and ignored (`Exact` from a compacted version is `410`), and pages after the
//!   first read the current state, not a snapshot.
//! - Bookmarks every second (real servers: about a minute). [`FakeApiServer::compact`] ends
//!   every open watch with a `410` (real servers end only those that fell behind). History
//!   holds the last 10,000 changes; a watch that falls 16,384 notices behind ends with `410`.
//! - No protobuf, no aggregated discovery (clients fall back to the legacy documents), no
//!   OpenAPI documents (`/openapi/v2` and `/openapi/v3` are `404`, which `kubectl get` does
//!   not need), no `deletecollection`, no `/scale`, no admission, no garbage collection by
//!   owner references. So `kubectl apply -f`/`create -f` need `--validate=false`, and kubectl's
//!   typed generators (`kubectl create namespace x`), which send protobuf, get
//!   `415 UnsupportedMediaType`.
//! - Cluster IPs and node ports are never reused after a deletion.
//!
//! # Example
//!
//! ```no_run
//! use ferrolb_testkit::kubeapi::{FakeApiServer, Matcher};
//! use serde_json::json;
//!
//! let server = FakeApiServer::start().expect("fake API server");
//! server
//!     .create(json!({"apiVersion": "v1", "kind": "Service",
//!         "metadata": {"name": "web", "namespace": "default"},
//!         "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}))
//!     .expect("create");
//! // The first status write fails with 500, as an overloaded server would answer.
//! server.fail_next(Matcher::new("PATCH", "/status"), 500, 1);
//! // ... run the reconciler with `KUBECONFIG=server.kubeconfig()` ...
//! assert!(server.writes("services", Some("status")) <= 2);
//! let ip = server
//!     .kubectl(["get", "svc", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"])
//!     .expect("kubectl");
//! # let _ = ip;
//! ```

mod defaults;
mod discovery;
mod faults;
mod handlers;
mod meta;
mod patch;
mod resources;
mod selector;
mod server;
mod status;
mod store;
mod table;
mod watch;

pub use faults::{Matcher, RequestRecord};
pub use server::FakeApiServer;
pub use status::StatusError;
