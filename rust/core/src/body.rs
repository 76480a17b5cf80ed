//! HTTP bodies made of several buffers. An encoded V2 body is a JSON header plus the tensors'
//! own buffers; sending those as frames, one each, avoids concatenating them into a copy.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::codec::Encoded;

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
    use http_body_util::BodyExt;

    use super::*;

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
