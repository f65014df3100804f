//! HashKV: a checksum of the key-value history, for comparing members
//! (etcd: `server/storage/mvcc/hash.go`).
//!
//! The hash is CRC-32C (Castagnoli) over every stored `(kv key, record)`
//! pair, in key order, whose revision is at or below the revision hashed,
//! leaving out what the compaction at the compacted revision removes
//! (versions older than a key's newest version at or below it, and that
//! newest version too when it is a deletion). So it depends only on the
//! history, not on whether or when the physical compaction ran, and members
//! that applied the same log hash equal. The layout differs from etcd's, so
//! the values are not comparable with an etcd member's.

use super::{Store, key, resolve_rev};
use crate::error::{Error, Result};
use crate::storage::KvWalk;

/// The result of [`Store::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The compacted revision when the hash ran.
    pub compact_rev: i64,
    /// The revision hashed.
    pub hash_rev: i64,
    /// The current revision when the hash ran.
    pub current_rev: i64,
}

impl Store {
    /// Maintenance.Hash: CRC-32C over every entry of the state column
    /// families (keys and history, leases, alarms, members, revisions and
    /// the applied index), from one consistent snapshot, leaving out this
    /// member's own id. Members at the same applied index hash equal.
    /// Returns the hash and the revision it was taken at.
    pub fn hash_all(&self) -> Result<(u32, i64)> {
        use crate::storage::{Cf, meta_key};
        let view = self.read();
        let mut crc = Crc32c::new();
        for cf in Cf::STATE {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_snapshot(&view.snapshot);
            ro.set_total_order_seek(true);
            let mut it = self.db.raw().raw_iterator_cf_opt(self.db.cf(cf), ro);
            it.seek_to_first();
            crc.update(cf.name().as_bytes());
            while let Some((k, v)) = it.item() {
                if !(cf == Cf::Meta && k == meta_key::MEMBER_ID) {
                    crc.update(k);
                    crc.update(v);
                }
                it.next();
            }
            it.status()?;
        }
        Ok((crc.finish(), view.rev))
    }

    /// Hashes the history up to `rev` (0 = the current revision).
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        let view = self.read();
        let at = resolve_rev(rev, view.rev, view.compact_rev)?;
        let compact_rev = view.compact_rev;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_snapshot(&view.snapshot);
        let mut it = self.db.kv_iter(ro, KvWalk::Range);
        it.seek_to_first();
        let mut crc = Crc32c::new();
        crc.update(b"key");
        // The key whose versions are being walked, and whether its newest
        // version at or below the compacted revision was already met.
        let mut current: Vec<u8> = Vec::new();
        let mut met_compacted = false;
        while let Some((k, v)) = it.item() {
            let Some((plen, main)) = key::split_version_key(k) else {
                it.next();
                continue;
            };
            if current.as_slice() != &k[..plen] {
                current.clear();
                current.extend_from_slice(&k[..plen]);
                met_compacted = false;
            }
            let include = if main > at {
                false
            } else if main > compact_rev {
                true
            } else if met_compacted {
                false
            } else {
                met_compacted = true;
                matches!(
                    super::record::Record::decode(v)?,
                    super::record::Record::Put { .. }
                )
            };
            if include {
                crc.update(k);
                crc.update(v);
            }
            it.next();
        }
        it.status()
            .map_err(|e| Error::internal(format!("hash: {e}")))?;
        Ok(KvHash {
            hash: crc.finish(),
            compact_rev,
            hash_rev: at,
            current_rev: view.rev,
        })
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
struct Crc32c {
    table: [u32; 256],
    state: u32,
}

impl Crc32c {
    fn new() -> Crc32c {
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *t = c;
        }
        Crc32c { table, state: !0 }
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.state =
                self.table[((self.state ^ u32::from(b)) & 0xFF) as usize] ^ (self.state >> 8);
        }
    }

    fn finish(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut c = Crc32c::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xE306_9283);
    }
}
