//! Locks and elections: the server-side `v3lockpb`/`v3electionpb` services
//! through the etcd-client crate, and etcdctl's client-side recipes
//! (`etcdctl lock`, `etcdctl elect`) against oxcd. Contenders must take
//! turns: exactly one holds a lock (or leads) at a time.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, LockOptions};

use crate::common::{self, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_client_locks_are_mutually_exclusive() {
    let p = Proc::oxcd();
    let holders = Arc::new(AtomicI32::new(0));
    let max_seen = Arc::new(AtomicI32::new(0));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (url, holders, max_seen) = (p.url(), holders.clone(), max_seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect([url], None).await.unwrap();
            for _ in 0..3 {
                let lease = c.lease_grant(10, None).await.unwrap().id();
                let held = c
                    .lock("the-lock", Some(LockOptions::new().with_lease(lease)))
                    .await
                    .unwrap();
                assert!(held.key().starts_with(b"the-lock/"), "client {i}");
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                c.unlock(held.key()).await.unwrap();
                c.lease_revoke(lease).await.unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("lock contention finished")
            .unwrap();
    }
    assert_eq!(
        max_seen.load(Ordering::SeqCst),
        1,
        "two clients held the lock at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_is_released_when_its_lease_expires() {
    let p = Proc::oxcd();
    let mut a = Client::connect([p.url()], None).await.unwrap();
    let mut b = Client::connect([p.url()], None).await.unwrap();
    let short = a.lease_grant(2, None).await.unwrap().id();
    a.lock("l", Some(LockOptions::new().with_lease(short)))
        .await
        .unwrap();
    let long = b.lease_grant(60, None).await.unwrap().id();
    let started = Instant::now();
    // b waits until a's lease expires (nobody keeps it alive).
    let held = tokio::time::timeout(
        Duration::from_secs(15),
        b.lock("l", Some(LockOptions::new().with_lease(long))),
    )
    .await
    .expect("lock handed over after expiry")
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(held.key().ends_with(format!("{long:x}").as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_client_elections_campaign_proclaim_observe_resign() {
    let p = Proc::oxcd();
    let mut a = Client::connect([p.url()], None).await.unwrap();
    let mut b = Client::connect([p.url()], None).await.unwrap();
    let err = a.leader("e").await.unwrap_err();
    assert!(err.to_string().contains("election: no leader"), "{err}");
    let mut observer = Client::connect([p.url()], None).await.unwrap();
    let mut obs = observer.observe("e").await.unwrap();

    let la = a.lease_grant(30, None).await.unwrap().id();
    let ca = a.campaign("e", "alpha", la).await.unwrap();
    let leader_a = ca.leader().unwrap().clone();
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"alpha");

    // b campaigns and waits while a leads.
    let lb = b.lease_grant(30, None).await.unwrap().id();
    let waiting = tokio::spawn(async move { b.campaign("e", "beta", lb).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "b became leader while a leads");

    a.proclaim(
        "alpha2",
        Some(etcd_client::ProclaimOptions::new().with_leader(leader_a.clone())),
    )
    .await
    .unwrap();
    a.resign(Some(
        etcd_client::ResignOptions::new().with_leader(leader_a.clone()),
    ))
    .await
    .unwrap();
    let cb = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("b elected after a resigned")
        .unwrap()
        .unwrap();
    assert!(
        cb.leader()
            .unwrap()
            .key()
            .ends_with(format!("{lb:x}").as_bytes())
    );
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"beta");
    // a is no longer leader.
    let err = a
        .proclaim(
            "again",
            Some(etcd_client::ProclaimOptions::new().with_leader(leader_a)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("election: not leader"), "{err}");

    // The observer saw alpha, alpha2, then beta.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(5), obs.message())
            .await
            .expect("observe event")
            .unwrap()
            .unwrap();
        seen.push(String::from_utf8(r.kv().unwrap().value().to_vec()).unwrap());
    }
    assert_eq!(seen, ["alpha", "alpha2", "beta"]);
}

/// `etcdctl lock NAME -- cmd` runs cmd while holding the lock: contending
/// runs must not overlap.
#[test]
fn etcdctl_lock_serializes_commands() {
    let p = Proc::oxcd();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!("echo in >> {0}; sleep 0.3; echo out >> {0}", log.display());
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            Command::new(common::etcdctl_bin())
                .env_clear()
                .env("ETCDCTL_API", "3")
                .args([
                    &format!("--endpoints={}", p.endpoint()),
                    "lock",
                    "ctl-lock",
                    "--",
                    "/bin/sh",
                    "-c",
                    &script,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines,
        ["in", "out", "in", "out", "in", "out"],
        "overlapping holders"
    );
}

/// `etcdctl elect NAME PROPOSAL` leads until it exits; `elect -l` observes.
#[test]
fn etcdctl_elect_hands_leadership_over() {
    let p = Proc::oxcd();
    let ctl = |args: &[&str]| {
        Command::new(common::etcdctl_bin())
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", p.endpoint()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = ctl(&["elect", "ctl-elect", "one"]);
    std::thread::sleep(Duration::from_millis(700));
    let mut second = ctl(&["elect", "ctl-elect", "two"]);
    let listener = ctl(&["elect", "-l", "ctl-elect"]);
    std::thread::sleep(Duration::from_millis(700));
    let _ = first.kill();
    let _ = first.wait();
    // first's lease is not kept alive after the kill; the listener sees the
    // proposal change once its key is gone (lease TTL 60s by default would
    // be too slow, so delete the first leader's key the way an expiry would).
    let (ok, out, _) = common::etcdctl(
        &p.endpoint(),
        &[
            "get",
            "ctl-elect/",
            "--prefix",
            "--keys-only",
            "--sort-by=CREATE",
        ],
        None,
    );
    assert!(ok);
    let first_key = out.lines().next().unwrap().to_string();
    let (ok, _, _) = common::etcdctl(&p.endpoint(), &["del", &first_key], None);
    assert!(ok);
    std::thread::sleep(Duration::from_millis(1000));
    let _ = second.kill();
    let second_out = second.wait_with_output().unwrap();
    let mut listener = listener;
    let _ = listener.kill();
    let listened = listener.wait_with_output().unwrap();
    let listened = String::from_utf8_lossy(&listened.stdout);
    assert!(
        String::from_utf8_lossy(&second_out.stdout).contains("two"),
        "second never led"
    );
    let names: Vec<&str> = listened
        .lines()
        .filter(|l| *l == "one" || *l == "two")
        .collect();
    assert_eq!(names, ["one", "two"], "listener saw: {listened}");
}
