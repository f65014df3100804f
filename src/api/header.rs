//! Response headers (etcd: `server/etcdserver/api/v3rpc/header.go`).

use std::sync::Arc;

use crate::proto::etcdserverpb::ResponseHeader;
use crate::server::{Core, Kv, Leases, Maintenance, Membership, Recipes, Server, Watch};

/// What a header is filled from: this member's ids, its term and the
/// current revision. Every service's facade trait has it.
pub trait HeaderSource {
    fn header(&self) -> ResponseHeader;
}

impl<T: HeaderSource + ?Sized> HeaderSource for Arc<T> {
    fn header(&self) -> ResponseHeader {
        (**self).header()
    }
}

impl HeaderSource for Core {
    fn header(&self) -> ResponseHeader {
        Core::header(self)
    }
}

macro_rules! header_from_core {
    ($($t:ty),*) => {$(
        impl HeaderSource for $t {
            fn header(&self) -> ResponseHeader {
                self.core().header()
            }
        }
    )*};
}

header_from_core!(Kv, Watch, Leases, Membership, Maintenance, Recipes, Server);

/// Sets cluster id, member id and raft term, and the current revision if
/// the handler left it at 0.
pub fn fill(src: &impl HeaderSource, header: &mut Option<ResponseHeader>) {
    let h = header.get_or_insert_with(ResponseHeader::default);
    let now = src.header();
    h.cluster_id = now.cluster_id;
    h.member_id = now.member_id;
    h.raft_term = now.raft_term;
    if h.revision == 0 {
        h.revision = now.revision;
    }
}

/// Sets cluster id, member id and raft term only.
pub fn fill_without_revision(src: &impl HeaderSource, header: &mut Option<ResponseHeader>) {
    let h = header.get_or_insert_with(ResponseHeader::default);
    let now = src.header();
    h.cluster_id = now.cluster_id;
    h.member_id = now.member_id;
    h.raft_term = now.raft_term;
}
