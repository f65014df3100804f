use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use raft::prelude::Entry;
use tokio::sync::watch;

use super::*;
use crate::mvcc::KvRead as _;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};
use crate::proto::oxcdpb::ConfChangeContext;
use crate::server::txn;
use crate::storage::{Cf, Db, meta_key};
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType};

fn entry(index: u64, id: u64, request: Request) -> Entry {
    Entry {
        index,
        term: 1,
        data: InternalRaftRequest {
            id,
            request: Some(request),
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    }
}

fn put(k: &str, v: &str) -> Request {
    Request::Put(PutRequest {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
        ..Default::default()
    })
}

struct Fixture {
    applier: Applier,
    store: Arc<Store>,
    wait: Arc<Wait<ApplyResult>>,
    applied: watch::Receiver<u64>,
}

fn fixture(db: &Arc<Db>) -> Fixture {
    let store = Arc::new(Store::open(db.clone()).unwrap());
    let wait = Arc::new(Wait::default());
    let applied_index = db
        .get_u64(Cf::Meta, meta_key::APPLIED_INDEX)
        .unwrap()
        .unwrap_or(0);
    let (tx, applied) = watch::channel(applied_index);
    let applier = Applier::new(
        ApplierDeps {
            store: store.clone(),
            wait: wait.clone(),
            applied_tx: tx,
            status: Arc::new(RaftStatus::default()),
            compactor: Compactor::spawn(db.clone()).unwrap(),
            hub: WatchHub::start(store.clone(), std::time::Duration::from_secs(600)).unwrap(),
            lessor: Arc::new(std::sync::Mutex::new(crate::lease::Lessor::new(
                2,
                std::time::Duration::from_secs(300),
            ))),
            alarms: Arc::new(crate::server::alarm::AlarmSet::load(db).unwrap()),
            members: Arc::new(crate::cluster::Members::default()),
            member_id: 1,
            max_learners: 1,
        },
        applied_index,
    );
    Fixture {
        applier,
        store,
        wait,
        applied,
    }
}

fn value(store: &Store, k: &str) -> Option<(Bytes, i64)> {
    let r = txn::range(
        &store.read(),
        &RangeRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            ..Default::default()
        },
    )
    .unwrap();
    r.kvs.first().map(|kv| (kv.value.clone(), kv.version))
}

#[tokio::test]
async fn batch_results_reach_their_waiters_and_errors_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut f = fixture(&db);
    let r1 = f.wait.register(11);
    let r2 = f.wait.register(12);
    let r3 = f.wait.register(13);
    let ignore_missing = Request::Put(PutRequest {
        key: Bytes::from_static(b"missing"),
        ignore_value: true,
        ..Default::default()
    });
    let empty = Entry {
        index: 1,
        term: 1,
        ..Default::default()
    };
    f.applier.apply_entries(&[
        empty,
        entry(2, 11, put("a", "1")),
        entry(3, 12, ignore_missing),
        entry(4, 13, put("a", "2")),
        // Proposed by another member or an earlier run: nobody waits.
        entry(5, 99, put("b", "1")),
    ]);
    match r1.await.unwrap() {
        Ok(Response::Put(p)) => assert_eq!(p.header.unwrap().revision, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(r2.await.unwrap(), Err(Error::KeyNotFound));
    match r3.await.unwrap() {
        Ok(Response::Put(p)) => assert_eq!(p.header.unwrap().revision, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(*f.applied.borrow(), 5);
    assert_eq!(f.store.current_rev(), 4);
    assert_eq!(value(&f.store, "a"), Some((Bytes::from_static(b"2"), 2)));
}

#[tokio::test]
async fn entries_this_version_cannot_read_are_refused_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut f = fixture(&db);
    let unknown = f.wait.register(21);
    let after = f.wait.register(22);
    let garbage = Entry {
        index: 1,
        term: 1,
        data: vec![0xff, 0xff, 0xff].into(),
        ..Default::default()
    };
    // A request kind a newer member knows and this one does not decodes
    // as an entry without a request.
    let newer = Entry {
        index: 2,
        term: 1,
        data: InternalRaftRequest {
            id: 21,
            request: None,
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    };
    f.applier
        .apply_entries(&[garbage, newer, entry(3, 22, put("a", "1"))]);
    assert_eq!(unknown.await.unwrap(), Err(Error::NotCapable));
    assert!(matches!(after.await.unwrap(), Ok(Response::Put(_))));
    assert_eq!(*f.applied.borrow(), 3, "the member went on applying");
    assert_eq!(f.store.current_rev(), 2, "only the put changed the store");
    // An undecodable configuration change is skipped the same way.
    let bad_cc = Entry {
        index: 4,
        term: 1,
        entry_type: raft::prelude::EntryType::EntryConfChange,
        data: vec![0xff; 4].into(),
        ..Default::default()
    };
    let mut to_raft = |_: &ConfChange| -> Result<ConfState> { panic!("not a valid change") };
    assert_eq!(f.applier.apply_conf_change(&bad_cc, &mut to_raft), None);
    assert_eq!(*f.applied.borrow(), 4);
}

#[test]
fn storage_failures_are_faults_and_etcd_errors_are_refusals() {
    assert!(matches!(
        ApplyError::from(Error::internal("disk")),
        ApplyError::Fault(_)
    ));
    for e in [Error::Compacted, Error::LeaseNotFound, Error::NoSpace] {
        assert!(matches!(ApplyError::from(e), ApplyError::Refused(_)));
    }
}

#[tokio::test]
async fn replayed_entries_are_not_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let entries = vec![entry(1, 1, put("a", "1")), entry(2, 2, put("a", "2"))];
    {
        let mut f = fixture(&db);
        f.applier.apply_entries(&entries);
        assert_eq!(f.store.current_rev(), 3);
        // The same entries again (raft redelivers after a restart): skipped.
        f.applier.apply_entries(&entries);
        assert_eq!(f.store.current_rev(), 3);
    }
    // A restart reads the applied index written with the data.
    let mut f = fixture(&db);
    assert_eq!(*f.applied.borrow(), 2);
    f.applier
        .apply_entries(&[entries[1].clone(), entry(3, 3, put("a", "3"))]);
    assert_eq!(f.store.current_rev(), 4);
    assert_eq!(value(&f.store, "a"), Some((Bytes::from_static(b"3"), 3)));
}

#[tokio::test]
async fn compaction_is_applied_then_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut f = fixture(&db);
    let rx = f.wait.register(3);
    let rx_bad = f.wait.register(4);
    f.applier.apply_entries(&[
        entry(1, 1, put("a", "1")),
        entry(2, 2, put("a", "2")),
        entry(
            3,
            3,
            Request::Compaction(CompactionRequest {
                revision: 2,
                physical: true,
            }),
        ),
        entry(
            4,
            4,
            Request::Compaction(CompactionRequest {
                revision: 9,
                physical: false,
            }),
        ),
    ]);
    match rx.await.unwrap() {
        Ok(Response::Compact(c)) => assert_eq!(c.header.unwrap().revision, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx_bad.await.unwrap(), Err(Error::FutureRev));
    assert_eq!(f.store.read().first_rev(), 2);
    f.applier.compactor.wait_finished(2).await;
    assert_eq!(f.applier.compactor.finished_rev(), 2);
}

#[tokio::test]
async fn leases_attach_move_and_revoke_keys_in_one_revision() {
    use crate::proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut f = fixture(&db);
    let leased = |k: &str, lease: i64| {
        Request::Put(PutRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::from_static(b"v"),
            lease,
            ..Default::default()
        })
    };
    let grant = |id: i64| Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id });
    let rx_dup = f.wait.register(3);
    let rx_missing = f.wait.register(4);
    f.applier.apply_entries(&[
        entry(1, 1, grant(10)),
        entry(2, 2, grant(20)),
        entry(3, 3, grant(10)),
        entry(4, 4, leased("x", 30)),
        entry(5, 5, leased("a", 10)),
        entry(6, 6, leased("b", 10)),
        entry(7, 7, leased("c", 10)),
        // Moved to lease 20, and detached from 10.
        entry(8, 8, leased("c", 20)),
    ]);
    assert_eq!(rx_dup.await.unwrap(), Err(Error::LeaseExist));
    assert_eq!(rx_missing.await.unwrap(), Err(Error::LeaseNotFound));
    assert_eq!(f.store.current_rev(), 5);
    let rx = f.wait.register(9);
    let rx_again = f.wait.register(10);
    // In the same batch as a new attachment: the revoke sees it.
    f.applier.apply_entries(&[
        entry(9, 11, leased("d", 10)),
        entry(10, 9, Request::LeaseRevoke(LeaseRevokeRequest { id: 10 })),
        entry(11, 10, Request::LeaseRevoke(LeaseRevokeRequest { id: 10 })),
    ]);
    match rx.await.unwrap() {
        Ok(Response::LeaseRevoke(r)) => assert_eq!(r.header.unwrap().revision, 7),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx_again.await.unwrap(), Err(Error::LeaseNotFound));
    for (k, want) in [("a", None), ("b", None), ("d", None)] {
        assert_eq!(value(&f.store, k), want, "{k}");
    }
    assert!(
        value(&f.store, "c").is_some(),
        "c moved to lease 20 and survives"
    );
    // a, b and d went in one revision.
    let view = f.store.read();
    let r = view
        .range(
            crate::mvcc::KeyRange::new(b"a", b"e"),
            &crate::mvcc::RangeOptions {
                rev: 6,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.kvs.len(), 4);
    assert_eq!(f.store.current_rev(), 7);
}

fn alarm_req(action: AlarmAction, alarm: crate::proto::etcdserverpb::AlarmType) -> Request {
    Request::Alarm(crate::proto::etcdserverpb::AlarmRequest {
        action: action as i32,
        member_id: 7,
        alarm: alarm as i32,
    })
}

#[tokio::test]
async fn alarms_refuse_what_etcd_refuses_and_survive_a_restart() {
    use crate::proto::etcdserverpb::{AlarmType, LeaseGrantRequest, RequestOp, TxnRequest};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let txn_with_put = |in_failure: bool| {
        let op = RequestOp {
            request: Some(crate::proto::etcdserverpb::request_op::Request::RequestPut(
                PutRequest {
                    key: Bytes::from_static(b"t"),
                    ..Default::default()
                },
            )),
        };
        Request::Txn(TxnRequest {
            success: if in_failure { vec![] } else { vec![op.clone()] },
            failure: if in_failure { vec![op] } else { vec![] },
            ..Default::default()
        })
    };
    {
        let mut f = fixture(&db);
        let waits: Vec<_> = (1..=7).map(|id| f.wait.register(id)).collect();
        f.applier.apply_entries(&[
            entry(1, 1, put("a", "1")),
            entry(2, 2, alarm_req(AlarmAction::Activate, AlarmType::Nospace)),
            entry(3, 3, alarm_req(AlarmAction::Activate, AlarmType::Nospace)),
            entry(4, 4, put("a", "2")),
            // A txn that could put, in either branch, is refused.
            entry(5, 5, txn_with_put(true)),
            entry(
                6,
                6,
                Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 10 }),
            ),
            entry(
                7,
                7,
                Request::DeleteRange(crate::proto::etcdserverpb::DeleteRangeRequest {
                    key: Bytes::from_static(b"a"),
                    ..Default::default()
                }),
            ),
        ]);
        let mut results = Vec::new();
        for w in waits {
            results.push(w.await.unwrap());
        }
        assert!(matches!(results[0], Ok(Response::Put(_))));
        match &results[1] {
            Ok(Response::Alarm(a)) => assert_eq!(a.alarms.len(), 1, "newly raised"),
            other => panic!("{other:?}"),
        }
        match &results[2] {
            Ok(Response::Alarm(a)) => assert!(a.alarms.is_empty(), "already active"),
            other => panic!("{other:?}"),
        }
        assert_eq!(results[3], Err(Error::NoSpace));
        assert_eq!(results[4], Err(Error::NoSpace));
        assert_eq!(results[5], Err(Error::NoSpace));
        assert!(
            matches!(results[6], Ok(Response::DeleteRange(_))),
            "deletes still work"
        );
    }
    // The alarm is persisted; clearing it lets puts through again.
    let mut f = fixture(&db);
    let w = f.wait.register(9);
    f.applier.apply_entries(&[entry(8, 8, put("b", "1"))]);
    assert_eq!(value(&f.store, "b"), None, "still refused after a restart");
    f.applier.apply_entries(&[
        entry(9, 9, alarm_req(AlarmAction::Deactivate, AlarmType::Nospace)),
        entry(10, 10, put("b", "1")),
    ]);
    assert!(matches!(w.await.unwrap(), Ok(Response::Alarm(_))));
    assert_eq!(value(&f.store, "b"), Some((Bytes::from_static(b"1"), 1)));
    // CORRUPT refuses every change.
    let w = f.wait.register(12);
    f.applier.apply_entries(&[
        entry(11, 11, alarm_req(AlarmAction::Activate, AlarmType::Corrupt)),
        entry(12, 12, txn_with_put(false)),
    ]);
    assert_eq!(w.await.unwrap(), Err(Error::Corrupt));
}

fn conf_change(index: u64, id: u64, change: ConfChangeType, node: u64, urls: &[&str]) -> Entry {
    let mut cc = ConfChange::default();
    cc.set_change_type(change);
    cc.node_id = node;
    let member = (!urls.is_empty()).then(|| Member {
        id: node,
        peer_ur_ls: urls.iter().map(|u| u.to_string()).collect(),
        ..Default::default()
    });
    cc.context = ConfChangeContext { id, member }.encode_to_vec().into();
    let mut e = Entry {
        index,
        term: 1,
        data: cc.write_to_bytes().unwrap().into(),
        ..Default::default()
    };
    e.set_entry_type(EntryType::EntryConfChange);
    e
}

#[tokio::test]
async fn membership_changes_are_validated_like_etcd_and_persisted_with_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut f = fixture(&db);
    let mut raft_calls = 0;
    let mut to_raft = |cc: &ConfChange| -> Result<ConfState> {
        raft_calls += 1;
        Ok(ConfState {
            voters: vec![1],
            learners: vec![cc.node_id],
            ..Default::default()
        })
    };
    let steps: Vec<(Entry, std::result::Result<usize, Error>)> = vec![
        (
            conf_change(2, 21, ConfChangeType::AddLearnerNode, 5, &["http://a:1"]),
            Ok(1),
        ),
        // Same peer URL, another id.
        (
            conf_change(3, 22, ConfChangeType::AddLearnerNode, 6, &["http://a:1"]),
            Err(Error::PeerUrlExist),
        ),
        // --max-learners 1, checked again when applied.
        (
            conf_change(4, 23, ConfChangeType::AddLearnerNode, 8, &["http://c:1"]),
            Err(Error::TooManyLearners),
        ),
        // Promotion of the learner.
        (conf_change(5, 24, ConfChangeType::AddNode, 5, &[]), Ok(1)),
        // A second promotion; adding an existing voter.
        (
            conf_change(6, 25, ConfChangeType::AddNode, 5, &[]),
            Err(Error::MemberNotLearner),
        ),
        (
            conf_change(7, 26, ConfChangeType::AddNode, 5, &["http://d:1"]),
            Err(Error::MemberExist),
        ),
        (
            conf_change(8, 27, ConfChangeType::RemoveNode, 7, &[]),
            Err(Error::MemberNotFound),
        ),
        (
            conf_change(9, 28, ConfChangeType::RemoveNode, 5, &[]),
            Ok(0),
        ),
        // A removed id never comes back.
        (
            conf_change(10, 29, ConfChangeType::AddNode, 5, &["http://b:1"]),
            Err(Error::MemberNotFound),
        ),
    ];
    let mut applied_changes = 0;
    for (e, want) in steps {
        let id =
            ConfChangeContext::decode(&ConfChange::parse_from_bytes(&e.data).unwrap().context[..])
                .unwrap()
                .id;
        let rx = f.wait.register(id);
        let cs = f.applier.apply_conf_change(&e, &mut to_raft);
        let got = rx.await.unwrap();
        match (want, got) {
            (Ok(n), Ok(Response::Members(list))) => {
                assert_eq!(list.len(), n, "entry {}", e.index);
                assert!(cs.is_some());
                applied_changes += 1;
            }
            (Err(w), Err(g)) => {
                assert_eq!(w, g, "entry {}", e.index);
                assert!(cs.is_none());
            }
            (w, g) => panic!("entry {}: want {w:?}, got {g:?}", e.index),
        }
        assert_eq!(
            *f.applied.borrow(),
            e.index,
            "every entry advances the index"
        );
    }
    assert_eq!(raft_calls, applied_changes, "raft sees only valid changes");
    // The table and the raft configuration were written with the entries.
    let table = crate::cluster::Members::load(&db).unwrap().unwrap();
    assert!(table.members.is_empty());
    assert_eq!(table.removed, vec![5]);
    assert!(
        db.get(Cf::RaftMeta, crate::storage::schema::raft_meta::CONF_STATE)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        db.get_u64(Cf::Meta, meta_key::APPLIED_INDEX).unwrap(),
        Some(10)
    );
}
