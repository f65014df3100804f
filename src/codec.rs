//! The gRPC codec for every service: prost encoding with small initial
//! buffers. tonic's default reserves 8 KiB per message stream for encoding
//! and again for decoding; with thousands of long-lived watch streams that
//! was most of their memory. Buffers still grow as large messages need:
//! the encoder reserves a message's exact size before writing it, so a
//! 100 MB Range response is written into one allocation instead of
//! doubling (and copying) its way there.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// Initial buffer per encoder or decoder.
const INITIAL_BUFFER: usize = 256;
/// Encoded bytes after which a streaming response yields to the sender
/// (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost messages with small initial buffers.
#[derive(Debug, Clone)]
pub struct EtcdCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for EtcdCodec<T, U> {
    fn default() -> Self {
        EtcdCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD)
}

impl<T, U> Codec for EtcdCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

/// Encodes a prost message after reserving its exact encoded length.
#[derive(Debug)]
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: prost::Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a response: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        settings()
    }
}
