use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::mvcc::Store;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::storage::Db;

/// No lease exists (these tests grant none; lease tests run through the
/// applier).
const NO_LEASES: fn(i64) -> bool = |_| false;

struct T {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    store: Store,
}

fn open() -> T {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let store = Store::open(db.clone()).unwrap();
    T {
        _dir: dir,
        db,
        store,
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    }
}

fn range_req(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(k, v))),
    }
}

fn op_range(k: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_req(k, ""))),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        key: b(k),
        target: target as i32,
        result: result as i32,
        target_union: Some(u),
        ..Default::default()
    }
}

impl T {
    /// Applies one write the way the applier does: all or nothing.
    fn write<R>(&self, f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R>) -> Result<R> {
        let mut batch = self.store.begin_batch();
        let mut t = batch.txn(&self.db);
        let r = f(&mut t);
        if r.is_ok() {
            t.end();
        } else {
            t.abort();
        }
        self.store.commit(batch).unwrap();
        r
    }

    fn put(&self, k: &str, v: &str) -> PutResponse {
        self.write(|t| put(t, &NO_LEASES, &put_req(k, v))).unwrap()
    }

    fn range(&self, r: &RangeRequest) -> RangeResponse {
        range(&self.store.read(), r).unwrap()
    }

    fn keys(&self, r: &RangeRequest) -> Vec<String> {
        self.range(r)
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
            .collect()
    }
}

#[test]
fn put_options_follow_etcd() {
    let t = open();
    assert_eq!(t.put("a", "1").header.unwrap().revision, 2);
    // A lease that was never granted.
    let mut p = put_req("a", "x");
    p.lease = 7;
    assert_eq!(
        t.write(|w| put(w, &NO_LEASES, &p)),
        Err(Error::LeaseNotFound)
    );
    // ignore_value on a missing key.
    let p = PutRequest {
        key: b("missing"),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(t.write(|w| put(w, &NO_LEASES, &p)), Err(Error::KeyNotFound));
    assert_eq!(t.store.current_rev(), 2, "failed puts change nothing");
    // ignore_value keeps the value; prev_kv returns the old state.
    let p = PutRequest {
        key: b("a"),
        ignore_value: true,
        prev_kv: true,
        ..Default::default()
    };
    let resp = t.write(|w| put(w, &NO_LEASES, &p)).unwrap();
    assert_eq!(resp.header.unwrap().revision, 3);
    let prev = resp.prev_kv.unwrap();
    assert_eq!(
        (prev.value.as_ref(), prev.mod_revision, prev.version),
        (&b"1"[..], 2, 1)
    );
    let now = &t.range(&range_req("a", "")).kvs[0];
    assert_eq!(
        (now.value.as_ref(), now.version, now.create_revision),
        (&b"1"[..], 2, 2)
    );
    // prev_kv of a new key is absent.
    let mut p = put_req("new", "v");
    p.prev_kv = true;
    assert_eq!(t.write(|w| put(w, &NO_LEASES, &p)).unwrap().prev_kv, None);
}

#[test]
fn range_sorts_filters_limits_and_counts() {
    let t = open();
    t.put("c", "1"); // 2
    t.put("a", "3"); // 3
    t.put("b", "2"); // 4
    t.put("c", "0"); // 5
    let all = range_req("a", "\0");

    let mut r = all.clone();
    r.limit = 2;
    let resp = t.range(&r);
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 3));
    r.limit = 3;
    let resp = t.range(&r);
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (3, false, 3));
    r.limit = -1;
    assert_eq!(t.range(&r).kvs.len(), 3, "a negative limit is no limit");

    let mut r = all.clone();
    r.sort_target = SortTarget::Value as i32; // order NONE → ascending
    assert_eq!(t.keys(&r), ["c", "b", "a"]);
    r.sort_order = SortOrder::Descend as i32;
    r.sort_target = SortTarget::Mod as i32;
    assert_eq!(t.keys(&r), ["c", "b", "a"]);
    r.sort_target = SortTarget::Create as i32;
    assert_eq!(t.keys(&r), ["b", "a", "c"]);
    r.sort_target = SortTarget::Key as i32;
    r.limit = 1;
    let resp = t.range(&r);
    assert_eq!(t.keys(&r), ["c"]);
    assert!(resp.more);
    assert_eq!(resp.count, 3);

    let mut r = all.clone();
    r.min_mod_revision = 4;
    assert_eq!(t.keys(&r), ["b", "c"]);
    r.max_create_revision = 3;
    assert_eq!(t.keys(&r), ["c"]);
    assert_eq!(t.range(&r).count, 3, "count ignores filters");

    let mut r = all.clone();
    r.keys_only = true;
    r.sort_target = SortTarget::Value as i32;
    let resp = t.range(&r);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(
        t.keys(&r),
        ["c", "b", "a"],
        "sorted by value before values are dropped"
    );

    let mut r = all;
    r.count_only = true;
    let resp = t.range(&r);
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
    assert_eq!(resp.header.unwrap().revision, 5);
}

#[test]
fn compares_on_missing_keys_and_ranges() {
    let t = open();
    t.put("k1", "a");
    t.put("k2", "b");
    let view = t.store.read();
    let check = |c: Compare| apply_compare(&view, &c);
    use CompareResult::*;
    use CompareTarget::*;
    // A missing key compares as all zeros, except for values.
    assert!(check(cmp("nope", Mod, Equal, TargetUnion::ModRevision(0))));
    assert!(check(cmp("nope", Version, Equal, TargetUnion::Version(0))));
    assert!(check(cmp(
        "nope",
        Create,
        Equal,
        TargetUnion::CreateRevision(0)
    )));
    assert!(check(cmp("nope", Lease, Equal, TargetUnion::Lease(0))));
    assert!(!check(cmp("nope", Value, Equal, TargetUnion::Value(b("")))));
    assert!(!check(cmp(
        "nope",
        Value,
        NotEqual,
        TargetUnion::Value(b("x"))
    )));
    // Values compare bytewise.
    assert!(check(cmp("k1", Value, Less, TargetUnion::Value(b("b")))));
    assert!(check(cmp("k2", Value, Greater, TargetUnion::Value(b("a")))));
    // A union member that doesn't match the target counts as zero.
    assert!(check(cmp("k1", Mod, Greater, TargetUnion::Version(99))));
    // A range compare must hold for every key in it.
    let mut c = cmp("k", Create, Greater, TargetUnion::CreateRevision(1));
    c.range_end = b("l");
    assert!(check(c.clone()));
    c.target_union = Some(TargetUnion::CreateRevision(2));
    assert!(!check(c.clone()));
    c.key = b("x");
    c.range_end = b("y");
    c.target_union = Some(TargetUnion::CreateRevision(0));
    c.result = Equal as i32;
    assert!(check(c), "an empty range compares as a missing key");
    // Unknown results are true, unknown targets compare equal (as in etcd).
    let mut c = cmp("k1", Mod, Equal, TargetUnion::ModRevision(12345));
    c.result = 9;
    assert!(check(c));
    let mut c = cmp("k1", Mod, Equal, TargetUnion::ModRevision(12345));
    c.target = 9;
    assert!(check(c));
}

#[test]
fn txn_branches_headers_and_nesting() {
    let t = open();
    t.put("a", "1"); // 2
    let rt = TxnRequest {
        compare: vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b("1")),
        )],
        success: vec![
            op_put("a", "2"),
            op_range("a"),
            RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    // Nested compares see the state before the outer txn.
                    compare: vec![cmp(
                        "a",
                        CompareTarget::Value,
                        CompareResult::Equal,
                        TargetUnion::Value(b("1")),
                    )],
                    success: vec![op_put("b", "inner")],
                    failure: vec![op_put("c", "inner")],
                })),
            },
        ],
        failure: vec![op_range("a")],
    };
    let resp = t.write(|w| txn(w, &NO_LEASES, &rt)).unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    match &resp.responses[0].response {
        Some(response_op::Response::ResponsePut(p)) => {
            assert_eq!(p.header.unwrap().revision, 3);
            assert_eq!(p.header.unwrap().cluster_id, 0);
        }
        other => panic!("{other:?}"),
    }
    match &resp.responses[1].response {
        Some(response_op::Response::ResponseRange(r)) => {
            assert_eq!(
                r.kvs[0].value.as_ref(),
                b"2",
                "later ops see earlier writes"
            );
            assert_eq!(r.header.unwrap().revision, 3);
        }
        other => panic!("{other:?}"),
    }
    match &resp.responses[2].response {
        Some(response_op::Response::ResponseTxn(inner)) => {
            assert!(inner.succeeded);
            assert_eq!(inner.header.unwrap().revision, 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.keys(&range_req("a", "\0")), ["a", "b"]);
    let b_kv = &t.range(&range_req("b", "")).kvs[0];
    assert_eq!(b_kv.mod_revision, 3, "one revision for the whole txn");

    // The failure branch, read-only: no new revision.
    let resp = t.write(|w| txn(w, &NO_LEASES, &rt)).unwrap();
    assert!(!resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    assert_eq!(t.store.current_rev(), 3);
}

#[test]
fn txn_prechecks_fail_the_whole_txn() {
    let t = open();
    t.put("a", "1");
    let mut future = range_req("a", "");
    future.revision = 100;
    let rt = TxnRequest {
        success: vec![
            op_put("x", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(future)),
            },
        ],
        ..Default::default()
    };
    assert_eq!(t.write(|w| txn(w, &NO_LEASES, &rt)), Err(Error::FutureRev));
    let mut leased = put_req("y", "1");
    leased.lease = 5;
    let rt = TxnRequest {
        success: vec![
            op_put("x", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(leased)),
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        t.write(|w| txn(w, &NO_LEASES, &rt)),
        Err(Error::LeaseNotFound)
    );
    assert_eq!(t.keys(&range_req("x", "")), Vec::<String>::new());
    assert_eq!(t.store.current_rev(), 2);
}

#[test]
fn read_only_txns_run_on_a_snapshot() {
    let t = open();
    t.put("a", "1");
    let rt = TxnRequest {
        success: vec![op_range("a")],
        ..Default::default()
    };
    assert!(is_txn_read_only(&rt));
    assert!(!is_txn_serializable(&rt));
    let view = t.store.read();
    let resp = txn(&mut ReadOnly(&view), &NO_LEASES, &rt).unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 2);
    let rt = TxnRequest {
        success: vec![op_put("a", "2")],
        ..Default::default()
    };
    assert!(!is_txn_read_only(&rt));
}

#[test]
fn delete_range_with_prev_kv() {
    let t = open();
    t.put("a", "1");
    t.put("b", "2");
    t.put("c", "3");
    let d = DeleteRangeRequest {
        key: b("a"),
        range_end: b("c"),
        prev_kv: true,
    };
    let resp = t.write(|w| delete_range(w, &d)).unwrap();
    assert_eq!(resp.deleted, 2);
    assert_eq!(resp.header.unwrap().revision, 5);
    assert_eq!(resp.prev_kvs.len(), 2);
    assert_eq!(resp.prev_kvs[1].value.as_ref(), b"2");
    let resp = t.write(|w| delete_range(w, &d)).unwrap();
    assert_eq!((resp.deleted, resp.header.unwrap().revision), (0, 5));
}
