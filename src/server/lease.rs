//! Leases on the server side: grant and revoke go through raft; keep-alive
//! and time-to-live are answered by the leader's lessor from memory; a
//! timer on the leader revokes expired leases through raft (at most
//! [`REVOKES_PER_SECOND`]) and checkpoints remaining TTLs through raft
//! (etcd: `v3_server.go` `LeaseGrant`/`LeaseRenew`, `server.go`
//! `revokeExpiredLeases`, `lessor.go` checkpoint scheduling).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::alarm::Quota;
use super::apply::Response;
use super::core::{Core, unexpected};
use crate::error::{Error, Result};
use crate::lease::{self, Lessor, MAX_LEASE_TTL, SharedLessor};
use crate::mvcc::Store;
use crate::peer::LeaderClient;
use crate::proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::oxcdpb::internal_raft_request::Request;
use crate::storage::Cf;

/// How fast expired leases are revoked, at most (etcd: `leaseRevokeRate`),
/// so that a mass expiry cannot starve client writes.
pub const REVOKES_PER_SECOND: usize = 1000;
/// How often the lease timer looks at deadlines.
const TICK: Duration = Duration::from_millis(100);
/// Most checkpoints per raft entry (etcd: `maxLeaseCheckpointBatchSize`).
const CHECKPOINT_BATCH: usize = 1000;

/// etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds
/// rounded up (2 s with the defaults).
pub fn min_ttl(heartbeat: Duration, election: Duration) -> i64 {
    let hb = heartbeat.as_millis().max(1);
    let ticks = election.as_millis() / hb;
    let ms = (3 * ticks / 2) * hb;
    ms.div_ceil(1000) as i64
}

/// Loads the lease table written by earlier applies.
pub fn load(db: &crate::storage::Db, lessor: &mut Lessor) -> Result<()> {
    let mut it = db.raw().raw_iterator_cf(db.cf(Cf::Lease));
    it.seek([crate::storage::schema::lease::LEASE]);
    while let Some((k, v)) = it.item() {
        if k.first() != Some(&crate::storage::schema::lease::LEASE) {
            break;
        }
        let id = crate::storage::schema::lease::decode_id(k)
            .ok_or_else(|| Error::internal("corrupt lease key"))?;
        let (ttl, remaining) = crate::storage::schema::lease::decode_record(v)
            .ok_or_else(|| Error::internal("corrupt lease record"))?;
        lessor.load(id, ttl, remaining);
        it.next();
    }
    Ok(it.status()?)
}

/// The lease facade: the lessor, the leader's client for forwarding, and
/// the quota check for grants.
pub struct Leases {
    core: Arc<Core>,
    store: Arc<Store>,
    lessor: SharedLessor,
    leader: Arc<LeaderClient>,
    quota: Arc<Quota>,
}

impl Leases {
    pub fn new(
        core: Arc<Core>,
        store: Arc<Store>,
        lessor: SharedLessor,
        leader: Arc<LeaderClient>,
        quota: Arc<Quota>,
    ) -> Leases {
        Leases {
            core,
            store,
            lessor,
            leader,
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

    /// Keeps the lessor's role in step with raft leadership.
    fn sync_lease_role(&self) {
        let leader = self.core.leader() == self.core.member_id();
        let mut l = lease::lock(&self.lessor);
        if leader && !l.is_primary() {
            l.promote(Instant::now(), self.core.config().election_timeout);
        } else if !leader && l.is_primary() {
            l.demote();
        }
    }

    /// LeaseGrant: an id of 0 gets a fresh positive one.
    pub async fn lease_grant(&self, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        if r.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        while r.id == lease::NO_LEASE {
            r.id = (self.core.next_id() & (i64::MAX as u64)) as i64;
        }
        match self.core.propose(Request::LeaseGrant(r)).await? {
            Response::LeaseGrant(g) => Ok(g),
            other => Err(unexpected(other)),
        }
    }

    pub async fn lease_revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        match self.core.propose(Request::LeaseRevoke(r)).await? {
            Response::LeaseRevoke(g) => Ok(g),
            other => Err(unexpected(other)),
        }
    }

    /// Renews a lease (one keep-alive); returns its granted TTL. Answered
    /// from memory, without waiting for raft, unless the lease is unknown:
    /// then a grant may still be on its way through the log, so it waits
    /// (at most a second) for the applier to catch up and looks again.
    pub async fn lease_renew(&self, id: i64) -> Result<i64> {
        if !self.core.has_leader() {
            return Err(Error::NoLeader);
        }
        self.sync_lease_role();
        if !self.is_leader() {
            return self.forward_renew(id).await;
        }
        match self.try_renew(id) {
            Err(Error::LeaseNotFound) => {
                let commit = self.core.raft().status.commit.load(Ordering::Acquire);
                let mut applied = self.core.applied();
                let caught_up = tokio::time::timeout(
                    Duration::from_secs(1),
                    applied.wait_for(|a| *a >= commit),
                )
                .await;
                if caught_up.is_err() {
                    return Err(Error::TimeoutWaitAppliedIndex);
                }
                self.try_renew(id)
            }
            other => other,
        }
    }

    fn try_renew(&self, id: i64) -> Result<i64> {
        let (ttl, clear) = lease::lock(&self.lessor).renew(id, Instant::now())?;
        if clear {
            // Renewed: a checkpointed remaining TTL no longer applies.
            self.checkpoint_later(vec![LeaseCheckpoint {
                id,
                remaining_ttl: 0,
            }]);
        }
        Ok(ttl)
    }

    fn checkpoint_later(&self, checkpoints: Vec<LeaseCheckpoint>) {
        let core = self.core.clone();
        tokio::spawn(async move {
            let req = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
            if let Err(e) = core.propose(req).await {
                tracing::warn!(error = %e, "failed to checkpoint leases");
            }
        });
    }

    fn is_leader(&self) -> bool {
        self.core.leader() == self.core.member_id()
    }

    /// Renews a lease on the leader: only the leader's lessor knows
    /// deadlines, so other members forward keep-alives there.
    async fn forward_renew(&self, id: i64) -> Result<i64> {
        self.leader.lease_renew(id).await
    }

    /// LeaseTimeToLive, answered by the leader (forwarded there from
    /// other members).
    pub async fn lease_time_to_live(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        self.sync_lease_role();
        if self.core.has_leader() && !self.is_leader() {
            return self.leader.lease_time_to_live(r).await;
        }
        self.local_time_to_live(r)
    }

    /// LeaseTimeToLive from this member's lessor: an unknown lease is not
    /// an error but TTL -1.
    fn local_time_to_live(&self, r: &LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        let Some((ttl, granted)) = lease::lock(&self.lessor).time_to_live(r.id, Instant::now())
        else {
            return Ok(LeaseTimeToLiveResponse {
                id: r.id,
                ttl: -1,
                ..Default::default()
            });
        };
        let mut keys = Vec::new();
        if r.keys {
            let db = self.store.db();
            let prefix = crate::storage::schema::lease::attached_prefix(r.id);
            let mut it = db.raw().raw_iterator_cf(db.cf(Cf::Lease));
            it.seek(&prefix);
            while let Some(k) = it.key() {
                if !k.starts_with(&prefix) {
                    break;
                }
                keys.push(bytes::Bytes::copy_from_slice(&k[prefix.len()..]));
                it.next();
            }
            it.status()?;
        }
        Ok(LeaseTimeToLiveResponse {
            header: None,
            id: r.id,
            ttl,
            granted_ttl: granted,
            keys,
        })
    }

    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: None,
            leases: lease::lock(&self.lessor)
                .ids()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        }
    }
}

/// The leader's lease timer: revokes expired leases and checkpoints
/// remaining TTLs through raft. Ends when the facade is dropped.
pub async fn run_timer(leases: Weak<Leases>) {
    let per_tick = (REVOKES_PER_SECOND as u128 * TICK.as_millis() / 1000).max(1) as usize;
    loop {
        tokio::time::sleep(TICK).await;
        let Some(s) = leases.upgrade() else { return };
        s.sync_lease_role();
        let now = Instant::now();
        let (expired, checkpoints) = {
            let mut l = lease::lock(&s.lessor);
            if !l.is_primary() {
                continue;
            }
            (
                l.expired(now, per_tick),
                l.due_checkpoints(now, CHECKPOINT_BATCH),
            )
        };
        for id in expired {
            let core = s.core.clone();
            tokio::spawn(async move {
                match core
                    .propose(Request::LeaseRevoke(LeaseRevokeRequest { id }))
                    .await
                {
                    Ok(_) | Err(Error::LeaseNotFound) => {}
                    Err(e) => {
                        tracing::warn!(lease_id = id, error = %e, "failed to revoke expired lease")
                    }
                }
            });
        }
        if !checkpoints.is_empty() {
            s.checkpoint_later(
                checkpoints
                    .into_iter()
                    .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
                    .collect(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_ttl_follows_the_election_timeout() {
        let ms = Duration::from_millis;
        assert_eq!(min_ttl(ms(100), ms(1000)), 2);
        assert_eq!(min_ttl(ms(100), ms(500)), 1);
        assert_eq!(min_ttl(ms(100), ms(3000)), 5);
        assert_eq!(min_ttl(ms(250), ms(1250)), 2);
    }
}
