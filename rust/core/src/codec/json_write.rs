//! Writing JSON by hand into a byte buffer: strings, shortest round-trip floats, parameters and
//! tensor data. Floats are formatted by `zmij` (shortest round-trip like ryu, and faster) in
//! their own width: an f32 is never widened before formatting.
//!
//! JSON has no NaN or infinity. They are written as the bare tokens `NaN`, `Infinity` and
//! `-Infinity`, the form Python's `json` module (and so tritonclient and KServe's Python
//! clients) reads and writes; the decoder accepts the same tokens.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::tensor::{DataType, Parameter, Parameters, Tensor};

/// Appends `s` as a JSON string literal.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `"key":` (with a leading comma unless `first`).
pub fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    string(out, name);
    out.push(b':');
}

pub fn int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

macro_rules! float_writer {
    ($name:ident, $put:ident, $text:ident, $ty:ty) => {
        pub fn $name(out: &mut Vec<u8>, value: $ty) {
            out.extend_from_slice($text(&mut zmij::Buffer::new(), value));
        }

        /// Writes the float's text at the start of `dst` and returns its length. A finite float
        /// is formatted in place when `dst` has room for a `zmij::Buffer`, as orjson does:
        /// copying each text out of zmij's own buffer was 3-4 % of float encoding.
        fn $put(dst: &mut [u8], value: $ty) -> usize {
            const { assert!(std::mem::align_of::<zmij::Buffer>() == 1) };
            if !value.is_finite() || dst.len() < std::mem::size_of::<zmij::Buffer>() {
                return put(dst, $text(&mut zmij::Buffer::new(), value));
            }
            let start = dst.as_mut_ptr();
            // SAFETY: `zmij::Buffer` is an array of `MaybeUninit<u8>` (alignment 1, asserted
            // above) and `dst` holds at least its size of initialized bytes; `dst` is not used
            // until the buffer and its text are dead.
            #[allow(unsafe_code)]
            let (at, len) = unsafe {
                let text = (*start.cast::<zmij::Buffer>()).format_finite(value);
                (text.as_ptr(), text.len())
            };
            // `format_finite` writes from the start of its buffer; should a version place the
            // text elsewhere in it, the text is moved to the start.
            let offset = at as usize - start as usize;
            if offset != 0 {
                dst.copy_within(offset..offset + len, 0);
            }
            len
        }

        /// The JSON text of a float: zmij's shortest round-trip form, or a non-finite token.
        fn $text(buffer: &mut zmij::Buffer, value: $ty) -> &[u8] {
            if value.is_finite() {
                buffer.format_finite(value).as_bytes()
            } else if value.is_nan() {
                b"NaN"
            } else if value > 0.0 {
                b"Infinity"
            } else {
                b"-Infinity"
            }
        }
    };
}

float_writer!(float32, put_f32, float32_text, f32);
float_writer!(float64, put_f64, float64_text, f64);

pub fn parameters(out: &mut Vec<u8>, parameters: &Parameters) {
    parameter_entries(
        out,
        parameters
            .iter()
            .map(|(name, value)| (name.as_str(), value)),
    );
}

/// Writes a parameters object from entries, so callers can filter or add entries without
/// building a new map.
pub fn parameter_entries<'a>(
    out: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'a str, &'a Parameter)>,
) {
    out.push(b'{');
    for (i, (name, value)) in entries.into_iter().enumerate() {
        key(out, name, i == 0);
        parameter(out, value);
    }
    out.push(b'}');
}

fn parameter(out: &mut Vec<u8>, value: &Parameter) {
    match value {
        Parameter::Bool(true) => out.extend_from_slice(b"true"),
        Parameter::Bool(false) => out.extend_from_slice(b"false"),
        Parameter::Int64(v) => int(out, *v),
        Parameter::Uint64(v) => int(out, *v),
        Parameter::Double(v) => float64(out, *v),
        Parameter::String(v) => string(out, v),
    }
}

/// Whether a tensor can be written as JSON data: half floats have no agreed JSON form, and
/// BYTES elements must be UTF-8 to become JSON strings. Others must use the binary form.
pub fn representable(tensor: &Tensor) -> bool {
    match tensor.datatype() {
        DataType::Fp16 | DataType::Bf16 => false,
        DataType::Bytes => tensor
            .bytes_elements()
            .all(|e| std::str::from_utf8(&e).is_ok()),
        _ => true,
    }
}

/// An upper bound of the JSON text of a tensor's data, so the buffer is sized once: the longest
/// element plus its comma, per element. BYTES: the worst escaping (`\u00XX`) of every byte.
pub fn max_data_len(tensor: &Tensor) -> usize {
    match tensor.datatype() {
        DataType::Bytes => tensor.data().len() * 6 + 2,
        datatype => tensor
            .element_count()
            .saturating_mul(element_width(datatype))
            .saturating_add(MAX_ELEMENT + 2),
    }
}

/// Room for any one fixed-size element's text and its comma (itoa's longest 64-bit integer is
/// 20 bytes, zmij's longest f64 24).
const MAX_ELEMENT: usize = 32;

/// The longest JSON text of one fixed-size element, plus its comma.
fn element_width(datatype: DataType) -> usize {
    match datatype {
        DataType::Bool => 6,
        DataType::Uint8 => 4,
        DataType::Int8 => 5,
        DataType::Uint16 => 6,
        DataType::Int16 => 7,
        DataType::Uint32 => 11,
        DataType::Int32 => 12,
        DataType::Uint64 | DataType::Int64 => 21,
        // zmij writes an f32 from 1e-6 to 1e13 in plain decimal: its longest texts are 16 bytes
        // (`-1000000000000.0`, `-0.0000012345679`); its longest f64 is 24.
        DataType::Fp16 | DataType::Bf16 | DataType::Fp32 => 17,
        DataType::Fp64 | DataType::Bytes => 25,
    }
}

/// Appends the tensor's elements as a flat JSON array, row-major.
pub fn data(out: &mut Vec<u8>, tensor: &Tensor) -> Result<()> {
    out.reserve(max_data_len(tensor));
    out.push(b'[');
    if tensor.datatype() == DataType::Bytes {
        for (i, element) in tensor.bytes_elements().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let text = std::str::from_utf8(&element).map_err(|_| {
                Error::internal(format!(
                    "BYTES element {i} of '{}' is not UTF-8 and cannot be JSON",
                    tensor.name
                ))
            })?;
            string(out, text);
        }
    } else {
        fixed_elements(out, tensor.datatype(), tensor.data())?;
    }
    out.push(b']');
    Ok(())
}

/// Appends the raw little-endian elements of a fixed-size `datatype`, comma separated and
/// without brackets (half floats as numbers). BYTES elements have no fixed size: an error.
pub(crate) fn fixed_elements(out: &mut Vec<u8>, datatype: DataType, raw: &[u8]) -> Result<()> {
    let w = element_width(datatype);
    match datatype {
        DataType::Bool => each(out, w, raw, |dst, [b]: [u8; 1]| {
            put(dst, if b != 0 { b"true" } else { b"false" })
        }),
        DataType::Uint8 => each(out, w, raw, |dst, b| put_int(dst, u8::from_le_bytes(b))),
        DataType::Uint16 => each(out, w, raw, |dst, b| put_int(dst, u16::from_le_bytes(b))),
        DataType::Uint32 => each(out, w, raw, |dst, b| put_int(dst, u32::from_le_bytes(b))),
        DataType::Uint64 => each(out, w, raw, |dst, b| put_int(dst, u64::from_le_bytes(b))),
        DataType::Int8 => each(out, w, raw, |dst, b| put_int(dst, i8::from_le_bytes(b))),
        DataType::Int16 => each(out, w, raw, |dst, b| put_int(dst, i16::from_le_bytes(b))),
        DataType::Int32 => each(out, w, raw, |dst, b| put_int(dst, i32::from_le_bytes(b))),
        DataType::Int64 => each(out, w, raw, |dst, b| put_int(dst, i64::from_le_bytes(b))),
        DataType::Fp16 => each(out, w, raw, |dst, b| {
            put_f32(dst, f16::from_le_bytes(b).to_f32())
        }),
        DataType::Bf16 => each(out, w, raw, |dst, b| {
            put_f32(dst, bf16::from_le_bytes(b).to_f32())
        }),
        DataType::Fp32 => each(out, w, raw, |dst, b| put_f32(dst, f32::from_le_bytes(b))),
        DataType::Fp64 => each(out, w, raw, |dst, b| put_f64(dst, f64::from_le_bytes(b))),
        DataType::Bytes => {
            return Err(Error::internal("BYTES elements have no fixed size"));
        }
    }
    Ok(())
}

/// Elements whose window is zeroed at once by [`each`]: a few KiB, well inside L1.
const ZEROED_BLOCK: usize = 128;

/// Writes each `N`-byte element of `raw`, comma separated, with `write`, which puts the
/// element's text at the start of the window it is given and returns its length. `out` is grown
/// by `width` (the longest text plus its comma) per element, a block at a time, and trimmed
/// after: appending each text instead (a `memcpy` call of its length) was a third of float
/// encoding.
fn each<const N: usize>(
    out: &mut Vec<u8>,
    width: usize,
    raw: &[u8],
    mut write: impl FnMut(&mut [u8], [u8; N]) -> usize,
) {
    let (chunks, _) = raw.as_chunks::<N>();
    let mut end = out.len();
    out.reserve(chunks.len() * width + MAX_ELEMENT);
    // The window is zeroed a block at a time, just ahead of the writes: zeroing it all at once
    // streamed megabytes through the cache twice (6 % of float encoding).
    for block in chunks.chunks(ZEROED_BLOCK) {
        out.resize(end + block.len() * width + MAX_ELEMENT, 0);
        for chunk in block {
            // Never taken while `width` bounds every text; a text it misses costs a resize,
            // not a panic.
            if out.len() - end < MAX_ELEMENT {
                out.resize(end + MAX_ELEMENT, 0);
            }
            // Every element is followed by a comma, and the last comma is dropped after the
            // loop: no first-element test per element.
            let window = &mut out[end..end + MAX_ELEMENT];
            let len = write(window, *chunk);
            window[len] = b',';
            end += len + 1;
        }
    }
    if !chunks.is_empty() {
        end -= 1; // the last element's comma
    }
    out.truncate(end);
}

fn put_int(dst: &mut [u8], value: impl itoa::Integer) -> usize {
    put(dst, itoa::Buffer::new().format(value).as_bytes())
}

/// Copies `text` to the start of `dst` and returns its length.
fn put(dst: &mut [u8], text: &[u8]) -> usize {
    copy_short(&mut dst[..text.len()], text);
    text.len()
}

/// `dst.copy_from_slice(src)` for texts of at most 32 bytes, as two overlapping fixed-size
/// copies (plain moves) instead of a call to `memcpy`.
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        16..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        8..=15 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::fixed_elements;
    use crate::tensor::DataType;

    fn text(datatype: DataType, raw: &[u8]) -> String {
        let mut out = b"x".to_vec();
        let result = fixed_elements(&mut out, datatype, raw);
        assert!(result.is_ok(), "{datatype}");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn le<const N: usize>(elements: impl IntoIterator<Item = [u8; N]>) -> Vec<u8> {
        elements.into_iter().flatten().collect()
    }

    /// The longest text of each datatype fits the window sized for it, after existing output.
    #[test]
    fn longest_elements_of_each_datatype() {
        let cases: [(DataType, Vec<u8>, &str); 14] = [
            (DataType::Bool, vec![1, 0], "xtrue,false"),
            (DataType::Uint8, vec![255, 0], "x255,0"),
            (DataType::Int8, le([(-128i8).to_le_bytes()]), "x-128"),
            (DataType::Uint16, le([u16::MAX.to_le_bytes()]), "x65535"),
            (DataType::Int16, le([i16::MIN.to_le_bytes()]), "x-32768"),
            (
                DataType::Uint32,
                le([u32::MAX.to_le_bytes()]),
                "x4294967295",
            ),
            (
                DataType::Int32,
                le([i32::MIN.to_le_bytes()]),
                "x-2147483648",
            ),
            (
                DataType::Uint64,
                le([u64::MAX.to_le_bytes()]),
                "x18446744073709551615",
            ),
            (
                DataType::Int64,
                le([i64::MIN, i64::MAX].map(i64::to_le_bytes)),
                "x-9223372036854775808,9223372036854775807",
            ),
            (
                DataType::Fp32,
                le([-1.175_494_4e-38f32, f32::NAN, f32::NEG_INFINITY, 0.5].map(f32::to_le_bytes)),
                "x-1.1754944e-38,NaN,-Infinity,0.5",
            ),
            (
                DataType::Fp32,
                le([-1e12f32, -1e12, -1.234_567_9e-6, -1.234_567_9e-6].map(f32::to_le_bytes)),
                "x-1000000000000.0,-1000000000000.0,-0.0000012345679,-0.0000012345679",
            ),
            (
                DataType::Fp64,
                le([-2.225_073_858_507_201_4e-308, f64::INFINITY].map(f64::to_le_bytes)),
                "x-2.2250738585072014e-308,Infinity",
            ),
            (DataType::Fp16, le([f16::MIN.to_le_bytes()]), "x-65504.0"),
            (
                DataType::Bf16,
                le([bf16::from_f32(-1.5).to_le_bytes()]),
                "x-1.5",
            ),
        ];
        for (datatype, raw, expected) in cases {
            assert_eq!(text(datatype, &raw), expected, "{datatype}");
        }
        assert_eq!(text(DataType::Fp32, &[]), "x");
    }

    /// Floats formatted in place, over several zeroed blocks, read exactly as zmij's own texts.
    #[test]
    fn floats_written_in_place_match_zmij() {
        fn appended<T: Copy>(values: &[T], append: fn(&mut Vec<u8>, T)) -> String {
            let mut out = b"x".to_vec();
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                append(&mut out, v);
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        let f32s: Vec<f32> = (0..3 * super::ZEROED_BLOCK + 7)
            .map(|i| (i as f32 - 100.0).powi(3) / 7e5)
            .chain([f32::MIN_POSITIVE, -f32::MAX, 1e-7, 1.5e13, -0.0, f32::NAN])
            .collect();
        let f64s: Vec<f64> = f32s.iter().map(|&v| f64::from(v) / 3.0).collect();
        assert_eq!(
            text(DataType::Fp32, &le(f32s.iter().map(|v| v.to_le_bytes()))),
            appended(&f32s, super::float32)
        );
        assert_eq!(
            text(DataType::Fp64, &le(f64s.iter().map(|v| v.to_le_bytes()))),
            appended(&f64s, super::float64)
        );
    }

    /// Every FP16 and BF16 value, and FP32 values across the plain-decimal range, fit the width.
    #[test]
    fn no_float_text_exceeds_its_width() {
        let width = super::element_width(DataType::Fp32);
        let longest = |raw: &[u8], datatype| {
            let mut out = Vec::new();
            assert!(fixed_elements(&mut out, datatype, raw).is_ok());
            out.split(|&b| b == b',').map(<[u8]>::len).max()
        };
        let halves: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        for datatype in [DataType::Fp16, DataType::Bf16] {
            assert!(longest(&halves, datatype) < Some(width), "{datatype}");
        }
        // Negative values with 9 significant digits, from 1e-7 to 1e14.
        let floats: Vec<u8> = (-7..=14)
            .flat_map(|e| {
                (0..2000).map(move |i| -(1.234_567_8 + f64::from(i) * 1e-7) * 10f64.powi(e))
            })
            .flat_map(|v| (v as f32).to_le_bytes())
            .collect();
        assert_eq!(longest(&floats, DataType::Fp32), Some(width - 1));
    }
}
