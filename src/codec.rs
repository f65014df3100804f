//! The gRPC codec for every service: prost encoding with small initial
//! buffers. tonic's default reserves 8 KiB per message stream for encoding
//! and again for decoding; with thousands of long-lived watch streams that
//! was most of their memory. Buffers still grow as large messages need.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

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
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
