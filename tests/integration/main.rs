//! Integration tests: the real `oxcd` binary driven by etcdctl, the
//! `etcd-client` crate and raw gRPC, side by side with real etcd.

mod bad_input;
mod bench;
mod client;
mod cluster;
mod cluster_common;
mod common;
mod concurrency;
mod crash;
mod differential;
mod etcdctl;
mod lease;
mod lincheck;
mod maintenance;
mod server;
mod snapshot;
mod tls;
mod watch;
mod watch_checker;
