//! Copies of tensor-sized byte runs into buffers, steering clear of a slow `memcpy` path.
//!
//! glibc 2.33 to 2.38 copies runs from its `rep movsb` threshold (2112 bytes on CPUs that
//! advertise fast short `rep movsb`, FSRM; `ld.so --list-tunables` shows it) to a few hundred
//! KiB with `rep movsb`, and AMD Zen runs `rep movsb` an order of magnitude
//! slower when the destination is up to 63 bytes ahead of the source modulo the 4 KiB page
//! (page aliasing): 256 KiB took 88 µs instead of 7 µs on the development machine (glibc 2.36,
//! AMD EPYC), for every destination 1 to 31 bytes ahead. Tensors land at arbitrary offsets
//! (after a protobuf tag, a gRPC frame header, the rows of another request) in buffers that,
//! like their sources, often start on a page, so a few bytes ahead is the common case. Such
//! runs are copied in pieces below glibc's `rep movsb` threshold, which it copies with vector
//! moves at full speed; every other run is one `memcpy`, as before.

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, BytesMut};

/// Runs shorter than this are one `memcpy`: below glibc's `rep movsb` threshold (2048 bytes at
/// the least, for 16-byte vectors), it copies them with vector moves.
const LARGE: usize = 2048;

/// The pieces an aliasing run is copied in, well below that threshold.
const PIECE: usize = 1024;

/// How far ahead of its source, modulo the page, a destination makes `rep movsb` slow: 1 to 31
/// bytes measured, with a margin.
const ALIAS_WINDOW: usize = 64;

/// A buffer that can make room for a run before it is copied, so that the address it will be
/// written to is known.
pub trait Reserve: BufMut {
    fn reserve_for(&mut self, additional: usize);
}

impl Reserve for Vec<u8> {
    fn reserve_for(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl Reserve for BytesMut {
    fn reserve_for(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl Reserve for tonic::codec::EncodeBuf<'_> {
    fn reserve_for(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

/// A fixed slice cannot grow; writing past its end panics in `put_slice` either way.
impl Reserve for &mut [u8] {
    fn reserve_for(&mut self, _: usize) {}
}

impl Reserve for &mut [std::mem::MaybeUninit<u8>] {
    fn reserve_for(&mut self, _: usize) {}
}

/// Appends `src` to `out`; see the module documentation.
pub fn put(out: &mut impl Reserve, src: &[u8]) {
    if src.len() < LARGE {
        out.put_slice(src);
        return;
    }
    out.reserve_for(src.len());
    if aliases(out.chunk_mut().as_mut_ptr(), src.as_ptr()) {
        for piece in src.chunks(PIECE) {
            out.put_slice(piece);
        }
    } else {
        out.put_slice(src);
    }
}

/// Whether `dst` is less than `ALIAS_WINDOW` bytes ahead of `src` modulo 4 KiB (and not level).
fn aliases(dst: *mut u8, src: *const u8) -> bool {
    let ahead = (dst as usize).wrapping_sub(src as usize) % 4096;
    (1..ALIAS_WINDOW).contains(&ahead)
}

/// A `BufMut` whose large runs go through [`put`], for encoders that write into a buffer
/// themselves (prost, and tonic around it).
#[derive(Debug)]
pub struct AliasSafe<'a, B>(pub &'a mut B);

// One of the crate's three `unsafe`s (the others format floats in place, `codec::json_write`,
// and call SSE2 code, `codec::json_float`):
// `BufMut` is an unsafe trait. SAFETY: every method delegates to the
// wrapped `BufMut` (`put_slice` and `put` through its safe `put_slice`), whose contract holds.
#[allow(unsafe_code)]
unsafe impl<B: Reserve> BufMut for AliasSafe<'_, B> {
    fn remaining_mut(&self) -> usize {
        self.0.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: the caller upholds `advance_mut`'s contract for the wrapped buffer.
        unsafe { self.0.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.0.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        put(self.0, src);
    }

    // prost writes `bytes` fields with `put`, whose default copies chunk by chunk into
    // `chunk_mut` and so would bypass `put_slice`.
    fn put<T: Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        while src.has_remaining() {
            let chunk = src.chunk();
            let len = chunk.len();
            put(self.0, chunk);
            src.advance(len);
        }
    }
}

/// A prost message encoded into a `Vec` of its exact length.
pub fn encode_to_vec(message: &impl prost::Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.encoded_len());
    // `encode_raw` cannot run out of room in a `Vec`, which grows; `encode` only adds that check.
    message.encode_raw(&mut AliasSafe(&mut out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset a run can start at, sizes either side of `LARGE`: the bytes and their order
    /// are those of a plain copy.
    #[test]
    fn copies_equal_plain_copies_at_every_offset() {
        let src: Vec<u8> = (0..3 * LARGE).map(|i| (i * 7 % 251) as u8).collect();
        for offset in 0..ALIAS_WINDOW + 1 {
            for len in [0, 1, LARGE - 1, LARGE, LARGE + 1, 3 * LARGE] {
                let mut out = vec![0xAA; offset];
                put(&mut out, &src[..len]);
                assert_eq!(out.len(), offset + len);
                assert!(out[..offset].iter().all(|&b| b == 0xAA));
                assert_eq!(&out[offset..], &src[..len], "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn destinations_just_ahead_of_their_source_in_the_page_alias() {
        let at = |address: usize| std::ptr::without_provenance_mut::<u8>(address);
        let src = at(1 << 20).cast_const();
        for ahead in 0..3 * 4096 {
            let expected = (1..ALIAS_WINDOW).contains(&(ahead % 4096));
            assert_eq!(
                aliases(at((1 << 20) + ahead), src),
                expected,
                "{ahead} ahead"
            );
        }
        assert!(!aliases(at((1 << 20) - 1), src), "behind the source");
    }

    /// Destinations placed 0 to `ALIAS_WINDOW` bytes ahead of the source, so both branches of
    /// `put` run, whatever addresses the allocator hands out.
    #[test]
    fn aliasing_runs_are_copied_whole_and_in_order() {
        let src: Vec<u8> = (0..3 * LARGE + 5).map(|i| (i * 31 % 255) as u8).collect();
        let mut storage = vec![0u8; src.len() + 2 * 4096];
        for ahead in 0..=ALIAS_WINDOW {
            let base = (storage.as_ptr() as usize).wrapping_sub(src.as_ptr() as usize) % 4096;
            let offset = (4096 + ahead - base) % 4096;
            let mut dst = &mut storage[offset..offset + src.len()];
            assert_eq!(
                aliases(dst.as_mut_ptr(), src.as_ptr()),
                (1..ALIAS_WINDOW).contains(&ahead)
            );
            put(&mut dst, &src);
            assert!(dst.is_empty());
            assert_eq!(
                &storage[offset..offset + src.len()],
                &src[..],
                "{ahead} ahead"
            );
        }
    }

    #[test]
    fn fixed_slices_and_chunked_sources() {
        let src: Vec<u8> = (0..5 * LARGE).map(|i| (i % 256) as u8).collect();
        let mut storage = vec![0u8; src.len() + 5];
        let mut slice = &mut storage[5..];
        let chained = bytes::Bytes::copy_from_slice(&src[..LARGE + 3])
            .chain(bytes::Bytes::copy_from_slice(&src[LARGE + 3..]));
        AliasSafe(&mut slice).put(chained);
        assert!(slice.is_empty());
        assert_eq!(&storage[5..], &src[..]);
    }

    #[test]
    fn messages_encode_as_prost_does() {
        let message = crate::proto::ModelInferRequest {
            model_name: "m".into(),
            raw_input_contents: vec![bytes::Bytes::from(vec![3u8; 3 * LARGE + 1]); 3],
            ..Default::default()
        };
        assert_eq!(
            encode_to_vec(&message),
            prost::Message::encode_to_vec(&message)
        );
    }
}
