//! Crash test: writers stream puts and record what was acknowledged; the
//! server is killed with SIGKILL at random moments and restarted. Every
//! acknowledged put must be there afterwards, at the revision it was
//! acknowledged with, and no revision a client saw may be lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oxcd::proto::etcdserverpb::request_op::Request;
use oxcd::proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::common::Proc;

const CYCLES: usize = 25;
const WRITERS: usize = 8;

/// What writers were told: key → (value, revision).
type Acked = Arc<Mutex<BTreeMap<String, (String, i64)>>>;

async fn writer(url: String, id: usize, cycle: usize, acked: Acked, max_rev: Arc<Mutex<i64>>) {
    let Ok(mut c) = oxcd::proto::etcdserverpb::kv_client::KvClient::connect(url).await else {
        return;
    };
    for seq in 0.. {
        let key = format!("crash/{cycle:02}/{id}/{seq:06}");
        let value = format!("{cycle}-{id}-{seq}");
        // Alternate single puts and two-key transactions.
        let result = if seq % 4 == 3 {
            let twin = format!("{key}-txn");
            let op = |k: &str| RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: Bytes::from(k.to_string()),
                    value: Bytes::from(value.clone()),
                    ..Default::default()
                })),
            };
            c.txn(TxnRequest {
                success: vec![op(&key), op(&twin)],
                ..Default::default()
            })
            .await
            .map(|r| {
                let rev = r.into_inner().header.map_or(0, |h| h.revision);
                vec![(key.clone(), rev), (twin, rev)]
            })
        } else {
            c.put(PutRequest {
                key: Bytes::from(key.clone()),
                value: Bytes::from(value.clone()),
                ..Default::default()
            })
            .await
            .map(|r| vec![(key.clone(), r.into_inner().header.map_or(0, |h| h.revision))])
        };
        match result {
            Ok(written) => {
                let mut a = acked.lock().await;
                for (k, rev) in written {
                    assert!(rev > 0, "acknowledged without a revision");
                    a.insert(k, (value.clone(), rev));
                    let mut m = max_rev.lock().await;
                    *m = (*m).max(rev);
                }
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_never_loses_an_acknowledged_write() {
    let mut server = Proc::oxcd();
    let acked: Acked = Arc::default();
    let max_rev = Arc::new(Mutex::new(0i64));
    let mut rng = StdRng::seed_from_u64(0x0c0d);
    for cycle in 0..CYCLES {
        let mut tasks = Vec::new();
        for id in 0..WRITERS {
            tasks.push(tokio::spawn(writer(
                server.url(),
                id,
                cycle,
                acked.clone(),
                max_rev.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
        server.kill9();
        for t in tasks {
            t.await.expect("writer task");
        }
        server.start();

        // Everything acknowledged is there, exactly as acknowledged.
        let mut c = server.kv().await;
        let resp = c
            .range(RangeRequest {
                key: Bytes::from_static(b"crash/"),
                range_end: Bytes::from_static(b"crash0"),
                ..Default::default()
            })
            .await
            .expect("range after restart")
            .into_inner();
        let stored: BTreeMap<String, (String, i64)> = resp
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    (
                        String::from_utf8_lossy(&kv.value).into_owned(),
                        kv.mod_revision,
                    ),
                )
            })
            .collect();
        let acked = acked.lock().await;
        let mut lost = Vec::new();
        for (k, want) in acked.iter() {
            if stored.get(k) != Some(want) {
                lost.push(format!("{k}: acked {want:?}, stored {:?}", stored.get(k)));
            }
        }
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} of {} acknowledged writes lost:\n{}",
            lost.len(),
            acked.len(),
            lost.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
        let current = resp.header.map_or(0, |h| h.revision);
        let seen = *max_rev.lock().await;
        assert!(
            current >= seen,
            "cycle {cycle}: revision went back from {seen} to {current}"
        );
    }
    let total = acked.lock().await.len();
    assert!(
        total > CYCLES * WRITERS,
        "too few writes acknowledged: {total}"
    );
    eprintln!("crash test: {CYCLES} kill/restart cycles, {total} acknowledged writes, none lost");
}
