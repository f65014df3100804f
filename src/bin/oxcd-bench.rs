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
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
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
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (ch, next, make) = (channels[c % conns].clone(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
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
    format!(
        "{{\"workload\":\"{name}\",\"ops\":{n},\"seconds\":{:.3},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"server_cpu_s_per_op\":{cpu},\"server_rss_bytes\":{rss}}}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(lat, 0.5),
        percentile(lat, 0.9),
        percentile(lat, 0.99),
        percentile(lat, 1.0),
    )
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcd-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match args.workload.as_str() {
            "put" => put(&args).await,
            "lease-keepalive" => lease_keepalive(&args).await,
            "lease-expiry" => lease_expiry(&args).await,
            "watch-latency" => watch_latency(&args).await,
            "watch-memory" => watch_memory(&args).await,
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
