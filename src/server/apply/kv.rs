//! Applying KV requests: Put, DeleteRange, Txn and Compaction (etcd:
//! `apply/apply.go` `Put`, `DeleteRange`, `Txn`, `Compaction`), with
//! etcd's semantics from `server::txn`.

use super::{Applier, ApplyError, Response};
use crate::error::Result;
use crate::mvcc::{Batch, WriteTxn};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, PutRequest, ResponseHeader,
    TxnRequest,
};
use crate::server::txn;

impl Applier {
    pub(super) fn apply_put(&self, batch: &mut Batch, p: &PutRequest) -> Result<Response> {
        let db = self.store.db().clone();
        let leases = |id: i64| crate::lease::lock(&self.lessor).contains(id);
        let mut t = batch.txn(&db);
        let r = txn::put(&mut t, &leases, p);
        finish(t, r).map(Response::Put)
    }

    pub(super) fn apply_delete_range(
        &self,
        batch: &mut Batch,
        d: &DeleteRangeRequest,
    ) -> Result<Response> {
        let db = self.store.db().clone();
        let mut t = batch.txn(&db);
        let r = txn::delete_range(&mut t, d);
        finish(t, r).map(Response::DeleteRange)
    }

    pub(super) fn apply_txn(&self, batch: &mut Batch, rt: &TxnRequest) -> Result<Response> {
        let db = self.store.db().clone();
        let leases = |id: i64| crate::lease::lock(&self.lessor).contains(id);
        let mut t = batch.txn(&db);
        let r = txn::txn(&mut t, &leases, rt);
        finish(t, r).map(Response::Txn)
    }

    pub(super) fn apply_compaction(
        &self,
        batch: &mut Batch,
        c: &CompactionRequest,
    ) -> std::result::Result<Response, ApplyError> {
        batch.compact(c.revision)?;
        Ok(Response::Compact(CompactionResponse {
            header: Some(ResponseHeader {
                revision: batch.current_rev(),
                ..Default::default()
            }),
        }))
    }
}

/// Keeps a transaction's writes if it succeeded, drops them if not.
fn finish<T>(t: WriteTxn<'_>, r: Result<T>) -> Result<T> {
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
