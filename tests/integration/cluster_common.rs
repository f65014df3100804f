//! Multi-member clusters of the real binary on 127.0.0.1, with a fault
//! proxy in front of every member's peer port.
//!
//! Every member advertises the proxy's address as its peer URL, so all raft
//! traffic *to* a member passes its proxy (an oxcd member sends to a peer
//! only over connections it opens to that peer's URL). Blocking a member's
//! proxy cuts everything it would receive from the others (appends, votes,
//! responses to its own requests): it is isolated. (etcd members also
//! receive over connections they open themselves, so this proxy does not
//! isolate an etcd member; etcd runs here only for membership checks.)
//! Every process and proxy stops by itself when the test's `Cluster` is
//! dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxcd::proto::etcdserverpb::StatusRequest;
use oxcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;

use crate::common::{free_port, probe};

/// A TCP proxy in front of one member's peer port that can cut it off.
pub struct FaultProxy {
    pub port: u16,
    blocked: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy from a fresh port to `target` on the current runtime.
    pub fn start(rt: &tokio::runtime::Handle, target: u16) -> FaultProxy {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let blocked = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (b, c) = (blocked.clone(), conns.clone());
        let task = rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if b.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let h = tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                let mut all = c.lock().unwrap();
                all.retain(|h| !h.is_finished());
                all.push(h.abort_handle());
            }
        });
        FaultProxy {
            port,
            blocked,
            conns,
            task,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::Release);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn heal(&self) {
        self.blocked.store(false, Ordering::Release);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.block();
        self.task.abort();
    }
}

/// One member: its ports, data directory and process.
pub struct Member {
    /// The server binary (oxcd, or etcd for differential runs).
    pub binary: PathBuf,
    pub name: String,
    pub client_port: u16,
    /// Where the member listens for peers.
    pub peer_port: u16,
    pub proxy: FaultProxy,
    pub dir: tempfile::TempDir,
    pub extra: Vec<String>,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL the member advertises: its proxy.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Spawns the process (without waiting for it to serve).
    fn spawn(&mut self, initial_cluster: &str, state: &str) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open log");
        let data = self.dir.path().join("data");
        let child = Command::new(&self.binary)
            .args([
                "--name",
                &self.name,
                "--data-dir",
                data.to_str().expect("utf-8 path"),
                "--listen-client-urls",
                &self.url(),
                "--advertise-client-urls",
                &self.url(),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_port),
                "--initial-advertise-peer-urls",
                &self.peer_url(),
                "--initial-cluster",
                initial_cluster,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "oxcd-test-cluster",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .args(&self.extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn the server");
        self.child = Some(child);
    }

    /// Waits until the member serves a linearizable read.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
            }
            if probe(self.url()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready; log:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: nothing is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself (e.g. after its removal).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of oxcd (or etcd) members and the runtime its proxies run on.
pub struct Cluster {
    pub binary: PathBuf,
    pub members: Vec<Member>,
    /// The `--initial-cluster` value of the running configuration.
    pub initial_cluster: String,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// Starts `n` oxcd members (`m0`, `m1`, ...) and waits until all serve.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(PathBuf::from(env!("CARGO_BIN_EXE_oxcd")), n, extra)
    }

    /// Starts `n` members of `binary` (oxcd or etcd, same flags).
    pub fn start_with(binary: PathBuf, n: usize, extra: &[&str]) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Cluster::new_member(&rt, &binary, &format!("m{i}"), extra));
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.spawn(&initial_cluster, "new");
        }
        for m in &mut members {
            m.wait_ready(Duration::from_secs(60));
        }
        Cluster {
            binary,
            members,
            initial_cluster,
            rt,
        }
    }

    fn new_member(
        rt: &tokio::runtime::Runtime,
        binary: &std::path::Path,
        name: &str,
        extra: &[&str],
    ) -> Member {
        let peer_port = free_port();
        Member {
            binary: binary.to_path_buf(),
            name: name.to_string(),
            client_port: free_port(),
            peer_port,
            proxy: FaultProxy::start(rt.handle(), peer_port),
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    /// A member that is not part of the cluster yet (for `member add`).
    pub fn prepare_member(&mut self, name: &str, extra: &[&str]) -> usize {
        let m = Cluster::new_member(&self.rt, &self.binary.clone(), name, extra);
        self.members.push(m);
        self.members.len() - 1
    }

    /// Starts member `i` as a member joining the running cluster.
    pub fn start_joining(&mut self, i: usize, initial_cluster: &str) {
        self.members[i].spawn(initial_cluster, "existing");
    }

    /// Restarts a stopped member (its data directory decides the rest).
    pub fn restart(&mut self, i: usize) {
        let ic = self.initial_cluster.clone();
        self.members[i].spawn(&ic, "new");
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url()).collect()
    }

    /// `Status` of every running member: index → (member id, leader, term).
    pub fn statuses(&mut self) -> HashMap<usize, (u64, u64, u64)> {
        let mut out = HashMap::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if !m.is_running() {
                continue;
            }
            let url = m.url();
            if let Some(st) = self.rt.block_on(async move {
                let ch = tonic::transport::Endpoint::from_shared(url)
                    .ok()?
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_millis(1000))
                    .connect()
                    .await
                    .ok()?;
                MaintenanceClient::new(ch)
                    .status(StatusRequest {})
                    .await
                    .ok()
                    .map(|r| r.into_inner())
            }) {
                let h = st.header.unwrap_or_default();
                out.insert(i, (h.member_id, st.leader, st.raft_term));
            }
        }
        out
    }

    /// The index of the member every running member agrees leads.
    pub fn leader(&mut self) -> Option<usize> {
        let st = self.statuses();
        let mut running = 0;
        for m in self.members.iter_mut() {
            if m.is_running() {
                running += 1;
            }
        }
        if st.len() < running {
            return None;
        }
        let leaders: std::collections::HashSet<u64> = st.values().map(|s| s.1).collect();
        if leaders.len() != 1 {
            return None;
        }
        let leader = *leaders.iter().next()?;
        st.iter().find(|(_, s)| s.0 == leader).map(|(i, _)| *i)
    }

    /// Waits until the running members agree on a leader.
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no agreed leader in {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Member ids by index.
    pub fn ids(&mut self) -> HashMap<usize, u64> {
        self.statuses().into_iter().map(|(i, s)| (i, s.0)).collect()
    }
}

impl Cluster {
    /// The runtime the proxies (and workloads) run on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// Runs a future to completion on the cluster's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// Clients doing puts, linearizable gets, deletes and compare-and-set
/// transactions on a few keys, recording every call for the
/// linearizability checker. A client that gets an error moves to the next
/// endpoint.
pub struct Workload {
    stop: Arc<AtomicBool>,
    /// Operations acknowledged so far, across clients.
    acked: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64)>>,
    pub history: Arc<crate::lincheck::History>,
}

/// What the workload saw: acknowledged operations and errors.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkloadStats {
    pub ok: u64,
    pub errors: u64,
}

impl Workload {
    pub fn start(
        rt: &tokio::runtime::Handle,
        endpoints: Vec<String>,
        clients: usize,
        keys: usize,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let history = crate::lincheck::History::new();
        let tasks = (0..clients)
            .map(|id| {
                rt.spawn(run_client(
                    id,
                    endpoints.clone(),
                    keys,
                    stop.clone(),
                    history.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        Workload {
            stop,
            acked,
            tasks,
            history,
        }
    }

    /// Waits until the clients have had `more` further operations
    /// acknowledged (the cluster makes progress), at most `timeout`.
    pub fn wait_acked(&self, more: u64, timeout: Duration) {
        let target = self.acked.load(Ordering::Acquire) + more;
        let deadline = Instant::now() + timeout;
        while self.acked.load(Ordering::Acquire) < target {
            assert!(
                Instant::now() < deadline,
                "the workload made no progress: {} of {target} operations acknowledged",
                self.acked.load(Ordering::Acquire)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients and waits for them.
    pub fn stop(
        self,
        rt: &tokio::runtime::Handle,
    ) -> (WorkloadStats, Arc<crate::lincheck::History>) {
        self.stop.store(true, Ordering::Release);
        let mut stats = WorkloadStats::default();
        for t in self.tasks {
            if let Ok((ok, errors)) = rt.block_on(t) {
                stats.ok += ok;
                stats.errors += errors;
            }
        }
        (stats, self.history)
    }
}

async fn connect(
    url: &str,
) -> Option<oxcd::proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .ok()?;
    Some(oxcd::proto::etcdserverpb::kv_client::KvClient::new(ch))
}

async fn run_client(
    id: usize,
    endpoints: Vec<String>,
    keys: usize,
    stop: Arc<AtomicBool>,
    history: Arc<crate::lincheck::History>,
    acked: Arc<std::sync::atomic::AtomicU64>,
) -> (u64, u64) {
    use crate::lincheck::{Event, Op, Outcome};
    use oxcd::proto::etcdserverpb::{
        Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
        request_op,
    };
    use rand::Rng as _;
    let mut ep = id % endpoints.len();
    let mut kv = None;
    let (mut ok, mut errors, mut n) = (0u64, 0u64, 0u64);
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        let Some(client) = kv.as_mut() else {
            kv = connect(&endpoints[ep]).await;
            if kv.is_none() {
                ep = (ep + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        n += 1;
        let (key, value, roll) = {
            let mut rng = rand::rng();
            (
                format!("lin/k{}", rng.random_range(0..keys)),
                format!("c{id}-{n}"),
                rng.random_range(0..10u32),
            )
        };
        let call = history.now();
        let (op, result): (Op, Result<Outcome, tonic::Status>) = match roll {
            0..=3 => (
                Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                client
                    .put(PutRequest {
                        key: key.clone().into(),
                        value: value.clone().into(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| Outcome::Done),
            ),
            4..=6 => (
                Op::Get { key: key.clone() },
                client
                    .range(RangeRequest {
                        key: key.clone().into(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| {
                        let v = r
                            .into_inner()
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        seen.insert(key.clone(), v.clone());
                        Outcome::Value(v)
                    }),
            ),
            7 => (
                Op::Delete { key: key.clone() },
                client
                    .delete_range(DeleteRangeRequest {
                        key: key.clone().into(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| Outcome::Deleted(r.into_inner().deleted as u64)),
            ),
            _ => {
                let expected = seen.get(&key).cloned().flatten();
                let compare = match &expected {
                    Some(v) => Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Value as i32,
                        key: key.clone().into(),
                        target_union: Some(compare::TargetUnion::Value(v.clone().into())),
                        ..Default::default()
                    },
                    None => Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Version as i32,
                        key: key.clone().into(),
                        target_union: Some(compare::TargetUnion::Version(0)),
                        ..Default::default()
                    },
                };
                let put = RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone().into(),
                        value: value.clone().into(),
                        ..Default::default()
                    })),
                };
                (
                    Op::Cas {
                        key: key.clone(),
                        expected,
                        new: value.clone(),
                    },
                    client
                        .txn(TxnRequest {
                            compare: vec![compare],
                            success: vec![put],
                            failure: vec![],
                        })
                        .await
                        .map(|r| Outcome::Cas(r.into_inner().succeeded)),
                )
            }
        };
        let ret = history.now();
        match result {
            Ok(outcome) => {
                ok += 1;
                acked.fetch_add(1, Ordering::Release);
                history.record(Event {
                    client: id,
                    op,
                    call,
                    ret,
                    outcome,
                });
            }
            Err(_) => {
                errors += 1;
                if !matches!(op, Op::Get { .. }) {
                    history.record(Event {
                        client: id,
                        op,
                        call,
                        ret,
                        outcome: Outcome::Unknown,
                    });
                }
                kv = None;
                ep = (ep + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (ok, errors)
}
