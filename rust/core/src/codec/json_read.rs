//! Reading JSON with `jiter`'s pull parser: parameters, and tensor `data` parsed straight into
//! little-endian typed buffers with no intermediate JSON value.

use bytes::BufMut;
use jiter::{Jiter, JiterError, Peek};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::tensor::{DataType, Parameter, Parameters, bytes_elements};

/// A pull parser over untrusted JSON that accepts `NaN`, `Infinity` and `-Infinity`.
pub fn parser(json: &[u8]) -> Jiter<'_> {
    Jiter::new(json).with_allow_inf_nan()
}

pub fn syntax(e: JiterError) -> Error {
    Error::bad_request(format!("invalid JSON: {e}"))
}

/// Reads an optional value: `null` means absent.
pub fn optional<T>(
    jiter: &mut Jiter<'_>,
    read: impl FnOnce(&mut Jiter<'_>, Peek) -> Result<T>,
) -> Result<Option<T>> {
    match jiter.peek().map_err(syntax)? {
        Peek::Null => jiter.known_null().map(|()| None).map_err(syntax),
        peek => read(jiter, peek).map(Some),
    }
}

pub fn next_string(jiter: &mut Jiter<'_>) -> Result<String> {
    let peek = jiter.peek().map_err(syntax)?;
    string(jiter, peek)
}

pub fn string(jiter: &mut Jiter<'_>, peek: Peek) -> Result<String> {
    if peek != Peek::String {
        return Err(Error::bad_request("expected a string"));
    }
    jiter.known_str().map(str::to_owned).map_err(syntax)
}

/// Reads an object of parameters: string, number and boolean values.
pub fn parameters(jiter: &mut Jiter<'_>, peek: Peek) -> Result<Parameters> {
    if peek != Peek::Object {
        return Err(Error::bad_request("parameters must be an object"));
    }
    let mut parameters = Parameters::new();
    let mut key = jiter.known_object().map_err(syntax)?.map(str::to_owned);
    while let Some(name) = key {
        let value = parameter(jiter).map_err(|e| e.context(format_args!("parameter '{name}'")))?;
        parameters.insert(name, value);
        key = jiter.next_key().map_err(syntax)?.map(str::to_owned);
    }
    Ok(parameters)
}

fn parameter(jiter: &mut Jiter<'_>) -> Result<Parameter> {
    let peek = jiter.peek().map_err(syntax)?;
    match peek {
        Peek::True | Peek::False => jiter.known_bool(peek).map(Parameter::Bool).map_err(syntax),
        Peek::String => string(jiter, peek).map(Parameter::String),
        _ if peek.is_num() => number_parameter(jiter.known_number_bytes(peek).map_err(syntax)?),
        _ => Err(Error::bad_request(
            "value must be a string, number or boolean",
        )),
    }
}

fn number_parameter(text: &[u8]) -> Result<Parameter> {
    let text = std::str::from_utf8(text).map_err(|_| Error::bad_request("invalid number"))?;
    if let Ok(v) = text.parse::<i64>() {
        return Ok(Parameter::Int64(v));
    }
    if let Ok(v) = text.parse::<u64>() {
        return Ok(Parameter::Uint64(v));
    }
    text.parse::<f64>()
        .map(Parameter::Double)
        .map_err(|_| Error::bad_request(format!("invalid number {text}")))
}

/// Parses tensor `data` (nested or flat arrays, row-major) of `datatype` into raw
/// little-endian bytes holding exactly `count` elements.
///
/// `json_len` bounds the up-front allocation: every element takes at least one byte of JSON, so
/// a shape that claims more elements than the text can hold never reserves memory for them.
pub fn data(
    jiter: &mut Jiter<'_>,
    datatype: DataType,
    count: usize,
    json_len: usize,
    limits: &Limits,
) -> Result<Vec<u8>> {
    let reserve = count
        .min(json_len / 2 + 1)
        .saturating_mul(datatype.element_size().unwrap_or(8));
    let mut out = DataSink {
        out: Vec::with_capacity(reserve),
        count: 0,
        max: count,
    };
    let peek = jiter.peek().map_err(syntax)?;
    match datatype {
        DataType::Bool => out.read::<BoolElement>(jiter, peek, limits)?,
        DataType::Uint8 => out.read::<IntElement<u8>>(jiter, peek, limits)?,
        DataType::Uint16 => out.read::<IntElement<u16>>(jiter, peek, limits)?,
        DataType::Uint32 => out.read::<IntElement<u32>>(jiter, peek, limits)?,
        DataType::Uint64 => out.read::<U64Element>(jiter, peek, limits)?,
        DataType::Int8 => out.read::<IntElement<i8>>(jiter, peek, limits)?,
        DataType::Int16 => out.read::<IntElement<i16>>(jiter, peek, limits)?,
        DataType::Int32 => out.read::<IntElement<i32>>(jiter, peek, limits)?,
        DataType::Int64 => out.read::<IntElement<i64>>(jiter, peek, limits)?,
        DataType::Fp32 => out.read::<F32Element>(jiter, peek, limits)?,
        DataType::Fp64 => out.read::<F64Element>(jiter, peek, limits)?,
        DataType::Bytes => out.read::<BytesElement>(jiter, peek, limits)?,
        DataType::Fp16 | DataType::Bf16 => {
            return Err(Error::bad_request(format!(
                "{datatype} data cannot be sent as JSON; use the binary tensor extension"
            )));
        }
    }
    if out.count != count {
        return Err(Error::bad_request(format!(
            "needs {count} elements, got {}",
            out.count
        )));
    }
    Ok(out.out)
}

struct DataSink {
    out: Vec<u8>,
    count: usize,
    max: usize,
}

impl DataSink {
    /// Reads one value: an element, or arrays of values (flattened). Iterative, so nesting depth
    /// costs no stack: flattening needs only the current depth, not per-level state.
    fn read<E: Element>(
        &mut self,
        jiter: &mut Jiter<'_>,
        first: Peek,
        limits: &Limits,
    ) -> Result<()> {
        let mut depth = 0usize;
        let mut peek = Some(first);
        loop {
            match peek {
                Some(Peek::Array) => {
                    depth += 1;
                    if depth > limits.max_json_depth {
                        return Err(Error::bad_request(format!(
                            "data is nested deeper than the limit of {}",
                            limits.max_json_depth
                        )));
                    }
                    peek = jiter.known_array().map_err(syntax)?;
                    continue;
                }
                Some(element) => self.element::<E>(jiter, element, limits)?,
                // `known_array`/`array_step` found the end of an array.
                None => depth -= 1,
            }
            if depth == 0 {
                return Ok(());
            }
            peek = jiter.array_step().map_err(syntax)?;
        }
    }

    fn element<E: Element>(
        &mut self,
        jiter: &mut Jiter<'_>,
        peek: Peek,
        limits: &Limits,
    ) -> Result<()> {
        if self.count == self.max {
            return Err(Error::bad_request(format!(
                "needs {} elements, got more",
                self.max
            )));
        }
        self.count += 1;
        E::read(jiter, peek, &mut self.out, limits)
    }
}

/// One element type's JSON reader, writing the raw little-endian form.
trait Element {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, limits: &Limits) -> Result<()>;
}

struct BoolElement;

impl Element for BoolElement {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, _: &Limits) -> Result<()> {
        let value = jiter.known_bool(peek).map_err(syntax)?;
        out.push(u8::from(value));
        Ok(())
    }
}

struct IntElement<T>(std::marker::PhantomData<T>);

/// Integer types of at most 64 bits that fit in an i64 (all but UINT64).
trait SmallInt: TryFrom<i64> + Sized {
    const NAME: &'static str;
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! small_int {
    ($($ty:ty => $name:literal),*) => {$(
        impl SmallInt for $ty {
            const NAME: &'static str = $name;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

small_int!(u8 => "UINT8", u16 => "UINT16", u32 => "UINT32", i8 => "INT8", i16 => "INT16",
    i32 => "INT32", i64 => "INT64");

impl<T: SmallInt> Element for IntElement<T> {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, _: &Limits) -> Result<()> {
        // Parsed from the text: without its big-int feature jiter's integer reader rejects every
        // 19-digit number, i64::MIN and i64::MAX included.
        let text = jiter.known_number_bytes(peek).map_err(syntax)?;
        let value = std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "value {} is not an integer in the range of {}",
                    String::from_utf8_lossy(text),
                    T::NAME
                ))
            })?;
        let value = T::try_from(value).map_err(|_| {
            Error::bad_request(format!("value {value} is out of range for {}", T::NAME))
        })?;
        value.put(out);
        Ok(())
    }
}

struct U64Element;

impl Element for U64Element {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, _: &Limits) -> Result<()> {
        let text = jiter.known_number_bytes(peek).map_err(syntax)?;
        let value = std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "value {} is not a UINT64",
                    String::from_utf8_lossy(text)
                ))
            })?;
        out.put_u64_le(value);
        Ok(())
    }
}

struct F32Element;

impl Element for F32Element {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, _: &Limits) -> Result<()> {
        // Parsed from the text in f32 directly: going through f64 can round twice.
        let text = jiter.known_number_bytes(peek).map_err(syntax)?;
        let value: f32 =
            fast_float2::parse(text).map_err(|_| Error::bad_request("invalid FP32 number"))?;
        out.put_f32_le(value);
        Ok(())
    }
}

struct F64Element;

impl Element for F64Element {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, _: &Limits) -> Result<()> {
        out.put_f64_le(jiter.known_float(peek).map_err(syntax)?);
        Ok(())
    }
}

struct BytesElement;

impl Element for BytesElement {
    fn read(jiter: &mut Jiter<'_>, peek: Peek, out: &mut Vec<u8>, limits: &Limits) -> Result<()> {
        if peek != Peek::String {
            return Err(Error::bad_request("BYTES elements must be JSON strings"));
        }
        let text = jiter.known_str().map_err(syntax)?;
        bytes_element(out, text.as_bytes(), limits)
    }
}

/// Appends one BYTES element in raw form after checking its length against the limit.
pub fn bytes_element(out: &mut Vec<u8>, element: &[u8], limits: &Limits) -> Result<()> {
    check_bytes_len(element.len(), limits)?;
    bytes_elements::push(out, element)
}

/// Checks the length of one BYTES element against `limits.max_bytes_element_len`.
pub fn check_bytes_len(len: usize, limits: &Limits) -> Result<()> {
    if len > limits.max_bytes_element_len {
        return Err(Error::bad_request(format!(
            "BYTES element is {len} bytes, over the limit of {}",
            limits.max_bytes_element_len
        )));
    }
    Ok(())
}
