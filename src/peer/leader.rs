//! A client of the leader's peer port, for the requests other members
//! forward to it (lease keep-alives and time-to-live, strict membership
//! changes, promotions): the leader's peer port serves the Lease and
//! Cluster services next to the peer protocol, as etcd's peer port serves
//! lease and promotion requests.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tonic::transport::Channel;

use crate::cluster::Members;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::RaftStatus;

/// One channel to the current leader, kept while the leader stays the same.
pub struct LeaderClient {
    local: u64,
    members: Arc<Members>,
    status: Arc<RaftStatus>,
    timeout: Duration,
    cached: Mutex<Option<(u64, Channel)>>,
}

impl LeaderClient {
    /// A client for member `local`; every request on it is bounded by
    /// `timeout`.
    pub fn new(
        local: u64,
        members: Arc<Members>,
        status: Arc<RaftStatus>,
        timeout: Duration,
    ) -> LeaderClient {
        LeaderClient {
            local,
            members,
            status,
            timeout,
            cached: Mutex::new(None),
        }
    }

    /// The leader, when it is known and another member.
    fn remote_leader(&self) -> Option<u64> {
        let leader = self.status.leader.load(Ordering::Acquire);
        (leader != 0 && leader != self.local).then_some(leader)
    }

    /// A channel to the leader's peer port (`etcdserver: no leader` when no
    /// other member leads or it cannot be reached).
    pub async fn channel(&self) -> Result<Channel> {
        let leader = self.remote_leader().ok_or(Error::NoLeader)?;
        if let Some((id, ch)) = self.slot().clone()
            && id == leader
        {
            return Ok(ch);
        }
        let urls = self.members.peer_urls(leader);
        let ch = super::connect_any(&urls, Some(self.timeout))
            .await
            .map_err(|_| Error::NoLeader)?;
        *self.slot() = Some((leader, ch.clone()));
        Ok(ch)
    }

    /// Drops the kept channel (after a request on it failed).
    pub fn forget(&self) {
        *self.slot() = None;
    }

    /// The leader's peer URLs, when another member leads.
    pub fn leader_peer_urls(&self) -> Option<Vec<String>> {
        self.members
            .get(self.remote_leader()?)
            .map(|m| m.peer_ur_ls)
    }

    /// The error a failed forward answers, dropping the kept channel.
    fn failed(&self, s: &tonic::Status) -> Error {
        self.forget();
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Cancelled => Error::NoLeader,
            _ => Error::Internal(s.message().to_string()),
        }
    }

    async fn lease_client(&self) -> Result<LeaseClient<Channel>> {
        Ok(LeaseClient::new(self.channel().await?))
    }

    /// One keep-alive of lease `id` on the leader; its granted TTL.
    pub async fn lease_renew(&self, id: i64) -> Result<i64> {
        let mut client = self.lease_client().await?;
        let req = LeaseKeepAliveRequest { id };
        let mut stream = client
            .lease_keep_alive(tokio_stream::once(req))
            .await
            .map_err(|s| self.failed(&s))?
            .into_inner();
        match stream.message().await {
            Ok(Some(r)) if r.ttl > 0 => Ok(r.ttl),
            Ok(_) => Err(Error::LeaseNotFound),
            Err(s) => Err(self.failed(&s)),
        }
    }

    /// LeaseTimeToLive answered by the leader (without its header).
    pub async fn lease_time_to_live(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        let mut client = self.lease_client().await?;
        let mut resp = client
            .lease_time_to_live(*r)
            .await
            .map_err(|s| self.failed(&s))?
            .into_inner();
        resp.header = None;
        Ok(resp)
    }

    fn slot(&self) -> MutexGuard<'_, Option<(u64, Channel)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}
