//! Tensor `data` from JSON text: one pass over nested or flat arrays (row-major), each element
//! parsed straight into the raw little-endian form. Numbers are parsed in the tensor's own width
//! (FP32 by [`super::json_float`], else `fast-float2`: never through a wider type that could round
//! twice), so the text is read once; the document parser hands over the `data` value and takes
//! back after it.
//!
//! Numbers follow JSON's grammar plus the tokens `NaN`, `Infinity` and `-Infinity`; like most
//! fast parsers it also accepts leading zeros and a bare trailing `.` in a number.

use bytes::BufMut;
use jiter::Jiter;

use super::json_float::fast_f32;
use super::json_read::{bytes_element, syntax};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::tensor::DataType;

/// Parses the value at the start of `text` (after optional whitespace) as `count` elements of
/// `datatype`, and returns them with the number of bytes of `text` consumed.
///
/// Every element takes at least one byte of text, so a shape that claims more elements than the
/// text can hold never reserves memory for them.
pub fn parse(
    text: &[u8],
    datatype: DataType,
    count: usize,
    limits: &Limits,
) -> Result<(Vec<u8>, usize)> {
    match datatype {
        DataType::Bool => scan::<Bool>(text, count, limits),
        DataType::Uint8 => scan::<Int<u8>>(text, count, limits),
        DataType::Uint16 => scan::<Int<u16>>(text, count, limits),
        DataType::Uint32 => scan::<Int<u32>>(text, count, limits),
        DataType::Uint64 => scan::<Uint64>(text, count, limits),
        DataType::Int8 => scan::<Int<i8>>(text, count, limits),
        DataType::Int16 => scan::<Int<i16>>(text, count, limits),
        DataType::Int32 => scan::<Int<i32>>(text, count, limits),
        DataType::Int64 => scan::<Int<i64>>(text, count, limits),
        DataType::Fp32 => scan::<Float<f32>>(text, count, limits),
        DataType::Fp64 => scan::<Float<f64>>(text, count, limits),
        DataType::Bytes => scan::<Text>(text, count, limits),
        DataType::Fp16 | DataType::Bf16 => Err(Error::bad_request(format!(
            "{datatype} data cannot be sent as JSON; use the binary tensor extension"
        ))),
    }
}

fn skip_whitespace(text: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(pos) {
        pos += 1;
    }
    pos
}

/// The scanner. Flattening needs only the current depth, not per-level state, so nesting costs
/// no stack whatever the depth limit.
fn scan<E: Element>(text: &[u8], count: usize, limits: &Limits) -> Result<(Vec<u8>, usize)> {
    let reserve = count.min(text.len() / 2 + 1).saturating_mul(E::SIZE);
    let mut out = Vec::with_capacity(reserve);
    let mut seen = 0usize;
    let mut depth = 0usize;
    let mut pos = skip_whitespace(text, 0);
    loop {
        // A value starts at `pos`: an array, or an element.
        if text.get(pos) == Some(&b'[') {
            depth += 1;
            if depth > limits.max_json_depth {
                return Err(Error::bad_request(format!(
                    "data is nested deeper than the limit of {}",
                    limits.max_json_depth
                )));
            }
            pos = skip_whitespace(text, pos + 1);
            if text.get(pos) != Some(&b']') {
                continue;
            }
            // An empty array closes at once, below.
        } else {
            if seen == count {
                return Err(Error::bad_request(format!(
                    "needs {count} elements, got more"
                )));
            }
            seen += 1;
            pos += E::parse(&text[pos..], &mut out, limits)?;
            // Elements separated by a bare comma, as encoders write them, go round this loop
            // alone; whitespace, nesting and the end of an array take the general path below.
            while depth > 0 && seen < count && text.get(pos) == Some(&b',') {
                let next = pos + 1;
                if matches!(
                    text.get(next),
                    Some(b'[' | b' ' | b'\t' | b'\n' | b'\r') | None
                ) {
                    break;
                }
                seen += 1;
                pos = next + E::parse(&text[next..], &mut out, limits)?;
            }
            pos = skip_whitespace(text, pos);
            if depth == 0 {
                return finish(out, seen, count, pos);
            }
        }
        // After a value inside an array: `,` and the next value, or `]` closing one level.
        loop {
            match text.get(pos) {
                Some(b',') => {
                    pos = skip_whitespace(text, pos + 1);
                    break;
                }
                Some(b']') => {
                    depth -= 1;
                    pos = skip_whitespace(text, pos + 1);
                    if depth == 0 {
                        return finish(out, seen, count, pos);
                    }
                }
                _ => return Err(unexpected(text, pos, "',' or ']'")),
            }
        }
    }
}

fn finish(out: Vec<u8>, seen: usize, count: usize, pos: usize) -> Result<(Vec<u8>, usize)> {
    if seen == count {
        Ok((out, pos))
    } else {
        Err(Error::bad_request(format!(
            "needs {count} elements, got {seen}"
        )))
    }
}

/// An element that is not of the tensor's type. A JSON value of another type (a string where a
/// number belongs, say) is a type error, not malformed text, and is named as such.
fn unexpected_element(text: &[u8], expected: &str) -> Error {
    let found = match text.first() {
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'{') => "an object",
        _ => return unexpected(text, 0, expected),
    };
    Error::bad_request(format!("expected {expected} in data, found {found}"))
}

fn unexpected(text: &[u8], pos: usize, expected: &str) -> Error {
    match text.get(pos) {
        Some(&b) if b.is_ascii_graphic() => Error::bad_request(format!(
            "invalid JSON: expected {expected} in data, found '{}'",
            char::from(b)
        )),
        Some(&b) => Error::bad_request(format!(
            "invalid JSON: expected {expected} in data, found byte 0x{b:02x}"
        )),
        None => Error::bad_request(format!(
            "invalid JSON: data ends where {expected} was expected"
        )),
    }
}

/// The text of the number-like token at the start of `text`, for messages.
fn token(text: &[u8]) -> String {
    let end = text
        .iter()
        .take(40)
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-')))
        .unwrap_or(text.len().min(40));
    String::from_utf8_lossy(&text[..end]).into_owned()
}

/// One element type: parses one element at the start of `text` into `out`, returning the
/// number of bytes it took.
trait Element {
    /// Bytes per element in `out`, to size the buffer once.
    const SIZE: usize;
    fn parse(text: &[u8], out: &mut Vec<u8>, limits: &Limits) -> Result<usize>;
}

struct Bool;

impl Element for Bool {
    const SIZE: usize = 1;

    fn parse(text: &[u8], out: &mut Vec<u8>, _: &Limits) -> Result<usize> {
        if text.starts_with(b"true") {
            out.push(1);
            Ok(4)
        } else if text.starts_with(b"false") {
            out.push(0);
            Ok(5)
        } else {
            Err(unexpected(text, 0, "true or false for BOOL"))
        }
    }
}

struct Float<T>(std::marker::PhantomData<T>);

/// Float widths parsed from text in their own precision.
trait FloatWidth: fast_float2::FastFloat {
    const NAME: &'static str;
    fn put(self, out: &mut Vec<u8>);
    /// A cheaper parse for the common case, or `None` to let fast-float decide.
    fn fast_path(_text: &[u8]) -> Option<(Self, usize)> {
        None
    }
}

impl FloatWidth for f32 {
    const NAME: &'static str = "FP32";
    fn put(self, out: &mut Vec<u8>) {
        out.put_f32_le(self);
    }
    #[inline(always)]
    fn fast_path(text: &[u8]) -> Option<(Self, usize)> {
        fast_f32(text)
    }
}

impl FloatWidth for f64 {
    const NAME: &'static str = "FP64";
    fn put(self, out: &mut Vec<u8>) {
        out.put_f64_le(self);
    }
}

impl<T: FloatWidth> Element for Float<T> {
    const SIZE: usize = std::mem::size_of::<T>();

    #[inline(always)]
    fn parse(text: &[u8], out: &mut Vec<u8>, _: &Limits) -> Result<usize> {
        // The fast path first: it rejects anything else in a few instructions, where matching
        // on the first byte would branch on the sign of every number.
        let (value, used) = match T::fast_path(text) {
            Some(parsed) => parsed,
            None => Self::slow_path(text)?,
        };
        value.put(out);
        Ok(used)
    }
}

impl<T: FloatWidth> Float<T> {
    fn slow_path(text: &[u8]) -> Result<(T, usize)> {
        Ok(match text {
            [b'N', ..] if text.starts_with(b"NaN") => (T::NAN, 3),
            [b'I', ..] if text.starts_with(b"Infinity") => (T::INFINITY, 8),
            [b'-', b'I', ..] if text.starts_with(b"-Infinity") => (T::NEG_INFINITY, 9),
            // JSON numbers start with a digit, or a minus then a digit.
            [b'0'..=b'9', ..] | [b'-', b'0'..=b'9', ..] => fast_float2::parse_partial(text)
                .map_err(|_| {
                    Error::bad_request(format!("value {} is not a valid {}", token(text), T::NAME))
                })?,
            _ => {
                return Err(unexpected_element(
                    text,
                    &format!("a number for {}", T::NAME),
                ));
            }
        })
    }
}

/// Splits an integer token (`-?[0-9]+`) off `text`: its value and length. Fractions, exponents
/// and out-of-range values are errors naming `name`.
fn integer(text: &[u8], name: &str) -> Result<(i128, usize)> {
    let negative = text.first() == Some(&b'-');
    let digits_start = usize::from(negative);
    let digits = text[digits_start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = digits_start + digits;
    if digits == 0 && !matches!(text.first(), Some(b'-' | b'N' | b'I')) {
        return Err(unexpected_element(text, &format!("an integer for {name}")));
    }
    let fraction = matches!(text.get(end), Some(b'.' | b'e' | b'E'));
    // 39 digits always fit in an i128 (and anything longer is out of every range anyway).
    let magnitude = (digits > 0 && digits < 39 && !fraction)
        .then(|| {
            text[digits_start..end]
                .iter()
                .fold(0i128, |acc, &d| acc * 10 + i128::from(d - b'0'))
        })
        .ok_or_else(|| {
            Error::bad_request(format!(
                "value {} is not an integer in the range of {name}",
                token(text)
            ))
        })?;
    Ok((if negative { -magnitude } else { magnitude }, end))
}

struct Int<T>(std::marker::PhantomData<T>);

/// Integer types of at most 64 bits whose range fits in an i64 (all but UINT64).
trait IntWidth: TryFrom<i128> + Sized {
    const NAME: &'static str;
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! int_width {
    ($($ty:ty => $name:literal),*) => {$(
        impl IntWidth for $ty {
            const NAME: &'static str = $name;
            const SIZE: usize = std::mem::size_of::<$ty>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

int_width!(u8 => "UINT8", u16 => "UINT16", u32 => "UINT32", i8 => "INT8", i16 => "INT16",
    i32 => "INT32", i64 => "INT64");

impl<T: IntWidth> Element for Int<T> {
    const SIZE: usize = T::SIZE;

    fn parse(text: &[u8], out: &mut Vec<u8>, _: &Limits) -> Result<usize> {
        let (value, used) = integer(text, T::NAME)?;
        let value = T::try_from(value).map_err(|_| {
            // i64 keeps the message of the wider check: anything outside i64 is "not an integer
            // in the range", as for 19+ digit values.
            if T::NAME == "INT64" {
                Error::bad_request(format!(
                    "value {value} is not an integer in the range of INT64"
                ))
            } else {
                Error::bad_request(format!("value {value} is out of range for {}", T::NAME))
            }
        })?;
        value.put(out);
        Ok(used)
    }
}

struct Uint64;

impl Element for Uint64 {
    const SIZE: usize = 8;

    fn parse(text: &[u8], out: &mut Vec<u8>, _: &Limits) -> Result<usize> {
        let not_uint64 = || Error::bad_request(format!("value {} is not a UINT64", token(text)));
        let (value, used) = integer(text, "UINT64").map_err(|_| not_uint64())?;
        out.put_u64_le(u64::try_from(value).map_err(|_| not_uint64())?);
        Ok(used)
    }
}

struct Text;

impl Element for Text {
    const SIZE: usize = 16;

    fn parse(text: &[u8], out: &mut Vec<u8>, limits: &Limits) -> Result<usize> {
        if text.first() != Some(&b'"') {
            return Err(Error::bad_request("BYTES elements must be JSON strings"));
        }
        // Strings need JSON unescaping and UTF-8 checks: jiter does both.
        let mut jiter = Jiter::new(text);
        let element = jiter.next_str().map_err(syntax)?;
        bytes_element(out, element.as_bytes(), limits)?;
        Ok(jiter.current_index())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse;
    use crate::limits::Limits;
    use crate::tensor::DataType;

    fn fp32(text: &str, count: usize) -> Result<(Vec<f32>, usize), String> {
        let (raw, used) = parse(text.as_bytes(), DataType::Fp32, count, &Limits::default())
            .map_err(|error| error.message().to_owned())?;
        let values = raw
            .chunks_exact(4)
            .map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap()))
            .collect();
        Ok((values, used))
    }

    #[test]
    fn fp32_elements_parse_in_any_layout() {
        // Most elements here take the 16-byte reader, the last few (near the end of the text)
        // and those with spaces or exponents the byte reader: both must agree on every form.
        let text = "[[-0.5,1.25, 3.0e2 ,7],\n [NaN,-Infinity,0.000012345678,-1234567.5],\
                    [2.5,0.1,-0.0,1.5 ], [ 3.4028235e+38,16777217.0,00.5,-0.12345678]] ,";
        let (values, used) = fp32(text, 16).unwrap();
        let expected = [
            -0.5,
            1.25,
            300.0,
            7.0,
            f32::NAN,
            f32::NEG_INFINITY,
            0.000_012_345_678,
            -1_234_567.5,
            2.5,
            0.1,
            -0.0,
            1.5,
            f32::MAX,
            16_777_216.0,
            0.5,
            -0.123_456_78,
        ];
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&values), bits(&expected));
        assert_eq!(&text[used..], ",");
    }

    /// Elements separated by a bare comma take a lane of their own; whatever follows a comma
    /// there (whitespace, a nested array, the end of the text, one element too many) must be
    /// read as the general path reads it.
    #[test]
    fn bare_comma_lane_hands_everything_else_to_the_general_path() {
        let ok = |text: &str, count: usize| fp32(text, count).unwrap().0;
        assert_eq!(ok("[1.5,2.5,-3.5]", 3), [1.5, 2.5, -3.5]);
        assert_eq!(ok("[1.5, 2.5,\n3.5 ,4.5]", 4), [1.5, 2.5, 3.5, 4.5]);
        assert_eq!(ok("[[1.5,2.5],[3.5,4.5]]", 4), [1.5, 2.5, 3.5, 4.5]);
        assert_eq!(ok("[1.5,[2.5,3.5]]", 3), [1.5, 2.5, 3.5]);
        for (text, count, message) in [
            ("[1.5,2.5,3.5,4.5]", 3, "needs 3 elements, got more"),
            ("[1.5,2.5]", 3, "needs 3 elements, got 2"),
            (
                "[1.5,2.5,",
                3,
                "invalid JSON: data ends where a number for FP32 was expected",
            ),
            (
                "[1.5,2.5,]",
                3,
                "invalid JSON: expected a number for FP32 in data, found ']'",
            ),
        ] {
            assert_eq!(fp32(text, count).unwrap_err(), message, "{text}");
        }
    }

    #[test]
    fn malformed_fp32_elements_are_rejected_by_name() {
        let padding = ",1.0,2.0,3.0,4.0]";
        for (data, message) in [
            (
                "[1.5.5",
                "invalid JSON: expected ',' or ']' in data, found '.'",
            ),
            (
                "[1.5x",
                "invalid JSON: expected ',' or ']' in data, found 'x'",
            ),
            (
                "[--1.5",
                "invalid JSON: expected a number for FP32 in data, found '-'",
            ),
            (
                "[.5",
                "invalid JSON: expected a number for FP32 in data, found '.'",
            ),
            (
                "[1.5,",
                "invalid JSON: expected a number for FP32 in data, found ','",
            ),
            (
                "[\"1.5\"",
                "expected a number for FP32 in data, found a string",
            ),
            ("[null", "expected a number for FP32 in data, found null"),
            ("[{}", "expected a number for FP32 in data, found an object"),
        ] {
            let text = format!("{data}{padding}");
            assert_eq!(fp32(&text, 5).unwrap_err(), message, "{text}");
        }
    }
}
