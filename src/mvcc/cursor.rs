//! Forward cursors over the `kv` column family.
//!
//! Readers walk RocksDB directly (`DbCursor`, usually over a snapshot). The
//! applier walks RocksDB merged with the writes of its current batch that are
//! not yet in RocksDB (`MergedCursor`), so later requests in a batch see the
//! effects of earlier ones.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::Bound;

use rocksdb::DBRawIteratorWithThreadMode;

use crate::error::Result;
use crate::storage::DB;

/// The operations the range walk needs.
pub trait Cursor {
    /// Positions at the first entry whose key is `>= key`.
    fn seek(&mut self, key: &[u8]);
    /// Moves to the next entry; only valid when `valid()`.
    fn next(&mut self);
    fn valid(&self) -> bool;
    /// The current key; only meaningful when `valid()`.
    fn key(&self) -> &[u8];
    /// The current value; only meaningful when `valid()`.
    fn value(&self) -> &[u8];
    /// An I/O error the iterator ran into, if any.
    fn status(&self) -> Result<()>;
}

/// A cursor over RocksDB.
pub struct DbCursor<'a> {
    it: DBRawIteratorWithThreadMode<'a, DB>,
}

impl<'a> DbCursor<'a> {
    pub fn new(it: DBRawIteratorWithThreadMode<'a, DB>) -> Self {
        DbCursor { it }
    }
}

impl Cursor for DbCursor<'_> {
    fn seek(&mut self, key: &[u8]) {
        self.it.seek(key);
    }
    fn next(&mut self) {
        self.it.next();
    }
    fn valid(&self) -> bool {
        self.it.valid()
    }
    fn key(&self) -> &[u8] {
        self.it.key().unwrap_or_default()
    }
    fn value(&self) -> &[u8] {
        self.it.value().unwrap_or_default()
    }
    fn status(&self) -> Result<()> {
        Ok(self.it.status()?)
    }
}

type Overlay = BTreeMap<Vec<u8>, Vec<u8>>;

/// RocksDB merged with pending writes; a pending entry shadows a stored one
/// with the same key.
pub struct MergedCursor<'a> {
    db: DbCursor<'a>,
    overlay: &'a Overlay,
    ov_iter: btree_map::Range<'a, Vec<u8>, Vec<u8>>,
    ov: Option<(&'a Vec<u8>, &'a Vec<u8>)>,
    /// Whether the current entry comes from the overlay.
    on_overlay: bool,
}

impl<'a> MergedCursor<'a> {
    pub fn new(db: DbCursor<'a>, overlay: &'a Overlay) -> Self {
        MergedCursor {
            db,
            overlay,
            ov_iter: overlay.range::<[u8], _>((Bound::Unbounded, Bound::Unbounded)),
            ov: None,
            on_overlay: false,
        }
    }

    fn pick(&mut self) {
        self.on_overlay = match (self.ov, self.db.valid()) {
            (Some(_), false) => true,
            (None, _) => false,
            (Some((k, _)), true) => k.as_slice() <= self.db.key(),
        };
    }
}

impl Cursor for MergedCursor<'_> {
    fn seek(&mut self, key: &[u8]) {
        self.db.seek(key);
        self.ov_iter = self
            .overlay
            .range::<[u8], _>((Bound::Included(key), Bound::Unbounded));
        self.ov = self.ov_iter.next();
        self.pick();
    }

    fn next(&mut self) {
        if self.on_overlay {
            if let Some((k, _)) = self.ov
                && self.db.valid()
                && self.db.key() == k.as_slice()
            {
                self.db.next();
            }
            self.ov = self.ov_iter.next();
        } else {
            self.db.next();
        }
        self.pick();
    }

    fn valid(&self) -> bool {
        self.on_overlay || self.db.valid()
    }

    fn key(&self) -> &[u8] {
        match self.ov {
            Some((k, _)) if self.on_overlay => k,
            _ => self.db.key(),
        }
    }

    fn value(&self) -> &[u8] {
        match self.ov {
            Some((_, v)) if self.on_overlay => v,
            _ => self.db.value(),
        }
    }

    fn status(&self) -> Result<()> {
        self.db.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cf, Db};

    #[test]
    fn merged_cursor_interleaves_and_shadows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut b = rocksdb::WriteBatch::default();
        for k in [b"a", b"c", b"e"] {
            b.put_cf(db.cf(Cf::Kv), k, b"db");
        }
        db.write(b).unwrap();
        let mut overlay = Overlay::new();
        overlay.insert(b"b".to_vec(), b"ov".to_vec());
        overlay.insert(b"c".to_vec(), b"ov".to_vec());
        overlay.insert(b"f".to_vec(), b"ov".to_vec());

        let it = db.kv_iter(
            rocksdb::ReadOptions::default(),
            crate::storage::KvWalk::Range,
        );
        let mut c = MergedCursor::new(DbCursor::new(it), &overlay);
        c.seek(b"");
        let mut seen = vec![];
        while c.valid() {
            seen.push((c.key().to_vec(), c.value().to_vec()));
            c.next();
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            ("a", "db"),
            ("b", "ov"),
            ("c", "ov"),
            ("e", "db"),
            ("f", "ov"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(seen, want);

        c.seek(b"d");
        assert_eq!(c.key(), b"e");
        c.seek(b"e\x00");
        assert_eq!(c.key(), b"f");
        c.next();
        assert!(!c.valid());
        c.status().unwrap();
    }
}
