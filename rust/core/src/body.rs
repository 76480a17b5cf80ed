//! HTTP bodies made of several buffers. An encoded V2 body is a JSON header plus the tensors'
//! own buffers; sending those as frames, one each, avoids concatenating them into a copy. A body
//! read from the network is kept in the chunks it arrived in, so one that is forwarded unchanged
//! is never concatenated either.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, SizeHint};

use crate::codec::Encoded;
use crate::copy;

/// A request body sent as it is held: an encoded V2 body's JSON header and its tensors' own
/// buffers go out one frame each, never concatenated into a copy.
#[derive(Debug, Clone, Default)]
pub struct Chunks(VecDeque<Bytes>);

impl From<Bytes> for Chunks {
    fn from(bytes: Bytes) -> Self {
        Self(VecDeque::from([bytes]))
    }
}

impl From<Vec<u8>> for Chunks {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from(Bytes::from(bytes))
    }
}

impl From<Encoded> for Chunks {
    fn from(encoded: Encoded) -> Self {
        let header = Bytes::from(encoded.json);
        Self(
            std::iter::once(header)
                .chain(encoded.binary.into_iter().flatten())
                .collect(),
        )
    }
}

impl Chunks {
    /// Reads a whole body, refusing it (with `Limited`'s `LengthLimitError`) past `max` bytes.
    pub async fn read<B>(body: B, max: usize) -> Result<Self, BoxError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(Limited::new(body, max));
        let mut chunks = VecDeque::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data()
                && !data.is_empty()
            {
                chunks.push_back(data);
            }
        }
        Ok(Self(chunks))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    /// The body as one buffer, for the decoders: concatenated only if it came in pieces.
    pub fn to_bytes(&self) -> Bytes {
        match self.0.len() {
            0 => Bytes::new(),
            1 => self.0[0].clone(),
            _ => {
                let mut whole = BytesMut::with_capacity(self.len());
                for chunk in &self.0 {
                    copy::put(&mut whole, chunk);
                }
                whole.freeze()
            }
        }
    }
}

/// The error of a body that could not be read.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|chunk| chunk.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, LengthLimitError};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_is_read_in_its_chunks_up_to_its_limit() {
        let (head, tail) = (Bytes::from_static(b"{\"x\":"), Bytes::from_static(b"1}"));
        let body = Chunks(VecDeque::from([head.clone(), Bytes::new(), tail]));
        let Ok(read) = Chunks::read(body.clone(), 7).await else {
            panic!("a 7-byte body within a 7-byte limit is read");
        };
        assert_eq!(read.0.len(), 2, "empty frames are dropped");
        assert_eq!(read.0[0].as_ptr(), head.as_ptr(), "chunks are not copied");
        assert_eq!(read.len(), 7);
        assert_eq!(read.to_bytes(), Bytes::from_static(b"{\"x\":1}"));
        let refused = Chunks::read(body, 6).await.err();
        assert!(refused.is_some_and(|e| e.is::<LengthLimitError>()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_encoded_body_goes_out_in_order_without_a_copy() {
        let tensor = Bytes::from_static(&[1, 2, 3, 4]);
        let encoded = Encoded {
            json: b"{}".to_vec(),
            binary: Some(vec![tensor.clone(), Bytes::from_static(&[5])]),
        };
        let body = Chunks::from(encoded);
        assert_eq!(body.size_hint().exact(), Some(7));
        let frames: Vec<Bytes> = body.0.iter().cloned().collect();
        assert_eq!(
            frames[1].as_ptr(),
            tensor.as_ptr(),
            "the tensor's own buffer"
        );
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(
            collected.ok().as_deref(),
            Some(&b"{}\x01\x02\x03\x04\x05"[..])
        );
    }
}
