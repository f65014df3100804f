//! Code generated from `proto/` by `build.rs`: etcd's API packages, as
//! sibling modules because the generated code refers to them by
//! `super::<package>`, plus oxcd's own raft entry format (`oxcdpb`).
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod oxcdpb {
    tonic::include_proto!("oxcdpb");
}
