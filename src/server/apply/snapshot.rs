//! Installing a snapshot from the leader: the state is replaced by the
//! checkpoint the snapshot names, atomically with the raft log's side.

use std::sync::atomic::Ordering;

use raft::prelude::Snapshot;

use super::Applier;
use crate::cluster::Members;
use crate::error::Result;
use crate::lease;
use crate::storage::{Cf, Db, meta_key};

impl Applier {
    /// Replaces the state with the checkpoint a snapshot refers to: every
    /// state column family is emptied and refilled from it, together with
    /// the raft log changes in `wb`, in one synced write (a crash keeps
    /// either the old state and log or the new ones). This member keeps
    /// its own id.
    pub(super) fn install(&mut self, snap: &Snapshot, mut wb: rocksdb::WriteBatch) -> Result<()> {
        let dir = std::path::PathBuf::from(String::from_utf8_lossy(snap.get_data()).into_owned());
        let db = self.store.db().clone();
        {
            let src = Db::open(&dir)?;
            for cf in Cf::STATE {
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_total_order_seek(true);
                let mut it = db.raw().raw_iterator_cf_opt(db.cf(cf), opts);
                it.seek_to_first();
                while let Some(k) = it.key() {
                    wb.delete_cf(db.cf(cf), k);
                    it.next();
                }
                it.status()?;
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_total_order_seek(true);
                let mut it = src.raw().raw_iterator_cf_opt(src.cf(cf), opts);
                it.seek_to_first();
                while let Some((k, v)) = it.item() {
                    wb.put_cf(db.cf(cf), k, v);
                    it.next();
                }
                it.status()?;
            }
        }
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::MEMBER_ID,
            self.member_id.to_be_bytes(),
        );
        db.write_synced(wb)?;
        let _ = std::fs::remove_dir_all(&dir);
        self.store.reload()?;
        {
            let mut l = lease::lock(&self.lessor);
            l.clear();
            crate::server::lease::load(&db, &mut l)?;
        }
        self.alarms.reload(&db)?;
        if let Some(t) = Members::load(&db)? {
            self.members.set(t);
        }
        let index = snap.get_metadata().index;
        self.applied = index;
        self.hub.reset_after_restore(self.store.current_rev());
        self.status.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
        Ok(())
    }
}
