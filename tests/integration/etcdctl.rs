//! etcdctl against oxcd and against real etcd: the same commands must give
//! the same output, byte for byte (after dropping etcdctl's own retry log
//! lines, which carry timestamps and random client ids).

use std::path::{Path, PathBuf};

use crate::common::{self, Proc, run_etcdctl};

/// One etcdctl invocation: arguments and optional stdin.
struct Cmd {
    args: Vec<String>,
    stdin: Option<&'static str>,
}

fn cmd(args: &[&str]) -> Cmd {
    Cmd {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

fn txn(args: &[&str], stdin: &'static str) -> Cmd {
    Cmd {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: Some(stdin),
    }
}

/// Every KV command and `get` option the acceptance list names.
fn script() -> Vec<Cmd> {
    vec![
        cmd(&["put", "a", "1"]),
        cmd(&["put", "b", "2"]),
        cmd(&["put", "c", "3"]),
        cmd(&["put", "a", "11", "--prev-kv"]),
        cmd(&["put", "a", "12", "--prev-kv", "-w", "json"]),
        cmd(&["put", "ab", "x"]),
        cmd(&["put", "b/1", "y"]),
        cmd(&["put", "b/2", "z"]),
        cmd(&["put", "b/2", "--ignore-value"]),
        cmd(&["put", "nope", "--ignore-value"]),
        cmd(&["put", "k", "v", "--lease=1234"]),
        cmd(&["put", "", "empty"]),
        cmd(&["get", "a"]),
        cmd(&["get", "a", "-w", "json"]),
        cmd(&["get", "missing", "-w", "json"]),
        cmd(&["get", "b", "--prefix"]),
        cmd(&["get", "b", "--prefix", "-w", "json"]),
        cmd(&["get", "a", "--from-key", "--keys-only"]),
        cmd(&["get", "", "--from-key", "-w", "json"]),
        cmd(&["get", "", "--prefix", "--keys-only"]),
        cmd(&["get", "a", "c"]),
        cmd(&["get", "c", "a"]),
        cmd(&["get", "a", "--from-key", "--limit", "2", "-w", "json"]),
        cmd(&["get", "a", "--from-key", "--limit", "2"]),
        cmd(&["get", "a", "--rev", "3"]),
        cmd(&["get", "a", "--rev", "2", "-w", "json"]),
        cmd(&["get", "a", "--rev", "1"]),
        cmd(&[
            "get",
            "b",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=VALUE",
            "--order=ASCEND",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=VALUE",
            "--order=DESCEND",
            "--limit",
            "2",
            "-w",
            "json",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=CREATE",
            "--order=DESCEND",
            "--limit",
            "3",
            "-w",
            "json",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=VERSION",
            "--order=DESCEND",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--sort-by=KEY",
            "--order=DESCEND",
            "--limit",
            "2",
        ]),
        cmd(&["get", "a", "--from-key", "--count-only", "-w", "json"]),
        cmd(&["get", "a", "--from-key", "--print-value-only"]),
        cmd(&["get", "b", "--prefix", "--keys-only", "-w", "json"]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--limit",
            "1",
            "--keys-only",
            "--sort-by=MODIFY",
            "-w",
            "json",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--min-mod-rev",
            "4",
            "--max-mod-rev",
            "7",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--min-create-rev",
            "3",
            "-w",
            "json",
        ]),
        cmd(&[
            "get",
            "a",
            "--from-key",
            "--max-create-rev",
            "3",
            "--limit",
            "1",
            "-w",
            "json",
        ]),
        cmd(&["get", "a", "--consistency=s"]),
        cmd(&["del", "b/1"]),
        cmd(&["del", "b/1"]),
        cmd(&["del", "b", "--prefix", "--prev-kv"]),
        cmd(&["del", "a", "ac", "-w", "json"]),
        cmd(&["del", "zz", "--from-key"]),
        cmd(&["get", "", "--from-key", "-w", "json"]),
        txn(
            &["txn"],
            "value(\"c\") = \"3\"\nmod(\"c\") > \"0\"\nversion(\"c\") = \"1\"\ncreate(\"c\") < \"100\"\n\nput c 4\nget c\n\nput c fail\n\n",
        ),
        txn(
            &["txn", "-w", "json"],
            "value(\"c\") = \"nope\"\n\nput c 5\n\nget c\nget missing\n\n",
        ),
        txn(
            &["txn"],
            "value(\"missing\") != \"x\"\n\nput t ok\n\ndel c\n\n",
        ),
        txn(
            &["txn", "-w", "json"],
            "mod(\"c\") = \"0\"\n\nput new 1\ndel c\n\n\n",
        ),
        txn(&["txn"], "\nput d1 1\nput d1 2\n\n\n"),
        txn(&["txn"], "\ndel d --prefix\nput d1 x\n\n\n"),
        txn(&["txn", "-w", "json"], "\n\n\n"),
        cmd(&["get", "", "--from-key", "-w", "json"]),
        cmd(&["compaction", "5"]),
        cmd(&["get", "a", "--rev", "4"]),
        cmd(&["get", "a", "--rev", "5", "-w", "json"]),
        cmd(&["compaction", "5"]),
        cmd(&["compaction", "3"]),
        cmd(&["compaction", "1000"]),
        cmd(&["get", "a", "--rev", "1000"]),
        cmd(&["compaction", "--physical", "8"]),
        cmd(&["get", "", "--from-key", "--rev", "8", "-w", "json"]),
        cmd(&["get", "", "--from-key", "--rev", "7"]),
        cmd(&["put", "final", "value", "-w", "json"]),
    ]
}

/// Runs the script; returns one normalised transcript entry per command.
fn transcript(etcdctl: &Path, endpoint: &str) -> Vec<String> {
    script()
        .iter()
        .map(|c| {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            let (ok, out, err) = run_etcdctl(etcdctl, endpoint, &args, c.stdin);
            let err: Vec<&str> = err
                .lines()
                .filter(|l| !l.contains("\"level\":\"warn\""))
                .collect();
            format!(
                "$ etcdctl {}\n[ok={ok}]\n{out}{}",
                c.args.join(" "),
                err.join("\n")
            )
        })
        .collect()
}

fn compare_with(reference: PathBuf, etcdctl: PathBuf) {
    let etcd = Proc::etcd(reference);
    let oxcd = Proc::oxcd_twin_of(&etcd);
    let want = transcript(&etcdctl, &etcd.endpoint());
    let got = transcript(&etcdctl, &oxcd.endpoint());
    let mut diffs = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!("--- {}\n{w}\n+++ oxcd\n{g}", etcd.name()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} etcdctl commands differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n\n")
    );
}

#[test]
fn etcdctl_34_gives_the_same_output_as_etcd_34() {
    compare_with(common::etcd34(), common::etcdctl_bin());
}

#[test]
fn etcdctl_35_gives_the_same_output_as_etcd_35() {
    let etcd = common::etcd35();
    let etcdctl = etcd.with_file_name("etcdctl");
    compare_with(etcd, etcdctl);
}

/// Runs `etcdctl watch <args>` in the background while `writes` run, then
/// stops it and returns what it printed. `lines` are typed into its stdin
/// (for `-i`), one before the writes and the rest after.
fn watch_transcript(
    etcdctl: &Path,
    endpoint: &str,
    args: &[&str],
    lines: &[&str],
    writes: &[&[&str]],
) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let mut child = Command::new(etcdctl)
        .env_clear()
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("watch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcdctl watch");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(first) = lines.first() {
        writeln!(stdin, "{first}").unwrap();
    }
    std::thread::sleep(Duration::from_millis(700));
    for w in writes {
        let (ok, _, err) = run_etcdctl(etcdctl, endpoint, w, None);
        assert!(ok, "{w:?}: {err}");
    }
    std::thread::sleep(Duration::from_millis(500));
    for l in lines.iter().skip(1) {
        writeln!(stdin, "{l}").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("watch output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compare_watch(reference: PathBuf, etcdctl: PathBuf, interactive: bool) {
    let etcd = Proc::etcd(reference);
    let oxcd = Proc::oxcd_twin_of(&etcd);
    let writes: &[&[&str]] = &[
        &["put", "foo", "1"],
        &["put", "foo/bar", "2"],
        &["put", "foo", "3"],
        &["del", "foo"],
        &["put", "other", "x"],
        &["txn"],
    ];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = if interactive {
        vec![(
            vec!["-i"],
            vec![
                "watch foo --prefix --prev-kv",
                "progress",
                "watch foo --rev 2",
            ],
        )]
    } else {
        vec![
            (vec!["foo"], vec![]),
            (vec!["foo", "--prefix"], vec![]),
            (vec!["foo", "--prefix", "--prev-kv"], vec![]),
            (vec!["foo", "--rev", "1", "--prefix"], vec![]),
            (vec!["foo", "foo0"], vec![]),
            (vec!["foo", "--prefix", "-w", "json"], vec![]),
        ]
    };
    for (args, lines) in cases {
        let run = |p: &Proc| {
            // Each case starts from the same state: the servers are fresh
            // per comparison, and writes only add revisions.
            watch_transcript(&etcdctl, &p.endpoint(), &args, &lines, &writes[..5])
        };
        let want = run(&etcd);
        let got = run(&oxcd);
        let normalize = |s: &str| {
            // JSON output carries no timestamps; nothing to drop.
            s.to_string()
        };
        assert_eq!(
            normalize(&got),
            normalize(&want),
            "etcdctl watch {args:?} {lines:?} differs from {}",
            etcd.name()
        );
        assert!(!want.is_empty(), "etcdctl watch {args:?} printed nothing");
    }
}

#[test]
fn etcdctl_watch_matches_etcd_34() {
    compare_watch(common::etcd34(), common::etcdctl_bin(), false);
}

#[test]
fn etcdctl_watch_matches_etcd_35() {
    let etcd = common::etcd35();
    let etcdctl = etcd.with_file_name("etcdctl");
    compare_watch(etcd.clone(), etcdctl.clone(), false);
    compare_watch(etcd, etcdctl, true);
}
