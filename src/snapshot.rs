//! Backups: `Maintenance.Snapshot` (what `etcdctl snapshot save` reads) and
//! `oxcdutl snapshot restore|status` (etcd: `maintenance.go` Snapshot,
//! `etcdutl/snapshot`).
//!
//! A snapshot is a tar archive (ustar) of a RocksDB checkpoint of the
//! member's database, under `db/`, followed by the SHA-256 of the archive:
//! etcd's framing (clients check that the length is a multiple of 512 plus
//! 32 and that the trailer matches), with oxcd's own payload, so `etcdutl`
//! cannot read it and `oxcdutl` restores it. A checkpoint is consistent
//! across column families and made of hard links, so taking one costs
//! little and never blocks writes.
//!
//! Restoring extracts the database, drops its raft log and member
//! identity, and starts a new one-member raft group whose log begins right
//! after the snapshot's applied index, with ids derived from the restore
//! flags, as `etcdutl snapshot restore` starts a new cluster.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::storage::{Cf, Checkpoint, Db, meta_key};

/// Bytes per `SnapshotResponse` blob, as etcd sends them.
pub const CHUNK: usize = 32 * 1024;

/// A tar block.
const BLOCK: usize = 512;

/// The archive of a checkpoint: its files, as a tar in etcd's snapshot
/// framing.
pub trait Archive {
    /// The archive's length.
    fn archive_len(&self) -> u64;
    /// Writes the archive to `out`.
    fn write_archive(&self, out: &mut impl Write) -> Result<()>;
}

impl Archive for Checkpoint {
    /// A header and padded content per file, and the
    /// two zero blocks that end a tar archive.
    fn archive_len(&self) -> u64 {
        self.files()
            .iter()
            .map(|(_, len)| BLOCK as u64 + padded(*len))
            .sum::<u64>()
            + 2 * BLOCK as u64
    }

    /// Writes the archive to `out`.
    fn write_archive(&self, out: &mut impl Write) -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        for (name, len) in self.files() {
            out.write_all(&tar_header(&format!("db/{name}"), *len)?)
                .map_err(Error::internal)?;
            let mut f = File::open(self.dir().join(name)).map_err(Error::internal)?;
            let mut left = *len;
            while left > 0 {
                let n = f.read(&mut buf).map_err(Error::internal)?;
                if n == 0 {
                    return Err(Error::internal(format!("{name} shrank while archived")));
                }
                let n = n.min(left as usize);
                out.write_all(&buf[..n]).map_err(Error::internal)?;
                left -= n as u64;
            }
            let pad = (padded(*len) - len) as usize;
            out.write_all(&vec![0; pad]).map_err(Error::internal)?;
        }
        out.write_all(&[0; 2 * BLOCK]).map_err(Error::internal)
    }
}

fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// A ustar header for a regular file.
fn tar_header(name: &str, len: u64) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    if name.len() > 100 {
        return Err(Error::internal(format!(
            "file name too long for tar: {name}"
        )));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; BLOCK], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644); // mode
    octal(&mut h, 108, 8, 0); // uid
    octal(&mut h, 116, 8, 0); // gid
    octal(&mut h, 124, 12, len); // size
    octal(&mut h, 136, 12, 0); // mtime
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Checks a snapshot file's framing and trailer; returns the archive's
/// length (everything before the SHA-256).
pub fn verify(path: &Path) -> Result<u64> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?
        .len();
    if len < 32 || (len - 32) % BLOCK as u64 != 0 {
        return Err(Error::internal("snapshot file has no sha256 trailer"));
    }
    let body = len - 32;
    let mut f = File::open(path).map_err(Error::internal)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = body;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        f.read_exact(&mut buf[..want]).map_err(Error::internal)?;
        h.update(&buf[..want]);
        left -= want as u64;
    }
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer).map_err(Error::internal)?;
    if h.finalize().as_slice() != trailer {
        return Err(Error::internal(
            "snapshot sha256 mismatch: the file is corrupt",
        ));
    }
    Ok(body)
}

/// Extracts the archive's `db/` files into `dir`.
fn extract(path: &Path, body: u64, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::internal)?;
    let mut f = std::io::BufReader::new(File::open(path).map_err(Error::internal)?);
    let mut pos = 0u64;
    let mut header = [0u8; BLOCK];
    while pos + BLOCK as u64 <= body {
        f.read_exact(&mut header).map_err(Error::internal)?;
        pos += BLOCK as u64;
        if header.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&header[..name_end]).map_err(Error::internal)?;
        let size = parse_octal(&header[124..136])
            .ok_or_else(|| Error::internal("bad size in snapshot archive"))?;
        let file = name
            .strip_prefix("db/")
            .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
            .ok_or_else(|| Error::internal(format!("unexpected file in snapshot: {name}")))?;
        let mut out = File::create(dir.join(file)).map_err(Error::internal)?;
        let mut take = (&mut f).take(size);
        std::io::copy(&mut take, &mut out).map_err(Error::internal)?;
        out.sync_all().map_err(Error::internal)?;
        let skip = padded(size) - size;
        std::io::copy(&mut (&mut f).take(skip), &mut std::io::sink()).map_err(Error::internal)?;
        pos += padded(size);
    }
    Err(Error::internal(
        "snapshot archive ends without its end blocks",
    ))
}

/// What `oxcdutl snapshot status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// Where a restore puts the member.
pub struct RestoreTarget {
    pub data_dir: PathBuf,
    pub peer_urls: Vec<String>,
    pub cluster_token: String,
}

/// Restores a snapshot into a new data directory as a new one-member
/// cluster. Fails if the directory already holds a member.
pub fn restore(snapshot: &Path, target: &RestoreTarget) -> Result<(u64, u64)> {
    let body = verify(snapshot)?;
    let member_dir = target.data_dir.join("member");
    if member_dir.exists() {
        return Err(Error::internal(format!(
            "data-dir {:?} exists",
            target.data_dir.display().to_string()
        )));
    }
    let tmp = target.data_dir.join("member.restoring");
    let _ = std::fs::remove_dir_all(&tmp);
    extract(snapshot, body, &tmp.join("db"))?;
    let (member, cluster) = {
        let db = Db::open(&tmp.join("db"))?;
        reset_identity_and_log(&db, target)?
    };
    std::fs::rename(&tmp, &member_dir).map_err(Error::internal)?;
    Ok((member, cluster))
}

/// Drops the snapshot's raft log and member identity and writes a fresh
/// one-member raft state starting after the applied index.
fn reset_identity_and_log(db: &Arc<Db>, target: &RestoreTarget) -> Result<(u64, u64)> {
    let member = crate::cluster::member_id(&target.peer_urls, &target.cluster_token);
    let cluster = crate::cluster::cluster_id(&[member]);
    let applied = db.get_u64(Cf::Meta, meta_key::APPLIED_INDEX)?.unwrap_or(0);
    let mut wb = rocksdb::WriteBatch::default();
    for cf in [Cf::RaftLog, Cf::RaftMeta] {
        wb.delete_range_cf(db.cf(cf), [0u8].as_slice(), [0xFFu8; 32].as_slice());
    }
    wb.put_cf(db.cf(Cf::Meta), meta_key::MEMBER_ID, member.to_be_bytes());
    wb.put_cf(db.cf(Cf::Meta), meta_key::CLUSTER_ID, cluster.to_be_bytes());
    db.write_synced(wb)?;
    crate::raft::RaftStorage::bootstrap_after(db.clone(), vec![member], applied)?;
    db.compact_all()?;
    Ok((member, cluster))
}

/// Hash, revision, key count and size of a snapshot (verified first).
pub fn status(snapshot: &Path) -> Result<Status> {
    let body = verify(snapshot)?;
    let tmp = std::env::temp_dir().join(format!("oxcd-snapshot-status-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        extract(snapshot, body, &tmp)?;
        let db = Db::open(&tmp)?;
        let store = crate::mvcc::Store::open(db.clone())?;
        let h = store.hash_kv(0)?;
        let view = store.read();
        let count = crate::mvcc::KvRead::range(
            &view,
            crate::mvcc::KeyRange::new(b"\0", b"\0"),
            &crate::mvcc::RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )?
        .count;
        Ok(Status {
            hash: h.hash,
            revision: h.current_rev,
            total_keys: count as u64,
            total_size: body,
        })
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The SHA-256 of a byte stream, for the Snapshot RPC's trailer.
pub fn hasher() -> Sha256 {
    Sha256::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_carry_a_valid_checksum_and_octal_size() {
        let h = tar_header("db/000012.sst", 1234).unwrap();
        assert_eq!(parse_octal(&h[124..136]), Some(1234));
        let stored = parse_octal(&h[148..155]).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|b| u64::from(*b)).sum::<u64>());
        assert_eq!(&h[257..263], b"ustar\0");
    }

    #[test]
    fn a_store_survives_archive_and_extraction() {
        let src = tempfile::tempdir().unwrap();
        let db = Db::open(&src.path().join("db")).unwrap();
        let store = crate::mvcc::Store::open(db.clone()).unwrap();
        for i in 0..100 {
            let mut b = store.begin_batch();
            let mut t = b.txn(&db);
            t.put(
                &bytes::Bytes::from(format!("k{i}")),
                &bytes::Bytes::from(vec![b'v'; 3000]),
                0,
            )
            .unwrap();
            t.end();
            store.commit(b).unwrap();
        }
        let before = store.hash_kv(0).unwrap();
        let cp = Checkpoint::take(&db, src.path()).unwrap();
        let mut archive = Vec::new();
        cp.write_archive(&mut archive).unwrap();
        assert_eq!(archive.len() as u64, cp.archive_len());
        assert_eq!(archive.len() % BLOCK, 0);
        let digest = Sha256::digest(&archive);
        archive.extend_from_slice(&digest);
        let file = src.path().join("snap.db");
        std::fs::write(&file, &archive).unwrap();
        let st = status(&file).unwrap();
        assert_eq!(
            (st.hash, st.revision, st.total_keys),
            (before.hash, 101, 100)
        );
        // A flipped byte is caught by the trailer.
        archive[700] ^= 1;
        std::fs::write(&file, &archive).unwrap();
        assert!(verify(&file).is_err());
    }
}
