//! The thread that owns raft-rs's `RawNode`.
//!
//! It ticks the node on the heartbeat interval, feeds it proposals and
//! read-index requests, and runs the `Ready` loop exactly as raft-rs asks:
//! send messages, hand committed entries to the applier, append entries and
//! the hard state in one synced write, send persisted messages, `advance`,
//! then process the `LightReady` the same way. Everything that arrives while
//! one fsync runs is proposed together and persisted by the next one (group
//! commit).
//!
//! The raft layer knows nothing about etcd: entries are opaque bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use raft::prelude::{
    ConfChange, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use raft::{Config, RawNode, Ready, SnapshotStatus, StateRole};
use tokio::sync::oneshot;

use super::storage::RaftStorage;
use crate::error::{Error, Result};

/// Requests to the raft thread.
pub enum RaftMsg {
    /// Append `data` to the log; `id` identifies the proposal if raft drops it.
    Propose { id: u64, data: Vec<u8> },
    /// Ask for a read index; the reply is the commit index to wait for.
    ReadIndex { reply: oneshot::Sender<u64> },
    /// Propose a configuration change; `id` identifies the proposal if
    /// raft drops it.
    ProposeConfChange { id: u64, cc: ConfChange },
    /// A message from a peer.
    Step(Box<Message>),
    /// The transport could not deliver to this member.
    Unreachable(u64),
    /// How sending a snapshot to a member ended.
    SnapshotStatus { to: u64, ok: bool },
    /// Hand leadership to this member (Maintenance.MoveLeader).
    TransferLeader(u64),
    /// The leader's view of every member's replication progress.
    Progress {
        reply: oneshot::Sender<ProgressView>,
    },
}

/// What a member knows about replication to the others (on the leader).
#[derive(Debug, Clone, Default)]
pub struct ProgressView {
    pub is_leader: bool,
    pub last_index: u64,
    pub peers: Vec<PeerProgress>,
}

#[derive(Debug, Clone)]
pub struct PeerProgress {
    pub id: u64,
    pub matched: u64,
    pub recent_active: bool,
    pub learner: bool,
}

/// Sends raft messages to other members. Called on the raft thread; must
/// not block.
pub trait Transport: Send + Sync {
    fn send(&self, msgs: Vec<Message>);
    /// A member left the configuration: drop what is kept for it.
    fn forget(&self, _id: u64) {}
}

/// Raft facts other threads read: term, leader, commit and applied indexes.
#[derive(Debug, Default)]
pub struct RaftStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit: AtomicU64,
    pub applied: AtomicU64,
    /// This member leads and is the only voter: every committed entry is
    /// committed by it alone, so its applied state already holds every
    /// acknowledged write and a linearizable read needs no ReadIndex.
    pub sole_voter_leader: AtomicBool,
    /// Client requests (proposals, reads, configuration changes) in the
    /// inbox: they may fill only part of it, the rest is kept for peers.
    pub queued_requests: AtomicI64,
}

/// Settings of the raft thread.
pub struct NodeConfig {
    pub id: u64,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// The index the state machine has applied (from the state, not the log).
    pub applied: u64,
    /// Compact the log once this many entries are applied beyond its start.
    pub snapshot_count: u64,
    /// Entries kept behind the applied index when compacting.
    pub catchup_entries: u64,
    /// The range `[min, max)` the election timeout is drawn from, in ticks;
    /// `None`: raft's default, `[election_ticks, 2 * election_ticks)`.
    pub election_range: Option<(usize, usize)>,
}

/// How many requests the raft thread's inbox holds. The thread drains it
/// whole before each Ready, so it fills only when requests arrive faster
/// than raft persists and applies them; past that, proposals and reads are
/// refused with etcd's "too many requests" and peer messages are dropped
/// (raft resends what matters) instead of queueing without bound.
pub const INBOX: usize = 8192;

/// Handle for sending requests to the raft thread.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::SyncSender<RaftMsg>,
    /// How many of the inbox's places client requests may take (three
    /// quarters); the rest is kept for peer messages, so that heartbeats
    /// and appends still get in under a flood of proposals.
    client_share: i64,
    pub status: Arc<RaftStatus>,
}

impl RaftHandle {
    /// A handle and the inbox it feeds, holding at most `capacity`
    /// requests.
    pub fn channel(
        capacity: usize,
        status: Arc<RaftStatus>,
    ) -> (RaftHandle, mpsc::Receiver<RaftMsg>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let client_share = (capacity as i64 * 3 / 4).max(1);
        (
            RaftHandle {
                tx,
                client_share,
                status,
            },
            rx,
        )
    }

    /// Queues a proposal; refused when client requests fill their share
    /// of the inbox or the raft thread has stopped.
    pub fn propose(&self, id: u64, data: Vec<u8>) -> Result<()> {
        self.send_request(RaftMsg::Propose { id, data })
    }

    /// Queues a configuration change.
    pub fn propose_conf_change(&self, id: u64, cc: ConfChange) -> Result<()> {
        self.send_request(RaftMsg::ProposeConfChange { id, cc })
    }

    /// Queues a client request, within the client share of the inbox.
    fn send_request(&self, msg: RaftMsg) -> Result<()> {
        let queued = &self.status.queued_requests;
        if queued.fetch_add(1, Ordering::AcqRel) >= self.client_share {
            queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::TooManyRequests);
        }
        self.send(msg).inspect_err(|_| {
            queued.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Queues any request for the raft thread without waiting:
    /// `TooManyRequests` when the inbox is full, `Stopped` when the thread
    /// is gone.
    pub fn send(&self, msg: RaftMsg) -> Result<()> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Error::TooManyRequests,
            mpsc::TrySendError::Disconnected(_) => Error::Stopped,
        })
    }

    /// Queues a request that must not be lost (how a snapshot send
    /// ended), waiting for room in the inbox off the async runtime.
    pub async fn send_waiting(&self, msg: RaftMsg) -> Result<()> {
        let tx = self.tx.clone();
        match tokio::task::spawn_blocking(move || tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::Stopped),
        }
    }

    /// The leader's view of replication (empty on followers).
    pub async fn progress(&self) -> Result<ProgressView> {
        let (reply, rx) = oneshot::channel();
        self.send(RaftMsg::Progress { reply })?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Asks for a read index.
    pub fn read_index(&self) -> Result<oneshot::Receiver<u64>> {
        let (reply, rx) = oneshot::channel();
        self.send_request(RaftMsg::ReadIndex { reply })?;
        Ok(rx)
    }
}

/// Applies a configuration change to raft and returns the new
/// configuration.
pub type ApplyToRaft<'a> = &'a mut dyn FnMut(&ConfChange) -> Result<ConfState>;

/// The raft log as the runner drives it: raft-rs's read side
/// ([`raft::Storage`]) and the writes of the Ready loop. [`RaftStorage`]
/// keeps it in RocksDB; the test harness keeps it in memory.
pub trait LogStore: raft::Storage + Send + 'static {
    /// What installing a snapshot writes on the log's side, handed to the
    /// applier so that it goes to disk together with the new state.
    type SnapshotWrites;
    /// The stored hard state.
    fn hard_state(&self) -> HardState;
    /// The index of the first entry still in the log.
    fn log_start(&self) -> u64;
    /// Appends entries (replacing any conflicting suffix) and stores the
    /// hard state: durable when it returns.
    fn append(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<()>;
    /// Records a new commit index (need not be durable).
    fn set_commit(&mut self, commit: u64) -> Result<()>;
    /// Removes entries up to and including `index` (already applied).
    fn compact(&mut self, index: u64) -> Result<()>;
    /// The configuration after an applied change.
    fn set_conf_state(&mut self, cs: ConfState);
    /// Voters and learners of the current configuration.
    fn conf_members(&self) -> Vec<u64>;
    /// A follower has the last snapshot made for it: it need not be kept.
    fn release_snapshot(&mut self);
    /// A received snapshot raft did not take: remove what it refers to.
    fn discard_snapshot(&mut self, snap_data: &[u8]);
    /// The log's side of installing `snap`, with `hs`, the hard state of
    /// the Ready that brought it.
    fn snapshot_writes(
        &self,
        snap: &Snapshot,
        hs: Option<&HardState>,
    ) -> Result<Self::SnapshotWrites>;
    /// Records in memory what the snapshot writes will make durable.
    fn restored(&mut self, snap: &Snapshot, hs: Option<&HardState>);
}

impl LogStore for RaftStorage {
    type SnapshotWrites = rocksdb::WriteBatch;

    fn hard_state(&self) -> HardState {
        RaftStorage::hard_state(self).clone()
    }

    fn log_start(&self) -> u64 {
        RaftStorage::first_index(self)
    }

    fn append(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        RaftStorage::append(self, entries, hs)
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        RaftStorage::set_commit(self, commit)
    }

    fn compact(&mut self, index: u64) -> Result<()> {
        RaftStorage::compact(self, index)
    }

    fn set_conf_state(&mut self, cs: ConfState) {
        RaftStorage::set_conf_state(self, cs);
    }

    fn conf_members(&self) -> Vec<u64> {
        RaftStorage::conf_members(self)
    }

    fn release_snapshot(&mut self) {
        RaftStorage::release_snapshot(self);
    }

    fn discard_snapshot(&mut self, snap_data: &[u8]) {
        // The data names the directory the snapshot's files were received in.
        let path = String::from_utf8_lossy(snap_data).into_owned();
        tracing::info!(dir = %path, "raft ignored a received snapshot");
        let _ = std::fs::remove_dir_all(path);
    }

    fn snapshot_writes(
        &self,
        snap: &Snapshot,
        hs: Option<&HardState>,
    ) -> Result<rocksdb::WriteBatch> {
        let mut wb = rocksdb::WriteBatch::default();
        RaftStorage::snapshot_writes(self, &mut wb, snap, hs)?;
        Ok(wb)
    }

    fn restored(&mut self, snap: &Snapshot, hs: Option<&HardState>) {
        RaftStorage::restored(self, snap, hs);
    }
}

/// Where committed entries go, in order. Called on the raft thread right
/// after the entries are committed. `W` is the log's side of a snapshot
/// install ([`LogStore::SnapshotWrites`]).
pub trait ApplySink<W = rocksdb::WriteBatch>: Send {
    /// Normal entries.
    fn apply(&mut self, entries: Vec<Entry>);
    /// A configuration change entry: validated against the member table,
    /// then (if valid) applied to raft through `to_raft` and persisted.
    /// Returns the new configuration if it changed.
    fn conf_change(&mut self, entry: &Entry, to_raft: ApplyToRaft<'_>) -> Option<ConfState>;
    /// Starts replacing the state with a snapshot received from the
    /// leader. `raft_writes` holds the raft log's side, to be written with
    /// it. The returned job does the work off the raft thread (which keeps
    /// ticking and hearing from the leader meanwhile and applies nothing);
    /// then [`ApplySink::installed`] runs on the raft thread.
    fn install_snapshot(&mut self, snap: &Snapshot, raft_writes: W) -> Result<InstallJob>;
    /// The install job of `snap` ended well: the state holds it.
    fn installed(&mut self, snap: &Snapshot);
}

/// The part of a snapshot install that runs off the raft thread.
pub type InstallJob = Box<dyn FnOnce() -> Result<()> + Send>;

/// A snapshot install under way: the messages its Ready sends once it is
/// persisted wait for it.
struct Installing {
    snap: Snapshot,
    persisted: Vec<Message>,
    job: Option<InstallJob>,
}

/// Callback for proposals raft refused (no leader known); receives the id.
pub type OnDropped = Box<dyn Fn(u64) + Send>;

/// Starts the raft thread. Committed entries go to `applier`, in order.
/// `status` is shared with the applier, which records the applied index.
pub fn spawn(
    cfg: NodeConfig,
    storage: RaftStorage,
    status: Arc<RaftStatus>,
    applier: Box<dyn ApplySink>,
    on_dropped: OnDropped,
    transport: Arc<dyn Transport>,
    logger: slog::Logger,
) -> Result<(RaftHandle, thread::JoinHandle<()>)> {
    let mut runner = Runner::new(
        cfg,
        storage,
        status.clone(),
        applier,
        on_dropped,
        transport,
        &logger,
    )?;
    let (handle, rx) = RaftHandle::channel(INBOX, status);
    let join = thread::Builder::new()
        .name("raft".into())
        .spawn(move || runner.run(rx))
        .map_err(|e| Error::internal(format!("spawn raft thread: {e}")))?;
    Ok((handle, join))
}

/// The raft logic of one member: what to do with each request, each tick
/// and each Ready. [`Runner::run`] drives it on the raft thread with the
/// wall clock; the test harness drives it step by step.
pub struct Runner<S: LogStore> {
    node: RawNode<S>,
    cfg: NodeConfig,
    status: Arc<RaftStatus>,
    applier: Box<dyn ApplySink<S::SnapshotWrites>>,
    on_dropped: OnDropped,
    transport: Arc<dyn Transport>,
    /// Pending read-index requests by context.
    reads: HashMap<u64, oneshot::Sender<u64>>,
    next_read: u64,
    installing: Option<Installing>,
}

impl<S: LogStore> Runner<S> {
    /// A member resuming from `storage`, whose state machine has applied
    /// up to `cfg.applied`.
    pub fn new(
        cfg: NodeConfig,
        mut storage: S,
        status: Arc<RaftStatus>,
        applier: Box<dyn ApplySink<S::SnapshotWrites>>,
        on_dropped: OnDropped,
        transport: Arc<dyn Transport>,
        logger: &slog::Logger,
    ) -> Result<Runner<S>> {
        // The applied index can run ahead of the stored commit index (the
        // commit index is written without sync): anything applied was
        // committed.
        if cfg.applied > storage.hard_state().commit {
            storage.set_commit(cfg.applied)?;
        }
        status.applied.store(cfg.applied, Ordering::Release);
        let (min_election_tick, max_election_tick) = cfg.election_range.unwrap_or((0, 0));
        let raft_cfg = Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            min_election_tick,
            max_election_tick,
            applied: cfg.applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(Error::internal)?;
        let mut node = RawNode::new(&raft_cfg, storage, logger).map_err(Error::internal)?;
        let voters = node
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .collect::<Vec<_>>();
        if voters == [cfg.id] {
            // A single voter needs no election timeout to elect itself.
            node.campaign().map_err(Error::internal)?;
        }
        Ok(Runner {
            node,
            cfg,
            status,
            applier,
            on_dropped,
            transport,
            reads: HashMap::new(),
            installing: None,
            // Not reused across restarts while a leader may still hold an
            // older read of this member.
            next_read: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        })
    }

    /// The raft thread's loop: requests as they come, a tick every
    /// `cfg.tick`, a Ready after each round. Ends when every handle is gone.
    pub fn run(&mut self, rx: mpsc::Receiver<RaftMsg>) {
        let mut last_tick = Instant::now();
        // The initial campaign may already have produced a Ready.
        if let Err(e) = self.on_ready() {
            crate::process::fatal("raft storage", &e);
        }
        let (done_tx, done_rx) = mpsc::channel();
        loop {
            let wait = self.cfg.tick.saturating_sub(last_tick.elapsed());
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.handle(msg);
                    // Take everything already queued: one Ready, one
                    // fsync; but a snapshot raft took goes into a Ready of
                    // its own, without entries after it (see on_ready).
                    while self.node.raft.raft_log.unstable_snapshot().is_none()
                        && let Ok(msg) = rx.try_recv()
                    {
                        self.handle(msg);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if last_tick.elapsed() >= self.cfg.tick {
                self.tick();
                // A fixed period, not one that drifts by each late wake-up
                // (unless a stall left it more than a tick behind).
                last_tick += self.cfg.tick;
                if last_tick.elapsed() >= self.cfg.tick {
                    last_tick = Instant::now();
                }
            }
            // A finished install is seen within a tick.
            if let Ok(result) = done_rx.try_recv()
                && let Err(e) = self.installed(result)
            {
                crate::process::fatal("installing a snapshot", &e);
            }
            if let Err(e) = self.on_ready() {
                crate::process::fatal("raft storage", &e);
            }
            if let Some(job) = self.take_install_job() {
                let done = done_tx.clone();
                let spawned = thread::Builder::new()
                    .name("raft-install".into())
                    .spawn(move || {
                        // A panic is a fault like any other: it must not
                        // leave the raft thread waiting forever.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                            .unwrap_or_else(|_| {
                                Err(Error::internal("the snapshot install panicked"))
                            });
                        let _ = done.send(result);
                    });
                if let Err(e) = spawned {
                    crate::process::fatal("spawning the snapshot install", &e);
                }
            }
        }
    }

    /// The work of the snapshot install the last Ready started, to run off
    /// the raft thread; [`Runner::installed`] with its result when it ends.
    pub fn take_install_job(&mut self) -> Option<InstallJob> {
        self.installing.as_mut().and_then(|i| i.job.take())
    }

    /// Whether a snapshot install is under way.
    pub fn is_installing(&self) -> bool {
        self.installing.is_some()
    }

    /// The install job ended: on success the messages that waited for it
    /// go out and Readies resume. An error is a storage fault.
    pub fn installed(&mut self, result: Result<()>) -> Result<()> {
        let Some(i) = self.installing.take() else {
            return Ok(());
        };
        result?;
        self.finish_install(&i.snap);
        self.send_messages(i.persisted);
        Ok(())
    }

    fn finish_install(&mut self, snap: &Snapshot) {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        self.applier.installed(snap);
        self.status.applied.store(index, Ordering::Release);
        tracing::info!(index, term, "installed a snapshot from the leader");
    }

    /// One tick of raft's logical clock.
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// The raft node, for what the harness inspects.
    #[cfg(test)]
    pub(crate) fn node(&self) -> &RawNode<S> {
        &self.node
    }

    /// The raft node, for the harness's planted faults.
    #[cfg(test)]
    pub(crate) fn node_mut(&mut self) -> &mut RawNode<S> {
        &mut self.node
    }

    /// Handles one request.
    pub fn handle(&mut self, msg: RaftMsg) {
        if matches!(
            msg,
            RaftMsg::Propose { .. } | RaftMsg::ReadIndex { .. } | RaftMsg::ProposeConfChange { .. }
        ) {
            self.status.queued_requests.fetch_sub(1, Ordering::AcqRel);
        }
        match msg {
            RaftMsg::Propose { id, .. } | RaftMsg::ProposeConfChange { id, .. }
                if self.installing.is_some() =>
            {
                // Nothing raft produces leaves before the install ends, and
                // a forwarded proposal would wait in memory meanwhile:
                // refused at once instead. (Reads need no such care: the
                // read barrier keeps one ReadIndex in flight at a time.)
                (self.on_dropped)(id);
            }
            RaftMsg::Propose { id, data } => {
                if self.node.propose(vec![], data).is_err() {
                    (self.on_dropped)(id);
                }
            }
            RaftMsg::ReadIndex { reply } => {
                self.next_read += 1;
                let ctx = self.next_read;
                self.reads.insert(ctx, reply);
                // The leader keys pending reads by context: followers'
                // contexts must not collide, so it starts with the member id.
                let mut bytes = self.cfg.id.to_be_bytes().to_vec();
                bytes.extend_from_slice(&ctx.to_be_bytes());
                self.node.read_index(bytes);
            }
            RaftMsg::ProposeConfChange { id, cc } => {
                // raft-rs turns a second pending change into an empty entry
                // whose proposer would wait forever: refuse it here.
                if self.node.raft.has_pending_conf()
                    || self
                        .node
                        .propose_conf_change(id.to_be_bytes().to_vec(), cc)
                        .is_err()
                {
                    (self.on_dropped)(id);
                }
            }
            RaftMsg::Step(m) => {
                let snapshot_dir = (m.get_msg_type() == MessageType::MsgSnapshot)
                    .then(|| m.get_snapshot().get_data().to_vec());
                if let Some(dir) = &snapshot_dir
                    && self.installing.is_some()
                {
                    // One install at a time; the leader sends again if this
                    // one is still needed after it.
                    self.node.mut_store().discard_snapshot(dir);
                    return;
                }
                if let Err(e) = self.node.step(*m) {
                    tracing::debug!(error = %e, "raft step failed");
                }
                if let Some(dir) = snapshot_dir {
                    // A snapshot raft did not take (stale, or already
                    // covered by the log) would leave its files behind.
                    let taken = self
                        .node
                        .raft
                        .raft_log
                        .unstable_snapshot()
                        .as_ref()
                        .is_some_and(|s| s.get_data() == dir.as_slice());
                    if !taken {
                        self.node.mut_store().discard_snapshot(&dir);
                    }
                }
            }
            RaftMsg::Unreachable(id) => self.node.report_unreachable(id),
            RaftMsg::SnapshotStatus { to, ok } => {
                if ok {
                    // The follower has it: the checkpoint's hard links need
                    // not keep old files on disk any longer.
                    self.node.mut_store().release_snapshot();
                }
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
            }
            RaftMsg::TransferLeader(to) => self.node.transfer_leader(to),
            RaftMsg::Progress { reply } => {
                let raft = &self.node.raft;
                let mut view = ProgressView {
                    is_leader: raft.state == StateRole::Leader,
                    last_index: raft.raft_log.last_index(),
                    peers: Vec::new(),
                };
                if view.is_leader {
                    let learners = raft.prs().conf().learners().clone();
                    for (id, pr) in raft.prs().iter() {
                        view.peers.push(PeerProgress {
                            id: *id,
                            matched: pr.matched,
                            recent_active: pr.recent_active || *id == self.cfg.id,
                            learner: learners.contains(id),
                        });
                    }
                }
                let _ = reply.send(view);
            }
        }
    }

    /// Processes raft's Ready, if it has one: messages, snapshot, reads,
    /// committed entries, the durable append, then the LightReady.
    pub fn on_ready(&mut self) -> Result<()> {
        if self.installing.is_some() {
            // The rest waits for the install to finish.
            return Ok(());
        }
        if !self.node.has_ready() {
            self.maybe_compact_log()?;
            return Ok(());
        }
        let mut ready = self.node.ready();
        if let Some(ss) = ready.ss() {
            let previous = self.status.leader.swap(ss.leader_id, Ordering::AcqRel);
            if ss.leader_id != 0 && ss.leader_id != previous {
                crate::metrics::METRICS
                    .leader_changes
                    .fetch_add(1, Ordering::Relaxed);
            }
            if ss.raft_state == StateRole::Leader {
                tracing::info!(
                    member_id = format!("{:x}", self.cfg.id),
                    term = self.node.raft.term,
                    "elected leader"
                );
            }
        }
        // A leader may send appends before its own fsync (raft's
        // pipelining); what depends on the fsync is sent after it.
        self.send_messages(ready.take_messages());
        if !ready.snapshot().is_empty() {
            // raft-rs hands no committed entries with a snapshot. Its hard
            // state goes into the install's write.
            let snap = ready.snapshot().clone();
            let hs = ready.hs().cloned();
            let writes = self.node.store().snapshot_writes(&snap, hs.as_ref())?;
            let job = self.applier.install_snapshot(&snap, writes)?;
            // raft reads the log through the storage from here on; a crash
            // before the job's synced write finds the old log and state.
            self.node.mut_store().restored(&snap, hs.as_ref());
            if ready.entries().is_empty() {
                return self.start_install(ready, snap, job);
            }
            // Entries after the snapshot in the same Ready (the raft
            // thread makes this rare) are appended after it: the install
            // runs here, then the Ready goes on as usual.
            job()?;
            self.finish_install(&snap);
        }
        for rs in ready.take_read_states() {
            self.answer_read(&rs.request_ctx, rs.index);
        }
        self.send_committed(ready.take_committed_entries())?;
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.node.mut_store().append(ready.entries(), ready.hs())?;
        }
        self.send_messages(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.send_messages(light.take_messages());
        self.send_committed(light.take_committed_entries())?;
        self.node.advance_apply();
        self.status
            .term
            .store(self.node.raft.term, Ordering::Release);
        self.status
            .commit
            .store(self.node.raft.raft_log.committed, Ordering::Release);
        let sole = self.node.raft.state == StateRole::Leader
            && self.node.raft.prs().conf().voters().ids().len() == 1;
        self.status.sole_voter_leader.store(sole, Ordering::Release);
        self.maybe_compact_log()
    }

    /// Starts the install of `snap` off the raft thread. raft is told at
    /// once that the snapshot is persisted and applied, so it can go on
    /// ticking and stepping (hearing the leader, keeping its election
    /// timer) on the restored log; nothing it produces leaves before the
    /// install is durable: no Ready is taken until it ends, and the
    /// messages of this one wait for it.
    fn start_install(&mut self, mut ready: Ready, snap: Snapshot, job: InstallJob) -> Result<()> {
        for rs in ready.take_read_states() {
            self.answer_read(&rs.request_ctx, rs.index);
        }
        // A leader's messages (it is a follower now: none).
        self.send_messages(ready.take_messages());
        let persisted = ready.take_persisted_messages();
        let number = ready.number();
        self.node.advance_append_async(ready);
        self.node.on_persist_ready(number);
        self.node.advance_apply_to(snap.get_metadata().index);
        tracing::info!(
            index = snap.get_metadata().index,
            "installing a snapshot from the leader"
        );
        self.installing = Some(Installing {
            snap,
            persisted,
            job: Some(job),
        });
        Ok(())
    }

    fn answer_read(&mut self, ctx: &[u8], index: u64) {
        let Some(rest) = ctx.strip_prefix(&self.cfg.id.to_be_bytes()[..]) else {
            return;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(rest) else {
            return;
        };
        if let Some(reply) = self.reads.remove(&u64::from_be_bytes(bytes)) {
            let _ = reply.send(index);
        }
    }

    fn send_messages(&self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            self.transport.send(msgs);
        }
    }

    /// Hands committed entries to the applier; configuration changes are
    /// applied one by one between the runs of normal entries around them.
    fn send_committed(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if !entries
            .iter()
            .any(|e| e.get_entry_type() != EntryType::EntryNormal)
        {
            self.applier.apply(entries);
            return Ok(());
        }
        let mut run = Vec::new();
        for e in entries {
            if e.get_entry_type() == EntryType::EntryNormal {
                run.push(e);
                continue;
            }
            if !run.is_empty() {
                self.applier.apply(std::mem::take(&mut run));
            }
            let conf = self.node.raft.prs().conf();
            if conf.voters().ids().is_empty() && conf.learners().is_empty() {
                // A member that joined must start from a snapshot, which
                // carries the configuration; log entries without it would
                // make it believe it is alone.
                return Err(Error::internal(
                    "configuration change without a configuration (a joining member was sent log entries instead of a snapshot)",
                ));
            }
            let node = &mut self.node;
            let mut to_raft = |cc: &ConfChange| node.apply_conf_change(cc).map_err(Error::internal);
            if let Some(cs) = self.applier.conf_change(&e, &mut to_raft) {
                let kept: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
                for id in self.node.store().conf_members() {
                    if !kept.contains(&id) {
                        self.transport.forget(id);
                    }
                }
                self.node.mut_store().set_conf_state(cs);
            }
        }
        if !run.is_empty() {
            self.applier.apply(run);
        }
        Ok(())
    }

    /// Drops applied log entries once `snapshot_count` of them accumulate,
    /// keeping `catchup_entries` behind the applied index. The applied
    /// state is already in RocksDB, so the log is not needed to rebuild it.
    fn maybe_compact_log(&mut self) -> Result<()> {
        // Reads abandoned by raft (e.g. on lost leadership) are dropped here
        // so the map cannot grow; their waiters time out.
        if self.reads.len() > 1024 {
            self.reads.retain(|_, r| !r.is_closed());
        }
        let applied = self.status.applied.load(Ordering::Acquire);
        let start = self.node.store().log_start();
        if applied.saturating_sub(start) < self.cfg.snapshot_count {
            return Ok(());
        }
        let upto = applied.saturating_sub(self.cfg.catchup_entries);
        if upto >= start {
            self.node.mut_store().compact(upto)?;
            tracing::debug!(compact_index = upto, "compacted raft log");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal_id(m: RaftMsg) -> Option<u64> {
        match m {
            RaftMsg::Propose { id, .. } => Some(id),
            _ => None,
        }
    }

    /// What the raft thread does when it takes a client request.
    fn take(h: &RaftHandle, rx: &mpsc::Receiver<RaftMsg>) -> Option<u64> {
        let m = rx.try_recv().ok()?;
        h.status.queued_requests.fetch_sub(1, Ordering::AcqRel);
        proposal_id(m)
    }

    #[test]
    fn a_full_inbox_refuses_proposals_and_reads_and_keeps_room_for_peers() {
        let (h, rx) = RaftHandle::channel(4, Arc::new(RaftStatus::default()));
        for id in 1..=3 {
            h.propose(id, vec![]).unwrap();
        }
        // Client requests may take three of the four places.
        assert!(matches!(h.propose(9, vec![1]), Err(Error::TooManyRequests)));
        assert!(matches!(h.read_index(), Err(Error::TooManyRequests)));
        // The last one is a peer's.
        h.send(RaftMsg::Unreachable(7)).unwrap();
        assert!(matches!(
            h.send(RaftMsg::Unreachable(8)),
            Err(Error::TooManyRequests)
        ));
        // The refused requests left nothing behind; room comes back as the
        // raft thread takes requests.
        assert_eq!(take(&h, &rx), Some(1));
        h.propose(4, vec![]).unwrap();
        assert_eq!(take(&h, &rx), Some(2));
        assert_eq!(take(&h, &rx), Some(3));
        assert!(matches!(rx.try_recv(), Ok(RaftMsg::Unreachable(7))));
        assert_eq!(take(&h, &rx), Some(4));
        assert!(rx.try_recv().is_err());
        assert_eq!(h.status.queued_requests.load(Ordering::Acquire), 0);
        drop(rx);
        assert!(matches!(h.propose(5, vec![]), Err(Error::Stopped)));
        assert_eq!(h.status.queued_requests.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn what_must_arrive_waits_for_room_instead_of_being_dropped() {
        let (h, rx) = RaftHandle::channel(1, Arc::new(RaftStatus::default()));
        h.propose(1, vec![]).unwrap();
        let waiting = tokio::spawn({
            let h = h.clone();
            async move {
                h.send_waiting(RaftMsg::SnapshotStatus { to: 2, ok: true })
                    .await
            }
        });
        // The inbox is full: the send cannot complete until it drains.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        let rx = tokio::task::spawn_blocking(move || {
            assert_eq!(rx.recv().ok().and_then(proposal_id), Some(1));
            let next = rx.recv_timeout(Duration::from_secs(10));
            assert!(matches!(
                next,
                Ok(RaftMsg::SnapshotStatus { to: 2, ok: true })
            ));
            rx
        })
        .await
        .unwrap();
        assert!(waiting.await.unwrap().is_ok());
        drop(rx);
        assert!(matches!(
            h.send_waiting(RaftMsg::Unreachable(2)).await,
            Err(Error::Stopped)
        ));
    }
}
