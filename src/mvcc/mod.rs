//! Multi-version key-value store on RocksDB.
//!
//! Every change creates a new *revision*: a store-wide counter that starts at
//! 1 on an empty store. A revision's changes are numbered by *sub-revision*.
//! Each key keeps its versions: `create_revision`, `mod_revision`, `version`
//! and `lease` exactly as etcd defines them (etcd: `server/storage/mvcc`).
//!
//! Unlike etcd, there is no in-memory index of keys: all versions live in the
//! `kv` column family, ordered by key and then newest revision first (see
//! [`key`]), so "the keys of a range at revision R" is one forward walk with
//! a seek per key. Memory use does not grow with the number of keys.
//!
//! Concurrency: the applier is the only writer of new versions
//! ([`Batch`]/[`WriteTxn`]); the compactor only removes versions that no read
//! at or above the compacted revision can see. Readers take a RocksDB
//! snapshot ([`Store::read`]) and never block either.
//!
//! etcd counterparts: `kvstore.go`, `kvstore_txn.go`, `kvstore_compaction.go`.

pub mod anchors;
pub mod compact;
pub mod cursor;
pub mod hash;
pub mod key;
pub mod record;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rocksdb::{ReadOptions, WriteBatch};

use crate::error::{Error, Result};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::storage::{Cf, Db, KvWalk, meta_key};
use anchors::CountAnchors;
use cursor::{Cursor, DbCursor, MergedCursor};
pub use hash::KvHash;
use record::Record;

/// Event kinds as stored in the `rev` column family.
pub const EVENT_PUT: u8 = 0;
pub const EVENT_DELETE: u8 = 1;

/// The revision of an empty store.
pub const INITIAL_REV: i64 = 1;
/// The compacted revision of a store that was never compacted.
pub const NO_COMPACTION: i64 = -1;

/// Which keys a request names, following etcd's `range_end` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// Exactly one key (`range_end` empty).
    Key(&'a [u8]),
    /// Keys in `[start, end)`; `end == None` means every key `>= start`
    /// (`range_end == "\0"`). An `end <= start` names no key.
    Range {
        start: &'a [u8],
        end: Option<&'a [u8]>,
    },
}

impl<'a> KeyRange<'a> {
    /// Interprets `key`/`range_end` as etcd does.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Key(key),
            [0] => KeyRange::Range {
                start: key,
                end: None,
            },
            end => KeyRange::Range {
                start: key,
                end: Some(end),
            },
        }
    }
}

/// How to read a range.
#[derive(Debug, Clone, Default)]
pub struct RangeOptions {
    /// Most key-values to return; 0 = all. `count` is exact regardless.
    pub limit: usize,
    /// Revision to read at; `<= 0` = the view's revision.
    pub rev: i64,
    /// Return only the count.
    pub count_only: bool,
    /// Leave values out.
    pub keys_only: bool,
}

/// The result of a range read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range at the revision read (ignores `limit`).
    pub count: i64,
    /// The view's revision (what etcd puts in the response header).
    pub rev: i64,
}

/// The store: revision counters plus the RocksDB handle.
#[derive(Debug)]
pub struct Store {
    db: Arc<Db>,
    current_rev: AtomicI64,
    compact_rev: AtomicI64,
    anchors: Mutex<CountAnchors>,
}

impl Store {
    /// Loads the revision counters persisted by earlier applies.
    pub fn open(db: Arc<Db>) -> Result<Store> {
        let current = db
            .get_u64(Cf::Meta, meta_key::CURRENT_REV)?
            .map_or(INITIAL_REV, |v| v as i64);
        let compact = db
            .get_u64(Cf::Meta, meta_key::COMPACT_REV)?
            .map_or(NO_COMPACTION, |v| v as i64);
        Ok(Store {
            db,
            current_rev: AtomicI64::new(current),
            compact_rev: AtomicI64::new(compact),
            anchors: Mutex::new(CountAnchors::default()),
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Re-reads the revision counters after the state was replaced (a
    /// snapshot from the leader was installed) and forgets cached counts.
    pub fn reload(&self) -> Result<()> {
        let fresh = Store::open(self.db.clone())?;
        self.current_rev
            .store(fresh.current_rev(), Ordering::Release);
        self.compact_rev
            .store(fresh.compact_rev(), Ordering::Release);
        *self.anchors.lock().unwrap_or_else(|p| p.into_inner()) = CountAnchors::default();
        Ok(())
    }

    /// The newest revision whose changes are readable.
    pub fn current_rev(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// The revision of the last compaction, or [`NO_COMPACTION`].
    pub fn compact_rev(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }

    /// A consistent read view at the current revision.
    pub fn read(&self) -> ReadView<'_> {
        // Order matters: the revision is read before the snapshot, so the
        // snapshot holds every change up to it (newer changes are filtered by
        // revision); the compacted revision is read after the snapshot, so a
        // compaction whose physical deletions the snapshot may already
        // contain is always noticed.
        let rev = self.current_rev();
        let snapshot = self.db.raw().snapshot();
        let compact_rev = self.compact_rev();
        ReadView {
            db: &self.db,
            anchors: &self.anchors,
            snapshot,
            rev,
            compact_rev,
        }
    }

    /// A read view at revision `rev`, which must already be written (as
    /// every revision handed to the watch hub is, even before it is
    /// published to readers).
    pub fn read_written(&self, rev: i64) -> ReadView<'_> {
        let snapshot = self.db.raw().snapshot();
        let compact_rev = self.compact_rev();
        ReadView {
            db: &self.db,
            anchors: &self.anchors,
            snapshot,
            rev,
            compact_rev,
        }
    }

    /// Starts an apply batch at the current revision.
    pub fn begin_batch(&self) -> Batch {
        Batch {
            wb: WriteBatch::default(),
            overlay: BTreeMap::new(),
            current_rev: self.current_rev(),
            compact_rev: self.compact_rev(),
            rev_dirty: false,
            compaction: None,
            applied: None,
            events: Vec::new(),
            lease_changes: Vec::new(),
            aux: BTreeMap::new(),
        }
    }

    /// Writes a batch (unsynced: the raft log is the durability point) and
    /// publishes its revisions to readers.
    pub fn commit(&self, batch: Batch) -> Result<Committed> {
        let c = self.write(batch)?;
        self.publish(&c);
        Ok(c)
    }

    /// Writes a batch without making its revision visible to readers yet;
    /// [`Store::publish`] does that (the applier publishes watch events in
    /// between, so no reader can learn of a revision watchers haven't been
    /// sent).
    pub fn write(&self, mut batch: Batch) -> Result<Committed> {
        let meta = self.db.cf(Cf::Meta);
        if batch.rev_dirty {
            batch.wb.put_cf(
                meta,
                meta_key::CURRENT_REV,
                (batch.current_rev as u64).to_be_bytes(),
            );
        }
        if let Some(rev) = batch.compaction {
            batch
                .wb
                .put_cf(meta, meta_key::COMPACT_REV, (rev as u64).to_be_bytes());
        }
        if let Some((index, term)) = batch.applied {
            batch
                .wb
                .put_cf(meta, meta_key::APPLIED_INDEX, index.to_be_bytes());
            batch
                .wb
                .put_cf(meta, meta_key::APPLIED_TERM, term.to_be_bytes());
        }
        let started = std::time::Instant::now();
        self.db.write(batch.wb)?;
        crate::metrics::METRICS
            .backend_commit
            .observe(started.elapsed());
        Ok(Committed {
            events: batch.events,
            rev: batch.current_rev,
            compact_rev: batch.compact_rev,
            compaction: batch.compaction,
        })
    }

    /// Makes a written batch's revisions visible to readers.
    pub fn publish(&self, c: &Committed) {
        self.current_rev.store(c.rev, Ordering::Release);
        self.compact_rev.store(c.compact_rev, Ordering::Release);
    }
}

/// A written batch.
#[derive(Debug, Default)]
pub struct Committed {
    /// Every change, in revision and sub-revision order.
    pub events: Vec<Event>,
    /// The store revision after the batch.
    pub rev: i64,
    pub compact_rev: i64,
    /// The compaction the batch scheduled, if any.
    pub compaction: Option<i64>,
}

/// Checks a requested revision against a view, as etcd's `rangeKeys` does,
/// and returns the revision to read at.
fn resolve_rev(requested: i64, view_rev: i64, compact_rev: i64) -> Result<i64> {
    if requested > view_rev {
        return Err(Error::FutureRev);
    }
    let rev = if requested <= 0 { view_rev } else { requested };
    if rev < compact_rev {
        return Err(Error::Compacted);
    }
    Ok(rev)
}

/// How a walk over `range` moves through the `kv` CF.
fn walk_of(range: KeyRange<'_>) -> KvWalk {
    match range {
        KeyRange::Key(_) => KvWalk::OneKey,
        KeyRange::Range { .. } => KvWalk::Range,
    }
}

/// Calls `f(user_key, mod_rev, record)` for each key in `range` that is live
/// at revision `at`, in key order, until `f` returns `false`.
fn scan<C: Cursor>(
    c: &mut C,
    range: KeyRange<'_>,
    at: i64,
    mut f: impl FnMut(&[u8], i64, Record<'_>) -> Result<bool>,
) -> Result<()> {
    match range {
        KeyRange::Key(k) => {
            let prefix = key::prefix(k);
            let mut target = prefix.clone();
            target.extend_from_slice(&key::inverted(at));
            c.seek(&target);
            if c.valid() {
                let ck = c.key();
                if ck.len() == prefix.len() + key::REV_LEN && ck.starts_with(&prefix) {
                    let (_, main) = key::split_version_key(ck)
                        .ok_or_else(|| Error::internal("corrupt mvcc key"))?;
                    let rec = Record::decode(c.value())?;
                    if matches!(rec, Record::Put { .. }) {
                        f(k, main, rec)?;
                    }
                }
            }
            c.status()
        }
        KeyRange::Range { start, end } => {
            let end_enc = end.map(key::prefix);
            if let Some(e) = end
                && e <= start
            {
                return Ok(());
            }
            c.seek(&key::prefix(start));
            let mut target = Vec::new();
            while c.valid() {
                let ck = c.key();
                if let Some(e) = &end_enc
                    && ck >= e.as_slice()
                {
                    break;
                }
                let (plen, main) = key::split_version_key(ck)
                    .ok_or_else(|| Error::internal("corrupt mvcc key"))?;
                if main > at {
                    // Newer than the read revision: jump to this key's newest
                    // version at or below it (or to the next key).
                    target.clear();
                    target.extend_from_slice(&ck[..plen]);
                    target.extend_from_slice(&key::inverted(at));
                    c.seek(&target);
                    continue;
                }
                let rec = Record::decode(c.value())?;
                target.clear();
                target.extend_from_slice(&ck[..plen]);
                if let Record::Put { .. } = rec {
                    let uk = key::user_key(&target)
                        .ok_or_else(|| Error::internal("corrupt mvcc key"))?;
                    if !f(&uk, main, rec)? {
                        return c.status();
                    }
                }
                skip_versions(c, &mut target);
            }
            c.status()
        }
    }
}

/// Moves past the remaining (older) versions of the key whose prefix is in
/// `prefix`. Most keys have few versions, so a few `next` calls are tried
/// before falling back to a seek.
fn skip_versions<C: Cursor>(c: &mut C, prefix: &mut Vec<u8>) {
    for _ in 0..4 {
        c.next();
        if !c.valid() {
            return;
        }
        let ck = c.key();
        if !(ck.len() == prefix.len() + key::REV_LEN && ck.starts_with(prefix)) {
            return;
        }
    }
    prefix.extend_from_slice(&[0xFF; key::REV_LEN]);
    c.seek(prefix);
}

/// Collects a range into a [`RangeResult`].
fn collect<C: Cursor>(
    c: &mut C,
    range: KeyRange<'_>,
    at: i64,
    view_rev: i64,
    opts: &RangeOptions,
) -> Result<RangeResult> {
    let mut kvs = Vec::new();
    let mut count = 0i64;
    scan(c, range, at, |k, main, rec| {
        count += 1;
        if !opts.count_only && (opts.limit == 0 || kvs.len() < opts.limit) {
            kvs.push(to_key_value(k, main, rec, opts.keys_only));
        }
        Ok(true)
    })?;
    Ok(RangeResult {
        kvs,
        count,
        rev: view_rev,
    })
}

/// [`collect`] for snapshot reads, using and leaving count anchors (see
/// [`anchors`]) when the read is limited or count-only.
fn collect_anchored<C: Cursor>(
    c: &mut C,
    range: KeyRange<'_>,
    at: i64,
    view_rev: i64,
    opts: &RangeOptions,
    anchors: &Mutex<CountAnchors>,
) -> Result<RangeResult> {
    let KeyRange::Range { start, end } = range else {
        return collect(c, range, at, view_rev, opts);
    };
    if !opts.count_only && opts.limit == 0 {
        return collect(c, range, at, view_rev, opts);
    }
    let lookup = |from: &[u8]| {
        anchors
            .lock()
            .ok()
            .and_then(|a| a.first_from(end, at, from))
    };
    let page_full = |n: usize| opts.count_only || n >= opts.limit;
    let mut next = lookup(start);
    let mut kvs = Vec::new();
    // Keys seen before the current one.
    let mut count = 0i64;
    // The whole count, once an anchor gives it.
    let mut total = None;
    // The first key past the page, and how many keys precede it.
    let mut beyond: Option<(Vec<u8>, i64)> = None;
    scan(c, range, at, |k, main, rec| {
        while let Some((p, n)) = &next {
            match k.cmp(p.as_slice()) {
                std::cmp::Ordering::Less => break,
                std::cmp::Ordering::Equal => {
                    total = Some(count + n);
                    next = None;
                }
                // Passed an anchor without meeting it: only a stale one
                // could do that; try the next.
                std::cmp::Ordering::Greater => next = lookup(k),
            }
        }
        if page_full(kvs.len()) {
            if beyond.is_none() {
                beyond = Some((k.to_vec(), count));
            }
            if total.is_some() {
                return Ok(false);
            }
        } else {
            kvs.push(to_key_value(k, main, rec, opts.keys_only));
        }
        count += 1;
        Ok(true)
    })?;
    let count = total.unwrap_or(count);
    if let Some((key, before)) = beyond
        && let Ok(mut a) = anchors.lock()
    {
        a.insert(end, at, key, count - before);
    }
    Ok(RangeResult {
        kvs,
        count,
        rev: view_rev,
    })
}

fn to_key_value(k: &[u8], main: i64, rec: Record<'_>, keys_only: bool) -> KeyValue {
    match rec {
        Record::Put {
            create_rev,
            version,
            lease,
            value,
        } => KeyValue {
            key: Bytes::copy_from_slice(k),
            create_revision: create_rev,
            mod_revision: main,
            version,
            value: if keys_only {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(value)
            },
            lease,
        },
        Record::Tombstone => KeyValue {
            key: Bytes::copy_from_slice(k),
            mod_revision: main,
            ..Default::default()
        },
    }
}

/// Read access shared by snapshots and write transactions.
pub trait KvRead {
    /// The revision reads default to.
    fn rev(&self) -> i64;
    /// The compacted revision; reads below it fail.
    fn first_rev(&self) -> i64;
    /// Reads a range as etcd's `TxnRead.Range` does.
    fn range(&self, range: KeyRange<'_>, opts: &RangeOptions) -> Result<RangeResult>;
}

/// A consistent snapshot of the store at one revision.
pub struct ReadView<'a> {
    db: &'a Db,
    anchors: &'a Mutex<CountAnchors>,
    snapshot: rocksdb::Snapshot<'a>,
    rev: i64,
    compact_rev: i64,
}

impl KvRead for ReadView<'_> {
    fn rev(&self) -> i64 {
        self.rev
    }

    fn first_rev(&self) -> i64 {
        self.compact_rev
    }

    fn range(&self, range: KeyRange<'_>, opts: &RangeOptions) -> Result<RangeResult> {
        let at = resolve_rev(opts.rev, self.rev, self.compact_rev)?;
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snapshot);
        if let KeyRange::Range {
            end: Some(end),
            start,
        } = range
            && end > start
        {
            ro.set_iterate_upper_bound(key::prefix(end));
        }
        let it = self.db.kv_iter(ro, walk_of(range));
        collect_anchored(
            &mut DbCursor::new(it),
            range,
            at,
            self.rev,
            opts,
            self.anchors,
        )
    }
}

/// The pending writes of one apply batch. Later requests in the batch read
/// through them; [`Store::commit`] writes them in one RocksDB write.
pub struct Batch {
    wb: WriteBatch,
    /// Pending `kv` CF entries, readable before the batch is written.
    overlay: BTreeMap<Vec<u8>, Vec<u8>>,
    current_rev: i64,
    compact_rev: i64,
    rev_dirty: bool,
    compaction: Option<i64>,
    applied: Option<(u64, u64)>,
    /// Every change of the batch, in revision and sub-revision order.
    events: Vec<Event>,
    /// Keys whose lease changed, not yet taken by the applier.
    lease_changes: Vec<LeaseChange>,
    /// Pending `lease` CF writes (`None` deletes), readable before the
    /// batch is written.
    aux: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// A key that moved from one lease to another (0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseChange {
    pub key: Bytes,
    pub old: i64,
    pub new: i64,
}

impl Batch {
    /// Writes `value` under `key` in the `lease` column family.
    pub fn aux_put(&mut self, db: &Db, key: Vec<u8>, value: Vec<u8>) {
        self.wb.put_cf(db.cf(Cf::Lease), &key, &value);
        self.aux.insert(key, Some(value));
    }

    /// Writes `key` to the `meta` column family with the batch.
    pub fn meta_put(&mut self, db: &Db, key: Vec<u8>, value: Vec<u8>) {
        self.wb.put_cf(db.cf(Cf::Meta), key, value);
    }

    /// Writes `key` to any column family with the batch (the raft
    /// configuration, written with the entry that changed it).
    pub fn raw_put(&mut self, db: &Db, cf: Cf, key: &[u8], value: &[u8]) {
        self.wb.put_cf(db.cf(cf), key, value);
    }

    /// Deletes `key` from the `meta` column family with the batch.
    pub fn meta_delete(&mut self, db: &Db, key: Vec<u8>) {
        self.wb.delete_cf(db.cf(Cf::Meta), key);
    }

    /// Deletes `key` from the `lease` column family.
    pub fn aux_delete(&mut self, db: &Db, key: Vec<u8>) {
        self.wb.delete_cf(db.cf(Cf::Lease), &key);
        self.aux.insert(key, None);
    }

    /// Entries of the `lease` column family under `prefix`, including this
    /// batch's pending writes, in key order.
    pub fn aux_scan(&self, db: &Db, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = BTreeMap::new();
        let mut it = db.raw().raw_iterator_cf(db.cf(Cf::Lease));
        it.seek(prefix);
        while let Some((k, v)) = it.item() {
            if !k.starts_with(prefix) {
                break;
            }
            out.insert(k.to_vec(), v.to_vec());
            it.next();
        }
        it.status()?;
        for (k, v) in self.aux.range::<[u8], _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        )) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().collect())
    }

    /// Takes the lease changes of the transactions ended so far.
    pub fn take_lease_changes(&mut self) -> Vec<LeaseChange> {
        std::mem::take(&mut self.lease_changes)
    }

    /// Starts a write transaction; it must be finished with
    /// [`WriteTxn::end`] (keep its writes) or [`WriteTxn::abort`].
    pub fn txn<'a>(&'a mut self, db: &'a Db) -> WriteTxn<'a> {
        let begin_rev = self.current_rev;
        WriteTxn {
            db,
            batch: self,
            begin_rev,
            pending: Vec::new(),
        }
    }

    /// Records a compaction at `rev` (etcd's `updateCompactRev`): revisions
    /// below it become unreadable when the batch commits.
    pub fn compact(&mut self, rev: i64) -> Result<()> {
        if rev <= self.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.current_rev {
            return Err(Error::FutureRev);
        }
        self.compact_rev = rev;
        self.compaction = Some(rev);
        Ok(())
    }

    /// Records the raft entry this batch applies up to.
    pub fn set_applied(&mut self, index: u64, term: u64) {
        self.applied = Some((index, term));
    }

    pub fn current_rev(&self) -> i64 {
        self.current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.compact_rev
    }
}

fn event(kind: EventType, kv: KeyValue) -> Event {
    Event {
        r#type: kind as i32,
        kv: Some(kv),
        prev_kv: None,
    }
}

/// One request's writes inside a batch: every change gets revision
/// `begin_rev + 1` and the next sub-revision (etcd's `storeTxnWrite`).
pub struct WriteTxn<'a> {
    db: &'a Db,
    batch: &'a mut Batch,
    begin_rev: i64,
    /// This transaction's changes, in order. Already visible to its own
    /// reads through the batch overlay; added to the batch's RocksDB write
    /// (and its events) only by `end`.
    pending: Vec<Pending>,
}

/// One change of a write transaction.
struct Pending {
    /// The `kv` CF key and record.
    version_key: Vec<u8>,
    record: Vec<u8>,
    /// The event watchers will see.
    event: Event,
    /// The lease of the version this change replaces (0 = none).
    old_lease: i64,
}

impl WriteTxn<'_> {
    /// The revision before this transaction.
    pub fn begin_rev(&self) -> i64 {
        self.begin_rev
    }

    /// Whether anything changed so far.
    pub fn changed(&self) -> bool {
        !self.pending.is_empty()
    }

    fn cursor(&self, walk: KvWalk) -> MergedCursor<'_> {
        let it = self.db.kv_iter(ReadOptions::default(), walk);
        MergedCursor::new(DbCursor::new(it), &self.batch.overlay)
    }

    /// Writes a new version of `key`; returns the new revision.
    pub fn put(&mut self, k: &Bytes, value: &Bytes, lease: i64) -> Result<i64> {
        crate::metrics::METRICS
            .put_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rev = self.begin_rev + 1;
        let (create_rev, version, old_lease) = {
            let mut c = self.cursor(KvWalk::OneKey);
            let mut found = (rev, 0, 0);
            scan(&mut c, KeyRange::Key(k), rev, |_, _, rec| {
                if let Record::Put {
                    create_rev,
                    version,
                    lease,
                    ..
                } = rec
                {
                    found = (create_rev, version, lease);
                }
                Ok(false)
            })?;
            found
        };
        let rec = record::encode_put(create_rev, version + 1, lease, value);
        let kv = KeyValue {
            key: k.clone(),
            create_revision: create_rev,
            mod_revision: rev,
            version: version + 1,
            value: value.clone(),
            lease,
        };
        self.write(rev, rec, event(EventType::Put, kv), old_lease);
        Ok(rev)
    }

    /// Deletes every live key in `range`; returns (number deleted, revision
    /// for the header) as etcd's `DeleteRange` does.
    pub fn delete_range(&mut self, range: KeyRange<'_>) -> Result<(i64, i64)> {
        crate::metrics::METRICS
            .delete_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let at = self.begin_rev + i64::from(self.changed());
        let mut keys = Vec::new();
        {
            let mut c = self.cursor(walk_of(range));
            scan(&mut c, range, at, |k, _, rec| {
                let lease = match rec {
                    Record::Put { lease, .. } => lease,
                    Record::Tombstone => 0,
                };
                keys.push((Bytes::copy_from_slice(k), lease));
                Ok(true)
            })?;
        }
        let rev = self.begin_rev + 1;
        for (k, lease) in keys.iter() {
            let kv = KeyValue {
                key: k.clone(),
                mod_revision: rev,
                ..Default::default()
            };
            self.write(
                rev,
                record::encode_tombstone(),
                event(EventType::Delete, kv),
                *lease,
            );
        }
        let n = keys.len() as i64;
        if n != 0 || self.changed() {
            Ok((n, rev))
        } else {
            Ok((0, self.begin_rev))
        }
    }

    fn write(&mut self, rev: i64, record: Vec<u8>, event: Event, old_lease: i64) {
        let key = event
            .kv
            .as_ref()
            .map(|kv| kv.key.as_ref())
            .unwrap_or_default();
        let version_key = key::version_key(key, rev);
        self.batch
            .overlay
            .insert(version_key.clone(), record.clone());
        self.pending.push(Pending {
            version_key,
            record,
            event,
            old_lease,
        });
    }

    /// Keeps the transaction's changes: if there are any, the batch moves to
    /// the new revision.
    pub fn end(self) {
        if self.pending.is_empty() {
            return;
        }
        let rev = self.begin_rev + 1;
        let (kv, revcf) = (self.db.cf(Cf::Kv), self.db.cf(Cf::Rev));
        for (sub, p) in self.pending.into_iter().enumerate() {
            self.batch.wb.put_cf(kv, &p.version_key, &p.record);
            let (kind, key) = match &p.event.kv {
                Some(kv) if p.event.r#type == EventType::Delete as i32 => (EVENT_DELETE, &kv.key),
                Some(kv) => (EVENT_PUT, &kv.key),
                None => continue,
            };
            let mut rv = Vec::with_capacity(1 + key.len());
            rv.push(kind);
            rv.extend_from_slice(key);
            self.batch
                .wb
                .put_cf(revcf, key::rev_key(rev, sub as i64), rv);
            let new_lease = p.event.kv.as_ref().map_or(0, |kv| kv.lease);
            if new_lease != p.old_lease {
                let key = p
                    .event
                    .kv
                    .as_ref()
                    .map(|kv| kv.key.clone())
                    .unwrap_or_default();
                self.batch.lease_changes.push(LeaseChange {
                    key,
                    old: p.old_lease,
                    new: new_lease,
                });
            }
            self.batch.events.push(p.event);
        }
        self.batch.current_rev = rev;
        self.batch.rev_dirty = true;
    }

    /// Drops the transaction's changes.
    pub fn abort(self) {
        for p in &self.pending {
            self.batch.overlay.remove(&p.version_key);
        }
    }
}

impl KvRead for WriteTxn<'_> {
    /// Reads inside a write transaction see its own earlier writes.
    fn rev(&self) -> i64 {
        self.begin_rev + i64::from(self.changed())
    }

    fn first_rev(&self) -> i64 {
        self.batch.compact_rev
    }

    fn range(&self, range: KeyRange<'_>, opts: &RangeOptions) -> Result<RangeResult> {
        let view_rev = self.rev();
        let at = resolve_rev(opts.rev, view_rev, self.batch.compact_rev)?;
        collect(&mut self.cursor(walk_of(range)), range, at, view_rev, opts)
    }
}

#[cfg(test)]
mod tests;
