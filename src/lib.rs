//! oxcd: an etcd v3 API-compatible key-value store.
//!
//! Layers, calls going down only (see docs/ARCHITECTURE.md):
//!
//! ```text
//! main → api → server → { raft, mvcc, cluster } → storage
//!                      error, proto, config, log, version: leaves
//! ```
//!
//! - [`api`]: gRPC services; validation and response headers.
//! - [`server`]: proposals and their waiters, the applier (the only code
//!   that changes state), linearizable reads, etcd's request semantics.
//! - [`raft`]: raft-rs's `RawNode` on its own thread; the log on RocksDB.
//! - [`mvcc`]: revisions and versions of keys on RocksDB; compaction.
//! - [`cluster`]: member and cluster ids.
//! - [`storage`]: the RocksDB instance and its column families.

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
pub mod version;

pub use error::{Error, Result};
