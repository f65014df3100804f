//! Applying membership changes: raft configuration changes validated
//! against the member table exactly as etcd's
//! `ValidateConfigurationChange` does, MemberUpdate, and members'
//! publication of their name and client URLs (etcd:
//! `server/etcdserver/server.go` `applyConfChange`,
//! `api/membership/cluster.go`).

use std::sync::atomic::Ordering;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry};

use super::{Applier, Response};
use crate::cluster;
use crate::error::{Error, Result};
use crate::mvcc::Batch;
use crate::process::fatal;
use crate::proto::etcdserverpb::{Member, MemberUpdateRequest};
use crate::proto::oxcdpb::{ConfChangeContext, MemberAttrs, MemberTable};
use crate::raft::node::ApplyToRaft;
use crate::storage::Cf;

impl Applier {
    pub(super) fn members_now(&self) -> MemberTable {
        self.pending_members
            .clone()
            .unwrap_or_else(|| self.members.table())
    }

    /// Records a changed member table with the batch.
    pub(super) fn stage_members(&mut self, batch: &mut Batch, table: MemberTable) {
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
    pub(super) fn apply_conf_change(
        &mut self,
        e: &Entry,
        to_raft: ApplyToRaft<'_>,
    ) -> Option<ConfState> {
        if e.index <= self.applied {
            return None;
        }
        let cc = match ConfChange::parse_from_bytes(&e.data) {
            Ok(cc) => cc,
            Err(err) => {
                // The same bytes fail the same way on every member: skip
                // the entry everywhere (its proposer's waiter times out).
                tracing::warn!(index = e.index, error = %err, "skipping an undecodable configuration change");
                self.skip(e);
                return None;
            }
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

    pub(super) fn apply_member_attrs(&mut self, batch: &mut Batch, a: &MemberAttrs) -> Response {
        let mut t = self.members_now();
        let Some(m) = t.members.iter_mut().find(|m| m.id == a.member_id) else {
            // A removed member's late publication changes nothing.
            return Response::MemberAttrs;
        };
        m.name.clone_from(&a.name);
        m.client_ur_ls.clone_from(&a.client_urls);
        self.stage_members(batch, t);
        Response::MemberAttrs
    }

    pub(super) fn apply_member_update(
        &mut self,
        batch: &mut Batch,
        u: &MemberUpdateRequest,
    ) -> Result<Response> {
        let mut t = self.members_now();
        if cluster::peer_url_taken(&t, u.id, &u.peer_ur_ls) {
            return Err(Error::PeerUrlExist);
        }
        let Some(m) = t.members.iter_mut().find(|m| m.id == u.id) else {
            return Err(Error::MemberNotFound);
        };
        m.peer_ur_ls.clone_from(&u.peer_ur_ls);
        let list = cluster::sorted_members(&t);
        self.stage_members(batch, t);
        Ok(Response::Members(list))
    }
}
