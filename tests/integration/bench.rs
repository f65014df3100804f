//! A smoke of the load generator (`oxcd-bench`) against the real binary:
//! every workload runs briefly and reports what it did. No thresholds —
//! the numbers belong to `scripts/bench`.

use std::process::Command;

use crate::common::Proc;

fn bench(p: &Proc, args: &[&str]) -> serde_json::Value {
    let pid = p.pid().expect("server running").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_oxcd-bench"))
        .args(["--endpoint", &p.url(), "--pid", &pid])
        .args(args)
        .output()
        .expect("run oxcd-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oxcd-bench {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn closed_loop_ok(v: &serde_json::Value, workload: &str, ops: u64) {
    assert_eq!(v["workload"], workload, "{v}");
    assert_eq!(v["ops"], ops, "{v}");
    for f in ["ops_per_sec", "p50_ms", "p99_ms", "max_ms"] {
        assert!(v[f].as_f64().is_some_and(|x| x > 0.0), "{f} in {v}");
    }
    assert!(v["p50_ms"].as_f64() <= v["p99_ms"].as_f64(), "{v}");
    assert!(v["server_cpu_s_per_op"].as_f64().is_some(), "{v}");
    assert!(v["server_rss_bytes"].as_u64().is_some_and(|r| r > 0), "{v}");
    assert!(
        v["server_peak_rss_bytes"].as_u64() >= v["server_rss_bytes"].as_u64(),
        "{v}"
    );
}

#[test]
fn every_workload_runs_against_oxcd() {
    let p = Proc::oxcd();
    let v = bench(&p, &["ready", "--timeout", "10"]);
    assert_eq!(v["workload"], "ready");

    let v = bench(
        &p,
        &[
            "put",
            "--clients",
            "20",
            "--conns",
            "2",
            "--total",
            "300",
            "--key-space",
            "50",
        ],
    );
    closed_loop_ok(&v, "put", 300);
    let v = bench(
        &p,
        &[
            "range",
            "--clients",
            "10",
            "--total",
            "200",
            "--key-space",
            "100",
        ],
    );
    closed_loop_ok(&v, "range-linearizable", 200);
    let v = bench(
        &p,
        &[
            "range",
            "--clients",
            "10",
            "--total",
            "200",
            "--key-space",
            "100",
            "--serializable",
            "true",
        ],
    );
    closed_loop_ok(&v, "range-serializable", 200);
    let v = bench(
        &p,
        &[
            "txn-put",
            "--clients",
            "10",
            "--total",
            "200",
            "--key-space",
            "20",
        ],
    );
    closed_loop_ok(&v, "txn-put", 200);
    let v = bench(
        &p,
        &[
            "lease-keepalive",
            "--leases",
            "10",
            "--streams",
            "2",
            "--total",
            "200",
        ],
    );
    closed_loop_ok(&v, "lease-keepalive", 200);
    let v = bench(
        &p,
        &[
            "range-large",
            "--key-space",
            "1000",
            "--value-size",
            "100",
            "--page",
            "70",
            "--total",
            "2",
        ],
    );
    closed_loop_ok(&v, "range-large-paged", 2);
    let v = bench(
        &p,
        &[
            "range-large",
            "--key-space",
            "1000",
            "--page",
            "0",
            "--total",
            "2",
            "--skip-fill",
            "true",
        ],
    );
    closed_loop_ok(&v, "range-large-single", 2);

    let v = bench(&p, &["watch-latency", "--total", "30"]);
    assert_eq!(v["ops"], 30, "{v}");
    assert!(v["p99_ms"].as_f64().is_some_and(|x| x > 0.0), "{v}");

    let v = bench(&p, &["load", "--key-space", "500", "--key-size", "64"]);
    assert_eq!(v["keys"], 500, "{v}");

    let v = bench(
        &p,
        &[
            "watch-memory",
            "--watchers",
            "200",
            "--streams",
            "10",
            "--conns",
            "2",
        ],
    );
    assert_eq!(v["watchers"], 200, "{v}");
    assert!(v["rss_after_bytes"].as_u64() > Some(0), "{v}");

    // The store holds what the workloads wrote: range-large listed exactly
    // its 1000 keys (it fails when it lists fewer), and `load` wrote 500.
    for (prefix, n) in [("large/", 1000), ("0000000000000000", 500)] {
        let (ok, out, err) = crate::common::etcdctl(
            &p.endpoint(),
            &["get", "--prefix", "--limit", "1", "-w", "json", prefix],
            None,
        );
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("etcdctl json");
        assert_eq!(v["count"], n, "{prefix}: {v}");
    }
}
