//! tonic's prost codec with one change: messages are encoded through [`crate::copy::AliasSafe`],
//! so raw tensor contents are copied into the gRPC frame without the slow `memcpy` path.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

use crate::copy::AliasSafe;

/// The codec the generated client and server use (`codec_path` in `tests/proto_bootstrap.rs`).
#[derive(Debug, Clone, Copy)]
pub struct AliasSafeProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for AliasSafeProstCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for AliasSafeProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = AliasSafeEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        AliasSafeEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AliasSafeEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for AliasSafeEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(&mut AliasSafe(buf))
            .map_err(|error| Status::internal(format!("encoding a message: {error}")))
    }
}
