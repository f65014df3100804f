//! raft-rs's `Storage` on RocksDB: the log in the `raft_log` column family,
//! the hard state, conf state and the log's truncation point in `raft_meta`.
//!
//! Appends and hard-state changes of one raft `Ready` are written in one
//! synced write batch ([`RaftStorage::append`]): that fsync is what makes a
//! write durable before it is acknowledged.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::storage::Checkpoint;
use crate::storage::{Cf, Db, meta_key};

use crate::storage::schema::raft_meta::{CONF_STATE, HARD_STATE, TRUNCATED};

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(Error::internal(e))))
}

/// The raft log and raft metadata of this member.
pub struct RaftStorage {
    db: Arc<Db>,
    hard_state: HardState,
    conf_state: ConfState,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    last_term: u64,
    /// Where state checkpoints for followers are taken.
    snapshot_dir: Option<PathBuf>,
    /// Snapshots for followers.
    snapshot: RefCell<Snapshots>,
}

/// A snapshot for followers and its checkpoint.
type Made = (Snapshot, Checkpoint);

/// The last snapshot made for a follower (reused while it is recent
/// enough), and the one being made on its own thread: taking a checkpoint
/// flushes the memtables and may take a while, during which the raft
/// thread keeps ticking, heartbeating and applying.
#[derive(Default)]
struct Snapshots {
    made: Option<Made>,
    making: Option<std::thread::JoinHandle<Result<Made>>>,
}

impl RaftStorage {
    /// Opens the log; `None` if this data directory has never been
    /// bootstrapped.
    pub fn open(db: Arc<Db>) -> Result<Option<RaftStorage>> {
        let Some(cs) = db.get(Cf::RaftMeta, CONF_STATE)? else {
            return Ok(None);
        };
        let conf_state = ConfState::parse_from_bytes(&cs).map_err(Error::internal)?;
        let hard_state = match db.get(Cf::RaftMeta, HARD_STATE)? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(Error::internal)?,
            None => HardState::default(),
        };
        let (truncated_index, truncated_term) = match db.get(Cf::RaftMeta, TRUNCATED)? {
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().map_err(Error::internal)?),
                u64::from_be_bytes(b[8..].try_into().map_err(Error::internal)?),
            ),
            Some(_) => return Err(Error::internal("corrupt raft truncation point")),
            None => (0, 0),
        };
        let mut s = RaftStorage {
            db,
            hard_state,
            conf_state,
            truncated_index,
            truncated_term,
            last_index: truncated_index,
            last_term: truncated_term,
            snapshot_dir: None,
            snapshot: RefCell::default(),
        };
        let mut it = s.db.raw().raw_iterator_cf(s.db.cf(Cf::RaftLog));
        it.seek_to_last();
        if let Some(v) = it.value() {
            let e = Entry::parse_from_bytes(v).map_err(Error::internal)?;
            s.last_index = e.index;
            s.last_term = e.term;
        }
        it.status()?;
        drop(it);
        Ok(Some(s))
    }

    /// An empty log with no configuration, for a member joining a running
    /// cluster: it learns everything (the configuration included) from the
    /// leader's snapshot.
    pub fn bootstrap_joining(db: Arc<Db>) -> Result<RaftStorage> {
        let mut s = RaftStorage::bootstrap(db, Vec::new())?;
        s.hard_state.term = 0;
        let mut wb = WriteBatch::default();
        wb.put_cf(
            s.db.cf(Cf::RaftMeta),
            HARD_STATE,
            s.hard_state.write_to_bytes().map_err(Error::internal)?,
        );
        s.db.write_synced(wb)?;
        Ok(s)
    }

    /// Where snapshots for followers are checkpointed (the member
    /// directory).
    pub fn set_snapshot_dir(&mut self, dir: PathBuf) {
        self.snapshot_dir = Some(dir);
    }

    /// The configuration after applying a change (the applier persisted
    /// it with the entry).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
        // A snapshot of the old configuration is of no use to a member
        // the change added (raft-rs ignores snapshots without it).
        self.snapshot.borrow_mut().made = None;
    }

    /// Voters and learners of the current configuration.
    pub fn conf_members(&self) -> Vec<u64> {
        self.conf_state
            .voters
            .iter()
            .chain(&self.conf_state.learners)
            .copied()
            .collect()
    }

    /// Forgets the cached snapshot for followers (removing its checkpoint).
    pub fn release_snapshot(&mut self) {
        self.snapshot.borrow_mut().made = None;
    }

    /// Adds to `wb` the raft side of installing `snap`: the log is
    /// emptied and starts after the snapshot, whose configuration and
    /// commit index are recorded.
    /// `hs` is the hard state of the Ready that brought the snapshot.
    pub fn snapshot_writes(
        &self,
        wb: &mut WriteBatch,
        snap: &Snapshot,
        hs: Option<&HardState>,
    ) -> Result<()> {
        let meta = snap.get_metadata();
        wb.delete_range_cf(self.db.cf(Cf::RaftLog), index_key(0), index_key(u64::MAX));
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&meta.index.to_be_bytes());
        t[8..].copy_from_slice(&meta.term.to_be_bytes());
        let raft_meta = self.db.cf(Cf::RaftMeta);
        wb.put_cf(raft_meta, TRUNCATED, t);
        wb.put_cf(
            raft_meta,
            CONF_STATE,
            meta.get_conf_state()
                .write_to_bytes()
                .map_err(Error::internal)?,
        );
        let mut hs = hs.unwrap_or(&self.hard_state).clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        wb.put_cf(
            raft_meta,
            HARD_STATE,
            hs.write_to_bytes().map_err(Error::internal)?,
        );
        Ok(())
    }

    /// Records in memory what [`RaftStorage::snapshot_writes`] wrote.
    pub fn restored(&mut self, snap: &Snapshot, hs: Option<&HardState>) {
        let meta = snap.get_metadata();
        if let Some(hs) = hs {
            self.hard_state = hs.clone();
        }
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.last_index = meta.index;
        self.last_term = meta.term;
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
    }

    /// A snapshot of the applied state for a follower, or `None` while
    /// one is being made: a checkpoint of the database (hard links, after a
    /// memtable flush) taken on its own thread. The applier keeps writing
    /// meanwhile, so the index, term and configuration the snapshot names
    /// are read from the checkpoint itself, where they were written in the
    /// same batches as the state they describe.
    fn make_snapshot(&self, request_index: u64) -> Result<Option<Snapshot>> {
        let usable = |snap: &Snapshot| {
            let m = snap.get_metadata();
            // The log must continue right after it, and a member the
            // configuration added since must be in it.
            m.index >= request_index
                && m.index >= self.truncated_index
                && m.get_conf_state() == &self.conf_state
        };
        let mut cache = self.snapshot.borrow_mut();
        if let Some((snap, _)) = cache.made.as_ref()
            && usable(snap)
        {
            return Ok(Some(snap.clone()));
        }
        if let Some(job) = cache.making.take() {
            if !job.is_finished() {
                cache.making = Some(job);
                return Ok(None);
            }
            match job.join() {
                Ok(Ok((snap, cp))) => {
                    let m = snap.get_metadata();
                    tracing::info!(index = m.index, term = m.term, dir = %cp.dir().display(), "made a snapshot for a follower");
                    // Replaces the previous one (its directory goes with it).
                    cache.made = Some((snap.clone(), cp));
                    if usable(&snap) {
                        return Ok(Some(snap));
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not make a snapshot"),
                Err(_) => tracing::warn!("the snapshot thread panicked"),
            }
        }
        let dir = self
            .snapshot_dir
            .clone()
            .ok_or_else(|| Error::internal("no snapshot directory"))?;
        // Drop the previous checkpoint first (its directory goes with it).
        cache.made = None;
        let db = self.db.clone();
        let job = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || take_snapshot(&db, &dir))
            .map_err(|e| Error::internal(format!("spawn the snapshot thread: {e}")))?;
        cache.making = Some(job);
        Ok(None)
    }

    /// Initialises an empty log for a new cluster with the given voters.
    ///
    /// The log starts at term 1, as etcd's does after its bootstrap entries,
    /// so the first leader is elected at term 2 like etcd's.
    pub fn bootstrap(db: Arc<Db>, voters: Vec<u64>) -> Result<RaftStorage> {
        let conf_state = ConfState {
            voters,
            ..Default::default()
        };
        let hard_state = HardState {
            term: 1,
            ..Default::default()
        };
        let mut wb = WriteBatch::default();
        wb.put_cf(
            db.cf(Cf::RaftMeta),
            CONF_STATE,
            conf_state.write_to_bytes().map_err(Error::internal)?,
        );
        wb.put_cf(
            db.cf(Cf::RaftMeta),
            HARD_STATE,
            hard_state.write_to_bytes().map_err(Error::internal)?,
        );
        db.write_synced(wb)?;
        Ok(RaftStorage {
            db,
            hard_state,
            conf_state,
            truncated_index: 0,
            truncated_term: 0,
            last_index: 0,
            last_term: 0,
            snapshot_dir: None,
            snapshot: RefCell::default(),
        })
    }

    /// Initialises an empty log that starts right after `applied`, for a
    /// state restored from a snapshot: the entry at `applied` counts as
    /// committed and truncated (term 1), so the first leader is elected at
    /// term 2 and appends at `applied + 1`.
    pub fn bootstrap_after(db: Arc<Db>, voters: Vec<u64>, applied: u64) -> Result<RaftStorage> {
        if applied == 0 {
            return RaftStorage::bootstrap(db, voters);
        }
        let conf_state = ConfState {
            voters,
            ..Default::default()
        };
        let hard_state = HardState {
            term: 1,
            commit: applied,
            ..Default::default()
        };
        let mut truncated = [0u8; 16];
        truncated[..8].copy_from_slice(&applied.to_be_bytes());
        truncated[8..].copy_from_slice(&1u64.to_be_bytes());
        let mut wb = WriteBatch::default();
        let meta = db.cf(Cf::RaftMeta);
        wb.put_cf(
            meta,
            CONF_STATE,
            conf_state.write_to_bytes().map_err(Error::internal)?,
        );
        wb.put_cf(
            meta,
            HARD_STATE,
            hard_state.write_to_bytes().map_err(Error::internal)?,
        );
        wb.put_cf(meta, TRUNCATED, truncated);
        db.write_synced(wb)?;
        Ok(RaftStorage {
            db,
            hard_state,
            conf_state,
            truncated_index: applied,
            truncated_term: 1,
            last_index: applied,
            last_term: 1,
            snapshot_dir: None,
            snapshot: RefCell::default(),
        })
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub fn first_index(&self) -> u64 {
        self.truncated_index + 1
    }

    /// Appends entries (replacing any conflicting suffix) and stores the
    /// hard state, in one fsynced write.
    pub fn append(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        let mut wb = WriteBatch::default();
        let log = self.db.cf(Cf::RaftLog);
        let (mut last_index, mut last_term) = (self.last_index, self.last_term);
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            if first.index <= self.truncated_index {
                return Err(Error::internal(format!(
                    "append at {} below the log's start {}",
                    first.index,
                    self.first_index()
                )));
            }
            for e in entries {
                wb.put_cf(
                    log,
                    index_key(e.index),
                    e.write_to_bytes().map_err(Error::internal)?,
                );
            }
            if last.index < self.last_index {
                // A new leader overwrote our tail: drop the rest of it.
                wb.delete_range_cf(
                    log,
                    index_key(last.index + 1),
                    index_key(self.last_index + 1),
                );
            }
            (last_index, last_term) = (last.index, last.term);
        }
        if let Some(hs) = hs {
            wb.put_cf(
                self.db.cf(Cf::RaftMeta),
                HARD_STATE,
                hs.write_to_bytes().map_err(Error::internal)?,
            );
        }
        let started = std::time::Instant::now();
        self.db.write_synced(wb)?;
        crate::metrics::METRICS.wal_fsync.observe(started.elapsed());
        if let Some(hs) = hs {
            self.hard_state = hs.clone();
        }
        (self.last_index, self.last_term) = (last_index, last_term);
        Ok(())
    }

    /// Records a new commit index. Not synced: the commit index can always
    /// be learned again from the log and the leader.
    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        self.hard_state.commit = commit;
        let mut wb = WriteBatch::default();
        wb.put_cf(
            self.db.cf(Cf::RaftMeta),
            HARD_STATE,
            self.hard_state.write_to_bytes().map_err(Error::internal)?,
        );
        self.db.write(wb)
    }

    /// Removes log entries up to and including `index`, which must already
    /// be applied: the state written by the applier precedes this write in
    /// RocksDB's WAL, so no crash can keep the deletion but lose the state.
    pub fn compact(&mut self, index: u64) -> Result<()> {
        if index <= self.truncated_index || index > self.last_index {
            return Ok(());
        }
        let term = self.term_of(index)?;
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(
            self.db.cf(Cf::RaftLog),
            index_key(self.truncated_index + 1),
            index_key(index + 1),
        );
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&index.to_be_bytes());
        t[8..].copy_from_slice(&term.to_be_bytes());
        wb.put_cf(self.db.cf(Cf::RaftMeta), TRUNCATED, t);
        self.db.write_synced(wb)?;
        self.truncated_index = index;
        self.truncated_term = term;
        Ok(())
    }

    fn get_entry(&self, index: u64) -> Result<Entry> {
        let v = self
            .db
            .get(Cf::RaftLog, &index_key(index))?
            .ok_or_else(|| Error::internal(format!("raft entry {index} missing")))?;
        Entry::parse_from_bytes(&v).map_err(Error::internal)
    }

    fn term_of(&self, index: u64) -> Result<u64> {
        if index == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if index == self.last_index {
            return Ok(self.last_term);
        }
        Ok(self.get_entry(index)?.term)
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        let mut it = self.db.raw().raw_iterator_cf(self.db.cf(Cf::RaftLog));
        it.seek(index_key(low));
        let mut want = low;
        while want < high {
            let Some(v) = it.value() else { break };
            let e = Entry::parse_from_bytes(v).map_err(store_err)?;
            if e.index != want {
                return Err(store_err(format!("raft log hole at {want}")));
            }
            size += u64::from(e.compute_size());
            // Always return at least one entry, as raft-rs expects.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
            want += 1;
            it.next();
        }
        it.status().map_err(store_err)?;
        if out.is_empty() {
            return Err(store_err(format!("raft log hole at {low}")));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.term_of(idx).map_err(store_err)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// raft-rs asks again (on the follower's next response) while the
    /// snapshot is temporarily unavailable.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.make_snapshot(request_index) {
            Ok(Some(snap)) => Ok(snap),
            Ok(None) => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "could not make a snapshot");
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

/// Takes a checkpoint of `db` under `dir` and names what it holds.
fn take_snapshot(db: &Db, dir: &std::path::Path) -> Result<Made> {
    let cp = Checkpoint::take(db, dir)?;
    let (index, term, cs) = cp.read(|db| {
        Ok((
            db.get_u64(Cf::Meta, meta_key::APPLIED_INDEX)?.unwrap_or(0),
            db.get_u64(Cf::Meta, meta_key::APPLIED_TERM)?.unwrap_or(0),
            db.get(Cf::RaftMeta, CONF_STATE)?,
        ))
    })?;
    let cs = cs.ok_or_else(|| Error::internal("a checkpoint without a raft configuration"))?;
    let mut snap = Snapshot::default();
    snap.set_data(cp.dir().to_string_lossy().as_bytes().to_vec().into());
    let m = snap.mut_metadata();
    m.index = index;
    m.term = term;
    m.set_conf_state(ConfState::parse_from_bytes(&cs).map_err(Error::internal)?);
    Ok((snap, cp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_truncate_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert!(RaftStorage::open(db.clone()).unwrap().is_none());
        let mut s = RaftStorage::bootstrap(db.clone(), vec![7]).unwrap();
        assert_eq!(RaftStorage::first_index(&s), 1);
        assert_eq!(RaftStorage::last_index(&s), 0);
        let hs = HardState {
            term: 2,
            vote: 7,
            ..Default::default()
        };
        s.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(), Some(&hs))
            .unwrap();
        // A new leader replaces the tail from 4 on with a shorter one.
        s.append(&[entry(4, 2)], None).unwrap();
        assert_eq!(RaftStorage::last_index(&s), 4);
        assert_eq!(s.term(4).unwrap(), 2);
        assert_eq!(s.term(3).unwrap(), 1);
        let got = s
            .entries(1, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        s.set_commit(3).unwrap();
        s.compact(2).unwrap();
        assert!(matches!(
            s.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(s.term(2).unwrap(), 1);
        drop(s);

        let s = RaftStorage::open(db).unwrap().unwrap();
        assert_eq!(RaftStorage::first_index(&s), 3);
        assert_eq!(RaftStorage::last_index(&s), 4);
        assert_eq!(s.term(4).unwrap(), 2);
        let st = s.initial_state().unwrap();
        assert_eq!(st.hard_state.term, 2);
        assert_eq!(st.hard_state.commit, 3);
        assert_eq!(st.conf_state.voters, vec![7]);
        let got = s
            .entries(3, 5, Some(1), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 1, "max_size still returns one entry");
    }

    /// What the applier does: the state and the applied index in one
    /// batch.
    fn apply(db: &Db, index: u64) {
        let mut wb = WriteBatch::default();
        wb.put_cf(db.cf(Cf::Kv), format!("k{index}"), b"v");
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::APPLIED_INDEX,
            index.to_be_bytes(),
        );
        wb.put_cf(db.cf(Cf::Meta), meta_key::APPLIED_TERM, 2u64.to_be_bytes());
        db.write(wb).unwrap();
    }

    /// Asks for a snapshot until the thread making it is done.
    fn wait_snapshot(s: &RaftStorage) -> Snapshot {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match s.snapshot(0, 2) {
                Ok(snap) => return snap,
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)) => {
                    assert!(std::time::Instant::now() < deadline, "no snapshot made");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }

    #[test]
    fn snapshots_are_made_off_the_raft_thread_and_name_exactly_the_state_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let snaps = dir.path().join("snap");
        std::fs::create_dir_all(&snaps).unwrap();
        let mut s = RaftStorage::bootstrap(db.clone(), vec![1]).unwrap();
        s.set_snapshot_dir(snaps.clone());
        apply(&db, 1);
        // The applier keeps writing while the checkpoint is taken.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = std::thread::spawn({
            let (db, stop) = (db.clone(), stop.clone());
            move || {
                let mut index = 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    index += 1;
                    apply(&db, index);
                }
                index
            }
        });
        // The first request only starts the work.
        assert!(matches!(
            s.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        let snap = wait_snapshot(&s);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let last = writer.join().unwrap();
        let m = snap.get_metadata();
        assert!(m.index >= 1 && m.index <= last, "{} of {last}", m.index);
        assert_eq!(m.term, 2);
        assert_eq!(m.get_conf_state().voters, vec![1]);
        // The checkpoint holds the write of the index it names and none
        // after it.
        let cp_dir =
            std::path::PathBuf::from(String::from_utf8_lossy(snap.get_data()).into_owned());
        let names: Vec<String> = std::fs::read_dir(&cp_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with("LOG")), "{names:?}");
        let cp = Db::open_read_only(&cp_dir).unwrap();
        let key = |i: u64| cp.get(Cf::Kv, format!("k{i}").as_bytes()).unwrap();
        assert!(key(m.index).is_some());
        assert!(key(m.index + 1).is_none());
        assert_eq!(
            cp.get_u64(Cf::Meta, meta_key::APPLIED_INDEX).unwrap(),
            Some(m.index)
        );
        drop(cp);
        // Reused while it is recent enough.
        assert_eq!(s.snapshot(0, 2).unwrap(), snap);
        // A configuration change makes it useless: the next one names the
        // new configuration.
        let cs = ConfState {
            voters: vec![1, 2],
            ..Default::default()
        };
        let mut wb = WriteBatch::default();
        wb.put_cf(
            db.cf(Cf::RaftMeta),
            CONF_STATE,
            cs.write_to_bytes().unwrap(),
        );
        db.write(wb).unwrap();
        apply(&db, last + 1);
        s.set_conf_state(cs.clone());
        assert!(s.snapshot(0, 2).is_err());
        let next = wait_snapshot(&s);
        assert_eq!(next.get_metadata().index, last + 1);
        assert_eq!(next.get_metadata().get_conf_state(), &cs);
        assert!(!cp_dir.exists(), "the replaced checkpoint is removed");
    }
}
