//! The pool configuration from the cluster (`--config kubernetes`): `IPAddressPool` and
//! `L2Advertisement` objects (`metallb.io/v1beta1`), watched in every namespace so that objects
//! outside `--config-namespace` are named in a warning, and validated as a set exactly like a
//! directory of files (the namespace and the object's name stand where a file's name and line
//! would). The revision of a set is its objects' resourceVersions, hashed.
//!
//! The pure half ([`PoolObject`], [`validate`], [`revision`], [`admit`]) is what the controller
//! and the admission webhook decide with; [`PoolWatch`] only keeps the caches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ferrolb_core::config::{Options, Report};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// The API group and version of the kinds read.
pub const API_VERSION: &str = "metallb.io/v1beta1";

/// The kinds read, with their resource names.
pub const KINDS: [(&str, &str); 2] = [
    ("IPAddressPool", "ipaddresspools"),
    ("L2Advertisement", "l2advertisements"),
];

/// The API resource of `kind` (one of [`KINDS`]).
pub fn resource(kind: &str, plural: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk("metallb.io", "v1beta1", kind);
    ApiResource::from_gvk_with_plural(&gvk, plural)
}

/// One object as the validator reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolObject {
    /// `IPAddressPool` or `L2Advertisement`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its resourceVersion (empty for an object not yet stored: one the webhook is asked about).
    pub resource_version: String,
    /// The document the validator reads: apiVersion, kind, name, namespace, labels and spec.
    pub document: Vec<u8>,
}

impl PoolObject {
    /// The object of `kind` as the API server gave it. Only what the validator reads is kept:
    /// the server's own metadata (managed fields, annotations) could not make it invalid.
    pub fn from_dynamic(kind: &str, o: &DynamicObject) -> PoolObject {
        let namespace = o.namespace().unwrap_or_default();
        let mut metadata = json!({"name": o.name_any(), "namespace": namespace});
        if !o.labels().is_empty() {
            metadata["labels"] = json!(o.labels());
        }
        let mut document = json!({"apiVersion": API_VERSION, "kind": kind, "metadata": metadata});
        if let Some(spec) = o.data.get("spec") {
            document["spec"] = spec.clone();
        }
        PoolObject {
            kind: kind.to_string(),
            namespace,
            name: o.name_any(),
            resource_version: o.resource_version().unwrap_or_default(),
            document: serde_json::to_vec(&document).unwrap_or_default(),
        }
    }

    fn key(&self) -> (&str, &str, &str) {
        (&self.kind, &self.namespace, &self.name)
    }
}

/// Sorts a set into the order it is validated and hashed in: by kind, namespace and name.
pub fn sort(objects: &mut [PoolObject]) {
    objects.sort_by(|a, b| a.key().cmp(&b.key()));
}

/// The revision of a (sorted) set: its objects' identities and resourceVersions, hashed.
pub fn revision(objects: &[PoolObject]) -> String {
    let mut h = Sha256::new();
    for o in objects {
        for part in [&o.kind, &o.namespace, &o.name, &o.resource_version] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Validates a (sorted) set with the rules and messages of `ferrolb validate`.
pub fn validate(objects: &[PoolObject], options: &Options) -> Report {
    ferrolb_core::config::load_objects(
        objects
            .iter()
            .map(|o| (o.namespace.as_str(), o.document.as_slice())),
        options,
    )
}

/// What the admission webhook answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Whether the change may be stored.
    pub allowed: bool,
    /// Why not: the errors the change brings, one per line, as `ferrolb validate` prints them.
    pub message: String,
    /// Warnings about the changed object (shown by kubectl), such as another namespace.
    pub warnings: Vec<String>,
}

/// Decides on creating or updating `incoming`, given the set in force: refused when the set as it
/// would be after the change has errors that the set before it does not (so a change that fixes
/// one of two broken objects is taken, and an error already in force does not block every
/// other change).
pub fn admit(current: &[PoolObject], incoming: PoolObject, options: &Options) -> Admission {
    let before = validate(current, options);
    let mut after: Vec<PoolObject> = current
        .iter()
        .filter(|o| o.key() != incoming.key())
        .cloned()
        .collect();
    after.push(incoming.clone());
    sort(&mut after);
    let after = validate(&after, options);
    let known: std::collections::HashSet<String> =
        before.errors().map(ToString::to_string).collect();
    let new: Vec<String> = after
        .errors()
        .map(ToString::to_string)
        .filter(|e| !known.contains(e))
        .collect();
    let warnings = after
        .diagnostics
        .iter()
        .filter(|d| d.severity != ferrolb_core::diag::Severity::Error)
        .filter(|d| {
            d.file == incoming.namespace && d.name.as_deref() == Some(incoming.name.as_str())
        })
        .map(ToString::to_string)
        .collect();
    Admission {
        allowed: new.is_empty(),
        message: new.join("\n"),
        warnings,
    }
}

/// One kind's cache, and whether it has been listed once.
#[derive(Clone)]
struct KindCache {
    kind: &'static str,
    store: Store<DynamicObject>,
    synced: Arc<AtomicBool>,
    /// The last watch error, until the next success.
    error: Arc<Mutex<Option<String>>>,
}

impl KindCache {
    fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Caches of the pool objects, kept by watches. Cloning shares the caches (the admission
/// webhook reads the same ones as the controller).
#[derive(Clone)]
pub struct PoolCaches {
    kinds: Vec<KindCache>,
}

impl std::fmt::Debug for PoolCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCaches").finish_non_exhaustive()
    }
}

impl PoolCaches {
    /// Every object of both kinds, sorted; or why the set is not known yet (not listed once,
    /// or the last list failed, say because the CRDs are not installed).
    pub fn objects(&self) -> Result<Vec<PoolObject>, String> {
        let mut objects = Vec::new();
        for k in &self.kinds {
            if !k.synced.load(Ordering::Acquire) {
                let why = k.error().unwrap_or_else(|| "not listed yet".into());
                return Err(format!("cannot list {}s: {why}", k.kind));
            }
            objects.extend(
                k.store
                    .state()
                    .iter()
                    .map(|o| PoolObject::from_dynamic(k.kind, o)),
            );
        }
        sort(&mut objects);
        Ok(objects)
    }
}

/// The watches on the pool objects.
pub struct PoolWatch {
    /// The caches they keep.
    pub caches: PoolCaches,
    /// One `()` per burst of changes (and per watch error).
    pub changes: mpsc::Receiver<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PoolWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolWatch").finish_non_exhaustive()
    }
}

impl Drop for PoolWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PoolWatch {
    /// Starts watching both kinds in every namespace.
    pub fn start(client: &Client) -> PoolWatch {
        let (tx, changes) = mpsc::channel(1);
        let mut kinds = Vec::new();
        let mut tasks = Vec::new();
        for (kind, plural) in KINDS {
            let (cache, task) = watch_kind(client, kind, plural, tx.clone());
            kinds.push(cache);
            tasks.push(task);
        }
        PoolWatch {
            caches: PoolCaches { kinds },
            changes,
            tasks,
        }
    }
}

fn watch_kind(
    client: &Client,
    kind: &'static str,
    plural: &'static str,
    tx: mpsc::Sender<()>,
) -> (KindCache, JoinHandle<()>) {
    let ar = resource(kind, plural);
    let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
    let writer = reflector::store::Writer::<DynamicObject>::new(ar);
    let cache = KindCache {
        kind,
        store: writer.as_reader(),
        synced: Arc::new(AtomicBool::new(false)),
        error: Arc::new(Mutex::new(None)),
    };
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let state = cache.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let mut error = state
                .error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match ev {
                Ok(ev) => {
                    if matches!(ev, watcher::Event::InitDone) {
                        state.synced.store(true, Ordering::Release);
                    }
                    *error = None;
                }
                Err(e) => {
                    let text = describe(&e, plural);
                    if error.as_deref() != Some(text.as_str()) {
                        warn!(kind, error = %text, "watch error; retrying");
                    }
                    *error = Some(text);
                }
            }
            drop(error);
            let _ = tx.try_send(());
        }
    });
    (cache, task)
}

/// A watch error in words; a missing CRD says how to install it.
fn describe(e: &watcher::Error, plural: &str) -> String {
    let missing = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 404,
        _ => false,
    };
    if missing {
        format!(
            "the API server does not serve {plural}.metallb.io: install the CRDs (kubectl apply -f deploy/crds/)"
        )
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, ns: &str, name: &str, rv: &str, spec: serde_json::Value) -> PoolObject {
        let ar = resource(kind, "x");
        let mut o = DynamicObject::new(name, &ar).within(ns);
        o.metadata.resource_version = Some(rv.into());
        o.data = json!({ "spec": spec });
        PoolObject::from_dynamic(kind, &o)
    }

    fn pool(name: &str, range: &str) -> PoolObject {
        object(
            "IPAddressPool",
            "metallb-system",
            name,
            "1",
            json!({"addresses": [range]}),
        )
    }

    fn ad() -> PoolObject {
        object("L2Advertisement", "metallb-system", "all", "1", json!({}))
    }

    #[test]
    fn the_revision_follows_resource_versions_and_identities() {
        let a = revision(&[pool("a", "10.250.0.0/24")]);
        assert_eq!(a, revision(&[pool("a", "10.250.0.0/24")]));
        let mut changed = pool("a", "10.250.0.0/24");
        changed.resource_version = "2".into();
        assert_ne!(a, revision(&[changed]));
        assert_ne!(a, revision(&[pool("b", "10.250.0.0/24")]));
    }

    #[test]
    fn a_set_validates_like_files_naming_namespace_and_object() {
        let mut set = vec![ad(), pool("a", "10.250.0.0/24"), pool("b", "10.250.0.9/32")];
        sort(&mut set);
        let report = validate(&set, &Options::default());
        let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                r#"metallb-system: error: IPAddressPool "b": address range 10.250.0.9/32 overlaps 10.250.0.0/24 of IPAddressPool "a" (metallb-system)"#
            ]
        );
        assert!(report.config.is_none());
    }

    #[test]
    fn a_change_that_brings_an_error_is_refused_with_the_message() {
        let current = vec![pool("a", "10.250.0.0/24"), ad()];
        let options = Options::default();
        let refused = admit(&current, pool("b", "10.250.0.128/25"), &options);
        assert!(!refused.allowed);
        assert!(
            refused
                .message
                .contains(r#"IPAddressPool "b": address range 10.250.0.128/25 overlaps"#),
            "{}",
            refused.message
        );
        let taken = admit(&current, pool("b", "10.250.1.0/24"), &options);
        assert_eq!(
            taken,
            Admission {
                allowed: true,
                message: String::new(),
                warnings: vec![]
            }
        );
        // An update of the same object replaces it rather than overlapping with itself.
        assert!(admit(&current, pool("a", "10.250.0.0/23"), &options).allowed);
    }

    #[test]
    fn an_error_already_in_force_blocks_only_changes_that_add_errors() {
        let broken = vec![pool("a", "10.250.0.0/24"), pool("b", "10.250.0.1/32"), ad()];
        let options = Options::default();
        assert!(admit(&broken, pool("c", "10.250.2.0/24"), &options).allowed);
        // Fixing the broken object is taken.
        assert!(admit(&broken, pool("b", "10.250.3.1/32"), &options).allowed);
        assert!(!admit(&broken, pool("c", "10.250.0.7/32"), &options).allowed);
    }

    #[test]
    fn an_object_of_another_namespace_is_taken_with_a_warning_naming_it() {
        let options = Options {
            namespace: Some("metallb-system".into()),
        };
        let current = vec![pool("a", "10.250.0.0/24"), ad()];
        let elsewhere = object(
            "IPAddressPool",
            "default",
            "stray",
            "",
            json!({"addresses": ["10.250.9.0/24"]}),
        );
        let answer = admit(&current, elsewhere, &options);
        assert!(answer.allowed, "{answer:?}");
        assert_eq!(answer.warnings.len(), 1, "{answer:?}");
        assert!(answer.warnings[0].starts_with(r#"default: warning: IPAddressPool "stray""#));
    }
}
