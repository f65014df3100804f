//! The `etcdserverpb.Lease` service (etcd: `server/etcdserver/api/v3rpc/lease.go`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::header::{HeaderSource, fill};
use crate::error::{Error, Result as ServerResult};
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use crate::server::alarm;

/// What the Lease service needs of the server: [`crate::server::Leases`],
/// or a fake in tests.
pub trait LeaseApi: HeaderSource + Send + Sync + 'static {
    fn has_leader(&self) -> bool;
    /// The quota check before a write that costs `cost` bytes.
    fn check_quota(&self, cost: usize) -> impl Future<Output = ServerResult<()>> + Send;
    fn lease_grant(
        &self,
        r: LeaseGrantRequest,
    ) -> impl Future<Output = ServerResult<LeaseGrantResponse>> + Send;
    fn lease_revoke(
        &self,
        r: LeaseRevokeRequest,
    ) -> impl Future<Output = ServerResult<LeaseRevokeResponse>> + Send;
    /// One keep-alive: the lease's granted TTL.
    fn lease_renew(&self, id: i64) -> impl Future<Output = ServerResult<i64>> + Send;
    fn lease_time_to_live(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> impl Future<Output = ServerResult<LeaseTimeToLiveResponse>> + Send;
    fn lease_leases(&self) -> LeaseLeasesResponse;
}

impl LeaseApi for crate::server::Leases {
    fn has_leader(&self) -> bool {
        self.core().has_leader()
    }
    async fn check_quota(&self, cost: usize) -> ServerResult<()> {
        crate::server::Leases::check_quota(self, cost).await
    }
    async fn lease_grant(&self, r: LeaseGrantRequest) -> ServerResult<LeaseGrantResponse> {
        crate::server::Leases::lease_grant(self, r).await
    }
    async fn lease_revoke(&self, r: LeaseRevokeRequest) -> ServerResult<LeaseRevokeResponse> {
        crate::server::Leases::lease_revoke(self, r).await
    }
    async fn lease_renew(&self, id: i64) -> ServerResult<i64> {
        crate::server::Leases::lease_renew(self, id).await
    }
    async fn lease_time_to_live(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> ServerResult<LeaseTimeToLiveResponse> {
        crate::server::Leases::lease_time_to_live(self, r).await
    }
    fn lease_leases(&self) -> LeaseLeasesResponse {
        crate::server::Leases::lease_leases(self)
    }
}

pub struct LeaseService<L = crate::server::Leases> {
    server: Arc<L>,
}

impl<L: LeaseApi> LeaseService<L> {
    pub fn new(server: Arc<L>) -> Self {
        LeaseService { server }
    }
}

type KeepAlives = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<L: LeaseApi> Lease for LeaseService<L> {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.server.check_quota(alarm::LEASE_OVERHEAD).await?;
        let mut resp = self.server.lease_grant(req.into_inner()).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let mut resp = self.server.lease_revoke(req.into_inner()).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = KeepAlives;

    /// One response per request, in order. A lease that is gone gets
    /// TTL 0, not an error; other errors end the stream.
    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        if super::watch::requires_leader(&req) && !self.server.has_leader() {
            return Err(Error::NoLeader.into());
        }
        let mut inbound = req.into_inner();
        let server = self.server.clone();
        let out = async_stream::try_stream! {
            while let Some(r) = inbound.message().await? {
                // etcd fills the header before renewing.
                let mut header: Option<ResponseHeader> = None;
                fill(&server, &mut header);
                let ttl = match server.lease_renew(r.id).await {
                    Ok(ttl) => ttl,
                    Err(Error::LeaseNotFound) => 0,
                    Err(e) => Err(Status::from(e))?,
                };
                yield LeaseKeepAliveResponse { header, id: r.id, ttl };
            }
        };
        Ok(Response::new(Box::pin(out) as KeepAlives))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let mut resp = self.server.lease_time_to_live(req.get_ref()).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let mut resp = self.server.lease_leases();
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }
}
