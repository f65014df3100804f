//! The coordinator between the gRPC layer and the state: one async method
//! per operation (etcd: `server/etcdserver/v3_server.go`).
//!
//! Writes are proposed through raft and answered with the applier's result
//! ([`Server::propose`]); linearizable reads pass a batched ReadIndex
//! barrier and then read a local snapshot; serializable reads read the
//! snapshot directly.
//!
//! Threads and tasks started here: the raft thread (`raft::node`), the
//! applier thread ([`apply`]), the compactor thread
//! (`mvcc::compact`), and the read-barrier task ([`read`]).

pub mod alarm;
pub mod apply;
pub mod concurrency;
pub mod core;
pub mod lease;
pub mod membership;
pub mod read;
pub mod txn;
pub mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::{self, Members};
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::lease::{Lessor, SharedLessor};
use crate::log::raft_logger;
use crate::mvcc::compact::Compactor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{KvRead, Store};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::oxcdpb::internal_raft_request::Request;
use crate::raft::{self as consensus, NodeConfig, RaftStorage};
use crate::storage::{Db, meta_key};
use apply::{Applier, ApplierDeps, ApplyResult, Response};
use wait::Wait;

/// etcd's backend quota when `--quota-backend-bytes` is 0
/// (`DefaultQuotaBytes`, 2 GiB).
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

pub use self::core::{Core, RaftState};

/// The running member.
pub struct Server {
    core: Core,
    store: Arc<Store>,
    compactor: Compactor,
    hub: Arc<WatchHub>,
    lessor: SharedLessor,
    applied: watch::Receiver<u64>,
    alarms: Arc<alarm::AlarmSet>,
    members: Arc<Members>,
    transport: Arc<crate::peer::Transport>,
    /// Forwarding to the leader's peer port.
    leader: crate::peer::LeaderClient,
    /// The backend's size as last measured, and when (milliseconds since
    /// `started`), for the quota check.
    backend_size: AtomicU64,
    backend_size_at: AtomicU64,
    started: std::time::Instant,
    /// This server, for tasks it spawns (set once at start).
    me: std::sync::OnceLock<std::sync::Weak<Server>>,
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
        remove_leftover_checkpoints(&member_dir);
        let db = Db::open(&db_path)?;
        let (member_id, cluster_id, mut storage) = open_or_bootstrap(&db, &cfg).await?;
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
        let (applied_tx, applied_rx) = watch::channel(applied);

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
        let core = Core::new(cfg, member_id, cluster_id, store.clone(), raft, wait, read);
        let server = Arc::new(Server {
            core,
            store,
            compactor,
            hub,
            lessor,
            applied: applied_rx,
            alarms,
            members,
            transport,
            leader,
            backend_size: AtomicU64::new(0),
            backend_size_at: AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
            me: std::sync::OnceLock::new(),
        });
        let _ = server.me.set(Arc::downgrade(&server));
        tokio::spawn(lease::run_timer(Arc::downgrade(&server)));
        Ok(server)
    }

    /// Waits until this member has a leader, has applied what is committed
    /// and has published itself; then it may serve clients.
    pub async fn ready(&self) -> Result<()> {
        self.wait_ready().await?;
        self.publish().await
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

    /// Records this member's name and client URLs in the member table
    /// through raft, if they changed (etcd: `publishV3`), retrying until
    /// it succeeds, as etcd does before serving clients.
    async fn publish(&self) -> Result<()> {
        let attrs = crate::proto::oxcdpb::MemberAttrs {
            member_id: self.core.member_id(),
            name: self.core.config().name.clone(),
            client_urls: self.core.config().advertise_client_urls.clone(),
        };
        let alone = self.members.list().len() <= 1;
        let deadline = tokio::time::Instant::now() + self.core.config().request_timeout() * 4;
        loop {
            if let Some(m) = self.members.get(self.core.member_id())
                && m.name == attrs.name
                && m.client_ur_ls == attrs.client_urls
            {
                return Ok(());
            }
            match self.propose(Request::MemberAttrs(attrs.clone())).await {
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
        let alone = self.members.list().len() <= 1;
        let started = tokio::time::Instant::now();
        let mut next_log = started + Duration::from_secs(5);
        loop {
            let st = &self.core.raft().status;
            let leader = st.leader.load(Ordering::Acquire);
            let commit = st.commit.load(Ordering::Acquire);
            if leader != 0 && commit > 0 && *self.applied.borrow() >= commit {
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

    /// The watch hub.
    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    /// Prepares for the process to end: waits for RocksDB's background
    /// flushes and compactions to stop, so none is cut off halfway (which
    /// is safe, but leaves work to redo).
    pub fn shutdown(&self) {
        self.store.db().raw().cancel_all_background_work(true);
        tracing::info!("stopped background storage work");
    }

    /// Whether a leader is known (for `hasleader` metadata).
    pub fn has_leader(&self) -> bool {
        self.core.has_leader()
    }

    /// The version of `key` at revision `rev`, if readable (for watch
    /// events' `prev_kv`). `rev` may be newer than what readers see yet:
    /// watchers get events before readers get the revision.
    pub fn kv_at(&self, key: &[u8], rev: i64) -> Option<crate::proto::mvccpb::KeyValue> {
        let opts = crate::mvcc::RangeOptions::default();
        let view = self.store.read_written(rev);
        view.range(crate::mvcc::KeyRange::Key(key), &opts)
            .ok()?
            .kvs
            .into_iter()
            .next()
    }

    pub fn member_id(&self) -> u64 {
        self.core.member_id()
    }

    /// Raft's view as of the last Ready: term, leader, commit and applied
    /// index.
    pub fn raft_state(&self) -> RaftState {
        self.core.raft_state()
    }

    /// Bytes the backend takes (files and memtables) and bytes of it in
    /// live use, for Status' `dbSize` and `dbSizeInUse`.
    pub fn db_sizes(&self) -> (u64, u64) {
        let db = self.store.db();
        let size = db.approximate_size();
        (size, db.live_size().min(size))
    }

    /// Compacts every column family fully, dropping what deletes and
    /// compactions left behind (etcd: defragmenting the bbolt file).
    pub async fn defragment(&self) -> Result<()> {
        let db = self.store.db().clone();
        tokio::task::spawn_blocking(move || db.compact_all())
            .await
            .map_err(|e| Error::internal(format!("defragment: {e}")))?
    }

    /// A checkpoint of the database for a snapshot, in the member
    /// directory (removed when dropped, or at the next start after a
    /// crash).
    pub fn checkpoint(&self) -> Result<crate::storage::Checkpoint> {
        crate::storage::Checkpoint::take(
            self.store.db(),
            &self.core.config().data_dir.join("member"),
        )
    }

    /// HashKV: a CRC-32C over the key-value history at `rev` (0 = current)
    /// that does not depend on when compactions ran physically.
    pub fn hash_kv(&self, rev: i64) -> Result<crate::mvcc::KvHash> {
        self.store.hash_kv(rev)
    }

    /// Maintenance.Hash: a CRC-32C over this member's whole state.
    pub fn hash_all(&self) -> Result<(u32, i64)> {
        self.store.hash_all()
    }

    /// The backend quota: `--quota-backend-bytes`, or etcd's default when
    /// it is 0.
    pub fn quota_bytes(&self) -> i64 {
        if self.core.config().quota_backend_bytes > 0 {
            self.core.config().quota_backend_bytes
        } else {
            DEFAULT_QUOTA_BYTES
        }
    }

    /// The active alarms of type `alarm` (every one for NONE).
    pub fn alarms(&self, alarm: i32) -> Vec<crate::proto::etcdserverpb::AlarmMember> {
        self.alarms.list(alarm)
    }

    /// Maintenance.Alarm: GET answers from this member's copy of the
    /// replicated alarm set; ACTIVATE and DEACTIVATE go through raft.
    pub async fn alarm(
        &self,
        r: crate::proto::etcdserverpb::AlarmRequest,
    ) -> Result<crate::proto::etcdserverpb::AlarmResponse> {
        use crate::proto::etcdserverpb::alarm_request::AlarmAction;
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => Ok(crate::proto::etcdserverpb::AlarmResponse {
                header: None,
                alarms: self.alarms.list(r.alarm),
            }),
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => {
                match self.propose(Request::Alarm(r)).await? {
                    Response::Alarm(a) => Ok(a),
                    other => Err(unexpected(other)),
                }
            }
            Err(_) => Err(Error::internal("etcdserver: unknown method")),
        }
    }

    /// The backend's size, measured at most every 100 ms.
    fn backend_size(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let at = self.backend_size_at.load(Ordering::Acquire);
        if (at == u64::MAX || now.saturating_sub(at) >= 100)
            && self
                .backend_size_at
                .compare_exchange(at, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let size = self.store.db().approximate_size();
            self.backend_size.store(size, Ordering::Release);
            return size;
        }
        self.backend_size.load(Ordering::Acquire)
    }

    /// etcd's quota check before proposing a write that costs `cost`
    /// bytes: past `--quota-backend-bytes`, this member raises a NOSPACE
    /// alarm and the write fails with "database space exceeded".
    pub async fn check_quota(&self, cost: usize) -> Result<()> {
        if cost == 0 {
            return Ok(());
        }
        let quota = u64::try_from(self.quota_bytes()).unwrap_or(0);
        if self.backend_size().saturating_add(cost as u64) < quota {
            return Ok(());
        }
        // Refuse only on a fresh measurement (a defragmentation may just
        // have shrunk the backend).
        let size = self.store.db().approximate_size();
        self.backend_size.store(size, Ordering::Release);
        if size.saturating_add(cost as u64) < quota {
            return Ok(());
        }
        let raise = crate::proto::etcdserverpb::AlarmRequest {
            action: crate::proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.core.member_id(),
            alarm: crate::proto::etcdserverpb::AlarmType::Nospace as i32,
        };
        if let Err(e) = self.propose(Request::Alarm(raise)).await {
            tracing::warn!(error = %e, "could not raise the NOSPACE alarm");
        }
        Err(Error::NoSpace)
    }

    /// What `/metrics` reports about this member.
    pub fn metric_gauges(&self) -> crate::metrics::MemberGauges {
        let raft = self.raft_state();
        let (db_size, db_size_in_use) = self.db_sizes();
        crate::metrics::MemberGauges {
            member_id: self.core.member_id(),
            has_leader: raft.leader != 0,
            is_leader: raft.leader == self.core.member_id(),
            is_learner: self.is_learner(),
            committed: raft.commit,
            applied: raft.applied,
            db_size,
            db_size_in_use,
            quota: self.quota_bytes(),
            current_rev: self.store.current_rev(),
            compact_rev: self.store.compact_rev(),
            server_version: crate::version::ETCD_API_VERSION,
            cluster_version: crate::version::ETCD_CLUSTER_VERSION,
        }
    }

    /// This member as the member list shows it.
    pub fn member(&self) -> crate::proto::etcdserverpb::Member {
        self.members.get(self.core.member_id()).unwrap_or_else(|| {
            crate::proto::etcdserverpb::Member {
                id: self.core.member_id(),
                name: self.core.config().name.clone(),
                peer_ur_ls: self.core.config().initial_advertise_peer_urls.clone(),
                client_ur_ls: self.core.config().advertise_client_urls.clone(),
                is_learner: false,
            }
        })
    }

    /// Every member, as of this member's applied index.
    pub fn members(&self) -> Vec<crate::proto::etcdserverpb::Member> {
        self.members.list()
    }

    /// Whether this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.members.is_learner(self.core.member_id())
    }

    pub fn cluster_id(&self) -> u64 {
        self.core.cluster_id()
    }

    /// The core the domains share.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// A response header with this member's ids, its term and the current
    /// revision (etcd: `v3rpc/header.go`).
    pub fn header(&self) -> ResponseHeader {
        self.core.header()
    }

    /// Proposes a request and waits for the applier's result.
    pub(crate) async fn propose(&self, request: Request) -> ApplyResult {
        self.core.propose(request).await
    }

    /// Waits until a local read reflects every write acknowledged so far.
    pub async fn read_barrier(&self) -> Result<()> {
        self.core.read_barrier().await
    }

    /// Range (etcd: `EtcdServer.Range`).
    pub async fn range(&self, r: &RangeRequest) -> Result<RangeResponse> {
        if !r.serializable {
            self.read_barrier().await?;
        }
        self.range_local(r)
    }

    /// Range on this member's state, without a read barrier.
    pub fn range_local(&self, r: &RangeRequest) -> Result<RangeResponse> {
        if self.alarms.corrupt() {
            return Err(Error::Corrupt);
        }
        txn::range(&self.store.read(), r)
    }

    /// The current revision and the compacted revision.
    pub fn revisions(&self) -> (i64, i64) {
        let v = self.store.read();
        (v.rev(), v.first_rev())
    }

    pub async fn put(&self, r: PutRequest) -> Result<PutResponse> {
        match self.propose(Request::Put(r)).await? {
            Response::Put(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.propose(Request::DeleteRange(r)).await? {
            Response::DeleteRange(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Txn: read-only transactions are served locally (after a read barrier
    /// unless every range is serializable); the rest go through raft.
    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse> {
        crate::metrics::METRICS
            .txn_total
            .fetch_add(1, Ordering::Relaxed);
        if txn::is_txn_read_only(&r) {
            if !txn::is_txn_serializable(&r) {
                self.read_barrier().await?;
            }
            if self.alarms.corrupt() {
                return Err(Error::Corrupt);
            }
            let view = self.store.read();
            // Read-only: there are no puts, so no lease is ever looked up.
            return txn::txn(&mut txn::ReadOnly(&view), &|_| false, &r);
        }
        match self.propose(Request::Txn(r)).await? {
            Response::Txn(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Compact; with `physical`, waits until old versions are removed.
    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        let (rev, physical) = (r.revision, r.physical);
        match self.propose(Request::Compaction(r)).await? {
            Response::Compact(c) => {
                if physical {
                    self.compactor.wait_finished(rev).await;
                }
                Ok(c)
            }
            other => Err(unexpected(other)),
        }
    }
}

pub(crate) fn unexpected(r: Response) -> Error {
    Error::internal(format!("unexpected apply result {r:?}"))
}

/// Removes snapshot checkpoints a crash left behind.
fn remove_leftover_checkpoints(member_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(member_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("snapshot-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Opens this member's raft log, or creates it at the first start: for a
/// new cluster, from `--initial-cluster` (member ids derived as etcd
/// derives them); for `--initial-cluster-state existing`, from the member
/// table of the running cluster, which must already list this member's peer
/// URLs (`member add`). Returns the member id, the cluster id and the log.
async fn open_or_bootstrap(db: &Arc<Db>, cfg: &ServerConfig) -> Result<(u64, u64, RaftStorage)> {
    use crate::proto::etcdserverpb::Member;
    use crate::proto::oxcdpb::MemberTable;
    use crate::storage::Cf;
    if let Some(mut storage) = RaftStorage::open(db.clone())? {
        let (Some(m), Some(c)) = (
            db.get_u64(Cf::Meta, meta_key::MEMBER_ID)?,
            db.get_u64(Cf::Meta, meta_key::CLUSTER_ID)?,
        ) else {
            return Err(Error::internal(
                "data directory has a raft log but no member id",
            ));
        };
        if Members::load(db)?.is_none() {
            // A data directory from before the member table existed: it
            // was a one-member cluster.
            let table = MemberTable {
                members: vec![Member {
                    id: m,
                    name: cfg.name.clone(),
                    peer_ur_ls: cfg.initial_advertise_peer_urls.clone(),
                    client_ur_ls: Vec::new(),
                    is_learner: false,
                }],
                removed: Vec::new(),
            };
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(
                db.cf(Cf::Meta),
                crate::storage::schema::MEMBERS,
                cluster::encode_table(&table),
            );
            db.write_synced(wb)?;
        }
        if storage.first_index() <= 1 {
            // A log that still starts at index 1 (from before new clusters
            // started after it) lacks the bootstrap configuration: drop
            // what is applied, so that a member added later is always sent
            // a snapshot, never this log.
            let applied = db.get_u64(Cf::Meta, meta_key::APPLIED_INDEX)?.unwrap_or(0);
            storage.compact(applied)?;
        }
        return Ok((m, c, storage));
    }
    let mut mine = cfg.initial_advertise_peer_urls.clone();
    mine.sort();
    if cfg.join_existing {
        let others: Vec<String> = cfg
            .initial_cluster
            .iter()
            .filter(|(n, u)| *n != cfg.name && !mine.contains(u))
            .map(|(_, u)| u.clone())
            .collect();
        let remote = crate::peer::fetch_members(&others).await.map_err(|e| {
            Error::internal(format!("cannot fetch cluster info from peer urls: {e}"))
        })?;
        let me = remote
            .members
            .iter()
            .find(|m| {
                let mut u = m.peer_ur_ls.clone();
                u.sort();
                u == mine
            })
            .ok_or_else(|| {
                Error::internal(format!(
                    "error validating peerURLs: member with peer URLs {} is not in the cluster (add it with 'member add' first)",
                    mine.join(",")
                ))
            })?;
        let member_id = me.id;
        let table = MemberTable {
            members: remote.members.clone(),
            removed: Vec::new(),
        };
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::MEMBER_ID,
            member_id.to_be_bytes(),
        );
        wb.put_cf(
            db.cf(Cf::Meta),
            meta_key::CLUSTER_ID,
            remote.cluster_id.to_be_bytes(),
        );
        wb.put_cf(
            db.cf(Cf::Meta),
            crate::storage::schema::MEMBERS,
            cluster::encode_table(&table),
        );
        db.write_synced(wb)?;
        let storage = RaftStorage::bootstrap_joining(db.clone())?;
        return Ok((member_id, remote.cluster_id, storage));
    }
    // A new cluster: every member from --initial-cluster, grouped by name.
    let mut members: Vec<Member> = Vec::new();
    for (name, url) in &cfg.initial_cluster {
        match members.iter_mut().find(|m| m.name == *name) {
            Some(m) => m.peer_ur_ls.push(url.clone()),
            None => members.push(Member {
                name: name.clone(),
                peer_ur_ls: vec![url.clone()],
                ..Default::default()
            }),
        }
    }
    for m in &mut members {
        m.id = cluster::member_id(&m.peer_ur_ls, &cfg.initial_cluster_token);
    }
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let member_id = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .ok_or_else(|| {
            Error::internal(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            ))
        })?;
    let cluster_id = cluster::cluster_id(&ids);
    // The log starts after index 1, which counts as applied: a member added
    // later then always starts from a snapshot of the state (which holds
    // this configuration), never from a log that lacks it.
    let table = MemberTable {
        members,
        removed: Vec::new(),
    };
    let mut wb = rocksdb::WriteBatch::default();
    let meta = db.cf(Cf::Meta);
    wb.put_cf(meta, meta_key::MEMBER_ID, member_id.to_be_bytes());
    wb.put_cf(meta, meta_key::CLUSTER_ID, cluster_id.to_be_bytes());
    wb.put_cf(
        meta,
        crate::storage::schema::MEMBERS,
        cluster::encode_table(&table),
    );
    wb.put_cf(meta, meta_key::APPLIED_INDEX, 1u64.to_be_bytes());
    wb.put_cf(meta, meta_key::APPLIED_TERM, 1u64.to_be_bytes());
    db.write_synced(wb)?;
    let storage = RaftStorage::bootstrap_after(db.clone(), ids, 1)?;
    Ok((member_id, cluster_id, storage))
}
