//! The `etcd-client` crate against oxcd: KV, Txn, Compact and RangeStream
//! through a real client library.

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use futures::StreamExt as _;

use crate::common::Proc;

async fn client(p: &Proc) -> Client {
    Client::connect([p.url()], None).await.expect("connect")
}

fn status(e: Error) -> (tonic::Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_client_kv_txn_and_compact() {
    let p = Proc::oxcd();
    let mut c = client(&p).await;

    let r = c.put("k1", "v1", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 2);
    c.put("k2", "v2", None).await.unwrap();
    c.put("k3", "v3", None).await.unwrap();
    let r = c
        .put("k1", "v1b", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(r.prev_key().unwrap().value(), b"v1");

    let r = c.get("k1", None).await.unwrap();
    let kv = &r.kvs()[0];
    assert_eq!(
        (
            kv.value(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        ),
        (&b"v1b"[..], 2, 5, 2)
    );
    assert_ne!(r.header().unwrap().member_id(), 0);
    assert_ne!(r.header().unwrap().cluster_id(), 0);

    let r = c
        .get("k", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .unwrap();
    assert_eq!((r.kvs().len(), r.more(), r.count()), (2, true, 3));
    let r = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Mod, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = r.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(keys, ["k1", "k3", "k2"]);
    let r = c
        .get("k2", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value(), b"v2");

    let txn = Txn::new()
        .when([Compare::value("k1", CompareOp::Equal, "v1b")])
        .and_then([TxnOp::put("k4", "v4", None), TxnOp::get("k4", None)])
        .or_else([TxnOp::get("k1", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    match &r.op_responses()[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"v4"),
        other => panic!("{other:?}"),
    }
    let txn = Txn::new()
        .when([Compare::mod_revision("k4", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("k4", "again", None)]);
    assert!(!c.txn(txn).await.unwrap().succeeded());

    let r = c
        .delete(
            "k",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!((r.deleted(), r.prev_kvs().len()), (4, 4));

    let rev = r.header().unwrap().revision();
    c.compact(rev - 1, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let err = c
        .get("k1", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap_err();
    assert_eq!(
        status(err),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );
    let err = c
        .get("k1", Some(GetOptions::new().with_revision(rev + 10)))
        .await
        .unwrap_err();
    assert_eq!(
        status(err),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".into()
        )
    );
    let err = c.put("", "x", None).await.unwrap_err();
    assert_eq!(
        status(err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let err = c
        .put("k", "x", Some(PutOptions::new().with_lease(42)))
        .await
        .unwrap_err();
    assert_eq!(
        status(err),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn range_stream_returns_what_range_returns_in_chunks() {
    let p = Proc::oxcd();
    let mut c = client(&p).await;
    let value = vec![b'x'; 1024];
    for chunk in 0..30 {
        let ops: Vec<TxnOp> = (0..100)
            .map(|i| TxnOp::put(format!("s/{:05}", chunk * 100 + i), value.clone(), None))
            .collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    c.put("t", "outside", None).await.unwrap();

    let cases = [
        GetOptions::new().with_prefix(),
        GetOptions::new().with_prefix().with_limit(1500),
        GetOptions::new().with_prefix().with_limit(7),
        GetOptions::new().with_prefix().with_keys_only(),
        GetOptions::new().with_prefix().with_count_only(),
        GetOptions::new().with_prefix().with_revision(20),
        GetOptions::new().with_prefix().with_serializable(),
        GetOptions::new().with_range("s/00100"),
        GetOptions::new().with_from_key(),
    ];
    for opts in cases {
        let want = c.get("s/", Some(opts.clone())).await.unwrap();
        let mut stream = c
            .kv_client()
            .get_stream("s/", Some(opts.clone()))
            .await
            .unwrap();
        let mut chunks = 0;
        let mut kvs = Vec::new();
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            chunks += 1;
            kvs.extend(
                chunk
                    .kvs()
                    .iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision())),
            );
            last = Some(chunk);
        }
        let last = last.expect("at least one chunk");
        let want_kvs: Vec<_> = want
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
            .collect();
        assert_eq!(kvs, want_kvs, "{opts:?}");
        assert_eq!(last.count(), want.count(), "{opts:?}");
        assert_eq!(last.more(), want.more(), "{opts:?}");
        assert_eq!(
            last.header().unwrap().revision(),
            want.header().unwrap().revision(),
            "{opts:?}"
        );
        assert_eq!(
            last.header().unwrap().member_id(),
            want.header().unwrap().member_id()
        );
        if want.kvs().len() > 100 {
            assert!(chunks > 1, "{} kvs in one chunk", want.kvs().len());
        }
    }

    let err = c
        .kv_client()
        .get_stream(
            "s/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Ascend),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(err),
        (
            tonic::Code::Unimplemented,
            "RangeStream does not support custom sort orders".into()
        )
    );
}
