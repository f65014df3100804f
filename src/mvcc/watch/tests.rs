use std::time::Duration;

use super::*;
use crate::mvcc::{Batch, KeyRange};
use crate::proto::etcdserverpb::WatchCreateRequest;
use crate::storage::Db;

struct T {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
}

fn open() -> T {
    open_with_progress(Duration::from_secs(600))
}

fn open_with_progress(progress: Duration) -> T {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let store = Arc::new(Store::open(db.clone()).unwrap());
    let hub = WatchHub::start(store.clone(), progress).unwrap();
    T {
        _dir: dir,
        db,
        store,
        hub,
    }
}

fn bs(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl T {
    /// Applies writes the way the applier does: write, notify, publish.
    fn apply(&self, f: impl FnOnce(&mut Batch, &Db)) {
        let mut b = self.store.begin_batch();
        f(&mut b, &self.db);
        let c = self.store.write(b).unwrap();
        self.hub.notify(&c.events, c.rev);
        self.store.publish(&c);
    }

    fn put(&self, k: &str, v: &str) {
        self.apply(|b, db| {
            let mut t = b.txn(db);
            t.put(&bs(k), &bs(v), 0).unwrap();
            t.end();
        });
    }

    fn del(&self, k: &str) {
        self.apply(|b, db| {
            let mut t = b.txn(db);
            t.delete_range(KeyRange::Key(k.as_bytes())).unwrap();
            t.end();
        });
    }
}

fn create(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: bs(key),
        range_end: bs(end),
        start_revision: start,
        ..Default::default()
    }
}

async fn next(rx: &mut mpsc::Receiver<WatchMsg>) -> WatchResponse {
    *tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a response within 5s")
        .expect("stream open")
        .resp
}

fn events(r: &WatchResponse) -> Vec<(i32, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8(kv.key.to_vec()).unwrap(),
                kv.mod_revision,
            )
        })
        .collect()
}

#[tokio::test]
async fn created_comes_first_then_events_in_order() {
    let t = open();
    let (ws, mut rx) = t.hub.open_stream();
    assert_eq!(ws.create(&create("a", "b", 0)).await, Created::Ok(0));
    let created = next(&mut rx).await;
    assert!(created.created && !created.canceled);
    assert_eq!(created.header.unwrap().revision, 1);
    t.put("a1", "x"); // 2
    t.put("c", "x"); // 3: outside the range
    t.put("a2", "y"); // 4
    t.del("a1"); // 5
    assert_eq!(events(&next(&mut rx).await), vec![(0, "a1".into(), 2)]);
    assert_eq!(events(&next(&mut rx).await), vec![(0, "a2".into(), 4)]);
    let r = next(&mut rx).await;
    assert_eq!(events(&r), vec![(1, "a1".into(), 5)]);
    assert_eq!(r.header.unwrap().revision, 5);
    // A second watcher gets the next automatic id.
    assert_eq!(ws.create(&create("a", "", 0)).await, Created::Ok(1));
}

#[tokio::test]
async fn past_start_revisions_are_replayed_from_storage() {
    let t = open();
    for i in 0..5 {
        t.put(&format!("k{i}"), "v"); // revisions 2..=6
    }
    t.del("k1"); // 7
    let (ws, mut rx) = t.hub.open_stream();
    ws.create(&create("k", "l", 3)).await;
    assert!(next(&mut rx).await.created);
    let r = next(&mut rx).await;
    assert_eq!(
        events(&r),
        vec![
            (0, "k1".into(), 3),
            (0, "k2".into(), 4),
            (0, "k3".into(), 5),
            (0, "k4".into(), 6),
            (1, "k1".into(), 7)
        ]
    );
    // Then live events follow without a gap or a repeat.
    t.put("k9", "v"); // 8
    assert_eq!(events(&next(&mut rx).await), vec![(0, "k9".into(), 8)]);
}

#[tokio::test]
async fn a_stalled_stream_is_caught_up_exactly_once_its_reader_returns() {
    let t = open();
    let (ws, mut rx) = t.hub.open_stream();
    ws.create(&create("s", "", 0)).await;
    assert!(next(&mut rx).await.created);
    // Far more writes than the channel holds, without reading.
    let n = STREAM_CHANNEL_CAPACITY as i64 * 3;
    for i in 0..n {
        t.put("s", &i.to_string());
    }
    // The applier never blocked; the watcher fell back to storage.
    let mut got = Vec::new();
    while (got.len() as i64) < n {
        let r = next(&mut rx).await;
        for e in &r.events {
            got.push(e.kv.as_ref().unwrap().mod_revision);
        }
    }
    assert_eq!(
        got,
        (2..2 + n).collect::<Vec<_>>(),
        "every revision once, in order"
    );
    t.put("s", "after");
    assert_eq!(events(&next(&mut rx).await), vec![(0, "s".into(), 2 + n)]);
}

#[tokio::test]
async fn compacted_start_revisions_cancel_with_the_compact_revision() {
    let t = open();
    for _ in 0..5 {
        t.put("c", "v");
    }
    t.apply(|b, _| b.compact(4).unwrap());
    let (ws, mut rx) = t.hub.open_stream();
    ws.create(&create("c", "", 2)).await;
    assert!(next(&mut rx).await.created);
    let r = next(&mut rx).await;
    assert!(r.canceled);
    assert_eq!(r.compact_revision, 4);
    assert_eq!(r.header.unwrap().revision, 0);
    assert_eq!(t.hub.watcher_count(), 0);
    // Exactly at the compaction point is allowed.
    ws.create(&create("c", "", 4)).await;
    assert!(next(&mut rx).await.created);
    let r = next(&mut rx).await;
    assert_eq!(events(&r).len(), 3);
}

#[tokio::test]
async fn refusals_duplicates_filters_and_cancel() {
    let t = open();
    let (ws, mut rx) = t.hub.open_stream();
    let r = {
        ws.create(&create("b", "a", 0)).await;
        next(&mut rx).await
    };
    assert!(r.created && r.canceled);
    assert_eq!(
        (r.watch_id, r.cancel_reason.as_str()),
        (-1, "mvcc: watcher range is empty")
    );
    ws.create(&create("x", "", -1)).await;
    let r = next(&mut rx).await;
    assert_eq!(
        (r.watch_id, r.cancel_reason.as_str()),
        (-1, "etcdserver: mvcc: required revision has been compacted")
    );
    let mut req = create("x", "", 0);
    req.watch_id = 7;
    req.filters = vec![FilterType::Noput as i32];
    assert_eq!(ws.create(&req).await, Created::Ok(7));
    assert_eq!(next(&mut rx).await.watch_id, 7);
    assert!(matches!(ws.create(&req).await, Created::Refused(_)));
    let r = next(&mut rx).await;
    assert_eq!(
        r.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    t.put("x", "1");
    t.del("x");
    let r = next(&mut rx).await;
    assert_eq!(events(&r), vec![(1, "x".into(), 3)], "NOPUT drops the put");
    ws.cancel(7).await;
    let r = next(&mut rx).await;
    assert!(r.canceled && !r.created);
    assert_eq!(r.watch_id, 7);
    ws.cancel(7).await; // unknown now: no reply
    t.put("x", "2");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
    );
    // An empty key means "\0".
    let mut all = create("", "\0", 0);
    all.watch_id = 0;
    assert_eq!(ws.create(&all).await, Created::Ok(0));
}

#[tokio::test]
async fn progress_requests_answer_only_when_every_watcher_is_caught_up() {
    let t = open();
    t.put("p", "1");
    let (ws, mut rx) = t.hub.open_stream();
    ws.create(&create("p", "", 0)).await;
    next(&mut rx).await;
    ws.request_progress();
    let r = next(&mut rx).await;
    assert_eq!((r.watch_id, r.header.unwrap().revision), (-1, 2));
    assert!(r.events.is_empty() && !r.created && !r.canceled);
    // A watcher waiting for a future revision is not caught up.
    ws.create(&create("q", "", 100)).await;
    next(&mut rx).await;
    ws.request_progress();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn progress_notify_reaches_idle_caught_up_watchers() {
    let t = open_with_progress(Duration::from_millis(200));
    let (ws, mut rx) = t.hub.open_stream();
    let mut req = create("n", "", 0);
    req.progress_notify = true;
    ws.create(&req).await;
    next(&mut rx).await;
    t.put("n", "1");
    assert_eq!(events(&next(&mut rx).await).len(), 1);
    // The next notification carries the current revision and no events.
    let r = next(&mut rx).await;
    assert_eq!((r.watch_id, r.events.len()), (0, 0));
    assert_eq!(r.header.unwrap().revision, 2);
}

#[tokio::test]
async fn dropping_a_stream_frees_its_watchers() {
    let t = open();
    let (ws, mut rx) = t.hub.open_stream();
    for i in 0..10 {
        ws.create(&create(&format!("d{i}"), "", 0)).await;
        next(&mut rx).await;
    }
    assert_eq!(t.hub.watcher_count(), 10);
    drop(ws);
    assert_eq!(t.hub.watcher_count(), 0);
    t.put("d1", "x");
}
