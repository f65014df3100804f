//! The peer transport: raft messages between members over gRPC on the peer
//! port (`--listen-peer-urls`), with oxcd's own protocol
//! (`proto/oxcdpb/peer.proto`).
//!
//! Sending: the raft thread hands messages to [`Transport::send`], which
//! never blocks: each peer has a bounded queue drained by its own task,
//! which keeps one client stream open to that peer and batches whatever is
//! queued into one gRPC message. A full queue or a broken connection drops
//! messages (raft retransmits) and reports the peer unreachable to raft, so
//! the leader falls back to probing it.
//!
//! Snapshots travel on their own stream: the `MsgSnapshot` first, then the
//! files of the state checkpoint it names. The receiver writes them to a
//! fresh directory, syncs them, and only then steps the message into raft;
//! the raft thread installs the state from there.
//!
//! Receiving: [`PeerService`] steps every message into raft after checking
//! the cluster id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::Members;
use crate::error::{Error, Result};
use crate::proto::oxcdpb::peer_client::PeerClient;
use crate::proto::oxcdpb::peer_server::{Peer, PeerServer};
use crate::proto::oxcdpb::{MembersRequest, MembersResponse, PeerAck, RaftBatch, SnapshotChunk};
use crate::raft::{RaftHandle, RaftMsg};

mod leader;
pub use leader::LeaderClient;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Most messages and bytes in one batch.
const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Bytes per snapshot chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Longest silence of a member that still counts as continuously active
/// (followers answer every heartbeat; the leader sends one per interval).
pub const ACTIVE_GAP: Duration = Duration::from_secs(1);
/// What a member hears when it was removed from the cluster.
const REMOVED: &str = "the member has been permanently removed from the cluster";
/// Largest gRPC message accepted on the peer port.
const MAX_MESSAGE: usize = 64 << 20;

/// Sends raft messages to the other members.
pub struct Transport {
    local: u64,
    cluster_id: u64,
    members: Arc<Members>,
    peers: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// For each member: since when it has been sending raft messages
    /// without a gap, and when it last did.
    heard: Mutex<HashMap<u64, (std::time::Instant, std::time::Instant)>>,
    raft: OnceLock<RaftHandle>,
    rt: tokio::runtime::Handle,
    me: Weak<Transport>,
}

impl Transport {
    /// A transport for member `local`; must be created inside the tokio
    /// runtime its tasks run on.
    pub fn new(local: u64, cluster_id: u64, members: Arc<Members>) -> Arc<Transport> {
        Arc::new_cyclic(|me| Transport {
            local,
            cluster_id,
            members,
            peers: Mutex::new(HashMap::new()),
            heard: Mutex::new(HashMap::new()),
            raft: OnceLock::new(),
            rt: tokio::runtime::Handle::current(),
            me: me.clone(),
        })
    }

    /// Since when member `id` has been sending raft messages without a
    /// gap longer than `gap` (etcd: a peer's `ActiveSince`); `None` if it
    /// is not active now.
    pub fn active_since(&self, id: u64, gap: Duration) -> Option<std::time::Instant> {
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let (since, last) = heard.get(&id)?;
        (last.elapsed() <= gap).then_some(*since)
    }

    fn heard_from(&self, id: u64, gap: Duration) {
        let now = std::time::Instant::now();
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let e = heard.entry(id).or_insert((now, now));
        if now.duration_since(e.1) > gap {
            e.0 = now;
        }
        e.1 = now;
    }

    /// Connects the transport to the raft node (once it exists).
    pub fn set_raft(&self, raft: RaftHandle) {
        let _ = self.raft.set(raft);
    }

    /// Hands raft a message or a delivery report. When its inbox is full
    /// it is dropped: raft resends appends and heartbeats, and learns of an
    /// unreachable member again on the next failed send.
    fn report(&self, msg: RaftMsg) {
        if let Some(r) = self.raft.get()
            && let Err(e) = r.send(msg)
        {
            tracing::debug!(error = %e, "raft inbox refused a peer message");
        }
    }

    /// Hands raft what must reach it (a received snapshot, how sending
    /// one ended), waiting for room in its inbox.
    async fn report_waiting(&self, msg: RaftMsg) {
        if let Some(r) = self.raft.get() {
            let _ = r.send_waiting(msg).await;
        }
    }

    fn queue(&self, to: u64) -> Option<mpsc::Sender<Message>> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = peers.get(&to)
            && !tx.is_closed()
        {
            return Some(tx.clone());
        }
        let me = self.me.upgrade()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        self.rt.spawn(run_peer(me, to, rx));
        peers.insert(to, tx.clone());
        Some(tx)
    }

    fn send_snapshot(&self, m: Message) {
        let Some(me) = self.me.upgrade() else { return };
        let to = m.to;
        self.rt.spawn(async move {
            let ok = match me.stream_snapshot(m).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(to = format!("{to:x}"), error = %e, "sending a snapshot failed");
                    false
                }
            };
            if !ok {
                me.report(RaftMsg::Unreachable(to));
            }
            me.report_waiting(RaftMsg::SnapshotStatus { to, ok }).await;
        });
    }

    async fn connect(&self, to: u64) -> Result<PeerClient<Channel>> {
        let ch = connect_any(&self.members.peer_urls(to), None).await?;
        Ok(PeerClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// Streams the checkpoint a `MsgSnapshot` names, then the message.
    async fn stream_snapshot(&self, m: Message) -> Result<()> {
        let to = m.to;
        let shared =
            PathBuf::from(String::from_utf8_lossy(m.get_snapshot().get_data()).into_owned());
        // A private set of hard links: the shared checkpoint may be replaced
        // (and removed) while this send runs.
        let dir = shared.with_file_name(format!(
            "snapshot-send-{to:x}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let files = link_files(&shared, &dir);
        let result = match files {
            Ok(files) => self.send_files(m, &dir, files).await,
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }

    async fn send_files(&self, m: Message, dir: &Path, files: Vec<String>) -> Result<()> {
        let to = m.to;
        let dir = dir.to_path_buf();
        let mut client = self.connect(to).await?;
        let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
        let head = SnapshotChunk {
            cluster_id: self.cluster_id,
            from: self.local,
            to,
            message: Bytes::from(m.write_to_bytes().map_err(Error::internal)?),
            ..Default::default()
        };
        let producer = async move {
            tx.send(head)
                .await
                .map_err(|_| Error::internal("snapshot stream closed"))?;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            for name in files {
                let mut f = tokio::fs::File::open(dir.join(&name))
                    .await
                    .map_err(Error::internal)?;
                let mut offset = 0u64;
                loop {
                    let n = f.read(&mut buf).await.map_err(Error::internal)?;
                    if n == 0 && offset > 0 {
                        break;
                    }
                    let chunk = SnapshotChunk {
                        file: name.clone(),
                        offset,
                        data: Bytes::copy_from_slice(&buf[..n]),
                        ..Default::default()
                    };
                    tx.send(chunk)
                        .await
                        .map_err(|_| Error::internal("snapshot stream closed"))?;
                    offset += n as u64;
                    if n == 0 {
                        break;
                    }
                }
            }
            tx.send(SnapshotChunk {
                done: true,
                ..Default::default()
            })
            .await
            .map_err(|_| Error::internal("snapshot stream closed"))
        };
        let (sent, call) = tokio::join!(producer, client.snapshot(ReceiverStream::new(rx)));
        call.map_err(|s| Error::internal(format!("snapshot to {to:x}: {}", s.message())))?;
        sent
    }
}

impl crate::raft::node::Transport for Transport {
    fn forget(&self, id: u64) {
        // Dropping the queue's sender ends that peer's task.
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if to == self.local || to == 0 {
                continue;
            }
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(m);
                continue;
            }
            let Some(q) = self.queue(to) else { continue };
            if q.try_send(m).is_err() {
                self.report(RaftMsg::Unreachable(to));
            }
        }
    }
}

/// One peer's sender: connects when there is something to send, streams
/// batches until the stream breaks, then reconnects.
async fn run_peer(t: Arc<Transport>, to: u64, mut rx: mpsc::Receiver<Message>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut client = match t.connect(to).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(to = format!("{to:x}"), error = %e, "peer unreachable");
                // Drop what queued meanwhile: raft resends what matters.
                while rx.try_recv().is_ok() {}
                t.report(RaftMsg::Unreachable(to));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let (btx, brx) = mpsc::channel::<RaftBatch>(8);
        let call = tokio::spawn(async move { client.raft(ReceiverStream::new(brx)).await });
        let mut pending = Some(first);
        loop {
            let m = match pending.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => {
                        call.abort();
                        return;
                    }
                },
            };
            let mut batch = RaftBatch {
                cluster_id: t.cluster_id,
                from: t.local,
                to,
                messages: Vec::new(),
            };
            let mut size = 0;
            let mut next = Some(m);
            while let Some(m) = next.take() {
                match m.write_to_bytes() {
                    Ok(b) => {
                        size += b.len();
                        batch.messages.push(Bytes::from(b));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot encode a raft message"),
                }
                if batch.messages.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if btx.send(batch).await.is_err() {
                break;
            }
        }
        if let Ok(Err(s)) = call.await {
            if s.code() == tonic::Code::PermissionDenied && s.message().contains(REMOVED) {
                // etcd: a member learns of its own removal from a peer
                // refusing it, and stops.
                tracing::warn!(
                    member_id = format!("{:x}", t.local),
                    "the member has been permanently removed from the cluster"
                );
                crate::process::exit_now(0);
            }
            tracing::debug!(to = format!("{to:x}"), error = %s.message(), "peer stream ended");
        }
        t.report(RaftMsg::Unreachable(to));
        tokio::time::sleep(backoff).await;
    }
}

/// Serves the peer port.
pub struct PeerService {
    transport: Arc<Transport>,
    snapshot_dir: PathBuf,
}

impl PeerService {
    pub fn new(transport: Arc<Transport>, snapshot_dir: PathBuf) -> PeerServer<PeerService> {
        PeerServer::new(PeerService {
            transport,
            snapshot_dir,
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
    }

    fn check(&self, cluster_id: u64, from: u64) -> std::result::Result<(), Status> {
        if cluster_id != self.transport.cluster_id {
            return Err(Status::failed_precondition(
                Error::ClusterIdMismatch.to_string(),
            ));
        }
        if self.transport.members.is_removed(from) {
            return Err(Status::permission_denied(REMOVED));
        }
        Ok(())
    }

    fn step(&self, m: Message) {
        self.transport.report(RaftMsg::Step(Box::new(m)));
    }
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        req: Request<Streaming<RaftBatch>>,
    ) -> std::result::Result<Response<PeerAck>, Status> {
        let mut s = req.into_inner();
        while let Some(b) = s.message().await? {
            self.check(b.cluster_id, b.from)?;
            self.transport.heard_from(b.from, ACTIVE_GAP);
            for bytes in b.messages {
                let m = Message::parse_from_bytes(&bytes).map_err(bad)?;
                // Snapshots come only on their own stream (their data names
                // a directory this member wrote), and only to this member.
                if m.get_msg_type() == MessageType::MsgSnapshot || m.to != self.transport.local {
                    return Err(bad("unexpected raft message on the raft stream"));
                }
                self.step(m);
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> std::result::Result<Response<PeerAck>, Status> {
        let mut s = req.into_inner();
        let head = s
            .message()
            .await?
            .ok_or_else(|| bad("empty snapshot stream"))?;
        self.check(head.cluster_id, head.from)?;
        let mut m = Message::parse_from_bytes(&head.message).map_err(bad)?;
        if m.get_msg_type() != MessageType::MsgSnapshot || m.to != self.transport.local {
            return Err(bad("the first chunk must carry a MsgSnapshot"));
        }
        let dir = self.snapshot_dir.join(format!(
            "snapshot-recv-{:x}-{}",
            head.from,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        match receive_files(&mut s, &dir).await {
            Ok(()) => {}
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
        }
        tracing::info!(
            from = format!("{:x}", head.from),
            index = m.get_snapshot().get_metadata().index,
            "received a snapshot"
        );
        m.mut_snapshot()
            .set_data(Bytes::from(dir.to_string_lossy().into_owned().into_bytes()));
        self.transport
            .report_waiting(RaftMsg::Step(Box::new(m)))
            .await;
        Ok(Response::new(PeerAck {}))
    }

    async fn members(
        &self,
        _req: Request<MembersRequest>,
    ) -> std::result::Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.transport.cluster_id,
            members: self.transport.members.list(),
        }))
    }
}

/// Hard-links every file of `from` into a new directory `to`; returns the
/// file names, sorted.
fn link_files(from: &Path, to: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(to).map_err(Error::internal)?;
    let mut files = Vec::new();
    for e in std::fs::read_dir(from).map_err(Error::internal)? {
        let e = e.map_err(Error::internal)?;
        if e.file_type().map_err(Error::internal)?.is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::hard_link(e.path(), to.join(&name)).map_err(Error::internal)?;
            files.push(name);
        }
    }
    files.sort();
    Ok(files)
}

/// Writes the files of a snapshot stream into `dir` and syncs them.
async fn receive_files(
    s: &mut Streaming<SnapshotChunk>,
    dir: &Path,
) -> std::result::Result<(), Status> {
    let io = |e: std::io::Error| Status::internal(format!("writing a snapshot: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let mut current: Option<(String, tokio::fs::File, u64)> = None;
    let mut done = false;
    while let Some(c) = s.message().await? {
        if c.done {
            done = true;
            break;
        }
        if c.file.is_empty() || c.file.contains('/') || c.file.starts_with('.') {
            return Err(bad(format!("bad snapshot file name {:?}", c.file)));
        }
        if current.as_ref().map(|(n, _, _)| n.as_str()) != Some(c.file.as_str()) {
            if let Some((_, f, _)) = current.take() {
                f.sync_all().await.map_err(io)?;
            }
            let f = tokio::fs::File::create(dir.join(&c.file))
                .await
                .map_err(io)?;
            current = Some((c.file.clone(), f, 0));
        }
        let Some((_, f, written)) = current.as_mut() else {
            continue;
        };
        if c.offset != *written {
            return Err(bad("snapshot chunks out of order"));
        }
        f.write_all(&c.data).await.map_err(io)?;
        *written += c.data.len() as u64;
    }
    if let Some((_, f, _)) = current.take() {
        f.sync_all().await.map_err(io)?;
    }
    if !done {
        return Err(bad("snapshot stream ended early"));
    }
    tokio::fs::File::open(dir)
        .await
        .map_err(io)?
        .sync_all()
        .await
        .map_err(io)?;
    Ok(())
}

/// A channel to the first of `urls` that accepts a connection; with
/// `timeout`, every request on it is bounded by it.
/// How this member dials `https://` peer URLs (set once at start, from the
/// peer TLS flags).
static DIAL_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Sets the TLS configuration for dialing `https://` peer URLs.
pub fn set_dial_tls(cfg: rustls::ClientConfig) {
    let _ = DIAL_TLS.set(Arc::new(cfg));
}

/// A TLS connection to the peer at `uri` (host and port), the server's
/// certificate checked against the URL's host.
async fn dial_tls(
    uri: http::Uri,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>
{
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other("peer URL without a host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from(host).map_err(std::io::Error::other)?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await?;
    Ok(hyper_util::rt::TokioIo::new(tls))
}

pub async fn connect_any(urls: &[String], timeout: Option<Duration>) -> Result<Channel> {
    let mut last = Error::internal("no peer URL known");
    for url in urls {
        // An https URL is dialed by `dial_tls`; the channel itself is told
        // plain http so that it does not look for a TLS setup of its own.
        let (target, tls) = match url.strip_prefix("https://") {
            Some(rest) => match DIAL_TLS.get() {
                Some(cfg) => (format!("http://{rest}"), Some(cfg.clone())),
                None => {
                    last = Error::internal(format!("no peer TLS configured to dial {url}"));
                    continue;
                }
            },
            None => (url.clone(), None),
        };
        let ep = match Endpoint::from_shared(target) {
            Ok(ep) => ep
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5)),
            Err(e) => {
                last = Error::internal(format!("bad peer URL {url}: {e}"));
                continue;
            }
        };
        let ep = match timeout {
            Some(t) => ep.timeout(t),
            None => ep,
        };
        let connected = match tls {
            Some(cfg) => {
                ep.connect_with_connector(tower::service_fn(move |uri: http::Uri| {
                    dial_tls(uri, cfg.clone())
                }))
                .await
            }
            None => ep.connect().await,
        };
        match connected {
            Ok(ch) => return Ok(ch),
            Err(e) => last = Error::internal(format!("connect to {url}: {e}")),
        }
    }
    Err(last)
}

/// Asks the members at `urls` for the cluster (for a member joining with
/// `--initial-cluster-state existing`).
pub async fn fetch_members(urls: &[String]) -> Result<MembersResponse> {
    let ch = connect_any(urls, Some(Duration::from_secs(5))).await?;
    PeerClient::new(ch)
        .members(MembersRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Error::internal(s.message()))
}
