//! `oxcdutl`: offline tools for oxcd data, as `etcdutl` is for etcd's.
//!
//! ```text
//! oxcdutl snapshot restore <file> [--data-dir DIR] [--name NAME]
//!     [--initial-advertise-peer-urls URLS] [--initial-cluster-token TOKEN]
//! oxcdutl snapshot status <file> [-w simple|json|table]
//! oxcdutl version
//! ```
//!
//! A snapshot is what `etcdctl snapshot save` wrote from an oxcd member
//! (see `oxcd::snapshot`).

use std::path::PathBuf;
use std::process::ExitCode;

use oxcd::snapshot::{self, RestoreTarget};

const USAGE: &str = "usage:
  oxcdutl snapshot restore <file> [--data-dir DIR] [--name NAME] [--initial-advertise-peer-urls URLS] [--initial-cluster-token TOKEN]
  oxcdutl snapshot status <file> [-w simple|json|table]
  oxcdutl version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Positional arguments and `(flag, value)` pairs.
type Parsed = (Vec<String>, Vec<(String, String)>);

/// Splits `--flag value`, `--flag=value` and `-w value` from positionals.
fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut pos = Vec::new();
    let mut flags = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => (
                    name.to_string(),
                    it.next()
                        .ok_or(format!("flag needs an argument: {a}"))?
                        .clone(),
                ),
            };
            flags.push((name, value));
        } else {
            pos.push(a.clone());
        }
    }
    Ok((pos, flags))
}

fn flag<'a>(flags: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| names.contains(&n.as_str()))
        .map(|(_, v)| v.as_str())
}

fn run(args: &[String]) -> Result<(), String> {
    let (pos, flags) = parse(args)?;
    let known = [
        "data-dir",
        "name",
        "initial-advertise-peer-urls",
        "initial-cluster-token",
        "w",
        "write-out",
    ];
    if let Some((n, _)) = flags.iter().find(|(n, _)| !known.contains(&n.as_str())) {
        return Err(format!("unknown flag: --{n}\n{USAGE}"));
    }
    match pos
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["version"] => {
            println!("oxcdutl version: {}", oxcd::version::OXCD_VERSION);
            println!("API version: {}", oxcd::version::ETCD_API_VERSION);
            Ok(())
        }
        ["snapshot", "restore", file] => {
            let name = flag(&flags, &["name"]).unwrap_or("default");
            let data_dir = flag(&flags, &["data-dir"])
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("{name}.etcd")));
            let peer_urls = flag(&flags, &["initial-advertise-peer-urls"])
                .unwrap_or("http://localhost:2380")
                .split(',')
                .map(str::to_string)
                .collect();
            let target = RestoreTarget {
                data_dir: data_dir.clone(),
                peer_urls,
                cluster_token: flag(&flags, &["initial-cluster-token"])
                    .unwrap_or("etcd-cluster")
                    .to_string(),
            };
            let (member, cluster) =
                snapshot::restore(&PathBuf::from(file), &target).map_err(|e| e.to_string())?;
            println!(
                "restored snapshot {file} to {} (member {member:x}, cluster {cluster:x})",
                data_dir.display()
            );
            Ok(())
        }
        ["snapshot", "status", file] => {
            let st = snapshot::status(&PathBuf::from(file)).map_err(|e| e.to_string())?;
            match flag(&flags, &["w", "write-out"]).unwrap_or("simple") {
                "json" => println!(
                    r#"{{"hash":{},"revision":{},"totalKey":{},"totalSize":{}}}"#,
                    st.hash, st.revision, st.total_keys, st.total_size
                ),
                "table" => {
                    println!("+----------+----------+------------+------------+");
                    println!("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |");
                    println!("+----------+----------+------------+------------+");
                    println!(
                        "| {:>8x} | {:>8} | {:>10} | {:>10} |",
                        st.hash,
                        st.revision,
                        st.total_keys,
                        human_bytes(st.total_size)
                    );
                    println!("+----------+----------+------------+------------+");
                }
                "simple" => println!(
                    "{:x}, {}, {}, {}",
                    st.hash,
                    st.revision,
                    st.total_keys,
                    human_bytes(st.total_size)
                ),
                other => return Err(format!("unknown output format {other:?}")),
            }
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    }
}

/// Sizes as etcdutl prints them (SI units, like go-humanize's `Bytes`).
fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let v = n as f64 / 1000f64.powi(e as i32);
    if v < 10.0 {
        format!("{v:.1} {}", units[e])
    } else {
        format!("{v:.0} {}", units[e])
    }
}
