//! The applier: the only code that changes the state.
//!
//! It runs on the raft thread (`raft::node::ApplySink`): measured on two
//! cores, applying right after the fsync beats handing entries to another
//! thread, for latency and for throughput (the next batch of proposals
//! queues meanwhile and shares the next fsync).
//!
//! It receives committed raft entries in order, applies a batch of them to
//! the MVCC store in one RocksDB write that also records the applied index
//! (so a restart resumes exactly after the last applied entry: nothing is
//! applied twice or lost), then hands each proposer its result and
//! publishes the new applied index.
//!
//! Each request is applied all or nothing. Failures are of two kinds
//! ([`ApplyError`]): a *refusal* — a request etcd would refuse (compacted
//! revision, missing key for `ignore_value`, an active alarm, an entry this
//! version cannot decode) — changes nothing and its error goes back to the
//! proposer, identically on every member; a *fault* (storage, a broken
//! invariant) stops the process, and a restart replays the entry from the
//! synced raft log.
//!
//! This file is the dispatcher: it decodes each entry, runs the guards
//! (cross-cutting refusals: [`alarm::CorruptGuard`], [`alarm::NoSpaceGuard`];
//! authorization will be one more), and hands the request to its domain:
//! [`kv`], [`lease`], [`alarm`], [`membership`]; [`snapshot`] installs a
//! leader's snapshot, off the raft thread (the runner applies nothing
//! until it ends).
//!
//! etcd counterparts: `server/etcdserver/server.go` (`applyEntryNormal`),
//! `server/etcdserver/apply/*.go`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message as _;
use raft::prelude::{ConfState, Entry, EntryType, Snapshot};
use tokio::sync::watch;

use super::alarm::AlarmSet;
use super::wait::Wait;
use crate::cluster::Members;
use crate::error::{Error, Result};
use crate::lease::SharedLessor;
use crate::mvcc::compact::Compactor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{Batch, Store};
use crate::process::fatal;
use crate::proto::etcdserverpb::Member;
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use crate::proto::oxcdpb::{InternalRaftRequest, MemberTable, internal_raft_request::Request};
use crate::raft::RaftStatus;
use crate::raft::node::ApplyToRaft;

pub mod alarm;
mod kv;
mod lease;
mod membership;
mod snapshot;

/// What applying one request produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// A compaction; the revision is set when it was newly scheduled.
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint,
    Alarm(AlarmResponse),
    /// A membership change: the member list after it.
    Members(Vec<Member>),
    MemberAttrs,
}

pub type ApplyResult = Result<Response>;

/// Why a request was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// A request etcd would refuse: the same answer on every member, and
    /// nothing changed.
    Refused(Error),
    /// A storage failure or a broken invariant: the state is unknown, and
    /// the member stops (a restart replays the entry).
    Fault(Error),
}

impl From<Error> for ApplyError {
    /// oxcd's errors are etcd's refusals, except `Internal`, which is what
    /// storage failures and broken invariants become.
    fn from(e: Error) -> ApplyError {
        match e {
            Error::Internal(_) => ApplyError::Fault(e),
            other => ApplyError::Refused(other),
        }
    }
}

/// State owned by the applier thread.
pub struct Applier {
    store: Arc<Store>,
    wait: Arc<Wait<ApplyResult>>,
    applied_tx: watch::Sender<u64>,
    status: Arc<RaftStatus>,
    compactor: Compactor,
    hub: Arc<WatchHub>,
    lessor: SharedLessor,
    alarms: Arc<AlarmSet>,
    members: Arc<Members>,
    member_id: u64,
    max_learners: u64,
    /// The member table as changed by the batch being applied.
    pending_members: Option<MemberTable>,
    applied: u64,
    /// Cross-cutting refusals, checked in order before any domain.
    guards: Vec<Box<dyn alarm::Guard>>,
}

/// What the applier works with.
pub struct ApplierDeps {
    pub store: Arc<Store>,
    pub wait: Arc<Wait<ApplyResult>>,
    pub applied_tx: watch::Sender<u64>,
    pub status: Arc<RaftStatus>,
    pub compactor: Compactor,
    pub hub: Arc<WatchHub>,
    pub lessor: SharedLessor,
    pub alarms: Arc<AlarmSet>,
    pub members: Arc<Members>,
    pub member_id: u64,
    /// `--max-learners`, checked again when a learner is added.
    pub max_learners: u64,
}

impl Applier {
    /// An applier that resumes after raft index `applied`.
    pub fn new(d: ApplierDeps, applied: u64) -> Applier {
        Applier {
            store: d.store,
            wait: d.wait,
            applied_tx: d.applied_tx,
            status: d.status,
            compactor: d.compactor,
            hub: d.hub,
            lessor: d.lessor,
            alarms: d.alarms.clone(),
            members: d.members,
            member_id: d.member_id,
            max_learners: d.max_learners,
            pending_members: None,
            applied,
            guards: vec![
                Box::new(alarm::CorruptGuard(d.alarms.clone())),
                Box::new(alarm::NoSpaceGuard(d.alarms)),
            ],
        }
    }

    /// Applies a run of committed entries as one batch.
    pub fn apply_entries(&mut self, entries: &[Entry]) {
        let mut batch = self.store.begin_batch();
        let mut results = Vec::new();
        let mut last = None;
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                let Ok(req) = InternalRaftRequest::decode(e.data.clone()) else {
                    // The same bytes fail the same way on every member
                    // (an entry from a newer version, say): refused
                    // everywhere, nobody to answer.
                    tracing::warn!(index = e.index, "refusing an undecodable raft entry");
                    last = Some((e.index, e.term));
                    continue;
                };
                let result = match self.apply_request(&mut batch, req.request) {
                    Ok(r) => Ok(r),
                    Err(ApplyError::Refused(err)) => Err(err),
                    Err(ApplyError::Fault(err)) => {
                        fatal(&format!("applying raft entry {}", e.index), &err)
                    }
                };
                self.record_lease_changes(&mut batch);
                results.push((req.id, result));
            }
            // Empty entries (a new leader's first entry) and configuration
            // changes only advance the applied index here.
            last = Some((e.index, e.term));
        }
        let Some((index, term)) = last else {
            return;
        };
        batch.set_applied(index, term);
        let staged_members = self.pending_members.take();
        let committed = match self.store.write(batch) {
            Ok(c) => c,
            Err(err) => fatal("writing applied entries", &err),
        };
        // Watchers first, then readers: no client can learn of a revision
        // before watchers have been handed its events.
        self.hub.notify(&committed.events, committed.rev);
        self.store.publish(&committed);
        if let Some(t) = staged_members {
            self.members.set(t);
        }
        self.applied = index;
        if let Some(rev) = committed.compaction {
            self.compactor.schedule(rev);
        }
        for (id, result) in results {
            self.wait.trigger(id, result);
        }
        self.status.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
    }

    /// Applies one decoded request to `batch`: the guards first, then its
    /// domain.
    fn apply_request(
        &mut self,
        batch: &mut Batch,
        req: Option<Request>,
    ) -> std::result::Result<Response, ApplyError> {
        let Some(req) = req else {
            // A request kind this version does not know (from a newer
            // member): the same refusal on every member of this version.
            return Err(ApplyError::Refused(Error::NotCapable));
        };
        if let Some(e) = self.guards.iter().find_map(|g| g.refuse(&req)) {
            return Err(ApplyError::Refused(e));
        }
        Ok(match &req {
            Request::Put(p) => self.apply_put(batch, p)?,
            Request::DeleteRange(d) => self.apply_delete_range(batch, d)?,
            Request::Txn(t) => self.apply_txn(batch, t)?,
            Request::Compaction(c) => self.apply_compaction(batch, c)?,
            Request::LeaseGrant(g) => self.apply_lease_grant(batch, g)?,
            Request::LeaseRevoke(r) => self.apply_lease_revoke(batch, r)?,
            Request::LeaseCheckpoint(c) => self.apply_lease_checkpoint(batch, c),
            Request::Alarm(a) => self.apply_alarm(batch, a),
            Request::MemberAttrs(a) => self.apply_member_attrs(batch, a),
            Request::MemberUpdate(u) => self.apply_member_update(batch, u)?,
        })
    }

    /// Advances past an entry that changes nothing.
    fn skip(&mut self, e: &Entry) {
        let mut batch = self.store.begin_batch();
        batch.set_applied(e.index, e.term);
        let committed = match self.store.write(batch) {
            Ok(c) => c,
            Err(err) => fatal("writing the applied index", &err),
        };
        self.store.publish(&committed);
        self.applied = e.index;
        self.status.applied.store(e.index, Ordering::Release);
        self.applied_tx.send_replace(e.index);
    }

    fn header(batch: &Batch) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: batch.current_rev(),
            ..Default::default()
        })
    }
}

impl crate::raft::node::ApplySink for Applier {
    fn apply(&mut self, entries: Vec<Entry>) {
        self.apply_entries(&entries);
    }

    fn conf_change(&mut self, entry: &Entry, to_raft: ApplyToRaft<'_>) -> Option<ConfState> {
        self.apply_conf_change(entry, to_raft)
    }

    fn install_snapshot(
        &mut self,
        snap: &Snapshot,
        raft_writes: rocksdb::WriteBatch,
    ) -> Result<crate::raft::node::InstallJob> {
        Ok(self.install(snap, raft_writes))
    }

    fn installed(&mut self, snap: &Snapshot) {
        Applier::installed(self, snap);
    }
}

#[cfg(test)]
mod tests;
