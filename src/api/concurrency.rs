//! The `v3lockpb.Lock` and `v3electionpb.Election` services (etcd:
//! `server/etcdserver/api/v3lock`, `v3election`); the recipes themselves
//! are in `server::concurrency`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::header::{HeaderSource, fill};
use crate::error::{Error, Result as ServerResult};
use crate::proto::etcdserverpb::{DeleteRangeResponse, ResponseHeader};
use crate::proto::mvccpb::KeyValue;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::concurrency::Held;

/// What the Lock and Election services need of the server:
/// [`crate::server::Recipes`], or a fake in tests.
pub trait RecipesApi: HeaderSource + Send + Sync + 'static {
    fn lock(&self, name: &[u8], lease: i64) -> impl Future<Output = ServerResult<Held>> + Send;
    fn unlock(
        &self,
        key: bytes::Bytes,
    ) -> impl Future<Output = ServerResult<DeleteRangeResponse>> + Send;
    fn campaign(
        &self,
        name: &[u8],
        lease: i64,
        value: &bytes::Bytes,
    ) -> impl Future<Output = ServerResult<Held>> + Send;
    fn proclaim(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &bytes::Bytes,
    ) -> impl Future<Output = ServerResult<Option<ResponseHeader>>> + Send;
    fn resign(
        &self,
        key: &[u8],
        rev: i64,
    ) -> impl Future<Output = ServerResult<Option<ResponseHeader>>> + Send;
    fn election_leader(
        &self,
        name: &[u8],
    ) -> impl Future<Output = ServerResult<(Option<ResponseHeader>, KeyValue)>> + Send;
    fn observe(
        self: Arc<Self>,
        name: Vec<u8>,
    ) -> impl Stream<Item = ServerResult<(Option<ResponseHeader>, KeyValue)>> + Send + 'static;
}

impl RecipesApi for crate::server::Recipes {
    async fn lock(&self, name: &[u8], lease: i64) -> ServerResult<Held> {
        crate::server::Recipes::lock(self, name, lease).await
    }
    async fn unlock(&self, key: bytes::Bytes) -> ServerResult<DeleteRangeResponse> {
        crate::server::Recipes::unlock(self, key).await
    }
    async fn campaign(&self, name: &[u8], lease: i64, value: &bytes::Bytes) -> ServerResult<Held> {
        crate::server::Recipes::campaign(self, name, lease, value).await
    }
    async fn proclaim(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &bytes::Bytes,
    ) -> ServerResult<Option<ResponseHeader>> {
        crate::server::Recipes::proclaim(self, key, rev, lease, value).await
    }
    async fn resign(&self, key: &[u8], rev: i64) -> ServerResult<Option<ResponseHeader>> {
        crate::server::Recipes::resign(self, key, rev).await
    }
    async fn election_leader(
        &self,
        name: &[u8],
    ) -> ServerResult<(Option<ResponseHeader>, KeyValue)> {
        crate::server::Recipes::election_leader(self, name).await
    }
    fn observe(
        self: Arc<Self>,
        name: Vec<u8>,
    ) -> impl Stream<Item = ServerResult<(Option<ResponseHeader>, KeyValue)>> + Send + 'static {
        crate::server::Recipes::observe(self, name)
    }
}

pub struct LockService<R = crate::server::Recipes> {
    server: Arc<R>,
}

impl<R: RecipesApi> LockService<R> {
    pub fn new(server: Arc<R>) -> Self {
        LockService { server }
    }
}

#[tonic::async_trait]
impl<R: RecipesApi> Lock for LockService<R> {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let r = req.into_inner();
        let held = self.server.lock(&r.name, r.lease).await?;
        let mut header = held.header;
        fill(&self.server, &mut header);
        Ok(Response::new(LockResponse {
            header,
            key: held.key.into(),
        }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let r = req.into_inner();
        let mut resp = self.server.unlock(r.key).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

pub struct ElectionService<R = crate::server::Recipes> {
    server: Arc<R>,
}

impl<R: RecipesApi> ElectionService<R> {
    pub fn new(server: Arc<R>) -> Self {
        ElectionService { server }
    }
}

type Leaders = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<R: RecipesApi> Election for ElectionService<R> {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let r = req.into_inner();
        let held = self.server.campaign(&r.name, r.lease, &r.value).await?;
        let mut header = held.header;
        fill(&self.server, &mut header);
        Ok(Response::new(CampaignResponse {
            header,
            leader: Some(LeaderKey {
                name: r.name,
                key: held.key.into(),
                rev: held.rev,
                lease: held.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let r = req.into_inner();
        let l = r.leader.ok_or(Error::MissingLeaderKey)?;
        let mut header = self
            .server
            .proclaim(&l.key, l.rev, l.lease, &r.value)
            .await?;
        fill(&self.server, &mut header);
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let (mut header, kv) = self.server.election_leader(&req.get_ref().name).await?;
        fill(&self.server, &mut header);
        Ok(Response::new(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = Leaders;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let server = self.server.clone();
        let name = req.into_inner().name.to_vec();
        let stream = server.clone().observe(name).map(move |r| {
            let (mut header, kv) = r?;
            fill(&server, &mut header);
            Ok(LeaderResponse {
                header,
                kv: Some(kv),
            })
        });
        Ok(Response::new(Box::pin(stream) as Leaders))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let l = req.into_inner().leader.ok_or(Error::MissingLeaderKey)?;
        let mut header = self.server.resign(&l.key, l.rev).await?;
        fill(&self.server, &mut header);
        Ok(Response::new(ResignResponse { header }))
    }
}
