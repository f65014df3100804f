//! Cluster membership (etcd: `server/etcdserver/api/membership`): member
//! and cluster ids, derived exactly as etcd derives them, and the member
//! table every member keeps in its state.
//!
//! The table changes only by applying raft entries (configuration changes
//! and member attribute updates), so every member holds the same table at
//! the same applied index; it lives in the `meta` column family next to the
//! applied index and travels inside state snapshots.

use std::sync::RwLock;

use prost::Message as _;
use sha1::{Digest, Sha1};

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::Member;
use crate::proto::oxcdpb::MemberTable;
use crate::storage::{Cf, Db};

/// The members of the cluster as of the applied index.
#[derive(Default)]
pub struct Members {
    table: RwLock<MemberTable>,
}

impl Members {
    pub fn new(table: MemberTable) -> Members {
        Members {
            table: RwLock::new(table),
        }
    }

    /// The table stored in `db`, if any.
    pub fn load(db: &Db) -> Result<Option<MemberTable>> {
        match db.get(Cf::Meta, crate::storage::schema::MEMBERS)? {
            Some(b) => Ok(Some(
                MemberTable::decode(b.as_slice()).map_err(Error::internal)?,
            )),
            None => Ok(None),
        }
    }

    /// A copy of the whole table.
    pub fn table(&self) -> MemberTable {
        self.read().clone()
    }

    /// Replaces the table (after applying a change, or a snapshot).
    pub fn set(&self, table: MemberTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemberTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every member, ordered by id.
    pub fn list(&self) -> Vec<Member> {
        sorted_members(&self.read())
    }

    pub fn get(&self, id: u64) -> Option<Member> {
        self.read().members.iter().find(|m| m.id == id).cloned()
    }

    /// Whether member `id` is a learner (without copying it).
    pub fn is_learner(&self, id: u64) -> bool {
        self.read()
            .members
            .iter()
            .any(|m| m.id == id && m.is_learner)
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.read().removed.contains(&id)
    }

    /// The peer URLs of member `id`.
    pub fn peer_urls(&self, id: u64) -> Vec<String> {
        self.get(id).map(|m| m.peer_ur_ls).unwrap_or_default()
    }
}

/// The members of `t`, ordered by id (as member lists show them).
pub fn sorted_members(t: &MemberTable) -> Vec<Member> {
    let mut v = t.members.clone();
    v.sort_by_key(|m| m.id);
    v
}

/// Whether a member other than `id` already uses one of `urls`.
pub fn peer_url_taken(t: &MemberTable, id: u64, urls: &[String]) -> bool {
    t.members
        .iter()
        .any(|o| o.id != id && o.peer_ur_ls.iter().any(|u| urls.contains(u)))
}

/// The table as bytes for the `meta` column family.
pub fn encode_table(t: &MemberTable) -> Vec<u8> {
    t.encode_to_vec()
}

/// A member's id: the first 8 bytes (big-endian) of SHA-1 over its sorted,
/// concatenated peer URLs followed by the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// The cluster id: SHA-1 over the sorted member ids, 8 bytes big-endian each.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_single_member_ids_match_etcd() {
        // etcd started with no flags logs member 8e9e05c52164694d in
        // cluster cdf818194e3a8c32.
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }

    #[test]
    fn peer_url_order_does_not_matter() {
        let a = member_id(&["http://b:2380".into(), "http://a:2380".into()], "t");
        let b = member_id(&["http://a:2380".into(), "http://b:2380".into()], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:2380".into()], "t"));
    }
}
