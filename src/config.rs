//! etcd's command line: the same flag names and defaults, the same `ETCD_*`
//! environment variables and the same `--config-file` YAML keys (etcd:
//! `server/etcdmain/config.go`, `server/embed/config.go`, `pkg/flags`).
//!
//! Precedence follows etcd: a config file, when given, replaces flags and
//! environment entirely; otherwise a flag wins over its default, an
//! environment variable is used when the flag is absent, and giving both is
//! an error. Flags parse like Go's `flag` package: `-name` or `--name`,
//! `=value` or a separate argument, bare booleans.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::version;

mod server;
pub mod tls;
pub use server::ServerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Uint,
    Int,
    Bool,
    /// Comma-separated in flags and env; a YAML list or comma string in the file.
    List,
    /// Go duration syntax (`10m`, `1.5s`); integer nanoseconds in the file.
    Duration,
}

struct FlagDef {
    name: &'static str,
    kind: Kind,
    default: &'static str,
    usage: &'static str,
}

const fn flag(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    usage: &'static str,
) -> FlagDef {
    FlagDef {
        name,
        kind,
        default,
        usage,
    }
}

/// Every flag oxcd understands. Anything else is rejected, as etcd rejects
/// unknown flags.
const FLAGS: &[FlagDef] = &[
    flag(
        "name",
        Kind::Str,
        "default",
        "Human-readable name for this member.",
    ),
    flag(
        "data-dir",
        Kind::Str,
        "",
        "Path to the data directory (default '${name}.etcd').",
    ),
    flag(
        "listen-client-urls",
        Kind::List,
        "http://localhost:2379",
        "List of URLs to listen on for client traffic.",
    ),
    flag(
        "listen-metrics-urls",
        Kind::List,
        "",
        "List of URLs to listen on for the metrics and health endpoints.",
    ),
    flag(
        "advertise-client-urls",
        Kind::List,
        "http://localhost:2379",
        "List of this member's client URLs to advertise to the public.",
    ),
    flag(
        "initial-advertise-peer-urls",
        Kind::List,
        "http://localhost:2380",
        "List of this member's peer URLs to advertise to the rest of the cluster.",
    ),
    flag(
        "listen-peer-urls",
        Kind::List,
        "http://localhost:2380",
        "List of URLs to listen on for peer traffic.",
    ),
    flag(
        "initial-cluster",
        Kind::Str,
        "default=http://localhost:2380",
        "Initial cluster configuration for bootstrapping.",
    ),
    flag(
        "initial-cluster-state",
        Kind::Str,
        "new",
        "Initial cluster state ('new' when bootstrapping a new cluster or 'existing' when adding new members to an existing cluster). After successful initialization (bootstrapping or adding), flag is ignored on restarts.",
    ),
    flag(
        "strict-reconfig-check",
        Kind::Bool,
        "true",
        "Reject reconfiguration requests that would cause quorum loss.",
    ),
    flag(
        "max-learners",
        Kind::Uint,
        "1",
        "Sets the maximum number of learners that can be available in the cluster membership.",
    ),
    flag(
        "pre-vote",
        Kind::Bool,
        "true",
        "Enable the raft Pre-Vote algorithm to prevent disruption when a node that has been partitioned away rejoins the cluster (always on in oxcd).",
    ),
    flag(
        "initial-cluster-token",
        Kind::Str,
        "etcd-cluster",
        "Initial cluster token for the etcd cluster during bootstrap.",
    ),
    flag(
        "cert-file",
        Kind::Str,
        "",
        "Path to the client server TLS cert file.",
    ),
    flag(
        "key-file",
        Kind::Str,
        "",
        "Path to the client server TLS key file.",
    ),
    flag(
        "client-cert-auth",
        Kind::Bool,
        "false",
        "Enable client cert authentication.",
    ),
    flag(
        "client-crl-file",
        Kind::Str,
        "",
        "Path to the client certificate revocation list file.",
    ),
    flag(
        "client-cert-allowed-hostname",
        Kind::List,
        "",
        "Comma-separated list of SAN hostnames for client cert authentication.",
    ),
    flag(
        "trusted-ca-file",
        Kind::Str,
        "",
        "Path to the client server TLS trusted CA cert file.",
    ),
    flag(
        "peer-cert-file",
        Kind::Str,
        "",
        "Path to the peer server TLS cert file.",
    ),
    flag(
        "peer-key-file",
        Kind::Str,
        "",
        "Path to the peer server TLS key file.",
    ),
    flag(
        "peer-client-cert-file",
        Kind::Str,
        "",
        "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.",
    ),
    flag(
        "peer-client-key-file",
        Kind::Str,
        "",
        "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.",
    ),
    flag(
        "peer-client-cert-auth",
        Kind::Bool,
        "false",
        "Enable peer client cert authentication.",
    ),
    flag(
        "peer-trusted-ca-file",
        Kind::Str,
        "",
        "Path to the peer server TLS trusted CA file.",
    ),
    flag(
        "peer-crl-file",
        Kind::Str,
        "",
        "Path to the peer certificate revocation list file.",
    ),
    flag(
        "peer-cert-allowed-cn",
        Kind::List,
        "",
        "Comma-separated list of allowed CNs for inter-peer TLS authentication.",
    ),
    flag(
        "peer-cert-allowed-hostname",
        Kind::List,
        "",
        "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.",
    ),
    flag(
        "peer-skip-client-san-verification",
        Kind::Bool,
        "false",
        "Skip verification of SAN field in client certificate for peer connections.",
    ),
    flag(
        "experimental-peer-skip-client-san-verification",
        Kind::Bool,
        "false",
        "Skip verification of SAN field in client certificate for peer connections. Deprecated: use --peer-skip-client-san-verification.",
    ),
    flag(
        "tls-min-version",
        Kind::Str,
        "TLS1.2",
        "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.",
    ),
    flag(
        "tls-max-version",
        Kind::Str,
        "",
        "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty defers to the highest).",
    ),
    flag(
        "cipher-suites",
        Kind::List,
        "",
        "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).",
    ),
    flag(
        "max-request-bytes",
        Kind::Uint,
        "1572864",
        "Maximum client request size in bytes the server will accept.",
    ),
    flag(
        "max-txn-ops",
        Kind::Uint,
        "128",
        "Maximum number of operations permitted in a transaction.",
    ),
    flag(
        "quota-backend-bytes",
        Kind::Int,
        "0",
        "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).",
    ),
    flag(
        "heartbeat-interval",
        Kind::Uint,
        "100",
        "Time (in milliseconds) of a heartbeat interval.",
    ),
    flag(
        "election-timeout",
        Kind::Uint,
        "1000",
        "Time (in milliseconds) for an election to timeout.",
    ),
    flag(
        "snapshot-count",
        Kind::Uint,
        "10000",
        "Number of committed transactions to trigger a snapshot to disk.",
    ),
    flag(
        "snapshot-catchup-entries",
        Kind::Uint,
        "5000",
        "Number of entries for a slow follower to catch-up after compacting the raft storage entries.",
    ),
    flag(
        "watch-progress-notify-interval",
        Kind::Duration,
        "10m0s",
        "Duration of periodic watch progress notifications.",
    ),
    flag(
        "experimental-watch-progress-notify-interval",
        Kind::Duration,
        "10m0s",
        "Duration of periodic watch progress notifications. Deprecated in v3.6 and will be decommissioned in v3.7. Use --watch-progress-notify-interval instead.",
    ),
    flag(
        "experimental-lease-checkpoint-interval",
        Kind::Duration,
        "5m0s",
        "oxcd only: how often the leader checkpoints remaining lease TTLs through raft (checkpointing is always on).",
    ),
    flag(
        "experimental-enable-lease-checkpoint",
        Kind::Bool,
        "true",
        "Accepted for etcd compatibility; lease checkpointing is always on in oxcd.",
    ),
    flag(
        "experimental-enable-lease-checkpoint-persist",
        Kind::Bool,
        "true",
        "Accepted for etcd compatibility; checkpoints are always persisted in oxcd.",
    ),
    flag(
        "logger",
        Kind::Str,
        "zap",
        "Currently only supports 'zap' for structured logging.",
    ),
    flag(
        "log-level",
        Kind::Str,
        "info",
        "Configures log level. Only supports debug, info, warn, error, panic, or fatal.",
    ),
    flag(
        "log-outputs",
        Kind::List,
        "default",
        "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.",
    ),
    flag(
        "config-file",
        Kind::Str,
        "",
        "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.",
    ),
    flag(
        "version",
        Kind::Bool,
        "false",
        "Print the version and exit.",
    ),
    flag("help", Kind::Bool, "false", "Show this help and exit."),
];

fn find(name: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.name == name)
}

/// A configuration error and the exit code etcd uses for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
    pub exit_code: i32,
}

impl ConfigError {
    fn usage(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            exit_code: 2,
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            exit_code: 1,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The server's configuration after flags, environment and file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<String>,
    /// `--listen-metrics-urls`: `/metrics` and the health endpoints only.
    pub listen_metrics_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    pub initial_cluster_token: String,
    pub listen_peer_urls: Vec<String>,
    /// `--initial-cluster` as (name, peer URL) pairs, in flag order.
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-state existing`: join a running cluster.
    pub join_existing: bool,
    pub strict_reconfig_check: bool,
    pub max_learners: u64,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    pub quota_backend_bytes: i64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub log_level: String,
    pub log_outputs: Vec<String>,
    pub watch_progress_notify_interval: Duration,
    pub lease_checkpoint_interval: Duration,
    /// The client side's certificates and checks (`https://` client and
    /// metrics URLs).
    pub client_tls: tls::TlsInfo,
    /// The peer side's (`https://` peer URLs, and dialing other members).
    pub peer_tls: tls::TlsInfo,
    /// TLS versions and cipher suites, for every TLS listener.
    pub tls: tls::TlsSettings,
    /// Warnings to log once logging is up (e.g. unknown env variables).
    pub warnings: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// Print this text to stdout and exit 0 (`--version`, `--help`).
    Print(String),
}

/// Parses arguments (without the program name) and environment.
pub fn parse(args: &[String], env: &HashMap<String, String>) -> Result<Command, ConfigError> {
    let cli = parse_flags(args)?;
    if cli.contains_key("help") {
        return Ok(Command::Print(usage()));
    }
    if cli.get("version").is_some_and(|v| v == "true") {
        return Ok(Command::Print(version::version_text()));
    }
    let mut warnings = Vec::new();
    let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut explicit: Vec<&'static str> = Vec::new();
    for (name, v) in &cli {
        values.insert(name, v.clone());
        explicit.push(name);
    }
    // Environment: ETCD_<FLAG> for every flag not given on the command line.
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("ETCD_") else {
            continue;
        };
        let name = rest.to_ascii_lowercase().replace('_', "-");
        match find(&name) {
            Some(def) if def.name != "version" && def.name != "help" => {
                if cli.contains_key(def.name) {
                    return Err(ConfigError::invalid(format!(
                        "conflicting environment variable {k:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
                    )));
                }
                values.insert(def.name, v.clone());
                explicit.push(def.name);
            }
            _ => warnings.push(format!("unrecognized environment variable {k}={v}")),
        }
    }
    let config_file = values.get("config-file").cloned().filter(|s| !s.is_empty());
    if let Some(path) = config_file {
        // etcd: a config file replaces flags and environment.
        values = load_file(&path, &mut warnings)?;
        explicit = values.keys().copied().collect();
    }
    build(&values, &explicit, warnings)
}

/// Go-style flag parsing into name → raw value.
fn parse_flags(args: &[String]) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(ConfigError::usage(format!("{arg:?} is not a valid flag")));
        };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let name = if name == "h" { "help" } else { name };
        let Some(def) = find(name) else {
            return Err(ConfigError::usage(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = match (def.kind, inline) {
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some(v)) => {
                parse_bool(&v).ok_or_else(|| {
                    ConfigError::usage(format!(
                        "invalid boolean value {v:?} for -{name}: parse error"
                    ))
                })?;
                v
            }
            (_, Some(v)) => v,
            (_, None) => {
                let Some(v) = args.get(i) else {
                    return Err(ConfigError::usage(format!(
                        "flag needs an argument: -{name}"
                    )));
                };
                i += 1;
                v.clone()
            }
        };
        out.insert(def.name, value);
    }
    if i < args.len() {
        return Err(ConfigError::usage(format!(
            "{:?} is not a valid flag",
            args[i]
        )));
    }
    Ok(out)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: decimal, 0x, 0o/0, 0b prefixes.
fn parse_uint(s: &str) -> Option<u64> {
    let t = s.replace('_', "");
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (h.to_string(), 16)
    } else if let Some(b) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        (b.to_string(), 2)
    } else if let Some(o) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        (o.to_string(), 8)
    } else if t.len() > 1 && t.starts_with('0') {
        (t[1..].to_string(), 8)
    } else {
        (t, 10)
    };
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

fn parse_int(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(rest) => parse_uint(rest).and_then(|v| {
            if v == 1u64 << 63 {
                Some(i64::MIN)
            } else {
                i64::try_from(v).ok().map(|v| -v)
            }
        }),
        None => parse_uint(s.strip_prefix('+').unwrap_or(s)).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with optional
/// fractions and units (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1h30m`,
/// `1.5s`; a bare `0` is zero. Negative durations are rejected.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Reads a config file into flag-name → raw value (lists joined by commas).
fn load_file(
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(format!("cannot load config file {path:?}: {e}")))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| ConfigError::invalid(format!("error parsing config file {path:?}: {e}")))?;
    let mut out = BTreeMap::new();
    let map = match doc {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return Ok(out),
        _ => {
            return Err(ConfigError::invalid(format!(
                "error parsing config file {path:?}: not a mapping"
            )));
        }
    };
    for (k, v) in map {
        let Some(key) = k.as_str() else { continue };
        if key == "client-transport-security" || key == "peer-transport-security" {
            security_section(path, key, &v, &mut out)?;
            continue;
        }
        let Some(def) = find(key).filter(|d| d.name != "config-file" && d.name != "help") else {
            warnings.push(format!(
                "config file {path:?}: unsupported key {key:?} ignored"
            ));
            continue;
        };
        match yaml_raw(&v, def.kind) {
            Ok(Some(raw)) => {
                out.insert(def.name, raw);
            }
            Ok(None) => {}
            Err(()) => {
                return Err(ConfigError::invalid(format!(
                    "error parsing config file {path:?}: bad value for {key:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// A config-file value as the flag of `kind` would be given it (lists
/// joined by commas, durations as integer nanoseconds); `None` for null.
fn yaml_raw(v: &serde_yaml::Value, kind: Kind) -> Result<Option<String>, ()> {
    Ok(Some(match (v, kind) {
        (serde_yaml::Value::Null, _) => return Ok(None),
        (serde_yaml::Value::String(s), _) => s.clone(),
        (serde_yaml::Value::Number(n), Kind::Duration) => format!("{n}ns"),
        (serde_yaml::Value::Number(n), _) => n.to_string(),
        (serde_yaml::Value::Bool(b), _) => b.to_string(),
        (serde_yaml::Value::Sequence(items), Kind::List) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        _ => return Err(()),
    }))
}

/// The file's `client-transport-security:` section, whose keys stand for
/// the client TLS flags (etcd: `embed.securityConfig`); `allowed-cn` has
/// no flag. Keys oxcd cannot honour yet refuse the start.
fn security_section(
    path: &str,
    section: &str,
    v: &serde_yaml::Value,
    out: &mut BTreeMap<&'static str, String>,
) -> Result<(), ConfigError> {
    let serde_yaml::Value::Mapping(m) = v else {
        if v.is_null() {
            return Ok(());
        }
        return Err(ConfigError::invalid(format!(
            "error parsing config file {path:?}: bad value for {section:?}"
        )));
    };
    for (k, v) in m {
        let Some(key) = k.as_str() else { continue };
        let peer = section == "peer-transport-security";
        let name: &'static str = match (peer, key) {
            (false, "cert-file") => "cert-file",
            (false, "key-file") => "key-file",
            (false, "client-cert-auth") => "client-cert-auth",
            (false, "trusted-ca-file") => "trusted-ca-file",
            (false, "allowed-hostname") => "client-cert-allowed-hostname",
            (false, "allowed-cn") => "client-cert-allowed-cn",
            (true, "cert-file") => "peer-cert-file",
            (true, "key-file") => "peer-key-file",
            (true, "client-cert-file") => "peer-client-cert-file",
            (true, "client-key-file") => "peer-client-key-file",
            (true, "client-cert-auth") => "peer-client-cert-auth",
            (true, "trusted-ca-file") => "peer-trusted-ca-file",
            (true, "allowed-hostname") => "peer-cert-allowed-hostname",
            (true, "allowed-cn") => "peer-cert-allowed-cn",
            (true, "skip-client-san-verification") => "peer-skip-client-san-verification",
            (_, other) => {
                let unset = match v {
                    serde_yaml::Value::Null => true,
                    serde_yaml::Value::Bool(b) => !b,
                    serde_yaml::Value::String(s) => s.is_empty(),
                    _ => false,
                };
                if unset {
                    continue;
                }
                return Err(ConfigError::invalid(format!(
                    "config file {path:?}: {section}.{other} is not supported by oxcd yet"
                )));
            }
        };
        // Every key of the section is a path, a boolean or a list.
        let raw = if v.is_number() {
            Err(())
        } else {
            yaml_raw(v, Kind::List)
        };
        match raw {
            Ok(Some(raw)) => {
                out.insert(name, raw);
            }
            Ok(None) => {}
            Err(()) => {
                return Err(ConfigError::invalid(format!(
                    "error parsing config file {path:?}: bad value for {section}.{key}"
                )));
            }
        }
    }
    Ok(())
}

fn build(
    values: &BTreeMap<&'static str, String>,
    explicit: &[&'static str],
    warnings: Vec<String>,
) -> Result<Command, ConfigError> {
    let get = |name: &str| -> String {
        values
            .get(name)
            .cloned()
            .or_else(|| find(name).map(|d| d.default.to_string()))
            .unwrap_or_default()
    };
    let uint = |name: &str| -> Result<u64, ConfigError> {
        let v = get(name);
        parse_uint(&v).ok_or_else(|| {
            ConfigError::usage(format!("invalid value {v:?} for flag -{name}: parse error"))
        })
    };
    let list = |name: &str| -> Vec<String> {
        get(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let duration = |name: &str| -> Result<Duration, ConfigError> {
        let v = get(name);
        parse_duration(&v).ok_or_else(|| {
            ConfigError::usage(format!("invalid value {v:?} for flag -{name}: parse error"))
        })
    };
    let mut warnings = warnings;
    if explicit.contains(&"experimental-peer-skip-client-san-verification") {
        if explicit.contains(&"peer-skip-client-san-verification") {
            return Err(ConfigError::invalid(
                "cannot set --experimental-peer-skip-client-san-verification and --peer-skip-client-san-verification at the same time, please use --peer-skip-client-san-verification only",
            ));
        }
        warnings.push("--experimental-peer-skip-client-san-verification is deprecated in v3.6 and will be decommissioned in v3.7. Use '--peer-skip-client-san-verification' instead.".into());
    }
    let watch_progress_notify_interval = if explicit
        .contains(&"experimental-watch-progress-notify-interval")
    {
        if explicit.contains(&"watch-progress-notify-interval") {
            return Err(ConfigError::invalid(
                "cannot set --experimental-watch-progress-notify-interval and --watch-progress-notify-interval at the same time, please use --watch-progress-notify-interval only",
            ));
        }
        warnings.push("--experimental-watch-progress-notify-interval is deprecated in v3.6 and will be decommissioned in v3.7. Use '--watch-progress-notify-interval' instead.".into());
        duration("experimental-watch-progress-notify-interval")?
    } else {
        duration("watch-progress-notify-interval")?
    };
    for f in [
        "experimental-enable-lease-checkpoint",
        "experimental-enable-lease-checkpoint-persist",
    ] {
        if explicit.contains(&f) && parse_bool(&get(f)) == Some(false) {
            warnings.push(format!(
                "--{f}=false ignored: oxcd always checkpoints and persists remaining lease TTLs"
            ));
        }
    }
    if watch_progress_notify_interval.is_zero() {
        return Err(ConfigError::invalid(
            "--watch-progress-notify-interval must be positive",
        ));
    }
    let name = get("name");
    let data_dir = match get("data-dir") {
        d if d.is_empty() => PathBuf::from(format!("{name}.etcd")),
        d => PathBuf::from(d),
    };
    let quota = get("quota-backend-bytes");
    let quota_backend_bytes = parse_int(&quota).ok_or_else(|| {
        ConfigError::usage(format!(
            "invalid value {quota:?} for flag -quota-backend-bytes: parse error"
        ))
    })?;
    let initial_advertise_peer_urls = list("initial-advertise-peer-urls");
    let initial_cluster = if explicit.contains(&"initial-cluster") {
        parse_initial_cluster(&get("initial-cluster"))?
    } else {
        // etcd: without --initial-cluster, this member alone, under its
        // name, at its advertised peer URLs.
        initial_advertise_peer_urls
            .iter()
            .map(|u| (name.clone(), u.clone()))
            .collect()
    };
    let join_existing = match get("initial-cluster-state").as_str() {
        "new" => false,
        "existing" => true,
        other => {
            return Err(ConfigError::usage(format!(
                "invalid value {other:?} for flag -initial-cluster-state: valid values are \"new\" and \"existing\""
            )));
        }
    };
    let bool_flag = |name: &str| -> Result<bool, ConfigError> {
        let v = get(name);
        parse_bool(&v).ok_or_else(|| {
            ConfigError::usage(format!(
                "invalid boolean value {v:?} for -{name}: parse error"
            ))
        })
    };
    let cfg = Config {
        listen_peer_urls: list("listen-peer-urls"),
        initial_cluster,
        join_existing,
        strict_reconfig_check: bool_flag("strict-reconfig-check")?,
        max_learners: uint("max-learners")?,
        listen_client_urls: list("listen-client-urls"),
        listen_metrics_urls: list("listen-metrics-urls"),
        advertise_client_urls: list("advertise-client-urls"),
        initial_advertise_peer_urls,
        initial_cluster_token: get("initial-cluster-token"),
        max_request_bytes: uint("max-request-bytes")?,
        max_txn_ops: uint("max-txn-ops")?,
        quota_backend_bytes,
        heartbeat_interval_ms: uint("heartbeat-interval")?,
        election_timeout_ms: uint("election-timeout")?,
        snapshot_count: uint("snapshot-count")?,
        snapshot_catchup_entries: uint("snapshot-catchup-entries")?,
        log_level: get("log-level"),
        log_outputs: list("log-outputs"),
        watch_progress_notify_interval,
        lease_checkpoint_interval: duration("experimental-lease-checkpoint-interval")?,
        client_tls: tls::TlsInfo {
            cert_file: get("cert-file"),
            key_file: get("key-file"),
            trusted_ca_file: get("trusted-ca-file"),
            client_cert_auth: bool_flag("client-cert-auth")?,
            crl_file: get("client-crl-file"),
            allowed_hostnames: list("client-cert-allowed-hostname"),
            allowed_cns: list("client-cert-allowed-cn"),
            ..Default::default()
        },
        peer_tls: tls::TlsInfo {
            cert_file: get("peer-cert-file"),
            key_file: get("peer-key-file"),
            trusted_ca_file: get("peer-trusted-ca-file"),
            client_cert_auth: bool_flag("peer-client-cert-auth")?,
            crl_file: get("peer-crl-file"),
            allowed_hostnames: list("peer-cert-allowed-hostname"),
            allowed_cns: list("peer-cert-allowed-cn"),
            client_cert_file: get("peer-client-cert-file"),
            client_key_file: get("peer-client-key-file"),
            skip_client_san_verification: bool_flag("peer-skip-client-san-verification")?
                || bool_flag("experimental-peer-skip-client-san-verification")?,
        },
        tls: tls::TlsSettings::parse(
            &get("tls-min-version"),
            &get("tls-max-version"),
            &list("cipher-suites"),
        )
        .map_err(ConfigError::invalid)?,
        name,
        data_dir,
        warnings,
    };
    validate(&cfg, explicit)?;
    let mut cfg = cfg;
    for u in &cfg.listen_client_urls {
        if u.starts_with("http://") {
            if !cfg.client_tls.is_empty() {
                cfg.warnings.push(format!(
                    "scheme is HTTP while key and cert files are present; ignoring key and cert files (client-url {u})"
                ));
            }
            if cfg.client_tls.client_cert_auth {
                cfg.warnings.push(format!(
                    "scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth for this URL (client-url {u})"
                ));
            }
        }
    }
    Ok(Command::Run(Box::new(cfg)))
}

/// etcd's `Config.Validate`, for the settings that exist here.
fn validate(cfg: &Config, explicit: &[&'static str]) -> Result<(), ConfigError> {
    if explicit.contains(&"listen-client-urls") && !explicit.contains(&"advertise-client-urls") {
        return Err(ConfigError::invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ));
    }
    for u in cfg
        .listen_client_urls
        .iter()
        .chain(&cfg.listen_metrics_urls)
        .chain(&cfg.listen_peer_urls)
    {
        listen_addr(u).map_err(ConfigError::invalid)?;
    }
    cfg.peer_tls.validate().map_err(ConfigError::invalid)?;
    for u in &cfg.listen_peer_urls {
        if u.starts_with("https://") && cfg.peer_tls.is_empty() {
            let addr = u.trim_start_matches("https://").trim_end_matches('/');
            return Err(ConfigError::invalid(format!(
                "cannot listen on TLS for {addr}: KeyFile and CertFile are not presented"
            )));
        }
    }
    let dials_tls = cfg
        .initial_cluster
        .iter()
        .any(|(_, u)| u.starts_with("https://"))
        || cfg
            .initial_advertise_peer_urls
            .iter()
            .any(|u| u.starts_with("https://"));
    if dials_tls && cfg.peer_tls.trusted_ca_file.is_empty() {
        return Err(ConfigError::invalid(
            "https peer URLs need --peer-trusted-ca-file in oxcd (verifying peers against the system's roots, or --peer-auto-tls, is not supported)",
        ));
    }
    cfg.client_tls.validate().map_err(ConfigError::invalid)?;
    for u in &cfg.listen_client_urls {
        if u.starts_with("https://") && cfg.client_tls.is_empty() {
            return Err(ConfigError::invalid(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme"
            )));
        }
    }
    if cfg
        .listen_metrics_urls
        .iter()
        .any(|u| u.starts_with("https://"))
        && cfg.client_tls.is_empty()
    {
        return Err(ConfigError::invalid(
            "client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url",
        ));
    }
    let mine: Vec<&String> = cfg
        .initial_cluster
        .iter()
        .filter(|(n, _)| *n == cfg.name)
        .map(|(_, u)| u)
        .collect();
    if mine.is_empty() {
        return Err(ConfigError::invalid(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        )));
    }
    if !cfg.join_existing {
        let mut a: Vec<&String> = cfg.initial_advertise_peer_urls.iter().collect();
        let mut b = mine.clone();
        a.sort();
        b.sort();
        if a != b {
            let mine = mine
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let adv = cfg.initial_advertise_peer_urls.join(",");
            return Err(ConfigError::invalid(format!(
                "--initial-cluster has {}={mine} but missing from --initial-advertise-peer-urls={adv} (\"{adv}\"(resolved from \"{adv}\") != \"{mine}\"(resolved from \"{mine}\"))",
                cfg.name
            )));
        }
    }
    for u in cfg
        .advertise_client_urls
        .iter()
        .chain(&cfg.initial_advertise_peer_urls)
    {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(ConfigError::invalid(format!(
                "URL scheme must be http, https, unix, or unixs: {u}"
            )));
        }
    }
    if cfg.heartbeat_interval_ms == 0 {
        return Err(ConfigError::invalid(
            "--heartbeat-interval must be positive",
        ));
    }
    if 5 * cfg.heartbeat_interval_ms > cfg.election_timeout_ms {
        return Err(ConfigError::invalid(format!(
            "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
            cfg.election_timeout_ms, cfg.heartbeat_interval_ms
        )));
    }
    if cfg.election_timeout_ms > 50_000 {
        return Err(ConfigError::invalid(format!(
            "--election-timeout[{}ms] is too long, and should be set less than 50000ms",
            cfg.election_timeout_ms
        )));
    }
    if cfg.max_txn_ops == 0 || cfg.max_request_bytes == 0 {
        return Err(ConfigError::invalid(
            "--max-txn-ops and --max-request-bytes must be positive",
        ));
    }
    if crate::log::parse_level(&cfg.log_level).is_none() {
        return Err(ConfigError::invalid(format!(
            "unknown log level {:?}",
            cfg.log_level
        )));
    }
    Ok(())
}

/// `name=url,name=url,...` into pairs (etcd: `types.NewURLsMap`).
fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(ConfigError::invalid(format!(
                "failed to parse --initial-cluster: {part:?} is not in name=URL form"
            )));
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::invalid(format!(
                "URL scheme must be http, https, unix, or unixs: {url}"
            )));
        }
        out.push((name.to_string(), url.to_string()));
    }
    Ok(out)
}

/// The socket address a listen URL binds. `http` and `https` URLs are
/// served (unix sockets are not implemented yet).
pub fn listen_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = match url.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some(("unix" | "unixs", _)) => {
            return Err(format!("listen URL scheme not supported yet: {url}"));
        }
        _ => {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {url}"
            ));
        }
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(format!("expected IP in URL for binding ({url})"));
    }
    let mut addrs = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {url}: {e}"))?
        .collect::<Vec<_>>();
    // Like Go's resolver for "localhost": prefer IPv4.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| format!("cannot resolve {url}"))
}

impl Config {
    /// The settings the server core needs.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_cluster: self.initial_cluster.clone(),
            join_existing: self.join_existing,
            strict_reconfig_check: self.strict_reconfig_check,
            max_learners: self.max_learners,
            heartbeat: Duration::from_millis(self.heartbeat_interval_ms),
            election_timeout: Duration::from_millis(self.election_timeout_ms),
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            max_request_bytes: usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX),
            max_txn_ops: usize::try_from(self.max_txn_ops).unwrap_or(usize::MAX),
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            lease_checkpoint_interval: self.lease_checkpoint_interval,
            quota_backend_bytes: self.quota_backend_bytes,
            advertise_client_urls: self.advertise_client_urls.clone(),
        }
    }
}

/// The `--help` text.
pub fn usage() -> String {
    let mut s = String::from(
        "Usage:\n\n  oxcd [flags]\n\nFlags (also as ETCD_<FLAG> environment variables or keys of --config-file):\n\n",
    );
    for f in FLAGS {
        let default = match (f.kind, f.default) {
            (Kind::Duration, d) => format!(" (default {d})"),
            (Kind::Bool, _) | (_, "") => String::new(),
            (_, d) => format!(" (default {d:?})"),
        };
        s.push_str(&format!("  --{}{}\n      {}\n", f.name, default, f.usage));
    }
    s
}

#[cfg(test)]
mod tests;
