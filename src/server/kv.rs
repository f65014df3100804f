//! The KV domain: range, put, delete, txn and compact (etcd:
//! `EtcdServer.Range`, `Put`, `DeleteRange`, `Txn`, `Compact` in
//! `server/etcdserver/v3_server.go`).
//!
//! Writes are proposed through the core and answered with the applier's
//! result; linearizable reads pass the core's read barrier and then read a
//! local snapshot; serializable reads read the snapshot directly.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::alarm::{AlarmSet, Quota};
use super::apply::Response;
use super::core::{Core, unexpected};
use super::txn;
use crate::error::{Error, Result};
use crate::mvcc::compact::Compactor;
use crate::mvcc::{KvRead, Store};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::proto::oxcdpb::internal_raft_request::Request;

/// The KV facade.
pub struct Kv {
    core: Arc<Core>,
    store: Arc<Store>,
    alarms: Arc<AlarmSet>,
    compactor: Compactor,
    quota: Arc<Quota>,
}

impl Kv {
    pub fn new(
        core: Arc<Core>,
        store: Arc<Store>,
        alarms: Arc<AlarmSet>,
        compactor: Compactor,
        quota: Arc<Quota>,
    ) -> Kv {
        Kv {
            core,
            store,
            alarms,
            compactor,
            quota,
        }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The quota check before a write that costs `cost` bytes.
    pub async fn check_quota(&self, cost: usize) -> Result<()> {
        self.quota.check(cost).await
    }

    /// Range (etcd: `EtcdServer.Range`).
    pub async fn range(&self, r: &RangeRequest) -> Result<RangeResponse> {
        if !r.serializable {
            self.core.read_barrier().await?;
        }
        self.range_local(r)
    }

    /// Range on this member's state, without a read barrier.
    pub fn range_local(&self, r: &RangeRequest) -> Result<RangeResponse> {
        if self.alarms.corrupt() {
            return Err(Error::Corrupt);
        }
        txn::range(&self.store.read(), r)
    }

    /// The current revision and the compacted revision.
    pub fn revisions(&self) -> (i64, i64) {
        let v = self.store.read();
        (v.rev(), v.first_rev())
    }

    pub async fn put(&self, r: PutRequest) -> Result<PutResponse> {
        match self.core.propose(Request::Put(r)).await? {
            Response::Put(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.core.propose(Request::DeleteRange(r)).await? {
            Response::DeleteRange(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Txn: read-only transactions are served locally (after a read barrier
    /// unless every range is serializable); the rest go through raft.
    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse> {
        crate::metrics::METRICS
            .txn_total
            .fetch_add(1, Ordering::Relaxed);
        if txn::is_txn_read_only(&r) {
            if !txn::is_txn_serializable(&r) {
                self.core.read_barrier().await?;
            }
            if self.alarms.corrupt() {
                return Err(Error::Corrupt);
            }
            let view = self.store.read();
            // Read-only: there are no puts, so no lease is ever looked up.
            return txn::txn(&mut txn::ReadOnly(&view), &|_| false, &r);
        }
        match self.core.propose(Request::Txn(r)).await? {
            Response::Txn(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Compact; with `physical`, waits until old versions are removed.
    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        let (rev, physical) = (r.revision, r.physical);
        match self.core.propose(Request::Compaction(r)).await? {
            Response::Compact(c) => {
                if physical {
                    self.compactor.wait_finished(rev).await;
                }
                Ok(c)
            }
            other => Err(unexpected(other)),
        }
    }
}
