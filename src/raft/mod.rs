//! Consensus with raft-rs: the thread that owns the `RawNode` ([`node`]) and
//! the log on RocksDB ([`storage`]).
//!
//! Even a single member is a one-voter raft group, so every state change
//! takes the same path: proposed, appended and fsynced, committed, applied.
//! This module treats entries as opaque bytes; `server` gives them meaning.

#[cfg(test)]
mod harness;
pub mod node;
pub mod storage;

pub use node::{NodeConfig, RaftHandle, RaftMsg, RaftStatus};
pub use storage::RaftStorage;
