//! Alarms and the backend quota (etcd: `server/etcdserver/api/v3alarm`,
//! `server/storage/quota.go`, `server/etcdserver/apply/capped.go` and
//! `corrupt.go`).
//!
//! Alarms are raised and cleared through raft (an `AlarmRequest` entry), so
//! every member holds the same set; the applier keeps them in the `meta`
//! CF and in [`AlarmSet`]. While a NOSPACE alarm is active, the applier
//! refuses puts, transactions with puts and lease grants; while a CORRUPT
//! alarm is active, it refuses every KV and lease change, and reads fail.
//! Before proposing a write, the quota check raises NOSPACE when the
//! backend would pass `--quota-backend-bytes`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Core;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType, PutRequest, TxnRequest};
use crate::proto::oxcdpb::internal_raft_request::Request;
use crate::storage::{Cf, Db};

/// etcd's backend quota when `--quota-backend-bytes` is 0
/// (`DefaultQuotaBytes`, 2 GiB).
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

/// The backend quota check every write passes before it is proposed
/// (etcd: `quotaKVServer`, `quotaLeaseServer`).
pub struct Quota {
    core: Arc<Core>,
    db: Arc<Db>,
    /// The backend's size as last measured, and when (milliseconds since
    /// `started`).
    size: AtomicU64,
    size_at: AtomicU64,
    started: Instant,
}

impl Quota {
    pub fn new(core: Arc<Core>, db: Arc<Db>) -> Quota {
        Quota {
            core,
            db,
            size: AtomicU64::new(0),
            size_at: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        }
    }

    /// The backend quota: `--quota-backend-bytes`, or etcd's default when
    /// it is 0.
    pub fn bytes(&self) -> i64 {
        let q = self.core.config().quota_backend_bytes;
        if q > 0 { q } else { DEFAULT_QUOTA_BYTES }
    }

    /// The backend's size, measured at most every 100 ms.
    fn size(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let at = self.size_at.load(Ordering::Acquire);
        if (at == u64::MAX || now.saturating_sub(at) >= 100)
            && self
                .size_at
                .compare_exchange(at, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let size = self.db.approximate_size();
            self.size.store(size, Ordering::Release);
            return size;
        }
        self.size.load(Ordering::Acquire)
    }

    /// etcd's quota check before proposing a write that costs `cost`
    /// bytes: past `--quota-backend-bytes`, this member raises a NOSPACE
    /// alarm and the write fails with "database space exceeded".
    pub async fn check(&self, cost: usize) -> Result<()> {
        if cost == 0 {
            return Ok(());
        }
        let quota = u64::try_from(self.bytes()).unwrap_or(0);
        if self.size().saturating_add(cost as u64) < quota {
            return Ok(());
        }
        // Refuse only on a fresh measurement (a defragmentation may just
        // have shrunk the backend).
        let size = self.db.approximate_size();
        self.size.store(size, Ordering::Release);
        if size.saturating_add(cost as u64) < quota {
            return Ok(());
        }
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.core.member_id(),
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.core.propose(Request::Alarm(raise)).await {
            tracing::warn!(error = %e, "could not raise the NOSPACE alarm");
        }
        Err(Error::NoSpace)
    }
}

/// Bytes a put costs against the quota beyond its key and value.
const KV_OVERHEAD: usize = 256;
/// Bytes a lease grant costs against the quota.
pub const LEASE_OVERHEAD: usize = 64;

use crate::storage::schema::alarm::parse_key;

/// The active alarms.
#[derive(Default)]
pub struct AlarmSet {
    active: Mutex<BTreeSet<(u64, i32)>>,
    nospace: AtomicBool,
    corrupt: AtomicBool,
}

impl AlarmSet {
    /// The alarms persisted in `db`.
    pub fn load(db: &Db) -> Result<AlarmSet> {
        let set = AlarmSet::default();
        let mut it = db.raw().raw_iterator_cf(db.cf(Cf::Meta));
        it.seek(crate::storage::schema::alarm::KEY_PREFIX);
        while let Some((k, _)) = it.item() {
            let Some(entry) = parse_key(k) else { break };
            set.lock().insert(entry);
            it.next();
        }
        it.status()?;
        set.refresh();
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, i32)>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the set with the alarms persisted in `db` (after a
    /// snapshot replaced the state).
    pub fn reload(&self, db: &Db) -> Result<()> {
        let fresh = AlarmSet::load(db)?;
        *self.lock() = fresh.lock().clone();
        self.refresh();
        Ok(())
    }

    fn refresh(&self) {
        let active = self.lock();
        let has = |t: AlarmType| active.iter().any(|(_, a)| *a == t as i32);
        self.nospace
            .store(has(AlarmType::Nospace), Ordering::Release);
        self.corrupt
            .store(has(AlarmType::Corrupt), Ordering::Release);
    }

    /// Activates an alarm; `false` if it already was.
    pub fn activate(&self, member: u64, alarm: i32) -> bool {
        let added = self.lock().insert((member, alarm));
        self.refresh();
        added
    }

    /// Deactivates an alarm; `false` if it was not active.
    pub fn deactivate(&self, member: u64, alarm: i32) -> bool {
        let removed = self.lock().remove(&(member, alarm));
        self.refresh();
        removed
    }

    /// Active alarms of type `alarm` (every alarm for NONE), by member.
    pub fn list(&self, alarm: i32) -> Vec<AlarmMember> {
        self.lock()
            .iter()
            .filter(|(_, a)| alarm == AlarmType::None as i32 || *a == alarm)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    pub fn nospace(&self) -> bool {
        self.nospace.load(Ordering::Acquire)
    }

    pub fn corrupt(&self) -> bool {
        self.corrupt.load(Ordering::Acquire)
    }
}

/// What a Put costs against the quota.
pub fn cost_put(r: &PutRequest) -> usize {
    KV_OVERHEAD + r.key.len() + r.value.len()
}

/// What a Txn costs: the costlier branch, nested transactions included.
pub fn cost_txn(r: &TxnRequest) -> usize {
    let branch = |ops: &[crate::proto::etcdserverpb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => cost_put(p),
                Some(Op::RequestTxn(t)) => cost_txn(t),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

/// The protobuf text form etcd puts in Status' `errors` for an alarm.
pub fn describe(a: &AlarmMember) -> String {
    let name = AlarmType::try_from(a.alarm)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| a.alarm.to_string());
    format!("memberID:{} alarm:{name} ", a.member_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::RequestOp;

    #[test]
    fn keys_round_trip_and_sets_track_types() {
        assert_eq!(
            parse_key(&crate::storage::schema::alarm::key(7, 2)),
            Some((7, 2))
        );
        assert_eq!(parse_key(b"alarm/short"), None);
        let s = AlarmSet::default();
        assert!(s.activate(1, AlarmType::Nospace as i32));
        assert!(!s.activate(1, AlarmType::Nospace as i32), "already active");
        assert!(s.nospace() && !s.corrupt());
        assert!(s.activate(2, AlarmType::Corrupt as i32));
        assert_eq!(s.list(AlarmType::None as i32).len(), 2);
        assert_eq!(s.list(AlarmType::Corrupt as i32)[0].member_id, 2);
        assert!(s.deactivate(1, AlarmType::Nospace as i32));
        assert!(!s.deactivate(1, AlarmType::Nospace as i32));
        assert!(!s.nospace() && s.corrupt());
    }

    #[test]
    fn costs_follow_etcd() {
        let put = |k: &str, v: usize| RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: k.as_bytes().to_vec().into(),
                value: vec![0; v].into(),
                ..Default::default()
            })),
        };
        let t = TxnRequest {
            success: vec![put("a", 10), put("bb", 0)],
            failure: vec![RequestOp {
                request: Some(Op::RequestTxn(TxnRequest {
                    success: vec![put("c", 1000)],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert_eq!(cost_txn(&t), 256 + 1 + 1000);
        assert_eq!(cost_txn(&TxnRequest::default()), 0);
    }
}
