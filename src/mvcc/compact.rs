//! Physical compaction: removing versions that no read can see any more.
//!
//! A compaction at revision C is applied logically first ([`super::Batch::compact`]):
//! reads below C fail from then on. This module then removes, in the
//! background and in bounded chunks, for every key changed before C, all
//! versions older than its newest version at or below C, and that newest
//! version too if it is a deletion; plus the `rev` entries below C. Reads at
//! or above C see exactly what they saw before. It never blocks the applier
//! or readers.
//!
//! Progress is persisted (`compact_finished_rev`); after a restart an
//! unfinished compaction is resumed. The work is idempotent.
//!
//! etcd counterpart: `kvstore_compaction.go`, `scheduleCompaction`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use rocksdb::WriteBatch;
use tokio::sync::watch;

use super::key;
use super::record::Record;
use crate::error::{Error, Result};
use crate::storage::{Cf, Db, KvWalk, meta_key};

/// How many `rev` entries one chunk handles before writing its deletions.
const CHUNK_ENTRIES: usize = 1000;

/// Handle to the background compactor thread.
#[derive(Clone)]
pub struct Compactor {
    tx: mpsc::Sender<i64>,
    finished: watch::Receiver<i64>,
}

impl Compactor {
    /// Starts the compactor; resumes a compaction left unfinished by a crash.
    pub fn spawn(db: Arc<Db>) -> Result<Compactor> {
        let finished_rev = db
            .get_u64(Cf::Meta, meta_key::COMPACT_FINISHED_REV)?
            .map_or(super::NO_COMPACTION, |v| v as i64);
        let scheduled = db
            .get_u64(Cf::Meta, meta_key::COMPACT_REV)?
            .map_or(super::NO_COMPACTION, |v| v as i64);
        let (tx, rx) = mpsc::channel::<i64>();
        let (done_tx, finished) = watch::channel(finished_rev);
        if scheduled > finished_rev {
            let _ = tx.send(scheduled);
        }
        thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || run(Arc::downgrade(&db), rx, done_tx))
            .map_err(|e| Error::internal(format!("spawn compactor: {e}")))?;
        Ok(Compactor { tx, finished })
    }

    /// Asks for the physical compaction up to `rev` (already applied logically).
    pub fn schedule(&self, rev: i64) {
        // The thread only exits when every sender is gone.
        let _ = self.tx.send(rev);
    }

    /// Waits until physical compaction has reached at least `rev`.
    pub async fn wait_finished(&self, rev: i64) {
        let mut rx = self.finished.clone();
        let _ = rx.wait_for(|done| *done >= rev).await;
    }

    /// The revision up to which old versions have been removed.
    pub fn finished_rev(&self) -> i64 {
        *self.finished.borrow()
    }
}

/// Holds the database only while compacting, so the thread never ends up
/// closing it (the owner does, on its own thread).
fn run(db: std::sync::Weak<Db>, rx: mpsc::Receiver<i64>, done: watch::Sender<i64>) {
    while let Ok(mut rev) = rx.recv() {
        // Coalesce: only the newest requested compaction matters.
        while let Ok(r) = rx.try_recv() {
            rev = rev.max(r);
        }
        if rev <= *done.borrow() {
            continue;
        }
        let started = std::time::Instant::now();
        let Some(db) = db.upgrade() else { return };
        match compact(&db, rev) {
            Ok(removed) => {
                tracing::info!(
                    compact_revision = rev,
                    removed_versions = removed,
                    took_ms = started.elapsed().as_millis() as u64,
                    "finished scheduled compaction"
                );
                done.send_replace(rev);
            }
            Err(e) => {
                // Storage failure: the data is intact (deletions are only
                // ever of invisible versions), the compaction is retried at
                // the next request or restart.
                tracing::error!(compact_revision = rev, error = %e, "compaction failed");
            }
        }
    }
}

/// Removes everything compaction at `rev` makes invisible. Returns the
/// number of versions removed.
///
/// Walks the `rev` entries up to and including `rev`: every key changed
/// there may have versions to drop. Entries below `rev` are deleted; those
/// at `rev` stay, because a watch may still start at `rev`.
pub fn compact(db: &Db, rev: i64) -> Result<u64> {
    let mut removed = 0u64;
    let end = key::rev_key(rev + 1, 0);
    let keep_from = key::rev_key(rev, 0);
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let mut wb = WriteBatch::default();
        let mut keys = HashSet::new();
        let mut n = 0;
        {
            let mut it = db.raw().raw_iterator_cf(db.cf(Cf::Rev));
            match &resume {
                None => it.seek_to_first(),
                Some(k) => {
                    it.seek(k);
                    if it.key() == Some(k.as_slice()) {
                        it.next();
                    }
                }
            }
            while n < CHUNK_ENTRIES {
                let Some((k, v)) = it.item() else { break };
                if k >= end.as_slice() {
                    break;
                }
                if k < keep_from.as_slice() {
                    wb.delete_cf(db.cf(Cf::Rev), k);
                }
                if let Some(uk) = v.get(1..) {
                    keys.insert(uk.to_vec());
                }
                resume = Some(k.to_vec());
                n += 1;
                it.next();
            }
            it.status()?;
        }
        if n == 0 {
            break;
        }
        for uk in &keys {
            removed += drop_old_versions(db, &mut wb, uk, rev)?;
        }
        db.write(wb)?;
    }
    let mut wb = WriteBatch::default();
    wb.put_cf(
        db.cf(Cf::Meta),
        meta_key::COMPACT_FINISHED_REV,
        (rev as u64).to_be_bytes(),
    );
    db.write(wb)?;
    Ok(removed)
}

/// Deletes the versions of `uk` hidden by a compaction at `rev`.
fn drop_old_versions(db: &Db, wb: &mut WriteBatch, uk: &[u8], rev: i64) -> Result<u64> {
    let prefix = key::prefix(uk);
    let mut it = db.kv_iter(rocksdb::ReadOptions::default(), KvWalk::OneKey);
    let mut start = prefix.clone();
    start.extend_from_slice(&key::inverted(rev));
    it.seek(&start);
    let mut removed = 0;
    let mut newest = true;
    while let Some((k, v)) = it.item() {
        if !(k.len() == prefix.len() + key::REV_LEN && k.starts_with(&prefix)) {
            break;
        }
        // The first version found is the newest at or below `rev`: it stays
        // unless it is a deletion. Every older one goes.
        let keep = newest && matches!(Record::decode(v)?, Record::Put { .. });
        if !keep {
            wb.delete_cf(db.cf(Cf::Kv), k);
            removed += 1;
        }
        newest = false;
        it.next();
    }
    it.status()?;
    Ok(removed)
}
