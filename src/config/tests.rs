use super::*;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn env(e: &[(&str, &str)]) -> HashMap<String, String> {
    e.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(a: &[&str], e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    match parse(&args(a), &env(e))? {
        Command::Run(c) => Ok(*c),
        Command::Print(t) => panic!("unexpected print: {t}"),
    }
}

#[test]
fn defaults_match_etcd() {
    let c = run(&[], &[]).unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.heartbeat_interval_ms, 100);
    assert_eq!(c.election_timeout_ms, 1000);
    assert_eq!(c.snapshot_count, 10_000);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.server_config().request_timeout(), Duration::from_secs(7));
}

#[test]
fn go_flag_syntax() {
    let c = run(
        &[
            "-name",
            "n1",
            "--max-txn-ops=7",
            "--log-level",
            "debug",
            "-quota-backend-bytes=-1",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.name, "n1");
    assert_eq!(
        c.data_dir,
        PathBuf::from("n1.etcd"),
        "data dir follows the name"
    );
    assert_eq!(c.max_txn_ops, 7);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.quota_backend_bytes, -1);
    assert_eq!(
        run(&["--max-txn-ops", "0x10"], &[]).unwrap().max_txn_ops,
        16
    );

    let e = run(&["--bogus"], &[]).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.exit_code),
        ("flag provided but not defined: -bogus", 2)
    );
    let e = run(&["--name"], &[]).unwrap_err();
    assert_eq!(e.message, "flag needs an argument: -name");
    let e = run(&["--max-txn-ops", "lots"], &[]).unwrap_err();
    assert_eq!(
        e.message,
        "invalid value \"lots\" for flag -max-txn-ops: parse error"
    );
    let e = run(&["stray"], &[]).unwrap_err();
    assert_eq!(e.message, "\"stray\" is not a valid flag");
    assert!(
        matches!(parse(&args(&["--version"]), &env(&[])), Ok(Command::Print(t)) if t.starts_with("etcd Version: 3."))
    );
    assert!(
        matches!(parse(&args(&["-h"]), &env(&[])), Ok(Command::Print(t)) if t.contains("--max-txn-ops"))
    );
}

#[test]
fn environment_variables_and_conflicts() {
    let c = run(
        &[],
        &[
            ("ETCD_NAME", "envname"),
            ("ETCD_SNAPSHOT_COUNT", "5"),
            ("ETCD_FOO", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.name, "envname");
    assert_eq!(c.snapshot_count, 5);
    assert_eq!(
        c.warnings,
        vec!["unrecognized environment variable ETCD_FOO=x"]
    );
    let e = run(&["--name", "a"], &[("ETCD_NAME", "b")]).unwrap_err();
    assert!(
        e.message
            .starts_with("conflicting environment variable \"ETCD_NAME\" is shadowed")
    );
}

#[test]
fn validation_rules() {
    let e = run(&["--listen-client-urls", "http://127.0.0.1:1"], &[]).unwrap_err();
    assert_eq!(
        e.message,
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert!(
        run(
            &[
                "--listen-client-urls",
                "http://127.0.0.1:1",
                "--advertise-client-urls",
                "http://127.0.0.1:1"
            ],
            &[]
        )
        .is_ok()
    );
    let e = run(&["--heartbeat-interval", "300"], &[]).unwrap_err();
    assert_eq!(
        e.message,
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
    );
    let e = run(
        &[
            "--election-timeout",
            "60000",
            "--heartbeat-interval",
            "1000",
        ],
        &[],
    )
    .unwrap_err();
    assert!(e.message.contains("is too long"));
    let e = run(
        &[
            "--listen-client-urls",
            "ftp://x:1",
            "--advertise-client-urls",
            "http://x:1",
        ],
        &[],
    )
    .unwrap_err();
    assert!(e.message.starts_with("URL scheme must be"));
    assert!(run(&["--log-level", "loud"], &[]).is_err());
}

#[test]
fn config_file_replaces_flags_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(
        &path,
        "name: fromfile\nmax-txn-ops: 64\nlisten-client-urls: http://127.0.0.1:4001\nadvertise-client-urls: http://127.0.0.1:4001\nlog-outputs: [stderr]\nenable-v2: false\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let c = run(
        &["--config-file", p, "--name", "ignored"],
        &[("ETCD_MAX_REQUEST_BYTES", "9")],
    )
    .unwrap();
    assert_eq!(c.name, "fromfile");
    assert_eq!(c.max_txn_ops, 64);
    assert_eq!(
        c.max_request_bytes, 1_572_864,
        "env ignored with a config file"
    );
    assert_eq!(c.listen_client_urls, vec!["http://127.0.0.1:4001"]);
    assert_eq!(c.log_outputs, vec!["stderr"]);
    assert_eq!(
        c.warnings.len(),
        1,
        "unsupported key reported: {:?}",
        c.warnings
    );
    let c = run(&[], &[("ETCD_CONFIG_FILE", p)]).unwrap();
    assert_eq!(c.name, "fromfile");
    std::fs::write(&path, "name: [not, a, string]\n").unwrap();
    assert!(run(&["--config-file", p], &[]).is_err());
    assert!(run(&["--config-file", "/nonexistent/etcd.yml"], &[]).is_err());
}

#[test]
fn go_integer_syntax() {
    assert_eq!(parse_uint("10"), Some(10));
    assert_eq!(parse_uint("0x1f"), Some(31));
    assert_eq!(parse_uint("017"), Some(15));
    assert_eq!(parse_uint("1_000"), Some(1000));
    assert_eq!(parse_uint("-1"), None);
    assert_eq!(parse_uint(""), None);
    assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_int("+5"), Some(5));
}

#[test]
fn go_durations_and_the_progress_interval_flags() {
    assert_eq!(parse_duration("10m0s"), Some(Duration::from_secs(600)));
    assert_eq!(
        parse_duration("1h2m3.5s"),
        Some(Duration::from_millis(3_723_500))
    );
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("1x"), None);
    assert_eq!(
        run(&[], &[]).unwrap().watch_progress_notify_interval,
        Duration::from_secs(600)
    );
    let c = run(&["--watch-progress-notify-interval", "5s"], &[]).unwrap();
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    let c = run(&["--experimental-watch-progress-notify-interval=2s"], &[]).unwrap();
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(2));
    assert!(c.warnings[0].contains("deprecated"));
    let e = run(
        &[
            "--experimental-watch-progress-notify-interval=2s",
            "--watch-progress-notify-interval=3s",
        ],
        &[],
    )
    .unwrap_err();
    assert!(e.message.starts_with("cannot set --experimental-watch-progress-notify-interval and --watch-progress-notify-interval at the same time"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(&path, "watch-progress-notify-interval: 1500000000\n").unwrap();
    let c = run(&["--config-file", path.to_str().unwrap()], &[]).unwrap();
    assert_eq!(
        c.watch_progress_notify_interval,
        Duration::from_millis(1500)
    );
}

#[test]
fn initial_cluster_defaults_to_this_member_alone() {
    let c = run(&["--name", "n1"], &[]).unwrap();
    assert_eq!(
        c.initial_cluster,
        vec![("n1".to_string(), "http://localhost:2380".to_string())]
    );
    assert!(!c.join_existing);
    assert_eq!(c.listen_peer_urls, vec!["http://localhost:2380"]);
    assert!(c.strict_reconfig_check);
    assert_eq!(c.max_learners, 1);
}

#[test]
fn initial_cluster_flags_env_and_file() {
    let ic = "a=http://127.0.0.1:2380,b=http://127.0.0.1:22380,b=http://127.0.0.2:22380";
    let c = run(
        &[
            "--name",
            "b",
            "--initial-cluster",
            ic,
            "--initial-advertise-peer-urls",
            "http://127.0.0.2:22380,http://127.0.0.1:22380",
            "--initial-cluster-state",
            "existing",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.initial_cluster.len(), 3);
    assert!(c.join_existing);
    let c = run(
        &[],
        &[
            ("ETCD_NAME", "a"),
            ("ETCD_INITIAL_CLUSTER", ic),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://127.0.0.1:2380"),
            ("ETCD_LISTEN_PEER_URLS", "http://127.0.0.1:2380"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.initial_cluster[0],
        ("a".into(), "http://127.0.0.1:2380".into())
    );
    assert_eq!(c.listen_peer_urls, vec!["http://127.0.0.1:2380"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yml");
    std::fs::write(
        &f,
        format!("name: a\ninitial-cluster: {ic}\ninitial-advertise-peer-urls: http://127.0.0.1:2380\ninitial-cluster-state: new\nmax-learners: 2\nstrict-reconfig-check: false\n"),
    )
    .unwrap();
    let c = run(&["--config-file", f.to_str().unwrap()], &[]).unwrap();
    assert_eq!(c.initial_cluster.len(), 3);
    assert_eq!(c.max_learners, 2);
    assert!(!c.strict_reconfig_check);
}

#[test]
fn initial_cluster_errors_match_etcd() {
    let e = run(
        &[
            "--name",
            "x",
            "--initial-cluster",
            "a=http://127.0.0.1:2380",
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "couldn't find local name \"x\" in the initial cluster configuration"
    );
    let e = run(
        &[
            "--name",
            "a",
            "--initial-cluster",
            "a=http://127.0.0.1:12380",
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "--initial-cluster has a=http://127.0.0.1:12380 but missing from --initial-advertise-peer-urls=http://localhost:2380 (\"http://localhost:2380\"(resolved from \"http://localhost:2380\") != \"http://127.0.0.1:12380\"(resolved from \"http://127.0.0.1:12380\"))"
    );
    assert!(run(&["--initial-cluster-state", "bogus"], &[]).is_err());
    assert!(run(&["--initial-cluster", "nonsense"], &[]).is_err());
}

#[test]
fn client_tls_flags_env_file_and_refusals() {
    let https = [
        "--listen-client-urls",
        "https://127.0.0.1:2379",
        "--advertise-client-urls",
        "https://127.0.0.1:2379",
    ];
    let err = run(&https, &[]).unwrap_err();
    assert_eq!(
        err.message,
        "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
    );
    assert_eq!(err.exit_code, 1);
    let mut with_cert = https.to_vec();
    with_cert.extend(["--cert-file", "s.pem"]);
    assert_eq!(
        run(&with_cert, &[]).unwrap_err().message,
        "KeyFile and CertFile must both be present[key: , cert: s.pem]"
    );
    with_cert.extend([
        "--key-file",
        "s-key.pem",
        "--client-cert-auth",
        "--trusted-ca-file=ca.pem",
        "--client-cert-allowed-hostname=a.example,b.example",
        "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ]);
    let c = run(&with_cert, &[("ETCD_CLIENT_CRL_FILE", "crl.der")]).unwrap();
    assert_eq!(c.client_tls.cert_file, "s.pem");
    assert_eq!(c.client_tls.key_file, "s-key.pem");
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.client_tls.trusted_ca_file, "ca.pem");
    assert_eq!(c.client_tls.crl_file, "crl.der");
    assert_eq!(
        c.client_tls.allowed_hostnames,
        vec!["a.example", "b.example"]
    );
    assert_eq!(
        c.tls.cipher_suites,
        ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Certificates with an http URL: a warning, as etcd gives.
    let c = run(&["--cert-file=s.pem", "--key-file=k.pem"], &[]).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("scheme is HTTP while key and cert files are present")),
        "{:?}",
        c.warnings
    );
    assert_eq!(
        run(
            &[
                "--listen-metrics-urls=https://127.0.0.1:2381",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379"
            ],
            &[]
        )
        .unwrap_err()
        .message,
        "client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url"
    );
    assert_eq!(
        run(&["--tls-min-version=TLS1.0"], &[]).unwrap_err().message,
        "unexpected TLS version \"TLS1.0\" (must be one of: TLS1.2, TLS1.3)"
    );

    // The file's client-transport-security section, with allowed-cn.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.yml");
    std::fs::write(
        &path,
        "listen-client-urls: https://127.0.0.1:2379\nadvertise-client-urls: https://127.0.0.1:2379\nclient-transport-security:\n  cert-file: s.pem\n  key-file: s-key.pem\n  client-cert-auth: true\n  trusted-ca-file: ca.pem\n  allowed-cn: [kube-apiserver-etcd-client]\n  auto-tls: false\ntls-min-version: TLS1.3\n",
    )
    .unwrap();
    let c = run(&["--config-file", path.to_str().unwrap()], &[]).unwrap();
    assert_eq!(c.client_tls.cert_file, "s.pem");
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.client_tls.allowed_cns, vec!["kube-apiserver-etcd-client"]);
    assert_eq!(c.tls.min_version, Some(tls::TlsVersion::Tls13));
    std::fs::write(&path, "client-transport-security:\n  auto-tls: true\n").unwrap();
    assert!(
        run(&["--config-file", path.to_str().unwrap()], &[])
            .unwrap_err()
            .message
            .contains("client-transport-security.auto-tls is not supported by oxcd yet")
    );
}

#[test]
fn peer_tls_flags_and_refusals() {
    let peer = |extra: &[&str]| {
        let mut a = vec![
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
            "--initial-cluster=default=https://127.0.0.1:2380",
        ];
        a.extend_from_slice(extra);
        run(&a, &[])
    };
    assert_eq!(
        peer(&[]).unwrap_err().message,
        "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"
    );
    assert!(
        peer(&["--peer-cert-file=p.pem", "--peer-key-file=p-key.pem"])
            .unwrap_err()
            .message
            .contains("need --peer-trusted-ca-file")
    );
    let c = peer(&[
        "--peer-cert-file=p.pem",
        "--peer-key-file=p-key.pem",
        "--peer-trusted-ca-file=ca.pem",
        "--peer-client-cert-auth",
        "--peer-cert-allowed-cn=etcd-peer",
        "--peer-crl-file=crl.der",
    ])
    .unwrap();
    assert_eq!(c.peer_tls.cert_file, "p.pem");
    assert!(c.peer_tls.client_cert_auth);
    assert_eq!(c.peer_tls.allowed_cns, vec!["etcd-peer"]);
    assert_eq!(c.peer_tls.crl_file, "crl.der");
    assert_eq!(c.peer_tls.dial_identity(), ("p.pem", "p-key.pem"));
    assert!(!c.peer_tls.skip_client_san_verification);
    assert_eq!(
        peer(&[
            "--peer-cert-file=p.pem",
            "--peer-key-file=p-key.pem",
            "--peer-trusted-ca-file=ca.pem",
            "--peer-client-cert-file=c.pem",
        ])
        .unwrap_err()
        .message,
        "ClientKeyFile and ClientCertFile must both be present or both absent: key: , cert: c.pem]"
    );
    assert_eq!(
        run(
            &[
                "--experimental-peer-skip-client-san-verification",
                "--peer-skip-client-san-verification"
            ],
            &[]
        )
        .unwrap_err()
        .message,
        "cannot set --experimental-peer-skip-client-san-verification and --peer-skip-client-san-verification at the same time, please use --peer-skip-client-san-verification only"
    );
    let c = run(&["--experimental-peer-skip-client-san-verification"], &[]).unwrap();
    assert!(c.peer_tls.skip_client_san_verification);
    assert!(c.warnings.iter().any(|w| w.contains("deprecated")));
}
