//! Every column family and every key oxcd writes to RocksDB, named in one
//! place (etcd: `server/storage/schema`).
//!
//! | CF          | key                                   | value                          |
//! |-------------|---------------------------------------|--------------------------------|
//! | `raft_log`  | log index, u64 big-endian             | encoded raft `Entry`           |
//! | `raft_meta` | [`raft_meta`] names                   | hard state, conf state, ...    |
//! | `kv`        | escaped user key + inverted revision  | one version of a key           |
//! | `rev`       | revision (main, sub) big-endian       | event kind + user key          |
//! | `meta`      | [`meta_key`] names, [`MEMBERS`], [`alarm`] keys | applied index, revisions, ids, members, alarms |
//! | `lease`     | [`lease`] keys: `L` + id / `K` + id + user key | lease TTLs / attached keys |
//!
//! The `kv` and `rev` encodings are composite keys; `mvcc::key` encodes and
//! decodes them.

/// The column families, in one place so no name is spelled twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    RaftLog,
    RaftMeta,
    Kv,
    Rev,
    Meta,
    Lease,
}

impl Cf {
    pub const ALL: [Cf; 6] = [
        Cf::RaftLog,
        Cf::RaftMeta,
        Cf::Kv,
        Cf::Rev,
        Cf::Meta,
        Cf::Lease,
    ];

    /// The column families of the state machine (not the raft log).
    pub const STATE: [Cf; 4] = [Cf::Kv, Cf::Rev, Cf::Meta, Cf::Lease];

    pub fn name(self) -> &'static str {
        match self {
            Cf::RaftLog => "raft_log",
            Cf::RaftMeta => "raft_meta",
            Cf::Kv => "kv",
            Cf::Rev => "rev",
            Cf::Meta => "meta",
            Cf::Lease => "lease",
        }
    }
}

/// Names of the fixed keys in the `meta` column family.
pub mod meta_key {
    /// Index of the last raft entry whose effects are in the state CFs.
    pub const APPLIED_INDEX: &[u8] = b"applied_index";
    /// Term of that entry.
    pub const APPLIED_TERM: &[u8] = b"applied_term";
    /// The MVCC store's current revision.
    pub const CURRENT_REV: &[u8] = b"current_rev";
    /// The revision of the last compaction applied (logical).
    pub const COMPACT_REV: &[u8] = b"compact_rev";
    /// The revision up to which old versions have been physically removed.
    pub const COMPACT_FINISHED_REV: &[u8] = b"compact_finished_rev";
    /// This member's id and the cluster id, fixed at first start.
    pub const MEMBER_ID: &[u8] = b"member_id";
    pub const CLUSTER_ID: &[u8] = b"cluster_id";
}

/// Names of the fixed keys in the `raft_meta` column family.
pub mod raft_meta {
    /// raft's hard state (term, vote, commit).
    pub const HARD_STATE: &[u8] = b"hard_state";
    /// The raft configuration (voters, learners).
    pub const CONF_STATE: &[u8] = b"conf_state";
    /// Index and term of the last entry removed from the log (or 0, 0).
    pub const TRUNCATED: &[u8] = b"truncated";
}

/// Where the member table lives in the `meta` column family.
pub const MEMBERS: &[u8] = b"members";

/// Alarms in the `meta` column family: [`alarm::KEY_PREFIX`], the member id
/// (8 bytes big-endian), the alarm type (4 bytes big-endian).
pub mod alarm {
    pub const KEY_PREFIX: &[u8] = b"alarm/";

    pub fn key(member: u64, alarm: i32) -> Vec<u8> {
        let mut k = KEY_PREFIX.to_vec();
        k.extend_from_slice(&member.to_be_bytes());
        k.extend_from_slice(&alarm.to_be_bytes());
        k
    }

    pub fn parse_key(k: &[u8]) -> Option<(u64, i32)> {
        let rest = k.strip_prefix(KEY_PREFIX)?;
        if rest.len() != 12 {
            return None;
        }
        let member = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let alarm = i32::from_be_bytes(rest[8..].try_into().ok()?);
        Some((member, alarm))
    }
}

/// Prefixes of the `lease` column family.
pub mod lease {
    /// `L` + id (8 bytes BE) → granted TTL (8 BE) + remaining TTL (8 BE).
    pub const LEASE: u8 = b'L';
    /// `K` + id (8 bytes BE) + user key → empty: the key is attached.
    pub const ATTACHED: u8 = b'K';

    pub fn lease(id: i64) -> Vec<u8> {
        let mut k = vec![LEASE];
        k.extend_from_slice(&(id as u64).to_be_bytes());
        k
    }

    pub fn attached_prefix(id: i64) -> Vec<u8> {
        let mut k = vec![ATTACHED];
        k.extend_from_slice(&(id as u64).to_be_bytes());
        k
    }

    pub fn attached(id: i64, key: &[u8]) -> Vec<u8> {
        let mut k = attached_prefix(id);
        k.extend_from_slice(key);
        k
    }

    pub fn encode_record(ttl: i64, remaining: i64) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&(ttl as u64).to_be_bytes());
        v.extend_from_slice(&(remaining as u64).to_be_bytes());
        v
    }

    pub fn decode_record(v: &[u8]) -> Option<(i64, i64)> {
        let ttl = u64::from_be_bytes(v.get(..8)?.try_into().ok()?) as i64;
        let remaining = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?) as i64;
        Some((ttl, remaining))
    }

    pub fn decode_id(k: &[u8]) -> Option<i64> {
        Some(u64::from_be_bytes(k.get(1..9)?.try_into().ok()?) as i64)
    }
}
