//! RocksDB: one database per member holding the raft log and the state.
//!
//! Column families and keys: [`schema`].
//!
//! All column families share RocksDB's write-ahead log, so one write batch
//! is atomic across them and a crash recovers a prefix of the writes in the
//! order they were made. The raft thread writes with `sync = true` (the
//! durability point); the applier writes without sync, because anything it
//! loses is replayed from the synced raft log.
//!
//! etcd counterpart: `server/storage/backend` and `server/storage/schema`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    DBRawIteratorWithThreadMode, Options, ReadOptions, SliceTransform, WriteBatch, WriteOptions,
};

use crate::error::{Error, Result};

pub use rocksdb::DB;

pub mod checkpoint;
pub mod schema;

pub use checkpoint::Checkpoint;
pub use schema::{Cf, meta_key};

/// Length of the revision suffix of a `kv` key (`mvcc::key::REV_LEN`).
const KV_REV_LEN: usize = 8;

/// The `kv` CF's prefix extractor: a version key minus its revision, i.e.
/// the escaped user key and its `00 00` terminator. Every version of one
/// user key shares it, so the prefix bloom filters let a lookup of one key
/// skip every SST file that holds no version of it.
fn kv_user_key_prefix(k: &[u8]) -> &[u8] {
    &k[..k.len().saturating_sub(KV_REV_LEN)]
}

/// Whether `k` is a version key: the `00 00` terminator (which escaped key
/// bytes never contain) sits right before the revision.
fn kv_is_version_key(k: &[u8]) -> bool {
    k.len() >= KV_REV_LEN + 2 && k[k.len() - KV_REV_LEN - 2..k.len() - KV_REV_LEN] == [0, 0]
}

/// How an iterator over the `kv` CF will move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWalk {
    /// Only the versions of one user key (seek targets are version keys):
    /// the prefix bloom filters apply.
    OneKey,
    /// Across user keys, in key order.
    Range,
}

/// The database handle shared by the raft thread, the applier, readers and
/// the compactor.
pub struct Db {
    db: DB,
    sync_opts: WriteOptions,
    async_opts: WriteOptions,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.db.path()).finish()
    }
}

/// The column families with their options (the same for every open).
fn cf_descriptors() -> [ColumnFamilyDescriptor; Cf::ALL.len()] {
    let cache = Cache::new_lru_cache(64 << 20);
    Cf::ALL.map(|cf| {
        let mut o = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks live with each open table, outside the
        // block cache: about 1-2% of the data, read once per table. In
        // the cache, data blocks evicted them and every new iterator
        // re-read and decompressed whole index blocks.
        table.set_cache_index_and_filter_blocks(false);
        o.set_block_based_table_factory(&table);
        o.set_compression_type(DBCompressionType::Lz4);
        o.set_bottommost_compression_type(DBCompressionType::Zstd);
        if cf == Cf::Kv {
            o.set_prefix_extractor(SliceTransform::create(
                "oxcd.kv.user_key",
                kv_user_key_prefix,
                Some(kv_is_version_key),
            ));
        }
        if cf == Cf::RaftLog {
            // Appended once, read rarely, deleted in ranges: small
            // memtables, no compression cost on the hot path.
            o.set_compression_type(DBCompressionType::None);
        }
        ColumnFamilyDescriptor::new(cf.name(), o)
    })
}

impl Db {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Arc<Db>> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::internal(format!("create {}: {e}", path.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // Each column family flushes on its own schedule; the WAL keeps them
        // recoverable together.
        opts.set_max_total_wal_size(256 << 20);
        // Reuse old WAL files instead of appending to new ones: writes then
        // overwrite blocks that are already allocated, so the fdatasync on
        // every raft append need not update the file's size on disk (as
        // etcd's preallocated WAL segments avoid it).
        opts.set_recycle_log_file_num(4);

        Ok(Db::wrap(DB::open_cf_descriptors(
            &opts,
            path,
            cf_descriptors(),
        )?))
    }

    fn wrap(db: DB) -> Arc<Db> {
        let mut sync_opts = WriteOptions::default();
        sync_opts.set_sync(true);
        Arc::new(Db {
            db,
            sync_opts,
            async_opts: WriteOptions::default(),
        })
    }

    /// Opens the database at `path` for reading only: it must exist, and
    /// nothing in it changes (RocksDB writes only an info log there).
    pub fn open_read_only(path: &Path) -> Result<Arc<Db>> {
        Ok(Db::wrap(DB::open_cf_descriptors_read_only(
            &Options::default(),
            path,
            cf_descriptors(),
            false,
        )?))
    }

    /// The handle of a column family; all of them are created by `open`.
    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("invariant: every column family is created by Db::open")
    }

    /// The underlying RocksDB instance, for iterators and snapshots.
    pub fn raw(&self) -> &DB {
        &self.db
    }

    /// An iterator over the `kv` CF. It must be told how it will move: with
    /// a prefix extractor configured, RocksDB leaves crossing from one user
    /// key to the next undefined unless the iterator walks in total order.
    pub fn kv_iter(
        &self,
        mut ro: ReadOptions,
        walk: KvWalk,
    ) -> DBRawIteratorWithThreadMode<'_, DB> {
        match walk {
            KvWalk::OneKey => ro.set_prefix_same_as_start(true),
            KvWalk::Range => ro.set_total_order_seek(true),
        }
        self.db.raw_iterator_cf_opt(self.cf(Cf::Kv), ro)
    }

    /// Writes a batch and fsyncs the WAL before returning.
    pub fn write_synced(&self, batch: WriteBatch) -> Result<()> {
        Ok(self.db.write_opt(batch, &self.sync_opts)?)
    }

    /// Writes a batch without waiting for the disk.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        Ok(self.db.write_opt(batch, &self.async_opts)?)
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Reads a big-endian u64 stored under a fixed key.
    pub fn get_u64(&self, cf: Cf, key: &[u8]) -> Result<Option<u64>> {
        match self.db.get_pinned_cf(self.cf(cf), key)? {
            None => Ok(None),
            Some(v) => decode_u64(&v)
                .map(Some)
                .ok_or_else(|| Error::internal(format!("corrupt u64 at {key:?}"))),
        }
    }

    /// Approximate bytes the state takes (SST files plus memtables of
    /// every CF but the raft log's): what etcd calls the backend size (its
    /// bbolt file; the WAL is not counted there either).
    pub fn approximate_size(&self) -> u64 {
        self.state_property_sum(&[
            "rocksdb.live-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ])
    }

    /// Estimated bytes of live data (what a full compaction would keep)
    /// plus memtables, over the state CFs.
    pub fn live_size(&self) -> u64 {
        self.state_property_sum(&[
            "rocksdb.estimate-live-data-size",
            "rocksdb.cur-size-all-mem-tables",
        ])
    }

    /// The sum of integer properties over the state CFs.
    fn state_property_sum(&self, props: &[&str]) -> u64 {
        let mut total = 0;
        for cf in Cf::STATE {
            for prop in props {
                if let Ok(Some(v)) = self.db.property_int_value_cf(self.cf(cf), *prop) {
                    total += v;
                }
            }
        }
        total
    }

    /// Flushes and fully compacts every CF, so deleted and overwritten data
    /// leave the files.
    pub fn compact_all(&self) -> Result<()> {
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf))?;
            self.db
                .compact_range_cf_opt(self.cf(cf), None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }
}

#[cfg(test)]
mod kv_prefix_tests {
    use super::*;

    #[test]
    fn kv_prefix_extractor_takes_the_escaped_user_key() {
        // "a\0b" escaped is 61 00 FF 62, then the 00 00 terminator.
        let mut k = vec![0x61, 0x00, 0xFF, 0x62, 0x00, 0x00];
        let prefix_len = k.len();
        k.extend_from_slice(&(!7u64).to_be_bytes());
        assert!(kv_is_version_key(&k));
        assert_eq!(kv_user_key_prefix(&k), &k[..prefix_len]);
        // Range seek targets (no revision) are outside the domain.
        assert!(!kv_is_version_key(&k[..prefix_len]));
        assert!(!kv_is_version_key(b"short"));
        assert!(!kv_is_version_key(b"abcdefghijkl"));
    }

    #[test]
    fn one_key_and_range_walks_over_many_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let vk = |u: &[u8], rev: u64| {
            let mut k = u.to_vec();
            k.extend_from_slice(&[0, 0]);
            k.extend_from_slice(&(!rev).to_be_bytes());
            k
        };
        // Spread the keys over several SST files.
        for (i, u) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            let mut wb = WriteBatch::default();
            wb.put_cf(db.cf(Cf::Kv), vk(*u, i as u64 + 1), b"v1");
            wb.put_cf(db.cf(Cf::Kv), vk(*u, i as u64 + 10), b"v2");
            db.write(wb).unwrap();
            db.raw().flush_cf(db.cf(Cf::Kv)).unwrap();
        }
        let mut it = db.kv_iter(ReadOptions::default(), KvWalk::Range);
        it.seek(b"");
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        assert_eq!(n, 8, "a range walk sees every version of every key");
        let mut it = db.kv_iter(ReadOptions::default(), KvWalk::OneKey);
        it.seek(vk(b"c", u64::MAX >> 1));
        let mut seen = vec![];
        while it.valid() {
            seen.push(it.value().unwrap().to_vec());
            it.next();
        }
        assert_eq!(
            seen,
            vec![b"v2".to_vec(), b"v1".to_vec()],
            "one key, newest first"
        );
        let mut it = db.kv_iter(ReadOptions::default(), KvWalk::OneKey);
        it.seek(vk(b"x", 5));
        assert!(!it.valid(), "no versions of a missing key");
    }
}

/// Big-endian encoding of a u64, the form every fixed numeric value takes.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_every_column_family_and_round_trips_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        for cf in Cf::ALL {
            let mut b = WriteBatch::default();
            b.put_cf(db.cf(cf), b"k", encode_u64(7));
            db.write_synced(b).unwrap();
            assert_eq!(db.get_u64(cf, b"k").unwrap(), Some(7));
        }
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get_u64(Cf::Meta, b"k").unwrap(), Some(7));
        assert_eq!(db.get_u64(Cf::Meta, b"missing").unwrap(), None);
    }

    #[test]
    fn corrupt_u64_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut b = WriteBatch::default();
        b.put_cf(db.cf(Cf::Meta), b"k", b"abc");
        db.write(b).unwrap();
        assert!(db.get_u64(Cf::Meta, b"k").is_err());
    }
}
