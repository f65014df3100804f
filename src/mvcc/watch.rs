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

use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// Boxed: a stream's channel reserves slots in blocks, and idle
    /// streams should not hold room for full responses.
    pub resp: Box<WatchResponse>,
    /// Attach each non-create event's previous key-value.
    pub prev_kv: bool,
    /// Split the response if it is too large.
    pub fragment: bool,
}

/// Index of a watcher in the hub's slot table.
type Slot = u32;
/// No slot (end of a chain).
const NIL: Slot = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    /// Exactly `start`.
    Key,
    /// `[start, end)`.
    Range,
    /// Every key `>= start`.
    FromKey,
}

/// Which keys a watcher covers: start and end in one allocation (watchers
/// are many; each byte per watcher counts).
#[derive(Debug, Clone)]
struct Keys {
    bytes: Box<[u8]>,
    split: u32,
    kind: RangeKind,
}

impl Keys {
    fn new(start: &[u8], end: Option<&[u8]>, kind: RangeKind) -> Keys {
        let mut v = Vec::with_capacity(start.len() + end.map_or(0, <[u8]>::len));
        v.extend_from_slice(start);
        if let Some(e) = end {
            v.extend_from_slice(e);
        }
        Keys {
            split: start.len() as u32,
            bytes: v.into_boxed_slice(),
            kind,
        }
    }

    fn start(&self) -> &[u8] {
        &self.bytes[..self.split as usize]
    }

    fn end(&self) -> &[u8] {
        &self.bytes[self.split as usize..]
    }

    fn contains(&self, k: &[u8]) -> bool {
        match self.kind {
            RangeKind::Key => k == self.start(),
            RangeKind::FromKey => k >= self.start(),
            RangeKind::Range => k >= self.start() && k < self.end(),
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

const NO_PUT: u8 = 1;
const NO_DELETE: u8 = 2;
const PREV_KV: u8 = 4;
const FRAGMENT: u8 = 8;
const PROGRESS_NOTIFY: u8 = 16;
/// Events were sent since the last progress tick.
const SENT_SINCE_TICK: u8 = 32;

#[derive(Debug)]
struct Watcher {
    id: WatchId,
    /// The smallest revision not yet sent (for synced watchers: at most
    /// `notified + 1`, or a future start revision).
    next_rev: i64,
    keys: Keys,
    stream: u32,
    /// Distinguishes reuses of one slot.
    generation: u32,
    /// Neighbours in the chain of synced single-key watchers whose keys
    /// share a hash.
    prev: Slot,
    next: Slot,
    flags: u8,
    state: WState,
}

impl Watcher {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn wants(&self, e: &Event) -> bool {
        if e.r#type == EventType::Put as i32 {
            !self.has(NO_PUT)
        } else {
            !self.has(NO_DELETE)
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

/// 64-bit FNV-1a: hashes keys for the single-key index.
fn key_hash(k: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in k {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hasher for keys that already are hashes.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashHeads = HashMap<u64, Slot, std::hash::BuildHasherDefault<Prehashed>>;

struct StreamEntry {
    tx: mpsc::Sender<WatchMsg>,
    ids: HashMap<WatchId, Slot>,
    next_auto: WatchId,
}

struct HubState {
    /// The last revision whose events were handed to `notify`.
    notified: i64,
    slots: Vec<Option<Watcher>>,
    free: Vec<Slot>,
    next_generation: u32,
    /// Synced single-key watchers: key hash → first of a chain.
    heads: HashHeads,
    /// Synced range watchers, by start key.
    ranges: BTreeSet<(Box<[u8]>, Slot)>,
    unsynced: HashSet<Slot>,
    streams: HashMap<u32, StreamEntry>,
    next_stream: u32,
}

impl HubState {
    fn watcher(&self, slot: Slot) -> Option<&Watcher> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn watcher_mut(&mut self, slot: Slot) -> Option<&mut Watcher> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn has_synced(&self) -> bool {
        !self.heads.is_empty() || !self.ranges.is_empty()
    }

    fn insert(&mut self, w: Watcher) -> Slot {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(w);
                slot
            }
            None => {
                self.slots.push(Some(w));
                (self.slots.len() - 1) as Slot
            }
        }
    }

    fn remove(&mut self, slot: Slot) -> Option<Watcher> {
        match self.watcher(slot)?.state {
            WState::Synced => self.unindex(slot),
            WState::Unsynced => {
                self.unsynced.remove(&slot);
            }
            WState::Pending => {}
        }
        let w = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(w)
    }

    /// Adds a watcher to the synced index.
    fn index(&mut self, slot: Slot) {
        let Some(w) = self.watcher(slot) else { return };
        if w.keys.kind != RangeKind::Key {
            let start: Box<[u8]> = w.keys.start().into();
            self.ranges.insert((start, slot));
            return;
        }
        let h = key_hash(w.keys.start());
        let old = self.heads.insert(h, slot).unwrap_or(NIL);
        if let Some(w) = self.watcher_mut(slot) {
            w.prev = NIL;
            w.next = old;
        }
        if let Some(o) = self.watcher_mut(old) {
            o.prev = slot;
        }
    }

    /// Removes a watcher from the synced index.
    fn unindex(&mut self, slot: Slot) {
        let Some(w) = self.watcher(slot) else { return };
        if w.keys.kind != RangeKind::Key {
            let start: Box<[u8]> = w.keys.start().into();
            self.ranges.remove(&(start, slot));
            return;
        }
        let (prev, next, h) = (w.prev, w.next, key_hash(w.keys.start()));
        if prev == NIL {
            if next == NIL {
                self.heads.remove(&h);
            } else {
                self.heads.insert(h, next);
            }
        } else if let Some(p) = self.watcher_mut(prev) {
            p.next = next;
        }
        if let Some(n) = self.watcher_mut(next) {
            n.prev = prev;
        }
        if let Some(w) = self.watcher_mut(slot) {
            w.prev = NIL;
            w.next = NIL;
        }
    }

    /// Synced watchers covering `k`.
    fn matches(&self, k: &[u8], out: &mut Vec<Slot>) {
        let mut s = self.heads.get(&key_hash(k)).copied().unwrap_or(NIL);
        while let Some(w) = self.watcher(s) {
            if w.keys.start() == k {
                out.push(s);
            }
            s = w.next;
        }
        if self.ranges.is_empty() {
            return;
        }
        let upper: (Box<[u8]>, Slot) = (k.into(), Slot::MAX);
        for (_, slot) in self.ranges.range(..=upper) {
            if self.watcher(*slot).is_some_and(|w| w.keys.contains(k)) {
                out.push(*slot);
            }
        }
    }

    fn set_synced(&mut self, slot: Slot) {
        let Some(state) = self.watcher(slot).map(|w| w.state) else {
            return;
        };
        match state {
            WState::Synced => return,
            WState::Unsynced => {
                self.unsynced.remove(&slot);
            }
            WState::Pending => {}
        }
        if let Some(w) = self.watcher_mut(slot) {
            w.state = WState::Synced;
        }
        self.index(slot);
    }

    fn set_unsynced(&mut self, slot: Slot) {
        let Some(state) = self.watcher(slot).map(|w| w.state) else {
            return;
        };
        if state == WState::Synced {
            self.unindex(slot);
        }
        if let Some(w) = self.watcher_mut(slot) {
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
                heads: HashHeads::default(),
                ranges: BTreeSet::new(),
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
        if events.is_empty() || !st.has_synced() {
            return;
        }
        let mut per_watcher: HashMap<Slot, Vec<Event>> = HashMap::new();
        let mut hits = Vec::new();
        for e in events {
            hits.clear();
            st.matches(event_key(e), &mut hits);
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
                resp: Box::new(WatchResponse {
                    header: header(rev),
                    watch_id: w.id,
                    events: evs,
                    ..Default::default()
                }),
                prev_kv: w.has(PREV_KV),
                fragment: w.has(FRAGMENT),
            };
            match stream.tx.try_send(msg) {
                Ok(()) => {
                    if let Some(w) = st.watcher_mut(slot) {
                        w.next_rev = rev + 1;
                        w.flags |= SENT_SINCE_TICK;
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

    /// After the state was replaced by a snapshot (whose revision is
    /// `rev`): every synced watcher catches up from storage, from the
    /// first revision it has not been sent.
    pub fn reset_after_restore(&self, rev: i64) {
        let mut st = self.lock();
        st.notified = rev;
        let synced: Vec<Slot> = (0..st.slots.len() as Slot)
            .filter(|&s| st.watcher(s).is_some_and(|w| w.state == WState::Synced))
            .collect();
        for slot in synced {
            st.set_unsynced(slot);
        }
        drop(st);
        self.wake_syncer();
    }

    /// One round of catching up unsynced watchers. Returns whether it made
    /// progress (more rounds may be useful right away).
    fn sync_round(&self) -> bool {
        // 1. Pick watchers whose streams have room.
        struct Pick {
            slot: Slot,
            generation: u32,
            next_rev: i64,
            keys: Keys,
            flags: u8,
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
                        keys: w.keys.clone(),
                        flags: w.flags,
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
                    resp: Box::new(WatchResponse {
                        header: header(0),
                        watch_id: w.id,
                        canceled: true,
                        compact_revision: compact,
                        ..Default::default()
                    }),
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
                        && p.keys.contains(event_key(e))
                        && if e.r#type == EventType::Put as i32 {
                            p.flags & NO_PUT == 0
                        } else {
                            p.flags & NO_DELETE == 0
                        }
                })
                .cloned()
                .collect();
            let next = chunk_end + 1;
            if !evs.is_empty() {
                let msg = WatchMsg {
                    resp: Box::new(WatchResponse {
                        header: header(target),
                        watch_id: w.id,
                        events: evs,
                        ..Default::default()
                    }),
                    prev_kv: w.has(PREV_KV),
                    fragment: w.has(FRAGMENT),
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
            if !w.has(PROGRESS_NOTIFY) {
                continue;
            }
            if w.caught_up(notified) && !w.has(SENT_SINCE_TICK) {
                sends.push((w.stream, w.id));
            }
            w.flags &= !SENT_SINCE_TICK;
        }
        for (stream, id) in sends {
            if let Some(s) = st.streams.get(&stream) {
                let _ = s.tx.try_send(WatchMsg {
                    resp: Box::new(WatchResponse {
                        header: header(notified),
                        watch_id: id,
                        ..Default::default()
                    }),
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
    id: u32,
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
                resp: Box::new(resp),
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
        let key: &[u8] = if req.key.is_empty() { b"\0" } else { &req.key };
        if req.start_revision < 0 {
            return self.refuse(Error::Compacted.message().to_string()).await;
        }
        // Copies, not slices: the request's bytes share the whole received
        // frame, which must not live as long as the watcher.
        let range = match req.range_end.as_ref() {
            [] => Keys::new(key, None, RangeKind::Key),
            [0] => Keys::new(key, None, RangeKind::FromKey),
            end if end <= key => {
                return self
                    .refuse("mvcc: watcher range is empty".to_string())
                    .await;
            }
            end => Keys::new(key, Some(end), RangeKind::Range),
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
        keys: Keys,
    ) -> std::result::Result<(Slot, WatchId, i64), String> {
        let mut st = self.hub.lock();
        let notified = st.notified;
        let generation = st.next_generation;
        st.next_generation = st.next_generation.wrapping_add(1);
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
        let flag = |on: bool, f: u8| if on { f } else { 0 };
        let has_filter = |f: FilterType| req.filters.contains(&(f as i32));
        let w = Watcher {
            id,
            next_rev: if req.start_revision == 0 {
                notified + 1
            } else {
                req.start_revision
            },
            keys,
            stream: self.id,
            generation,
            prev: NIL,
            next: NIL,
            flags: flag(has_filter(FilterType::Noput), NO_PUT)
                | flag(has_filter(FilterType::Nodelete), NO_DELETE)
                | flag(req.prev_kv, PREV_KV)
                | flag(req.fragment, FRAGMENT)
                | flag(req.progress_notify, PROGRESS_NOTIFY),
            state: WState::Pending,
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
                resp: Box::new(WatchResponse {
                    header: header(notified),
                    watch_id: INVALID_WATCH_ID,
                    ..Default::default()
                }),
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
