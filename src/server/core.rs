//! The core every domain of the server shares: the raft handle, the wait
//! registry and request ids, the read barrier, this member's ids and the
//! response header (etcd: the parts of `EtcdServer` that
//! `v3_server.go`'s `processInternalRaftRequestOnce` and `linearizableReadNotify`
//! use).
//!
//! Everything a domain proposes goes through [`Core::propose`] (or
//! [`Core::propose_conf_change`]); every linearizable read waits on
//! [`Core::read_barrier`]. That is where authorization of proposals and
//! reads will be checked.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message as _;
use raft::prelude::ConfChange;

use tokio::sync::watch;

use super::apply::{ApplyResult, Response};
use super::read::ReadBarrier;
use super::wait::{IdGenerator, Wait};
use crate::cluster::Members;
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::mvcc::Store;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::oxcdpb::{InternalRaftRequest, internal_raft_request::Request};
use crate::raft::RaftHandle;

/// Proposals are refused while the applier lags the commit index by more
/// than this many entries (etcd: `maxGapBetweenApplyAndCommitIndex`).
const MAX_APPLY_LAG: u64 = 5000;

/// A copy of raft's state (see [`Core::raft_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftState {
    pub term: u64,
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
}

/// Proposing, waiting and reading linearizably.
pub struct Core {
    cfg: ServerConfig,
    member_id: u64,
    cluster_id: u64,
    store: Arc<Store>,
    raft: RaftHandle,
    wait: Arc<Wait<ApplyResult>>,
    ids: IdGenerator,
    read: ReadBarrier,
    members: Arc<Members>,
    applied: watch::Receiver<u64>,
}

/// What [`Core::new`] is built from.
pub struct CoreParts {
    pub cfg: ServerConfig,
    pub member_id: u64,
    pub cluster_id: u64,
    pub store: Arc<Store>,
    pub raft: RaftHandle,
    pub wait: Arc<Wait<ApplyResult>>,
    pub read: ReadBarrier,
    pub members: Arc<Members>,
    pub applied: watch::Receiver<u64>,
}

impl Core {
    pub fn new(p: CoreParts) -> Core {
        Core {
            ids: IdGenerator::new(p.member_id),
            cfg: p.cfg,
            member_id: p.member_id,
            cluster_id: p.cluster_id,
            store: p.store,
            raft: p.raft,
            wait: p.wait,
            read: p.read,
            members: p.members,
            applied: p.applied,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The member table as of this member's applied index.
    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// Whether this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.members.is_learner(self.member_id)
    }

    /// The applier's progress: the last applied index.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The raft thread's handle.
    pub fn raft(&self) -> &RaftHandle {
        &self.raft
    }

    /// A fresh id, unique across members (request ids, lease ids).
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// The leader's id (0 when none is known).
    pub fn leader(&self) -> u64 {
        self.raft.status.leader.load(Ordering::Acquire)
    }

    /// Whether a leader is known (for `hasleader` metadata).
    pub fn has_leader(&self) -> bool {
        self.leader() != 0
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader() == self.member_id
    }

    /// Raft's view as of the last Ready: term, leader, commit and applied
    /// index.
    pub fn raft_state(&self) -> RaftState {
        let st = &self.raft.status;
        let applied = st.applied.load(Ordering::Acquire);
        RaftState {
            term: st.term.load(Ordering::Acquire),
            leader: st.leader.load(Ordering::Acquire),
            // Anything applied was committed (the two are stored apart).
            commit: st.commit.load(Ordering::Acquire).max(applied),
            applied,
        }
    }

    /// A response header with this member's ids, its term and the current
    /// revision (etcd: `v3rpc/header.go`).
    pub fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: self.store.current_rev(),
            raft_term: self.raft.status.term.load(Ordering::Acquire),
        }
    }

    /// Proposes a request and waits for the applier's result.
    pub async fn propose(&self, request: Request) -> ApplyResult {
        let st = &self.raft.status;
        let lag = st
            .commit
            .load(Ordering::Acquire)
            .saturating_sub(st.applied.load(Ordering::Acquire));
        if lag > MAX_APPLY_LAG {
            return Err(Error::TooManyRequests);
        }
        let id = self.ids.next();
        let data = InternalRaftRequest {
            id,
            request: Some(request),
        }
        .encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let m = &crate::metrics::METRICS;
        m.proposals_pending.fetch_add(1, Ordering::Relaxed);
        let result = self.wait_for(id, |id| self.raft.propose(id, data)).await;
        m.proposals_pending.fetch_sub(1, Ordering::Relaxed);
        if matches!(
            result,
            Err(Error::Stopped | Error::Timeout | Error::ProposalDropped)
        ) {
            m.proposals_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Proposes the configuration change `make(id)` builds around its
    /// request id, and waits for the applier's result.
    pub async fn propose_conf_change(&self, make: impl FnOnce(u64) -> ConfChange) -> ApplyResult {
        let id = self.ids.next();
        let cc = make(id);
        self.wait_for(id, |id| self.raft.propose_conf_change(id, cc))
            .await
    }

    /// Registers a waiter for `id`, sends the proposal, and waits for its
    /// result at most the request timeout.
    async fn wait_for(&self, id: u64, send: impl FnOnce(u64) -> Result<()>) -> ApplyResult {
        let rx = self.wait.register(id);
        // Forget the waiter if the caller goes away or times out.
        let _guard = CancelGuard {
            wait: &self.wait,
            id,
        };
        send(id)?;
        match tokio::time::timeout(self.cfg.request_timeout(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Waits until a local read reflects every write acknowledged so far.
    pub async fn read_barrier(&self) -> Result<()> {
        // A sole voter that leads acknowledges a write only after applying
        // it, so its applied state is already linearizable (etcd asks raft
        // for a read index anyway; this skips the round through the raft
        // thread).
        if self.raft.status.sole_voter_leader.load(Ordering::Acquire) {
            return Ok(());
        }
        self.read.wait().await
    }
}

/// The error for an apply result of the wrong kind (a bug).
pub fn unexpected(r: Response) -> Error {
    Error::internal(format!("unexpected apply result {r:?}"))
}

struct CancelGuard<'a> {
    wait: &'a Wait<ApplyResult>,
    id: u64,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        self.wait.cancel(self.id);
    }
}
