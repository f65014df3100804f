//! The member: a [`Core`] (proposing, waiting, reading linearizably) and
//! one facade per domain on top of it — [`Kv`], [`Watch`], [`Leases`] (with
//! its timer), [`Membership`], [`Maintenance`] and the lock/election
//! [`Recipes`] — which the gRPC services call through narrow traits
//! (etcd: `server/etcdserver/v3_server.go` and `server.go`).
//!
//! Threads and tasks started here: the raft thread (`raft::node`), the
//! applier thread ([`apply`]), the compactor thread (`mvcc::compact`), the
//! read-barrier task ([`read`]) and the lease timer ([`lease`]).

pub mod alarm;
pub mod apply;
pub mod bootstrap;
pub mod concurrency;
pub mod core;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod membership;
pub mod read;
pub mod txn;
pub mod wait;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cluster::Members;
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::lease::{Lessor, SharedLessor};
use crate::log::raft_logger;
use crate::mvcc::Store;
use crate::mvcc::compact::Compactor;
use crate::mvcc::watch::WatchHub;
use crate::proto::oxcdpb::internal_raft_request::Request;
use crate::raft::{self as consensus, NodeConfig};
use crate::storage::{Db, meta_key};
use apply::{Applier, ApplierDeps};
use tokio::sync::watch as channel;
use wait::Wait;

pub use self::alarm::DEFAULT_QUOTA_BYTES;
pub use self::concurrency::Recipes;
pub use self::core::{Core, CoreParts, RaftState};
pub use self::kv::Kv;
pub use self::lease::Leases;
pub use self::maintenance::Maintenance;
pub use self::membership::Membership;
pub use self::watch::Watch;

/// The running member: the core and the facades.
pub struct Server {
    core: Arc<Core>,
    store: Arc<Store>,
    kv: Arc<Kv>,
    watch: Arc<Watch>,
    leases: Arc<Leases>,
    membership: Arc<Membership>,
    maintenance: Arc<Maintenance>,
    recipes: Arc<Recipes>,
}

impl Server {
    /// Opens (or creates) the data directory, replays what the log holds
    /// beyond the applied state, and starts the raft and apply threads.
    /// Returns once this member has a leader and has applied everything
    /// committed so far.
    ///
    /// [`Server::open`] and then [`Server::ready`], for callers that serve
    /// nothing on the peer port (tests of a lone member).
    pub async fn start(cfg: ServerConfig) -> Result<Arc<Server>> {
        let server = Server::open(cfg).await?;
        server.ready().await?;
        Ok(server)
    }

    /// Opens the data directory and starts raft, without waiting for a
    /// leader: the peer port must be served (see `api::serve_peers`) before
    /// [`Server::ready`] can succeed in a cluster.
    pub async fn open(cfg: ServerConfig) -> Result<Arc<Server>> {
        let member_dir = cfg.data_dir.join("member");
        let db_path = member_dir.join("db");
        bootstrap::remove_leftover_checkpoints(&member_dir);
        let db = Db::open(&db_path)?;
        let (member_id, cluster_id, mut storage) = bootstrap::open_or_bootstrap(&db, &cfg).await?;
        storage.set_snapshot_dir(member_dir);
        let members = Arc::new(Members::new(Members::load(&db)?.unwrap_or_default()));
        let transport = crate::peer::Transport::new(member_id, cluster_id, members.clone());
        let store = Arc::new(Store::open(db.clone())?);
        let applied = db
            .get_u64(crate::storage::Cf::Meta, meta_key::APPLIED_INDEX)?
            .unwrap_or(0);
        tracing::info!(
            name = %cfg.name,
            data_dir = %cfg.data_dir.display(),
            member_id = format!("{member_id:x}"),
            cluster_id = format!("{cluster_id:x}"),
            applied_index = applied,
            current_revision = store.current_rev(),
            compact_revision = store.compact_rev(),
            "opened backend"
        );
        let compactor = Compactor::spawn(db.clone())?;
        let wait = Arc::new(Wait::default());
        let (applied_tx, applied_rx) = channel::channel(applied);

        let heartbeat_ms = cfg.heartbeat.as_millis().max(1);
        let node_cfg = NodeConfig {
            id: member_id,
            tick: cfg.heartbeat,
            election_ticks: (cfg.election_timeout.as_millis() / heartbeat_ms).max(2) as usize,
            heartbeat_ticks: 1,
            applied,
            snapshot_count: cfg.snapshot_count,
            catchup_entries: cfg.snapshot_catchup_entries,
            election_range: None,
        };
        let dropped_wait = wait.clone();
        let on_dropped = Box::new(move |id| dropped_wait.trigger(id, Err(Error::ProposalDropped)));
        let status = Arc::new(consensus::RaftStatus::default());
        let hub = WatchHub::start(store.clone(), cfg.watch_progress_notify_interval)?;
        let mut lessor = Lessor::new(
            lease::min_ttl(cfg.heartbeat, cfg.election_timeout),
            cfg.lease_checkpoint_interval,
        );
        lease::load(&db, &mut lessor)?;
        let lessor: SharedLessor = Arc::new(std::sync::Mutex::new(lessor));
        let alarms = Arc::new(alarm::AlarmSet::load(&db)?);
        let applier = Applier::new(
            ApplierDeps {
                store: store.clone(),
                wait: wait.clone(),
                applied_tx,
                status: status.clone(),
                compactor: compactor.clone(),
                hub: hub.clone(),
                lessor: lessor.clone(),
                alarms: alarms.clone(),
                members: members.clone(),
                member_id,
                max_learners: cfg.max_learners,
            },
            applied,
        );
        let (raft, _raft_thread) = consensus::node::spawn(
            node_cfg,
            storage,
            status,
            Box::new(applier),
            on_dropped,
            transport.clone(),
            raft_logger(),
        )?;
        transport.set_raft(raft.clone());
        let read =
            read::ReadBarrier::spawn(raft.clone(), applied_rx.clone(), cfg.request_timeout());
        let leader = crate::peer::LeaderClient::new(
            member_id,
            members.clone(),
            raft.status.clone(),
            cfg.request_timeout(),
        );
        let leader = Arc::new(leader);
        let core = Arc::new(Core::new(CoreParts {
            cfg,
            member_id,
            cluster_id,
            store: store.clone(),
            raft,
            wait,
            read,
            members,
            applied: applied_rx,
        }));
        let quota = Arc::new(alarm::Quota::new(core.clone(), store.db().clone()));
        let kv = Arc::new(Kv::new(
            core.clone(),
            store.clone(),
            alarms.clone(),
            compactor,
            quota.clone(),
        ));
        let watch = Arc::new(Watch::new(core.clone(), store.clone(), hub));
        let leases = Arc::new(Leases::new(
            core.clone(),
            store.clone(),
            lessor,
            leader.clone(),
            quota.clone(),
        ));
        let membership = Arc::new(Membership::new(core.clone(), transport, leader));
        let maintenance = Arc::new(Maintenance::new(
            core.clone(),
            store.clone(),
            alarms,
            quota,
            membership.clone(),
        ));
        let recipes = Arc::new(Recipes::new(kv.clone(), leases.clone(), watch.clone()));
        tokio::spawn(lease::run_timer(Arc::downgrade(&leases)));
        Ok(Arc::new(Server {
            core,
            store,
            kv,
            watch,
            leases,
            membership,
            maintenance,
            recipes,
        }))
    }

    /// Waits until this member has a leader, has applied what is committed
    /// and has published itself; then it may serve clients.
    pub async fn ready(&self) -> Result<()> {
        self.wait_ready().await?;
        self.publish().await
    }

    /// Records this member's name and client URLs in the member table
    /// through raft, if they changed (etcd: `publishV3`), retrying until
    /// it succeeds, as etcd does before serving clients.
    async fn publish(&self) -> Result<()> {
        let attrs = crate::proto::oxcdpb::MemberAttrs {
            member_id: self.core.member_id(),
            name: self.core.config().name.clone(),
            client_urls: self.core.config().advertise_client_urls.clone(),
        };
        let alone = self.core.members().list().len() <= 1;
        let deadline = tokio::time::Instant::now() + self.core.config().request_timeout() * 4;
        loop {
            if let Some(m) = self.core.members().get(self.core.member_id())
                && m.name == attrs.name
                && m.client_ur_ls == attrs.client_urls
            {
                return Ok(());
            }
            match self.core.propose(Request::MemberAttrs(attrs.clone())).await {
                Ok(_) => {
                    tracing::info!(
                        member_id = format!("{:x}", self.core.member_id()),
                        name = %attrs.name,
                        client_urls = ?attrs.client_urls,
                        "published local member to cluster through raft"
                    );
                    return Ok(());
                }
                Err(e) if !alone || tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "failed to publish local member; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until a leader is known and the applier has caught up with the
    /// commit index (the replay after a restart is done).
    ///
    /// A lone member elects itself at once, so it fails after a while if it
    /// cannot; a member of a larger cluster waits as long as its peers take
    /// to come up (as etcd does), logging now and then.
    async fn wait_ready(&self) -> Result<()> {
        let alone = self.core.members().list().len() <= 1;
        let started = tokio::time::Instant::now();
        let mut next_log = started + Duration::from_secs(5);
        loop {
            let st = &self.core.raft().status;
            let leader = st.leader.load(Ordering::Acquire);
            let commit = st.commit.load(Ordering::Acquire);
            if leader != 0 && commit > 0 && *self.core.applied().borrow() >= commit {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if alone && now > started + self.core.config().request_timeout() * 4 {
                return Err(Error::internal("timed out waiting for a raft leader"));
            }
            if now > next_log {
                tracing::warn!(
                    waited_s = (now - started).as_secs(),
                    "waiting for a raft leader (are a quorum of members up?)"
                );
                next_log = now + Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn config(&self) -> &ServerConfig {
        self.core.config()
    }

    /// The core the domains share.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn kv(&self) -> &Arc<Kv> {
        &self.kv
    }

    pub fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    pub fn maintenance(&self) -> &Arc<Maintenance> {
        &self.maintenance
    }

    pub fn recipes(&self) -> &Arc<Recipes> {
        &self.recipes
    }

    /// Prepares for the process to end: waits for RocksDB's background
    /// flushes and compactions to stop, so none is cut off halfway (which
    /// is safe, but leaves work to redo).
    pub fn shutdown(&self) {
        self.store.db().raw().cancel_all_background_work(true);
        tracing::info!("stopped background storage work");
    }
}
