//! Leases: etcdctl and raw gRPC against real etcd, the etcd-client crate,
//! mass expiry under write load, and remaining TTLs across a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxcd::proto::etcdserverpb::lease_client::LeaseClient;
use oxcd::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::common::{self, Kind, Proc, run_etcdctl};
use crate::differential::{Op, exec};
use crate::watch::{RawWatch, create_req};

/// Replaces every 16-digit hex lease id by its order of appearance, and
/// the seconds in `remaining(Ns)` by `<n>` (they depend on timing; each is
/// checked to be a plausible remaining TTL): ids are chosen by each server.
fn normalize(out: &str, ids: &mut Vec<String>) -> String {
    let mut s = String::new();
    for word in out.split_inclusive(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        let w = word.trim_end_matches(|c: char| c.is_whitespace() || c == '(' || c == ')');
        let tail = &word[w.len()..];
        if w.len() == 16 && w.chars().all(|c| c.is_ascii_hexdigit()) {
            let i = ids.iter().position(|x| x == w).unwrap_or_else(|| {
                ids.push(w.to_string());
                ids.len() - 1
            });
            s.push_str(&format!("<lease{i}>{tail}"));
        } else if s.ends_with("remaining(")
            && let Some(n) = w.strip_suffix('s').and_then(|n| n.parse::<i64>().ok())
        {
            assert!(
                (-1..=60).contains(&n),
                "implausible remaining TTL {n} in {out}"
            );
            s.push_str(&format!("<n>s{tail}"));
        } else {
            s.push_str(word);
        }
    }
    s
}

/// Sorts the key lists of TimeToLive output (`attached keys([a b])` and
/// JSON `"keys":[...]`): etcd lists a lease's keys in map order, which
/// varies from call to call.
fn sort_key_lists(s: &str) -> String {
    let mut out = s.to_string();
    for (open, close, sep) in [("attached keys([", "])", " "), ("\"keys\":[", "]", ",")] {
        if let Some(i) = out.find(open) {
            let start = i + open.len();
            if let Some(len) = out[start..].find(close) {
                let mut items: Vec<&str> = out[start..start + len].split(sep).collect();
                items.sort_unstable();
                let joined = items.join(sep);
                out = format!("{}{}{}", &out[..start], joined, &out[start + len..]);
            }
        }
    }
    out
}

/// Masks the number after `"field":` in JSON output (lease ids are chosen
/// by each server; remaining TTLs depend on timing). Negative numbers
/// (TTL -1 for a missing lease) are kept.
fn mask_json(s: &str, field: &str) -> String {
    let pat = format!("\"{field}\":");
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(&pat) {
        out.push_str(&rest[..i + pat.len()]);
        rest = &rest[i + pat.len()..];
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if n > 0 {
            out.push_str("<n>");
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    out
}

fn etcdctl_lease_transcript(etcdctl: &std::path::Path, endpoint: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut out = Vec::new();
    let mut run = |args: Vec<String>, ids: &mut Vec<String>| -> String {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, o, e) = run_etcdctl(etcdctl, endpoint, &a, None);
        let e: Vec<&str> = e
            .lines()
            .filter(|l| !l.contains("\"level\":\"warn\""))
            .collect();
        let cmd = args.join(" ").replace("--lease=", "--lease= ");
        let t = format!(
            "$ {}\n[ok={ok}]\n{}{}",
            normalize(&cmd, ids),
            sort_key_lists(&mask_json(&mask_json(&normalize(&o, ids), "id"), "ttl")),
            normalize(&e.join("\n"), ids)
        );
        out.push(t.clone());
        o
    };
    let grant = run(vec!["lease".into(), "grant".into(), "60".into()], &mut ids);
    let id = grant.split_whitespace().nth(1).unwrap_or("0").to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let lease_arg = format!("--lease={id}");
    for args in [
        s(&["put", "k1", "v", &lease_arg]),
        s(&["put", "k2", "v", &lease_arg]),
        s(&["put", "k3", "v", "--lease=1234abcd"]),
        s(&["lease", "timetolive", &id, "--keys"]),
        s(&["lease", "list"]),
        s(&["lease", "keep-alive", "--once", &id]),
        s(&["put", "k2", "v2"]),
        s(&["lease", "timetolive", &id, "--keys", "-w", "json"]),
        s(&["lease", "revoke", &id]),
        s(&["get", "k", "--prefix", "-w", "json"]),
        s(&["lease", "timetolive", &id]),
        s(&["lease", "keep-alive", "--once", &id]),
        s(&["lease", "revoke", &id]),
        s(&["lease", "grant", "0"]),
        s(&["lease", "grant", "1"]),
        s(&["lease", "grant", "9000000001"]),
        s(&["lease", "timetolive", "ffff"]),
    ] {
        run(args, &mut ids);
    }
    out
}

fn compare_etcdctl(reference: PathBuf, etcdctl: PathBuf) {
    let etcd = Proc::etcd(reference);
    let oxcd = Proc::oxcd_twin_of(&etcd);
    let want = etcdctl_lease_transcript(&etcdctl, &etcd.endpoint());
    let got = etcdctl_lease_transcript(&etcdctl, &oxcd.endpoint());
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(g, w, "etcdctl lease output differs from {}", etcd.name());
    }
    assert_eq!(want.len(), got.len());
}

#[test]
fn etcdctl_lease_commands_match_etcd_34() {
    compare_etcdctl(common::etcd34(), common::etcdctl_bin());
}

#[test]
fn etcdctl_lease_commands_match_etcd_35() {
    let etcd = common::etcd35();
    compare_etcdctl(etcd.clone(), etcd.with_file_name("etcdctl"));
}

/// Raw lease RPCs, with TTLs compared to within a second.
async fn lease_rpcs(p: &Proc) -> Vec<String> {
    let ch = Channel::from_shared(p.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut l = LeaseClient::new(ch);
    let mut kv = p.kv().await;
    let mut out = Vec::new();
    macro_rules! rec {
        ($e:expr) => {
            out.push(match $e.await {
                Ok(r) => format!("{:?}", r.into_inner()),
                Err(s) => format!("ERROR {:?}: {}", s.code(), s.message()),
            })
        };
    }
    rec!(l.lease_grant(LeaseGrantRequest { ttl: 100, id: 7 }));
    rec!(l.lease_grant(LeaseGrantRequest { ttl: 100, id: 7 }));
    rec!(l.lease_grant(LeaseGrantRequest { ttl: 1, id: 8 }));
    rec!(l.lease_grant(LeaseGrantRequest { ttl: -3, id: 9 }));
    rec!(l.lease_grant(LeaseGrantRequest {
        ttl: 9_000_000_001,
        id: 10
    }));
    rec!(l.lease_grant(LeaseGrantRequest { ttl: 50, id: 11 }));
    for (k, lease) in [("a", 7), ("b", 7), ("c", 11), ("d", 7)] {
        out.push(
            exec(
                &mut kv,
                &Op::Put(PutRequest {
                    key: Bytes::from(k),
                    value: Bytes::from("v"),
                    lease,
                    ..Default::default()
                }),
            )
            .await,
        );
    }
    // Move c from 11 to 7; detach d; a txn put with a lease.
    out.push(
        exec(
            &mut kv,
            &Op::Put(PutRequest {
                key: Bytes::from("c"),
                value: Bytes::from("v2"),
                lease: 7,
                ..Default::default()
            }),
        )
        .await,
    );
    out.push(
        exec(
            &mut kv,
            &Op::Put(PutRequest {
                key: Bytes::from("d"),
                ignore_value: true,
                ..Default::default()
            }),
        )
        .await,
    );
    out.push(
        exec(
            &mut kv,
            &Op::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: Bytes::from("e"),
                        value: Bytes::from("v"),
                        lease: 11,
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            }),
        )
        .await,
    );
    for id in [7, 11, 12345] {
        let mut r = l
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
            .await
            .unwrap()
            .into_inner();
        // etcd lists the keys in no particular order.
        r.keys.sort();
        // The remaining TTL may differ by the time between calls.
        out.push(format!(
            "ttl id={} remaining~{} granted={} keys={:?}",
            r.id,
            if r.ttl < 0 { r.ttl } else { (r.ttl + 1) / 10 },
            r.granted_ttl,
            r.keys
        ));
    }
    let mut leases: Vec<i64> = l
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner()
        .leases
        .iter()
        .map(|s| s.id)
        .collect();
    leases.sort();
    out.push(format!("leases {leases:?}"));
    // Keep-alive: one response per request; unknown leases get TTL 0.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(LeaseKeepAliveRequest { id: 7 }).await.unwrap();
    tx.send(LeaseKeepAliveRequest { id: 999 }).await.unwrap();
    let mut ka = l
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let r = ka.next().await.unwrap().unwrap();
        out.push(format!("keepalive id={} ttl={}", r.id, r.ttl));
    }
    drop(tx);
    rec!(l.lease_revoke(LeaseRevokeRequest { id: 7 }));
    rec!(l.lease_revoke(LeaseRevokeRequest { id: 7 }));
    out.push(exec(&mut kv, &Op::Range(crate::differential::range("\0", "\0"))).await);
    rec!(l.lease_revoke(LeaseRevokeRequest { id: 11 }));
    out.push(exec(&mut kv, &Op::Range(crate::differential::range("\0", "\0"))).await);
    out
}

async fn compare_rpcs(reference: Proc) {
    let oxcd = Proc::oxcd_twin_of(&reference);
    let want = lease_rpcs(&reference).await;
    let got = lease_rpcs(&oxcd).await;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "lease step {i} differs from {}", reference.name());
    }
    assert_eq!(want.len(), got.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_rpcs_match_etcd_35() {
    compare_rpcs(Proc::etcd(common::etcd35())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_rpcs_match_etcd_34() {
    compare_rpcs(Proc::etcd(common::etcd34())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_client_crate_leases() {
    let p = Proc::oxcd();
    let mut c = etcd_client::Client::connect([p.url()], None).await.unwrap();
    let g = c.lease_grant(30, None).await.unwrap();
    assert_eq!(g.ttl(), 30);
    c.put(
        "lk",
        "v",
        Some(etcd_client::PutOptions::new().with_lease(g.id())),
    )
    .await
    .unwrap();
    let (mut keeper, mut stream) = c.lease_keep_alive(g.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!((r.id(), r.ttl()), (g.id(), 30));
    let t = c
        .lease_time_to_live(
            g.id(),
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert_eq!(t.keys(), &[b"lk".to_vec()]);
    assert!(t.ttl() > 25 && t.ttl() <= 30);
    assert_eq!(c.leases().await.unwrap().leases().len(), 1);
    c.lease_revoke(g.id()).await.unwrap();
    assert!(c.get("lk", None).await.unwrap().kvs().is_empty());
    keeper.keep_alive().await.unwrap();
    assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mass_expiry_deletes_each_leases_keys_in_one_revision_while_writes_continue() {
    const LEASES: i64 = 1000;
    const KEYS_PER_LEASE: usize = 10;
    let p = Proc::oxcd();
    let pid = p.pid().unwrap();
    let ch = Channel::from_shared(p.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut l = LeaseClient::new(ch);
    let mut kv = p.kv().await;
    let start = kv
        .range(RangeRequest {
            key: Bytes::from("x"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let mut w = RawWatch::open(&p.url()).await;
    w.create(create_req("exp/", "exp0", start + 1)).await;
    for id in 1..=LEASES {
        l.lease_grant(LeaseGrantRequest { ttl: 3, id })
            .await
            .unwrap();
        let ops = (0..KEYS_PER_LEASE)
            .map(|k| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: Bytes::from(format!("exp/{id:04}/{k}")),
                    value: Bytes::from("v"),
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
        .unwrap();
    }
    let granted_at = Instant::now();
    // A writer keeps going through the expiry.
    let writer = {
        let mut kv = p.kv().await;
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(8) {
                let t = Instant::now();
                kv.put(PutRequest {
                    key: Bytes::from("writer"),
                    value: Bytes::from("v"),
                    ..Default::default()
                })
                .await
                .expect("write during mass expiry");
                lat.push(t.elapsed());
            }
            lat.sort();
            lat
        })
    };
    // Collect the DELETE events of the expiry.
    let mut deletes: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while n < LEASES as usize * KEYS_PER_LEASE && Instant::now() < deadline {
        let Some(r) = w.next(Duration::from_secs(5)).await else {
            break;
        };
        for e in r.events.iter().filter(|e| e.r#type == 1) {
            let kv = e.kv.as_ref().unwrap();
            deletes
                .entry(kv.mod_revision)
                .or_default()
                .push(String::from_utf8_lossy(&kv.key).into_owned());
            n += 1;
        }
    }
    let took = granted_at.elapsed();
    let lat = writer.await.unwrap();
    assert_eq!(
        n,
        LEASES as usize * KEYS_PER_LEASE,
        "all leased keys deleted"
    );
    assert_eq!(deletes.len(), LEASES as usize, "one revision per lease");
    for (rev, keys) in &deletes {
        let lease = &keys[0][4..8];
        assert_eq!(keys.len(), KEYS_PER_LEASE, "revision {rev}");
        assert!(
            keys.iter().all(|k| &k[4..8] == lease),
            "revision {rev} mixes leases: {keys:?}"
        );
    }
    let left = kv
        .range(RangeRequest {
            key: Bytes::from("exp/"),
            range_end: Bytes::from("exp0"),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(left, 0);
    let p99 = lat[lat.len() * 99 / 100];
    eprintln!(
        "mass expiry: {} keys on {LEASES} leases deleted {:.1}s after grant; {} writes meanwhile, p50 {:?} p99 {:?}; server RSS {} MB",
        n,
        took.as_secs_f64(),
        lat.len(),
        lat[lat.len() / 2],
        p99,
        common::rss_bytes(pid) >> 20
    );
    assert!(
        p99 < Duration::from_secs(1),
        "write p99 {p99:?} during mass expiry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remaining_ttls_survive_a_restart_within_a_checkpoint_interval() {
    let mut p = Proc::new(
        Kind::Oxcd,
        &["--experimental-lease-checkpoint-interval", "1s"],
    );
    let ttl_of = |url: String| async move {
        let ch = Channel::from_shared(url).unwrap().connect().await.unwrap();
        LeaseClient::new(ch)
            .lease_time_to_live(LeaseTimeToLiveRequest {
                id: 42,
                keys: false,
            })
            .await
            .unwrap()
            .into_inner()
            .ttl
    };
    {
        let ch = Channel::from_shared(p.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        LeaseClient::new(ch)
            .lease_grant(LeaseGrantRequest { ttl: 30, id: 42 })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = ttl_of(p.url()).await;
    assert!(
        (22..=25).contains(&before),
        "remaining before restart {before}"
    );
    p.kill9();
    p.start();
    let after = ttl_of(p.url()).await;
    // Not reset to 30: resumed from the last checkpoint (at most one
    // interval old), plus one election timeout of grace.
    assert!(
        after <= before + 2,
        "remaining after restart {after}, before {before}"
    );
    assert!(
        after >= before - 2,
        "remaining after restart {after}, before {before}"
    );
}
