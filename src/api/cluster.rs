//! The `etcdserverpb.Cluster` service (etcd:
//! `server/etcdserver/api/v3rpc/member.go`).
//!
//! Served: MemberList. Membership changes (MemberAdd, MemberRemove,
//! MemberUpdate, MemberPromote) answer `Unimplemented` until multi-member
//! clusters land (docs/COMPATIBILITY.md).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::header::fill_without_revision;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::Server;

pub struct ClusterService {
    server: Arc<Server>,
}

impl ClusterService {
    pub fn new(server: Arc<Server>) -> Self {
        ClusterService { server }
    }
}

fn membership_unsupported() -> Status {
    Status::unimplemented("oxcd: membership changes are not supported yet")
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(membership_unsupported())
    }

    async fn member_remove(
        &self,
        _req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(membership_unsupported())
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(membership_unsupported())
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.server.read_barrier().await?;
        }
        let mut resp = MemberListResponse {
            header: None,
            members: vec![self.server.member()],
        };
        // etcd's member responses carry no revision.
        fill_without_revision(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn member_promote(
        &self,
        _req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(membership_unsupported())
    }
}
