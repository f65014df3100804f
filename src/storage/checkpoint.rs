//! RocksDB checkpoints: a consistent copy of the database made of hard
//! links, used to send raft snapshots to followers and to take backups.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::Db;

/// A checkpoint on disk, removed when dropped.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<(String, u64)>,
}

impl Checkpoint {
    /// Takes a checkpoint of `db` into a fresh directory under `parent`.
    pub fn take(db: &Db, parent: &Path) -> Result<Checkpoint> {
        let dir = parent.join(format!(
            "snapshot-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let cp = rocksdb::checkpoint::Checkpoint::new(db.raw())?;
        // Flushes the memtables first, so the checkpoint needs no WAL.
        cp.create_checkpoint_with_log_size(&dir, 0)?;
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(Error::internal)? {
            let e = e.map_err(Error::internal)?;
            let meta = e.metadata().map_err(Error::internal)?;
            if meta.is_file() {
                files.push((e.file_name().to_string_lossy().into_owned(), meta.len()));
            }
        }
        files.sort();
        Ok(Checkpoint { dir, files })
    }

    /// Reads the checkpoint with `read`, through a read-only open that
    /// leaves its files as they were taken.
    pub fn read<T>(&self, read: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let db = Db::open_read_only(&self.dir)?;
        let result = read(&db);
        drop(db);
        // The open's info log is no part of the checkpoint.
        for e in std::fs::read_dir(&self.dir).map_err(Error::internal)? {
            let e = e.map_err(Error::internal)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("LOG") && !self.files.iter().any(|(f, _)| *f == name) {
                std::fs::remove_file(e.path()).map_err(Error::internal)?;
            }
        }
        result
    }

    /// The checkpoint's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint's files (name, length), sorted by name.
    pub fn files(&self) -> &[(String, u64)] {
        &self.files
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
