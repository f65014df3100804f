//! oxcd: an etcd v3 API-compatible key-value store.
//!
//! Layers, calls going down only (see docs/ARCHITECTURE.md; enforced by
//! `scripts/check-layers`):
//!
//! ```text
//! main → api → server → snapshot → peer → raft → { mvcc, lease, cluster } → storage
//! leaves: proto, error, version, log, metrics, codec, config, process, tls
//! ```
//!
//! - [`api`]: gRPC services; validation and response headers.
//! - [`server`]: proposals and their waiters, the applier (the only code
//!   that changes state), linearizable reads, etcd's request semantics.
//! - [`snapshot`]: backups in etcd's snapshot framing; offline restore.
//! - [`peer`]: the peer transport; forwarding to the leader.
//! - [`raft`]: raft-rs's `RawNode` and its Ready loop; the log on RocksDB.
//! - [`mvcc`]: revisions and versions of keys on RocksDB; compaction; watch.
//! - [`lease`]: the lessor.
//! - [`cluster`]: member and cluster ids; the member table.
//! - [`storage`]: the RocksDB instance, its schema, checkpoints.
//! - [`process`]: the one way the process stops itself.
//! - [`tls`]: TLS on the listeners, as etcd sets it up.

pub mod api;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod error;
pub mod lease;
pub mod log;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub mod process;
pub mod proto;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod storage;
pub mod tls;
pub mod version;

pub use error::{Error, Result};
