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

use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message as _;
use raft::prelude::{ConfChange, ConfChangeType};

use super::apply::Response;
use super::{CancelGuard, Server, unexpected};
use crate::error::{Error, Result};
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
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

impl Server {
    /// Proposes a configuration change and waits for the member list after
    /// it.
    async fn propose_conf_change(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: Option<Member>,
    ) -> Result<Vec<Member>> {
        let id = self.ids.next();
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = node_id;
        cc.context = ConfChangeContext { id, member }.encode_to_vec().into();
        let rx = self.wait.register(id);
        let _guard = CancelGuard {
            wait: &self.wait,
            id,
        };
        self.raft.propose_conf_change(id, cc)?;
        match tokio::time::timeout(self.cfg.request_timeout(), rx).await {
            Ok(Ok(Ok(Response::Members(list)))) => Ok(list),
            Ok(Ok(Ok(other))) => Err(unexpected(other)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Voting members that count as active: on the leader, those that
    /// answered within an election timeout (every follower answers each
    /// heartbeat); another member knows only that it hears from the
    /// leader, and counts the rest as active.
    async fn active_voters(&self) -> Result<(Vec<u64>, Vec<u64>)> {
        let voters: Vec<u64> = self
            .members
            .list()
            .into_iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect();
        let view: ProgressView = self.raft.progress().await?;
        if !view.is_leader {
            if self.raft.status.leader.load(Ordering::Acquire) == 0 {
                return Ok((voters, Vec::new()));
            }
            return Ok((voters.clone(), voters));
        }
        let window = self.cfg.election_timeout.max(Duration::from_millis(500));
        let active = voters
            .iter()
            .copied()
            .filter(|id| *id == self.member_id || self.transport.heard_within(*id, window))
            .collect();
        Ok((voters, active))
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
        let members = self.members.list();
        if members
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(Error::PeerUrlExist);
        }
        if is_learner {
            let learners = members.iter().filter(|m| m.is_learner).count() as u64;
            if learners >= self.cfg.max_learners {
                return Err(Error::TooManyLearners);
            }
        } else if self.cfg.strict_reconfig_check {
            // etcd: IsReadyToAddVotingMember, then isConnectedFullySince.
            let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
            let started = voters.iter().filter(|m| !m.name.is_empty()).count();
            let ready = (started == 1 && voters.len() == 1) || started >= quorum(voters.len() + 1);
            if !ready {
                return Err(Error::MemberNotEnoughStarted);
            }
            let (voters, active) = self.active_voters().await?;
            if active.len() < voters.len() {
                return Err(Error::Unhealthy);
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
        if self.cfg.strict_reconfig_check && !m.is_learner {
            // etcd: mayRemoveMember — the members left must still have an
            // active quorum.
            let (voters, active) = self.active_voters().await?;
            let left = voters.len().saturating_sub(1);
            let active_left = active.iter().filter(|v| **v != id).count();
            if active_left < quorum(left) {
                return Err(Error::MemberNotEnoughStarted);
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
        let view = self.raft.progress().await?;
        if !view.is_leader {
            return Err(Error::NotLeader);
        }
        let leader_match = view
            .peers
            .iter()
            .find(|p| p.id == self.member_id)
            .map_or(view.last_index, |p| p.matched.max(view.last_index));
        let learner_match = view
            .peers
            .iter()
            .find(|p| p.id == id)
            .map_or(0, |p| p.matched);
        if (learner_match as f64) < (leader_match as f64) * 0.9 {
            return Err(Error::LearnerNotReady);
        }
        if self.cfg.strict_reconfig_check {
            let (voters, active) = self.active_voters().await?;
            if active.len() + 1 < quorum(voters.len() + 1) {
                return Err(Error::MemberNotEnoughStarted);
            }
        }
        self.propose_conf_change(ConfChangeType::AddNode, id, None)
            .await
    }

    /// The leader's client URLs, for forwarding requests only the leader
    /// serves.
    pub fn leader_client_urls(&self) -> Option<Vec<String>> {
        let leader = self.raft.status.leader.load(Ordering::Acquire);
        if leader == 0 || leader == self.member_id {
            return None;
        }
        self.members.get(leader).map(|m| m.client_ur_ls)
    }

    /// Maintenance.MoveLeader: hands leadership to `target` and waits until
    /// it leads (etcd: `MoveLeader`).
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        let leader = self.raft.status.leader.load(Ordering::Acquire);
        if leader != self.member_id {
            return Err(Error::NotLeader);
        }
        match self.members.get(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(Error::BadLeaderTransferee),
        }
        if target == self.member_id {
            return Ok(());
        }
        self.raft
            .send(crate::raft::RaftMsg::TransferLeader(target))?;
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout();
        loop {
            if self.raft.status.leader.load(Ordering::Acquire) == target {
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
