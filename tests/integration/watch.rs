//! Watch: differential scenarios against real etcd, the etcd-client crate,
//! and a slow-consumer test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxcd::proto::etcdserverpb::watch_client::WatchClient;
use oxcd::proto::etcdserverpb::watch_create_request::FilterType;
use oxcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxcd::proto::etcdserverpb::{
    CompactionRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse, request_op,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;

use tokio_stream::wrappers::ReceiverStream;

use crate::common::{self, Proc};
use crate::differential::{Op, exec, put, range};

/// A raw watch stream: requests in, responses out.
pub struct RawWatch {
    tx: mpsc::Sender<WatchRequest>,
    rx: mpsc::UnboundedReceiver<WatchResponse>,
    /// Ends the task holding the gRPC call when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RawWatch {
    /// Opens a stream whose responses are read as they come.
    pub async fn open(url: &str) -> RawWatch {
        Self::open_with(url, true).await
    }

    /// Opens a stream that never reads its responses.
    pub async fn open_stalled(url: &str) -> RawWatch {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, read: bool) -> RawWatch {
        let mut c = WatchClient::connect(url.to_string())
            .await
            .expect("connect")
            .max_decoding_message_size(usize::MAX);
        let (tx, req_rx) = mpsc::channel(64);
        let (resp_tx, rx) = mpsc::unbounded_channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        // grpc-go (etcd) sends response headers only with the first
        // response, so the call resolves after the first request: drive it
        // from a task.
        tokio::spawn(async move {
            let call = async {
                let mut s = c
                    .watch(ReceiverStream::new(req_rx))
                    .await
                    .ok()?
                    .into_inner();
                if !read {
                    std::future::pending::<()>().await;
                }
                while let Some(Ok(r)) = s.next().await {
                    if resp_tx.send(r).is_err() {
                        break;
                    }
                }
                Some(())
            };
            tokio::select! {
                _ = call => {}
                _ = &mut stopped => {}
            }
        });
        RawWatch {
            tx,
            rx,
            _stop: stop,
        }
    }

    pub async fn send(&self, r: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .expect("send watch request");
    }

    pub async fn create(&self, c: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(c)).await
    }

    /// The next response, or None after `wait` of silence.
    pub async fn next(&mut self, wait: Duration) -> Option<WatchResponse> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Everything that arrives until `quiet` passes without a response.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<WatchResponse> {
        let mut out = Vec::new();
        while let Some(r) = self.next(quiet).await {
            out.push(r);
        }
        out
    }
}

pub fn create_req(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        start_revision: start,
        ..Default::default()
    }
}

/// A scenario step.
enum Step {
    Create(WatchCreateRequest),
    Cancel(i64),
    Progress,
    Kv(Op),
}

/// What a stream said, with response boundaries taken out: control
/// responses in order, and each watcher's events concatenated.
#[derive(Debug, PartialEq, Default)]
struct Transcript {
    control: Vec<String>,
    events: BTreeMap<i64, Vec<String>>,
}

fn transcribe(resps: &[WatchResponse]) -> Transcript {
    let mut t = Transcript::default();
    for r in resps {
        let rev = r.header.as_ref().map_or(0, |h| h.revision);
        if r.created || r.canceled || r.compact_revision != 0 || !r.cancel_reason.is_empty() {
            t.control.push(format!(
                "id={} created={} canceled={} compact={} reason={:?} rev={}",
                r.watch_id,
                r.created,
                r.canceled,
                r.compact_revision,
                r.cancel_reason,
                if r.compact_revision != 0 { 0 } else { rev }
            ));
        } else if r.events.is_empty() {
            t.control
                .push(format!("progress id={} rev={rev}", r.watch_id));
        }
        for e in &r.events {
            t.events.entry(r.watch_id).or_default().push(show_event(e));
        }
    }
    t
}

fn show_kv(kv: &oxcd::proto::mvccpb::KeyValue) -> String {
    let value = if kv.value.len() <= 32 {
        String::from_utf8_lossy(&kv.value).into_owned()
    } else {
        let sum: u64 = kv.value.iter().map(|b| u64::from(*b)).sum();
        format!("<{} bytes, sum {sum}>", kv.value.len())
    };
    format!(
        "{}@{} c={} v={} l={} {value:?}",
        String::from_utf8_lossy(&kv.key),
        kv.mod_revision,
        kv.create_revision,
        kv.version,
        kv.lease
    )
}

fn show_event(e: &oxcd::proto::mvccpb::Event) -> String {
    format!(
        "{} {} prev=[{}]",
        if e.r#type == 0 { "PUT" } else { "DELETE" },
        e.kv.as_ref().map(show_kv).unwrap_or_default(),
        e.prev_kv.as_ref().map(show_kv).unwrap_or_default()
    )
}

async fn run_scenario(server: &Proc, steps: &[Step]) -> Transcript {
    let mut kv = server.kv().await;
    let mut w = RawWatch::open(&server.url()).await;
    let mut all = Vec::new();
    for s in steps {
        match s {
            Step::Create(c) => w.create(c.clone()).await,
            Step::Cancel(id) => {
                w.send(RequestUnion::CancelRequest(WatchCancelRequest {
                    watch_id: *id,
                }))
                .await
            }
            Step::Progress => {
                w.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
                    .await
            }
            Step::Kv(op) => {
                exec(&mut kv, op).await;
            }
        }
        // Let the server settle (etcd catches up unsynced watchers every
        // 100 ms) so both servers see the same interleaving.
        all.extend(w.drain(Duration::from_millis(250)).await);
    }
    transcribe(&all)
}

fn big_txn(prefix: &str, n: usize, size: usize) -> Op {
    Op::Txn(TxnRequest {
        success: (0..n)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: Bytes::from(format!("{prefix}{i}")),
                    value: vec![b'v'; size].into(),
                    ..Default::default()
                })),
            })
            .collect(),
        ..Default::default()
    })
}

fn scenario(with_progress: bool) -> Vec<Step> {
    let mut s = vec![
        Step::Kv(Op::Put(put("a", "1"))),
        Step::Kv(Op::Put(put("b", "1"))),
        Step::Kv(Op::Put(put("c", "1"))),
        Step::Create(create_req("a", "", 0)),
        Step::Create(WatchCreateRequest {
            prev_kv: true,
            ..create_req("a", "b", 0)
        }),
        Step::Create(create_req("b", "\0", 0)),
        Step::Create(create_req("\0", "\0", 1)),
        Step::Create(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create_req("x", "", 0)
        }),
        Step::Create(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32],
            prev_kv: true,
            ..create_req("", "\0", 3)
        }),
        Step::Create(create_req("b", "a", 0)),
        Step::Kv(Op::Put(put("a", "2"))),
        Step::Kv(Op::Put(put("ab", "1"))),
        Step::Kv(Op::Delete(oxcd::proto::etcdserverpb::DeleteRangeRequest {
            key: "b".into(),
            ..Default::default()
        })),
        Step::Kv(Op::Txn(TxnRequest {
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(put("c", "2"))),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestPut(put("a2", "1"))),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        oxcd::proto::etcdserverpb::DeleteRangeRequest {
                            key: "ab".into(),
                            ..Default::default()
                        },
                    )),
                },
            ],
            ..Default::default()
        })),
        Step::Kv(Op::Put(put("x", "1"))),
        Step::Kv(Op::Delete(oxcd::proto::etcdserverpb::DeleteRangeRequest {
            key: "x".into(),
            ..Default::default()
        })),
        Step::Kv(Op::Delete(oxcd::proto::etcdserverpb::DeleteRangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            prev_kv: true,
        })),
        Step::Cancel(1),
        Step::Cancel(1),
        Step::Kv(Op::Put(put("a", "3"))),
        Step::Create(WatchCreateRequest {
            watch_id: 100,
            ..create_req("a", "", 2)
        }),
        Step::Create(WatchCreateRequest {
            watch_id: 100,
            ..create_req("b", "", 0)
        }),
        // Revision 9 is a put: a watch from exactly the compaction point
        // replays it. (At a revision holding a deletion etcd drops the
        // deletion once its compaction has run; oxcd keeps it, see
        // docs/COMPATIBILITY.md and `watch_from_the_compaction_point_keeps_its_deletions`.)
        Step::Kv(Op::Compact(CompactionRequest {
            revision: 9,
            physical: true,
        })),
        Step::Create(create_req("a", "\0", 4)),
        Step::Create(create_req("a", "\0", 9)),
        Step::Create(WatchCreateRequest {
            fragment: true,
            ..create_req("big/", "big0", 0)
        }),
        Step::Create(create_req("big/", "big0", 0)),
        Step::Kv(big_txn("big/a", 4, 350_000)),
        Step::Kv(big_txn("big/b", 4, 350_000)),
        Step::Create(WatchCreateRequest {
            fragment: true,
            ..create_req("big/", "big0", 12)
        }),
        Step::Kv(Op::Range(range("a", ""))),
    ];
    if with_progress {
        s.push(Step::Progress);
    }
    s
}

async fn compare_scenario(reference: Proc, with_progress: bool) {
    let oxcd = Proc::oxcd_twin_of(&reference);
    let want = run_scenario(&reference, &scenario(with_progress)).await;
    let got = run_scenario(&oxcd, &scenario(with_progress)).await;
    assert_eq!(
        got.control,
        want.control,
        "control responses differ from {}",
        reference.name()
    );
    assert_eq!(
        got.events.keys().collect::<Vec<_>>(),
        want.events.keys().collect::<Vec<_>>()
    );
    for (id, evs) in &want.events {
        assert_eq!(
            got.events.get(id),
            Some(evs),
            "events of watch {id} differ from {}",
            reference.name()
        );
    }
    assert!(want.events.values().map(Vec::len).sum::<usize>() > 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_scenario_matches_etcd_35() {
    compare_scenario(Proc::etcd(common::etcd35()), true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_scenario_matches_etcd_34() {
    // etcd 3.4 answers progress requests differently (3.5 changed it); the
    // rest of the scenario is the same.
    compare_scenario(Proc::etcd(common::etcd34()), false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fragments_stay_under_the_limit_and_reassemble() {
    let p = Proc::oxcd();
    let mut kv = p.kv().await;
    for b in 0..3 {
        exec(&mut kv, &big_txn(&format!("f/{b}"), 4, 350_000)).await;
    }
    let mut w = RawWatch::open(&p.url()).await;
    w.create(WatchCreateRequest {
        fragment: true,
        ..create_req("f/", "f0", 1)
    })
    .await;
    let resps = w.drain(Duration::from_millis(500)).await;
    assert!(resps[0].created);
    let pieces = &resps[1..];
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    let limit = 1_572_864 + 512 * 1024;
    for (i, r) in pieces.iter().enumerate() {
        assert_eq!(r.fragment, i + 1 < pieces.len());
        assert!(prost::Message::encoded_len(r) < limit);
    }
    let n: usize = pieces.iter().map(|r| r.events.len()).sum();
    assert_eq!(n, 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_the_compaction_point_keeps_its_deletions() {
    let p = Proc::oxcd();
    let mut kv = p.kv().await;
    exec(&mut kv, &Op::Put(put("d", "1"))).await; // 2
    exec(
        &mut kv,
        &Op::Delete(oxcd::proto::etcdserverpb::DeleteRangeRequest {
            key: "d".into(),
            ..Default::default()
        }),
    )
    .await; // 3
    exec(
        &mut kv,
        &Op::Compact(CompactionRequest {
            revision: 3,
            physical: true,
        }),
    )
    .await;
    let mut w = RawWatch::open(&p.url()).await;
    w.create(create_req("d", "", 3)).await;
    let t = transcribe(&w.drain(Duration::from_millis(500)).await);
    assert_eq!(
        t.events[&0],
        vec!["DELETE d@3 c=0 v=0 l=0 \"\" prev=[]".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn negative_start_revision_is_refused_like_etcd_36() {
    let p = Proc::oxcd();
    let mut w = RawWatch::open(&p.url()).await;
    w.create(create_req("a", "", -5)).await;
    let r = w.next(Duration::from_secs(5)).await.expect("response");
    assert!(r.created && r.canceled);
    assert_eq!(r.watch_id, -1);
    assert_eq!(
        r.cancel_reason,
        "etcdserver: mvcc: required revision has been compacted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_client_crate_watches() {
    use etcd_client::{Client, EventType, WatchOptions};
    let p = Proc::oxcd();
    let mut c = Client::connect([p.url()], None).await.unwrap();
    c.put("w/1", "a", None).await.unwrap();
    let mut stream = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    c.put("w/1", "b", None).await.unwrap();
    c.delete("w/1", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        for e in resp.events() {
            let kv = e.kv().unwrap();
            let prev = e.prev_kv().map(|p| p.value_str().unwrap().to_string());
            seen.push((e.event_type(), kv.key_str().unwrap().to_string(), prev));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, "w/1".to_string(), Some("a".to_string())),
            (EventType::Delete, "w/1".to_string(), Some("b".to_string())),
        ]
    );
    // Progress requests are answered with the current revision.
    stream.request_progress().await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(resp.events().is_empty());
    assert_eq!(resp.header().unwrap().revision(), 4);
    stream.cancel(0).await.unwrap();

    // A compacted start revision ends the watch with the compaction point.
    c.compact(3, None).await.unwrap();
    let mut stream = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap();
    let mut resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    if resp.created() {
        resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert!(resp.canceled());
    assert_eq!(resp.compact_revision(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_streams_slow_no_one_and_memory_stays_bounded() {
    let p = Proc::oxcd();
    let pid = p.pid().expect("running");
    let mut kv = p.kv().await;
    // Streams that never read their responses.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let w = RawWatch::open_stalled(&p.url()).await;
        w.create(create_req("s/", "s0", 0)).await;
        stalled.push(w);
    }
    // Healthy watchers on other streams.
    let mut healthy = Vec::new();
    for _ in 0..3 {
        let mut w = RawWatch::open(&p.url()).await;
        w.create(create_req("s/", "s0", 0)).await;
        assert!(w.next(Duration::from_secs(5)).await.unwrap().created);
        healthy.push(w);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = common::rss_bytes(pid);
    let value = vec![b'x'; 64 * 1024];
    let writes = 1000;
    let (tx, mut acked) = mpsc::unbounded_channel::<(i64, Instant)>();
    let writer = tokio::spawn(async move {
        for i in 0..writes {
            let r = kv
                .put(PutRequest {
                    key: Bytes::from(format!("s/{}", i % 50)),
                    value: value.clone().into(),
                    ..Default::default()
                })
                .await
                .expect("put while streams are stalled");
            let rev = r.into_inner().header.unwrap().revision;
            let _ = tx.send((rev, Instant::now()));
        }
    });
    // Each healthy stream sees every revision, soon after it was written.
    let mut readers = Vec::new();
    for mut w in healthy {
        readers.push(tokio::spawn(async move {
            let mut got = BTreeMap::new();
            while got.len() < writes {
                let r = w
                    .next(Duration::from_secs(10))
                    .await
                    .expect("healthy watcher starved");
                for e in &r.events {
                    got.insert(e.kv.as_ref().unwrap().mod_revision, Instant::now());
                }
            }
            got
        }));
    }
    writer.await.unwrap();
    let mut acks = BTreeMap::new();
    while let Ok((rev, at)) = acked.try_recv() {
        acks.insert(rev, at);
    }
    let rss_after = common::rss_bytes(pid);
    for r in readers {
        let got = r.await.unwrap();
        assert_eq!(got.len(), writes);
        let mut lags: Vec<Duration> = acks
            .iter()
            .map(|(rev, at)| got[rev].saturating_duration_since(*at))
            .collect();
        lags.sort();
        let p99 = lags[lags.len() * 99 / 100];
        assert!(p99 < Duration::from_millis(500), "p99 event lag {p99:?}");
    }
    // Buffering every event for the stalled streams would cost 10 x 64 MB;
    // bounded channels cost at most 10 x 128 responses, plus RocksDB's
    // memtables for the data itself.
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 400 << 20,
        "server RSS grew by {} MB with 10 stalled streams",
        growth >> 20
    );
    eprintln!(
        "stalled streams: RSS {} MB -> {} MB",
        rss_before >> 20,
        rss_after >> 20
    );
    drop(stalled);
}
