//! Membership changes (etcd: `EtcdServer.AddMember`, `RemoveMember`,
//! `UpdateMember`, `PromoteMember`, `MoveLeader` in
//! `server/etcdserver/server.go`).
//!
//! Adding, removing and promoting members are raft configuration changes:
//! proposed with the member in their context, validated against the member
//! table when applied (identically on every member), then applied to raft.
//! Updating peer URLs is a normal entry. Before proposing, the checks etcd
//! makes with `--strict-reconfig-check` refuse changes that would leave
//! the cluster without a working quorum.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use raft::prelude::{ConfChange, ConfChangeType};

use super::apply::Response;
use super::core::{Core, unexpected};
use crate::cluster::Members;
use crate::error::{Error, Result};
use crate::peer::{LeaderClient, Transport};
use crate::proto::etcdserverpb::{Member, MemberUpdateRequest};
use crate::proto::oxcdpb::{ConfChangeContext, internal_raft_request::Request};
use crate::raft::node::ProgressView;

/// A peer URL as etcd accepts it: `http(s)://host:port`, nothing after.
fn valid_peer_url(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
    else {
        return false;
    };
    // etcd refuses any path, even "/".
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// How long peers must have been connected for a reconfiguration to count
/// them (etcd: `HealthInterval`).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// The cluster facade: the member table, the transport's view of peers,
/// and the leader's client.
pub struct Membership {
    core: Arc<Core>,
    members: Arc<Members>,
    transport: Arc<Transport>,
    leader: Arc<LeaderClient>,
}

impl Membership {
    pub fn new(core: Arc<Core>, transport: Arc<Transport>, leader: Arc<LeaderClient>) -> Self {
        Membership {
            members: core.members().clone(),
            core,
            transport,
            leader,
        }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The peer protocol's service (raft messages, snapshots, members).
    pub fn peer_service(
        &self,
    ) -> crate::proto::oxcdpb::peer_server::PeerServer<crate::peer::PeerService> {
        crate::peer::PeerService::new(
            self.transport.clone(),
            self.core.config().data_dir.join("member"),
        )
    }

    /// This member as the member list shows it.
    pub fn member(&self) -> Member {
        let cfg = self.core.config();
        self.members
            .get(self.core.member_id())
            .unwrap_or_else(|| Member {
                id: self.core.member_id(),
                name: cfg.name.clone(),
                peer_ur_ls: cfg.initial_advertise_peer_urls.clone(),
                client_ur_ls: cfg.advertise_client_urls.clone(),
                is_learner: false,
            })
    }

    /// Every member, as of this member's applied index.
    pub fn members(&self) -> Vec<Member> {
        self.members.list()
    }

    /// Proposes a configuration change and waits for the member list after
    /// it.
    async fn propose_conf_change(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: Option<Member>,
    ) -> Result<Vec<Member>> {
        let result = self
            .core
            .propose_conf_change(|id| {
                let mut cc = ConfChange::default();
                cc.set_change_type(change);
                cc.node_id = node_id;
                cc.context = ConfChangeContext { id, member }.encode_to_vec().into();
                cc
            })
            .await?;
        match result {
            Response::Members(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Voting members and those of them connected to this member for at
    /// least etcd's `HealthInterval` (5 s). The leader hears from every
    /// follower (each answers every heartbeat); another member hears only
    /// from the leader and counts the others as connected while the
    /// leader is.
    async fn connected_voters(&self) -> Result<(Vec<u64>, Vec<u64>)> {
        let voters: Vec<u64> = self
            .members
            .list()
            .into_iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect();
        let connected = |id: u64| {
            id == self.core.member_id()
                || self
                    .transport
                    .active_since(id, crate::peer::ACTIVE_GAP)
                    .is_some_and(|since| since.elapsed() >= HEALTH_INTERVAL)
        };
        let view: ProgressView = self.core.raft().progress().await?;
        if view.is_leader {
            let active = voters.iter().copied().filter(|id| connected(*id)).collect();
            return Ok((voters, active));
        }
        let leader = self.core.leader();
        if leader == 0 || !connected(leader) {
            return Ok((voters, vec![self.core.member_id()]));
        }
        Ok((voters.clone(), voters))
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>)> {
        if peer_urls.is_empty() || !peer_urls.iter().all(|u| valid_peer_url(u)) {
            return Err(Error::MemberBadUrls);
        }
        // A peer URL already in use is refused when the change is applied
        // (as etcd does, after the checks below).
        let members = self.members.list();
        if self.core.config().strict_reconfig_check {
            // etcd: mayAddMember — IsReadyToAddVotingMember for voters,
            // then isConnectedFullySince for any new member.
            if !is_learner {
                let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
                let started = voters.iter().filter(|m| !m.name.is_empty()).count();
                let ready =
                    (started == 1 && voters.len() == 1) || started >= quorum(voters.len() + 1);
                if !ready {
                    return Err(Error::MemberNotEnoughStarted);
                }
            }
            let (voters, active) = self.connected_voters().await?;
            if active.len() < voters.len() {
                return Err(Error::Unhealthy);
            }
        }
        if is_learner {
            let learners = members.iter().filter(|m| m.is_learner).count() as u64;
            if learners >= self.core.config().max_learners {
                return Err(Error::TooManyLearners);
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = crate::cluster::member_id(&peer_urls, &now.to_string());
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner,
        };
        let change = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let list = self
            .propose_conf_change(change, id, Some(member.clone()))
            .await?;
        Ok((member, list))
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>> {
        let Some(m) = self.members.get(id) else {
            return Err(Error::MemberNotFound);
        };
        if self.core.config().strict_reconfig_check && !m.is_learner {
            // etcd: mayRemoveMember. Enough started voters must remain...
            let others: Vec<Member> = self
                .members
                .list()
                .into_iter()
                .filter(|o| !o.is_learner && o.id != id)
                .collect();
            let started = others.iter().filter(|o| !o.name.is_empty()).count();
            if started < quorum(others.len()) {
                return Err(Error::MemberNotEnoughStarted);
            }
            // ...a member that is down can always go...
            let (voters, active) = self.connected_voters().await?;
            let down = id != self.core.member_id()
                && self
                    .transport
                    .active_since(id, crate::peer::ACTIVE_GAP)
                    .is_none();
            // ...otherwise the connected voters must keep a quorum.
            if !down && active.len().saturating_sub(1) < 1 + voters.len().saturating_sub(1) / 2 {
                return Err(Error::Unhealthy);
            }
        }
        self.propose_conf_change(ConfChangeType::RemoveNode, id, None)
            .await
    }

    /// Cluster.MemberUpdate: new peer URLs for a member.
    pub async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<Vec<Member>> {
        if peer_urls.is_empty() || !peer_urls.iter().all(|u| valid_peer_url(u)) {
            return Err(Error::MemberBadUrls);
        }
        if self.members.get(id).is_none() {
            return Err(Error::MemberNotFound);
        }
        match self
            .core
            .propose(Request::MemberUpdate(MemberUpdateRequest {
                id,
                peer_ur_ls: peer_urls,
            }))
            .await?
        {
            Response::Members(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Cluster.MemberPromote, on the leader (the gRPC layer forwards it
    /// there): the learner must have 90% of the leader's log.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>> {
        let Some(m) = self.members.get(id) else {
            return Err(Error::MemberNotFound);
        };
        if !m.is_learner {
            return Err(Error::MemberNotLearner);
        }
        let view = self.core.raft().progress().await?;
        if !view.is_leader {
            return Err(Error::NotLeader);
        }
        let leader_match = view
            .peers
            .iter()
            .find(|p| p.id == self.core.member_id())
            .map_or(view.last_index, |p| p.matched.max(view.last_index));
        let learner_match = view
            .peers
            .iter()
            .find(|p| p.id == id)
            .map_or(0, |p| p.matched);
        if (learner_match as f64) < (leader_match as f64) * 0.9 {
            return Err(Error::LearnerNotReady);
        }
        if self.core.config().strict_reconfig_check {
            // etcd: IsReadyToPromoteMember — the learner counts as a
            // started voter.
            let voters: Vec<Member> = self
                .members
                .list()
                .into_iter()
                .filter(|o| !o.is_learner)
                .collect();
            let started = 1 + voters.iter().filter(|o| !o.name.is_empty()).count();
            if started < quorum(voters.len() + 1) {
                return Err(Error::MemberNotEnoughStarted);
            }
        }
        self.propose_conf_change(ConfChangeType::AddNode, id, None)
            .await
    }

    /// The client of the leader's peer port, for the requests other
    /// members forward to it.
    pub fn leader(&self) -> &crate::peer::LeaderClient {
        &self.leader
    }

    /// The leader's peer URLs, when another member leads.
    pub fn leader_peer_urls(&self) -> Option<Vec<String>> {
        self.leader.leader_peer_urls()
    }

    /// Maintenance.MoveLeader: hands leadership to `target` and waits until
    /// it leads (etcd: `MoveLeader`).
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        let leader = self.core.leader();
        if leader != self.core.member_id() {
            return Err(Error::NotLeader);
        }
        match self.members.get(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(Error::BadLeaderTransferee),
        }
        if target == self.core.member_id() {
            return Ok(());
        }
        self.core
            .raft()
            .send(crate::raft::RaftMsg::TransferLeader(target))?;
        let deadline = tokio::time::Instant::now() + self.core.config().request_timeout();
        loop {
            if self.core.leader() == target {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::TimeoutLeaderTransfer);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_as_etcd_accepts_them() {
        assert!(valid_peer_url("http://127.0.0.1:2380"));
        assert!(valid_peer_url("https://node-1.example:2380"));
        assert!(!valid_peer_url("127.0.0.1:2380"));
        assert!(!valid_peer_url("http://127.0.0.1"));
        assert!(!valid_peer_url("http://127.0.0.1:2380/path"));
        assert!(!valid_peer_url("http://127.0.0.1:2380/"));
        assert!(!valid_peer_url("ftp://127.0.0.1:2380"));
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }
}
