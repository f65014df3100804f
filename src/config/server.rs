//! The settings of a running member, taken from the parsed flags
//! ([`super::Config::server_config`]).

use std::path::PathBuf;
use std::time::Duration;

/// What the server needs from the configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub initial_advertise_peer_urls: Vec<String>,
    pub initial_cluster_token: String,
    /// `--initial-cluster` as (name, peer URL) pairs.
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-state existing`.
    pub join_existing: bool,
    pub strict_reconfig_check: bool,
    pub max_learners: u64,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub watch_progress_notify_interval: Duration,
    /// How often the leader checkpoints remaining lease TTLs.
    pub lease_checkpoint_interval: Duration,
    /// `--quota-backend-bytes` (0: etcd's default).
    pub quota_backend_bytes: i64,
    /// `--advertise-client-urls`, for the member list.
    pub advertise_client_urls: Vec<String>,
}

impl ServerConfig {
    /// How long a proposal or read barrier may take (etcd: `ReqTimeout`).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }
}
