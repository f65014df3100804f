//! The data directory at start-up: leftovers of a crash are removed, and a
//! member's identity and raft log are opened, or created from the flags at
//! the first start (etcd: `bootstrap.go`).

use std::sync::Arc;

use crate::cluster::{self, Members};
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::raft::RaftStorage;
use crate::storage::{Db, meta_key};

/// Removes snapshot checkpoints a crash left behind.
pub fn remove_leftover_checkpoints(member_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(member_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("snapshot-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Opens this member's raft log, or creates it at the first start: for a
/// new cluster, from `--initial-cluster` (member ids derived as etcd
/// derives them); for `--initial-cluster-state existing`, from the member
/// table of the running cluster, which must already list this member's peer
/// URLs (`member add`). Returns the member id, the cluster id and the log.
pub async fn open_or_bootstrap(
    db: &Arc<Db>,
    cfg: &ServerConfig,
) -> Result<(u64, u64, RaftStorage)> {
    use crate::proto::etcdserverpb::Member;
    use crate::proto::oxcdpb::MemberTable;
    use crate::storage::Cf;
    if let Some(mut storage) = RaftStorage::open(db.clone())? {
        let (Some(m), Some(c)) = (
            db.get_u64(Cf::Meta, meta_key::MEMBER_ID)?,
            db.get_u64(Cf::Meta, meta_key::CLUSTER_ID)?,
        ) else {
            return Err(Error::internal(
                "data directory has a raft log but no member id",
            ));
        };
        if Members::load(db)?.is_none() {
            // A data directory from before the member table existed: it
            // was a one-member cluster.
            let table = MemberTable {
                members: vec![Member {
                    id: m,
                    name: cfg.name.clone(),
                    peer_ur_ls: cfg.initial_advertise_peer_urls.clone(),
                    client_ur_ls: Vec::new(),
                    is_learner: false,
                }],
                removed: Vec::new(),
            };
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(
                db.cf(Cf::Meta),
                crate::storage::schema::MEMBERS,
                cluster::encode_table(&table),
            );
            db.write_synced(wb)?;
        }
        if storage.first_index() <= 1 {
            // A log that still starts at index 1 (from before new clusters
            // started after it) lacks the bootstrap configuration: drop
            // what is applied, so that a member added later is always sent
            // a snapshot, never this log.
            let applied = db.get_u64(Cf::Meta, meta_key::APPLIED_INDEX)?.unwrap_or(0);
            storage.compact(applied)?;
        }
        return Ok((m, c, storage));
    }
    let mut mine = cfg.initial_advertise_peer_urls.clone();
    mine.sort();
    if cfg.join_existing {
        let others: Vec<String> = cfg
            .initial_cluster
            .iter()
            .filter(|(n, u)| *n != cfg.name && !mine.contains(u))
            .map(|(_, u)| u.clone())
            .collect();
        let remote = crate::peer::fetch_members(&others).await.map_err(|e| {
            Error::internal(format!("cannot fetch cluster info from peer urls: {e}"))
        })?;
        let me = remote
            .members
            .iter()
            .find(|m| {
                let mut u = m.peer_ur_ls.clone();
                u.sort();
                u == mine
            })
            .ok_or_else(|| {
                Error::internal(format!(
                    "error validating peerURLs: member with peer URLs {} is not in the cluster (add it with 'member add' first)",
                    mine.join(",")
                ))
            })?;
        let member_id = me.id;
        let table = MemberTable {
            members: remote.members.clone(),
            removed: Vec::new(),
        };
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::MEMBER_ID,
            member_id.to_be_bytes(),
        );
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::CLUSTER_ID,
            remote.cluster_id.to_be_bytes(),
        );
        wb.put_cf(
            db.cf(Cf::Meta),
            crate::storage::schema::MEMBERS,
            cluster::encode_table(&table),
        );
        db.write_synced(wb)?;
        let storage = RaftStorage::bootstrap_joining(db.clone())?;
        return Ok((member_id, remote.cluster_id, storage));
    }
    // A new cluster: every member from --initial-cluster, grouped by name.
    let mut members: Vec<Member> = Vec::new();
    for (name, url) in &cfg.initial_cluster {
        match members.iter_mut().find(|m| m.name == *name) {
            Some(m) => m.peer_ur_ls.push(url.clone()),
            None => members.push(Member {
                name: name.clone(),
                peer_ur_ls: vec![url.clone()],
                ..Default::default()
            }),
        }
    }
    for m in &mut members {
        m.id = cluster::member_id(&m.peer_ur_ls, &cfg.initial_cluster_token);
    }
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let member_id = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .ok_or_else(|| {
            Error::internal(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            ))
        })?;
    let cluster_id = cluster::cluster_id(&ids);
    // The log starts after index 1, which counts as applied: a member added
    // later then always starts from a snapshot of the state (which holds
    // this configuration), never from a log that lacks it.
    let table = MemberTable {
        members,
        removed: Vec::new(),
    };
    let mut wb = rocksdb::WriteBatch::default();
    let meta = db.cf(Cf::Meta);
    wb.put_cf(meta, meta_key::MEMBER_ID, member_id.to_be_bytes());
    wb.put_cf(meta, meta_key::CLUSTER_ID, cluster_id.to_be_bytes());
    wb.put_cf(
        meta,
        crate::storage::schema::MEMBERS,
        cluster::encode_table(&table),
    );
    wb.put_cf(meta, meta_key::APPLIED_INDEX, 1u64.to_be_bytes());
    wb.put_cf(meta, meta_key::APPLIED_TERM, 1u64.to_be_bytes());
    db.write_synced(wb)?;
    let storage = RaftStorage::bootstrap_after(db.clone(), ids, 1)?;
    Ok((member_id, cluster_id, storage))
}
