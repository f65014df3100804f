//! The `v3lockpb.Lock` and `v3electionpb.Election` services (etcd:
//! `server/etcdserver/api/v3lock`, `v3election`); the recipes themselves
//! are in `server::concurrency`.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::header::fill;
use crate::error::Error;
use crate::proto::etcdserverpb::DeleteRangeRequest;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::Server;

pub struct LockService {
    server: Arc<Server>,
}

impl LockService {
    pub fn new(server: Arc<Server>) -> Self {
        LockService { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
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
        let mut resp = self
            .server
            .delete_range(DeleteRangeRequest {
                key: r.key,
                ..Default::default()
            })
            .await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

pub struct ElectionService {
    server: Arc<Server>,
}

impl ElectionService {
    pub fn new(server: Arc<Server>) -> Self {
        ElectionService { server }
    }
}

type Leaders = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
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
