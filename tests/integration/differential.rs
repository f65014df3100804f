//! Differential tests: the same KV requests, over raw gRPC, against real
//! etcd and against oxcd started with the same member flags. Responses are
//! compared whole — headers (cluster id, member id, revision, raft term),
//! kvs, versions, `more`, `count` — and errors by gRPC code and message.

use bytes::Bytes;
use oxcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd::proto::etcdserverpb::kv_client::KvClient;
use oxcd::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd::proto::etcdserverpb::request_op::Request;
use oxcd::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, TxnRequest, TxnResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::common::{self, Proc};

/// One KV request.
#[derive(Debug, Clone)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    }
}

pub fn range(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    }
}

fn del(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: b(k),
        range_end: b(end),
        prev_kv: false,
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(k, v))),
    }
}

fn op_range(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(range(k, end))),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del(k, end))),
    }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(t)),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: Option<TargetUnion>) -> Compare {
    Compare {
        key: b(k),
        target: target as i32,
        result: result as i32,
        target_union: u,
        ..Default::default()
    }
}

/// Runs one request; the outcome as comparable text.
pub async fn exec(c: &mut KvClient<Channel>, op: &Op) -> String {
    let r = match op.clone() {
        Op::Range(r) => c.range(r.clone()).await.map(|resp| {
            let mut resp = resp.into_inner();
            normalize_ties(&r, &mut resp);
            format!("{resp:?}")
        }),
        Op::Put(r) => c.put(r).await.map(|r| format!("{:?}", r.into_inner())),
        Op::Delete(r) => c
            .delete_range(r)
            .await
            .map(|r| format!("{:?}", r.into_inner())),
        Op::Txn(r) => c.txn(r.clone()).await.map(|resp| {
            let mut resp = resp.into_inner();
            normalize_txn_ties(&r, &mut resp);
            format!("{resp:?}")
        }),
        Op::Compact(r) => c.compact(r).await.map(|r| format!("{:?}", r.into_inner())),
    };
    match r {
        Ok(s) => s,
        Err(st) => format!("ERROR {:?}: {}", st.code(), st.message()),
    }
}

/// etcd sorts by version, revisions or value with an unstable sort: keys
/// that tie come back in no defined order, and a limit may cut a run of
/// ties anywhere. Within each run the keys are put in key order, and the
/// identity of keys in a run the limit cut is dropped (only the sort value
/// stays), so equal answers compare equal.
fn normalize_ties(r: &RangeRequest, resp: &mut RangeResponse) {
    use oxcd::proto::mvccpb::KeyValue;
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    if target == SortTarget::Key {
        return;
    }
    let sort_key = |kv: &KeyValue| -> Vec<u8> {
        match target {
            SortTarget::Version => kv.version.to_be_bytes().to_vec(),
            SortTarget::Create => kv.create_revision.to_be_bytes().to_vec(),
            SortTarget::Mod => kv.mod_revision.to_be_bytes().to_vec(),
            SortTarget::Value => kv.value.to_vec(),
            SortTarget::Key => kv.key.to_vec(),
        }
    };
    let limited = resp.more || (r.limit > 0 && resp.kvs.len() as i64 == r.limit);
    let mut out = Vec::with_capacity(resp.kvs.len());
    let mut i = 0;
    while i < resp.kvs.len() {
        let k = sort_key(&resp.kvs[i]);
        let mut j = i;
        while j < resp.kvs.len() && sort_key(&resp.kvs[j]) == k {
            j += 1;
        }
        let mut run: Vec<KeyValue> = resp.kvs[i..j].to_vec();
        run.sort_by(|a, b| a.key.cmp(&b.key));
        if limited && j == resp.kvs.len() && j - i > 1 {
            for kv in &mut run {
                let keep = sort_key(kv);
                *kv = KeyValue {
                    value: if target == SortTarget::Value {
                        keep.into()
                    } else {
                        Bytes::new()
                    },
                    version: if target == SortTarget::Version {
                        kv.version
                    } else {
                        0
                    },
                    create_revision: if target == SortTarget::Create {
                        kv.create_revision
                    } else {
                        0
                    },
                    mod_revision: if target == SortTarget::Mod {
                        kv.mod_revision
                    } else {
                        0
                    },
                    ..Default::default()
                };
            }
        }
        out.extend(run);
        i = j;
    }
    resp.kvs = out;
}

fn normalize_txn_ties(r: &TxnRequest, resp: &mut TxnResponse) {
    use oxcd::proto::etcdserverpb::response_op::Response;
    let ops = if resp.succeeded {
        &r.success
    } else {
        &r.failure
    };
    for (op, out) in ops.iter().zip(resp.responses.iter_mut()) {
        match (&op.request, &mut out.response) {
            (Some(Request::RequestRange(rr)), Some(Response::ResponseRange(rresp))) => {
                normalize_ties(rr, rresp)
            }
            (Some(Request::RequestTxn(tr)), Some(Response::ResponseTxn(tresp))) => {
                normalize_txn_ties(tr, tresp)
            }
            _ => {}
        }
    }
}

/// Runs `ops` against `reference` and a fresh oxcd twin; fails listing
/// every differing response.
async fn compare(reference: &Proc, ops: &[Op]) {
    let oxcd = Proc::oxcd_twin_of(reference);
    let mut want_c = reference.kv().await;
    let mut got_c = oxcd.kv().await;
    let mut diffs = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let want = exec(&mut want_c, op).await;
        let got = exec(&mut got_c, op).await;
        if want != got {
            diffs.push(format!(
                "#{i} {op:?}\n  {}: {want}\n  oxcd: {got}",
                reference.name()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} responses differ:\n{}",
        diffs.len(),
        ops.len(),
        diffs.join("\n")
    );
}

/// Every Range/Put/DeleteRange/Txn/Compact option and error of the KV API.
fn curated() -> Vec<Op> {
    use CompareResult::*;
    use CompareTarget::*;
    let mut ops = vec![];
    // Puts: plain, prev_kv, ignore_value / ignore_lease and their errors.
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4"), ("ab", "5")] {
        ops.push(Op::Put(put(k, v)));
    }
    ops.push(Op::Put(PutRequest {
        prev_kv: true,
        ..put("a", "6")
    }));
    ops.push(Op::Put(PutRequest {
        prev_kv: true,
        ..put("new", "7")
    }));
    ops.push(Op::Put(PutRequest {
        ignore_value: true,
        prev_kv: true,
        ..put("b", "")
    }));
    ops.push(Op::Put(PutRequest {
        ignore_value: true,
        ..put("missing", "")
    }));
    ops.push(Op::Put(PutRequest {
        ignore_value: true,
        ..put("b", "x")
    }));
    ops.push(Op::Put(PutRequest {
        ignore_lease: true,
        ..put("c", "8")
    }));
    ops.push(Op::Put(PutRequest {
        ignore_lease: true,
        lease: 5,
        ..put("c", "8")
    }));
    ops.push(Op::Put(PutRequest {
        ignore_lease: true,
        ..put("missing", "8")
    }));
    ops.push(Op::Put(PutRequest {
        lease: 12345,
        ..put("leased", "v")
    }));
    ops.push(Op::Put(put("", "empty key")));
    ops.push(Op::Put(put("bin\u{0}key", "\u{0}\u{1}")));
    ops.push(Op::Put(put("zz\u{ff}", "ff")));
    // Ranges: every key form and option.
    for (k, e) in [
        ("a", ""),
        ("a", "b"),
        ("a", "\0"),
        ("\0", "\0"),
        ("\0", ""),
        ("b", "a"),
        ("b", "b"),
        ("nope", ""),
        ("", ""),
        ("a", "ab"),
        ("bin", "bio"),
    ] {
        ops.push(Op::Range(range(k, e)));
    }
    for limit in [-1, 0, 1, 2, 3, 100] {
        ops.push(Op::Range(RangeRequest {
            limit,
            ..range("\0", "\0")
        }));
    }
    for revision in [-1, 0, 1, 2, 4, 9, 100] {
        ops.push(Op::Range(RangeRequest {
            revision,
            ..range("a", "\0")
        }));
    }
    for target in [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ] {
        for order in [SortOrder::None, SortOrder::Ascend, SortOrder::Descend] {
            for limit in [0, 2] {
                ops.push(Op::Range(RangeRequest {
                    sort_target: target as i32,
                    sort_order: order as i32,
                    limit,
                    ..range("a", "\0")
                }));
            }
        }
    }
    ops.push(Op::Range(RangeRequest {
        serializable: true,
        ..range("a", "\0")
    }));
    ops.push(Op::Range(RangeRequest {
        keys_only: true,
        ..range("a", "\0")
    }));
    ops.push(Op::Range(RangeRequest {
        keys_only: true,
        sort_target: SortTarget::Value as i32,
        sort_order: SortOrder::Descend as i32,
        ..range("a", "\0")
    }));
    ops.push(Op::Range(RangeRequest {
        count_only: true,
        limit: 1,
        ..range("a", "\0")
    }));
    ops.push(Op::Range(RangeRequest {
        count_only: true,
        keys_only: true,
        ..range("a", "\0")
    }));
    for (min_mod, max_mod, min_c, max_c) in [
        (3, 0, 0, 0),
        (0, 5, 0, 0),
        (0, 0, 4, 0),
        (0, 0, 0, 3),
        (2, 9, 2, 9),
        (-1, -1, 0, 0),
    ] {
        ops.push(Op::Range(RangeRequest {
            min_mod_revision: min_mod,
            max_mod_revision: max_mod,
            min_create_revision: min_c,
            max_create_revision: max_c,
            limit: 1,
            ..range("a", "\0")
        }));
    }
    // Deletes.
    ops.push(Op::Delete(del("nope", "")));
    ops.push(Op::Delete(del("", "")));
    ops.push(Op::Delete(DeleteRangeRequest {
        prev_kv: true,
        ..del("ab", "")
    }));
    ops.push(Op::Put(put("d1", "x")));
    ops.push(Op::Put(put("d2", "y")));
    ops.push(Op::Put(put("d3", "z")));
    ops.push(Op::Delete(DeleteRangeRequest {
        prev_kv: true,
        ..del("d1", "d3")
    }));
    ops.push(Op::Delete(del("d", "\0")));
    ops.push(Op::Range(range("\0", "\0")));
    // Txn compares: every target and result, missing keys, ranges.
    for target in [Version, Create, Mod, Value, Lease] {
        for result in [Equal, Greater, Less, NotEqual] {
            for key in ["a", "missing"] {
                let u = match target {
                    Version => TargetUnion::Version(2),
                    Create => TargetUnion::CreateRevision(2),
                    Mod => TargetUnion::ModRevision(7),
                    Value => TargetUnion::Value(b("6")),
                    Lease => TargetUnion::Lease(0),
                };
                ops.push(Op::Txn(TxnRequest {
                    compare: vec![cmp(key, target, result, Some(u))],
                    success: vec![op_range(key, "")],
                    failure: vec![op_range("b", "")],
                }));
            }
        }
    }
    ops.push(Op::Txn(TxnRequest {
        compare: vec![cmp("a", Mod, Greater, Some(TargetUnion::Version(100)))],
        success: vec![op_range("a", "")],
        failure: vec![],
    }));
    ops.push(Op::Txn(TxnRequest {
        compare: vec![cmp("a", Mod, Greater, None)],
        ..Default::default()
    }));
    let mut range_cmp = cmp("a", Create, Greater, Some(TargetUnion::CreateRevision(0)));
    range_cmp.range_end = b("c");
    ops.push(Op::Txn(TxnRequest {
        compare: vec![range_cmp.clone()],
        success: vec![op_put("rc", "yes")],
        failure: vec![op_put("rc", "no")],
    }));
    range_cmp.range_end = b("\0");
    range_cmp.target_union = Some(TargetUnion::CreateRevision(3));
    ops.push(Op::Txn(TxnRequest {
        compare: vec![range_cmp],
        success: vec![op_put("rc", "yes")],
        failure: vec![op_put("rc", "no"), op_range("rc", "")],
    }));
    // Branch writes, reads after writes, revision in headers.
    ops.push(Op::Txn(TxnRequest {
        compare: vec![cmp("a", Value, Equal, Some(TargetUnion::Value(b("6"))))],
        success: vec![
            op_put("t1", "1"),
            op_range("t1", ""),
            op_del("b", ""),
            op_range("a", "\0"),
        ],
        failure: vec![op_range("a", "")],
    }));
    // Nested txns: compares see the pre-txn state; inner headers.
    ops.push(Op::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            op_put("n1", "outer"),
            op_txn(TxnRequest {
                compare: vec![cmp("n1", Version, Equal, Some(TargetUnion::Version(0)))],
                success: vec![op_put("n2", "inner-then"), op_range("n1", "")],
                failure: vec![op_put("n2", "inner-else")],
            }),
            op_txn(TxnRequest {
                compare: vec![cmp("n1", Version, Greater, Some(TargetUnion::Version(0)))],
                success: vec![op_put("n3", "then")],
                failure: vec![op_put("n3", "else"), op_range("n2", "")],
            }),
        ],
        failure: vec![],
    }));
    // Duplicate-key rules.
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_put("x", "1"), op_put("x", "2")],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_put("x", "1"), op_del("a", "z")],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_put("x", "1"), op_del("a", "\0")],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_del("a", "c"), op_del("b", "d")],
        failure: vec![op_put("a", "1"), op_put("a", "2")],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_txn(TxnRequest {
            success: vec![op_put("y", "1")],
            failure: vec![op_put("y", "2")],
            ..Default::default()
        })],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![
            op_put("y", "0"),
            op_txn(TxnRequest {
                success: vec![op_put("y", "1")],
                ..Default::default()
            }),
        ],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![
            op_txn(TxnRequest {
                success: vec![op_del("w", "wz")],
                ..Default::default()
            }),
            op_put("wa", "1"),
        ],
        ..Default::default()
    }));
    // Op limits and malformed ops.
    ops.push(Op::Txn(TxnRequest {
        success: (0..128)
            .map(|i| op_put(&format!("many{i:03}"), "v"))
            .collect(),
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: (0..129)
            .map(|i| op_put(&format!("many{i:03}"), "v"))
            .collect(),
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        compare: (0..129)
            .map(|_| cmp("a", Version, Greater, Some(TargetUnion::Version(0))))
            .collect(),
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        compare: (0..128)
            .map(|_| cmp("a", Version, Greater, Some(TargetUnion::Version(0))))
            .collect(),
        success: vec![op_txn(TxnRequest {
            success: vec![op_put("deep", "1")],
            ..Default::default()
        })],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![RequestOp { request: None }],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        compare: vec![cmp("", Version, Equal, None)],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_put("", "v")],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                lease: 99,
                ..put("lease-in-txn", "v")
            })),
        }],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![
            op_put("pre", "checked"),
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    revision: 1000,
                    ..range("a", "")
                })),
            },
        ],
        ..Default::default()
    }));
    ops.push(Op::Txn(TxnRequest::default()));
    ops.push(Op::Txn(TxnRequest {
        success: vec![op_range("a", "\0"), op_range("zz", "\0")],
        failure: vec![op_range("a", "")],
        ..Default::default()
    }));
    // Compaction.
    ops.push(Op::Compact(CompactionRequest {
        revision: 5,
        physical: false,
    }));
    for rev in [4, 5, 6] {
        ops.push(Op::Range(RangeRequest {
            revision: rev,
            ..range("a", "\0")
        }));
    }
    ops.push(Op::Compact(CompactionRequest {
        revision: 5,
        physical: false,
    }));
    ops.push(Op::Compact(CompactionRequest {
        revision: 3,
        physical: true,
    }));
    ops.push(Op::Compact(CompactionRequest {
        revision: -3,
        physical: false,
    }));
    ops.push(Op::Compact(CompactionRequest {
        revision: 100_000,
        physical: false,
    }));
    ops.push(Op::Compact(CompactionRequest {
        revision: 12,
        physical: true,
    }));
    ops.push(Op::Txn(TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                revision: 11,
                ..range("a", "")
            })),
        }],
        ..Default::default()
    }));
    ops.push(Op::Range(RangeRequest {
        revision: 12,
        ..range("\0", "\0")
    }));
    ops.push(Op::Range(range("\0", "\0")));
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn curated_requests_match_etcd_34() {
    let etcd = Proc::etcd(common::etcd34());
    compare(&etcd, &curated()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curated_requests_match_etcd_35() {
    let etcd = Proc::etcd(common::etcd35());
    compare(&etcd, &curated()).await;
}

/// Random request sequences over a small key space. Ranges are small, so
/// Go's sort is stable there and ties order the same way.
pub fn random_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = ["a", "a/1", "a/2", "b", "b/1", "c", "d", "e", "f", "g"];
    let mut ops = Vec::with_capacity(n);
    let mut rev_hint = 1i64;
    let key = |rng: &mut StdRng| keys[rng.random_range(0..keys.len())].to_string();
    let val = |rng: &mut StdRng| format!("v{}", rng.random_range(0..20));
    let range_of = |rng: &mut StdRng| -> (String, String) {
        match rng.random_range(0..5) {
            0 => (key(rng), String::new()),
            1 => (key(rng), "\0".into()),
            2 => ("\0".into(), "\0".into()),
            3 => {
                let k = key(rng);
                let mut end = k.clone().into_bytes();
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                (k, String::from_utf8(end).unwrap_or_default())
            }
            _ => (key(rng), key(rng)),
        }
    };
    fn random_range(rng: &mut StdRng, k: String, e: String, rev_hint: i64) -> RangeRequest {
        let sort_target = rng.random_range(0..5);
        let sort_order = rng.random_range(0..3);
        RangeRequest {
            key: Bytes::from(k),
            range_end: Bytes::from(e),
            limit: if rng.random_bool(0.3) {
                rng.random_range(0..4)
            } else {
                0
            },
            revision: if rng.random_bool(0.2) {
                rng.random_range(-1..rev_hint + 3)
            } else {
                0
            },
            sort_order,
            sort_target,
            serializable: rng.random_bool(0.3),
            keys_only: rng.random_bool(0.2),
            count_only: rng.random_bool(0.1),
            min_mod_revision: if rng.random_bool(0.1) {
                rng.random_range(0..rev_hint + 1)
            } else {
                0
            },
            max_mod_revision: if rng.random_bool(0.1) {
                rng.random_range(0..rev_hint + 1)
            } else {
                0
            },
            min_create_revision: if rng.random_bool(0.1) {
                rng.random_range(0..rev_hint + 1)
            } else {
                0
            },
            max_create_revision: if rng.random_bool(0.1) {
                rng.random_range(0..rev_hint + 1)
            } else {
                0
            },
        }
    }
    let random_compare = |rng: &mut StdRng, rev_hint: i64| -> Compare {
        let (k, e) = range_of(rng);
        let target = rng.random_range(0..5);
        let u = match target {
            0 => TargetUnion::Version(rng.random_range(0..4)),
            1 => TargetUnion::CreateRevision(rng.random_range(0..rev_hint + 1)),
            2 => TargetUnion::ModRevision(rng.random_range(0..rev_hint + 1)),
            3 => TargetUnion::Value(Bytes::from(format!("v{}", rng.random_range(0..20)))),
            _ => TargetUnion::Lease(0),
        };
        Compare {
            key: Bytes::from(k),
            range_end: if rng.random_bool(0.7) {
                Bytes::new()
            } else {
                Bytes::from(e)
            },
            target,
            result: rng.random_range(0..4),
            target_union: Some(u),
        }
    };
    for _ in 0..n {
        let op = match rng.random_range(0..100) {
            0..=34 => {
                rev_hint += 1;
                Op::Put(PutRequest {
                    key: Bytes::from(key(&mut rng)),
                    value: Bytes::from(val(&mut rng)),
                    prev_kv: rng.random_bool(0.3),
                    ..Default::default()
                })
            }
            35..=39 => Op::Put(PutRequest {
                key: Bytes::from(key(&mut rng)),
                ignore_value: true,
                ignore_lease: rng.random_bool(0.5),
                prev_kv: rng.random_bool(0.5),
                ..Default::default()
            }),
            40..=49 => {
                rev_hint += 1;
                let (k, e) = range_of(&mut rng);
                Op::Delete(DeleteRangeRequest {
                    key: Bytes::from(k),
                    range_end: Bytes::from(e),
                    prev_kv: rng.random_bool(0.5),
                })
            }
            50..=74 => {
                let (k, e) = range_of(&mut rng);
                Op::Range(random_range(&mut rng, k, e, rev_hint))
            }
            75..=96 => {
                rev_hint += 1;
                let ncmp = rng.random_range(0..3);
                let compare = (0..ncmp)
                    .map(|_| random_compare(&mut rng, rev_hint))
                    .collect();
                let branch = |rng: &mut StdRng| -> Vec<RequestOp> {
                    (0..rng.random_range(0..4))
                        .map(|_| match rng.random_range(0..4) {
                            0 => op_put(&key(rng), &val(rng)),
                            1 => {
                                let (k, e) = range_of(rng);
                                op_del(&k, &e)
                            }
                            _ => {
                                let (k, e) = range_of(rng);
                                RequestOp {
                                    request: Some(Request::RequestRange(random_range(
                                        rng, k, e, rev_hint,
                                    ))),
                                }
                            }
                        })
                        .collect()
                };
                let success = branch(&mut rng);
                let failure = branch(&mut rng);
                Op::Txn(TxnRequest {
                    compare,
                    success,
                    failure,
                })
            }
            _ => Op::Compact(CompactionRequest {
                revision: rng.random_range(0..rev_hint + 2),
                physical: rng.random_bool(0.5),
            }),
        };
        ops.push(op);
    }
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn random_requests_match_etcd_34() {
    let etcd = Proc::etcd(common::etcd34());
    compare(&etcd, &random_ops(34, 600)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_requests_match_etcd_35() {
    for seed in [35, 36] {
        let etcd = Proc::etcd(common::etcd35());
        compare(&etcd, &random_ops(seed, 600)).await;
    }
}
