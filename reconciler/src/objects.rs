//! The objects that show ferrolb's state through kubectl, in `--state-namespace`: one
//! `ConfigurationState` (whether the newest configuration is in force) and one
//! `ServiceL2Status` per announced Service (which node answers for it), both MetalLB's kinds
//! (`metallb.io/v1beta1`) so that tooling written for MetalLB reads them. The speakers need no
//! Kubernetes credentials: the leader keeps the objects from the claims in etcd.
//!
//! What to write is decided in [`crate::feedback`]; this module carries it out and keeps a
//! cache of the `ServiceL2Status` objects it manages (label `app.kubernetes.io/managed-by:
//! ferrolb`), so a restart rewrites nothing and objects left by a crash are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use ferrolb_core::alloc::ServiceKey;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::feedback::{ConfigState, L2Change, L2Holder};
use crate::pools;

/// The name of the reconciler's `ConfigurationState`.
pub const CONFIG_STATE_NAME: &str = "ferrolb-reconciler";
/// The label that marks the objects ferrolb manages.
const MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "ferrolb");
/// The field manager of every write.
const MANAGER: &str = "ferrolb";

/// The name of a Service's `ServiceL2Status`: `l2-<namespace>.<name>` (both are DNS labels, so
/// the name is a valid object name and no two Services share one).
pub fn l2_name(key: &ServiceKey) -> String {
    format!("l2-{}.{}", key.namespace, key.name)
}

/// The object that says `holder` answers for `key`, as server-side apply takes it (metadata;
/// the status goes in a second request, to the status subresource).
pub fn l2_object(key: &ServiceKey, holder: &L2Holder) -> Value {
    let interfaces: Vec<Value> = holder
        .interfaces
        .iter()
        .map(|i| json!({ "name": i }))
        .collect();
    json!({
        "apiVersion": pools::API_VERSION,
        "kind": "ServiceL2Status",
        "metadata": {
            "name": l2_name(key),
            "labels": {
                MANAGED.0: MANAGED.1,
                "metallb.io/node": holder.node,
                "metallb.io/service-name": key.name.to_string(),
                "metallb.io/service-namespace": key.namespace.to_string(),
            },
        },
        "status": {
            "node": holder.node,
            "serviceName": key.name.to_string(),
            "serviceNamespace": key.namespace.to_string(),
            "interfaces": interfaces,
        },
    })
}

/// The Service and holder a `ServiceL2Status` object names, if it is well formed.
pub fn l2_of(o: &DynamicObject) -> Option<(ServiceKey, L2Holder)> {
    let status = o.data.get("status")?;
    let text = |k: &str| status.get(k).and_then(Value::as_str).map(str::to_string);
    let key = ServiceKey::new(&text("serviceNamespace")?, text("serviceName")?);
    let interfaces = status
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let node = text("node")?;
    Some((key, L2Holder { node, interfaces }))
}

/// The reconciler's `ConfigurationState`, for server-side apply.
pub fn config_state_object(state: &ConfigState) -> Value {
    let (result, reason) = if state.valid {
        ("Valid", "Applied")
    } else {
        ("Invalid", "Refused")
    };
    let message = if state.valid {
        format!("revision {} is in force", state.revision)
    } else {
        format!(
            "revision {} stays in force; {} was refused: {}",
            state.revision,
            state.rejected.as_deref().unwrap_or("the newest read"),
            state.error_summary
        )
    };
    let mut status = json!({
        "result": result,
        "revision": state.revision,
        "errorSummary": state.error_summary,
        "conditions": [{
            "type": "Valid",
            "status": if state.valid { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastTransitionTime": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }],
    });
    // Null removes it from the object (the status is merged, see [`apply_with_status`]).
    status["rejectedRevision"] = json!(state.rejected);
    json!({
        "apiVersion": pools::API_VERSION,
        "kind": "ConfigurationState",
        "metadata": {
            "name": CONFIG_STATE_NAME,
            "labels": { MANAGED.0: MANAGED.1, "metallb.io/component-type": "controller" },
        },
        "status": status,
    })
}

/// The state objects in one namespace: the writes, and the cache of `ServiceL2Status` objects.
pub struct StateObjects {
    l2: Api<DynamicObject>,
    states: Api<DynamicObject>,
    cache: Store<DynamicObject>,
    synced: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for StateObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateObjects").finish_non_exhaustive()
    }
}

impl Drop for StateObjects {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StateObjects {
    /// Starts the cache of the `ServiceL2Status` objects ferrolb manages in `namespace`.
    pub fn start(client: &Client, namespace: &str) -> StateObjects {
        let ar = pools::resource("ServiceL2Status", "servicel2statuses");
        let l2 = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
        let states_ar = pools::resource("ConfigurationState", "configurationstates");
        let states = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &states_ar);
        let writer = reflector::store::Writer::<DynamicObject>::new(ar);
        let cache = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        let config = watcher::Config::default().labels(&format!("{}={}", MANAGED.0, MANAGED.1));
        let stream = reflector::reflector(writer, watcher(l2.clone(), config).default_backoff());
        let flag = synced.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut warned = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Release),
                    Ok(_) => {}
                    Err(e) if !warned => {
                        warned = true;
                        warn!(error = %e, "cannot watch servicel2statuses.metallb.io (are the CRDs installed?); not writing them until it can");
                    }
                    Err(_) => {}
                }
            }
        });
        StateObjects {
            l2,
            states,
            cache,
            synced,
            task,
        }
    }

    /// The `ServiceL2Status` objects in the cluster, once listed.
    pub fn l2_in_cluster(&self) -> Option<BTreeMap<ServiceKey, L2Holder>> {
        if !self.synced.load(Ordering::Acquire) {
            return None;
        }
        Some(self.cache.state().iter().filter_map(|o| l2_of(o)).collect())
    }

    /// Writes the `ConfigurationState`.
    pub async fn write_config_state(&self, state: &ConfigState) -> anyhow::Result<()> {
        apply_with_status(&self.states, CONFIG_STATE_NAME, config_state_object(state))
            .await
            .context("writing the ConfigurationState")
    }

    /// Carries out one change to the `ServiceL2Status` objects.
    pub async fn apply_l2(&self, change: &L2Change) -> anyhow::Result<()> {
        let (key, holder) = match change {
            L2Change::Delete(key) => return self.delete_l2(key).await,
            L2Change::Replace(key, holder) => {
                self.delete_l2(key).await?;
                (key, holder)
            }
            L2Change::Put(key, holder) => (key, holder),
        };
        apply_with_status(&self.l2, &l2_name(key), l2_object(key, holder))
            .await
            .with_context(|| format!("writing the ServiceL2Status of {key}"))
    }

    async fn delete_l2(&self, key: &ServiceKey) -> anyhow::Result<()> {
        match self
            .l2
            .delete(&l2_name(key), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting the ServiceL2Status of {key}")),
        }
    }
}

/// Server-side applies `object`'s metadata (creating it), then merges its status into the
/// status subresource. The status is a merge patch, not an apply: MetalLB's own CRDs do not
/// declare ferrolb's extra fields (`revision`, `rejectedRevision`), and the API server prunes
/// undeclared fields from a merge patch where it refuses a whole apply for them. A field set to
/// `null` in `object` is removed.
async fn apply_with_status(
    api: &Api<DynamicObject>,
    name: &str,
    object: Value,
) -> kube::Result<()> {
    let mut meta = object;
    let status = meta
        .as_object_mut()
        .and_then(|m| m.remove("status"))
        .unwrap_or(Value::Null);
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&meta),
    )
    .await?;
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch_status(name, &params, &Patch::Merge(&json!({ "status": status })))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_l2_object_reads_back_as_the_service_and_holder_it_was_made_from() {
        let key = ServiceKey::new("default", "web");
        let holder = L2Holder {
            node: "n1".into(),
            interfaces: vec!["eth0".into()],
        };
        let value = l2_object(&key, &holder);
        assert_eq!(value["metadata"]["name"], "l2-default.web");
        assert_eq!(value["metadata"]["labels"]["metallb.io/node"], "n1");
        let o: DynamicObject = serde_json::from_value(value).expect("an object");
        assert_eq!(l2_of(&o), Some((key, holder)));
    }

    #[test]
    fn the_configuration_state_says_valid_or_what_was_refused() {
        let valid = ConfigState {
            valid: true,
            revision: "abc".into(),
            rejected: None,
            error_summary: String::new(),
        };
        let v = config_state_object(&valid);
        assert_eq!(v["status"]["result"], "Valid");
        assert_eq!(v["status"]["revision"], "abc");
        assert_eq!(
            v["status"]["rejectedRevision"],
            Value::Null,
            "removed by the merge"
        );
        assert_eq!(v["status"]["conditions"][0]["status"], "True");
        let invalid = ConfigState {
            valid: false,
            rejected: Some("def".into()),
            error_summary: "pools.yaml:3: error: ...".into(),
            ..valid
        };
        let v = config_state_object(&invalid);
        assert_eq!(v["status"]["result"], "Invalid");
        assert_eq!(v["status"]["rejectedRevision"], "def");
        assert_eq!(v["status"]["errorSummary"], "pools.yaml:3: error: ...");
        assert!(
            v["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("revision abc stays in force; def was refused"))
        );
    }
}
