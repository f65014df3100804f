//! Response headers (etcd: `server/etcdserver/api/v3rpc/header.go`).

use crate::proto::etcdserverpb::ResponseHeader;
use crate::server::Server;

/// Sets cluster id, member id and raft term, and the current revision if
/// the handler left it at 0.
pub fn fill(server: &Server, header: &mut Option<ResponseHeader>) {
    let h = header.get_or_insert_with(ResponseHeader::default);
    let now = server.header();
    h.cluster_id = now.cluster_id;
    h.member_id = now.member_id;
    h.raft_term = now.raft_term;
    if h.revision == 0 {
        h.revision = now.revision;
    }
}

/// Sets cluster id, member id and raft term only.
pub fn fill_without_revision(server: &Server, header: &mut Option<ResponseHeader>) {
    let h = header.get_or_insert_with(ResponseHeader::default);
    let now = server.header();
    h.cluster_id = now.cluster_id;
    h.member_id = now.member_id;
    h.raft_term = now.raft_term;
}
