//! Reading JSON with `jiter`'s pull parser: parameters, and tensor `data` parsed straight into
//! little-endian typed buffers with no intermediate JSON value.

use jiter::{Jiter, JiterError, Peek};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::tensor::{Parameter, Parameters, bytes_elements};

/// A pull parser over untrusted JSON that accepts `NaN`, `Infinity` and `-Infinity`.
pub fn parser(json: &[u8]) -> Jiter<'_> {
    Jiter::new(json).with_allow_inf_nan()
}

/// A syntax error. Its position is left out: after [`Reader::skip`] jiter counts from the
/// skipped-to point, so its index would mislead.
pub fn syntax(e: JiterError) -> Error {
    Error::bad_request(format!("invalid JSON: {}", e.error_type))
}

/// A jiter parser over a whole document that can also jump ahead, so a hand-written scanner
/// (tensor data, [`super::json_data`]) can take over for one value and hand back.
pub struct Reader<'j> {
    json: &'j [u8],
    base: usize,
    jiter: Jiter<'j>,
}

impl<'j> Reader<'j> {
    pub fn new(json: &'j [u8]) -> Self {
        Self {
            json,
            base: 0,
            jiter: parser(json),
        }
    }

    /// The text from the parser's position to the end of the document.
    pub fn rest(&self) -> &'j [u8] {
        self.json
            .get(self.base + self.jiter.current_index()..)
            .unwrap_or_default()
    }

    /// Moves the parser `n` bytes past its position.
    pub fn skip(&mut self, n: usize) {
        self.base = (self.base + self.jiter.current_index() + n).min(self.json.len());
        self.jiter = parser(&self.json[self.base..]);
    }

    /// Skips the next value and returns its text.
    pub fn skip_value(&mut self) -> Result<&'j [u8]> {
        let rest = self.rest();
        let start = self.jiter.current_index();
        self.jiter.next_skip().map_err(syntax)?;
        Ok(&rest[..self.jiter.current_index() - start])
    }
}

impl<'j> std::ops::Deref for Reader<'j> {
    type Target = Jiter<'j>;

    fn deref(&self) -> &Jiter<'j> {
        &self.jiter
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.jiter
    }
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
