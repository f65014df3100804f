//! Integration tests: the real `oxcd` binary driven by etcdctl, the
//! `etcd-client` crate and raw gRPC, side by side with real etcd.

mod common;
mod differential;
mod etcdctl;
