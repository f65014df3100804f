//! Versions oxcd reports.
//!
//! Clients decide which features to use from the etcd version a server
//! reports (kube-apiserver, for one, needs at least 3.5.13 for its watch
//! progress features), so oxcd reports the etcd API level it implements,
//! next to its own version.

/// The etcd server version whose client API oxcd implements.
pub const ETCD_API_VERSION: &str = "3.6.0";
/// The etcd cluster version reported alongside.
pub const ETCD_CLUSTER_VERSION: &str = "3.6.0";
/// The storage schema version reported (etcd 3.6's schema level).
pub const STORAGE_VERSION: &str = "3.6.0";
/// oxcd's own version.
pub const OXCD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The text `oxcd --version` prints.
pub fn version_text() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "etcd Version: {ETCD_API_VERSION}\noxcd Version: {OXCD_VERSION}\nGit SHA: {}\nRust Version: {}\nOS/Arch: {}/{arch}\n",
        option_env!("OXCD_GIT_SHA").unwrap_or("Not provided"),
        env!("OXCD_RUSTC_VERSION"),
        std::env::consts::OS,
    )
}
