//! A deterministic test harness for the raft runner ([`Runner`]): members
//! with an in-memory log ([`MemLog`]), an in-memory state machine
//! ([`Sink`]), an in-memory network and a manual clock, all driven step by
//! step from a seeded random generator (or a script), with the safety of
//! the whole cluster checked after every step.
//!
//! The runner under test is the production one: the same `handle`, `tick`
//! and `on_ready`, the same conf-change splitting, ignored-snapshot
//! cleanup and read-index contexts; only the log, the applier, the
//! transport and the clock are replaced.
//!
//! What is checked after every step ([`Sim::check`]):
//! - election safety: at most one leader per term;
//! - commit durability: every member's commit index names an entry that a
//!   quorum of voters holds in its *durable* log (or has compacted after
//!   applying it), so no acknowledged write can be lost;
//! - state machine safety: every member applies the same entry at each
//!   index, in order, without gaps or repeats;
//! - read index: an answer is never below the index of a write some member
//!   had applied (so possibly acknowledged) when the read was asked;
//! - at the end ([`Sim::converge`]): once healed, every member applies
//!   every acknowledged write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{GetEntriesContext, RaftState, StateRole, StorageError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use super::node::{
    ApplySink, ApplyToRaft, InstallJob, LogStore, NodeConfig, RaftMsg, RaftStatus, Runner,
    Transport,
};
use crate::error::{Error, Result};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A member's durable raft log: what survives a restart.
#[derive(Debug, Default, Clone)]
pub struct LogState {
    pub hs: HardState,
    pub cs: ConfState,
    /// Index and term of the last entry removed by compaction or a snapshot.
    pub truncated: (u64, u64),
    /// Entries `truncated.0 + 1 ..`.
    pub entries: Vec<Entry>,
    /// Data of snapshots raft ignored (the runner asked to remove them).
    pub discarded: Vec<Vec<u8>>,
    /// Planted fault: appends are acknowledged but not kept across a
    /// restart (an fsync that lies).
    pub lying_fsync: bool,
    /// What a lying fsync really kept (the log, and the state machine of
    /// the same moment: the lying disk loses both).
    pub really_durable: Option<Box<LogState>>,
    really_applied: Option<StateMachine>,
    /// The log before a snapshot install that has not finished: raft
    /// reads the restored log from the start of the install, but a crash
    /// before its synced write finds this one (as `RaftStorage` keeps the
    /// restore in memory until the applier writes it with the state).
    pub before_install: Option<Box<LogState>>,
}

impl LogState {
    /// What a crash now would leave.
    fn durable(&self) -> &LogState {
        self.before_install
            .as_deref()
            .or(self.really_durable.as_deref())
            .unwrap_or(self)
    }

    fn last(&self) -> (u64, u64) {
        self.entries
            .last()
            .map_or(self.truncated, |e| (e.index, e.term))
    }

    /// The term of the entry at `index`, if this log holds it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.truncated.0 {
            return Some(self.truncated.1);
        }
        let first = self.truncated.0 + 1;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize).map(|e| e.term)
    }
}

/// A member's state machine: every applied entry, in order.
#[derive(Debug, Default, Clone)]
pub struct StateMachine {
    pub applied: u64,
    pub applied_term: u64,
    /// (index, term, data) of every applied entry (empty ones included).
    pub log: Vec<(u64, u64, Vec<u8>)>,
    /// Proposal ids applied.
    pub ids: HashSet<u64>,
    /// The configuration as applied.
    pub conf: ConfState,
}

/// State shared by the harness and every member's log and sink.
#[derive(Default)]
struct Shared {
    /// The first (term, data) applied at each index by any member.
    applied_at: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Snapshots made, by their data.
    snapshots: HashMap<Vec<u8>, StateMachine>,
    next_snapshot: u64,
    violations: Vec<String>,
}

/// [`LogStore`] in memory, with the same semantics as `RaftStorage`.
pub struct MemLog {
    id: u64,
    log: Arc<Mutex<LogState>>,
    sm: Arc<Mutex<StateMachine>>,
    shared: Arc<Mutex<Shared>>,
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

impl raft::Storage for MemLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let l = lock(&self.log);
        Ok(RaftState::new(l.hs.clone(), l.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let l = lock(&self.log);
        if low <= l.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > l.last().0 + 1 {
            return Err(unavailable());
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let first = l.truncated.0 + 1;
        let mut out = Vec::new();
        let mut size = 0u64;
        for e in &l.entries[(low - first) as usize..(high - first) as usize] {
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let l = lock(&self.log);
        if idx < l.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        l.term_at(idx).ok_or_else(unavailable)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(lock(&self.log).truncated.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(lock(&self.log).last().0)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The applied state, as RaftStorage checkpoints it.
        let sm = lock(&self.sm).clone();
        let cs = lock(&self.log).cs.clone();
        let mut shared = lock(&self.shared);
        shared.next_snapshot += 1;
        let data = format!("snap-{}-{}", self.id, shared.next_snapshot).into_bytes();
        let mut snap = Snapshot::default();
        snap.set_data(data.clone().into());
        let m = snap.mut_metadata();
        m.index = sm.applied;
        m.term = sm.applied_term;
        m.set_conf_state(cs);
        shared.snapshots.insert(data, sm);
        Ok(snap)
    }
}

impl LogStore for MemLog {
    /// The log the install's job makes durable.
    type SnapshotWrites = Arc<Mutex<LogState>>;

    fn hard_state(&self) -> HardState {
        lock(&self.log).hs.clone()
    }

    fn log_start(&self) -> u64 {
        lock(&self.log).truncated.0 + 1
    }

    fn append(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        let mut l = lock(&self.log);
        if l.lying_fsync && l.really_durable.is_none() {
            l.really_durable = Some(Box::new(l.clone()));
            l.really_applied = Some(lock(&self.sm).clone());
        }
        if let Some(first) = entries.first() {
            if first.index <= l.truncated.0 || first.index > l.last().0 + 1 {
                return Err(Error::internal(format!(
                    "append at {} outside the log ({:?} .. {})",
                    first.index,
                    l.truncated,
                    l.last().0
                )));
            }
            let keep = (first.index - l.truncated.0 - 1) as usize;
            l.entries.truncate(keep);
            l.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hs {
            l.hs = hs.clone();
        }
        Ok(())
    }

    fn set_commit(&mut self, commit: u64) -> Result<()> {
        lock(&self.log).hs.commit = commit;
        Ok(())
    }

    fn compact(&mut self, index: u64) -> Result<()> {
        let mut l = lock(&self.log);
        if index <= l.truncated.0 || index > l.last().0 {
            return Ok(());
        }
        let term = l.term_at(index).ok_or_else(|| Error::internal("no term"))?;
        let drop = (index - l.truncated.0) as usize;
        l.entries.drain(..drop);
        l.truncated = (index, term);
        Ok(())
    }

    fn set_conf_state(&mut self, cs: ConfState) {
        lock(&self.log).cs = cs;
    }

    fn conf_members(&self) -> Vec<u64> {
        let l = lock(&self.log);
        l.cs.voters.iter().chain(&l.cs.learners).copied().collect()
    }

    fn release_snapshot(&mut self) {}

    fn discard_snapshot(&mut self, snap_data: &[u8]) {
        lock(&self.log).discarded.push(snap_data.to_vec());
    }

    fn snapshot_writes(
        &self,
        _snap: &Snapshot,
        _hs: Option<&HardState>,
    ) -> Result<Arc<Mutex<LogState>>> {
        Ok(self.log.clone())
    }

    fn restored(&mut self, snap: &Snapshot, hs: Option<&HardState>) {
        let m = snap.get_metadata();
        let mut l = lock(&self.log);
        let before = l.clone();
        l.before_install = Some(Box::new(before));
        if let Some(hs) = hs {
            l.hs = hs.clone();
        }
        l.entries.clear();
        l.truncated = (m.index, m.term);
        l.cs = m.get_conf_state().clone();
        l.hs.commit = l.hs.commit.max(m.index);
        l.hs.term = l.hs.term.max(m.term);
    }
}

/// What a sink was handed, in order (for tests of the runner's splitting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A run of normal entries (their indexes).
    Entries(Vec<u64>),
    /// A configuration change entry (its index).
    ConfChange(u64),
    /// A snapshot (its index).
    Snapshot(u64),
}

/// [`ApplySink`] in memory: records every entry and checks it against
/// what other members applied at the same index.
pub struct Sink {
    sm: Arc<Mutex<StateMachine>>,
    shared: Arc<Mutex<Shared>>,
    status: Arc<RaftStatus>,
    calls: Arc<Mutex<Vec<Applied>>>,
    id: u64,
}

impl Sink {
    fn record(&self, sm: &mut StateMachine, e: &Entry) {
        let mut shared = lock(&self.shared);
        if e.index != sm.applied + 1 {
            shared.violations.push(format!(
                "member {} applied entry {} after {}",
                self.id, e.index, sm.applied
            ));
        }
        let this = (e.term, e.data.to_vec());
        match shared.applied_at.get(&e.index).cloned() {
            Some(first) if first != this => shared.violations.push(format!(
                "member {} applied {:?} at index {}, another member applied {:?}",
                self.id, this, e.index, first
            )),
            Some(_) => {}
            None => {
                shared.applied_at.insert(e.index, this.clone());
            }
        }
        sm.log.push((e.index, this.0, this.1));
        sm.applied = e.index;
        sm.applied_term = e.term;
        self.status.applied.store(e.index, Ordering::Release);
    }
}

impl ApplySink<Arc<Mutex<LogState>>> for Sink {
    fn apply(&mut self, entries: Vec<Entry>) {
        lock(&self.calls).push(Applied::Entries(entries.iter().map(|e| e.index).collect()));
        let sm_arc = self.sm.clone();
        let mut sm = lock(&sm_arc);
        for e in &entries {
            if e.index <= sm.applied {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal && e.data.len() == 8 {
                let mut id = [0u8; 8];
                id.copy_from_slice(&e.data);
                sm.ids.insert(u64::from_be_bytes(id));
            }
            self.record(&mut sm, e);
        }
    }

    fn conf_change(&mut self, e: &Entry, to_raft: ApplyToRaft<'_>) -> Option<ConfState> {
        lock(&self.calls).push(Applied::ConfChange(e.index));
        let sm_arc = self.sm.clone();
        let mut sm = lock(&sm_arc);
        if e.index <= sm.applied {
            return None;
        }
        let cs = ConfChange::parse_from_bytes(&e.data)
            .ok()
            .and_then(|cc| to_raft(&cc).ok());
        self.record(&mut sm, e);
        if let Some(cs) = &cs {
            sm.conf = cs.clone();
        }
        cs
    }

    fn install_snapshot(
        &mut self,
        snap: &Snapshot,
        log: Arc<Mutex<LogState>>,
    ) -> Result<InstallJob> {
        let index = snap.get_metadata().index;
        let taken = lock(&self.shared)
            .snapshots
            .get(snap.get_data())
            .cloned()
            .ok_or_else(|| Error::internal("unknown snapshot"))?;
        let (sm, calls) = (self.sm.clone(), self.calls.clone());
        // The state and the restored log become durable together.
        Ok(Box::new(move || {
            lock(&calls).push(Applied::Snapshot(index));
            *lock(&sm) = taken;
            lock(&log).before_install = None;
            Ok(())
        }))
    }

    fn installed(&mut self, snap: &Snapshot) {
        self.status
            .applied
            .store(snap.get_metadata().index, Ordering::Release);
    }
}

/// Messages members sent, waiting in the network.
#[derive(Default)]
struct Net {
    in_flight: Vec<Message>,
}

struct NetOut {
    net: Arc<Mutex<Net>>,
}

impl Transport for NetOut {
    fn send(&self, msgs: Vec<Message>) {
        lock(&self.net).in_flight.extend(msgs);
    }
}

/// A running member.
struct Member {
    runner: Runner<MemLog>,
    /// The job of a snapshot install under way, run at a later step.
    install: Option<InstallJob>,
}

/// What survives a member's restart.
struct Durable {
    log: Arc<Mutex<LogState>>,
    sm: Arc<Mutex<StateMachine>>,
    calls: Arc<Mutex<Vec<Applied>>>,
    dropped: Arc<Mutex<Vec<u64>>>,
}

/// A read asked at a member: the answer must be at least `floor`.
struct PendingRead {
    member: usize,
    floor: u64,
    rx: oneshot::Receiver<u64>,
}

/// How often each action happens in a random run (weights).
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub deliver: u32,
    pub duplicate: u32,
    pub drop: u32,
    pub tick: u32,
    pub propose: u32,
    pub read: u32,
    pub partition: u32,
    pub heal: u32,
    pub restart: u32,
    /// A snapshot install under way finishes.
    pub install: u32,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            deliver: 60,
            duplicate: 3,
            drop: 4,
            tick: 25,
            propose: 10,
            read: 3,
            partition: 1,
            heal: 2,
            restart: 1,
            install: 5,
        }
    }
}

/// A simulated cluster.
pub struct Sim {
    pub ids: Vec<u64>,
    members: Vec<Option<Member>>,
    durable: Vec<Durable>,
    net: Arc<Mutex<Net>>,
    shared: Arc<Mutex<Shared>>,
    /// Members in the same group reach each other.
    groups: Vec<u32>,
    rng: StdRng,
    leaders: HashMap<u64, u64>,
    reads: Vec<PendingRead>,
    next_id: u64,
    /// Proposal id -> member it was proposed at.
    proposed: HashMap<u64, usize>,
    acked: HashSet<u64>,
    snapshot_count: u64,
    pub steps: u64,
    /// Reads answered: (member, index).
    pub answered: Vec<(usize, u64)>,
    /// Members started again after a crash.
    pub restarts: u64,
    /// Snapshot installs that ended at a later step than they started.
    pub installs: u64,
    /// Crashes of a member while it was installing a snapshot.
    pub crashed_installing: u64,
    trace: Vec<String>,
    logger: slog::Logger,
}

impl Sim {
    /// `n` members that start a new cluster together, as `--initial-cluster`
    /// bootstraps one: the log starts after index 1 at term 1.
    pub fn new(n: usize, seed: u64) -> Sim {
        Sim::with_snapshot_count(n, seed, 10_000)
    }

    /// As [`Sim::new`], compacting the log every `snapshot_count` applied
    /// entries (keeping 2), so lagging members need snapshots.
    pub fn with_snapshot_count(n: usize, seed: u64, snapshot_count: u64) -> Sim {
        let ids: Vec<u64> = (1..=n as u64).collect();
        let mut sim = Sim {
            ids: ids.clone(),
            members: Vec::new(),
            durable: Vec::new(),
            net: Arc::default(),
            shared: Arc::default(),
            groups: vec![0; n],
            rng: StdRng::seed_from_u64(seed),
            leaders: HashMap::new(),
            reads: Vec::new(),
            next_id: 1,
            proposed: HashMap::new(),
            acked: HashSet::new(),
            snapshot_count,
            steps: 0,
            answered: Vec::new(),
            restarts: 0,
            installs: 0,
            crashed_installing: 0,
            trace: Vec::new(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
        };
        for _ in &ids {
            let cs = ConfState {
                voters: ids.clone(),
                ..Default::default()
            };
            let log = LogState {
                hs: HardState {
                    term: 1,
                    commit: 1,
                    ..Default::default()
                },
                cs: cs.clone(),
                truncated: (1, 1),
                ..Default::default()
            };
            let sm = StateMachine {
                applied: 1,
                applied_term: 1,
                conf: cs,
                ..Default::default()
            };
            sim.durable.push(Durable {
                log: Arc::new(Mutex::new(log)),
                sm: Arc::new(Mutex::new(sm)),
                calls: Arc::default(),
                dropped: Arc::default(),
            });
            sim.members.push(None);
        }
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    fn start(&mut self, i: usize) {
        let d = &self.durable[i];
        let status = Arc::new(RaftStatus::default());
        let applied = lock(&d.sm).applied;
        // Distinct, fixed election timeouts: deterministic runs without
        // endless split votes.
        let election = 10 + 3 * i;
        let cfg = NodeConfig {
            id: self.ids[i],
            tick: std::time::Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            applied,
            snapshot_count: self.snapshot_count,
            catchup_entries: 2,
            election_range: Some((election, election + 1)),
        };
        let log = MemLog {
            id: self.ids[i],
            log: d.log.clone(),
            sm: d.sm.clone(),
            shared: self.shared.clone(),
        };
        let sink = Sink {
            sm: d.sm.clone(),
            shared: self.shared.clone(),
            status: status.clone(),
            calls: d.calls.clone(),
            id: self.ids[i],
        };
        let dropped = d.dropped.clone();
        let runner = Runner::new(
            cfg,
            log,
            status.clone(),
            Box::new(sink),
            Box::new(move |id| lock(&dropped).push(id)),
            Arc::new(NetOut {
                net: self.net.clone(),
            }),
            &self.logger,
        )
        .expect("a member starts");
        self.members[i] = Some(Member {
            runner,
            install: None,
        });
        self.ready(i);
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|x| *x == id)
    }

    fn ready(&mut self, i: usize) {
        let Some(m) = self.members[i].as_mut() else {
            return;
        };
        if let Err(e) = m.runner.on_ready() {
            lock(&self.shared)
                .violations
                .push(format!("member {} failed a Ready: {e}", self.ids[i]));
        }
        if let Some(job) = m.runner.take_install_job() {
            m.install = Some(job);
        }
    }

    /// Whether member `i` is installing a snapshot.
    pub fn is_installing(&self, i: usize) -> bool {
        self.members[i]
            .as_ref()
            .is_some_and(|m| m.runner.is_installing())
    }

    /// Finishes member `i`'s snapshot install, if one is under way.
    pub fn finish_install(&mut self, i: usize) {
        let Some(m) = self.members[i].as_mut() else {
            return;
        };
        let Some(job) = m.install.take() else {
            return;
        };
        let result = job();
        if let Err(e) = m.runner.installed(result) {
            lock(&self.shared)
                .violations
                .push(format!("member {} failed an install: {e}", self.ids[i]));
        }
        self.installs += 1;
        self.note(format!("installed at {}", self.ids[i]));
        self.ready(i);
    }

    /// Finishes every install under way.
    pub fn finish_installs(&mut self) {
        for i in 0..self.ids.len() {
            self.finish_install(i);
        }
    }

    fn note(&mut self, what: String) {
        self.trace.push(format!("{}: {what}", self.steps));
        if self.trace.len() > 60 {
            self.trace.remove(0);
        }
    }

    /// Whether members `a` and `b` (indexes) can talk.
    fn connected(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b] && self.members[a].is_some() && self.members[b].is_some()
    }

    /// Delivers in-flight message `k` (keeping a copy when `duplicate`).
    pub fn deliver(&mut self, k: usize, duplicate: bool) {
        let msg = {
            let mut net = lock(&self.net);
            if k >= net.in_flight.len() {
                return;
            }
            if duplicate {
                net.in_flight[k].clone()
            } else {
                net.in_flight.remove(k)
            }
        };
        let (Some(from), Some(to)) = (self.index_of(msg.from), self.index_of(msg.to)) else {
            return;
        };
        let is_snapshot = msg.get_msg_type() == raft::prelude::MessageType::MsgSnapshot;
        if !self.connected(from, to) {
            self.note(format!(
                "lost {:?} {}->{}",
                msg.get_msg_type(),
                msg.from,
                msg.to
            ));
            self.report_lost(&msg);
            return;
        }
        self.note(format!(
            "deliver {:?} {}->{} term {} idx {} commit {}",
            msg.get_msg_type(),
            msg.from,
            msg.to,
            msg.term,
            msg.index,
            msg.commit
        ));
        let to_id = msg.to;
        if let Some(m) = self.members[to].as_mut() {
            m.runner.handle(RaftMsg::Step(Box::new(msg)));
        }
        self.ready(to);
        if is_snapshot {
            if let Some(m) = self.members[from].as_mut() {
                m.runner.handle(RaftMsg::SnapshotStatus {
                    to: to_id,
                    ok: true,
                });
            }
            self.ready(from);
        }
    }

    /// What the transport tells the sender of a message it could not
    /// deliver: the peer is unreachable, and a snapshot failed.
    fn report_lost(&mut self, msg: &Message) {
        let Some(from) = self.index_of(msg.from) else {
            return;
        };
        if let Some(m) = self.members[from].as_mut() {
            m.runner.handle(RaftMsg::Unreachable(msg.to));
            if msg.get_msg_type() == raft::prelude::MessageType::MsgSnapshot {
                m.runner.handle(RaftMsg::SnapshotStatus {
                    to: msg.to,
                    ok: false,
                });
            }
        }
        self.ready(from);
    }

    /// Delivers every message in flight (and what they cause), up to
    /// `max` deliveries.
    pub fn deliver_all(&mut self, max: usize) {
        for _ in 0..max {
            if lock(&self.net).in_flight.is_empty() {
                return;
            }
            self.deliver(0, false);
            self.check();
        }
    }

    pub fn tick(&mut self, i: usize) {
        if let Some(m) = self.members[i].as_mut() {
            m.runner.tick();
        }
        self.ready(i);
    }

    pub fn tick_all(&mut self) {
        for i in 0..self.ids.len() {
            self.tick(i);
        }
    }

    /// Proposes a new write at member `i`; returns its id.
    pub fn propose(&mut self, i: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(m) = self.members[i].as_mut() {
            m.runner.handle(RaftMsg::Propose {
                id,
                data: id.to_be_bytes().to_vec(),
            });
            self.proposed.insert(id, i);
        }
        self.note(format!("propose {id} at {}", self.ids[i]));
        self.ready(i);
        id
    }

    /// Proposes a configuration change at member `i`.
    pub fn propose_conf_change(&mut self, i: usize, cc: ConfChange) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(m) = self.members[i].as_mut() {
            m.runner.handle(RaftMsg::ProposeConfChange { id, cc });
        }
        self.ready(i);
    }

    /// Asks member `i` for a read index.
    pub fn read(&mut self, i: usize) {
        let floor = self
            .durable
            .iter()
            .map(|d| lock(&d.sm).applied)
            .max()
            .unwrap_or(0);
        if let Some(m) = self.members[i].as_mut() {
            let (reply, rx) = oneshot::channel();
            m.runner.handle(RaftMsg::ReadIndex { reply });
            self.reads.push(PendingRead {
                member: i,
                floor,
                rx,
            });
        }
        self.ready(i);
    }

    /// Reads answered so far: (member, answer).
    fn collect_reads(&mut self) -> Vec<(usize, u64)> {
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for mut r in std::mem::take(&mut self.reads) {
            match r.rx.try_recv() {
                Ok(index) => {
                    if index < r.floor {
                        lock(&self.shared).violations.push(format!(
                            "read at member {} answered index {index}, below {} applied before it was asked",
                            self.ids[r.member], r.floor
                        ));
                    }
                    done.push((r.member, index));
                }
                Err(oneshot::error::TryRecvError::Empty) => keep.push(r),
                Err(oneshot::error::TryRecvError::Closed) => {}
            }
        }
        self.reads = keep;
        done
    }

    /// Splits the members into two groups: `minority` and the rest.
    pub fn partition(&mut self, minority: &[usize]) {
        for (i, g) in self.groups.iter_mut().enumerate() {
            *g = u32::from(minority.contains(&i));
        }
        self.note(format!("partition {minority:?}"));
    }

    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
        self.note("heal".into());
    }

    /// Stops member `i`: what it did not persist is gone.
    pub fn crash(&mut self, i: usize) {
        if self.is_installing(i) {
            self.crashed_installing += 1;
        }
        self.members[i] = None;
        let mut l = lock(&self.durable[i].log);
        if let Some(before) = l.before_install.take() {
            // The install's job never ran: the old log and state stand.
            *l = *before;
        }
        if let Some(real) = l.really_durable.take() {
            if let Some(sm) = l.really_applied.take() {
                *lock(&self.durable[i].sm) = sm;
            }
            *l = *real;
            l.lying_fsync = true;
        }
        drop(l);
        self.note(format!("crash {}", self.ids[i]));
    }

    pub fn restart(&mut self, i: usize) {
        self.restarts += 1;
        self.crash(i);
        self.start(i);
        self.note(format!("restart {}", self.ids[i]));
    }

    /// Makes member `i`'s log acknowledge appends it then loses on a crash.
    pub fn plant_lying_fsync(&mut self, i: usize) {
        lock(&self.durable[i].log).lying_fsync = true;
    }

    /// Planted bug: the leader advances its commit index to its last
    /// entry, whether or not a quorum has it.
    pub fn plant_commit_without_quorum(&mut self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let Some(m) = self.members[l].as_mut() else {
            return false;
        };
        let node = m.runner.node_mut();
        let last = node.raft.raft_log.last_index();
        node.raft.raft_log.committed = last;
        true
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.members[i].is_some()
    }

    /// The member that leads in the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.ids.len())
            .filter_map(|i| {
                let r = &self.members[i].as_ref()?.runner.node().raft;
                (r.state == StateRole::Leader).then_some((r.term, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Whether member `i` is up and believes it leads.
    pub fn is_leader(&self, i: usize) -> bool {
        self.members[i]
            .as_ref()
            .is_some_and(|m| m.runner.node().raft.state == StateRole::Leader)
    }

    pub fn commit_of(&self, i: usize) -> u64 {
        self.members[i]
            .as_ref()
            .map_or(0, |m| m.runner.node().raft.raft_log.committed)
    }

    pub fn applied_of(&self, i: usize) -> u64 {
        lock(&self.durable[i].sm).applied
    }

    pub fn state_machine(&self, i: usize) -> StateMachine {
        lock(&self.durable[i].sm).clone()
    }

    pub fn log_state(&self, i: usize) -> LogState {
        lock(&self.durable[i].log).clone()
    }

    pub fn sink_calls(&self, i: usize) -> Vec<Applied> {
        lock(&self.durable[i].calls).clone()
    }

    pub fn dropped(&self, i: usize) -> Vec<u64> {
        lock(&self.durable[i].dropped).clone()
    }

    /// A sink on member `i`'s state machine (for planting faults).
    pub fn sink_for(&self, i: usize) -> Sink {
        Sink {
            sm: self.durable[i].sm.clone(),
            shared: self.shared.clone(),
            status: Arc::new(RaftStatus::default()),
            calls: self.durable[i].calls.clone(),
            id: self.ids[i],
        }
    }

    /// Delivers a message by hand (for scripted scenarios).
    pub fn step(&mut self, i: usize, msg: Message) {
        if let Some(m) = self.members[i].as_mut() {
            m.runner.handle(RaftMsg::Step(Box::new(msg)));
        }
        self.ready(i);
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }

    /// Checks the cluster's safety now; records any violation.
    pub fn check(&mut self) {
        self.steps += 1;
        let mut found = Vec::new();
        for i in 0..self.ids.len() {
            let Some(m) = self.members[i].as_ref() else {
                continue;
            };
            let r = &m.runner.node().raft;
            if r.state == StateRole::Leader {
                match self.leaders.get(&r.term) {
                    Some(l) if *l != self.ids[i] => found.push(format!(
                        "two leaders in term {}: {} and {}",
                        r.term, l, self.ids[i]
                    )),
                    _ => {
                        self.leaders.insert(r.term, self.ids[i]);
                    }
                }
            }
            let commit = r.raft_log.committed;
            let Ok(term) = r.raft_log.term(commit) else {
                continue;
            };
            let voters: Vec<u64> = r.prs().conf().voters().ids().iter().collect();
            let holding = voters
                .iter()
                .filter_map(|v| self.index_of(*v))
                .filter(|j| {
                    let l = lock(&self.durable[*j].log);
                    let durable = l.durable();
                    durable.term_at(commit) == Some(term) || durable.truncated.0 >= commit
                })
                .count();
            if holding < voters.len() / 2 + 1 {
                found.push(format!(
                    "member {} committed index {commit} (term {term}), durable on only {holding} of {} voters",
                    self.ids[i],
                    voters.len()
                ));
            }
            if self.applied_of(i) > commit.max(lock(&self.durable[i].log).truncated.0) {
                found.push(format!(
                    "member {} applied {} beyond its commit index {commit}",
                    self.ids[i],
                    self.applied_of(i)
                ));
            }
        }
        for (id, i) in &self.proposed {
            if lock(&self.durable[*i].sm).ids.contains(id) {
                self.acked.insert(*id);
            }
        }
        let done = self.collect_reads();
        self.answered.extend(done);
        if !found.is_empty() {
            lock(&self.shared).violations.extend(found);
        }
    }

    /// One random action, then the check.
    pub fn random_step(&mut self, mix: &Mix) {
        let n = self.ids.len();
        let weights = [
            mix.deliver,
            mix.duplicate,
            mix.drop,
            mix.tick,
            mix.propose,
            mix.read,
            mix.partition,
            mix.heal,
            mix.restart,
            mix.install,
        ];
        let total: u32 = weights.iter().sum();
        let mut pick = self.rng.random_range(0..total);
        let mut action = 0;
        for (k, w) in weights.iter().enumerate() {
            if pick < *w {
                action = k;
                break;
            }
            pick -= w;
        }
        let in_flight = lock(&self.net).in_flight.len();
        let i = self.rng.random_range(0..n);
        match action {
            0 | 1 if in_flight > 0 => {
                let k = self.rng.random_range(0..in_flight);
                self.deliver(k, action == 1);
            }
            2 if in_flight > 0 => {
                let k = self.rng.random_range(0..in_flight);
                let m = lock(&self.net).in_flight.remove(k);
                self.note(format!("drop {:?} {}->{}", m.get_msg_type(), m.from, m.to));
                self.report_lost(&m);
            }
            4 => {
                self.propose(i);
            }
            5 => self.read(i),
            6 => {
                let size = self.rng.random_range(1..=n / 2);
                let mut minority: Vec<usize> = Vec::new();
                while minority.len() < size {
                    let j = self.rng.random_range(0..n);
                    if !minority.contains(&j) {
                        minority.push(j);
                    }
                }
                self.partition(&minority);
            }
            7 => self.heal(),
            8 => {
                // At most a minority down at once.
                let down = (0..n).filter(|j| !self.is_up(*j)).count();
                if self.is_up(i) && down < (n - 1) / 2 {
                    self.crash(i);
                } else if !self.is_up(i) {
                    self.restarts += 1;
                    self.start(i);
                    self.note(format!("start {}", self.ids[i]));
                }
            }
            9 => self.finish_install(i),
            _ => self.tick(i),
        }
        self.check();
    }

    /// Heals the network, starts every member, and runs rounds of ticks
    /// and deliveries until every member has applied the same index and
    /// every acknowledged write (at most `rounds` rounds); records a
    /// violation if that does not happen.
    pub fn converge(&mut self, rounds: usize) {
        self.heal();
        for i in 0..self.ids.len() {
            if !self.is_up(i) {
                self.start(i);
            }
        }
        for _ in 0..rounds {
            self.finish_installs();
            self.tick_all();
            self.deliver_all(10_000);
            let applied: Vec<u64> = (0..self.ids.len()).map(|i| self.applied_of(i)).collect();
            let commits: Vec<u64> = (0..self.ids.len()).map(|i| self.commit_of(i)).collect();
            let all_have = (0..self.ids.len()).all(|i| {
                let sm = lock(&self.durable[i].sm);
                self.acked.iter().all(|id| sm.ids.contains(id))
            });
            if self.leader().is_some()
                && all_have
                && applied.iter().all(|a| *a == applied[0])
                && commits.iter().all(|c| *c == applied[0])
            {
                return;
            }
        }
        let lost: Vec<u64> = {
            let mut v: Vec<u64> = self
                .acked
                .iter()
                .filter(|id| {
                    (0..self.ids.len()).any(|i| !lock(&self.durable[i].sm).ids.contains(id))
                })
                .copied()
                .collect();
            v.sort_unstable();
            v
        };
        let applied: Vec<u64> = (0..self.ids.len()).map(|i| self.applied_of(i)).collect();
        lock(&self.shared).violations.push(format!(
            "no convergence after {rounds} rounds: applied {applied:?}, acknowledged writes missing somewhere: {lost:?}"
        ));
    }

    /// Snapshots installed, on every member.
    pub fn snapshots_installed(&self) -> usize {
        (0..self.ids.len())
            .map(|i| {
                self.sink_calls(i)
                    .iter()
                    .filter(|c| matches!(c, Applied::Snapshot(_)))
                    .count()
            })
            .sum()
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.acked.len()
    }

    /// The last actions, for a failure message.
    pub fn trace(&self) -> String {
        self.trace.join("\n")
    }
}

#[cfg(test)]
mod tests;
