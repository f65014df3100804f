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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A lease facade that records what the handler asked of it.
    #[derive(Default)]
    struct FakeLeases {
        nospace: bool,
        calls: Mutex<Vec<&'static str>>,
    }

    impl FakeLeases {
        fn called(&self, what: &'static str) {
            self.calls.lock().unwrap().push(what);
        }
        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl HeaderSource for FakeLeases {
        fn header(&self) -> ResponseHeader {
            ResponseHeader {
                cluster_id: 7,
                member_id: 8,
                revision: 42,
                raft_term: 3,
            }
        }
    }

    impl LeaseApi for FakeLeases {
        fn has_leader(&self) -> bool {
            true
        }
        async fn check_quota(&self, cost: usize) -> ServerResult<()> {
            assert_eq!(cost, alarm::LEASE_OVERHEAD);
            self.called("check_quota");
            if self.nospace {
                return Err(Error::NoSpace);
            }
            Ok(())
        }
        async fn lease_grant(&self, r: LeaseGrantRequest) -> ServerResult<LeaseGrantResponse> {
            self.called("lease_grant");
            Ok(LeaseGrantResponse {
                id: r.id,
                ttl: r.ttl,
                ..Default::default()
            })
        }
        async fn lease_revoke(&self, _r: LeaseRevokeRequest) -> ServerResult<LeaseRevokeResponse> {
            self.called("lease_revoke");
            Err(Error::LeaseNotFound)
        }
        async fn lease_renew(&self, _id: i64) -> ServerResult<i64> {
            self.called("lease_renew");
            Ok(10)
        }
        async fn lease_time_to_live(
            &self,
            r: &LeaseTimeToLiveRequest,
        ) -> ServerResult<LeaseTimeToLiveResponse> {
            self.called("lease_time_to_live");
            Ok(LeaseTimeToLiveResponse {
                header: Some(ResponseHeader {
                    revision: 5,
                    ..Default::default()
                }),
                id: r.id,
                ttl: 9,
                ..Default::default()
            })
        }
        fn lease_leases(&self) -> LeaseLeasesResponse {
            self.called("lease_leases");
            LeaseLeasesResponse::default()
        }
    }

    fn service(fake: FakeLeases) -> (LeaseService<FakeLeases>, Arc<FakeLeases>) {
        let fake = Arc::new(fake);
        (LeaseService::new(fake.clone()), fake)
    }

    #[tokio::test]
    async fn a_grant_is_refused_by_the_quota_before_it_reaches_the_facade() {
        let (svc, fake) = service(FakeLeases {
            nospace: true,
            ..Default::default()
        });
        let r = LeaseGrantRequest { ttl: 5, id: 1 };
        let err = Lease::lease_grant(&svc, Request::new(r)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
        assert_eq!(fake.calls(), ["check_quota"]);

        let (svc, fake) = service(FakeLeases::default());
        let resp = Lease::lease_grant(&svc, Request::new(r))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((resp.id, resp.ttl), (1, 5));
        let h = resp.header.unwrap();
        assert_eq!(
            (h.cluster_id, h.member_id, h.raft_term, h.revision),
            (7, 8, 3, 42)
        );
        assert_eq!(fake.calls(), ["check_quota", "lease_grant"]);
    }

    #[tokio::test]
    async fn facade_errors_keep_etcds_code_and_headers_keep_the_read_revision() {
        let (svc, fake) = service(FakeLeases::default());
        let err = Lease::lease_revoke(&svc, Request::new(LeaseRevokeRequest { id: 3 }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(err.message(), "etcdserver: requested lease not found");
        let r = LeaseTimeToLiveRequest { id: 3, keys: false };
        let resp = Lease::lease_time_to_live(&svc, Request::new(r))
            .await
            .unwrap()
            .into_inner();
        let h = resp.header.unwrap();
        assert_eq!((h.member_id, h.revision), (8, 5));
        let resp = Lease::lease_leases(&svc, Request::new(LeaseLeasesRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.header.unwrap().revision, 42);
        assert_eq!(
            fake.calls(),
            ["lease_revoke", "lease_time_to_live", "lease_leases"]
        );
    }
}
