//! TLS on the client port, side by side with etcd 3.7.3: every case runs
//! against both servers started with the same flags and certificates, and
//! must end the same way on both (and the way the case says). Covered:
//! mutual TLS with etcdctl 3.4 and 3.5 and the `etcd-client` crate; the
//! refusals (no client certificate, a client certificate of another CA,
//! the server checked against the wrong CA, an expired client certificate,
//! plaintext to the TLS port, a certificate the CRL revokes, a hostname not
//! allowed, TLS 1.2 under `--tls-min-version TLS1.3`, a cipher suite outside
//! `--cipher-suites`); a server certificate replaced on disk; `/health` over
//! https on the client port and over http on a metrics port; etcd's
//! start-up refusal of an https URL without a certificate; and a 3-member
//! cluster with peer and client mutual TLS (etcd's flags, as kubeadm passes
//! them), where a member whose peer certificate another CA signed is kept
//! out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, date_time_ymd,
};

use crate::common::{etcd35_ctl, etcdctl_bin, free_port, reference_etcd, run_etcdctl};

fn etcd37() -> PathBuf {
    reference_etcd("OXCD_ETCD_NEW", "$HOME/.cache/oxcd/etcd-v3.7.3/etcd")
}

/// A certificate authority of the tests.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf certificate for `sans` (DNS names or IPs) usable as server
    /// and client, as kubeadm's etcd certificates are: (cert, key) PEM.
    fn leaf(&self, cn: &str, sans: &[&str], serial: u64, expired: bool) -> (String, String) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.serial_number = Some(SerialNumber::from(serial));
        if expired {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A DER CRL revoking `serials`.
    fn crl(&self, serials: &[u64]) -> Vec<u8> {
        let p = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.issuer).unwrap().der().to_vec()
    }
}

/// The certificates of one test, as files.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other: Ca,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("etcd-ca"),
            other: Ca::new("other-ca"),
        };
        pki.write("ca.pem", &pki.ca.pem);
        pki.write("other-ca.pem", &pki.other.pem);
        let server = pki
            .ca
            .leaf("server", &["localhost", "127.0.0.1"], 10, false);
        pki.write_pair("server", &server);
        let client = pki.ca.leaf("healthcheck-client", &[], 11, false);
        pki.write_pair("client", &client);
        let foreign = pki.other.leaf("intruder", &[], 12, false);
        pki.write_pair("foreign", &foreign);
        let expired = pki.ca.leaf("old-client", &[], 13, true);
        pki.write_pair("expired", &expired);
        let revoked = pki.ca.leaf("revoked-client", &[], 14, false);
        pki.write_pair("revoked", &revoked);
        let allowed = pki
            .ca
            .leaf("allowed-client", &["allowed.example"], 15, false);
        pki.write_pair("allowed", &allowed);
        std::fs::write(pki.path("crl.der"), pki.ca.crl(&[14])).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    fn write(&self, name: &str, text: &str) {
        // Replaced the way operators rotate files: a new file renamed over.
        let tmp = self.path(&format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    fn write_pair(&self, name: &str, (cert, key): &(String, String)) {
        self.write(&format!("{name}.pem"), cert);
        self.write(&format!("{name}-key.pem"), key);
    }

    /// etcdctl's flags for a client identity (`None`: no certificate).
    fn ctl_flags(&self, ca: &str, client: Option<&str>) -> Vec<String> {
        let mut v = vec![format!("--cacert={}", self.p(ca))];
        if let Some(c) = client {
            v.push(format!("--cert={}", self.p(&format!("{c}.pem"))));
            v.push(format!("--key={}", self.p(&format!("{c}-key.pem"))));
        }
        v
    }
}

/// A server with an https client URL and an http metrics URL.
struct Server {
    name: String,
    child: Option<Child>,
    data: tempfile::TempDir,
    client_port: u16,
    metrics_port: u16,
}

impl Server {
    fn args(client_port: u16, metrics_port: u16, data: &Path) -> Vec<String> {
        let peer = format!("http://127.0.0.1:{}", free_port());
        let client = format!("https://127.0.0.1:{client_port}");
        vec![
            "--name=default".into(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}"),
        ]
    }

    fn spawn(bin: &Path, args: &[String], data: &Path) -> Child {
        let log = std::fs::File::create(data.join("server.log")).unwrap();
        Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn server")
    }

    /// Starts `bin` with the https client URL and `extra` flags; waits
    /// until `/health` answers on the metrics port.
    fn start(bin: &Path, name: &str, extra: &[String]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let (client_port, metrics_port) = (free_port(), free_port());
        let mut args = Server::args(client_port, metrics_port, &data.path().join("d"));
        args.extend(extra.iter().cloned());
        let mut s = Server::launch(bin, name, &args, data, client_port, metrics_port);
        s.wait_healthy(Duration::from_secs(60));
        s
    }

    /// Starts `bin` with exactly `args`, without waiting.
    fn launch(
        bin: &Path,
        name: &str,
        args: &[String],
        data: tempfile::TempDir,
        client_port: u16,
        metrics_port: u16,
    ) -> Server {
        let child = Server::spawn(bin, args, data.path());
        Server {
            name: name.into(),
            child: Some(child),
            data,
            client_port,
            metrics_port,
        }
    }

    fn healthy(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/health", self.metrics_port);
        curl(&[&url]).0 == "200"
    }

    /// Waits until `/health` answers 200 on the metrics port.
    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited during start ({status}):\n{}",
                    self.name,
                    self.log()
                );
            }
            if self.healthy() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs curl; returns (HTTP status code, body). A failed connection gives
/// code "000".
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().to_string(), body.to_string())
}

/// etcdctl (`bin`) against `endpoint` with TLS flags; whether it
/// succeeded, and its output.
fn ctl(bin: &Path, endpoint: &str, tls: &[String], args: &[&str]) -> (bool, String) {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.push("--dial-timeout=3s");
    all.extend_from_slice(args);
    let (ok, out, err) = run_etcdctl(bin, endpoint, &all, None);
    (ok, format!("{out}{err}"))
}

/// The two servers under the same flags.
fn both(extra: &[String]) -> [Server; 2] {
    [
        Server::start(Path::new(env!("CARGO_BIN_EXE_oxcd")), "oxcd", extra),
        Server::start(&etcd37(), "etcd 3.7.3", extra),
    ]
}

fn mtls_flags(pki: &Pki) -> Vec<String> {
    vec![
        format!("--cert-file={}", pki.p("server.pem")),
        format!("--key-file={}", pki.p("server-key.pem")),
        format!("--trusted-ca-file={}", pki.p("ca.pem")),
        "--client-cert-auth".into(),
    ]
}

/// A case: etcdctl with these TLS flags must succeed (or fail) on both.
fn expect_put(servers: &[Server], pki: &Pki, ca: &str, client: Option<&str>, ok: bool) {
    for s in servers {
        for bin in [etcdctl_bin(), etcd35_ctl()] {
            let (got, out) = ctl(
                &bin,
                &s.endpoint(),
                &pki.ctl_flags(ca, client),
                &["put", "k", "v"],
            );
            assert_eq!(
                got,
                ok,
                "{} with {} (ca {ca}, client {client:?}): {out}",
                s.name,
                bin.display()
            );
        }
    }
}

#[test]
fn mutual_tls_serves_etcdctl_and_refuses_what_etcd_refuses() {
    let pki = Pki::new();
    let servers = both(&mtls_flags(&pki));
    expect_put(&servers, &pki, "ca.pem", Some("client"), true);
    for s in &servers {
        let (ok, out) = ctl(
            &etcdctl_bin(),
            &s.endpoint(),
            &pki.ctl_flags("ca.pem", Some("client")),
            &["get", "k", "--print-value-only"],
        );
        assert!(ok && out == "v\n", "{}: {out}", s.name);
    }
    // No client certificate, one of another CA, an expired one, and the
    // server checked against the wrong CA.
    expect_put(&servers, &pki, "ca.pem", None, false);
    expect_put(&servers, &pki, "ca.pem", Some("foreign"), false);
    expect_put(&servers, &pki, "ca.pem", Some("expired"), false);
    expect_put(&servers, &pki, "other-ca.pem", Some("client"), false);
    for s in &servers {
        // Plaintext to the TLS port.
        let plain = format!("http://127.0.0.1:{}", s.client_port);
        let (ok, out) = ctl(&etcd35_ctl(), &plain, &[], &["put", "k", "v"]);
        assert!(!ok, "{} took plaintext: {out}", s.name);
        // The HTTP endpoints on the TLS port, and on the metrics port.
        let cert = [
            "--cacert",
            &pki.p("ca.pem"),
            "--cert",
            &pki.p("client.pem"),
            "--key",
            &pki.p("client-key.pem"),
        ];
        let health = format!("{}/health", s.endpoint());
        let mut args: Vec<&str> = cert.to_vec();
        args.push(&health);
        let (code, body) = curl(&args);
        assert_eq!(code, "200", "{}: {body}", s.name);
        assert!(body.contains("\"health\":\"true\""), "{}: {body}", s.name);
        let (code, _) = curl(&["--cacert", &pki.p("ca.pem"), &health]);
        assert_eq!(
            code, "000",
            "{} answered without a client certificate",
            s.name
        );
        let metrics = format!("http://127.0.0.1:{}/metrics", s.metrics_port);
        let (code, body) = curl(&[&metrics]);
        assert_eq!(code, "200", "{}", s.name);
        assert!(body.contains("etcd_server_has_leader"), "{}", s.name);
    }
}

#[test]
fn a_crl_and_an_allowed_hostname_refuse_certificates_the_ca_signed() {
    let pki = Pki::new();
    let mut crl = mtls_flags(&pki);
    crl.push(format!("--client-crl-file={}", pki.p("crl.der")));
    let servers = both(&crl);
    expect_put(&servers, &pki, "ca.pem", Some("client"), true);
    expect_put(&servers, &pki, "ca.pem", Some("revoked"), false);
    drop(servers);
    let mut host = mtls_flags(&pki);
    host.push("--client-cert-allowed-hostname=allowed.example".into());
    let servers = both(&host);
    expect_put(&servers, &pki, "ca.pem", Some("allowed"), true);
    expect_put(&servers, &pki, "ca.pem", Some("client"), false);
}

#[test]
fn tls_versions_and_cipher_suites_are_enforced() {
    let pki = Pki::new();
    let mut only13 = mtls_flags(&pki);
    only13.push("--tls-min-version=TLS1.3".into());
    let servers = both(&only13);
    let id = [
        "--cacert",
        &pki.p("ca.pem"),
        "--cert",
        &pki.p("client.pem"),
        "--key",
        &pki.p("client-key.pem"),
    ];
    for s in &servers {
        let health = format!("{}/health", s.endpoint());
        let mut v12: Vec<&str> = id.to_vec();
        v12.extend(["--tlsv1.2", "--tls-max", "1.2", &health]);
        assert_eq!(curl(&v12).0, "000", "{} spoke TLS 1.2", s.name);
        let mut v13: Vec<&str> = id.to_vec();
        v13.extend(["--tlsv1.3", &health]);
        assert_eq!(curl(&v13).0, "200", "{} refused TLS 1.3", s.name);
    }
    drop(servers);
    // The certificates are ECDSA: allow one of the two ECDSA GCM suites.
    let mut suites = mtls_flags(&pki);
    suites.push("--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into());
    let servers = both(&suites);
    for s in &servers {
        let health = format!("{}/health", s.endpoint());
        let with = |cipher: &str| {
            let mut v: Vec<String> = id.iter().map(|a| a.to_string()).collect();
            v.extend([
                "--tlsv1.2".into(),
                "--tls-max".into(),
                "1.2".into(),
                "--ciphers".into(),
                cipher.into(),
                health.clone(),
            ]);
            curl(&v.iter().map(String::as_str).collect::<Vec<_>>()).0
        };
        assert_eq!(with("ECDHE-ECDSA-AES128-GCM-SHA256"), "200", "{}", s.name);
        assert_eq!(
            with("ECDHE-ECDSA-AES256-GCM-SHA384"),
            "000",
            "{} accepted a suite outside --cipher-suites",
            s.name
        );
    }
}

#[test]
fn a_server_certificate_replaced_on_disk_is_served_to_new_connections() {
    let pki = Pki::new();
    let servers = both(&[
        format!("--cert-file={}", pki.p("server.pem")),
        format!("--key-file={}", pki.p("server-key.pem")),
    ]);
    expect_put(&servers, &pki, "ca.pem", None, true);
    // Rotated to a certificate of the other CA.
    let rotated = pki
        .other
        .leaf("server", &["localhost", "127.0.0.1"], 20, false);
    pki.write_pair("server", &rotated);
    expect_put(&servers, &pki, "other-ca.pem", None, true);
    expect_put(&servers, &pki, "ca.pem", None, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_etcd_client_crate_speaks_mutual_tls() {
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
    let pki = Pki::new();
    let server = tokio::task::spawn_blocking({
        let flags = mtls_flags(&pki);
        move || Server::start(Path::new(env!("CARGO_BIN_EXE_oxcd")), "oxcd", &flags)
    })
    .await
    .unwrap();
    let read = |n: &str| std::fs::read(pki.path(n)).unwrap();
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(
            read("client.pem"),
            read("client-key.pem"),
        ));
    let mut c = Client::connect(
        [server.endpoint()],
        Some(ConnectOptions::new().with_tls(tls)),
    )
    .await
    .expect("connect over mutual TLS");
    c.put("tls-key", "tls-value", None).await.unwrap();
    let got = c.get("tls-key", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"tls-value");
    drop(c);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[test]
fn an_https_url_without_a_certificate_is_refused_at_start_like_etcd() {
    for bin in [PathBuf::from(env!("CARGO_BIN_EXE_oxcd")), etcd37()] {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = Server::args(port, free_port(), &data.path().join("d"));
        let mut child = Server::spawn(&bin, &args, data.path());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not refuse the start", bin.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{}", bin.display());
        let log = std::fs::read_to_string(data.path().join("server.log")).unwrap();
        assert!(
            log.contains(&format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:{port} with HTTPS scheme"
            )),
            "{}: {log}",
            bin.display()
        );
    }
}

/// A 3-member cluster with mutual TLS on the peer and client ports, with
/// etcd's flags (as kubeadm passes them); member `i` presents
/// `peer_certs[i]` to its peers.
fn tls_cluster(bin: &Path, what: &str, pki: &Pki, peer_certs: [&str; 3]) -> Vec<Server> {
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p, _))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, (c, p, m))| {
            let data = tempfile::tempdir().unwrap();
            let client = format!("https://127.0.0.1:{c}");
            let peer = format!("https://127.0.0.1:{p}");
            let cert = peer_certs[i];
            let args = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", data.path().join("d").display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={initial}"),
                "--initial-cluster-state=new".into(),
                format!("--listen-metrics-urls=http://127.0.0.1:{m}"),
                format!("--cert-file={}", pki.p("server.pem")),
                format!("--key-file={}", pki.p("server-key.pem")),
                "--client-cert-auth=true".into(),
                format!("--trusted-ca-file={}", pki.p("ca.pem")),
                format!("--peer-cert-file={}", pki.p(&format!("{cert}.pem"))),
                format!("--peer-key-file={}", pki.p(&format!("{cert}-key.pem"))),
                "--peer-client-cert-auth=true".into(),
                format!("--peer-trusted-ca-file={}", pki.p("ca.pem")),
                "--snapshot-count=10000".into(),
            ];
            Server::launch(bin, &format!("{what} m{i}"), &args, data, *c, *m)
        })
        .collect()
}

fn peer_pki() -> Pki {
    let pki = Pki::new();
    for i in 0..3 {
        let peer = pki
            .ca
            .leaf(&format!("m{i}"), &["localhost", "127.0.0.1"], 30 + i, false);
        pki.write_pair(&format!("peer{i}"), &peer);
    }
    let intruder = pki.other.leaf("m2", &["localhost", "127.0.0.1"], 40, false);
    pki.write_pair("intruder", &intruder);
    pki
}

#[test]
fn a_cluster_with_peer_and_client_mutual_tls_replicates_like_etcds() {
    let pki = peer_pki();
    for (bin, what) in [
        (PathBuf::from(env!("CARGO_BIN_EXE_oxcd")), "oxcd"),
        (etcd37(), "etcd 3.7.3"),
    ] {
        let mut members = tls_cluster(&bin, what, &pki, ["peer0", "peer1", "peer2"]);
        for m in &mut members {
            m.wait_healthy(Duration::from_secs(60));
        }
        let id = pki.ctl_flags("ca.pem", Some("client"));
        let (ok, out) = ctl(
            &etcdctl_bin(),
            &members[0].endpoint(),
            &id,
            &["put", "over-tls", "yes"],
        );
        assert!(ok, "{what}: {out}");
        for m in &members {
            let (ok, out) = ctl(
                &etcd35_ctl(),
                &m.endpoint(),
                &id,
                &["get", "over-tls", "--print-value-only"],
            );
            assert!(ok && out == "yes\n", "{}: {out}", m.name);
        }
        let eps = members
            .iter()
            .map(Server::endpoint)
            .collect::<Vec<_>>()
            .join(",");
        let (ok, out) = ctl(&etcd35_ctl(), &eps, &id, &["member", "list"]);
        assert!(ok && out.lines().count() == 3, "{what}: {out}");
    }
}

#[test]
fn a_member_whose_peer_certificate_another_ca_signed_is_kept_out() {
    let pki = peer_pki();
    let mut members = tls_cluster(
        Path::new(env!("CARGO_BIN_EXE_oxcd")),
        "oxcd",
        &pki,
        ["peer0", "peer1", "intruder"],
    );
    members[0].wait_healthy(Duration::from_secs(60));
    members[1].wait_healthy(Duration::from_secs(60));
    let id = pki.ctl_flags("ca.pem", Some("client"));
    let (ok, out) = ctl(
        &etcdctl_bin(),
        &members[0].endpoint(),
        &id,
        &["put", "k", "v"],
    );
    assert!(ok, "{out}");
    // The intruder never hears a leader: it answers no linearizable read.
    let (ok, out) = ctl(
        &etcd35_ctl(),
        &members[2].endpoint(),
        &id,
        &["get", "k", "--command-timeout=3s"],
    );
    assert!(!ok, "the intruder served a read: {out}");
    assert!(!members[2].healthy(), "the intruder reports healthy");
    let logs = format!("{}{}", members[0].log(), members[1].log());
    assert!(logs.contains("rejected connection"), "{logs}");
}
