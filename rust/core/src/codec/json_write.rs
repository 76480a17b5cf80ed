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
    ($name:ident, $ty:ty) => {
        pub fn $name(out: &mut Vec<u8>, value: $ty) {
            if value.is_finite() {
                out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
            } else if value.is_nan() {
                out.extend_from_slice(b"NaN");
            } else if value > 0.0 {
                out.extend_from_slice(b"Infinity");
            } else {
                out.extend_from_slice(b"-Infinity");
            }
        }
    };
}

float_writer!(float32, f32);
float_writer!(float64, f64);

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
    let per_element = match tensor.datatype() {
        DataType::Bool => 6,
        DataType::Uint8 => 4,
        DataType::Int8 => 5,
        DataType::Uint16 => 6,
        DataType::Int16 => 7,
        DataType::Uint32 => 11,
        DataType::Int32 => 12,
        DataType::Uint64 | DataType::Int64 => 21,
        DataType::Fp16 | DataType::Bf16 | DataType::Fp32 => 16,
        DataType::Fp64 => 25,
        DataType::Bytes => return tensor.data().len() * 6 + 2,
    };
    tensor.element_count().saturating_mul(per_element) + 2
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
    match datatype {
        DataType::Bool => each(out, raw, |out, [b]: [u8; 1]| {
            out.extend_from_slice(if b != 0 { b"true" } else { b"false" });
        }),
        DataType::Uint8 => each(out, raw, |out, b: [u8; 1]| int(out, u8::from_le_bytes(b))),
        DataType::Uint16 => each(out, raw, |out, b| int(out, u16::from_le_bytes(b))),
        DataType::Uint32 => each(out, raw, |out, b| int(out, u32::from_le_bytes(b))),
        DataType::Uint64 => each(out, raw, |out, b| int(out, u64::from_le_bytes(b))),
        DataType::Int8 => each(out, raw, |out, b| int(out, i8::from_le_bytes(b))),
        DataType::Int16 => each(out, raw, |out, b| int(out, i16::from_le_bytes(b))),
        DataType::Int32 => each(out, raw, |out, b| int(out, i32::from_le_bytes(b))),
        DataType::Int64 => each(out, raw, |out, b| int(out, i64::from_le_bytes(b))),
        DataType::Fp16 => each(out, raw, |out, b| {
            float32(out, f16::from_le_bytes(b).to_f32())
        }),
        DataType::Bf16 => each(out, raw, |out, b| {
            float32(out, bf16::from_le_bytes(b).to_f32())
        }),
        DataType::Fp32 => each(out, raw, |out, b| float32(out, f32::from_le_bytes(b))),
        DataType::Fp64 => each(out, raw, |out, b| float64(out, f64::from_le_bytes(b))),
        DataType::Bytes => {
            return Err(Error::internal("BYTES elements have no fixed size"));
        }
    }
    Ok(())
}

/// Writes each `N`-byte element of `raw`, comma separated.
fn each<const N: usize>(
    out: &mut Vec<u8>,
    raw: &[u8],
    mut write: impl FnMut(&mut Vec<u8>, [u8; N]),
) {
    let (chunks, _) = raw.as_chunks::<N>();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, *chunk);
    }
}
