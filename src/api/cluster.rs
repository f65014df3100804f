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

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::header::{HeaderSource, fill_without_revision};
use crate::error::{Error, Result as ServerResult};
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

/// What the Cluster service needs of the server:
/// [`crate::server::Membership`], or a fake in tests.
pub trait ClusterApi: HeaderSource + Send + Sync + 'static {
    /// `--strict-reconfig-check`.
    fn strict_reconfig_check(&self) -> bool;
    /// The leader's peer URLs, when another member leads.
    fn leader_peer_urls(&self) -> Option<Vec<String>>;
    /// A channel to the leader's peer port.
    fn leader_channel(
        &self,
    ) -> impl Future<Output = ServerResult<tonic::transport::Channel>> + Send;
    fn read_barrier(&self) -> impl Future<Output = ServerResult<()>> + Send;
    fn members(&self) -> Vec<Member>;
    fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> impl Future<Output = ServerResult<(Member, Vec<Member>)>> + Send;
    fn member_remove(&self, id: u64) -> impl Future<Output = ServerResult<Vec<Member>>> + Send;
    fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> impl Future<Output = ServerResult<Vec<Member>>> + Send;
    fn member_promote(&self, id: u64) -> impl Future<Output = ServerResult<Vec<Member>>> + Send;
}

impl ClusterApi for crate::server::Membership {
    fn strict_reconfig_check(&self) -> bool {
        self.core().config().strict_reconfig_check
    }
    fn leader_peer_urls(&self) -> Option<Vec<String>> {
        crate::server::Membership::leader_peer_urls(self)
    }
    async fn leader_channel(&self) -> ServerResult<tonic::transport::Channel> {
        self.leader().channel().await
    }
    async fn read_barrier(&self) -> ServerResult<()> {
        self.core().read_barrier().await
    }
    fn members(&self) -> Vec<Member> {
        crate::server::Membership::members(self)
    }
    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> ServerResult<(Member, Vec<Member>)> {
        crate::server::Membership::member_add(self, peer_urls, is_learner).await
    }
    async fn member_remove(&self, id: u64) -> ServerResult<Vec<Member>> {
        crate::server::Membership::member_remove(self, id).await
    }
    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> ServerResult<Vec<Member>> {
        crate::server::Membership::member_update(self, id, peer_urls).await
    }
    async fn member_promote(&self, id: u64) -> ServerResult<Vec<Member>> {
        crate::server::Membership::member_promote(self, id).await
    }
}

pub struct ClusterService<C = crate::server::Membership> {
    server: Arc<C>,
}

impl<C: ClusterApi> ClusterService<C> {
    pub fn new(server: Arc<C>) -> Self {
        ClusterService { server }
    }

    /// A client of the leader's Cluster service, for what only the leader
    /// decides well: promotion (learner progress) and, with
    /// `--strict-reconfig-check`, adding and removing members (which
    /// members are connected).
    async fn leader_client(&self) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        Ok(ClusterClient::new(self.server.leader_channel().await?))
    }

    /// Whether to send this request on to the leader: not when it already
    /// was forwarded once (leaders may disagree for a moment), nor from
    /// the leader itself.
    fn forward<T>(&self, req: &Request<T>, strict_only: bool) -> bool {
        if strict_only && !self.server.strict_reconfig_check() {
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
impl<C: ClusterApi> Cluster for ClusterService<C> {
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
