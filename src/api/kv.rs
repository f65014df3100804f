//! The `etcdserverpb.KV` service: validate, call the server, fill the
//! header (etcd: `server/etcdserver/api/v3rpc/key.go`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message as _;
use tonic::{Request, Response, Status};

use super::header::{HeaderSource, fill, fill_without_revision};
use super::validate::{
    check_delete_request, check_intervals, check_put_request, check_range_request,
    check_txn_request,
};
use crate::error::Result as ServerResult;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use crate::server::{alarm, txn};

/// First chunk size of a RangeStream; later chunks adapt to the response
/// size (etcd: `initialStreamChunkLimit`).
const INITIAL_STREAM_CHUNK: i64 = 10;

/// What the KV service needs of the server: [`crate::server::Kv`], or a
/// fake in tests.
pub trait KvApi: HeaderSource + Send + Sync + 'static {
    /// Whether this member is a learner (which serves serializable reads
    /// only).
    fn is_learner(&self) -> bool;
    /// `--max-request-bytes`.
    fn max_request_bytes(&self) -> usize;
    /// `--max-txn-ops`.
    fn max_txn_ops(&self) -> usize;
    /// The quota check before a write that costs `cost` bytes.
    fn check_quota(&self, cost: usize) -> impl Future<Output = ServerResult<()>> + Send;
    /// Waits until local reads are linearizable.
    fn read_barrier(&self) -> impl Future<Output = ServerResult<()>> + Send;
    fn range(&self, r: &RangeRequest) -> impl Future<Output = ServerResult<RangeResponse>> + Send;
    /// Range without a read barrier.
    fn range_local(&self, r: &RangeRequest) -> ServerResult<RangeResponse>;
    fn put(&self, r: PutRequest) -> impl Future<Output = ServerResult<PutResponse>> + Send;
    fn delete_range(
        &self,
        r: DeleteRangeRequest,
    ) -> impl Future<Output = ServerResult<DeleteRangeResponse>> + Send;
    fn txn(&self, r: TxnRequest) -> impl Future<Output = ServerResult<TxnResponse>> + Send;
    fn compact(
        &self,
        r: CompactionRequest,
    ) -> impl Future<Output = ServerResult<CompactionResponse>> + Send;
}

impl KvApi for crate::server::Kv {
    fn is_learner(&self) -> bool {
        self.core().is_learner()
    }
    fn max_request_bytes(&self) -> usize {
        self.core().config().max_request_bytes
    }
    fn max_txn_ops(&self) -> usize {
        self.core().config().max_txn_ops
    }
    async fn check_quota(&self, cost: usize) -> ServerResult<()> {
        crate::server::Kv::check_quota(self, cost).await
    }
    async fn read_barrier(&self) -> ServerResult<()> {
        self.core().read_barrier().await
    }
    async fn range(&self, r: &RangeRequest) -> ServerResult<RangeResponse> {
        crate::server::Kv::range(self, r).await
    }
    fn range_local(&self, r: &RangeRequest) -> ServerResult<RangeResponse> {
        crate::server::Kv::range_local(self, r)
    }
    async fn put(&self, r: PutRequest) -> ServerResult<PutResponse> {
        crate::server::Kv::put(self, r).await
    }
    async fn delete_range(&self, r: DeleteRangeRequest) -> ServerResult<DeleteRangeResponse> {
        crate::server::Kv::delete_range(self, r).await
    }
    async fn txn(&self, r: TxnRequest) -> ServerResult<TxnResponse> {
        crate::server::Kv::txn(self, r).await
    }
    async fn compact(&self, r: CompactionRequest) -> ServerResult<CompactionResponse> {
        crate::server::Kv::compact(self, r).await
    }
}

pub struct KvService<K = crate::server::Kv> {
    server: Arc<K>,
}

impl<K: KvApi> KvService<K> {
    pub fn new(server: Arc<K>) -> Self {
        KvService { server }
    }
}

type RangeStreamItems = Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<K: KvApi> Kv for KvService<K> {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.into_inner();
        check_range_request(&r)?;
        if !r.serializable && self.server.is_learner() {
            return Err(crate::error::Error::NotSupportedForLearner.into());
        }
        let mut resp = self.server.range(&r).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    type RangeStreamStream = RangeStreamItems;

    async fn range_stream(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let r = req.into_inner();
        check_range_request(&r)?;
        txn::range_stream_supported(&r).map_err(Status::unimplemented)?;
        if !r.serializable {
            self.server.read_barrier().await?;
        }
        let server = self.server.clone();
        let max_bytes = server.max_request_bytes();
        let stream = async_stream::try_stream! {
            let mut r = r;
            if r.count_only {
                let resp = server.range_local(&r)?;
                let mut header = Some(ResponseHeader {
                    revision: resp.header.map_or(0, |h| h.revision),
                    ..Default::default()
                });
                fill_without_revision(&server, &mut header);
                yield RangeStreamResponse {
                    range_response: Some(RangeResponse { header, count: resp.count, ..Default::default() }),
                };
                return;
            }
            let total_limit = if r.limit > 0 { r.limit } else { i64::MAX };
            r.limit = INITIAL_STREAM_CHUNK.min(total_limit);
            let mut count = 0i64;
            let mut header_rev = 0i64;
            loop {
                let resp = server.range_local(&r)?;
                if header_rev == 0 {
                    // Pin every chunk to the revision of the first one.
                    header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
                    if r.revision == 0 {
                        r.revision = header_rev;
                    }
                }
                let size = resp.encoded_len();
                count += resp.kvs.len() as i64;
                let next_key = match (resp.more, resp.kvs.last()) {
                    (true, Some(kv)) => {
                        let mut k = kv.key.to_vec();
                        k.push(0);
                        Some(k)
                    }
                    _ => None,
                };
                let done = !resp.more || count == total_limit;
                let mut out = RangeResponse { kvs: resp.kvs, ..Default::default() };
                if done {
                    let mut header = Some(ResponseHeader { revision: header_rev, ..Default::default() });
                    fill_without_revision(&server, &mut header);
                    out.header = header;
                    out.more = resp.more;
                    out.count = count;
                    if let Some(k) = &next_key {
                        let rest = RangeRequest {
                            key: k.clone().into(),
                            range_end: r.range_end.clone(),
                            revision: r.revision,
                            count_only: true,
                            ..Default::default()
                        };
                        out.count += server.range_local(&rest)?.count;
                    }
                }
                yield RangeStreamResponse { range_response: Some(out) };
                if done {
                    return;
                }
                if let Some(k) = next_key {
                    r.key = k.into();
                }
                r.limit = adjust_chunk_limit(r.limit, size, max_bytes).min(total_limit - count);
            }
        };
        Ok(Response::new(Box::pin(stream) as RangeStreamItems))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = req.into_inner();
        // etcd checks the quota before validating (its quota server wraps
        // the KV server).
        self.server.check_quota(alarm::cost_put(&r)).await?;
        check_put_request(&r)?;
        let mut resp = self.server.put(r).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let r = req.into_inner();
        check_delete_request(&r)?;
        let mut resp = self.server.delete_range(r).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let r = req.into_inner();
        self.server.check_quota(alarm::cost_txn(&r)).await?;
        check_txn_request(&r, self.server.max_txn_ops())?;
        check_intervals(&r.success)?;
        check_intervals(&r.failure)?;
        let mut resp = self.server.txn(r).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let mut resp = self.server.compact(req.into_inner()).await?;
        fill(&self.server, &mut resp.header);
        Ok(Response::new(resp))
    }
}

/// Grows or shrinks the next chunk so chunks land near `target` bytes
/// (etcd: `adjustChunkLimit`).
fn adjust_chunk_limit(last: i64, last_size: usize, target: usize) -> i64 {
    let next = if last_size < target / 2 {
        last.saturating_mul(2)
    } else if last_size > target.saturating_mul(2) {
        last / 2
    } else {
        last
    };
    next.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::Mutex;

    /// A KV facade that records what the handler asked of it.
    #[derive(Default)]
    struct FakeKv {
        learner: bool,
        nospace: bool,
        compacted: bool,
        calls: Mutex<Vec<&'static str>>,
    }

    impl FakeKv {
        fn called(&self, what: &'static str) {
            self.calls.lock().unwrap().push(what);
        }
        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl HeaderSource for FakeKv {
        fn header(&self) -> ResponseHeader {
            ResponseHeader {
                cluster_id: 7,
                member_id: 8,
                revision: 42,
                raft_term: 3,
            }
        }
    }

    impl KvApi for FakeKv {
        fn is_learner(&self) -> bool {
            self.learner
        }
        fn max_request_bytes(&self) -> usize {
            1024
        }
        fn max_txn_ops(&self) -> usize {
            2
        }
        async fn check_quota(&self, _cost: usize) -> ServerResult<()> {
            self.called("check_quota");
            if self.nospace {
                return Err(Error::NoSpace);
            }
            Ok(())
        }
        async fn read_barrier(&self) -> ServerResult<()> {
            self.called("read_barrier");
            Ok(())
        }
        async fn range(&self, _r: &RangeRequest) -> ServerResult<RangeResponse> {
            self.called("range");
            if self.compacted {
                return Err(Error::Compacted);
            }
            Ok(RangeResponse {
                header: Some(ResponseHeader {
                    revision: 5,
                    ..Default::default()
                }),
                count: 1,
                ..Default::default()
            })
        }
        fn range_local(&self, _r: &RangeRequest) -> ServerResult<RangeResponse> {
            self.called("range_local");
            Ok(RangeResponse::default())
        }
        async fn put(&self, _r: PutRequest) -> ServerResult<PutResponse> {
            self.called("put");
            Ok(PutResponse::default())
        }
        async fn delete_range(&self, _r: DeleteRangeRequest) -> ServerResult<DeleteRangeResponse> {
            self.called("delete_range");
            Ok(DeleteRangeResponse::default())
        }
        async fn txn(&self, _r: TxnRequest) -> ServerResult<TxnResponse> {
            self.called("txn");
            Ok(TxnResponse::default())
        }
        async fn compact(&self, _r: CompactionRequest) -> ServerResult<CompactionResponse> {
            self.called("compact");
            Ok(CompactionResponse::default())
        }
    }

    fn service(fake: FakeKv) -> (KvService<FakeKv>, Arc<FakeKv>) {
        let fake = Arc::new(fake);
        (KvService::new(fake.clone()), fake)
    }

    #[tokio::test]
    async fn a_bad_put_is_refused_with_etcds_message_after_the_quota_check() {
        let (svc, fake) = service(FakeKv::default());
        let err = Kv::put(&svc, Request::new(PutRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: key is not provided");
        // etcd's quota server wraps the KV server: quota first, and the
        // facade never sees the invalid request.
        assert_eq!(fake.calls(), ["check_quota"]);

        let (svc, fake) = service(FakeKv {
            nospace: true,
            ..Default::default()
        });
        let put = PutRequest {
            key: "k".into(),
            ..Default::default()
        };
        let err = Kv::put(&svc, Request::new(put)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
        assert_eq!(fake.calls(), ["check_quota"]);
    }

    #[tokio::test]
    async fn a_learner_serves_serializable_ranges_only() {
        let (svc, fake) = service(FakeKv {
            learner: true,
            ..Default::default()
        });
        let lin = RangeRequest {
            key: "k".into(),
            ..Default::default()
        };
        let err = Kv::range(&svc, Request::new(lin.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.message(), "etcdserver: rpc not supported for learner");
        assert!(fake.calls().is_empty());
        let ser = RangeRequest {
            serializable: true,
            ..lin
        };
        assert!(Kv::range(&svc, Request::new(ser)).await.is_ok());
        assert_eq!(fake.calls(), ["range"]);
    }

    #[tokio::test]
    async fn headers_are_filled_and_facade_errors_keep_etcds_code() {
        let (svc, _) = service(FakeKv::default());
        let r = RangeRequest {
            key: "k".into(),
            ..Default::default()
        };
        let resp = Kv::range(&svc, Request::new(r.clone()))
            .await
            .unwrap()
            .into_inner();
        let h = resp.header.unwrap();
        // The revision the read saw stays; the rest is this member's.
        assert_eq!(
            (h.cluster_id, h.member_id, h.raft_term, h.revision),
            (7, 8, 3, 5)
        );
        let put = PutRequest {
            key: "k".into(),
            ..Default::default()
        };
        let h = Kv::put(&svc, Request::new(put))
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap();
        assert_eq!(h.revision, 42);

        let (svc, _) = service(FakeKv {
            compacted: true,
            ..Default::default()
        });
        let err = Kv::range(&svc, Request::new(r)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
        assert_eq!(
            err.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }

    #[tokio::test]
    async fn txn_limits_come_from_the_facade() {
        let (svc, fake) = service(FakeKv::default());
        let op = || crate::proto::etcdserverpb::RequestOp {
            request: Some(
                crate::proto::etcdserverpb::request_op::Request::RequestRange(RangeRequest {
                    key: "k".into(),
                    ..Default::default()
                }),
            ),
        };
        let t = TxnRequest {
            success: vec![op(), op(), op()],
            ..Default::default()
        };
        let err = Kv::txn(&svc, Request::new(t)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "etcdserver: too many operations in txn request"
        );
        assert_eq!(fake.calls(), ["check_quota"]);
        let t = TxnRequest {
            success: vec![op(), op()],
            ..Default::default()
        };
        assert!(Kv::txn(&svc, Request::new(t)).await.is_ok());
        assert_eq!(fake.calls(), ["check_quota", "check_quota", "txn"]);
    }

    #[test]
    fn chunk_limit_doubles_halves_and_stays_positive() {
        assert_eq!(adjust_chunk_limit(10, 100, 1000), 20);
        assert_eq!(adjust_chunk_limit(10, 3000, 1000), 5);
        assert_eq!(adjust_chunk_limit(10, 800, 1000), 10);
        assert_eq!(adjust_chunk_limit(1, 3000, 1000), 1);
    }
}
