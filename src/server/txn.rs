//! etcd's request semantics over the MVCC store: Range (limits, sorting,
//! filters), Put (prev_kv, ignore_value, ignore_lease), DeleteRange, and Txn
//! (compares, branches, nested transactions). Shared by the read path and the
//! applier (etcd: `server/etcdserver/txn/*.go`).
//!
//! Everything here is synchronous and deterministic: the same request on the
//! same state gives the same result on every member.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::mvcc::{KeyRange, KvRead, RangeOptions, RangeResult, WriteTxn};
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse, compare,
    range_request, request_op, response_op,
};
use crate::proto::mvccpb::KeyValue;

/// A header with only the revision set, as etcd fills inner responses.
fn rev_header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Tells whether a lease exists (the lessor, at apply time).
pub type Leases<'a> = &'a dyn Fn(i64) -> bool;

fn check_lease(leases: Leases<'_>, p: &PutRequest) -> Result<()> {
    if p.lease != 0 && !leases(p.lease) {
        return Err(Error::LeaseNotFound);
    }
    Ok(())
}

// ------------------------------------------------------------------ Range

fn is_default_ordering(r: &RangeRequest) -> bool {
    r.sort_order == range_request::SortOrder::None as i32
        || (r.sort_target == range_request::SortTarget::Key as i32
            && r.sort_order == range_request::SortOrder::Ascend as i32)
}

fn has_revision_filters(r: &RangeRequest) -> bool {
    r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
}

/// Whether a RangeStream can serve the request (etcd 3.7 rejects custom
/// orders and revision filters there).
pub fn range_stream_supported(r: &RangeRequest) -> std::result::Result<(), &'static str> {
    if !is_default_ordering(r) {
        return Err("RangeStream does not support custom sort orders");
    }
    if has_revision_filters(r) {
        return Err("RangeStream does not support revision filters");
    }
    Ok(())
}

/// The limit handed to the store: one more than asked, to learn `more`; no
/// limit when everything must be loaded to sort or filter.
fn store_limit(r: &RangeRequest) -> usize {
    if !is_default_ordering(r) || has_revision_filters(r) || r.limit <= 0 {
        return 0;
    }
    usize::try_from(r.limit)
        .ok()
        .and_then(|l| l.checked_add(1))
        .unwrap_or(0)
}

/// etcd's `executeRange`.
pub fn range(rv: &impl KvRead, r: &RangeRequest) -> Result<RangeResponse> {
    crate::metrics::METRICS
        .range_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let opts = RangeOptions {
        limit: store_limit(r),
        rev: r.revision,
        count_only: r.count_only,
        keys_only: r.keys_only && r.sort_target != range_request::SortTarget::Value as i32,
    };
    let mut rr = rv.range(KeyRange::new(&r.key, &r.range_end), &opts)?;
    filter(&mut rr, r);
    sort(&mut rr, r);
    let mut more = false;
    if r.limit > 0 && rr.kvs.len() as u64 > r.limit as u64 {
        rr.kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut rr.kvs {
            kv.value = Default::default();
        }
    }
    Ok(RangeResponse {
        header: rev_header(rr.rev),
        kvs: rr.kvs,
        more,
        count: rr.count,
    })
}

fn filter(rr: &mut RangeResult, r: &RangeRequest) {
    if r.max_mod_revision != 0 {
        rr.kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        rr.kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        rr.kvs
            .retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        rr.kvs
            .retain(|kv| kv.create_revision >= r.min_create_revision);
    }
}

fn sort(rr: &mut RangeResult, r: &RangeRequest) {
    use range_request::{SortOrder, SortTarget};
    let mut order = r.sort_order;
    if r.sort_target != SortTarget::Key as i32 && order == SortOrder::None as i32 {
        order = SortOrder::Ascend as i32;
    }
    let default = order == SortOrder::None as i32
        || (r.sort_target == SortTarget::Key as i32 && order == SortOrder::Ascend as i32);
    if default {
        return;
    }
    let cmp: fn(&KeyValue, &KeyValue) -> Ordering = match SortTarget::try_from(r.sort_target) {
        Ok(SortTarget::Key) => |a, b| a.key.cmp(&b.key),
        Ok(SortTarget::Version) => |a, b| a.version.cmp(&b.version),
        Ok(SortTarget::Create) => |a, b| a.create_revision.cmp(&b.create_revision),
        Ok(SortTarget::Mod) => |a, b| a.mod_revision.cmp(&b.mod_revision),
        Ok(SortTarget::Value) => |a, b| a.value.cmp(&b.value),
        // Rejected by request validation before reaching here.
        Err(_) => return,
    };
    if order == SortOrder::Ascend as i32 {
        rr.kvs.sort_by(cmp);
    } else if order == SortOrder::Descend as i32 {
        rr.kvs.sort_by(|a, b| cmp(b, a));
    }
}

/// etcd's `checkRange`: the revision a Range inside a txn asks for must be
/// readable before anything in the txn is applied.
fn check_range(rv: &impl KvRead, r: &RangeRequest) -> Result<()> {
    if r.revision == 0 {
        Ok(())
    } else if r.revision > rv.rev() {
        Err(Error::FutureRev)
    } else if r.revision < rv.first_rev() {
        Err(Error::Compacted)
    } else {
        Ok(())
    }
}

// ------------------------------------------------------------------ writes

/// Reads and writes a transaction can perform. Read views implement the
/// write half by refusing; they only ever run read-only transactions.
pub trait TxnView: KvRead {
    fn put(&mut self, key: &Bytes, value: &Bytes, lease: i64) -> Result<i64>;
    fn delete_range(&mut self, range: KeyRange<'_>) -> Result<(i64, i64)>;
    /// The revision the transaction started from.
    fn begin_rev(&self) -> i64;
    /// Whether the transaction changed anything so far.
    fn changed(&self) -> bool;
}

impl TxnView for WriteTxn<'_> {
    fn put(&mut self, key: &Bytes, value: &Bytes, lease: i64) -> Result<i64> {
        WriteTxn::put(self, key, value, lease)
    }
    fn delete_range(&mut self, range: KeyRange<'_>) -> Result<(i64, i64)> {
        WriteTxn::delete_range(self, range)
    }
    fn begin_rev(&self) -> i64 {
        WriteTxn::begin_rev(self)
    }
    fn changed(&self) -> bool {
        WriteTxn::changed(self)
    }
}

/// A read-only view used for read-only transactions.
pub struct ReadOnly<'a, R: KvRead>(pub &'a R);

impl<R: KvRead> KvRead for ReadOnly<'_, R> {
    fn rev(&self) -> i64 {
        self.0.rev()
    }
    fn first_rev(&self) -> i64 {
        self.0.first_rev()
    }
    fn range(&self, range: KeyRange<'_>, opts: &RangeOptions) -> Result<RangeResult> {
        self.0.range(range, opts)
    }
}

impl<R: KvRead> TxnView for ReadOnly<'_, R> {
    fn put(&mut self, _: &Bytes, _: &Bytes, _: i64) -> Result<i64> {
        Err(Error::internal("write in a read-only transaction"))
    }
    fn delete_range(&mut self, _: KeyRange<'_>) -> Result<(i64, i64)> {
        Err(Error::internal("write in a read-only transaction"))
    }
    fn begin_rev(&self) -> i64 {
        self.0.rev()
    }
    fn changed(&self) -> bool {
        false
    }
}

fn prev_kv(t: &impl KvRead, key: &[u8]) -> Result<Option<KeyValue>> {
    let rr = t.range(KeyRange::Key(key), &RangeOptions::default())?;
    Ok(rr.kvs.into_iter().next())
}

fn needs_prev(p: &PutRequest) -> bool {
    p.ignore_value || p.ignore_lease || p.prev_kv
}

/// etcd's `checkPut`: lease exists, and a key to keep value/lease from.
fn check_put(t: &impl KvRead, leases: Leases<'_>, p: &PutRequest) -> Result<Option<KeyValue>> {
    check_lease(leases, p)?;
    let prev = if needs_prev(p) {
        prev_kv(t, &p.key)?
    } else {
        None
    };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(Error::KeyNotFound);
    }
    Ok(prev)
}

fn do_put(t: &mut impl TxnView, p: &PutRequest, prev: Option<KeyValue>) -> Result<PutResponse> {
    let mut value = &p.value;
    let mut lease = p.lease;
    if let Some(prev) = &prev {
        if p.ignore_value {
            value = &prev.value;
        }
        if p.ignore_lease {
            lease = prev.lease;
        }
    }
    let rev = t.put(&p.key, value, lease)?;
    Ok(PutResponse {
        header: rev_header(rev),
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

/// A Put on its own (etcd's `txn.Put`).
pub fn put(t: &mut impl TxnView, leases: Leases<'_>, p: &PutRequest) -> Result<PutResponse> {
    let prev = check_put(t, leases, p)?;
    do_put(t, p, prev)
}

/// A DeleteRange (etcd's `deleteRange`).
pub fn delete_range(t: &mut impl TxnView, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    let range = KeyRange::new(&d.key, &d.range_end);
    let prev_kvs = if d.prev_kv {
        t.range(range, &RangeOptions::default())?.kvs
    } else {
        Vec::new()
    };
    let (deleted, rev) = t.delete_range(range)?;
    Ok(DeleteRangeResponse {
        header: rev_header(rev),
        deleted,
        prev_kvs,
    })
}

// ------------------------------------------------------------------ Txn

/// Whether every op of both branches is a Range (etcd's `IsTxnReadonly`).
pub fn is_txn_read_only(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(op.request, Some(request_op::Request::RequestRange(_))))
}

/// Whether a read-only txn may skip the linearizable read barrier.
pub fn is_txn_serializable(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(
        |op| matches!(&op.request, Some(request_op::Request::RequestRange(rr)) if rr.serializable),
    )
}

/// Evaluates all compares up front, depth first, at the state before the
/// transaction: `path[0]` is this txn's outcome, followed by the paths of
/// the nested txns in the chosen branch, in order (etcd's `compareToPath`).
fn compare_to_path(rv: &impl KvRead, rt: &TxnRequest, path: &mut Vec<bool>) {
    let ok = rt.compare.iter().all(|c| apply_compare(rv, c));
    path.push(ok);
    for op in branch(rt, ok) {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            compare_to_path(rv, inner, path);
        }
    }
}

fn branch(rt: &TxnRequest, ok: bool) -> &[RequestOp] {
    if ok { &rt.success } else { &rt.failure }
}

fn apply_compare(rv: &impl KvRead, c: &Compare) -> bool {
    let rr = match rv.range(
        KeyRange::new(&c.key, &c.range_end),
        &RangeOptions::default(),
    ) {
        Ok(rr) => rr,
        Err(_) => return false,
    };
    if rr.kvs.is_empty() {
        if c.target == compare::CompareTarget::Value as i32 {
            // A missing key has no value to compare, not even an empty one.
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    rr.kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let v: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(v)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&match c.target_union {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&match c.target_union {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Version) => kv.version.cmp(&match c.target_union {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&match c.target_union {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        // etcd leaves the result at "equal" for a target it doesn't know.
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        // ... and treats an unknown result as true.
        Err(_) => true,
    }
}

/// Validates the chosen branches against the pre-transaction state (etcd's
/// `checkTxn`), so that execution cannot fail halfway. Returns how many
/// path entries the nested txns consumed.
fn check_txn(
    rv: &impl KvRead,
    leases: Leases<'_>,
    rt: &TxnRequest,
    path: &[bool],
) -> Result<usize> {
    let mut used = 0;
    for op in branch(rt, path[0]) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => check_range(rv, r)?,
            Some(request_op::Request::RequestPut(p)) => {
                check_put(rv, leases, p)?;
            }
            Some(request_op::Request::RequestDeleteRange(_)) | None => {}
            Some(request_op::Request::RequestTxn(inner)) => {
                let n = check_txn(rv, leases, inner, &path[1 + used..])?;
                used += n + 1;
            }
        }
    }
    Ok(used)
}

/// Runs the chosen branch; returns its responses and how many path entries
/// the nested txns consumed (etcd's `executeTxn`).
fn execute_txn(
    t: &mut impl TxnView,
    rt: &TxnRequest,
    path: &[bool],
) -> Result<(Vec<ResponseOp>, usize)> {
    let ops = branch(rt, path[0]);
    let mut responses = Vec::with_capacity(ops.len());
    let mut used = 0;
    for op in ops {
        let resp = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                Some(response_op::Response::ResponseRange(range(t, r)?))
            }
            Some(request_op::Request::RequestPut(p)) => {
                let prev = if needs_prev(p) {
                    prev_kv(t, &p.key)?
                } else {
                    None
                };
                Some(response_op::Response::ResponsePut(do_put(t, p, prev)?))
            }
            Some(request_op::Request::RequestDeleteRange(d)) => Some(
                response_op::Response::ResponseDeleteRange(delete_range(t, d)?),
            ),
            Some(request_op::Request::RequestTxn(inner)) => {
                let sub = &path[1 + used..];
                let (inner_resps, n) = execute_txn(t, inner, sub)?;
                used += n + 1;
                // etcd leaves the revision of nested txn headers at zero.
                Some(response_op::Response::ResponseTxn(TxnResponse {
                    header: Some(ResponseHeader::default()),
                    succeeded: sub[0],
                    responses: inner_resps,
                }))
            }
            None => None,
        };
        responses.push(ResponseOp { response: resp });
    }
    Ok((responses, used))
}

/// A Txn (etcd's `txn.Txn`). Compares and checks run first, against the
/// state before the transaction; then the chosen branch runs.
pub fn txn(t: &mut impl TxnView, leases: Leases<'_>, rt: &TxnRequest) -> Result<TxnResponse> {
    let mut path = Vec::new();
    compare_to_path(t, rt, &mut path);
    check_txn(t, leases, rt, &path)?;
    let (responses, _) = execute_txn(t, rt, &path)?;
    let rev = t.begin_rev() + i64::from(t.changed());
    Ok(TxnResponse {
        header: rev_header(rev),
        succeeded: path[0],
        responses,
    })
}

#[cfg(test)]
mod tests;
