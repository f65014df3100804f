//! Maintenance and Cluster RPCs, the gRPC health service, and the HTTP
//! endpoints on the client port, side by side with real etcd.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use oxcd::proto::etcdserverpb::alarm_request::AlarmAction;
use oxcd::proto::etcdserverpb::cluster_client::ClusterClient;
use oxcd::proto::etcdserverpb::downgrade_request::DowngradeAction;
use oxcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd::proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, DefragmentRequest, DowngradeRequest, HashKvRequest,
    MemberListRequest, MoveLeaderRequest, PutRequest, StatusRequest,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{Kind, Proc, etcd35, etcdctl, reference_etcd};

/// The newest etcd, built by scripts/test (scripts/lib.sh
/// `install_reference_etcd`).
fn etcd_new() -> std::path::PathBuf {
    reference_etcd("OXCD_ETCD_NEW", "$HOME/.cache/oxcd/etcd-v3.7.3/etcd")
}

/// An HTTP/1.1 exchange: status code, lower-cased headers, body.
struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http(endpoint: &str, method: &str, path: &str) -> HttpReply {
    let mut s = TcpStream::connect(endpoint).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read reply");
    let text = String::from_utf8(raw).expect("utf-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let mut reply = HttpReply {
        status,
        headers,
        body: body.to_string(),
    };
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = dechunk(&reply.body);
    }
    reply
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// What must be equal between etcd and oxcd: status, the headers clients
/// look at, and the body (etcd prints health checks in random order and
/// its own version numbers).
fn comparable(r: &HttpReply) -> String {
    let mut body_lines: Vec<&str> = r.body.lines().collect();
    if r.body.starts_with("[") {
        body_lines.sort();
    }
    let mut body = body_lines.join("\n");
    if body.starts_with(r#"{"etcdserver""#) {
        let v: serde_json::Value = serde_json::from_str(&body).expect("version JSON");
        let keys: Vec<String> = v
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| format!("{k}:{}", v.as_str().is_some_and(|s| s.starts_with("3."))))
            .collect();
        body = keys.join(",");
    }
    let mut out = format!("{} {body:?}", r.status);
    for h in [
        "content-type",
        "allow",
        "x-content-type-options",
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        out.push_str(&format!(" {h}={:?}", r.header(h)));
    }
    out
}

#[test]
fn http_endpoints_answer_like_etcd() {
    let oxcd = Proc::oxcd();
    let etcd = Proc::etcd(etcd_new());
    let requests = [
        ("GET", "/health"),
        ("GET", "/health?serializable=true"),
        ("GET", "/health?exclude=NOSPACE&serializable=false"),
        ("POST", "/health"),
        ("GET", "/livez"),
        ("GET", "/livez?verbose"),
        ("GET", "/livez/serializable_read"),
        ("GET", "/readyz"),
        ("GET", "/readyz?verbose"),
        (
            "GET",
            "/readyz?verbose=1&exclude=linearizable_read&exclude=no_such_check",
        ),
        ("GET", "/readyz/linearizable_read?verbose"),
        ("GET", "/readyz/data_corruption"),
        ("GET", "/readyz/non_learner"),
        ("GET", "/readyz/no_such_check"),
        ("PUT", "/readyz"),
        ("HEAD", "/livez"),
        ("GET", "/version"),
        ("DELETE", "/version"),
        ("OPTIONS", "/version"),
        ("GET", "/no/such/path"),
    ];
    for (method, path) in requests {
        let want = http(&etcd.endpoint(), method, path);
        let got = http(&oxcd.endpoint(), method, path);
        assert_eq!(
            comparable(&got),
            comparable(&want),
            "{method} {path}: oxcd body {:?}, etcd body {:?}",
            got.body,
            want.body
        );
    }
    // The versions oxcd reports.
    let v = http(&oxcd.endpoint(), "GET", "/version");
    assert_eq!(
        v.body,
        r#"{"etcdserver":"3.6.0","etcdcluster":"3.6.0","storage":"3.6.0"}"#
    );
    let r = http(&oxcd.endpoint(), "GET", "/readyz?verbose");
    assert_eq!(
        r.body,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_raft_and_backend_state() {
    let p = Proc::new(Kind::Oxcd, &["--quota-backend-bytes", "123456789"]);
    let mut kv = p.kv().await;
    for i in 0..50 {
        kv.put(PutRequest {
            key: format!("k{i}").into(),
            value: vec![b'v'; 1000].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut m = MaintenanceClient::connect(p.url()).await.unwrap();
    let s = m.status(StatusRequest {}).await.unwrap().into_inner();
    let h = s.header.expect("header");
    assert_eq!(h.revision, 51);
    assert!(h.raft_term >= 1);
    assert_eq!(s.version, "3.6.0");
    assert_eq!(s.storage_version, "3.6.0");
    assert_eq!(s.leader, h.member_id, "a single member leads");
    assert_eq!(s.raft_term, h.raft_term);
    assert!(s.raft_index >= 51, "{s:?}");
    assert_eq!(s.raft_applied_index, s.raft_index, "{s:?}");
    assert!(s.db_size > 50_000, "{s:?}");
    assert!(
        s.db_size_in_use > 0 && s.db_size_in_use <= s.db_size,
        "{s:?}"
    );
    assert_eq!(s.db_size_quota, 123456789);
    assert!(!s.is_learner);
    assert!(s.errors.is_empty(), "{s:?}");
    let d = s.downgrade_info.expect("downgrade info is always present");
    assert!(!d.enabled);

    // Without a quota flag: etcd's 2 GiB default.
    let q = Proc::oxcd();
    let mut m2 = MaintenanceClient::connect(q.url()).await.unwrap();
    let s2 = m2.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(s2.db_size_quota, 2 * 1024 * 1024 * 1024);

    // etcdctl renders it (it divides by dbSize, which must not be 0).
    let (ok, out, err) = etcdctl(&p.endpoint(), &["endpoint", "status", "-w", "json"], None);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Status"]["version"], "3.6.0");
    assert_eq!(
        v[0]["Status"]["leader"],
        v[0]["Status"]["header"]["member_id"]
    );
    let (ok, out, err) = etcdctl(&p.endpoint(), &["endpoint", "health"], None);
    assert!(ok && (out + &err).contains("is healthy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_shows_this_member_as_etcd_does() {
    let etcd = Proc::etcd(etcd35());
    let oxcd = Proc::oxcd_twin_of(&etcd);
    let mut shapes = Vec::new();
    for p in [&etcd, &oxcd] {
        let mut c = ClusterClient::connect(p.url()).await.unwrap();
        for linearizable in [false, true] {
            let r = c
                .member_list(MemberListRequest { linearizable })
                .await
                .unwrap()
                .into_inner();
            let h = r.header.expect("header");
            assert_eq!(h.revision, 0, "member responses carry no revision");
            shapes.push((
                p.name().starts_with("oxcd"),
                h.cluster_id,
                h.member_id,
                r.members,
            ));
        }
    }
    let (etcd_shapes, oxcd_shapes) = shapes.split_at(2);
    for (e, o) in etcd_shapes.iter().zip(oxcd_shapes) {
        assert_eq!((e.1, e.2), (o.1, o.2), "same ids from the same flags");
        assert_eq!(e.3.len(), 1);
        let (em, om) = (&e.3[0], &o.3[0]);
        assert_eq!(em.id, om.id);
        assert_eq!(em.name, om.name);
        assert_eq!(em.peer_ur_ls, om.peer_ur_ls);
        assert_eq!(om.client_ur_ls, vec![oxcd.url()]);
        assert_eq!(em.client_ur_ls, vec![etcd.url()]);
        assert!(!om.is_learner);
    }
    let (ok, out, err) = etcdctl(&oxcd.endpoint(), &["member", "list"], None);
    assert!(ok, "{err}");
    assert!(out.contains(", started, default, "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_kv_defragment_alarms_move_leader_and_downgrade() {
    let etcd = Proc::etcd(etcd35());
    let oxcd = Proc::oxcd();
    let mut kv = oxcd.kv().await;
    for i in 0..20 {
        kv.put(PutRequest {
            key: format!("k{}", i % 7).into(),
            value: format!("v{i}").into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut m = MaintenanceClient::connect(oxcd.url()).await.unwrap();
    let hash = |rev| HashKvRequest { revision: rev };
    let h15 = m.hash_kv(hash(15)).await.unwrap().into_inner();
    assert_eq!(h15.hash_revision, 15);
    assert_eq!(h15.header.as_ref().unwrap().revision, 21);
    let now = m.hash_kv(hash(0)).await.unwrap().into_inner();
    assert_eq!(now.hash_revision, 21);
    assert_ne!(now.hash, h15.hash);
    // The hash skips what the compaction removes, so it is the same
    // whether or not the physical compaction ran yet.
    kv.compact(CompactionRequest {
        revision: 10,
        physical: false,
    })
    .await
    .unwrap();
    let logical = m.hash_kv(hash(21)).await.unwrap().into_inner();
    assert_eq!(logical.compact_revision, 10);
    assert_ne!(logical.hash, now.hash, "versions below 10 left the hash");
    m.defragment(DefragmentRequest {}).await.unwrap();
    let after = m.hash_kv(hash(21)).await.unwrap().into_inner();
    assert_eq!(after.hash, logical.hash);
    assert_eq!(after.compact_revision, 10);
    let e = m.hash_kv(hash(5)).await.unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let e = m.hash_kv(hash(99)).await.unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );

    // The rest against etcd, code and message.
    let mut me = MaintenanceClient::connect(etcd.url()).await.unwrap();
    let mut results = Vec::new();
    for (c, id) in [
        (&mut me, etcd_member_id(&etcd).await),
        (&mut m, etcd_member_id(&oxcd).await),
    ] {
        let mut r = Vec::new();
        let alarms = c
            .alarm(AlarmRequest {
                action: AlarmAction::Get as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        r.push(format!("alarms {:?}", alarms.alarms));
        let d = c
            .alarm(AlarmRequest {
                action: AlarmAction::Deactivate as i32,
                member_id: id,
                alarm: 1,
            })
            .await
            .unwrap()
            .into_inner();
        r.push(format!("deactivated {:?}", d.alarms));
        let to_self = c.move_leader(MoveLeaderRequest { target_id: id }).await;
        r.push(format!("move to self ok {}", to_self.is_ok()));
        let to_other = c.move_leader(MoveLeaderRequest { target_id: 42 }).await;
        r.push(format!(
            "{:?}",
            to_other
                .map(|_| ())
                .map_err(|s| (s.code(), s.message().to_string()))
        ));
        let bad = c
            .downgrade(DowngradeRequest {
                action: DowngradeAction::Validate as i32,
                version: "three".into(),
            })
            .await;
        r.push(format!(
            "{:?}",
            bad.map(|_| ())
                .map_err(|s| (s.code(), s.message().to_string()))
        ));
        results.push(r);
    }
    assert_eq!(results[1], results[0]);
    let (ok, out, err) = etcdctl(&oxcd.endpoint(), &["endpoint", "hashkv"], None);
    assert!(ok && out.contains(&oxcd.endpoint()), "{out}{err}");
    let (ok, out, err) = etcdctl(&oxcd.endpoint(), &["defrag"], None);
    assert!(ok && out.contains("Finished defragmenting"), "{out}{err}");
    let (ok, out, err) = etcdctl(&oxcd.endpoint(), &["alarm", "list"], None);
    assert!(ok && out.is_empty(), "{out}{err}");
}

async fn etcd_member_id(p: &Proc) -> u64 {
    let mut m = MaintenanceClient::connect(p.url()).await.unwrap();
    let s = m.status(StatusRequest {}).await.unwrap().into_inner();
    s.header.unwrap().member_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_service_answers_like_etcd() {
    let etcd = Proc::etcd(etcd_new());
    let oxcd = Proc::oxcd();
    let mut seen = Vec::new();
    for p in [&etcd, &oxcd] {
        let channel = tonic::transport::Channel::from_shared(p.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut h = HealthClient::new(channel);
        let server = h
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(server.status, ServingStatus::Serving as i32, "{}", p.name());
        let unknown = h
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        seen.push(unknown.code());
    }
    assert_eq!(seen[0], seen[1]);
}

/// `# TYPE` lines: metric family name -> type.
fn metric_families(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The value of one sample line (name with labels, exactly).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_etcds_names_and_count() {
    let etcd = Proc::etcd(etcd_new());
    let oxcd = Proc::oxcd();
    let etcd_text = http(&etcd.endpoint(), "GET", "/metrics").body;
    let before = http(&oxcd.endpoint(), "GET", "/metrics");
    assert_eq!(before.status, 200);
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
    );
    let theirs = metric_families(&etcd_text);
    let ours = metric_families(&before.body);
    assert!(ours.len() >= 30, "{ours:?}");
    for (name, kind) in &ours {
        assert_eq!(
            theirs.get(name),
            Some(kind),
            "{name} ({kind}) is not one of etcd's metrics"
        );
    }
    let mut kv = oxcd.kv().await;
    for i in 0..5 {
        kv.put(PutRequest {
            key: format!("m{i}").into(),
            value: "v".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    http(&oxcd.endpoint(), "GET", "/health");
    let after = http(&oxcd.endpoint(), "GET", "/metrics").body;
    let b = &before.body;
    assert_eq!(sample(&after, "etcd_server_has_leader"), 1.0);
    assert_eq!(sample(&after, "etcd_server_is_leader"), 1.0);
    assert_eq!(sample(&after, "etcd_debugging_mvcc_current_revision"), 6.0);
    assert_eq!(
        sample(&after, "etcd_mvcc_put_total") - sample(b, "etcd_mvcc_put_total"),
        5.0
    );
    let put_ok = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    assert_eq!(sample(&after, put_ok) - sample(b, put_ok), 5.0);
    let fsyncs = "etcd_disk_wal_fsync_duration_seconds_count";
    assert!(sample(&after, fsyncs) >= sample(b, fsyncs) + 1.0);
    assert!(sample(&after, "etcd_server_proposals_applied_total") >= 6.0);
    assert!(sample(&after, "etcd_server_health_success") >= 1.0);
    assert!(sample(&after, "process_resident_memory_bytes") > 1e6);
    // A failed call is counted with its code.
    let mut m = MaintenanceClient::connect(oxcd.url()).await.unwrap();
    m.hash_kv(HashKvRequest { revision: 999 })
        .await
        .unwrap_err();
    let text = http(&oxcd.endpoint(), "GET", "/metrics").body;
    let out_of_range = r#"grpc_server_handled_total{grpc_code="OutOfRange",grpc_method="HashKV",grpc_service="etcdserverpb.Maintenance",grpc_type="unary"}"#;
    assert_eq!(sample(&text, out_of_range), 1.0);
}

/// A one-byte put; its error message, if refused.
async fn small_put(
    kv: &mut oxcd::proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel>,
) -> Result<(), String> {
    kv.put(PutRequest {
        key: "small".into(),
        value: "v".into(),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| e.message().to_string())
}

/// Fills a member past a 2 MB quota, then recovers as etcd's docs say:
/// compact, defragment, disarm. Every step is compared with etcd 3.5.1
/// (same member id): error codes and messages, alarm lists, Status errors,
/// `/health`, etcdctl's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_and_recovery_works_like_etcd() {
    let quota = ["--quota-backend-bytes", "2000000"];
    let etcd = Proc::new(Kind::Etcd(etcd35()), &quota);
    let oxcd = Proc::oxcd_twin_with(&etcd, &quota);
    let mut transcripts = Vec::new();
    for p in [&etcd, &oxcd] {
        let mut t: Vec<String> = Vec::new();
        let mut kv = p.kv().await;
        let mut m = MaintenanceClient::connect(p.url()).await.unwrap();
        // 100 KB values until the quota refuses one.
        let mut accepted = 0;
        let refusal = loop {
            let r = kv
                .put(PutRequest {
                    key: format!("big{accepted}").into(),
                    value: vec![b'x'; 100_000].into(),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
            assert!(
                accepted < 100,
                "{}: the quota never refused a put",
                p.name()
            );
        };
        t.push(format!(
            "refused: {:?} {}",
            refusal.code(),
            refusal.message()
        ));
        assert!(accepted >= 5, "{}: only {accepted} puts fit", p.name());
        let alarms = m
            .alarm(AlarmRequest::default())
            .await
            .unwrap()
            .into_inner()
            .alarms;
        t.push(format!("alarms: {alarms:?}"));
        let status = m.status(StatusRequest {}).await.unwrap().into_inner();
        t.push(format!("status errors: {:?}", status.errors));
        for path in ["/health", "/health?exclude=NOSPACE"] {
            let h = http(&p.endpoint(), "GET", path);
            t.push(format!("{path}: {} {}", h.status, h.body.trim()));
        }
        // Small writes are refused too; reads, deletes and lease grants...
        t.push(format!("small put: {:?}", small_put(&mut kv).await));
        let (_, out, err) = etcdctl(&p.endpoint(), &["alarm", "list"], None);
        t.push(format!("etcdctl alarm list: {out}{err}"));
        // Recovery: delete, compact, defragment, disarm.
        let (ok, _, err) = etcdctl(&p.endpoint(), &["del", "big", "--prefix"], None);
        assert!(ok, "{err}");
        let rev = kv
            .range(oxcd::proto::etcdserverpb::RangeRequest {
                key: "any".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
        kv.compact(CompactionRequest {
            revision: rev,
            physical: true,
        })
        .await
        .unwrap();
        m.defragment(DefragmentRequest {}).await.unwrap();
        let (_, out, err) = etcdctl(&p.endpoint(), &["alarm", "disarm"], None);
        t.push(format!("etcdctl alarm disarm: {out}{err}"));
        t.push(format!(
            "put after recovery: {:?}",
            small_put(&mut kv).await
        ));
        let h = http(&p.endpoint(), "GET", "/health");
        t.push(format!("/health: {} {}", h.status, h.body.trim()));
        transcripts.push(t);
    }
    assert_eq!(transcripts[1], transcripts[0]);
}

#[test]
fn metrics_urls_serve_only_metrics_and_health_like_etcd() {
    let mut results = Vec::new();
    for kind in [Kind::Etcd(etcd_new()), Kind::Oxcd] {
        let port = crate::common::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let p = Proc::new(kind, &["--listen-metrics-urls", &url]);
        let endpoint = format!("127.0.0.1:{port}");
        let mut seen = Vec::new();
        for (method, path) in [
            ("GET", "/health"),
            ("GET", "/livez"),
            ("GET", "/readyz?verbose"),
            ("GET", "/readyz/linearizable_read"),
            ("GET", "/version"),
            ("GET", "/v3/kv/range"),
            ("GET", "/nothing"),
        ] {
            seen.push(comparable(&http(&endpoint, method, path)));
        }
        let m = http(&endpoint, "GET", "/metrics");
        assert_eq!(m.status, 200, "{}", p.name());
        assert!(m.body.contains("etcd_server_has_leader 1"), "{}", p.name());
        results.push(seen);
    }
    assert_eq!(results[1], results[0]);
}
