//! A checker for etcd's watch guarantees under load: many watch streams
//! record everything they receive while writers run puts, deletes and
//! transactions and a compactor compacts. Every write's outcome is known
//! (revision, and for deletes the deleted keys), which gives the exact
//! history; each watcher's responses are checked against it:
//!
//! - created before events;
//! - ordered, unique, reliable: exactly the history's events in its range
//!   from its start, in order, without gaps (a watcher canceled for
//!   compaction gets a prefix, then the cancel with `compact_revision`);
//! - atomic: a revision's events for a watcher arrive in one response;
//! - bookmarkable: after a progress notification at revision R, no event at
//!   or below R arrives for the watchers it covers;
//! - prev_kv: the previous version of the key, when asked and not compacted;
//! - resumable: a new watcher from revision r+1 gets what the old one got
//!   after r.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oxcd::proto::etcdserverpb::request_op::Request;
use oxcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxcd::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchProgressRequest, WatchResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::common::{Kind, Proc};
use crate::watch::RawWatch;

const KEYS: usize = 40;
const WRITERS: usize = 4;
const STREAMS: usize = 8;
const WATCHERS_PER_STREAM: usize = 6;
const RUN: Duration = Duration::from_secs(5);

fn key(i: usize) -> String {
    format!("k/{i:02}")
}

/// One change in the history: (is_delete, key, value).
type Change = (bool, String, String);

/// Revision → its changes, in sub-revision order.
type History = Arc<Mutex<BTreeMap<i64, Vec<Change>>>>;

async fn writer(
    url: String,
    seed: u64,
    history: History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut kv = oxcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
        .await
        .expect("connect");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let value = format!("w{seed}-{n}");
        match rng.random_range(0..10) {
            0..=4 => {
                let k = key(rng.random_range(0..KEYS));
                let r = kv
                    .put(PutRequest {
                        key: Bytes::from(k.clone()),
                        value: Bytes::from(value.clone()),
                        ..Default::default()
                    })
                    .await
                    .expect("put")
                    .into_inner();
                let rev = r.header.unwrap().revision;
                history.lock().await.insert(rev, vec![(false, k, value)]);
            }
            5..=6 => {
                let (k, end) = if rng.random_bool(0.5) {
                    (key(rng.random_range(0..KEYS)), String::new())
                } else {
                    let a = rng.random_range(0..KEYS);
                    (key(a), key((a + 3).min(KEYS)))
                };
                let r = kv
                    .delete_range(DeleteRangeRequest {
                        key: Bytes::from(k),
                        range_end: Bytes::from(end),
                        prev_kv: true,
                    })
                    .await
                    .expect("delete")
                    .into_inner();
                if r.deleted > 0 {
                    let rev = r.header.unwrap().revision;
                    let changes = r
                        .prev_kvs
                        .iter()
                        .map(|kv| {
                            (
                                true,
                                String::from_utf8_lossy(&kv.key).into_owned(),
                                String::new(),
                            )
                        })
                        .collect();
                    history.lock().await.insert(rev, changes);
                }
            }
            _ => {
                let mut ks: Vec<usize> = (0..3).map(|_| rng.random_range(0..KEYS)).collect();
                ks.sort();
                ks.dedup();
                let ops = ks
                    .iter()
                    .map(|i| RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: Bytes::from(key(*i)),
                            value: Bytes::from(value.clone()),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let r = kv
                    .txn(TxnRequest {
                        success: ops,
                        ..Default::default()
                    })
                    .await
                    .expect("txn")
                    .into_inner();
                let rev = r.header.unwrap().revision;
                let changes = ks.iter().map(|i| (false, key(*i), value.clone())).collect();
                history.lock().await.insert(rev, changes);
            }
        }
    }
}

/// A watcher's request and everything its stream received for it.
#[derive(Debug, Clone)]
struct Spec {
    req: WatchCreateRequest,
}

#[derive(Debug, Default)]
struct StreamLog {
    specs: Vec<Spec>,
    responses: Vec<WatchResponse>,
}

async fn stream_task(
    url: String,
    seed: u64,
    current: Arc<std::sync::atomic::AtomicI64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> StreamLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = RawWatch::open(&url).await;
    let mut log = StreamLog::default();
    let mut created = 0;
    let start = tokio::time::Instant::now();
    loop {
        let elapsed = start.elapsed();
        if created < WATCHERS_PER_STREAM
            && elapsed > RUN.mul_f64(created as f64 / WATCHERS_PER_STREAM as f64 * 0.8)
        {
            let cur = current.load(std::sync::atomic::Ordering::Relaxed);
            let (k, end) = match rng.random_range(0..4) {
                0 => (key(rng.random_range(0..KEYS)), String::new()),
                1 => ("k/1".to_string(), "k/2".to_string()),
                2 => (key(rng.random_range(0..KEYS)), "\0".to_string()),
                _ => ("\0".to_string(), "\0".to_string()),
            };
            let start_revision = match rng.random_range(0..3) {
                0 => 0,
                _ => (cur - rng.random_range(0..400)).max(1),
            };
            let req = WatchCreateRequest {
                key: Bytes::from(k),
                range_end: Bytes::from(end),
                start_revision,
                prev_kv: rng.random_bool(0.5),
                progress_notify: rng.random_bool(0.5),
                ..Default::default()
            };
            log.specs.push(Spec { req: req.clone() });
            w.create(req).await;
            created += 1;
        }
        if rng.random_bool(0.05) {
            w.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
                .await;
        }
        if let Some(r) = w.next(Duration::from_millis(20)).await {
            log.responses.push(r);
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
    }
    // Let everything in flight arrive (progress notifications keep
    // coming, so wait a fixed time rather than for silence).
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        if let Some(r) = w.next(Duration::from_millis(100)).await {
            log.responses.push(r);
        }
    }
    log
}

/// The expected form of an event, from the history.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    delete: bool,
    key: String,
    value: String,
    rev: i64,
    create: i64,
    version: i64,
    /// The key's previous version: (value, mod revision).
    prev: Option<(String, i64)>,
}

fn expected_events(history: &BTreeMap<i64, Vec<Change>>) -> Vec<Ev> {
    // key → (value, create, version, mod) of the live version.
    let mut live: HashMap<String, (String, i64, i64, i64)> = HashMap::new();
    let mut out = Vec::new();
    for (&rev, changes) in history {
        for (delete, k, v) in changes {
            let prev = live.get(k).map(|(v, _, _, m)| (v.clone(), *m));
            if *delete {
                live.remove(k);
                out.push(Ev {
                    delete: true,
                    key: k.clone(),
                    value: String::new(),
                    rev,
                    create: 0,
                    version: 0,
                    prev,
                });
            } else {
                let (create, version) = match live.get(k) {
                    Some((_, c, ver, _)) => (*c, ver + 1),
                    None => (rev, 1),
                };
                live.insert(k.clone(), (v.clone(), create, version, rev));
                out.push(Ev {
                    delete: false,
                    key: k.clone(),
                    value: v.clone(),
                    rev,
                    create,
                    version,
                    prev,
                });
            }
        }
    }
    out
}

/// An event as received: (response index, event, prev_kv (value, mod revision)).
type Received = (usize, Ev, Option<(String, i64)>);

fn in_range(req: &WatchCreateRequest, k: &str) -> bool {
    let k = k.as_bytes();
    let start: &[u8] = if req.key.is_empty() { b"\0" } else { &req.key };
    match req.range_end.as_ref() {
        [] => k == start,
        [0] => k >= start,
        end => k >= start && k < end,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_guarantees_hold_under_concurrent_writes_and_compaction() {
    let p = Proc::new(Kind::Oxcd, &["--watch-progress-notify-interval", "300ms"]);
    let history: History = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let current = Arc::new(std::sync::atomic::AtomicI64::new(1));
    // Seed some history so early watchers can start in the past.
    {
        let mut kv = p.kv().await;
        for i in 0..KEYS {
            let r = kv
                .put(PutRequest {
                    key: Bytes::from(key(i)),
                    value: Bytes::from("seed"),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let rev = r.header.unwrap().revision;
            history
                .lock()
                .await
                .insert(rev, vec![(false, key(i), "seed".into())]);
            current.store(rev, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        writers.push(tokio::spawn(writer(
            p.url(),
            i as u64,
            history.clone(),
            stop.clone(),
        )));
    }
    // Track the current revision, and compact behind it now and then.
    let tracker = {
        let (url, current, stop) = (p.url(), current.clone(), stop.clone());
        tokio::spawn(async move {
            let mut kv = oxcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
                .await
                .unwrap();
            let mut compactions = Vec::new();
            let mut tick = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = kv
                    .range(RangeRequest {
                        key: Bytes::from("k/"),
                        count_only: true,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let rev = r.header.unwrap().revision;
                current.store(rev, std::sync::atomic::Ordering::Relaxed);
                tick += 1;
                if tick % 10 == 0 && rev > 300 {
                    let at = rev - 30;
                    if kv
                        .compact(CompactionRequest {
                            revision: at,
                            physical: false,
                        })
                        .await
                        .is_ok()
                    {
                        compactions.push(at);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            compactions
        })
    };
    let mut streams = Vec::new();
    for s in 0..STREAMS {
        streams.push(tokio::spawn(stream_task(
            p.url(),
            100 + s as u64,
            current.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let compactions = tracker.await.unwrap();
    let mut logs = Vec::new();
    for s in streams {
        logs.push(s.await.unwrap());
    }
    let history = history.lock().await.clone();
    let last_rev = *history.keys().last().unwrap();
    assert_eq!(
        history.keys().copied().collect::<Vec<_>>(),
        (2..=last_rev).collect::<Vec<_>>(),
        "every revision was produced by a known write"
    );
    let all = expected_events(&history);
    let max_compaction = compactions.iter().copied().max().unwrap_or(0);

    let mut checked = 0;
    let mut canceled = 0;
    let mut events_checked = 0;
    let mut resumes = Vec::new();
    for (si, log) in logs.iter().enumerate() {
        // Map created responses to specs, in order.
        let mut id_of = HashMap::new();
        let mut specs = log.specs.iter();
        let mut created_rev = HashMap::new();
        let mut created_at = HashMap::new();
        let mut got: HashMap<i64, Vec<Received>> = HashMap::new();
        let mut cancel: HashMap<i64, i64> = HashMap::new();
        let mut progress: Vec<(usize, i64, i64)> = Vec::new(); // (index, watch id, revision)
        for (i, r) in log.responses.iter().enumerate() {
            if r.created {
                let spec = specs.next().expect("a created reply per create");
                assert!(!r.canceled, "stream {si}: create refused: {r:?}");
                id_of.insert(r.watch_id, spec.clone());
                created_rev.insert(r.watch_id, r.header.as_ref().unwrap().revision);
                created_at.insert(r.watch_id, i);
                continue;
            }
            if r.canceled {
                assert!(r.compact_revision > 0, "unexpected cancel {r:?}");
                cancel.insert(r.watch_id, r.compact_revision);
                continue;
            }
            if r.events.is_empty() {
                progress.push((i, r.watch_id, r.header.as_ref().unwrap().revision));
                continue;
            }
            assert!(
                id_of.contains_key(&r.watch_id),
                "stream {si}: events for watch {} before its created reply",
                r.watch_id
            );
            for e in &r.events {
                let kv = e.kv.as_ref().unwrap();
                let ev = Ev {
                    delete: e.r#type == 1,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    rev: kv.mod_revision,
                    create: kv.create_revision,
                    version: kv.version,
                    prev: None,
                };
                let prev = e.prev_kv.as_ref().map(|p| {
                    (
                        String::from_utf8_lossy(&p.value).into_owned(),
                        p.mod_revision,
                    )
                });
                got.entry(r.watch_id).or_default().push((i, ev, prev));
            }
        }
        for (id, spec) in &id_of {
            checked += 1;
            let from = if spec.req.start_revision == 0 {
                created_rev[id] + 1
            } else {
                spec.req.start_revision
            };
            let want: Vec<&Ev> = all
                .iter()
                .filter(|e| e.rev >= from && in_range(&spec.req, &e.key))
                .collect();
            let received = got.get(id).cloned().unwrap_or_default();
            let evs: Vec<Ev> = received.iter().map(|(_, e, _)| e.clone()).collect();
            let want_plain: Vec<Ev> = want
                .iter()
                .map(|e| Ev {
                    prev: None,
                    ..(*e).clone()
                })
                .collect();
            if let Some(compact) = cancel.get(id) {
                canceled += 1;
                assert!(
                    want_plain.starts_with(&evs),
                    "stream {si} watch {id}: events before the compaction cancel are not a prefix of the history"
                );
                assert!(*compact > from || evs.is_empty() || *compact > evs.last().unwrap().rev);
            } else {
                assert_eq!(
                    evs.len(),
                    want_plain.len(),
                    "stream {si} watch {id} ({:?} from {from}): got {} events, want {}",
                    spec.req,
                    evs.len(),
                    want_plain.len()
                );
                assert_eq!(
                    evs, want_plain,
                    "stream {si} watch {id}: events differ from the history"
                );
            }
            events_checked += evs.len();
            // Atomic: a revision's events arrive in one response.
            let mut response_of_rev: HashMap<i64, usize> = HashMap::new();
            for (resp, e, _) in &received {
                let r0 = *response_of_rev.entry(e.rev).or_insert(*resp);
                assert_eq!(
                    r0, *resp,
                    "stream {si} watch {id}: revision {} split",
                    e.rev
                );
            }
            // prev_kv.
            if spec.req.prev_kv {
                for ((_, e, prev), w) in received.iter().zip(&want) {
                    let is_create = !e.delete && e.create == e.rev;
                    if is_create {
                        continue;
                    }
                    match prev {
                        Some(p) => assert_eq!(Some(p), w.prev.as_ref(), "prev_kv of {e:?}"),
                        None => assert!(
                            w.prev.as_ref().is_none_or(|(_, m)| *m < max_compaction),
                            "stream {si} watch {id}: prev_kv missing for {e:?} (previous version {:?} not compacted)",
                            w.prev
                        ),
                    }
                }
            }
            // Bookmarkable: no event at or below a progress notification
            // that covered this watcher (it existed when it was sent).
            for (pi, pid, prev_rev) in &progress {
                if (*pid != -1 && pid != id) || created_at[id] > *pi {
                    continue;
                }
                for (resp, e, _) in &received {
                    if resp > pi {
                        assert!(
                            e.rev > *prev_rev,
                            "stream {si} watch {id}: event at {} after progress at {prev_rev}",
                            e.rev
                        );
                    }
                }
            }
            let mid = evs.get(evs.len() / 2).map_or(0, |e| e.rev);
            if !cancel.contains_key(id) && evs.len() >= 2 && mid >= max_compaction {
                let tail: Vec<Ev> = evs.iter().filter(|e| e.rev > mid).cloned().collect();
                resumes.push((spec.req.clone(), mid, tail));
            }
        }
    }
    // Resumable: watching again from r+1 gives the same events.
    let mut w = RawWatch::open(&p.url()).await;
    let mut resumed = 0;
    for (req, mid, tail) in resumes.iter().take(10) {
        w.create(WatchCreateRequest {
            start_revision: mid + 1,
            ..req.clone()
        })
        .await;
        let mut resps = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_millis(600);
        while tokio::time::Instant::now() < until {
            if let Some(r) = w.next(Duration::from_millis(100)).await {
                resps.push(r);
            }
        }
        let id = resps.iter().find(|r| r.created).unwrap().watch_id;
        let again: Vec<(String, i64)> = resps
            .iter()
            .filter(|r| r.watch_id == id)
            .flat_map(|r| r.events.iter())
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                )
            })
            .collect();
        let before: Vec<(String, i64)> = tail.iter().map(|e| (e.key.clone(), e.rev)).collect();
        assert_eq!(again, before, "resuming {req:?} at {}", mid + 1);
        resumed += 1;
    }
    eprintln!(
        "watch checker: {} revisions, {checked} watchers ({canceled} canceled by compaction), {events_checked} events checked, {resumed} resumed, compactions at {compactions:?}",
        history.len()
    );
    assert!(checked >= STREAMS * WATCHERS_PER_STREAM / 2);
    assert!(
        events_checked > 1000,
        "too few events checked: {events_checked}"
    );
}
