//! The lessor: leases, their TTLs and deadlines (etcd: `server/lease`).
//!
//! Every member keeps the same lease table (id, granted TTL, checkpointed
//! remaining TTL), changed only by applied raft entries. Only the leader
//! (the *primary* lessor) runs deadlines: it renews on keep-alive, finds
//! expired leases for the server to revoke through raft, and schedules
//! checkpoints of remaining TTLs through raft so a restart or a new leader
//! resumes a lease where it was instead of resetting it.
//!
//! Time is an argument (`now`) everywhere: the lessor has no clock and no
//! thread, so tests drive it deterministically. Which keys are attached to
//! a lease is not kept here but in RocksDB (`lease` column family, written
//! by the applier), so memory does not grow with the number of leased keys.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub type LeaseId = i64;

/// No lease.
pub const NO_LEASE: LeaseId = 0;
/// Largest TTL a lease may be granted with, in seconds (etcd: `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// How long after proposing the revocation of an expired lease the lessor
/// tries again if the lease is still there (etcd: `expiredLeaseRetryInterval`).
pub const EXPIRED_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
struct Lease {
    /// Granted TTL in seconds (after clamping to the minimum).
    ttl: i64,
    /// Remaining TTL at the last checkpoint, in seconds; 0 = none.
    remaining_ttl: i64,
    /// When it expires; only set on the primary.
    expiry: Option<Instant>,
    /// When its remaining TTL should next be checkpointed (primary only).
    next_checkpoint: Option<Instant>,
    /// Reported expired: its revocation is under way, keep-alives fail.
    expired: bool,
}

/// The lease table of one member.
#[derive(Debug)]
pub struct Lessor {
    leases: HashMap<LeaseId, Lease>,
    /// (deadline, id) for every lease with a deadline.
    expiries: BTreeSet<(Instant, LeaseId)>,
    checkpoints: BTreeSet<(Instant, LeaseId)>,
    primary: bool,
    min_ttl: i64,
    checkpoint_interval: Duration,
}

impl Lessor {
    /// `min_ttl` is etcd's minimum lease TTL (1.5 election timeouts, rounded
    /// up to whole seconds).
    pub fn new(min_ttl: i64, checkpoint_interval: Duration) -> Lessor {
        Lessor {
            leases: HashMap::new(),
            expiries: BTreeSet::new(),
            checkpoints: BTreeSet::new(),
            primary: false,
            min_ttl,
            checkpoint_interval,
        }
    }

    /// Forgets every lease (before loading a replaced state); the role
    /// stays as it was.
    pub fn clear(&mut self) {
        self.leases.clear();
        self.expiries.clear();
        self.checkpoints.clear();
    }

    /// Adds a lease read from storage at startup.
    pub fn load(&mut self, id: LeaseId, ttl: i64, remaining_ttl: i64) {
        self.leases.insert(
            id,
            Lease {
                ttl,
                remaining_ttl,
                expiry: None,
                next_checkpoint: None,
                expired: false,
            },
        );
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Every lease id, ascending.
    pub fn ids(&self) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The TTL a grant of `ttl` seconds gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl)
    }

    /// Applies a grant; returns the effective TTL.
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) -> Result<i64> {
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExist);
        }
        let ttl = self.effective_ttl(ttl);
        self.leases.insert(
            id,
            Lease {
                ttl,
                remaining_ttl: 0,
                expiry: None,
                next_checkpoint: None,
                expired: false,
            },
        );
        if self.primary {
            self.refresh(id, now, Duration::ZERO);
        }
        Ok(ttl)
    }

    /// Applies a revocation (the server deletes the attached keys).
    pub fn revoke(&mut self, id: LeaseId) -> Result<()> {
        let l = self.leases.remove(&id).ok_or(Error::LeaseNotFound)?;
        if let Some(e) = l.expiry {
            self.expiries.remove(&(e, id));
        }
        if let Some(c) = l.next_checkpoint {
            self.checkpoints.remove(&(c, id));
        }
        Ok(())
    }

    /// Applies a checkpoint of a lease's remaining TTL.
    pub fn checkpoint(&mut self, id: LeaseId, remaining_ttl: i64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.remaining_ttl = remaining_ttl;
        }
    }

    /// The granted TTL and checkpointed remaining TTL, for persisting.
    pub fn record(&self, id: LeaseId) -> Option<(i64, i64)> {
        self.leases.get(&id).map(|l| (l.ttl, l.remaining_ttl))
    }

    /// Renews a lease on keep-alive: its deadline becomes now + TTL.
    /// Returns the granted TTL and whether a checkpointed remaining TTL
    /// should now be cleared (through raft).
    pub fn renew(&mut self, id: LeaseId, now: Instant) -> Result<(i64, bool)> {
        if !self.primary {
            return Err(Error::NotLeader);
        }
        let l = self.leases.get(&id).ok_or(Error::LeaseNotFound)?;
        if l.expired || l.expiry.is_some_and(|e| e <= now) {
            // Expired: its revocation is under way.
            return Err(Error::LeaseNotFound);
        }
        let (ttl, clear) = (l.ttl, l.remaining_ttl > 0);
        if let Some(l) = self.leases.get_mut(&id) {
            l.remaining_ttl = 0;
        }
        self.refresh(id, now, Duration::ZERO);
        Ok((ttl, clear))
    }

    /// Remaining and granted TTL in seconds, as LeaseTimeToLive reports
    /// them; `None` for an unknown lease.
    pub fn time_to_live(&self, id: LeaseId, now: Instant) -> Option<(i64, i64)> {
        let l = self.leases.get(&id)?;
        let remaining = match l.expiry {
            Some(e) => e.saturating_duration_since(now).as_secs() as i64,
            None if l.remaining_ttl > 0 => l.remaining_ttl,
            None => l.ttl,
        };
        Some((remaining, l.ttl))
    }

    /// Becomes the primary: every lease gets a deadline of now + its
    /// remaining (or full) TTL + `extend` (etcd: `Promote`).
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        let ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        for id in ids {
            self.refresh(id, now, extend);
        }
    }

    /// Stops running deadlines (lost leadership).
    pub fn demote(&mut self) {
        self.primary = false;
        self.expiries.clear();
        self.checkpoints.clear();
        for l in self.leases.values_mut() {
            l.expiry = None;
            l.next_checkpoint = None;
        }
    }

    fn refresh(&mut self, id: LeaseId, now: Instant, extend: Duration) {
        let interval = self.checkpoint_interval;
        let Some(l) = self.leases.get_mut(&id) else {
            return;
        };
        let secs = if l.remaining_ttl > 0 {
            l.remaining_ttl
        } else {
            l.ttl
        };
        let expiry = now + Duration::from_secs(secs.max(0) as u64) + extend;
        l.expired = false;
        if let Some(old) = l.expiry.replace(expiry) {
            self.expiries.remove(&(old, id));
        }
        self.expiries.insert((expiry, id));
        // Only leases that outlive a checkpoint interval need checkpoints.
        if !interval.is_zero() && Duration::from_secs(l.ttl.max(0) as u64) > interval {
            let at = now + interval;
            if let Some(old) = l.next_checkpoint.replace(at) {
                self.checkpoints.remove(&(old, id));
            }
            self.checkpoints.insert((at, id));
        }
    }

    /// Up to `limit` leases whose deadline has passed. Each is given
    /// [`EXPIRED_RETRY`] more before it is reported again, in case its
    /// revocation does not go through.
    pub fn expired(&mut self, now: Instant, limit: usize) -> Vec<LeaseId> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(&(at, id)) = self.expiries.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.expiries.remove(&(at, id));
            let retry = now + EXPIRED_RETRY;
            if let Some(l) = self.leases.get_mut(&id) {
                l.expiry = Some(retry);
                l.expired = true;
                self.expiries.insert((retry, id));
                out.push(id);
            }
        }
        out
    }

    /// Up to `limit` leases due for a checkpoint, with their remaining TTL
    /// in seconds (rounded up).
    pub fn due_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(LeaseId, i64)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(&(at, id)) = self.checkpoints.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.checkpoints.remove(&(at, id));
            let interval = self.checkpoint_interval;
            let Some(l) = self.leases.get_mut(&id) else {
                continue;
            };
            l.next_checkpoint = None;
            let Some(expiry) = l.expiry else { continue };
            let left = expiry.saturating_duration_since(now);
            let remaining = left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0);
            // Still more than an interval to go: look again then.
            if Duration::from_secs(remaining.max(0) as u64) > interval {
                let next = now + interval;
                l.next_checkpoint = Some(next);
                self.checkpoints.insert((next, id));
            }
            if remaining < l.ttl {
                out.push((id, remaining));
            }
        }
        out
    }

    /// The earliest deadline or checkpoint, for the server's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let e = self.expiries.first().map(|(t, _)| *t);
        let c = self.checkpoints.first().map(|(t, _)| *t);
        match (e, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The lessor shared by the applier, keep-alives and the expiry timer.
pub type SharedLessor = std::sync::Arc<std::sync::Mutex<Lessor>>;

/// Locks a shared lessor. Every critical section leaves it consistent, so
/// a poisoned lock (a panic elsewhere) is still usable.
pub fn lock(l: &SharedLessor) -> std::sync::MutexGuard<'_, Lessor> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
