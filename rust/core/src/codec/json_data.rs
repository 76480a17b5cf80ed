//! Tensor `data` from JSON text: one pass over nested or flat arrays (row-major), each element
//! parsed straight into the raw little-endian form. Numbers are parsed with `fast-float2` in the
//! tensor's own width (an FP32 never goes through f64, which can round twice), so the text is
//! read once; the document parser hands over the `data` value and takes back after it.
//!
//! Numbers follow JSON's grammar plus the tokens `NaN`, `Infinity` and `-Infinity`; like most
//! fast parsers it also accepts leading zeros and a bare trailing `.` in a number.

use bytes::BufMut;
use jiter::Jiter;

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
    fn fast_path(text: &[u8]) -> Option<(Self, usize)> {
        fast_f32(text)
    }
}

/// Exact powers of ten in f64 (10^22 is the largest).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The f64 nearest to each negative power of ten, 10^-0 to 10^-22.
const NEG_POW10: [f64; 23] = [
    1e-0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22,
];

/// Clinger's fast path through f64, for FP32 text of at most 19 digits and a decimal exponent
/// within ±22. The mantissa and 10^k are exact in f64, so `mantissa * 10^k` is the correctly
/// rounded f64; for 10^-k, multiplying by the nearest f64 of 10^-k (a division was a quarter of
/// the parse) lands within 2 f64 ulps of the true value. Rounding that f64 to f32 gives the
/// correctly rounded f32 unless an f32 rounding boundary (a midpoint between two f32s, which an
/// f64 can hold exactly) lies within those ulps: such values are left to fast-float.
/// Shortest-form FP32 text (8 or 9 digits) misses fast-float's own f32 fast path.
fn fast_f32(text: &[u8]) -> Option<(f32, usize)> {
    let negative = text.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut mantissa = 0u64;
    let mut digits = 0usize;
    let mut take_digits = |i: &mut usize| -> Option<usize> {
        let start = *i;
        while let Some(&d) = text.get(*i).filter(|d| d.is_ascii_digit()) {
            digits += 1;
            if digits > 19 {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(d - b'0');
            *i += 1;
        }
        Some(*i - start)
    };
    if take_digits(&mut i)? == 0 {
        return None;
    }
    let mut exponent = 0i32;
    if text.get(i) == Some(&b'.') {
        i += 1;
        let fraction = take_digits(&mut i)?;
        if fraction == 0 {
            return None;
        }
        exponent = -i32::try_from(fraction).ok()?;
    }
    if let Some(b'e' | b'E') = text.get(i) {
        i += 1;
        let sign = match text.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let start = i;
        let mut value = 0i32;
        while let Some(&d) = text.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start == 3 {
                return None;
            }
            value = value * 10 + i32::from(d - b'0');
            i += 1;
        }
        if i == start {
            return None;
        }
        exponent += sign * value;
    }
    if mantissa > 1 << 53 {
        return None;
    }
    let power = usize::try_from(exponent.unsigned_abs()).ok()?;
    #[allow(clippy::cast_precision_loss)] // mantissa <= 2^53 is exact in f64
    let wide = if exponent >= 0 {
        mantissa as f64 * *POW10.get(power)?
    } else {
        mantissa as f64 * *NEG_POW10.get(power)?
    };
    // Below f32's 24 bits an f64 keeps 29 more: a midpoint is exactly 1 then zeros there.
    let below = i64::try_from(wide.to_bits() & ((1 << 29) - 1)).ok()?;
    if (below - (1 << 28)).abs() <= 2 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // the rounding to f32 is the point
    let narrow = wide as f32;
    Some((if negative { -narrow } else { narrow }, i))
}

impl FloatWidth for f64 {
    const NAME: &'static str = "FP64";
    fn put(self, out: &mut Vec<u8>) {
        out.put_f64_le(self);
    }
}

impl<T: FloatWidth> Element for Float<T> {
    const SIZE: usize = std::mem::size_of::<T>();

    fn parse(text: &[u8], out: &mut Vec<u8>, _: &Limits) -> Result<usize> {
        let (value, used) = match text {
            [b'N', ..] if text.starts_with(b"NaN") => (T::NAN, 3),
            [b'I', ..] if text.starts_with(b"Infinity") => (T::INFINITY, 8),
            [b'-', b'I', ..] if text.starts_with(b"-Infinity") => (T::NEG_INFINITY, 9),
            // JSON numbers start with a digit, or a minus then a digit.
            [b'0'..=b'9', ..] | [b'-', b'0'..=b'9', ..] => match T::fast_path(text) {
                Some(parsed) => parsed,
                None => fast_float2::parse_partial(text).map_err(|_| {
                    Error::bad_request(format!("value {} is not a valid {}", token(text), T::NAME))
                })?,
            },
            _ => return Err(unexpected(text, 0, &format!("a number for {}", T::NAME))),
        };
        value.put(out);
        Ok(used)
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
        return Err(unexpected(text, 0, &format!("an integer for {name}")));
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
    use proptest::prelude::*;

    use super::fast_f32;

    /// fast-float parses straight to f32, correctly rounded: the reference.
    fn reference(text: &str) -> f32 {
        fast_float2::parse(text).unwrap()
    }

    fn same(text: &str) {
        for whole in [text.to_owned(), format!("{text},12345678]")] {
            if let Some((value, used)) = fast_f32(whole.as_bytes()) {
                assert_eq!(used, text.len(), "{whole}");
                assert_eq!(value.to_bits(), reference(text).to_bits(), "{whole}");
            }
        }
    }

    #[test]
    fn midpoints_and_edges_match_fast_float() {
        // 2^24 + 1 lies exactly between two f32s: must round to even, not be rounded twice.
        for text in [
            "16777217",
            "16777219",
            "-0.0",
            "0",
            "9007199254740993",
            "1e22",
            "1e-22",
            "3.4028235e+38",
        ] {
            same(text);
        }
        assert!(fast_f32(b"16777217").is_none());
        // Typical shortest-form FP32 text takes the fast path.
        for text in ["-0.12345678", "1.3274328", "0.99915266", "2.5e+10", "1e-7"] {
            assert!(fast_f32(text.as_bytes()).is_some(), "{text}");
            same(text);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        #[test]
        fn decimal_text_matches_fast_float(
            mantissa in 0u64..(1 << 53),
            exponent in -25i32..25,
            negative in any::<bool>(),
            split in 0usize..20,
        ) {
            let digits = mantissa.to_string();
            let sign = if negative { "-" } else { "" };
            // Both with an exponent and with a decimal point inside the digits.
            same(&format!("{sign}{digits}e{exponent}"));
            let point = split.min(digits.len() - 1).max(1);
            if point < digits.len() {
                same(&format!("{sign}{}.{}", &digits[..point], &digits[point..]));
            }
        }

        #[test]
        fn text_near_f32_midpoints_matches_fast_float(x in 1e-6f32..1e6, digits in 9usize..=16) {
            // Decimal text within a few f64 ulps of the point where f32 rounding flips.
            let next = f32::from_bits(x.to_bits() + 1);
            let midpoint = (f64::from(x) + f64::from(next)) / 2.0;
            same(&format!("{:.*e}", digits - 1, midpoint));
        }

        #[test]
        fn shortest_f32_text_round_trips(bits in any::<u32>()) {
            let value = f32::from_bits(bits);
            prop_assume!(value.is_finite());
            let text = zmij::Buffer::new().format_finite(value).to_owned();
            if let Some((parsed, _)) = fast_f32(text.as_bytes()) {
                prop_assert_eq!(parsed.to_bits(), value.to_bits(), "{}", text);
            }
        }
    }
}
