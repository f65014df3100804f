//! The `etcdserverpb.Maintenance` service (etcd:
//! `server/etcdserver/api/v3rpc/maintenance.go`).
//!
//! Served: Status, Alarm (see `server::alarm`), Defragment, HashKV,
//! MoveLeader and
//! Downgrade (oxcd cannot be downgraded to an older etcd). Hash and
//! Snapshot answer `Unimplemented` (docs/COMPATIBILITY.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::header::{HeaderSource, fill};
use crate::error::{Error, Result as ServerResult};
use crate::proto::etcdserverpb::downgrade_request::DowngradeAction;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeInfo, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, ResponseHeader, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::server::{RaftState, alarm};
use crate::snapshot::{self, Archive as _};
use crate::version;

/// What the Maintenance service needs of the server:
/// [`crate::server::Maintenance`], or a fake in tests.
pub trait MaintenanceApi: HeaderSource + Send + Sync + 'static {
    fn raft_state(&self) -> RaftState;
    /// Backend bytes in all and in use.
    fn db_sizes(&self) -> (u64, u64);
    fn is_learner(&self) -> bool;
    fn quota_bytes(&self) -> i64;
    /// The active alarms of type `alarm` (every one for NONE).
    fn alarms(&self, alarm: i32) -> Vec<AlarmMember>;
    fn alarm(&self, r: AlarmRequest) -> impl Future<Output = ServerResult<AlarmResponse>> + Send;
    fn defragment(&self) -> impl Future<Output = ServerResult<()>> + Send;
    fn hash_all(&self) -> ServerResult<(u32, i64)>;
    fn hash_kv(&self, rev: i64) -> ServerResult<crate::mvcc::KvHash>;
    /// A checkpoint of the backend to stream as a snapshot.
    fn checkpoint(&self) -> ServerResult<crate::storage::Checkpoint>;
    fn move_leader(&self, target: u64) -> impl Future<Output = ServerResult<()>> + Send;
}

impl MaintenanceApi for crate::server::Maintenance {
    fn raft_state(&self) -> RaftState {
        crate::server::Maintenance::raft_state(self)
    }
    fn db_sizes(&self) -> (u64, u64) {
        crate::server::Maintenance::db_sizes(self)
    }
    fn is_learner(&self) -> bool {
        self.core().is_learner()
    }
    fn quota_bytes(&self) -> i64 {
        crate::server::Maintenance::quota_bytes(self)
    }
    fn alarms(&self, alarm: i32) -> Vec<AlarmMember> {
        crate::server::Maintenance::alarms(self, alarm)
    }
    async fn alarm(&self, r: AlarmRequest) -> ServerResult<AlarmResponse> {
        crate::server::Maintenance::alarm(self, r).await
    }
    async fn defragment(&self) -> ServerResult<()> {
        crate::server::Maintenance::defragment(self).await
    }
    fn hash_all(&self) -> ServerResult<(u32, i64)> {
        crate::server::Maintenance::hash_all(self)
    }
    fn hash_kv(&self, rev: i64) -> ServerResult<crate::mvcc::KvHash> {
        crate::server::Maintenance::hash_kv(self, rev)
    }
    fn checkpoint(&self) -> ServerResult<crate::storage::Checkpoint> {
        crate::server::Maintenance::checkpoint(self)
    }
    async fn move_leader(&self, target: u64) -> ServerResult<()> {
        crate::server::Maintenance::move_leader(self, target).await
    }
}

pub struct MaintenanceService<M = crate::server::Maintenance> {
    server: Arc<M>,
}

impl<M: MaintenanceApi> MaintenanceService<M> {
    pub fn new(server: Arc<M>) -> Self {
        MaintenanceService { server }
    }
}

/// The Status response of this member.
pub fn status(server: &impl MaintenanceApi) -> StatusResponse {
    let raft = server.raft_state();
    let (db_size, in_use) = server.db_sizes();
    let mut errors = Vec::new();
    if raft.leader == 0 {
        errors.push(Error::NoLeader.message().to_string());
    }
    for a in server.alarms(AlarmType::None as i32) {
        errors.push(alarm::describe(&a));
    }
    let mut header = None;
    fill(server, &mut header);
    StatusResponse {
        header,
        version: version::ETCD_API_VERSION.to_string(),
        db_size: i64::try_from(db_size).unwrap_or(i64::MAX),
        leader: raft.leader,
        raft_index: raft.commit,
        raft_term: raft.term,
        raft_applied_index: raft.applied,
        errors,
        db_size_in_use: i64::try_from(in_use).unwrap_or(i64::MAX),
        is_learner: server.is_learner(),
        storage_version: version::STORAGE_VERSION.to_string(),
        db_size_quota: server.quota_bytes(),
        downgrade_info: Some(DowngradeInfo {
            enabled: false,
            target_version: String::new(),
        }),
    }
}

/// etcd's reading of a downgrade target: `major.minor` or a full semver,
/// reduced to `major.minor.0`.
fn downgrade_target(v: &str) -> Option<(u64, u64)> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if !(2..=3).contains(&parts.len()) || v.len() != core.len() && parts.len() != 3 {
        return None;
    }
    let mut nums = Vec::new();
    for p in &parts {
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return None;
        }
        nums.push(p.parse::<u64>().ok()?);
    }
    Some((nums[0], nums[1]))
}

type Snapshots = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<M: MaintenanceApi> Maintenance for MaintenanceService<M> {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let mut resp = self.server.alarm(req.into_inner()).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status(&*self.server)))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        tracing::info!("starting defragment");
        self.server.defragment().await?;
        tracing::info!("finished defragment");
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let (hash, rev) = self.server.hash_all()?;
        let mut header = Some(ResponseHeader {
            revision: rev,
            ..Default::default()
        });
        fill(&self.server, &mut header);
        Ok(Response::new(HashResponse { header, hash }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let rev = req.into_inner().revision;
        let h = self.server.hash_kv(rev)?;
        let mut header = Some(ResponseHeader {
            revision: h.current_rev,
            ..Default::default()
        });
        fill(&self.server, &mut header);
        Ok(Response::new(HashKvResponse {
            header,
            hash: h.hash,
            compact_revision: h.compact_rev,
            hash_revision: h.hash_rev,
        }))
    }

    type SnapshotStream = Snapshots;

    /// Streams a checkpoint of the database as etcd streams its bbolt
    /// file: 32 KiB blobs with the bytes still to come, then the SHA-256
    /// of everything sent (see `snapshot`).
    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let server = self.server.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let sent = send_snapshot(&*server, &tx);
            if let Err(e) = sent {
                tracing::warn!(error = %e, "sending a snapshot failed");
                let _ = tx.blocking_send(Err(Status::from(e)));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        self.server.move_leader(target).await?;
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }

    async fn downgrade(
        &self,
        req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        let r = req.into_inner();
        let cluster = format!("{}.0", cluster_minor());
        let action = DowngradeAction::try_from(r.action)
            .map_err(|_| Status::from(Error::Internal("etcdserver: unknown method".into())))?;
        match action {
            DowngradeAction::Validate | DowngradeAction::Enable => {
                if downgrade_target(&r.version).is_none() {
                    return Err(Error::WrongDowngradeVersionFormat.into());
                }
                // oxcd's data cannot be handed to an older etcd.
                Err(Error::InvalidDowngradeTargetVersion.into())
            }
            // etcd answers a cancel without a job in progress with the
            // cluster version (it only logs the error).
            DowngradeAction::Cancel => {
                let mut resp = DowngradeResponse {
                    header: None,
                    version: cluster,
                };
                fill(&self.server, &mut resp.header);
                Ok(Response::new(resp))
            }
        }
    }
}

type SnapshotSender = tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>;

fn send_snapshot(server: &impl MaintenanceApi, tx: &SnapshotSender) -> crate::error::Result<()> {
    let cp = server.checkpoint()?;
    let total = cp.archive_len();
    tracing::info!(total_bytes = total, "sending database snapshot to client");
    let mut w = ChunkWriter {
        tx,
        buf: Vec::with_capacity(snapshot::CHUNK),
        sent: 0,
        total,
        hash: snapshot::hasher(),
    };
    cp.write_archive(&mut w)?;
    w.send_buffered().map_err(Error::internal)?;
    let sha = sha2::Digest::finalize(w.hash).to_vec();
    tx.blocking_send(Ok(SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: sha.into(),
        version: version::STORAGE_VERSION.to_string(),
    }))
    .map_err(|_| Error::internal("client went away"))?;
    tracing::info!(total_bytes = total, "sent database snapshot to client");
    Ok(())
}

/// Cuts the archive into `SnapshotResponse` blobs as it is written.
struct ChunkWriter<'a> {
    tx: &'a SnapshotSender,
    buf: Vec<u8>,
    sent: u64,
    total: u64,
    hash: sha2::Sha256,
}

impl ChunkWriter<'_> {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(snapshot::CHUNK));
        sha2::Digest::update(&mut self.hash, &blob);
        self.sent += blob.len() as u64;
        self.tx
            .blocking_send(Ok(SnapshotResponse {
                header: None,
                remaining_bytes: self.total.saturating_sub(self.sent),
                blob: blob.into(),
                version: version::STORAGE_VERSION.to_string(),
            }))
            .map_err(|_| std::io::Error::other("client went away"))
    }
}

impl std::io::Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(snapshot::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == snapshot::CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `major.minor` of the cluster version reported.
fn cluster_minor() -> String {
    let mut it = version::ETCD_CLUSTER_VERSION.split('.');
    format!("{}.{}", it.next().unwrap_or("3"), it.next().unwrap_or("6"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_targets_parse_like_etcd() {
        assert_eq!(downgrade_target("3.5"), Some((3, 5)));
        assert_eq!(downgrade_target("3.5.7"), Some((3, 5)));
        assert_eq!(downgrade_target("3.5.0-rc.1"), Some((3, 5)));
        for bad in ["", "3", "v3.5", "3.5.", "3.x", "03.5", "3.5.1.2", "3.5-rc"] {
            assert_eq!(downgrade_target(bad), None, "{bad:?}");
        }
        assert_eq!(cluster_minor(), "3.6");
    }
}
