//! The binary as an operator meets it: flags, config file, logs, signals.

use std::process::Command;
use std::time::Duration;

use crate::common::{Proc, etcdctl, free_port, probe};

#[test]
fn version_prints_the_etcd_api_level_and_our_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_oxcd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("etcd Version: 3.6.0"));
    assert_eq!(
        lines.next(),
        Some(format!("oxcd Version: {}", env!("CARGO_PKG_VERSION")).as_str())
    );
}

#[test]
fn unknown_flags_and_invalid_values_fail_like_etcd() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_oxcd"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--no-such-flag"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag provided but not defined: -no-such-flag"),
        "{err}"
    );
    let (code, err) = run(&["--listen-client-urls", "http://127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--advertise-client-urls is required"), "{err}");
}

#[test]
fn logs_are_json_lines_shaped_like_etcds() {
    let p = Proc::oxcd();
    let log = std::fs::read_to_string(p.dir.path().join("server.log")).unwrap();
    let mut ready = false;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["level", "ts", "caller", "msg"] {
            assert!(
                v.get(field).is_some_and(|f| f.is_string()),
                "no {field}: {line}"
            );
        }
        let ts = v["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 27, "timestamp {ts}");
        ready |= v["msg"] == "ready to serve client requests";
    }
    assert!(ready, "no 'ready to serve client requests' line:\n{log}");
}

#[test]
fn sigterm_stops_cleanly_and_data_survives() {
    let mut p = Proc::oxcd();
    let (ok, out, err) = etcdctl(&p.endpoint(), &["put", "survivor", "yes"], None);
    assert!(ok, "{out}{err}");
    p.stop();
    assert!(!p.is_running());
    p.start();
    let (ok, out, _) = etcdctl(
        &p.endpoint(),
        &["get", "survivor", "--print-value-only"],
        None,
    );
    assert!(ok);
    assert_eq!(out, "yes\n");
}

#[test]
fn config_file_and_environment_configure_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let cfg = dir.path().join("etcd.conf.yml");
    std::fs::write(
        &cfg,
        format!(
            "name: filenode\ndata-dir: {}\nlisten-client-urls: {url}\nadvertise-client-urls: {url}\nmax-txn-ops: 2\nlisten-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxcd"))
        .env_clear()
        .env("ETCD_CONFIG_FILE", &cfg)
        .stderr(log)
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if probe(url.clone()) {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("127.0.0.1:{port}");
    let result = etcdctl(
        &endpoint,
        &["txn"],
        Some("\nput a 1\nput b 2\nput c 3\n\n\n"),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "server from config file did not start");
    // max-txn-ops from the file applies.
    assert!(!result.0);
    assert!(
        result
            .2
            .contains("etcdserver: too many operations in txn request"),
        "{:?}",
        result
    );
    assert!(dir.path().join("data").join("member").exists());
}

#[test]
fn raft_log_is_truncated_after_snapshot_count_and_restarts_recover() {
    let mut p = crate::common::Proc::new(
        crate::common::Kind::Oxcd,
        &["--snapshot-count", "50", "--snapshot-catchup-entries", "10"],
    );
    for i in 0..200 {
        let (ok, _, err) = etcdctl(&p.endpoint(), &["put", &format!("k{i:03}"), "v"], None);
        assert!(ok, "{err}");
    }
    p.stop();
    {
        let db = oxcd::storage::Db::open(&p.data_dir().join("member").join("db")).unwrap();
        let log = oxcd::raft::RaftStorage::open(db.clone()).unwrap().unwrap();
        assert!(
            log.first_index() > 100,
            "log not truncated: first index {}",
            log.first_index()
        );
        assert!(log.last_index() >= 200);
    }
    p.start();
    let (ok, out, err) = etcdctl(
        &p.endpoint(),
        &["get", "k", "--prefix", "--keys-only", "-w", "json"],
        None,
    );
    assert!(ok, "{err}\n{}", p.log_tail());
    assert!(out.contains("\"count\":200"), "{out}");
    let (ok, _, _) = etcdctl(&p.endpoint(), &["put", "after", "restart"], None);
    assert!(ok);
}

/// kube-apiserver never closes its watches: SIGTERM must still stop the
/// member once the drain timeout (etcd's request timeout: 5 s plus two
/// election timeouts) has passed, as etcd's GracefulStop bound does.
#[test]
fn sigterm_stops_within_the_drain_timeout_while_watches_stay_open() {
    let mut p = Proc::new(
        crate::common::Kind::Oxcd,
        &["--heartbeat-interval", "20", "--election-timeout", "100"],
    );
    let mut watch = std::process::Command::new(crate::common::etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args([
            format!("--endpoints={}", p.endpoint()).as_str(),
            "watch",
            "forever",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = p.pid().unwrap();
    let started = std::time::Instant::now();
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    while p.is_running() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(!p.is_running(), "still running 20 s after SIGTERM");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(9),
        "stopped after {took:?}; expected about 5.2 s"
    );
    assert!(
        p.log_tail()
            .contains("streams still open after the drain timeout"),
        "{}",
        p.log_tail()
    );
}
