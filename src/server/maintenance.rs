//! The maintenance domain: status, alarms, defragmentation, hashes,
//! snapshots of the backend and leadership transfer (etcd:
//! `v3rpc/maintenance.go` and the `EtcdServer` methods it calls).

use std::sync::Arc;

use super::alarm::{AlarmSet, Quota};
use super::apply::Response;
use super::core::{Core, RaftState, unexpected};
use super::membership::Membership;
use crate::error::{Error, Result};
use crate::mvcc::Store;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse};
use crate::proto::oxcdpb::internal_raft_request::Request;

/// The maintenance facade.
pub struct Maintenance {
    core: Arc<Core>,
    store: Arc<Store>,
    alarms: Arc<AlarmSet>,
    quota: Arc<Quota>,
    membership: Arc<Membership>,
}

impl Maintenance {
    pub fn new(
        core: Arc<Core>,
        store: Arc<Store>,
        alarms: Arc<AlarmSet>,
        quota: Arc<Quota>,
        membership: Arc<Membership>,
    ) -> Maintenance {
        Maintenance {
            core,
            store,
            alarms,
            quota,
            membership,
        }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Raft's view as of the last Ready.
    pub fn raft_state(&self) -> RaftState {
        self.core.raft_state()
    }

    /// Bytes the backend takes (files and memtables) and bytes of it in
    /// live use, for Status' `dbSize` and `dbSizeInUse`.
    pub fn db_sizes(&self) -> (u64, u64) {
        let db = self.store.db();
        let size = db.approximate_size();
        (size, db.live_size().min(size))
    }

    /// Compacts every column family fully, dropping what deletes and
    /// compactions left behind (etcd: defragmenting the bbolt file).
    pub async fn defragment(&self) -> Result<()> {
        let db = self.store.db().clone();
        tokio::task::spawn_blocking(move || db.compact_all())
            .await
            .map_err(|e| Error::internal(format!("defragment: {e}")))?
    }

    /// A checkpoint of the database for a snapshot, in the member
    /// directory (removed when dropped, or at the next start after a
    /// crash).
    pub fn checkpoint(&self) -> Result<crate::storage::Checkpoint> {
        crate::storage::Checkpoint::take(
            self.store.db(),
            &self.core.config().data_dir.join("member"),
        )
    }

    /// HashKV: a CRC-32C over the key-value history at `rev` (0 = current)
    /// that does not depend on when compactions ran physically.
    pub fn hash_kv(&self, rev: i64) -> Result<crate::mvcc::KvHash> {
        self.store.hash_kv(rev)
    }

    /// Maintenance.Hash: a CRC-32C over this member's whole state.
    pub fn hash_all(&self) -> Result<(u32, i64)> {
        self.store.hash_all()
    }

    /// The backend quota in bytes.
    pub fn quota_bytes(&self) -> i64 {
        self.quota.bytes()
    }

    /// The active alarms of type `alarm` (every one for NONE).
    pub fn alarms(&self, alarm: i32) -> Vec<AlarmMember> {
        self.alarms.list(alarm)
    }

    /// Maintenance.Alarm: GET answers from this member's copy of the
    /// replicated alarm set; ACTIVATE and DEACTIVATE go through raft.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse> {
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => Ok(AlarmResponse {
                header: None,
                alarms: self.alarms.list(r.alarm),
            }),
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => {
                match self.core.propose(Request::Alarm(r)).await? {
                    Response::Alarm(a) => Ok(a),
                    other => Err(unexpected(other)),
                }
            }
            Err(_) => Err(Error::internal("etcdserver: unknown method")),
        }
    }

    /// Maintenance.MoveLeader.
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        self.membership.move_leader(target).await
    }

    /// What `/metrics` reports about this member.
    pub fn metric_gauges(&self) -> crate::metrics::MemberGauges {
        let raft = self.raft_state();
        let (db_size, db_size_in_use) = self.db_sizes();
        crate::metrics::MemberGauges {
            member_id: self.core.member_id(),
            has_leader: raft.leader != 0,
            is_leader: raft.leader == self.core.member_id(),
            is_learner: self.core.is_learner(),
            committed: raft.commit,
            applied: raft.applied,
            db_size,
            db_size_in_use,
            quota: self.quota_bytes(),
            current_rev: self.store.current_rev(),
            compact_rev: self.store.compact_rev(),
            server_version: crate::version::ETCD_API_VERSION,
            cluster_version: crate::version::ETCD_CLUSTER_VERSION,
        }
    }
}
