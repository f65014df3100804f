//! Ending the process: the one way oxcd stops itself.
//!
//! Every stop ends in [`exit_now`], which skips C++ static destructors:
//! other threads may still be inside RocksDB, and destroying its statics
//! under them aborts the process. Every acknowledged write is already
//! fsynced, so nothing is lost by stopping at once.
//!
//! Nothing a client or a peer sends may lead here except what etcd also
//! stops for (this member removed from the cluster); everything else is a
//! storage failure or a broken invariant, after which the state is unknown
//! and a restart recovers from the synced raft log.

use std::time::Duration;

/// Stops the process after a failure that leaves the state unknown. The
/// raft log is the source of truth, so a restart recovers.
pub fn fatal(what: &str, err: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %err, "{what}");
    eprintln!("oxcd: fatal: {what}: {err}");
    exit_now(1)
}

/// Ends the process at once with `code`, without C++ static destructors.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; no Rust state is used after.
    unsafe { libc::_exit(code) }
}

/// Ends the process with `code` after `delay`, from a thread of its own
/// (so the caller can finish what it is doing, e.g. answer the request
/// that removed this member).
pub fn exit_after(delay: Duration, code: i32) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        exit_now(code);
    });
}
