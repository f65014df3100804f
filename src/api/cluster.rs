//! The `etcdserverpb.Cluster` service (etcd:
//! `server/etcdserver/api/v3rpc/member.go`).
//!
//! MemberPromote runs on the leader (learner progress is known only
//! there): another member forwards it to the leader's client URL, as etcd
//! forwards it over the peer port.

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

    /// Sends MemberPromote to the leader.
    async fn forward_promote(&self, id: u64) -> Result<MemberPromoteResponse, Status> {
        let urls = self
            .server
            .leader_client_urls()
            .ok_or_else(|| Status::from(Error::NoLeader))?;
        let mut last = Status::from(Error::NoLeader);
        for url in urls {
            let Ok(ep) = tonic::transport::Endpoint::from_shared(url) else {
                continue;
            };
            let ep = ep.connect_timeout(std::time::Duration::from_secs(2));
            match ep.connect().await {
                Ok(ch) => {
                    return ClusterClient::new(ch)
                        .member_promote(MemberPromoteRequest { id })
                        .await
                        .map(Response::into_inner);
                }
                Err(e) => last = Status::unavailable(format!("forwarding to the leader: {e}")),
            }
        }
        Err(last)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
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
            Err(Error::NotLeader) => Ok(Response::new(self.forward_promote(id).await?)),
            Err(e) => Err(e.into()),
        }
    }
}
