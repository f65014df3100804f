//! Bad input gets etcd's error code and message, changes nothing, and never
//! takes the server down.

use bytes::{Buf as _, BufMut as _};
use oxcd::proto::etcdserverpb::{PutRequest, RangeRequest};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::common::{self, Proc};
use crate::differential::{Op, exec, put, range};

/// Sends raw bytes as a gRPC request body, to test undecodable messages.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

async fn raw_call(url: &str, path: &'static str, body: Vec<u8>) -> tonic::Code {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    match grpc
        .unary(
            tonic::Request::new(body),
            http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// Undecodable protobuf: a length running past the end, a bad wire type,
/// an overlong varint.
const MALFORMED: &[&[u8]] = &[
    &[0x0a, 0xff, 0x01, b'a'],
    &[0x0f, 0x01],
    &[
        0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ],
];

const PATHS: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
];

fn put_of(size: usize) -> Op {
    Op::Put(PutRequest {
        value: vec![b'v'; size].into(),
        ..put("big", "")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_requests_match_etcd_and_change_nothing() {
    let etcd = Proc::etcd(common::etcd35());
    let oxcd = Proc::oxcd_twin_of(&etcd);
    let mut ec = etcd.kv().await;
    let mut oc = oxcd.kv().await;
    let before = [Op::Put(put("a", "1")), Op::Range(range("a", ""))];
    for op in &before {
        assert_eq!(exec(&mut ec, op).await, exec(&mut oc, op).await);
    }
    // Just below the raft entry limit, just above it (etcd's "request is
    // too large"), and above gRPC's limit (grpc-go's message, with sizes).
    for size in [1_572_000, 1_572_864, 2_000_000, 2_200_000] {
        let op = put_of(size);
        let want = exec(&mut ec, &op).await;
        let got = exec(&mut oc, &op).await;
        assert_eq!(got, want, "put of {size} bytes");
    }
    let op = put_of(2_200_000);
    assert!(
        exec(&mut oc, &op)
            .await
            .starts_with("ERROR ResourceExhausted: grpc: received message larger than max (")
    );
    for body in MALFORMED {
        for path in PATHS {
            let want = raw_call(&etcd.url(), path, body.to_vec()).await;
            let got = raw_call(&oxcd.url(), path, body.to_vec()).await;
            assert_eq!(got, want, "{path} with {body:?}");
            assert_ne!(got, tonic::Code::Ok);
        }
    }
    let after = Op::Range(range("\0", "\0"));
    assert_eq!(exec(&mut oc, &after).await, exec(&mut ec, &after).await);
    let mut oxcd = oxcd;
    assert!(oxcd.is_running(), "oxcd survived: {}", oxcd.log_tail());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sort_options_get_etcd_36s_error() {
    let oxcd = Proc::oxcd();
    let mut c = oxcd.kv().await;
    for (order, target) in [(3, 0), (0, 5), (-1, 0), (0, 99)] {
        let op = Op::Range(RangeRequest {
            sort_order: order,
            sort_target: target,
            ..range("a", "")
        });
        assert_eq!(
            exec(&mut c, &op).await,
            "ERROR InvalidArgument: etcdserver: invalid sort option"
        );
    }
}
