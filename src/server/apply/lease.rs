//! Applying lease requests: grant, revoke (deleting every attached key in
//! one revision) and checkpoints of remaining TTLs (etcd: `apply/apply.go`
//! `LeaseGrant`, `LeaseRevoke`, `LeaseCheckpoint`); and keeping the
//! `lease` column family's lists of attached keys in step with the writes.

use std::time::Instant;

use super::{Applier, Response};
use crate::error::{Error, Result};
use crate::lease;
use crate::mvcc::{Batch, KeyRange};
use crate::proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse,
};
use crate::storage::schema;

impl Applier {
    pub(super) fn apply_lease_grant(
        &self,
        batch: &mut Batch,
        g: &LeaseGrantRequest,
    ) -> Result<Response> {
        let db = self.store.db().clone();
        let ttl = lease::lock(&self.lessor).grant(g.id, g.ttl, Instant::now())?;
        batch.aux_put(
            &db,
            schema::lease::lease(g.id),
            schema::lease::encode_record(ttl, 0),
        );
        Ok(Response::LeaseGrant(LeaseGrantResponse {
            header: Self::header(batch),
            id: g.id,
            ttl,
            error: String::new(),
        }))
    }

    pub(super) fn apply_lease_revoke(
        &self,
        batch: &mut Batch,
        r: &LeaseRevokeRequest,
    ) -> Result<Response> {
        let db = self.store.db().clone();
        if !lease::lock(&self.lessor).contains(r.id) {
            return Err(Error::LeaseNotFound);
        }
        // Every attached key goes in one revision, in key order.
        let prefix = schema::lease::attached_prefix(r.id);
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
        batch.aux_delete(&db, schema::lease::lease(r.id));
        lease::lock(&self.lessor).revoke(r.id)?;
        Ok(Response::LeaseRevoke(LeaseRevokeResponse {
            header: Self::header(batch),
        }))
    }

    pub(super) fn apply_lease_checkpoint(
        &self,
        batch: &mut Batch,
        c: &LeaseCheckpointRequest,
    ) -> Response {
        let db = self.store.db().clone();
        let mut lessor = lease::lock(&self.lessor);
        for cp in &c.checkpoints {
            lessor.checkpoint(cp.id, cp.remaining_ttl);
            if let Some((ttl, remaining)) = lessor.record(cp.id) {
                batch.aux_put(
                    &db,
                    schema::lease::lease(cp.id),
                    schema::lease::encode_record(ttl, remaining),
                );
            }
        }
        Response::LeaseCheckpoint
    }

    /// Moves keys between leases' attachment lists (in the `lease` CF) as
    /// the last request's writes changed their leases.
    pub(super) fn record_lease_changes(&self, batch: &mut Batch) {
        let db = self.store.db().clone();
        for ch in batch.take_lease_changes() {
            if ch.old != 0 {
                batch.aux_delete(&db, schema::lease::attached(ch.old, &ch.key));
            }
            if ch.new != 0 {
                batch.aux_put(&db, schema::lease::attached(ch.new, &ch.key), Vec::new());
            }
        }
    }
}
