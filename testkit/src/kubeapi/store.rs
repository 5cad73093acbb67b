//! The object store: every object by type, namespace and name, one global resource version,
//! and a bounded history of changes that watches replay and follow.
//!
//! All writes go through [`Store`] under one lock, so resource versions are handed out in order
//! and each change is broadcast to the open watches while the lock is held: a watch that
//! subscribes under the same lock sees every later change exactly once.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::defaults::{self, Allocator};
use super::meta::{
    check_type, meta_str, name_mismatch, now, record_manager, set_field, set_meta, set_namespace,
    spec_of, type_of, without_bookkeeping,
};
use super::patch::{self, PatchType};
use super::resources::{RESOURCES, ResourceType};
use super::selector::Filter;
use super::status::StatusError;

/// How many changes the history keeps; older ones are compacted away.
const MAX_HISTORY: usize = 10_000;
/// How many notices an open watch may fall behind before it is expired.
const BROADCAST_CAPACITY: usize = 16_384;
/// Namespaces every cluster has.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// Created.
    Added,
    /// Updated (including a deletion that waits for finalizers).
    Modified,
    /// Removed.
    Deleted,
}

/// One change, as the history keeps it and watches see it.
#[derive(Debug)]
pub(crate) struct Change {
    /// The resource version of the change (the object's new one).
    pub rv: u64,
    /// The object's type.
    pub resource: &'static ResourceType,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (for deletions, its last state with the deletion's version).
    pub object: Value,
    /// The object before the change, for modifications: a watch with a selector needs it to
    /// tell an object that stops matching (a `DELETED` for that watch) from one that starts.
    pub prev: Option<Value>,
}

/// What open watches are told.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// A change of some object (of any type; each watch filters).
    Change(Arc<Change>),
    /// The history was compacted: watches end with a `410 Expired` error.
    Expire {
        /// The oldest resource version still served.
        oldest: u64,
    },
    /// Watches end without an error, as when a connection drops.
    Close,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// `resourceVersion` unset or `0`: synthetic `ADDED` events for the current objects first.
    Current,
    /// After this resource version: the history's later changes first.
    After(u64),
}

/// An open watch's start: what to send first, and the channel of later notices.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// Changes to send before the live ones.
    pub initial: Vec<Arc<Change>>,
    /// Notices after `rv`.
    pub receiver: broadcast::Receiver<Notice>,
    /// The global resource version when the watch started.
    pub rv: u64,
}

/// Who is writing, and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOptions {
    /// The field manager recorded in `metadata.managedFields`; `None` records nothing.
    pub manager: Option<String>,
    /// A server-side apply (recorded as operation `Apply`).
    pub apply: bool,
    /// `dryRun=All`: validate and compute, but store nothing.
    pub dry_run: bool,
    /// A test control (not an HTTP client): the object is stored as given (a Service keeps the
    /// status it comes with).
    pub test: bool,
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object (its `.status` is kept for types with a status subresource).
    Main,
    /// The `status` subresource: only `.status` changes.
    Status,
}

impl Part {
    /// `status` for the status subresource.
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Part::Main => None,
            Part::Status => Some("status"),
        }
    }
}

/// The objects, their versions and history.
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The last resource version handed out.
    rv: u64,
    /// Per type (index in [`RESOURCES`]), the objects by (namespace or "", name).
    objects: Vec<BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Change>>,
    /// The newest resource version no longer in the history: a watch from an older one expires.
    compacted: u64,
    alloc: Allocator,
    /// Where changes and other notices go to the open watches.
    notices: broadcast::Sender<Notice>,
    /// Seeds uids and generated names.
    random: RandomState,
    counter: u64,
}

type Key = (String, String);

impl Store {
    /// A store holding the namespaces every cluster has.
    pub fn new() -> Store {
        let (notices, _) = broadcast::channel(BROADCAST_CAPACITY);
        let store = Store {
            state: Mutex::new(State {
                rv: 0,
                objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
                history: VecDeque::new(),
                compacted: 0,
                alloc: Allocator::default(),
                notices: notices.clone(),
                random: RandomState::new(),
                counter: 0,
            }),
        };
        for name in INITIAL_NAMESPACES {
            let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}});
            if let Err(e) = store.upsert(namespace) {
                eprintln!("ferrolb-testkit: fake API server: cannot create namespace {name}: {e}");
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last resource version handed out.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The newest resource version that was compacted away (0 if none).
    pub fn compacted(&self) -> u64 {
        self.lock().compacted
    }

    /// One object.
    pub fn get(&self, rt: &'static ResourceType, ns: Option<&str>, name: &str) -> Option<Value> {
        self.lock().objects[rt.index()]
            .get(&key(rt, ns, name))
            .cloned()
    }

    /// The objects of a type that pass `filter`, ordered by namespace and name, and the
    /// resource version they are current at.
    pub fn list(&self, rt: &'static ResourceType, filter: &Filter) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = state.objects[rt.index()]
            .values()
            .filter(|o| filter.matches(o))
            .cloned()
            .collect();
        (items, state.rv)
    }

    /// Creates an object (`POST`): `409 AlreadyExists` if it exists.
    pub fn create(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        object: Value,
        opts: &WriteOptions,
    ) -> Result<Value, StatusError> {
        let mut state = self.lock();
        state.create(rt, ns, object, opts)
    }

    /// Replaces an object or its status (`PUT`): `404` if missing, `409 Conflict` if the body's
    /// `resourceVersion` is set and stale.
    pub fn update(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        part: Part,
        object: Value,
        opts: &WriteOptions,
    ) -> Result<Value, StatusError> {
        let mut state = self.lock();
        let old = state.objects[rt.index()]
            .get(&key(rt, ns, name))
            .cloned()
            .ok_or_else(|| StatusError::not_found(rt, name))?;
        state.replace(rt, &old, object, part, opts)
    }

    /// Patches an object or its status (`PATCH`). A server-side apply of a missing object
    /// creates it.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        part: Part,
        patch_type: PatchType,
        patch: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, StatusError> {
        let mut state = self.lock();
        let Some(old) = state.objects[rt.index()].get(&key(rt, ns, name)).cloned() else {
            if patch_type == PatchType::Apply && part == Part::Main {
                let mut object = patch.clone();
                if let Some(other) = meta_str(&object, "name").filter(|n| *n != name) {
                    return Err(name_mismatch(other, name));
                }
                set_meta(&mut object, "name", json!(name));
                return state.create(rt, ns, object, opts);
            }
            return Err(StatusError::not_found(rt, name));
        };
        let patched = patch::apply(&old, patch_type, patch)?;
        state.replace(rt, &old, patched, part, opts)
    }

    /// Deletes an object (`DELETE`). With finalizers it only gets a `deletionTimestamp`, and is
    /// removed once an update empties them. `precondition` is `(resourceVersion, uid)` from
    /// `DeleteOptions.preconditions`.
    pub fn delete(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        precondition: (Option<&str>, Option<&str>),
        opts: &WriteOptions,
    ) -> Result<Value, StatusError> {
        let mut state = self.lock();
        let old = state.objects[rt.index()]
            .get(&key(rt, ns, name))
            .cloned()
            .ok_or_else(|| StatusError::not_found(rt, name))?;
        let (rv, uid) = precondition;
        if rv.is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion"))
            || uid.is_some_and(|uid| Some(uid) != meta_str(&old, "uid"))
        {
            return Err(StatusError::conflict(rt, name));
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if opts.dry_run {
            return Ok(old);
        }
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut object = old.clone();
            set_meta(&mut object, "deletionTimestamp", json!(now()));
            set_meta(&mut object, "deletionGracePeriodSeconds", json!(0));
            return Ok(state.store(rt, object, Some(old)));
        }
        Ok(state.remove(rt, old))
    }

    /// Creates or replaces an object as given (a test control): no preconditions, `.status`
    /// kept; `uid` and `creationTimestamp` of an existing object carry over.
    pub fn upsert(&self, object: Value) -> Result<Value, StatusError> {
        let rt = type_of(&object)?;
        let ns = meta_str(&object, "namespace").map(str::to_string);
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let opts = WriteOptions {
            test: true,
            ..WriteOptions::default()
        };
        let mut state = self.lock();
        match state.objects[rt.index()]
            .get(&key(rt, ns.as_deref(), &name))
            .cloned()
        {
            Some(old) => {
                let mut object = object;
                set_meta(&mut object, "resourceVersion", Value::Null);
                state.replace(rt, &old, object, Part::Main, &opts)
            }
            None => state.create(rt, ns.as_deref(), object, &opts),
        }
    }

    /// Creates an object as given (a test control): `409 AlreadyExists` if it exists.
    pub fn create_given(&self, object: Value) -> Result<Value, StatusError> {
        let rt = type_of(&object)?;
        let ns = meta_str(&object, "namespace").map(str::to_string);
        let opts = WriteOptions {
            test: true,
            ..WriteOptions::default()
        };
        self.create(rt, ns.as_deref(), object, &opts)
    }

    /// Removes an object at once, finalizers or not (a test control).
    pub fn remove(&self, rt: &'static ResourceType, ns: Option<&str>, name: &str) -> Option<Value> {
        let mut state = self.lock();
        let old = state.objects[rt.index()].get(&key(rt, ns, name)).cloned()?;
        Some(state.remove(rt, old))
    }

    /// Drops the history: watches and lists from an older resource version get `410 Expired`,
    /// and open watches end with that error.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted = state.rv;
        let _ = state.notices.send(Notice::Expire {
            oldest: state.compacted,
        });
    }

    /// Ends every open watch without an error.
    pub fn close_watches(&self) {
        let state = self.lock();
        let _ = state.notices.send(Notice::Close);
    }

    /// Starts a watch of `rt` for the objects `filter` passes.
    pub fn subscribe(
        &self,
        rt: &'static ResourceType,
        filter: &Filter,
        from: WatchFrom,
    ) -> Result<Subscription, StatusError> {
        let state = self.lock();
        let initial = match from {
            WatchFrom::Current => state.objects[rt.index()]
                .values()
                .filter(|o| filter.matches(o))
                .map(|o| {
                    Arc::new(Change {
                        rv: state.rv,
                        resource: rt,
                        kind: ChangeKind::Added,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            WatchFrom::After(rv) if rv < state.compacted => {
                return Err(StatusError::expired(rv, state.compacted));
            }
            WatchFrom::After(rv) => state
                .history
                .iter()
                .filter(|c| c.rv > rv && std::ptr::eq(c.resource, rt))
                .cloned()
                .collect(),
        };
        Ok(Subscription {
            initial,
            receiver: state.notices.subscribe(),
            rv: state.rv,
        })
    }
}

impl State {
    /// Records a change in the history and tells the open watches.
    fn commit(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > MAX_HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        let _ = self.notices.send(Notice::Change(change));
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// A random-looking version 4 UUID.
    fn uid(&mut self) -> String {
        let a = self.random_u64();
        let b = self.random_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn random_u64(&mut self) -> u64 {
        self.counter += 1;
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.counter);
        hasher.finish()
    }

    /// Five characters for `generateName`, from the alphabet the real server uses.
    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.random_u64();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
                n /= ALPHABET.len() as u64;
                char::from(c)
            })
            .collect()
    }

    fn create(
        &mut self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        mut object: Value,
        opts: &WriteOptions,
    ) -> Result<Value, StatusError> {
        check_type(rt, &mut object)?;
        let name = match meta_str(&object, "name").filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => match meta_str(&object, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => format!("{prefix}{}", self.name_suffix()),
                None => {
                    return Err(StatusError::invalid(
                        rt,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        set_meta(&mut object, "name", json!(name));
        set_namespace(rt, &mut object, ns, &name)?;
        let key = key(rt, meta_str(&object, "namespace"), &name);
        if self.objects[rt.index()].contains_key(&key) {
            return Err(StatusError::already_exists(rt, &name));
        }
        if rt.has_status && rt.reset_status_on_create && !opts.test {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        let uid = self.uid();
        set_meta(&mut object, "uid", json!(uid));
        if meta_str(&object, "creationTimestamp").is_none() {
            set_meta(&mut object, "creationTimestamp", json!(now()));
        }
        set_meta(&mut object, "generation", json!(1));
        set_meta(&mut object, "deletionTimestamp", Value::Null);
        defaults::apply(rt.kind, &mut object, None, &mut self.alloc);
        record_manager(&mut object, rt, opts, Part::Main);
        if opts.dry_run {
            return Ok(object);
        }
        Ok(self.store(rt, object, None))
    }

    /// Writes `new` over `old` as a `PUT` (or a patch's result) of `part` would.
    fn replace(
        &mut self,
        rt: &'static ResourceType,
        old: &Value,
        mut new: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Value, StatusError> {
        check_type(rt, &mut new)?;
        let name = meta_str(old, "name").unwrap_or_default().to_string();
        match meta_str(&new, "name") {
            None | Some("") => set_meta(&mut new, "name", json!(name)),
            Some(other) if other != name => return Err(name_mismatch(other, &name)),
            Some(_) => {}
        }
        set_namespace(rt, &mut new, meta_str(old, "namespace"), &name)?;
        let stale = |field: &str| {
            meta_str(&new, field).is_some_and(|v| !v.is_empty() && Some(v) != meta_str(old, field))
        };
        if stale("resourceVersion") || stale("uid") {
            return Err(StatusError::conflict(rt, &name));
        }
        let mut object = match part {
            Part::Main => {
                let mut object = new;
                for field in [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "managedFields",
                    "resourceVersion",
                ] {
                    let kept = old.pointer(&format!("/metadata/{field}")).cloned();
                    set_meta(&mut object, field, kept.unwrap_or(Value::Null));
                }
                if rt.has_status && !opts.test {
                    set_field(&mut object, "status", old.get("status").cloned());
                }
                object
            }
            Part::Status => {
                let mut object = old.clone();
                set_field(&mut object, "status", new.get("status").cloned());
                object
            }
        };
        defaults::apply(rt.kind, &mut object, Some(old), &mut self.alloc);
        record_manager(&mut object, rt, opts, part);
        if spec_of(&object) != spec_of(old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut object, "generation", json!(generation + 1));
        }
        if without_bookkeeping(&object) == without_bookkeeping(old) {
            // A write that changes nothing neither bumps the version nor notifies watches.
            return Ok(old.clone());
        }
        if opts.dry_run {
            return Ok(object);
        }
        let finalized = object.pointer("/metadata/deletionTimestamp").is_some()
            && object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if finalized {
            return Ok(self.remove(rt, object));
        }
        Ok(self.store(rt, object, Some(old.clone())))
    }

    /// Stores `object` with a new resource version, recording an add or a modification.
    fn store(
        &mut self,
        rt: &'static ResourceType,
        mut object: Value,
        prev: Option<Value>,
    ) -> Value {
        let rv = self.next_rv();
        set_meta(&mut object, "resourceVersion", json!(rv.to_string()));
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let key = key(rt, meta_str(&object, "namespace"), &name);
        self.objects[rt.index()].insert(key, object.clone());
        let kind = if prev.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.commit(Change {
            rv,
            resource: rt,
            kind,
            object: object.clone(),
            prev,
        });
        object
    }

    /// Removes `object`, recording the deletion with a new resource version. Deleting a
    /// namespace deletes what is in it too.
    fn remove(&mut self, rt: &'static ResourceType, mut object: Value) -> Value {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let key = key(rt, meta_str(&object, "namespace"), &name);
        self.objects[rt.index()].remove(&key);
        let rv = self.next_rv();
        set_meta(&mut object, "resourceVersion", json!(rv.to_string()));
        self.commit(Change {
            rv,
            resource: rt,
            kind: ChangeKind::Deleted,
            object: object.clone(),
            prev: None,
        });
        if rt.kind == "Namespace" {
            for inner in RESOURCES.iter().filter(|r| r.namespaced) {
                let contained: Vec<Value> = self.objects[inner.index()]
                    .range((name.clone(), String::new())..)
                    .take_while(|((ns, _), _)| *ns == name)
                    .map(|(_, o)| o.clone())
                    .collect();
                for o in contained {
                    self.remove(inner, o);
                }
            }
        }
        object
    }
}

fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
    let ns = if rt.namespaced {
        ns.unwrap_or("default")
    } else {
        ""
    };
    (ns.to_string(), name.to_string())
}
