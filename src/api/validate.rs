//! Request checks done before anything is proposed or read, with etcd's
//! errors (etcd: `server/etcdserver/api/v3rpc/key.go`).

use std::cmp::Ordering;
use std::collections::HashSet;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, range_request,
    request_op::Request,
};

pub fn check_range_request(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if range_request::SortOrder::try_from(r.sort_order).is_err()
        || range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put_request(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete_request(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// Op counts, empty keys and every nested request; nested txns get the op
/// budget left over by their parent.
pub fn check_txn_request(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_request_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<()> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range_request(r),
        Some(Request::RequestPut(r)) => check_put_request(r),
        Some(Request::RequestDeleteRange(r)) => check_delete_request(r),
        Some(Request::RequestTxn(r)) => check_txn_request(r, max_txn_ops),
        None => Err(Error::KeyNotFound),
    }
}

/// A key interval as etcd's duplicate check sees it: `end` empty means
/// unbounded; a `range_end` is taken literally (so `"\0"` gives an
/// interval that overlaps nothing, exactly as in etcd).
#[derive(Debug, Clone)]
struct Interval {
    begin: Bytes,
    end: Bytes,
}

/// Byte order in which the empty string is greater than every other.
fn affine_cmp(a: &[u8], b: &[u8]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

fn point_end(k: &[u8]) -> Vec<u8> {
    let mut e = k.to_vec();
    e.push(0);
    e
}

/// Whether the point interval `[k, k\0)` overlaps `iv`.
fn overlaps_point(iv: &Interval, k: &[u8]) -> bool {
    let end = point_end(k);
    let left = affine_cmp(k, &iv.begin).is_lt() && affine_cmp(&end, &iv.begin).is_le();
    let right = affine_cmp(k, &iv.end).is_ge();
    !left && !right
}

/// Whether `iv` overlaps `[\0, +inf)`: which nested deletes a parent keeps.
fn overlaps_everything(iv: &Interval) -> bool {
    let (qb, qe): (&[u8], &[u8]) = (b"\x00", b"");
    let left = affine_cmp(qb, &iv.begin).is_lt() && affine_cmp(qe, &iv.begin).is_le();
    let right = affine_cmp(qb, &iv.end).is_ge();
    !left && !right
}

fn hits(dels: &[Interval], k: &[u8]) -> bool {
    dels.iter().any(|iv| overlaps_point(iv, k))
}

/// etcd's `checkIntervals`: no key may be written twice in one branch (two
/// puts, or a put inside a delete range), also across nested txns; the two
/// branches of a nested txn may put the same key.
pub fn check_intervals(reqs: &[RequestOp]) -> Result<()> {
    intervals(reqs).map(|_| ())
}

fn intervals(reqs: &[RequestOp]) -> Result<(HashSet<Bytes>, Vec<Interval>)> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(if d.range_end.is_empty() {
                Interval {
                    begin: d.key.clone(),
                    end: Bytes::from(point_end(&d.key)),
                }
            } else {
                Interval {
                    begin: d.key.clone(),
                    end: d.range_end.clone(),
                }
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Bytes> = HashSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(Error::DuplicateKey);
            }
            if hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then.into_iter().filter(overlaps_everything));
        dels.extend(dels_else.into_iter().filter(overlaps_everything));
    }
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: Bytes::copy_from_slice(k.as_bytes()),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::copy_from_slice(k.as_bytes()),
                range_end: Bytes::copy_from_slice(end.as_bytes()),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    #[test]
    fn duplicate_puts_and_puts_under_deletes_are_rejected() {
        assert_eq!(
            check_intervals(&[put("a"), put("a")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_intervals(&[put("b"), del("a", "c")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_intervals(&[del("b", ""), put("b")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_intervals(&[put("a"), del("b", "c"), del("b", "d")]),
            Ok(())
        );
        assert_eq!(
            check_intervals(&[put("c"), del("a", "c")]),
            Ok(()),
            "end is exclusive"
        );
        // A literal "\0" end makes an inverted interval that overlaps nothing.
        assert_eq!(check_intervals(&[put("b"), del("a", "\0")]), Ok(()));
    }

    #[test]
    fn nested_txns_follow_etcds_rules() {
        // Both branches of one nested txn may put the same key...
        assert_eq!(
            check_intervals(&[txn(vec![put("a")], vec![put("a")])]),
            Ok(())
        );
        // ...but not a key the outer level puts, or one a sibling puts.
        assert_eq!(
            check_intervals(&[put("a"), txn(vec![put("a")], vec![])]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_intervals(&[txn(vec![put("a")], vec![]), txn(vec![], vec![put("a")])]),
            Err(Error::DuplicateKey)
        );
        // Deletes in a nested txn conflict with outer puts.
        assert_eq!(
            check_intervals(&[txn(vec![del("a", "z")], vec![]), put("m")]),
            Err(Error::DuplicateKey)
        );
    }

    #[test]
    fn txn_op_budget_and_empty_ops() {
        let big = TxnRequest {
            success: (0..129).map(|i| put(&format!("k{i}"))).collect(),
            ..Default::default()
        };
        assert_eq!(check_txn_request(&big, 128), Err(Error::TooManyOps));
        let nested = TxnRequest {
            success: vec![txn(vec![put("x")], vec![])],
            compare: (0..128)
                .map(|_| Compare {
                    key: Bytes::from_static(b"k"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(check_txn_request(&nested, 128), Err(Error::TooManyOps));
        let empty_op = TxnRequest {
            success: vec![RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(check_txn_request(&empty_op, 128), Err(Error::KeyNotFound));
        let empty_compare = TxnRequest {
            compare: vec![Compare::default()],
            ..Default::default()
        };
        assert_eq!(check_txn_request(&empty_compare, 128), Err(Error::EmptyKey));
    }

    #[test]
    fn range_checks() {
        let mut r = RangeRequest::default();
        assert_eq!(check_range_request(&r), Err(Error::EmptyKey));
        r.key = Bytes::from_static(b"a");
        assert_eq!(check_range_request(&r), Ok(()));
        r.sort_order = 3;
        assert_eq!(check_range_request(&r), Err(Error::InvalidSortOption));
        r.sort_order = 0;
        r.sort_target = 5;
        assert_eq!(check_range_request(&r), Err(Error::InvalidSortOption));
    }
}
