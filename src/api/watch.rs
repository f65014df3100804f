//! The `etcdserverpb.Watch` service: one bidirectional stream per client
//! connection carrying many watchers (etcd:
//! `server/etcdserver/api/v3rpc/watch.go`).
//!
//! A task reads the client's requests in order and turns them into calls on
//! the stream's [`WatchStream`] handle (create, cancel, progress). The
//! response side drains the stream's bounded channel, attaching `prev_kv`
//! to events that asked for it, filling headers and splitting oversized
//! responses when the watcher allowed `fragment`. When the client stops
//! sending, or goes away, the stream and all its watchers are removed.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};

use super::header::{HeaderSource, fill_without_revision};
use crate::error::Error;
use crate::mvcc::watch::{WatchMsg, WatchStream};
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};

/// What the Watch service needs of the server: [`crate::server::Watch`],
/// or a fake in tests.
pub trait WatchApi: HeaderSource + Send + Sync + 'static {
    fn has_leader(&self) -> bool;
    /// `--max-request-bytes`.
    fn max_request_bytes(&self) -> usize;
    /// A new watch stream and the receiver of its messages.
    fn open_stream(&self) -> (WatchStream, tokio::sync::mpsc::Receiver<WatchMsg>);
    /// The version of `key` at `rev`, for `prev_kv`.
    fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue>;
}

impl WatchApi for crate::server::Watch {
    fn has_leader(&self) -> bool {
        self.core().has_leader()
    }
    fn max_request_bytes(&self) -> usize {
        self.core().config().max_request_bytes
    }
    fn open_stream(&self) -> (WatchStream, tokio::sync::mpsc::Receiver<WatchMsg>) {
        crate::server::Watch::open_stream(self)
    }
    fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        crate::server::Watch::kv_at(self, key, rev)
    }
}

pub struct WatchService<W = crate::server::Watch> {
    server: Arc<W>,
}

impl<W: WatchApi> WatchService<W> {
    pub fn new(server: Arc<W>) -> Self {
        WatchService { server }
    }
}

type WatchResponses = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Whether the client asked, with `hasleader: true` metadata, to be refused
/// when the member has no leader.
pub fn requires_leader<T>(req: &Request<T>) -> bool {
    req.metadata()
        .get("hasleader")
        .is_some_and(|v| v.as_bytes() == b"true")
}

#[tonic::async_trait]
impl<W: WatchApi> Watch for WatchService<W> {
    type WatchStream = WatchResponses;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if requires_leader(&req) && !self.server.has_leader() {
            return Err(Error::NoLeader.into());
        }
        let mut inbound = req.into_inner();
        let (stream, mut rx) = self.server.open_stream();
        tokio::spawn(async move {
            // Requests are handled strictly in order, so `created` replies
            // go out in the order the creates arrived.
            while let Ok(Some(req)) = inbound.message().await {
                handle(&stream, req).await;
            }
            // Dropping `stream` removes its watchers; the response side
            // ends once the channel is drained.
        });
        let server = self.server.clone();
        let out = async_stream::stream! {
            while let Some(msg) = rx.recv().await {
                for resp in finish(&*server, msg) {
                    yield Ok(resp);
                }
            }
        };
        Ok(Response::new(Box::pin(out) as WatchResponses))
    }
}

async fn handle(stream: &WatchStream, req: WatchRequest) {
    match req.request_union {
        Some(RequestUnion::CreateRequest(c)) => {
            stream.create(&c).await;
        }
        Some(RequestUnion::CancelRequest(c)) => stream.cancel(c.watch_id).await,
        Some(RequestUnion::ProgressRequest(_)) => stream.request_progress(),
        // etcd ignores requests it cannot make sense of.
        None => {}
    }
}

fn is_create(e: &Event) -> bool {
    e.r#type == EventType::Put as i32
        && e.kv
            .as_ref()
            .is_some_and(|kv| kv.create_revision == kv.mod_revision)
}

/// Completes a queued response: `prev_kv`, header, fragmentation.
fn finish(server: &impl WatchApi, msg: WatchMsg) -> Vec<WatchResponse> {
    let WatchMsg {
        mut resp,
        prev_kv,
        fragment,
    } = msg;
    if prev_kv {
        for e in &mut resp.events {
            if is_create(e) {
                continue;
            }
            if let Some(kv) = &e.kv {
                // Silently absent when that version was compacted, as in etcd.
                e.prev_kv = server.kv_at(&kv.key, kv.mod_revision - 1);
            }
        }
    }
    fill_without_revision(server, &mut resp.header);
    let limit = server.max_request_bytes() + super::GRPC_OVERHEAD_BYTES;
    if !fragment || resp.events.len() < 2 || resp.encoded_len() < limit {
        return vec![*resp];
    }
    fragments(*resp, limit)
}

/// Splits a response into pieces under `limit` bytes (each holding at least
/// one event); all but the last carry `fragment = true` (etcd:
/// `sendFragments`).
fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    let template = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..resp.clone()
    };
    let mut out = Vec::new();
    let mut cur = template.clone();
    let mut size = cur.encoded_len();
    for e in resp.events {
        // Each event costs its encoding plus a tag and a length prefix.
        let cost = e.encoded_len() + 1 + prost::length_delimiter_len(e.encoded_len());
        if !cur.events.is_empty() && size + cost >= limit {
            out.push(std::mem::replace(&mut cur, template.clone()));
            size = cur.encoded_len();
        }
        size += cost;
        cur.events.push(e);
    }
    cur.fragment = false;
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::KeyValue;

    fn ev(i: usize, size: usize) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: format!("k{i}").into(),
                value: vec![b'x'; size].into(),
                mod_revision: 10 + i as i64,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_keep_every_event_in_order_under_the_limit() {
        let resp = WatchResponse {
            header: Some(ResponseHeader {
                revision: 99,
                ..Default::default()
            }),
            watch_id: 7,
            events: (0..10).map(|i| ev(i, 300)).collect(),
            ..Default::default()
        };
        let parts = fragments(resp.clone(), 1000);
        assert!(parts.len() > 1);
        let mut all = vec![];
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.fragment, i + 1 < parts.len());
            assert_eq!(p.watch_id, 7);
            assert_eq!(p.header.unwrap().revision, 99);
            assert!(!p.events.is_empty());
            assert!(p.events.len() == 1 || p.encoded_len() < 1000);
            all.extend(p.events.clone());
        }
        assert_eq!(all, resp.events);
        // A single event is never split, however large.
        let big = WatchResponse {
            events: vec![ev(0, 5000)],
            ..Default::default()
        };
        assert_eq!(fragments(big, 1000).len(), 1);
    }
}
