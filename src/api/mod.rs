//! The client-facing edge: gRPC services over the client URLs. Each handler
//! validates its request, calls its domain's facade in [`crate::server`]
//! through a narrow trait (`KvApi`, `WatchApi`, `LeaseApi`, `ClusterApi`,
//! `MaintenanceApi`, `RecipesApi`), and fills the response header (etcd:
//! `server/etcdserver/api/v3rpc`).
//!
//! Served so far: `etcdserverpb.KV`, `Watch`, `Lease`, `Cluster` (MemberList)
//! and `Maintenance` (see `maintenance`), `v3lockpb.Lock`,
//! `v3electionpb.Election`, `grpc.health.v1.Health`, and etcd's HTTP
//! endpoints on the same port (`etcdhttp`). Other RPCs answer `Unimplemented`
//! (see docs/COMPATIBILITY.md).

pub mod cluster;
pub mod concurrency;
pub mod etcdhttp;
pub mod header;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod validate;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::server::Server;

/// gRPC accepts requests up to this much above `--max-request-bytes`, as
/// etcd does (`MaxRequestBytesWithOverhead`); the excess is etcd's own
/// "request is too large" check.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Binds every client URL. Done before serving so that a bad address fails
/// the start instead of a background task.
pub async fn bind(addrs: &[(String, SocketAddr)]) -> Result<Vec<(String, TcpListener)>> {
    let mut out = Vec::new();
    for (url, addr) in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::internal(format!("listen on {url} ({addr}): {e}")))?;
        out.push((url.clone(), l));
    }
    Ok(out)
}

/// Serves the peer port: the peer protocol, and the Lease and Cluster
/// services for requests other members forward to this one when it leads.
/// `https://` peer URLs are served through `peer_tls`.
pub fn serve_peers(
    server: Arc<Server>,
    listeners: Vec<(String, TcpListener)>,
    peer_tls: Option<Arc<crate::tls::Acceptor>>,
) {
    for (url, listener) in listeners {
        let tls = url
            .starts_with("https://")
            .then(|| peer_tls.clone())
            .flatten();
        let peer = server.membership().peer_service();
        let lease = LeaseServer::new(lease::LeaseService::new(server.leases().clone()));
        let cluster = ClusterServer::new(cluster::ClusterService::new(server.membership().clone()));
        tracing::info!(address = %url, "serving peer traffic");
        tokio::spawn(async move {
            let router = tonic::transport::Server::builder()
                .max_concurrent_streams(u32::MAX)
                .add_service(peer)
                .add_service(lease)
                .add_service(cluster);
            let r = match tls {
                Some(tls) => {
                    router
                        .serve_with_incoming(crate::tls::incoming(listener, tls))
                        .await
                }
                None => router.serve_with_incoming(accept(listener)).await,
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "peer server stopped");
            }
        });
    }
}

/// Serves gRPC and etcd's HTTP endpoints on the listeners until `shutdown`
/// is cancelled; `https://` URLs through `client_tls`.
pub async fn serve(
    server: Arc<Server>,
    listeners: Vec<(String, TcpListener)>,
    metrics_listeners: Vec<(String, TcpListener)>,
    client_tls: Option<Arc<crate::tls::Acceptor>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let tls_for = |url: &str| -> Result<Option<Arc<crate::tls::Acceptor>>> {
        if !url.starts_with("https://") {
            return Ok(None);
        }
        client_tls
            .clone()
            .map(Some)
            .ok_or_else(|| Error::internal(format!("no client TLS configured for {url}")))
    };
    let max_recv = server.config().max_request_bytes + GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(kv::KvService::new(server.kv().clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let watch = WatchServer::new(watch::WatchService::new(server.watch().clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::new(lease::LeaseService::new(server.leases().clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(concurrency::LockService::new(server.recipes().clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let election = ElectionServer::new(concurrency::ElectionService::new(server.recipes().clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(cluster::ClusterService::new(server.membership().clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(
        server.maintenance().clone(),
    ))
    .max_decoding_message_size(max_recv)
    .max_encoding_message_size(usize::MAX);
    // grpc.health.v1.Health: the server ("") is SERVING, as in etcd.
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    let mut tasks = tokio::task::JoinSet::new();
    for (url, listener) in listeners {
        let http_server = server.clone();
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(u32::MAX)
            // etcd serves HTTP/1.1 (health, version) on the gRPC port.
            .accept_http1(true)
            .layer(tower_layer::layer_fn(move |s| {
                etcdhttp::HttpEndpoints::new(s, http_server.clone())
            }))
            .add_service(kv.clone())
            .add_service(watch.clone())
            .add_service(lease.clone())
            .add_service(cluster.clone())
            .add_service(maintenance.clone())
            .add_service(lock.clone())
            .add_service(election.clone())
            .add_service(health.clone());
        let shutdown = shutdown.clone();
        match tls_for(&url)? {
            Some(tls) => {
                tracing::info!(address = %url, "serving client traffic securely");
                tasks.spawn(async move {
                    router
                        .serve_with_incoming_shutdown(
                            crate::tls::incoming(listener, tls),
                            shutdown.cancelled_owned(),
                        )
                        .await
                });
            }
            None => {
                tracing::info!(address = %url, "serving client traffic insecurely; this is strongly discouraged!");
                tasks.spawn(async move {
                    router
                        .serve_with_incoming_shutdown(accept(listener), shutdown.cancelled_owned())
                        .await
                });
            }
        }
    }
    for (url, listener) in metrics_listeners {
        let http_server = server.clone();
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(tower_layer::layer_fn(move |s| {
                etcdhttp::HttpEndpoints::metrics_only(s, http_server.clone())
            }))
            .add_routes(tonic::service::Routes::default());
        let shutdown = shutdown.clone();
        tracing::info!(address = %url, "serving metrics and health");
        match tls_for(&url)? {
            Some(tls) => tasks.spawn(async move {
                router
                    .serve_with_incoming_shutdown(
                        crate::tls::incoming(listener, tls),
                        shutdown.cancelled_owned(),
                    )
                    .await
            }),
            None => tasks.spawn(async move {
                router
                    .serve_with_incoming_shutdown(accept(listener), shutdown.cancelled_owned())
                    .await
            }),
        };
    }
    tracing::info!("ready to serve client requests");
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::internal(format!("grpc server: {e}"))),
            Err(e) => return Err(Error::internal(format!("grpc server task: {e}"))),
        }
    }
    Ok(())
}

/// Accepted connections, with Nagle off; transient accept failures (such as
/// running out of file descriptors) are logged and retried.
pub(crate) fn accept(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    async_stream::stream! {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    yield Ok(s);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Rewrites tonic's "message too large" status into grpc-go's, which etcd
/// clients see from etcd: code ResourceExhausted and
/// `grpc: received message larger than max (N vs. M)` (applied to every
/// gRPC response by `etcdhttp::HttpEndpoints`).
pub(crate) fn rewrite_limit_status(headers: &mut http::HeaderMap) {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if status.code() != tonic::Code::OutOfRange {
        return;
    }
    let Some(rest) = status
        .message()
        .strip_prefix("Error, decoded message length too large: found ")
    else {
        return;
    };
    let Some((found, rest)) = rest.split_once(" bytes, the limit is: ") else {
        return;
    };
    let limit = rest.trim_end_matches(" bytes");
    let replaced = tonic::Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ));
    headers.remove("grpc-message");
    let _ = replaced.add_header(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_status_is_rewritten_like_grpc_go() {
        let mut h = http::HeaderMap::new();
        tonic::Status::out_of_range(
            "Error, decoded message length too large: found 2097160 bytes, the limit is: 2097152 bytes",
        )
        .add_header(&mut h)
        .unwrap();
        rewrite_limit_status(&mut h);
        let s = tonic::Status::from_header_map(&h).unwrap();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "grpc: received message larger than max (2097160 vs. 2097152)"
        );

        let mut h = http::HeaderMap::new();
        tonic::Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
            .add_header(&mut h)
            .unwrap();
        rewrite_limit_status(&mut h);
        assert_eq!(
            tonic::Status::from_header_map(&h).unwrap().code(),
            tonic::Code::OutOfRange
        );
    }
}
