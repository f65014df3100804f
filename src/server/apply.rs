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
//! Each request is applied all or nothing: a request that fails a
//! deterministic check (compacted revision, missing key for `ignore_value`,
//! ...) changes nothing and its error goes back to the proposer, identically
//! on every member. A storage failure is fatal: the process stops and a
//! restart replays the entry from the synced raft log.
//!
//! etcd counterparts: `server/etcdserver/server.go` (`applyEntryNormal`),
//! `server/etcdserver/apply/*.go`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Snapshot};
use tokio::sync::watch;

use super::alarm::{self, AlarmSet};
use super::txn;
use super::wait::Wait;
use crate::cluster::{self, Members};
use crate::error::{Error, Result};
use crate::lease::{self, SharedLessor};
use crate::mvcc::KeyRange;
use crate::mvcc::compact::Compactor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{Batch, Store};
use crate::process::fatal;
use crate::proto::etcdserverpb::Member;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use crate::proto::oxcdpb::{
    ConfChangeContext, InternalRaftRequest, MemberTable, internal_raft_request::Request,
};
use crate::raft::RaftStatus;
use crate::raft::node::ApplyToRaft;
use crate::storage::{Cf, Db, meta_key};

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
            alarms: d.alarms,
            members: d.members,
            member_id: d.member_id,
            max_learners: d.max_learners,
            pending_members: None,
            applied,
        }
    }

    /// The member table as the batch being applied sees it.
    fn members_now(&self) -> MemberTable {
        self.pending_members
            .clone()
            .unwrap_or_else(|| self.members.table())
    }

    /// Records a changed member table with the batch.
    fn stage_members(&mut self, batch: &mut Batch, table: MemberTable) {
        let db = self.store.db().clone();
        batch.meta_put(
            &db,
            crate::storage::schema::MEMBERS.to_vec(),
            cluster::encode_table(&table),
        );
        self.pending_members = Some(table);
    }

    /// Validates a configuration change against the member table and
    /// returns the table after it (etcd: `ValidateConfigurationChange`).
    fn member_change(&self, cc: &ConfChange, member: Option<Member>) -> Result<MemberTable> {
        let mut t = self.members_now();
        let id = cc.node_id;
        let learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if let Some(m) = t.members.iter_mut().find(|m| m.id == id) {
                    // AddNode for a learner without a member is a promotion.
                    return match (learner, m.is_learner, member.is_none()) {
                        (false, true, _) => {
                            m.is_learner = false;
                            Ok(t)
                        }
                        (false, false, true) => Err(Error::MemberNotLearner),
                        _ => Err(Error::MemberExist),
                    };
                }
                if t.removed.contains(&id) {
                    return Err(Error::MemberNotFound);
                }
                let mut m =
                    member.ok_or_else(|| Error::internal("member change without a member"))?;
                m.id = id;
                m.is_learner = learner;
                if cluster::peer_url_taken(&t, id, &m.peer_ur_ls) {
                    return Err(Error::PeerUrlExist);
                }
                let learners = t.members.iter().filter(|m| m.is_learner).count() as u64;
                if learner && learners >= self.max_learners {
                    return Err(Error::TooManyLearners);
                }
                t.members.push(m);
            }
            ConfChangeType::RemoveNode => {
                let before = t.members.len();
                t.members.retain(|m| m.id != id);
                if t.members.len() == before {
                    return Err(Error::MemberNotFound);
                }
                t.removed.push(id);
            }
        }
        Ok(t)
    }

    /// Applies a configuration change entry (see `ApplySink::conf_change`).
    fn apply_conf_change(&mut self, e: &Entry, to_raft: ApplyToRaft<'_>) -> Option<ConfState> {
        if e.index <= self.applied {
            return None;
        }
        let cc = match ConfChange::parse_from_bytes(&e.data) {
            Ok(cc) => cc,
            Err(err) => fatal(
                &format!("undecodable configuration change {}", e.index),
                &err,
            ),
        };
        let ctx = ConfChangeContext::decode(&cc.context[..]).unwrap_or_default();
        let mut batch = self.store.begin_batch();
        let mut new_cs = None;
        let result = match self.member_change(&cc, ctx.member) {
            Ok(table) => match to_raft(&cc) {
                Ok(cs) => {
                    let db = self.store.db().clone();
                    match cs.write_to_bytes() {
                        Ok(b) => batch.raw_put(
                            &db,
                            Cf::RaftMeta,
                            crate::storage::schema::raft_meta::CONF_STATE,
                            &b,
                        ),
                        Err(err) => fatal("encoding the raft configuration", &err),
                    }
                    let list = cluster::sorted_members(&table);
                    self.stage_members(&mut batch, table);
                    new_cs = Some(cs);
                    Ok(Response::Members(list))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "raft refused a configuration change");
                    Err(Error::internal(format!(
                        "configuration change refused: {err}"
                    )))
                }
            },
            Err(err) => Err(err),
        };
        batch.set_applied(e.index, e.term);
        let committed = match self.store.write(batch) {
            Ok(c) => c,
            Err(err) => fatal("writing a configuration change", &err),
        };
        self.store.publish(&committed);
        if let Some(t) = self.pending_members.take() {
            self.members.set(t);
        }
        self.applied = e.index;
        if let Ok(Response::Members(_)) = &result {
            tracing::info!(
                change = ?cc.get_change_type(),
                member_id = format!("{:x}", cc.node_id),
                "applied a membership change"
            );
        }
        let removed_self = cc.get_change_type() == ConfChangeType::RemoveNode
            && cc.node_id == self.member_id
            && result.is_ok();
        self.wait.trigger(ctx.id, result);
        self.status.applied.store(e.index, Ordering::Release);
        self.applied_tx.send_replace(e.index);
        if removed_self {
            // etcd: a removed member stops (after answering the request
            // that removed it, if it came through this member).
            tracing::warn!("the member has been permanently removed from the cluster");
            crate::process::exit_after(std::time::Duration::from_millis(500), 0);
        }
        new_cs
    }

    /// Replaces the state with the checkpoint a snapshot refers to: every
    /// state column family is emptied and refilled from it, together with
    /// the raft log changes in `wb`, in one synced write (a crash keeps
    /// either the old state and log or the new ones). This member keeps
    /// its own id.
    fn install(&mut self, snap: &Snapshot, mut wb: rocksdb::WriteBatch) -> Result<()> {
        let dir = std::path::PathBuf::from(String::from_utf8_lossy(snap.get_data()).into_owned());
        let db = self.store.db().clone();
        {
            let src = Db::open(&dir)?;
            for cf in Cf::STATE {
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_total_order_seek(true);
                let mut it = db.raw().raw_iterator_cf_opt(db.cf(cf), opts);
                it.seek_to_first();
                while let Some(k) = it.key() {
                    wb.delete_cf(db.cf(cf), k);
                    it.next();
                }
                it.status()?;
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_total_order_seek(true);
                let mut it = src.raw().raw_iterator_cf_opt(src.cf(cf), opts);
                it.seek_to_first();
                while let Some((k, v)) = it.item() {
                    wb.put_cf(db.cf(cf), k, v);
                    it.next();
                }
                it.status()?;
            }
        }
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::MEMBER_ID,
            self.member_id.to_be_bytes(),
        );
        db.write_synced(wb)?;
        let _ = std::fs::remove_dir_all(&dir);
        self.store.reload()?;
        {
            let mut l = lease::lock(&self.lessor);
            l.clear();
            super::lease::load(&db, &mut l)?;
        }
        self.alarms.reload(&db)?;
        if let Some(t) = Members::load(&db)? {
            self.members.set(t);
        }
        let index = snap.get_metadata().index;
        self.applied = index;
        self.hub.reset_after_restore(self.store.current_rev());
        self.status.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
        Ok(())
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
                let req = match InternalRaftRequest::decode(e.data.clone()) {
                    Ok(r) => r,
                    Err(err) => fatal(&format!("undecodable raft entry {}", e.index), &err),
                };
                let result = self.apply_request(&mut batch, req.request);
                self.record_lease_changes(&mut batch);
                if let Err(Error::Internal(msg)) = &result {
                    fatal(&format!("applying raft entry {}", e.index), msg);
                }
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

    /// Moves keys between leases' attachment lists (in the `lease` CF) as
    /// the last request's writes changed their leases.
    fn record_lease_changes(&self, batch: &mut Batch) {
        let db = self.store.db().clone();
        for ch in batch.take_lease_changes() {
            if ch.old != 0 {
                batch.aux_delete(
                    &db,
                    crate::storage::schema::lease::attached(ch.old, &ch.key),
                );
            }
            if ch.new != 0 {
                batch.aux_put(
                    &db,
                    crate::storage::schema::lease::attached(ch.new, &ch.key),
                    Vec::new(),
                );
            }
        }
    }

    fn header(batch: &Batch) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: batch.current_rev(),
            ..Default::default()
        })
    }

    /// Refuses what an active alarm forbids (etcd: the capped and corrupt
    /// appliers). Alarms come through the log, so every member refuses
    /// the same entries.
    fn refused_by_alarm(&self, req: &Option<Request>) -> Option<Error> {
        let a = &self.alarms;
        if a.corrupt()
            && matches!(
                req,
                Some(
                    Request::Put(_)
                        | Request::DeleteRange(_)
                        | Request::Txn(_)
                        | Request::Compaction(_)
                        | Request::LeaseGrant(_)
                        | Request::LeaseRevoke(_)
                )
            )
        {
            return Some(Error::Corrupt);
        }
        if a.nospace() {
            let capped = match req {
                Some(Request::Put(_) | Request::LeaseGrant(_)) => true,
                Some(Request::Txn(t)) => alarm::cost_txn(t) > 0,
                _ => false,
            };
            if capped {
                return Some(Error::NoSpace);
            }
        }
        None
    }

    fn apply_request(&mut self, batch: &mut Batch, req: Option<Request>) -> ApplyResult {
        let db = self.store.db().clone();
        if let Some(e) = self.refused_by_alarm(&req) {
            return Err(e);
        }
        let leases = |id: i64| lease::lock(&self.lessor).contains(id);
        match req {
            Some(Request::Put(p)) => {
                let mut t = batch.txn(&db);
                let r = txn::put(&mut t, &leases, &p);
                finish(t, r).map(Response::Put)
            }
            Some(Request::DeleteRange(d)) => {
                let mut t = batch.txn(&db);
                let r = txn::delete_range(&mut t, &d);
                finish(t, r).map(Response::DeleteRange)
            }
            Some(Request::Txn(rt)) => {
                let mut t = batch.txn(&db);
                let r = txn::txn(&mut t, &leases, &rt);
                finish(t, r).map(Response::Txn)
            }
            Some(Request::Compaction(c)) => {
                batch.compact(c.revision)?;
                Ok(Response::Compact(CompactionResponse {
                    header: Some(ResponseHeader {
                        revision: batch.current_rev(),
                        ..Default::default()
                    }),
                }))
            }
            Some(Request::LeaseGrant(g)) => {
                let ttl = lease::lock(&self.lessor).grant(g.id, g.ttl, Instant::now())?;
                batch.aux_put(
                    &db,
                    crate::storage::schema::lease::lease(g.id),
                    crate::storage::schema::lease::encode_record(ttl, 0),
                );
                Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: Self::header(batch),
                    id: g.id,
                    ttl,
                    error: String::new(),
                }))
            }
            Some(Request::LeaseRevoke(r)) => {
                if !lease::lock(&self.lessor).contains(r.id) {
                    return Err(Error::LeaseNotFound);
                }
                // Every attached key goes in one revision, in key order.
                let prefix = crate::storage::schema::lease::attached_prefix(r.id);
                let attached = batch.aux_scan(&db, &prefix)?;
                let mut t = batch.txn(&db);
                for (k, _) in &attached {
                    t.delete_range(KeyRange::Key(&k[prefix.len()..]))?;
                }
                t.end();
                self.record_lease_changes(batch);
                for (k, _) in attached {
                    batch.aux_delete(&db, k);
                }
                batch.aux_delete(&db, crate::storage::schema::lease::lease(r.id));
                lease::lock(&self.lessor).revoke(r.id)?;
                Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                    header: Self::header(batch),
                }))
            }
            Some(Request::LeaseCheckpoint(c)) => {
                let mut lessor = lease::lock(&self.lessor);
                for cp in c.checkpoints {
                    lessor.checkpoint(cp.id, cp.remaining_ttl);
                    if let Some((ttl, remaining)) = lessor.record(cp.id) {
                        batch.aux_put(
                            &db,
                            crate::storage::schema::lease::lease(cp.id),
                            crate::storage::schema::lease::encode_record(ttl, remaining),
                        );
                    }
                }
                Ok(Response::LeaseCheckpoint)
            }
            Some(Request::Alarm(a)) => {
                let changed = match AlarmAction::try_from(a.action) {
                    Ok(AlarmAction::Activate) => {
                        let added = self.alarms.activate(a.member_id, a.alarm);
                        if added {
                            batch.meta_put(
                                &db,
                                crate::storage::schema::alarm::key(a.member_id, a.alarm),
                                Vec::new(),
                            );
                            tracing::warn!(
                                member_id = format!("{:x}", a.member_id),
                                alarm = a.alarm,
                                "alarm raised"
                            );
                        }
                        added
                    }
                    Ok(AlarmAction::Deactivate) => {
                        let removed = self.alarms.deactivate(a.member_id, a.alarm);
                        if removed {
                            batch.meta_delete(
                                &db,
                                crate::storage::schema::alarm::key(a.member_id, a.alarm),
                            );
                            tracing::warn!(
                                member_id = format!("{:x}", a.member_id),
                                alarm = a.alarm,
                                "alarm cleared"
                            );
                        }
                        removed
                    }
                    // GET is answered without raft; nothing else exists.
                    _ => false,
                };
                let alarms = if changed {
                    vec![AlarmMember {
                        member_id: a.member_id,
                        alarm: a.alarm,
                    }]
                } else {
                    vec![]
                };
                Ok(Response::Alarm(AlarmResponse {
                    header: Self::header(batch),
                    alarms,
                }))
            }
            Some(Request::MemberAttrs(a)) => {
                let mut t = self.members_now();
                let Some(m) = t.members.iter_mut().find(|m| m.id == a.member_id) else {
                    // A removed member's late publication changes nothing.
                    return Ok(Response::MemberAttrs);
                };
                m.name = a.name;
                m.client_ur_ls = a.client_urls;
                self.stage_members(batch, t);
                Ok(Response::MemberAttrs)
            }
            Some(Request::MemberUpdate(u)) => {
                let mut t = self.members_now();
                if cluster::peer_url_taken(&t, u.id, &u.peer_ur_ls) {
                    return Err(Error::PeerUrlExist);
                }
                let Some(m) = t.members.iter_mut().find(|m| m.id == u.id) else {
                    return Err(Error::MemberNotFound);
                };
                m.peer_ur_ls = u.peer_ur_ls;
                let list = cluster::sorted_members(&t);
                self.stage_members(batch, t);
                Ok(Response::Members(list))
            }
            None => Err(Error::internal("raft entry without a request")),
        }
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
    ) -> Result<()> {
        self.install(snap, raft_writes)
    }
}

/// Keeps a transaction's writes if it succeeded, drops them if not.
fn finish<T>(t: crate::mvcc::WriteTxn<'_>, r: Result<T>) -> Result<T> {
    match r {
        Ok(v) => {
            t.end();
            Ok(v)
        }
        Err(e) => {
            t.abort();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
