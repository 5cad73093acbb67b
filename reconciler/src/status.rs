//! What the reconciler shows of itself (`/status`, `/readyz`), published by the controller on
//! a watch channel and read by the HTTP listener.

use ferrolb_core::layout::PoolUse;
use ferrolb_core::status::ClusterStatus;
use serde::Serialize;

/// What `/status` shows.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct StatusView {
    /// The configuration revision in force.
    pub revision: Option<String>,
    /// When it was applied.
    pub applied_at: Option<String>,
    /// The last error reading a newer configuration.
    pub config_error: Option<String>,
    /// The last error reading the Services.
    pub services_error: Option<String>,
    /// This replica's identity.
    pub identity: String,
    /// The leader's identity, when known.
    pub leader: Option<String>,
    /// Whether this replica leads.
    pub is_leader: bool,
    /// What the Kubernetes API refuses this reconciler for want of a permission
    /// (`operation: the server's message`), until the operation next succeeds.
    pub kubernetes_refused: Vec<String>,
    /// Configuration, Services and etcd have all been read, and Kubernetes refuses nothing.
    pub ready: bool,
    /// Pool use (leader only: standbys do not allocate).
    pub pools: Vec<PoolUse>,
    /// What `ferrolb status --reconciler` shows: the cluster as this replica's view of etcd
    /// has it (every replica keeps one).
    pub cluster: ClusterStatus,
}
