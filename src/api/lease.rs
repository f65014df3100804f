//! The `etcdserverpb.Lease` service (etcd: `server/etcdserver/api/v3rpc/lease.go`).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::header::fill;
use crate::error::Error;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use crate::server::{Server, alarm};

pub struct LeaseService {
    server: Arc<Server>,
}

impl LeaseService {
    pub fn new(server: Arc<Server>) -> Self {
        LeaseService { server }
    }
}

type KeepAlives = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
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
