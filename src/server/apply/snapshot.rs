//! Installing a snapshot from the leader: the state is replaced by the
//! checkpoint the snapshot names, atomically with the raft log's side, off
//! the raft thread.

use std::sync::atomic::Ordering;

use raft::prelude::Snapshot;

use super::Applier;
use crate::cluster::Members;
use crate::lease;
use crate::raft::node::InstallJob;
use crate::storage::{Cf, Db, meta_key};

impl Applier {
    /// The work of replacing the state with the checkpoint a snapshot
    /// refers to, to run off the raft thread: every state column family is
    /// emptied and refilled from it, together with the raft log changes in
    /// `wb`, in one synced write (a crash keeps either the old state and
    /// log or the new ones); then the in-memory state is reloaded from it.
    /// This member keeps its own id. Nothing else writes the state while it
    /// runs: the raft thread applies nothing until it ends.
    pub(super) fn install(&mut self, snap: &Snapshot, mut wb: rocksdb::WriteBatch) -> InstallJob {
        let dir = std::path::PathBuf::from(String::from_utf8_lossy(snap.get_data()).into_owned());
        let store = self.store.clone();
        let lessor = self.lessor.clone();
        let alarms = self.alarms.clone();
        let members = self.members.clone();
        let hub = self.hub.clone();
        let member_id = self.member_id;
        Box::new(move || {
            let db = store.db().clone();
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
                member_id.to_be_bytes(),
            );
            db.write_synced(wb)?;
            let _ = std::fs::remove_dir_all(&dir);
            store.reload()?;
            {
                let mut l = lease::lock(&lessor);
                l.clear();
                crate::server::lease::load(&db, &mut l)?;
            }
            alarms.reload(&db)?;
            if let Some(t) = Members::load(&db)? {
                members.set(t);
            }
            // Watchers catch up from the restored state at once.
            hub.reset_after_restore(store.current_rev());
            Ok(())
        })
    }

    /// The install job of `snap` ended well: the applier resumes after it.
    pub(super) fn installed(&mut self, snap: &Snapshot) {
        let index = snap.get_metadata().index;
        self.applied = index;
        self.status.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
    }
}
