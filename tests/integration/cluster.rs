//! Multi-member clusters: replication, leader failover, partitions,
//! snapshots, membership changes and etcdctl's cluster commands, each
//! checked for linearizability over the clients' recorded histories.

use std::time::{Duration, Instant};

use crate::cluster_common::{Cluster, Workload};
use crate::common::run_etcdctl;
use crate::lincheck;

/// etcdctl 3.5 (etcdctl 3.4 sends `http://host:port` as the HTTP/2
/// authority for `--cluster` endpoints, which the HTTP/2 server rejects).
fn etcdctl35() -> std::path::PathBuf {
    crate::common::etcd35().with_file_name("etcdctl")
}

fn ctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    run_etcdctl(&etcdctl35(), endpoint, args, None)
}

fn check_history(h: &lincheck::History) -> lincheck::CheckStats {
    let events = h.events();
    match lincheck::check(&events) {
        Ok(stats) => stats,
        Err(e) => panic!(
            "history of {} operations is not linearizable: {e}",
            events.len()
        ),
    }
}

/// Reads every workload key through member `i` (linearizable) and records
/// the reads, so writes lost by a member show up in the history.
fn final_reads(c: &Cluster, i: usize, h: &lincheck::History, keys: usize) {
    let url = c.members[i].url();
    c.block_on(async {
        let mut kv = oxcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
            .await
            .expect("connect for final reads");
        for k in 0..keys {
            let key = format!("lin/k{k}");
            let call = h.now();
            let r = kv
                .range(oxcd::proto::etcdserverpb::RangeRequest {
                    key: key.clone().into(),
                    ..Default::default()
                })
                .await
                .expect("final read")
                .into_inner();
            let ret = h.now();
            h.record(lincheck::Event {
                client: 10_000 + i,
                op: lincheck::Op::Get { key },
                call,
                ret,
                outcome: lincheck::Outcome::Value(
                    r.kvs
                        .first()
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                ),
            });
        }
    });
}

#[test]
fn three_members_replicate_and_etcdctl_sees_the_cluster() {
    let mut c = Cluster::start(3, &[]);
    let ep: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    // A write through one member is read linearizably through the others.
    let (ok, _, err) = ctl(&ep[0], &["put", "greeting", "hello"]);
    assert!(ok, "{err}");
    for e in &ep[1..] {
        let (ok, out, err) = ctl(e, &["get", "greeting", "--print-value-only"]);
        assert!(ok, "{err}");
        assert_eq!(out, "hello\n");
    }
    // member list: three started members with names and URLs.
    let (ok, out, err) = ctl(&ep[1], &["member", "list", "-w", "table"]);
    assert!(ok, "{err}");
    for m in &c.members {
        assert!(out.contains(&m.name), "{out}");
        assert!(out.contains(&m.peer_url()), "{out}");
        assert!(out.contains(&m.url()), "{out}");
    }
    assert_eq!(out.matches("started").count(), 3, "{out}");
    // endpoint status --cluster: one leader, one term, three ids.
    let (ok, out, err) = ctl(&ep[2], &["endpoint", "status", "--cluster", "-w", "json"]);
    assert!(ok, "{err}");
    let statuses: Vec<serde_json::Value> = serde_json::from_str(&out).expect("status json");
    assert_eq!(statuses.len(), 3, "{out}");
    let leaders: std::collections::HashSet<u64> = statuses
        .iter()
        .map(|s| s["Status"]["leader"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(leaders.len(), 1, "{out}");
    let ids: std::collections::HashSet<u64> = statuses
        .iter()
        .map(|s| s["Status"]["header"]["member_id"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(ids.len(), 3, "{out}");
    assert!(ids.contains(leaders.iter().next().unwrap()));
    let (ok, out, err) = ctl(&ep[0], &["endpoint", "status", "--cluster", "-w", "table"]);
    assert!(ok, "{err}");
    assert!(out.contains("true"), "{out}");
    let (ok, out, err) = ctl(&ep[0], &["endpoint", "health", "--cluster"]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("is healthy").count(), 3, "{out}");
    // Leases through a follower: keep-alive and time-to-live are answered
    // by the leader's lessor; an expired lease's key goes away everywhere.
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = &c.members[(leader + 1) % 3].endpoint();
    let (ok, out, err) = ctl(follower, &["lease", "grant", "3"]);
    assert!(ok, "{err}");
    let lease = out.split_whitespace().nth(1).expect("lease id").to_string();
    let (ok, _, err) = ctl(
        follower,
        &["put", "leased", "v", &format!("--lease={lease}")],
    );
    assert!(ok, "{err}");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        let (ok, out, err) = ctl(follower, &["lease", "keep-alive", "--once", &lease]);
        assert!(ok, "{err}");
        assert!(out.contains("keepalived with TTL(3)"), "{out}");
    }
    let (ok, out, err) = ctl(follower, &["lease", "timetolive", &lease, "--keys"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("granted with TTL(3s)") && out.contains("leased"),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let gone = ep.iter().all(|e| {
            ctl(e, &["get", "leased", "--print-value-only"])
                .1
                .is_empty()
        });
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "the expired lease's key stayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Maintenance.Hash: members that applied the same entries hash equal.
    let urls = c.endpoints();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hashes: Vec<(u32, i64)> = c.block_on(async {
            let mut out = Vec::new();
            for u in &urls {
                let mut m =
                    oxcd::proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(
                        u.clone(),
                    )
                    .await
                    .expect("connect");
                let r = m
                    .hash(oxcd::proto::etcdserverpb::HashRequest {})
                    .await
                    .expect("hash")
                    .into_inner();
                out.push((r.hash, r.header.expect("header").revision));
            }
            out
        });
        if hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members' hashes differ: {hashes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Response headers name the member that answered.
    let st = c.statuses();
    let member_ids: std::collections::HashSet<u64> = st.values().map(|s| s.0).collect();
    assert_eq!(member_ids.len(), 3);
    let terms: std::collections::HashSet<u64> = st.values().map(|s| s.2).collect();
    assert_eq!(terms.len(), 1, "one term across the cluster: {st:?}");
}

#[test]
fn killing_the_leader_elects_a_new_one_without_losing_writes() {
    let mut c = Cluster::start(3, &[]);
    let old = c.wait_leader(Duration::from_secs(10));
    let load = Workload::start(&c.handle(), c.endpoints(), 6, 4);
    load.wait_acked(150, Duration::from_secs(20));
    let killed_at = Instant::now();
    c.members[old].kill9();
    let new = c.wait_leader(Duration::from_secs(10));
    let failover = killed_at.elapsed();
    assert_ne!(new, old);
    // Writes go on under the new leader.
    load.wait_acked(50, Duration::from_secs(20));
    // The old leader comes back as a follower and catches up.
    c.restart(old);
    c.members[old].wait_ready(Duration::from_secs(30));
    load.wait_acked(20, Duration::from_secs(20));
    let (stats, history) = load.stop(&c.handle());
    for i in 0..3 {
        final_reads(&c, i, &history, 4);
    }
    eprintln!("new leader after {failover:?}; workload {stats:?}");
    assert!(stats.ok > 100, "clients made progress: {stats:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    let checked = check_history(&history);
    assert!(checked.ops > 100);
}

#[test]
fn an_isolated_member_refuses_writes_and_catches_up_after_healing() {
    isolated_member(Cluster::start(3, &[]), false);
}

#[test]
fn an_isolated_leader_steps_down_and_the_majority_goes_on() {
    isolated_member(Cluster::start(3, &[]), true);
}

/// Cuts one member off (a follower, or the leader) under load: it refuses
/// writes, the others go on, and after healing it has every write.
fn isolated_member(mut c: Cluster, the_leader: bool) {
    let leader = c.wait_leader(Duration::from_secs(10));
    let victim = if the_leader { leader } else { (leader + 1) % 3 };
    let survivor = (victim + 1) % 3;
    let load = Workload::start(&c.handle(), c.endpoints(), 6, 4);
    load.wait_acked(60, Duration::from_secs(20));
    c.members[victim].proxy.block();
    // The isolated member loses its leader and refuses writes with etcd's
    // errors; the majority goes on.
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, _, err) = ctl(
        &c.members[victim].endpoint(),
        &["put", "during-partition", "x", "--command-timeout=3s"],
    );
    assert!(!ok, "the minority accepted a write");
    // Without a leader, raft drops the proposal: etcd's error text for it
    // (code Unknown); a proposal still in flight when the leader was lost
    // times out instead.
    assert!(
        err.contains("raft proposal dropped") || err.contains("etcdserver: request timed out"),
        "{err}"
    );
    if the_leader {
        // The two others elect one of them.
        let victim_id = c.ids()[&victim];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = c.statuses();
            let leaders: std::collections::HashSet<u64> = st
                .iter()
                .filter(|(i, _)| **i != victim)
                .map(|(_, s)| s.1)
                .collect();
            if leaders.len() == 1 && !leaders.contains(&0) && !leaders.contains(&victim_id) {
                break;
            }
            assert!(Instant::now() < deadline, "no new leader: {st:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let majority = c.members[survivor].endpoint();
    let (ok, _, err) = ctl(&majority, &["put", "during-partition", "majority"]);
    assert!(ok, "the majority refused a write: {err}");
    // The clients of the majority's members go on meanwhile.
    load.wait_acked(60, Duration::from_secs(20));
    c.members[victim].proxy.heal();
    // After healing, the member has every write.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, out, _) = ctl(
            &c.members[victim].endpoint(),
            &["get", "during-partition", "--print-value-only"],
        );
        if ok && out == "majority\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healed member did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (stats, history) = load.stop(&c.handle());
    for i in 0..3 {
        final_reads(&c, i, &history, 4);
    }
    eprintln!("partition workload {stats:?}");
    assert!(stats.ok > 100, "{stats:?}");
    check_history(&history);
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut c = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "100",
            "--snapshot-catchup-entries",
            "20",
        ],
    );
    let leader = c.wait_leader(Duration::from_secs(10));
    let lagging = (leader + 2) % 3;
    let up: Vec<String> = (0..3)
        .filter(|i| *i != lagging)
        .map(|i| c.members[i].url())
        .collect();
    let load = Workload::start(&c.handle(), up, 4, 4);
    c.members[lagging].kill9();
    let ep = c.members[leader].endpoint();
    for i in 0..400 {
        let (ok, _, err) = ctl(&ep, &["put", &format!("snap/k{i:04}"), &format!("v{i}")]);
        assert!(ok, "{err}");
        if i % 100 == 0 {
            let (ok, _, err) = ctl(&ep, &["lease", "grant", "600"]);
            assert!(ok, "{err}");
        }
    }
    c.restart(lagging);
    c.members[lagging].wait_ready(Duration::from_secs(30));
    let (stats, history) = load.stop(&c.handle());
    for i in 0..3 {
        final_reads(&c, i, &history, 4);
    }
    assert!(stats.ok > 100, "{stats:?}");
    check_history(&history);
    let log = c.members[lagging].log();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "the member did not install a snapshot; log:\n{}",
        c.members[lagging].log_tail()
    );
    // Same data, same hash, same leases on every member.
    let lag_ep = c.members[lagging].endpoint();
    let (ok, out, err) = ctl(
        &lag_ep,
        &[
            "get",
            "snap/",
            "--prefix",
            "--count-only",
            "--consistency=s",
            "-w",
            "fields",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"Count\" : 400"), "{out}");
    let (ok, out, err) = ctl(&lag_ep, &["get", "snap/k0399", "--print-value-only"]);
    assert!(ok, "{err}");
    assert_eq!(out, "v399\n");
    let (ok, out, err) = ctl(&lag_ep, &["lease", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("found 4 leases"), "{out}");
    let (ok, out, err) = ctl(&ep, &["endpoint", "hashkv", "--cluster", "-w", "json"]);
    assert!(ok, "{err}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).expect("hashkv json");
    let hashes: std::collections::HashSet<u64> = v
        .iter()
        .map(|s| s["HashKV"]["hash"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(v.len(), 3, "{out}");
    assert_eq!(hashes.len(), 1, "members disagree: {out}");
    // Writes go on through the member that installed the snapshot.
    let (ok, _, err) = ctl(&lag_ep, &["put", "after-snapshot", "yes"]);
    assert!(ok, "{err}");
}

#[test]
fn a_learner_joins_catches_up_is_promoted_and_an_old_member_is_removed_under_load() {
    let mut c = Cluster::start(3, &[]);
    let load = Workload::start(&c.handle(), c.endpoints(), 4, 4);
    // Members count as connected after 5 s (etcd's HealthInterval).
    std::thread::sleep(Duration::from_millis(5500));
    let ep0 = c.members[0].endpoint();
    let new = c.prepare_member("m3", &[]);
    let peer = c.members[new].peer_url();
    let (ok, out, err) = ctl(
        &ep0,
        &[
            "member",
            "add",
            "m3",
            &format!("--peer-urls={peer}"),
            "--learner",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    let initial_cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("ETCD_INITIAL_CLUSTER line")
        .to_string();
    // "Member <id> added to cluster <id>"
    let id_hex = out
        .split_whitespace()
        .nth(1)
        .expect("member id")
        .to_string();
    // A second learner is refused (--max-learners 1).
    let (ok, _, err) = ctl(
        &ep0,
        &[
            "member",
            "add",
            "m4",
            "--peer-urls=http://127.0.0.1:1",
            "--learner",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("etcdserver: too many learner members in cluster"),
        "{err}"
    );
    // Not started yet: not in sync with the leader.
    let (ok, _, err) = ctl(&ep0, &["member", "promote", &id_hex]);
    assert!(!ok);
    assert!(
        err.contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{err}"
    );
    c.start_joining(new, &initial_cluster);
    // A learner serves serializable reads and Status only (etcd's rule).
    let learner_ep = c.members[new].endpoint();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, _) = ctl(&learner_ep, &["endpoint", "status", "-w", "json"]);
        if ok && out.contains("\"isLearner\":true") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the learner did not come up: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, err) = ctl(&learner_ep, &["get", "lin/k0"]);
    assert!(!ok);
    assert!(
        err.contains("etcdserver: rpc not supported for learner"),
        "{err}"
    );
    let (ok, _, err) = ctl(&learner_ep, &["put", "x", "y"]);
    assert!(!ok);
    assert!(
        err.contains("etcdserver: rpc not supported for learner"),
        "{err}"
    );
    let (ok, _, err) = ctl(&learner_ep, &["get", "lin/k0", "--consistency=s"]);
    assert!(ok, "{err}");
    // Promote once it caught up (kubeadm retries the same way).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, _, err) = ctl(&ep0, &["member", "promote", &id_hex]);
        if ok {
            break;
        }
        assert!(err.contains("in sync with leader"), "{err}");
        assert!(Instant::now() < deadline, "learner never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.members[new].wait_ready(Duration::from_secs(30));
    let (ok, out, err) = ctl(&ep0, &["member", "promote", &id_hex]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("etcdserver: can only promote a learner member"),
        "{err}"
    );
    // Remove an old member that is not the one we talk to.
    let ids = c.ids();
    let victim = 2;
    let victim_hex = format!("{:x}", ids[&victim]);
    let (ok, out, err) = ctl(&ep0, &["member", "remove", &victim_hex]);
    assert!(ok, "{err}");
    assert!(out.contains("removed from cluster"), "{out}");
    assert!(
        c.members[victim].wait_exit(Duration::from_secs(10)),
        "the removed member kept running"
    );
    let (ok, out, err) = ctl(&ep0, &["member", "list"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("m3") && !out.contains(&victim_hex), "{out}");
    load.wait_acked(20, Duration::from_secs(20));
    let (stats, history) = load.stop(&c.handle());
    for i in [0, 1, new] {
        final_reads(&c, i, &history, 4);
    }
    eprintln!("membership workload {stats:?}");
    assert!(stats.ok > 100, "{stats:?}");
    check_history(&history);
}

#[test]
fn membership_misuse_gets_etcds_errors() {
    membership_misuse(Cluster::start(3, &[]));
}

/// The same steps against a 3-member etcd 3.5.1: the errors asserted
/// above are etcd's.
#[test]
fn membership_misuse_gets_the_same_errors_from_etcd() {
    membership_misuse(Cluster::start_with(crate::common::etcd35(), 3, &[]));
}

fn membership_misuse(mut c: Cluster) {
    // etcd counts a peer as connected once it has been for 5 s
    // (HealthInterval); before that every reconfiguration is "unhealthy".
    std::thread::sleep(Duration::from_millis(5500));
    let ep = c.members[0].endpoint();
    let taken = c.members[1].peer_url();
    // etcdctl checks URLs itself; a raw client reaches the server's check.
    let url = c.members[0].url();
    let status = c
        .block_on(async move {
            let mut cl = oxcd::proto::etcdserverpb::cluster_client::ClusterClient::connect(url)
                .await
                .expect("connect");
            cl.member_add(oxcd::proto::etcdserverpb::MemberAddRequest {
                peer_ur_ls: vec!["http://127.0.0.1".into()],
                is_learner: false,
            })
            .await
        })
        .expect_err("a peer URL without a port was accepted");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "etcdserver: given member URLs are invalid"
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "member".into(),
                "add".into(),
                "x".into(),
                format!("--peer-urls={taken}"),
            ],
            "etcdserver: Peer URLs already exists",
        ),
        (
            vec!["member".into(), "remove".into(), "1234abcd".into()],
            "etcdserver: member not found",
        ),
        (
            vec![
                "member".into(),
                "update".into(),
                "1234abcd".into(),
                "--peer-urls=http://127.0.0.1:9".into(),
            ],
            "etcdserver: member not found",
        ),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = ctl(&ep, &a);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let ids = c.ids();
    let (ok, _, err) = ctl(&ep, &["member", "promote", &format!("{:x}", ids[&1])]);
    assert!(!ok);
    assert!(
        err.contains("etcdserver: can only promote a learner member"),
        "{err}"
    );
    // move-leader: refused by followers, to non-members; works on the leader.
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    let target = format!("{:x}", ids[&follower]);
    // etcdctl only sends move-leader to the leader; a raw client can ask
    // a follower.
    let url = c.members[follower].url();
    let target_id = ids[&follower];
    let status = c
        .block_on(async move {
            let mut m =
                oxcd::proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(url)
                    .await
                    .expect("connect");
            m.move_leader(oxcd::proto::etcdserverpb::MoveLeaderRequest { target_id })
                .await
        })
        .expect_err("a follower moved leadership");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), "etcdserver: not leader");
    let (ok, _, err) = ctl(&c.members[leader].endpoint(), &["move-leader", "1234abcd"]);
    assert!(!ok);
    assert!(err.contains("etcdserver: bad leader transferee"), "{err}");
    let (ok, out, err) = ctl(&c.members[leader].endpoint(), &["move-leader", &target]);
    assert!(ok, "{err}");
    assert!(out.contains("Leadership transferred"), "{out}");
    assert_eq!(c.wait_leader(Duration::from_secs(5)), follower);
    // Update a member's peer URLs (to the same proxy: still reachable).
    let url = c.members[2].peer_url();
    let (ok, out, err) = ctl(
        &ep,
        &[
            "member",
            "update",
            &format!("{:x}", ids[&2]),
            &format!("--peer-urls={url}"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("updated in cluster"), "{out}");
    // With one member down, a voter cannot be added and a second member
    // cannot be removed without losing quorum.
    let down = (follower + 1) % 3;
    let alive = 3 - down - follower;
    c.members[down].kill9();
    std::thread::sleep(Duration::from_secs(2));
    let ep_alive = c.members[follower].endpoint();
    let (ok, _, err) = ctl(
        &ep_alive,
        &["member", "add", "y", "--peer-urls=http://127.0.0.1:9"],
    );
    assert!(!ok);
    assert!(err.contains("etcdserver: unhealthy cluster"), "{err}");
    // The same through the follower that is still up.
    let (ok, _, err) = ctl(
        &c.members[alive].endpoint(),
        &["member", "add", "y", "--peer-urls=http://127.0.0.1:9"],
    );
    assert!(!ok);
    assert!(err.contains("etcdserver: unhealthy cluster"), "{err}");
    let (ok, _, err) = ctl(
        &ep_alive,
        &["member", "remove", &format!("{:x}", ids[&alive])],
    );
    assert!(!ok);
    assert!(err.contains("etcdserver: unhealthy cluster"), "{err}");
    // The member that is down can be removed.
    let (ok, out, err) = ctl(
        &ep_alive,
        &["member", "remove", &format!("{:x}", ids[&down])],
    );
    assert!(ok, "{err}");
    assert!(out.contains("removed from cluster"), "{out}");
    // Two voters left, both connected: one may go.
    let (ok, _, err) = ctl(
        &ep_alive,
        &["member", "remove", &format!("{:x}", ids[&alive])],
    );
    assert!(ok, "{err}");
    // A one-member cluster may add a voter that has not started yet, but
    // not a second one: too few started members for the new quorum.
    let (ok, _, err) = ctl(
        &ep_alive,
        &["member", "add", "z", "--peer-urls=http://127.0.0.1:9"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(
        &ep_alive,
        &["member", "add", "w", "--peer-urls=http://127.0.0.1:10"],
    );
    assert!(!ok);
    assert!(
        err.contains("etcdserver: re-configuration failed due to not enough started members"),
        "{err}"
    );
}

#[test]
fn the_whole_cluster_killed_comes_back_one_member_at_a_time_with_every_write() {
    let mut c = Cluster::start(3, &[]);
    let load = Workload::start(&c.handle(), c.endpoints(), 6, 4);
    load.wait_acked(150, Duration::from_secs(20));
    for i in 0..3 {
        c.members[i].kill9();
    }
    let (stats, history) = load.stop(&c.handle());
    assert!(stats.ok > 100, "{stats:?}");
    // One member alone has no quorum: it waits for its peers, running.
    c.restart(0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.members[0].is_running(), "a member without quorum gave up");
    c.restart(1);
    c.members[0].wait_ready(Duration::from_secs(30));
    c.members[1].wait_ready(Duration::from_secs(30));
    c.restart(2);
    c.members[2].wait_ready(Duration::from_secs(30));
    for i in 0..3 {
        final_reads(&c, i, &history, 4);
    }
    check_history(&history);
}
