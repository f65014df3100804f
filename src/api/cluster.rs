//! The `etcdserverpb.Cluster` service (etcd:
//! `server/etcdserver/api/v3rpc/member.go`).
//!
//! MemberPromote runs on the leader (learner progress is known only
//! there), and so do MemberAdd and MemberRemove with
//! `--strict-reconfig-check` (the leader knows which members are
//! connected): another member forwards them, once, to the leader's peer
//! port, which serves this service too (etcd forwards promotions over the
//! peer port and checks the others locally, knowing every peer's
//! connection).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::header::fill_without_revision;
use crate::error::Error;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
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

    /// A client of the leader's Cluster service, for what only the leader
    /// decides well: promotion (learner progress) and, with
    /// `--strict-reconfig-check`, adding and removing members (which
    /// members are connected).
    async fn leader_client(&self) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        Ok(ClusterClient::new(self.server.leader().channel().await?))
    }

    /// Whether to send this request on to the leader: not when it already
    /// was forwarded once (leaders may disagree for a moment), nor from
    /// the leader itself.
    fn forward<T>(&self, req: &Request<T>, strict_only: bool) -> bool {
        if strict_only && !self.server.config().strict_reconfig_check {
            return false;
        }
        req.metadata().get(FORWARDED).is_none() && self.server.leader_peer_urls().is_some()
    }
}

/// Marks a request forwarded to the leader.
const FORWARDED: &str = "oxcd-forwarded";

fn forwarded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        if self.forward(&req, true) {
            let mut c = self.leader_client().await?;
            return c.member_add(forwarded(req.into_inner())).await;
        }
        let r = req.into_inner();
        let (member, members) = self.server.member_add(r.peer_ur_ls, r.is_learner).await?;
        let mut resp = MemberAddResponse {
            header: None,
            member: Some(member),
            members,
        };
        fill_without_revision(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        if self.forward(&req, true) {
            let mut c = self.leader_client().await?;
            return c.member_remove(forwarded(req.into_inner())).await;
        }
        let members = self.server.member_remove(req.into_inner().id).await?;
        let mut resp = MemberRemoveResponse {
            header: None,
            members,
        };
        fill_without_revision(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        let members = self.server.member_update(r.id, r.peer_ur_ls).await?;
        let mut resp = MemberUpdateResponse {
            header: None,
            members,
        };
        fill_without_revision(&self.server, &mut resp.header);
        Ok(Response::new(resp))
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
            members: self.server.members(),
        };
        // etcd's member responses carry no revision.
        fill_without_revision(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let forward = self.forward(&req, false);
        let id = req.into_inner().id;
        match self.server.member_promote(id).await {
            Ok(members) => {
                let mut resp = MemberPromoteResponse {
                    header: None,
                    members,
                };
                fill_without_revision(&self.server, &mut resp.header);
                Ok(Response::new(resp))
            }
            Err(Error::NotLeader) if forward => {
                let mut c = self.leader_client().await?;
                c.member_promote(forwarded(MemberPromoteRequest { id }))
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }
}
