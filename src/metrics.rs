//! Prometheus metrics under etcd's names (etcd: `server/**/metrics.go`,
//! go-grpc-middleware's server metrics, the process collector).
//!
//! Counters and histograms are process-wide atomics updated on the hot
//! paths; gauges that describe the member (leader, sizes, revisions) are
//! read from the server when `/metrics` is scraped. The text is rendered
//! by hand in Prometheus' exposition format 0.0.4.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed upper bounds, in seconds.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: [AtomicU64; 24],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// etcd's disk histograms: 0.001 · 2^k seconds, k = 0..13.
const DISK_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

impl Histogram {
    const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; 24],
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The process-wide metrics.
pub struct Metrics {
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub leader_changes: AtomicU64,
    pub proposals_pending: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub health_success: AtomicU64,
    pub health_failures: AtomicU64,
    pub put_total: AtomicU64,
    pub delete_total: AtomicU64,
    pub range_total: AtomicU64,
    pub txn_total: AtomicU64,
}

/// Every served gRPC method, as go-grpc-middleware registers them.
const GRPC_METHODS: &[(&str, &str)] = &[
    ("etcdserverpb.KV", "Range"),
    ("etcdserverpb.KV", "RangeStream"),
    ("etcdserverpb.KV", "Put"),
    ("etcdserverpb.KV", "DeleteRange"),
    ("etcdserverpb.KV", "Txn"),
    ("etcdserverpb.KV", "Compact"),
    ("etcdserverpb.Watch", "Watch"),
    ("etcdserverpb.Lease", "LeaseGrant"),
    ("etcdserverpb.Lease", "LeaseRevoke"),
    ("etcdserverpb.Lease", "LeaseKeepAlive"),
    ("etcdserverpb.Lease", "LeaseTimeToLive"),
    ("etcdserverpb.Lease", "LeaseLeases"),
    ("etcdserverpb.Cluster", "MemberAdd"),
    ("etcdserverpb.Cluster", "MemberRemove"),
    ("etcdserverpb.Cluster", "MemberUpdate"),
    ("etcdserverpb.Cluster", "MemberList"),
    ("etcdserverpb.Cluster", "MemberPromote"),
    ("etcdserverpb.Maintenance", "Alarm"),
    ("etcdserverpb.Maintenance", "Status"),
    ("etcdserverpb.Maintenance", "Defragment"),
    ("etcdserverpb.Maintenance", "Hash"),
    ("etcdserverpb.Maintenance", "HashKV"),
    ("etcdserverpb.Maintenance", "Snapshot"),
    ("etcdserverpb.Maintenance", "MoveLeader"),
    ("etcdserverpb.Maintenance", "Downgrade"),
    ("v3lockpb.Lock", "Lock"),
    ("v3lockpb.Lock", "Unlock"),
    ("v3electionpb.Election", "Campaign"),
    ("v3electionpb.Election", "Proclaim"),
    ("v3electionpb.Election", "Leader"),
    ("v3electionpb.Election", "Observe"),
    ("v3electionpb.Election", "Resign"),
    ("grpc.health.v1.Health", "Check"),
    ("grpc.health.v1.Health", "Watch"),
];

/// The 17 gRPC status codes, in code order.
const GRPC_CODES: usize = 17;

/// Per-method counters of started and handled (per status code) calls.
struct GrpcTable {
    index: HashMap<String, usize>,
    started: Vec<AtomicU64>,
    handled: Vec<[AtomicU64; GRPC_CODES]>,
}

fn grpc_table() -> &'static GrpcTable {
    static TABLE: OnceLock<GrpcTable> = OnceLock::new();
    TABLE.get_or_init(|| GrpcTable {
        index: GRPC_METHODS
            .iter()
            .enumerate()
            .map(|(i, (s, m))| (format!("/{s}/{m}"), i))
            .collect(),
        started: GRPC_METHODS.iter().map(|_| AtomicU64::new(0)).collect(),
        handled: GRPC_METHODS
            .iter()
            .map(|_| [const { AtomicU64::new(0) }; GRPC_CODES])
            .collect(),
    })
}

/// A served gRPC method, by its index in the method table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcMethod(usize);

impl GrpcMethod {
    /// Whether the method takes and returns one message.
    pub fn is_unary(self) -> bool {
        GRPC_METHODS
            .get(self.0)
            .is_some_and(|(s, m)| grpc_type(s, m) == "unary")
    }
}

/// The method a request path names, if it is one oxcd serves.
pub fn grpc_method(path: &str) -> Option<GrpcMethod> {
    grpc_table().index.get(path).copied().map(GrpcMethod)
}

pub static METRICS: Metrics = Metrics {
    wal_fsync: Histogram::new(DISK_BOUNDS),
    backend_commit: Histogram::new(DISK_BOUNDS),
    leader_changes: AtomicU64::new(0),
    proposals_pending: AtomicU64::new(0),
    proposals_failed: AtomicU64::new(0),
    health_success: AtomicU64::new(0),
    health_failures: AtomicU64::new(0),
    put_total: AtomicU64::new(0),
    delete_total: AtomicU64::new(0),
    range_total: AtomicU64::new(0),
    txn_total: AtomicU64::new(0),
};

/// The gRPC call type of a method, as go-grpc-middleware labels it.
pub fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.KV", "RangeStream")
        | ("etcdserverpb.Maintenance", "Snapshot")
        | ("v3electionpb.Election", "Observe")
        | ("grpc.health.v1.Health", "Watch") => "server_stream",
        _ => "unary",
    }
}

/// The name Prometheus labels carry for a gRPC status code.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

const ALL_CODES: [tonic::Code; GRPC_CODES] = {
    use tonic::Code::*;
    [
        Ok,
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    ]
};

impl Metrics {
    pub fn grpc_started(&self, m: GrpcMethod) {
        if let Some(c) = grpc_table().started.get(m.0) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn grpc_handled(&self, m: GrpcMethod, code: tonic::Code) {
        let i = (code as usize).min(GRPC_CODES - 1);
        if let Some(c) = grpc_table().handled.get(m.0) {
            c[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Values read from the member at scrape time.
pub struct MemberGauges {
    pub member_id: u64,
    pub has_leader: bool,
    pub is_leader: bool,
    pub is_learner: bool,
    pub committed: u64,
    pub applied: u64,
    pub db_size: u64,
    pub db_size_in_use: u64,
    pub quota: i64,
    pub current_rev: i64,
    pub compact_rev: i64,
    pub server_version: &'static str,
    pub cluster_version: &'static str,
}

fn metric(out: &mut String, kind: &str, name: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// The whole `/metrics` text.
pub fn render(m: &MemberGauges) -> String {
    let mut out = String::with_capacity(8192);
    let g = &METRICS;
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    metric(
        &mut out,
        "gauge",
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        &[("", b(m.has_leader))],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        &[("", b(m.is_leader))],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        &[("", b(m.is_learner))],
    );
    metric(
        &mut out,
        "counter",
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        &[("", ld(&g.leader_changes))],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        &[("", m.committed as f64)],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        &[("", m.applied as f64)],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        &[("", ld(&g.proposals_pending))],
    );
    metric(
        &mut out,
        "counter",
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        &[("", ld(&g.proposals_failed))],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_server_quota_backend_bytes",
        "Current backend storage quota size in bytes.",
        &[("", m.quota as f64)],
    );
    let id = format!("server_id=\"{:x}\"", m.member_id);
    metric(
        &mut out,
        "gauge",
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &[(&id, 1.0)],
    );
    let sv = format!("server_version=\"{}\"", m.server_version);
    metric(
        &mut out,
        "gauge",
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &[(&sv, 1.0)],
    );
    let minor: Vec<&str> = m.cluster_version.split('.').take(2).collect();
    let cv = format!("cluster_version=\"{}\"", minor.join("."));
    metric(
        &mut out,
        "gauge",
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        &[(&cv, 1.0)],
    );
    metric(
        &mut out,
        "counter",
        "etcd_server_health_success",
        "The total number of successful health checks",
        &[("", ld(&g.health_success))],
    );
    metric(
        &mut out,
        "counter",
        "etcd_server_health_failures",
        "The total number of failed health checks",
        &[("", ld(&g.health_failures))],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        &[("", m.db_size as f64)],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
        &[("", m.db_size_in_use as f64)],
    );
    metric(
        &mut out,
        "counter",
        "etcd_mvcc_put_total",
        "Total number of puts seen by this member.",
        &[("", ld(&g.put_total))],
    );
    metric(
        &mut out,
        "counter",
        "etcd_mvcc_delete_total",
        "Total number of deletes seen by this member.",
        &[("", ld(&g.delete_total))],
    );
    metric(
        &mut out,
        "counter",
        "etcd_mvcc_range_total",
        "Total number of ranges seen by this member.",
        &[("", ld(&g.range_total))],
    );
    metric(
        &mut out,
        "counter",
        "etcd_mvcc_txn_total",
        "Total number of txns seen by this member.",
        &[("", ld(&g.txn_total))],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        &[("", m.current_rev as f64)],
    );
    metric(
        &mut out,
        "gauge",
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        &[("", m.compact_rev.max(0) as f64)],
    );
    g.wal_fsync.render(
        &mut out,
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
    );
    g.backend_commit.render(
        &mut out,
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
    );
    let t = grpc_table();
    let _ = writeln!(
        out,
        "# HELP grpc_server_started_total Total number of RPCs started on the server.\n# TYPE grpc_server_started_total counter"
    );
    for (i, (s, me)) in GRPC_METHODS.iter().enumerate() {
        let (n, ty) = (t.started[i].load(Ordering::Relaxed), grpc_type(s, me));
        let _ = writeln!(
            out,
            "grpc_server_started_total{{grpc_method=\"{me}\",grpc_service=\"{s}\",grpc_type=\"{ty}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n# TYPE grpc_server_handled_total counter"
    );
    for (i, (s, me)) in GRPC_METHODS.iter().enumerate() {
        let ty = grpc_type(s, me);
        for (c, code) in ALL_CODES.iter().enumerate() {
            let (n, name) = (
                t.handled[i][c].load(Ordering::Relaxed),
                grpc_code_name(*code),
            );
            let _ = writeln!(
                out,
                "grpc_server_handled_total{{grpc_code=\"{name}\",grpc_method=\"{me}\",grpc_service=\"{s}\",grpc_type=\"{ty}\"}} {n}"
            );
        }
    }
    process_metrics(&mut out);
    out
}

/// The process collector's metrics, from /proc/self.
fn process_metrics(out: &mut String) {
    let page = 4096.0;
    let ticks = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of stat (1-based), i.e. 11 and
    // 12 after the state; vsize 23 and rss 24 -> 20 and 21; starttime 22 -> 19.
    if let (Some(u), Some(s)) = (field(11), field(12)) {
        metric(
            out,
            "counter",
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            &[("", (u + s) / ticks)],
        );
    }
    if let Some(v) = field(20) {
        metric(
            out,
            "gauge",
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[("", v)],
        );
    }
    if let Some(r) = field(21) {
        metric(
            out,
            "gauge",
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[("", r * page)],
        );
    }
    if let (Some(start), Some(boot)) = (field(19), boot_time()) {
        metric(
            out,
            "gauge",
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[("", boot + start / ticks)],
        );
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        let n = d.count() as f64;
        metric(
            out,
            "gauge",
            "process_open_fds",
            "Number of open file descriptors.",
            &[("", n)],
        );
        metric(
            out,
            "gauge",
            "os_fd_used",
            "The number of used file descriptors.",
            &[("", n)],
        );
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(max) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok())
    {
        metric(
            out,
            "gauge",
            "process_max_fds",
            "Maximum number of open file descriptors.",
            &[("", max)],
        );
        metric(
            out,
            "gauge",
            "os_fd_limit",
            "The file descriptor limit.",
            &[("", max)],
        );
    }
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(DISK_BOUNDS);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.002\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.004\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"8.192\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_sum 20.0035\n"), "{out}");
        assert!(out.contains("x_count 3\n"));
    }

    #[test]
    fn grpc_paths_types_and_codes() {
        assert_eq!(grpc_method("/etcdserverpb.KV/Range"), Some(GrpcMethod(0)));
        assert_eq!(
            grpc_method("/etcdserverpb.Auth/AuthEnable"),
            None,
            "not served"
        );
        for (i, code) in ALL_CODES.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
        assert_eq!(grpc_type("etcdserverpb.Watch", "Watch"), "bidi_stream");
        assert_eq!(grpc_type("etcdserverpb.KV", "Range"), "unary");
        assert_eq!(grpc_code_name(tonic::Code::Cancelled), "Canceled");
    }
}
