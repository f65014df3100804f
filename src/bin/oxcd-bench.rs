//! `oxcd-bench`: a load generator for etcd-compatible servers (oxcd or
//! etcd), light enough that a 2-core machine measures the server, not the
//! client. Requests are built once and many are kept in flight over few
//! connections.
//!
//! ```text
//! oxcd-bench [--endpoint URL] [--pid PID] <workload> [options]
//!
//! workloads:
//!   put            [--clients N] [--conns C] [--total N] [--key-size B]
//!                  [--value-size B] [--key-space N]
//!   load           [--key-space N] [--key-size B] [--value-size B] [--clients N]
//!       writes the key space in transactions of 100 puts
//!   range          [--clients N] [--conns C] [--total N] [--key-space N]
//!                  [--serializable true]: single-key gets on a filled space
//!   txn-put        [--clients N] [--conns C] [--total N] [--key-space N]
//!       compare the mod revision last seen, then put (kube-apiserver's write)
//!   range-large    [--key-space N] [--value-size B] [--page P] [--total N]
//!       list the whole space, by pages (P keys) or in one call (--page 0)
//!   lease-keepalive [--leases N] [--streams S] [--total N]
//!       keep-alive round trips, every lease's keep-alive in flight
//!   lease-expiry   [--leases N] [--keys-per-lease K] [--ttl S] [--seconds S]
//!       put latency while the leases expire together
//!   watch-latency  [--total N] [--value-size B]
//!       one watcher; sequential puts; time from put to event
//!   watch-memory   [--watchers N] [--streams S] [--conns C] [--burst true]
//!       N watchers on S streams, created one at a time per stream like
//!       Go's clientv3 (or all at once); server RSS before and after
//!       (needs --pid)
//!   ready          [--timeout S]
//!       wait until the server answers a linearizable read
//!
//! Every workload takes --threads N: the client's runtime threads (default
//! one per CPU; 1 = a single-threaded client).
//! Closed-loop workloads also take --duration S: stop after S seconds
//! even if --total is not reached.
//! ```
//!
//! Output is one JSON object per run on stdout, so scripts can compare
//! servers.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use oxcd::proto::etcdserverpb::kv_client::KvClient;
use oxcd::proto::etcdserverpb::watch_client::WatchClient;
use oxcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxcd::proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

struct Args {
    endpoint: String,
    pid: Option<u32>,
    workload: String,
    opts: HashMap<String, String>,
}

fn parse_args() -> Result<Args, String> {
    let mut endpoint = "http://127.0.0.1:2379".to_string();
    let mut pid = None;
    let mut workload = None;
    let mut opts = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => (
                    name.to_string(),
                    it.next().ok_or(format!("--{name} needs a value"))?,
                ),
            };
            match name.as_str() {
                "endpoint" => endpoint = value,
                "pid" => pid = Some(value.parse().map_err(|_| "bad --pid")?),
                _ => {
                    opts.insert(name, value);
                }
            }
        } else if workload.is_none() {
            workload = Some(a);
        } else {
            return Err(format!("unexpected argument {a:?}"));
        }
    }
    if !endpoint.contains("://") {
        endpoint = format!("http://{endpoint}");
    }
    Ok(Args {
        endpoint,
        pid,
        workload: workload.ok_or("no workload given")?,
        opts,
    })
}

impl Args {
    fn num(&self, name: &str, default: usize) -> usize {
        self.opts
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

async fn channel(endpoint: &str) -> Result<Channel, String> {
    Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect {endpoint}: {e}"))
}

/// Resident set size of `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// The most memory the process has had resident.
fn peak_rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Server CPU time (user + system) of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A watch stream: requests in, responses out.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

async fn open_stream(ch: Channel, first: WatchCreateRequest) -> Result<Stream, String> {
    let (tx, rx) = mpsc::channel(1024);
    // Send the first create before the call: etcd answers with headers only
    // together with the first response.
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(first)),
    })
    .await
    .map_err(|e| e.to_string())?;
    let resp = WatchClient::new(ch)
        .watch(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("watch: {e}"))?;
    Ok(Stream {
        tx,
        rx: resp.into_inner(),
    })
}

/// Runs `clients` concurrent request loops over `conns` connections until
/// `total` requests are done; returns sorted latencies and elapsed time.
async fn closed_loop<F, Fut>(
    a: &Args,
    clients: usize,
    total: usize,
    make: F,
) -> Result<(Vec<Duration>, Duration), String>
where
    F: Fn(Channel, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let conns = a.num("conns", 1).max(1);
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(channel(&a.endpoint).await?);
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    // `--duration S` ends the run after S seconds even if `total` is not
    // reached.
    let deadline = a
        .opts
        .get("duration")
        .and_then(|d| d.parse::<f64>().ok())
        .map(|d| started + Duration::from_secs_f64(d));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (ch, next, make) = (channels[c % conns].clone(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t0 = Instant::now();
                make(ch.clone(), i).await?;
                lat.push(t0.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((all, elapsed))
}

fn report(name: &str, a: &Args, lat: &[Duration], elapsed: Duration, cpu0: Option<f64>) -> String {
    let n = lat.len();
    let cpu = match (cpu0, a.pid.and_then(cpu_seconds)) {
        (Some(x), Some(y)) if n > 0 => format!("{:.6}", (y - x) / n as f64),
        _ => "null".into(),
    };
    let rss = a.pid.and_then(rss).map_or("null".into(), |r| r.to_string());
    let peak = a
        .pid
        .and_then(peak_rss)
        .map_or("null".into(), |r| r.to_string());
    format!(
        "{{\"workload\":\"{name}\",\"ops\":{n},\"seconds\":{:.3},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"server_cpu_s_per_op\":{cpu},\"server_rss_bytes\":{rss},\"server_peak_rss_bytes\":{peak}}}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(lat, 0.5),
        percentile(lat, 0.9),
        percentile(lat, 0.99),
        percentile(lat, 1.0),
    )
}

/// Writes `--key-space` keys (`--key-size`-byte keys, `--value-size`-byte
/// values) in transactions of 100 puts, from `--clients` concurrent loops.
async fn fill(
    a: &Args,
    prefix: &str,
    space: usize,
    key_size: usize,
    value_size: usize,
) -> Result<(), String> {
    use oxcd::proto::etcdserverpb::request_op::Request as Op;
    use oxcd::proto::etcdserverpb::{RequestOp, TxnRequest};
    let value = bytes::Bytes::from(vec![b'v'; value_size]);
    let batches = space.div_ceil(100);
    let prefix = prefix.to_string();
    closed_loop(a, a.num("clients", 16).max(1), batches, move |ch, b| {
        let ops = (b * 100..((b + 1) * 100).min(space))
            .map(|i| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: bench_key(&prefix, i, key_size).into(),
                    value: value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        async move {
            KvClient::new(ch)
                .txn(TxnRequest {
                    success: ops,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Key `i` of a benchmark key space: `prefix` then `i` zero-padded to
/// `size` bytes in all.
fn bench_key(prefix: &str, i: usize, size: usize) -> Vec<u8> {
    let width = size.saturating_sub(prefix.len()).max(1);
    format!("{prefix}{i:0width$}").into_bytes()
}

async fn load(a: &Args) -> Result<String, String> {
    let started = Instant::now();
    let n = a.num("key-space", 10_000);
    fill(a, "", n, a.num("key-size", 8), a.num("value-size", 256)).await?;
    let secs = started.elapsed().as_secs_f64();
    let rss = a.pid.and_then(rss).map_or("null".into(), |r| r.to_string());
    Ok(format!(
        "{{\"workload\":\"load\",\"keys\":{n},\"seconds\":{secs:.3},\"keys_per_sec\":{:.1},\"server_rss_bytes\":{rss}}}",
        n as f64 / secs
    ))
}

/// Single-key gets over a filled key space (`--serializable true` for
/// serializable reads).
async fn range(a: &Args) -> Result<String, String> {
    use oxcd::proto::etcdserverpb::RangeRequest;
    let space = a.num("key-space", 10_000).max(1);
    let key_size = a.num("key-size", 8);
    fill(a, "", space, key_size, a.num("value-size", 256)).await?;
    let serializable = a.opts.get("serializable").is_some_and(|v| v == "true");
    let total = a.num("total", 10_000);
    let cpu0 = a.pid.and_then(cpu_seconds);
    let (lat, elapsed) = closed_loop(a, a.num("clients", 1).max(1), total, move |ch, i| {
        let req = RangeRequest {
            key: bench_key("", (i * 7919) % space, key_size).into(),
            serializable,
            ..Default::default()
        };
        async move {
            KvClient::new(ch)
                .range(req)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await?;
    let name = if serializable {
        "range-serializable"
    } else {
        "range-linearizable"
    };
    Ok(report(name, a, &lat, elapsed, cpu0))
}

/// kube-apiserver's write: compare the key's mod revision with the one
/// last seen, then put (or read the current one when it changed).
async fn txn_put(a: &Args) -> Result<String, String> {
    use oxcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    use oxcd::proto::etcdserverpb::request_op::Request as Op;
    use oxcd::proto::etcdserverpb::response_op::Response as OpResp;
    use oxcd::proto::etcdserverpb::{Compare, RangeRequest, RequestOp, TxnRequest};
    use std::sync::atomic::{AtomicI64, Ordering};
    let space = a.num("key-space", 10_000).max(1);
    let key_size = a.num("key-size", 8);
    let value = bytes::Bytes::from(vec![b'v'; a.num("value-size", 256)]);
    let total = a.num("total", 10_000);
    let seen: std::sync::Arc<Vec<AtomicI64>> =
        std::sync::Arc::new((0..space).map(|_| AtomicI64::new(0)).collect());
    let cpu0 = a.pid.and_then(cpu_seconds);
    let (lat, elapsed) = closed_loop(a, a.num("clients", 1).max(1), total, move |ch, i| {
        let k = i % space;
        let key: bytes::Bytes = bench_key("txn/", k, key_size).into();
        let seen = seen.clone();
        let last = seen[k].load(Ordering::Relaxed);
        let req = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::ModRevision(last)),
                range_end: bytes::Bytes::new(),
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(Op::RequestRange(RangeRequest {
                    key,
                    ..Default::default()
                })),
            }],
        };
        async move {
            let r = KvClient::new(ch)
                .txn(req)
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let rev = if r.succeeded {
                r.header.map_or(0, |h| h.revision)
            } else {
                match r.responses.first().and_then(|x| x.response.as_ref()) {
                    Some(OpResp::ResponseRange(rr)) => {
                        rr.kvs.first().map_or(0, |kv| kv.mod_revision)
                    }
                    _ => 0,
                }
            };
            seen[k].store(rev, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    Ok(report("txn-put", a, &lat, elapsed, cpu0))
}

/// Lists `--key-space` keys of `--value-size` bytes: by pages of
/// `--page` keys (with the continue key and pinned revision, as
/// kube-apiserver pages), or in one call with `--page 0`.
async fn range_large(a: &Args) -> Result<String, String> {
    use oxcd::proto::etcdserverpb::RangeRequest;
    let space = a.num("key-space", 100_000);
    let page = a.num("page", 500) as i64;
    let total = a.num("total", 5);
    if a.opts.get("skip-fill").is_none_or(|v| v != "true") {
        let key_size = a.num("key-size", 16);
        fill(a, "large/", space, key_size, a.num("value-size", 1024)).await?;
    }
    let start = bytes::Bytes::from_static(b"large/");
    let cpu0 = a.pid.and_then(cpu_seconds);
    let (lat, elapsed) = closed_loop(a, 1, total, move |ch, _| {
        let start = start.clone();
        async move {
            let mut kv = KvClient::new(ch).max_decoding_message_size(usize::MAX);
            let mut key = start;
            let end = bytes::Bytes::from_static(b"large0");
            let mut rev = 0;
            let mut got = 0usize;
            loop {
                let r = kv
                    .range(RangeRequest {
                        key: key.clone(),
                        range_end: end.clone(),
                        limit: page,
                        revision: rev,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                rev = r.header.map_or(0, |h| h.revision);
                got += r.kvs.len();
                if !r.more {
                    break;
                }
                let mut next = r.kvs.last().map(|kv| kv.key.to_vec()).unwrap_or_default();
                next.push(0);
                key = next.into();
            }
            if got < space {
                return Err(format!("listed {got} of {space} keys"));
            }
            Ok(())
        }
    })
    .await?;
    let name = if page > 0 {
        "range-large-paged"
    } else {
        "range-large-single"
    };
    Ok(report(name, a, &lat, elapsed, cpu0))
}

/// Waits until the server answers a linearizable read (for up to
/// `--timeout` seconds, polling every 5 ms) and reports how long that took.
async fn ready(a: &Args) -> Result<String, String> {
    use oxcd::proto::etcdserverpb::RangeRequest;
    let started = Instant::now();
    let timeout = Duration::from_secs(a.num("timeout", 120) as u64);
    let mut last = String::new();
    while started.elapsed() < timeout {
        let attempt = async {
            let ch = Endpoint::from_shared(a.endpoint.clone())
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_millis(200))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            KvClient::new(ch)
                .range(RangeRequest {
                    key: bytes::Bytes::from_static(b"oxcd-bench-ready"),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(_) => {
                return Ok(format!(
                    "{{\"workload\":\"ready\",\"seconds\":{:.3}}}",
                    started.elapsed().as_secs_f64()
                ));
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("not ready after {timeout:?}: {last}"))
}

async fn put(a: &Args) -> Result<String, String> {
    let clients = a.num("clients", 1).max(1);
    let total = a.num("total", 10_000);
    let key_size = a.num("key-size", 8);
    let value = bytes::Bytes::from(vec![b'v'; a.num("value-size", 256)]);
    let space = a.num("key-space", 1).max(1);
    let cpu0 = a.pid.and_then(cpu_seconds);
    let (lat, elapsed) = closed_loop(a, clients, total, move |ch, i| {
        let mut key = format!("{:0width$}", i % space, width = key_size).into_bytes();
        key.truncate(key_size.max(1));
        let req = PutRequest {
            key: key.into(),
            value: value.clone(),
            ..Default::default()
        };
        async move {
            KvClient::new(ch)
                .put(req)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await?;
    Ok(report("put", a, &lat, elapsed, cpu0))
}

/// Keep-alive round trips: `--leases` leases spread over `--streams`
/// keep-alive streams, every lease's keep-alive always in flight.
async fn lease_keepalive(a: &Args) -> Result<String, String> {
    use oxcd::proto::etcdserverpb::lease_client::LeaseClient;
    use oxcd::proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
    let leases = a.num("leases", 1000).max(1);
    let streams = a.num("streams", 10).max(1);
    let total = a.num("total", 100_000);
    let ch = channel(&a.endpoint).await?;
    let mut lc = LeaseClient::new(ch.clone());
    let mut ids = Vec::new();
    for _ in 0..leases {
        let r = lc
            .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
            .await
            .map_err(|e| e.to_string())?;
        ids.push(r.into_inner().id);
    }
    let cpu0 = a.pid.and_then(cpu_seconds);
    let per_stream = total.div_ceil(streams);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mine: Vec<i64> = ids.iter().copied().skip(s).step_by(streams).collect();
        let ch = channel(&a.endpoint).await?;
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(mine.len() + 1);
            let mut sent_at = std::collections::VecDeque::new();
            for id in &mine {
                tx.send(LeaseKeepAliveRequest { id: *id })
                    .await
                    .map_err(|e| e.to_string())?;
                sent_at.push_back(Instant::now());
            }
            let mut resp = LeaseClient::new(ch)
                .lease_keep_alive(ReceiverStream::new(rx))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let mut lat = Vec::with_capacity(per_stream);
            while lat.len() < per_stream {
                let r = resp
                    .next()
                    .await
                    .ok_or("stream closed")?
                    .map_err(|e| e.to_string())?;
                if r.ttl <= 0 {
                    return Err(format!("lease {} lost", r.id));
                }
                if let Some(t) = sent_at.pop_front() {
                    lat.push(t.elapsed());
                }
                tx.send(LeaseKeepAliveRequest { id: r.id })
                    .await
                    .map_err(|e| e.to_string())?;
                sent_at.push_back(Instant::now());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    lat.sort();
    Ok(report("lease-keepalive", a, &lat, elapsed, cpu0))
}

/// Write latency while many leases expire together: `--leases` leases of
/// `--ttl` seconds with `--keys-per-lease` keys each, then puts for
/// `--seconds`.
async fn lease_expiry(a: &Args) -> Result<String, String> {
    use oxcd::proto::etcdserverpb::lease_client::LeaseClient;
    use oxcd::proto::etcdserverpb::request_op::Request as Op;
    use oxcd::proto::etcdserverpb::{LeaseGrantRequest, RequestOp, TxnRequest};
    let leases = a.num("leases", 1000);
    let per = a.num("keys-per-lease", 10);
    let ttl = a.num("ttl", 3) as i64;
    let seconds = a.num("seconds", 8) as u64;
    let ch = channel(&a.endpoint).await?;
    let mut lc = LeaseClient::new(ch.clone());
    let mut kv = KvClient::new(ch);
    for l in 0..leases {
        let id = lc
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .id;
        let ops = (0..per)
            .map(|k| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: format!("bench/expiry/{l}/{k}").into_bytes().into(),
                    value: vec![b'v'; 64].into(),
                    lease: id,
                    ..Default::default()
                })),
            })
            .collect();
        kv.txn(TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let cpu0 = a.pid.and_then(cpu_seconds);
    let put = PutRequest {
        key: b"bench/expiry-writer".to_vec().into(),
        value: vec![b'v'; 256].into(),
        ..Default::default()
    };
    let started = Instant::now();
    let mut lat = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        kv.put(put.clone()).await.map_err(|e| e.to_string())?;
        lat.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    lat.sort();
    Ok(report("lease-expiry-writes", a, &lat, elapsed, cpu0))
}

async fn watch_latency(a: &Args) -> Result<String, String> {
    let total = a.num("total", 2000);
    let size = a.num("value-size", 256);
    let ch = channel(&a.endpoint).await?;
    let key = b"bench/watch-latency".to_vec();
    let mut s = open_stream(
        ch.clone(),
        WatchCreateRequest {
            key: key.clone().into(),
            ..Default::default()
        },
    )
    .await?;
    let created =
        s.rx.next()
            .await
            .ok_or("stream closed")?
            .map_err(|e| e.to_string())?;
    if !created.created {
        return Err("no created response".into());
    }
    let mut kv = KvClient::new(channel(&a.endpoint).await?);
    let put = PutRequest {
        key: key.into(),
        value: vec![b'v'; size].into(),
        ..Default::default()
    };
    let cpu0 = a.pid.and_then(cpu_seconds);
    let mut lat = Vec::with_capacity(total);
    let started = Instant::now();
    for _ in 0..total {
        let t0 = Instant::now();
        kv.put(put.clone()).await.map_err(|e| e.to_string())?;
        loop {
            let r =
                s.rx.next()
                    .await
                    .ok_or("stream closed")?
                    .map_err(|e| e.to_string())?;
            if !r.events.is_empty() {
                break;
            }
        }
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    lat.sort();
    let cpu = match (cpu0, a.pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => format!("{:.6}", (b - a) / total as f64),
        _ => "null".into(),
    };
    drop(s.tx);
    Ok(format!(
        "{{\"workload\":\"watch-latency\",\"ops\":{total},\"seconds\":{:.3},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"server_cpu_s_per_op\":{cpu}}}",
        elapsed.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    ))
}

async fn watch_memory(a: &Args) -> Result<String, String> {
    let watchers = a.num("watchers", 100_000);
    let streams = a.num("streams", 1000).max(1);
    let conns = a.num("conns", 100).max(1);
    let pid = a.pid.ok_or("watch-memory needs --pid")?;
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(channel(&a.endpoint).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss(pid).ok_or("cannot read server RSS")?;
    let per_stream = watchers.div_ceil(streams);
    // Go's clientv3 sends one create at a time and waits for its `created`
    // reply; `--burst` sends a stream's creates all at once.
    let burst = a.opts.get("burst").is_some_and(|v| v == "true");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let ch = channels[s % conns].clone();
        let n = per_stream.min(watchers.saturating_sub(s * per_stream));
        tasks.push(tokio::spawn(async move {
            let req = |i: usize| WatchCreateRequest {
                key: format!("bench/watch-memory/{s}/{i}").into_bytes().into(),
                ..Default::default()
            };
            let mut st = open_stream(ch, req(0)).await?;
            let send = |st: &Stream, i: usize| {
                let tx = st.tx.clone();
                let r = req(i);
                async move {
                    tx.send(WatchRequest {
                        request_union: Some(RequestUnion::CreateRequest(r)),
                    })
                    .await
                    .map_err(|e| e.to_string())
                }
            };
            let mut sent = 1;
            if burst {
                while sent < n {
                    send(&st, sent).await?;
                    sent += 1;
                }
            }
            let mut created = 0;
            while created < n {
                let r = st
                    .rx
                    .next()
                    .await
                    .ok_or("stream closed")?
                    .map_err(|e| e.to_string())?;
                if r.created {
                    created += 1;
                    if sent < n {
                        send(&st, sent).await?;
                        sent += 1;
                    }
                }
            }
            Ok::<Stream, String>(st)
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.map_err(|e| e.to_string())??);
    }
    let setup = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss(pid).ok_or("cannot read server RSS")?;
    let per_watcher = rss_after.saturating_sub(rss_before) as f64 / watchers as f64;
    drop(open);
    Ok(format!(
        "{{\"workload\":\"watch-memory\",\"watchers\":{watchers},\"streams\":{streams},\"conns\":{conns},\"setup_seconds\":{:.3},\"rss_before_bytes\":{rss_before},\"rss_after_bytes\":{rss_after},\"bytes_per_watcher\":{per_watcher:.1}}}",
        setup.as_secs_f64()
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "oxcd-bench: {e}\nusage: oxcd-bench [--endpoint URL] [--pid PID] <watch-latency|watch-memory> [options]"
            );
            return ExitCode::from(2);
        }
    };
    // `--threads N`: the client's runtime threads (default: one per CPU;
    // 1 runs everything on this thread).
    let threads = args.num("threads", 0);
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcd-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match args.workload.as_str() {
            "put" => put(&args).await,
            "load" => load(&args).await,
            "range" => range(&args).await,
            "txn-put" => txn_put(&args).await,
            "range-large" => range_large(&args).await,
            "lease-keepalive" => lease_keepalive(&args).await,
            "lease-expiry" => lease_expiry(&args).await,
            "watch-latency" => watch_latency(&args).await,
            "watch-memory" => watch_memory(&args).await,
            "ready" => ready(&args).await,
            other => Err(format!("unknown workload {other:?}")),
        }
    });
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oxcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
