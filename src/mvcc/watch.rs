//! The watch hub: which watchers exist, what each has been sent, and how
//! events reach them (etcd: `watchable_store.go`, `watcher_group.go`,
//! `watcher.go`).
//!
//! A watcher is **synced** when it has been sent everything up to the last
//! revision the applier published (`notified`): the applier hands each
//! applied batch's events to [`WatchHub::notify`], which finds the synced
//! watchers they concern (a hash map for single keys, an ordered map for
//! ranges) and queues one response per watcher on its stream's bounded
//! channel with `try_send`. It never waits: if a stream's channel is full,
//! its watcher becomes **unsynced** at the first revision it has not been
//! sent, and the applier moves on.
//!
//! Unsynced watchers (slow consumers, watchers created with a past
//! `start_revision`, watchers whose `created` reply was still in flight)
//! are caught up by the syncer thread from the `rev` and `kv` column
//! families, at most [`MAX_REVISIONS_PER_RESPONSE`] revisions per response
//! and only when their stream's channel has room; once caught up they are
//! synced again. A watcher that needs a compacted revision is canceled with
//! `compact_revision` set. Memory therefore stays bounded by the channels,
//! whatever a client does; events are `Bytes`-shared, not copied, between
//! the watchers they go to.
//!
//! Ordering guarantees: a watcher's events go out in revision order,
//! without gaps or repeats, all events of one revision in one response;
//! its `created` reply goes out before any of its events (it stays unsynced,
//! and so receives nothing, until the reply is queued).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Store;
use super::key;
use super::record::Record;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::storage::{Cf, Db};

/// Watch ids are chosen per stream; -1 marks responses for no watcher.
pub type WatchId = i64;
pub const INVALID_WATCH_ID: WatchId = -1;

/// Responses a stream may have queued before its watchers are considered
/// slow (etcd: `chanBufLen`).
pub const STREAM_CHANNEL_CAPACITY: usize = 128;
/// Most revisions a catch-up response carries (etcd: `watchBatchMaxRevs`).
pub const MAX_REVISIONS_PER_RESPONSE: i64 = 1000;
/// Most unsynced watchers handled per syncer round (etcd: `maxWatchersPerSync`).
const MAX_WATCHERS_PER_SYNC: usize = 512;
/// Most events read from storage per syncer round (bounds its memory).
const MAX_EVENTS_PER_SYNC: usize = 10_000;
/// How often the syncer looks for unsynced watchers without being woken.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// A response on its way to a stream, with what the stream's sender must
/// still do to it.
#[derive(Debug)]
pub struct WatchMsg {
    pub resp: WatchResponse,
    /// Attach each non-create event's previous key-value.
    pub prev_kv: bool,
    /// Split the response if it is too large.
    pub fragment: bool,
}

/// Which keys a watcher covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WatchRange {
    Key(Bytes),
    /// `[start, end)`; `None` = every key `>= start`.
    Range {
        start: Bytes,
        end: Option<Bytes>,
    },
}

impl WatchRange {
    fn contains(&self, k: &[u8]) -> bool {
        match self {
            WatchRange::Key(key) => key.as_ref() == k,
            WatchRange::Range { start, end } => {
                k >= start.as_ref() && end.as_ref().is_none_or(|e| k < e.as_ref())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    /// Registered, `created` reply not yet queued: receives nothing.
    Pending,
    /// Receives events from `notify`.
    Synced,
    /// Waits for the syncer.
    Unsynced,
}

#[derive(Debug)]
struct Watcher {
    stream: u64,
    id: WatchId,
    range: WatchRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// The smallest revision not yet sent (for synced watchers: at most
    /// `notified + 1`, or a future start revision).
    next_rev: i64,
    state: WState,
    /// Whether events were sent since the last progress tick.
    sent_since_tick: bool,
    /// Distinguishes reuses of one slot.
    generation: u64,
}

impl Watcher {
    fn wants(&self, e: &Event) -> bool {
        if e.r#type == EventType::Put as i32 {
            !self.no_put
        } else {
            !self.no_delete
        }
    }

    fn caught_up(&self, notified: i64) -> bool {
        self.state == WState::Synced && self.next_rev <= notified + 1
    }
}

fn event_rev(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn event_key(e: &Event) -> &[u8] {
    e.kv.as_ref().map_or(&[], |kv| kv.key.as_ref())
}

/// Synced watchers by the keys they cover.
#[derive(Default)]
struct Index {
    keys: HashMap<Bytes, Vec<usize>>,
    /// (start, slot) → end.
    ranges: BTreeMap<(Bytes, usize), Option<Bytes>>,
}

impl Index {
    fn insert(&mut self, slot: usize, r: &WatchRange) {
        match r {
            WatchRange::Key(k) => self.keys.entry(k.clone()).or_default().push(slot),
            WatchRange::Range { start, end } => {
                self.ranges.insert((start.clone(), slot), end.clone());
            }
        }
    }

    fn remove(&mut self, slot: usize, r: &WatchRange) {
        match r {
            WatchRange::Key(k) => {
                if let Some(v) = self.keys.get_mut(k) {
                    v.retain(|s| *s != slot);
                    if v.is_empty() {
                        self.keys.remove(k);
                    }
                }
            }
            WatchRange::Range { start, .. } => {
                self.ranges.remove(&(start.clone(), slot));
            }
        }
    }

    fn matches(&self, k: &[u8], out: &mut Vec<usize>) {
        if let Some(v) = self.keys.get(k) {
            out.extend_from_slice(v);
        }
        if self.ranges.is_empty() {
            return;
        }
        let upper = (Bytes::copy_from_slice(k), usize::MAX);
        for ((_, slot), end) in self
            .ranges
            .range((Bound::Unbounded, Bound::Included(upper)))
        {
            if end.as_ref().is_none_or(|e| k < e.as_ref()) {
                out.push(*slot);
            }
        }
    }
}

struct StreamEntry {
    tx: mpsc::Sender<WatchMsg>,
    ids: HashMap<WatchId, usize>,
    next_auto: WatchId,
}

struct HubState {
    /// The last revision whose events were handed to `notify`.
    notified: i64,
    slots: Vec<Option<Watcher>>,
    free: Vec<usize>,
    next_generation: u64,
    synced: Index,
    unsynced: HashSet<usize>,
    streams: HashMap<u64, StreamEntry>,
    next_stream: u64,
}

impl HubState {
    fn watcher(&self, slot: usize) -> Option<&Watcher> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn watcher_mut(&mut self, slot: usize) -> Option<&mut Watcher> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    fn insert(&mut self, w: Watcher) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(w);
                slot
            }
            None => {
                self.slots.push(Some(w));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) -> Option<Watcher> {
        let w = self.slots.get_mut(slot)?.take()?;
        match w.state {
            WState::Synced => self.synced.remove(slot, &w.range),
            WState::Unsynced => {
                self.unsynced.remove(&slot);
            }
            WState::Pending => {}
        }
        self.free.push(slot);
        Some(w)
    }

    fn set_synced(&mut self, slot: usize) {
        let Some(w) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match w.state {
            WState::Synced => return,
            WState::Unsynced => {
                self.unsynced.remove(&slot);
            }
            WState::Pending => {}
        }
        w.state = WState::Synced;
        let range = w.range.clone();
        self.synced.insert(slot, &range);
    }

    fn set_unsynced(&mut self, slot: usize) {
        let Some(w) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if w.state == WState::Synced {
            let range = w.range.clone();
            w.state = WState::Unsynced;
            self.synced.remove(slot, &range);
        } else {
            w.state = WState::Unsynced;
        }
        self.unsynced.insert(slot);
    }
}

/// The hub shared by the applier, the syncer and every watch stream.
pub struct WatchHub {
    state: Mutex<HubState>,
    store: Arc<Store>,
    wake: std_mpsc::SyncSender<()>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl WatchHub {
    /// Creates the hub and starts its syncer thread. `progress_interval`
    /// is `--watch-progress-notify-interval`.
    pub fn start(store: Arc<Store>, progress_interval: Duration) -> Result<Arc<WatchHub>> {
        let (wake, wake_rx) = std_mpsc::sync_channel(1);
        let hub = Arc::new(WatchHub {
            state: Mutex::new(HubState {
                notified: store.current_rev(),
                slots: Vec::new(),
                free: Vec::new(),
                next_generation: 0,
                synced: Index::default(),
                unsynced: HashSet::new(),
                streams: HashMap::new(),
                next_stream: 1,
            }),
            store,
            wake,
        });
        let weak = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("watch-syncer".into())
            .spawn(move || syncer(weak, wake_rx, progress_interval))
            .map_err(|e| Error::internal(format!("spawn watch syncer: {e}")))?;
        Ok(hub)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every critical section leaves the state consistent, so a panic
        // elsewhere (poisoning) does not make it unusable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_syncer(&self) {
        let _ = self.wake.try_send(());
    }

    /// The last revision whose events have been published to watchers.
    pub fn notified_rev(&self) -> i64 {
        self.lock().notified
    }

    /// Number of watchers (all states).
    pub fn watcher_count(&self) -> usize {
        let st = self.lock();
        st.slots.len() - st.free.len()
    }

    /// Opens a watch stream: a handle to create and cancel watchers on it,
    /// and the receiving end of its response channel.
    pub fn open_stream(self: &Arc<Self>) -> (WatchStream, mpsc::Receiver<WatchMsg>) {
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CAPACITY);
        let mut st = self.lock();
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(
            id,
            StreamEntry {
                tx: tx.clone(),
                ids: HashMap::new(),
                next_auto: 0,
            },
        );
        drop(st);
        (
            WatchStream {
                hub: self.clone(),
                id,
                tx,
            },
            rx,
        )
    }

    /// Publishes the events of an applied batch whose last revision is
    /// `rev`. Called by the applier after the batch is written and before
    /// the revision is visible to readers, so every revision a client can
    /// learn of has been published here.
    pub fn notify(&self, events: &[Event], rev: i64) {
        let mut st = self.lock();
        let before = st.notified;
        st.notified = st.notified.max(rev);
        if events.is_empty() || (st.synced.keys.is_empty() && st.synced.ranges.is_empty()) {
            return;
        }
        let mut per_watcher: HashMap<usize, Vec<Event>> = HashMap::new();
        let mut hits = Vec::new();
        for e in events {
            hits.clear();
            st.synced.matches(event_key(e), &mut hits);
            for &slot in &hits {
                if let Some(w) = st.watcher(slot)
                    && event_rev(e) >= w.next_rev
                    && w.wants(e)
                {
                    per_watcher.entry(slot).or_default().push(e.clone());
                }
            }
        }
        let mut slow = false;
        for (slot, evs) in per_watcher {
            let Some(w) = st.watcher(slot) else { continue };
            let Some(stream) = st.streams.get(&w.stream) else {
                continue;
            };
            let msg = WatchMsg {
                resp: WatchResponse {
                    header: header(rev),
                    watch_id: w.id,
                    events: evs,
                    ..Default::default()
                },
                prev_kv: w.prev_kv,
                fragment: w.fragment,
            };
            match stream.tx.try_send(msg) {
                Ok(()) => {
                    if let Some(w) = st.watcher_mut(slot) {
                        w.next_rev = rev + 1;
                        w.sent_since_tick = true;
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Slow consumer: catch it up from storage later,
                    // starting with this batch.
                    if let Some(w) = st.watcher_mut(slot) {
                        w.next_rev = w.next_rev.max(before + 1);
                    }
                    st.set_unsynced(slot);
                    slow = true;
                }
                // The stream is going away; its handle removes it.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        drop(st);
        if slow {
            self.wake_syncer();
        }
    }

    /// One round of catching up unsynced watchers. Returns whether it made
    /// progress (more rounds may be useful right away).
    fn sync_round(&self) -> bool {
        // 1. Pick watchers whose streams have room.
        struct Pick {
            slot: usize,
            generation: u64,
            next_rev: i64,
            range: WatchRange,
            no_put: bool,
            no_delete: bool,
        }
        let (picks, target) = {
            let st = self.lock();
            let mut picks = Vec::new();
            for &slot in &st.unsynced {
                let Some(w) = st.watcher(slot) else { continue };
                let room = st
                    .streams
                    .get(&w.stream)
                    .is_some_and(|s| s.tx.capacity() > 0);
                if room {
                    picks.push(Pick {
                        slot,
                        generation: w.generation,
                        next_rev: w.next_rev,
                        range: w.range.clone(),
                        no_put: w.no_put,
                        no_delete: w.no_delete,
                    });
                    if picks.len() >= MAX_WATCHERS_PER_SYNC {
                        break;
                    }
                }
            }
            (picks, st.notified)
        };
        if picks.is_empty() {
            return false;
        }
        // 2. Read their events from a snapshot, without the lock. The
        //    compacted revision is read after the snapshot is taken, so a
        //    compaction that removed history the snapshot lacks is seen.
        let db = self.store.db().clone();
        let snapshot = db.raw().snapshot();
        let compact = self.store.compact_rev();
        let from = picks
            .iter()
            .filter(|p| p.next_rev >= compact)
            .map(|p| p.next_rev)
            .min();
        let (events, chunk_end) = match from {
            Some(from) if from <= target => match read_events(&db, &snapshot, from, target) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "watch catch-up read failed");
                    return false;
                }
            },
            _ => (Vec::new(), target),
        };
        drop(snapshot);
        // 3. Hand out what was read, if the watchers are still as seen.
        let mut st = self.lock();
        let mut progressed = false;
        for p in picks {
            let Some(w) = st.watcher(p.slot) else {
                continue;
            };
            if w.generation != p.generation
                || w.state != WState::Unsynced
                || w.next_rev != p.next_rev
            {
                continue;
            }
            let Some(stream) = st.streams.get(&w.stream) else {
                continue;
            };
            if p.next_rev < compact {
                let msg = WatchMsg {
                    resp: WatchResponse {
                        header: header(0),
                        watch_id: w.id,
                        canceled: true,
                        compact_revision: compact,
                        ..Default::default()
                    },
                    prev_kv: false,
                    fragment: false,
                };
                if stream.tx.try_send(msg).is_ok() {
                    let (stream_id, id) = (w.stream, w.id);
                    st.remove(p.slot);
                    if let Some(s) = st.streams.get_mut(&stream_id) {
                        s.ids.remove(&id);
                    }
                    progressed = true;
                }
                continue;
            }
            let evs: Vec<Event> = events
                .iter()
                .filter(|e| {
                    event_rev(e) >= p.next_rev
                        && p.range.contains(event_key(e))
                        && if e.r#type == EventType::Put as i32 {
                            !p.no_put
                        } else {
                            !p.no_delete
                        }
                })
                .cloned()
                .collect();
            let next = chunk_end + 1;
            if !evs.is_empty() {
                let msg = WatchMsg {
                    resp: WatchResponse {
                        header: header(target),
                        watch_id: w.id,
                        events: evs,
                        ..Default::default()
                    },
                    prev_kv: w.prev_kv,
                    fragment: w.fragment,
                };
                if stream.tx.try_send(msg).is_err() {
                    continue;
                }
            }
            if next > p.next_rev {
                progressed = true;
            }
            let notified = st.notified;
            if let Some(w) = st.watcher_mut(p.slot) {
                w.next_rev = w.next_rev.max(next);
                if w.next_rev > notified {
                    st.set_synced(p.slot);
                }
            }
        }
        progressed && !st.unsynced.is_empty()
    }

    /// Sends a progress notification to every caught-up watcher that asked
    /// for them and was sent no events since the previous tick.
    fn progress_tick(&self) {
        let mut st = self.lock();
        let notified = st.notified;
        let mut sends = Vec::new();
        for slot in 0..st.slots.len() {
            let Some(w) = st.slots[slot].as_mut() else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if w.caught_up(notified) && !w.sent_since_tick {
                sends.push((w.stream, w.id));
            }
            w.sent_since_tick = false;
        }
        for (stream, id) in sends {
            if let Some(s) = st.streams.get(&stream) {
                let _ = s.tx.try_send(WatchMsg {
                    resp: WatchResponse {
                        header: header(notified),
                        watch_id: id,
                        ..Default::default()
                    },
                    prev_kv: false,
                    fragment: false,
                });
            }
        }
    }
}

/// Reads the events of revisions `from..=target` (stopping at a revision
/// boundary once enough are read) from a snapshot. Returns the events and
/// the last revision fully read.
fn read_events(
    db: &Db,
    snapshot: &rocksdb::Snapshot<'_>,
    from: i64,
    target: i64,
) -> Result<(Vec<Event>, i64)> {
    let limit_rev = target.min(from + MAX_REVISIONS_PER_RESPONSE - 1);
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_snapshot(snapshot);
    ro.set_iterate_upper_bound(key::rev_key(limit_rev + 1, 0).to_vec());
    let mut it = db.raw().raw_iterator_cf_opt(db.cf(Cf::Rev), ro);
    it.seek(key::rev_key(from, 0));
    let mut events = Vec::new();
    let mut current = None;
    while let Some((k, v)) = it.item() {
        let (main, _) = key::split_rev_key(k).ok_or_else(|| Error::internal("corrupt rev key"))?;
        if current != Some(main) {
            // A new revision starts: the previous one is complete.
            if let Some(prev) = current
                && events.len() >= MAX_EVENTS_PER_SYNC
            {
                return Ok((events, prev));
            }
            current = Some(main);
        }
        let (&kind, user_key) = v
            .split_first()
            .ok_or_else(|| Error::internal("corrupt rev value"))?;
        let user_key = Bytes::copy_from_slice(user_key);
        let ev = if kind == super::EVENT_DELETE {
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: user_key,
                    mod_revision: main,
                    ..Default::default()
                }),
                prev_kv: None,
            }
        } else {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_snapshot(snapshot);
            let rec = db
                .raw()
                .get_pinned_cf_opt(db.cf(Cf::Kv), key::version_key(&user_key, main), &ro)?
                .ok_or_else(|| Error::internal("rev entry without its version"))?;
            match Record::decode(&rec)? {
                Record::Put {
                    create_rev,
                    version,
                    lease,
                    value,
                } => Event {
                    r#type: EventType::Put as i32,
                    kv: Some(KeyValue {
                        key: user_key,
                        create_revision: create_rev,
                        mod_revision: main,
                        version,
                        value: Bytes::copy_from_slice(value),
                        lease,
                    }),
                    prev_kv: None,
                },
                Record::Tombstone => return Err(Error::internal("put event on a tombstone")),
            }
        };
        events.push(ev);
        it.next();
    }
    it.status()?;
    Ok((events, limit_rev))
}

/// The syncer thread: catches up unsynced watchers and sends progress
/// notifications. Ends when the hub is dropped.
fn syncer(hub: std::sync::Weak<WatchHub>, wake: std_mpsc::Receiver<()>, progress: Duration) {
    let mut next_progress = Instant::now() + jittered(progress);
    loop {
        let wait = SYNC_INTERVAL.min(next_progress.saturating_duration_since(Instant::now()));
        match wake.recv_timeout(wait) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let Some(hub) = hub.upgrade() else { return };
        // Keep going while rounds make progress, but yield regularly.
        for _ in 0..64 {
            if !hub.sync_round() {
                break;
            }
        }
        if Instant::now() >= next_progress {
            hub.progress_tick();
            next_progress = Instant::now() + jittered(progress);
        }
    }
}

/// etcd adds up to 10% random jitter to the progress interval.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 10_000.0)
}

/// One client's watch stream: creates and cancels watchers on it. Dropping
/// it removes every watcher of the stream.
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: u64,
    tx: mpsc::Sender<WatchMsg>,
}

/// How a create request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Ok(WatchId),
    Refused(String),
}

impl WatchStream {
    async fn send(&self, resp: WatchResponse) -> bool {
        self.tx
            .send(WatchMsg {
                resp,
                prev_kv: false,
                fragment: false,
            })
            .await
            .is_ok()
    }

    async fn refuse(&self, reason: String) -> Created {
        let rev = self.hub.notified_rev();
        self.send(WatchResponse {
            header: header(rev),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.clone(),
            ..Default::default()
        })
        .await;
        Created::Refused(reason)
    }

    /// Handles a create request: queues the `created` reply (or a refusal),
    /// then lets the watcher receive events.
    pub async fn create(&self, req: &WatchCreateRequest) -> Created {
        let key = if req.key.is_empty() {
            Bytes::from_static(b"\0")
        } else {
            req.key.clone()
        };
        if req.start_revision < 0 {
            return self.refuse(Error::Compacted.message().to_string()).await;
        }
        let range = match req.range_end.as_ref() {
            [] => WatchRange::Key(key),
            [0] => WatchRange::Range {
                start: key,
                end: None,
            },
            end if end <= key.as_ref() => {
                return self
                    .refuse("mvcc: watcher range is empty".to_string())
                    .await;
            }
            _ => WatchRange::Range {
                start: key,
                end: Some(req.range_end.clone()),
            },
        };
        let registered = self.register(req, range);
        let (slot, id, rev) = match registered {
            Ok(r) => r,
            Err(reason) => return self.refuse(reason).await,
        };
        let sent = self
            .send(WatchResponse {
                header: header(rev),
                watch_id: id,
                created: true,
                ..Default::default()
            })
            .await;
        if !sent {
            return Created::Refused("stream closed".into());
        }
        let mut st = self.hub.lock();
        let notified = st.notified;
        let next_rev = match st.watcher(slot) {
            Some(w) if w.id == id && w.stream == self.id => w.next_rev,
            _ => return Created::Ok(id),
        };
        if next_rev > notified {
            st.set_synced(slot);
        } else {
            st.set_unsynced(slot);
            drop(st);
            self.hub.wake_syncer();
        }
        Created::Ok(id)
    }

    /// Adds a pending watcher; returns its slot, id and the revision for the
    /// `created` reply, or the reason it is refused.
    fn register(
        &self,
        req: &WatchCreateRequest,
        range: WatchRange,
    ) -> std::result::Result<(usize, WatchId, i64), String> {
        let mut st = self.hub.lock();
        let notified = st.notified;
        let generation = st.next_generation;
        st.next_generation += 1;
        let Some(entry) = st.streams.get_mut(&self.id) else {
            return Err("stream closed".into());
        };
        let id = if req.watch_id != 0 {
            if entry.ids.contains_key(&req.watch_id) {
                return Err("mvcc: duplicate watch ID provided on the WatchStream".into());
            }
            req.watch_id
        } else {
            while entry.ids.contains_key(&entry.next_auto) {
                entry.next_auto += 1;
            }
            let id = entry.next_auto;
            entry.next_auto += 1;
            id
        };
        let filters = |f: FilterType| req.filters.contains(&(f as i32));
        let w = Watcher {
            stream: self.id,
            id,
            range,
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            next_rev: if req.start_revision == 0 {
                notified + 1
            } else {
                req.start_revision
            },
            state: WState::Pending,
            sent_since_tick: false,
            generation,
        };
        let slot = st.insert(w);
        if let Some(entry) = st.streams.get_mut(&self.id) {
            entry.ids.insert(id, slot);
        }
        Ok((slot, id, notified))
    }

    /// Cancels a watcher of this stream; an unknown id gets no reply.
    pub async fn cancel(&self, id: WatchId) {
        let rev = {
            let mut st = self.hub.lock();
            let Some(slot) = st.streams.get_mut(&self.id).and_then(|e| e.ids.remove(&id)) else {
                return;
            };
            st.remove(slot);
            st.notified
        };
        self.send(WatchResponse {
            header: header(rev),
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
        .await;
    }

    /// Answers a progress request: one response with watch id -1 and the
    /// current revision if every watcher of the stream is caught up;
    /// nothing otherwise (etcd 3.5+).
    pub fn request_progress(&self) {
        let st = self.hub.lock();
        let Some(entry) = st.streams.get(&self.id) else {
            return;
        };
        let notified = st.notified;
        let all = entry
            .ids
            .values()
            .all(|&slot| st.watcher(slot).is_some_and(|w| w.caught_up(notified)));
        if all {
            let _ = entry.tx.try_send(WatchMsg {
                resp: WatchResponse {
                    header: header(notified),
                    watch_id: INVALID_WATCH_ID,
                    ..Default::default()
                },
                prev_kv: false,
                fragment: false,
            });
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if let Some(entry) = st.streams.remove(&self.id) {
            for slot in entry.ids.into_values() {
                st.remove(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests;
