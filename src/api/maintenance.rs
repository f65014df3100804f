//! The `etcdserverpb.Maintenance` service (etcd:
//! `server/etcdserver/api/v3rpc/maintenance.go`).
//!
//! Served: Status, Alarm (see `server::alarm`), Defragment, HashKV,
//! MoveLeader and
//! Downgrade (oxcd cannot be downgraded to an older etcd). Hash and
//! Snapshot answer `Unimplemented` (docs/COMPATIBILITY.md).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::header::fill;
use crate::error::Error;
use crate::proto::etcdserverpb::downgrade_request::DowngradeAction;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, DowngradeInfo,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, ResponseHeader, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse,
};
use crate::server::{Server, alarm};
use crate::version;

pub struct MaintenanceService {
    server: Arc<Server>,
}

impl MaintenanceService {
    pub fn new(server: Arc<Server>) -> Self {
        MaintenanceService { server }
    }
}

/// The Status response of this member.
pub fn status(server: &Server) -> StatusResponse {
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
        is_learner: false,
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
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let mut resp = self.server.alarm(req.into_inner()).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status(&self.server)))
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
        Err(Status::unimplemented(
            "oxcd: Hash is not supported; use HashKV",
        ))
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

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("oxcd: Snapshot is not supported yet"))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        let raft = self.server.raft_state();
        if raft.leader != self.server.member_id() {
            return Err(Error::NotLeader.into());
        }
        // The only voting member is this one: moving leadership to it is
        // already done; anyone else is not a member.
        if target != self.server.member_id() {
            return Err(Error::BadLeaderTransferee.into());
        }
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
