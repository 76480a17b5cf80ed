//! Reading V1 JSON into tensors: the row and columnar formats, shape-checked flattening and
//! datatype inference.

use base64::Engine as _;
use bytes::Bytes;
use indexmap::IndexMap;
use indexmap::map::Entry;
use jiter::{Jiter, JiterError, JiterErrorType, JsonErrorType, Peek};

use crate::codec::json_read;
use crate::error::{Error, Result, ResultExt};
use crate::limits::Limits;
use crate::tensor::{DataType, InferRequest, InferResponse, Parameters, Tensor, element_count};

use super::{B64, B64_DECODE, DEFAULT_INPUT_NAME, DEFAULT_OUTPUT_NAME};

/// Decodes a V1 request body (`instances` or `inputs`) into V2 input tensors.
pub fn decode_request(body: &[u8], limits: &Limits) -> Result<InferRequest> {
    check_size(body, limits)?;
    // The single pass reports the first rule it meets, which for a truncated body can be a
    // tensor rule; a body that is not JSON at all gets KServe's "Unrecognized" answer instead.
    read_request(body, limits).map_err(|error| syntax_error(body).unwrap_or(error))
}

/// The syntax error of a body that is not one JSON document, if it is not. Nesting past the
/// parser's own limit is not a syntax error: the decoder's depth limit answers for it.
fn syntax_error(body: &[u8]) -> Option<Error> {
    let mut jiter = Jiter::new(body);
    let error = jiter.next_skip().and_then(|()| jiter.finish()).err()?;
    let too_deep = JiterErrorType::JsonError(JsonErrorType::RecursionLimitExceeded);
    (error.error_type != too_deep).then(|| unrecognized(error))
}

fn read_request(body: &[u8], limits: &Limits) -> Result<InferRequest> {
    let mut reader = Reader::new(body, limits, unrecognized);
    let mut inputs = None;
    let mut key = reader.root("Unrecognized request format: the body is not a JSON object")?;
    while let Some(field) = key {
        match field {
            Field::Instances | Field::Inputs if inputs.is_some() => {
                return Err(Error::bad_request(
                    "request has \"instances\" or \"inputs\" more than once; send one of them",
                ));
            }
            Field::Instances => inputs = Some(instances(&mut reader)?),
            Field::Inputs => inputs = Some(columnar(&mut reader, &REQUEST, 1)?),
            _ => reader.jiter.next_skip().map_err(reader.syntax)?,
        }
        key = reader.next_field()?;
    }
    reader.jiter.finish().map_err(reader.syntax)?;
    let inputs = inputs.ok_or_else(|| {
        Error::bad_request("Expected \"instances\" or \"inputs\" in the request body")
    })?;
    let request = InferRequest::new(inputs);
    request.check(limits)?;
    Ok(request)
}

/// Decodes a V1 response body (`predictions`) into V2 output tensors of `model_name`.
pub fn decode_response(body: &[u8], model_name: &str, limits: &Limits) -> Result<InferResponse> {
    check_size(body, limits)?;
    let mut reader = Reader::new(body, limits, json_read::syntax);
    let mut outputs = None;
    let mut key = reader.root("V1 response is not a JSON object")?;
    while let Some(field) = key {
        match field {
            Field::Predictions if outputs.is_some() => {
                return Err(Error::bad_request(
                    "V1 response has \"predictions\" more than once",
                ));
            }
            Field::Predictions => outputs = Some(predictions(&mut reader)?),
            _ => reader.jiter.next_skip().map_err(reader.syntax)?,
        }
        key = reader.next_field()?;
    }
    reader.jiter.finish().map_err(reader.syntax)?;
    let outputs =
        outputs.ok_or_else(|| Error::bad_request("V1 response has no \"predictions\""))?;
    let response = InferResponse {
        model_name: model_name.to_owned(),
        outputs,
        ..InferResponse::default()
    };
    response.check(limits)?;
    Ok(response)
}

fn check_size(body: &[u8], limits: &Limits) -> Result<()> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::too_large(format!(
            "body of {} bytes is over the limit of {}",
            body.len(),
            limits.max_body_bytes
        )));
    }
    Ok(())
}

fn unrecognized(e: JiterError) -> Error {
    Error::bad_request(format!("Unrecognized request format: {e}"))
}

/// How one side of the protocol names its rows and tensors in errors and defaults.
struct Names {
    /// The key of a columnar value: `inputs` or `predictions`.
    columnar: &'static str,
    /// One row: `instance` or `prediction`.
    row: &'static str,
    /// One tensor: `input` or `output`.
    tensor: &'static str,
    /// The name of an unnamed tensor.
    default: &'static str,
}

const REQUEST: Names = Names {
    columnar: "inputs",
    row: "instance",
    tensor: "input",
    default: DEFAULT_INPUT_NAME,
};
const RESPONSE: Names = Names {
    columnar: "predictions",
    row: "prediction",
    tensor: "output",
    default: DEFAULT_OUTPUT_NAME,
};

/// The top-level keys that mean something.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Instances,
    Inputs,
    Predictions,
    Other,
}

impl Field {
    fn of(key: &str) -> Self {
        match key {
            "instances" => Self::Instances,
            "inputs" => Self::Inputs,
            "predictions" => Self::Predictions,
            _ => Self::Other,
        }
    }
}

/// How an object just opened reads.
enum Object {
    /// `{"b64": ...}` with a string value, opened up to that value: one BYTES element.
    B64,
    /// Any other object, with its first key (`None` when empty).
    Keyed(Option<String>),
}

/// The pull parser with the limits and the way JSON syntax errors are reported.
struct Reader<'j> {
    jiter: Jiter<'j>,
    limits: Limits,
    syntax: fn(JiterError) -> Error,
}

impl<'j> Reader<'j> {
    fn new(json: &'j [u8], limits: &Limits, syntax: fn(JiterError) -> Error) -> Self {
        Self {
            jiter: json_read::parser(json),
            limits: *limits,
            syntax,
        }
    }

    fn peek(&mut self) -> Result<Peek> {
        self.jiter.peek().map_err(self.syntax)
    }

    fn step(&mut self) -> Result<Option<Peek>> {
        self.jiter.array_step().map_err(self.syntax)
    }

    /// Opens the root object and returns its first key.
    fn root(&mut self, not_object: &str) -> Result<Option<Field>> {
        if self.peek()? != Peek::Object {
            return Err(Error::bad_request(not_object));
        }
        Ok(self
            .jiter
            .known_object()
            .map_err(self.syntax)?
            .map(Field::of))
    }

    fn next_field(&mut self) -> Result<Option<Field>> {
        Ok(self.jiter.next_key().map_err(self.syntax)?.map(Field::of))
    }

    /// Opens an object at `depth`: a `{"b64": "<string>"}` value (opened up to the string),
    /// or any other object with its first key.
    fn object(&mut self, depth: usize) -> Result<Object> {
        check_depth(depth, &self.limits)?;
        let first = match self.jiter.known_object().map_err(self.syntax)? {
            Some(B64) => None,
            key => Some(key.map(str::to_owned)),
        };
        match first {
            Some(key) => Ok(Object::Keyed(key)),
            None if self.peek()? == Peek::String => Ok(Object::B64),
            None => Ok(Object::Keyed(Some(B64.to_owned()))),
        }
    }

    fn next_key(&mut self) -> Result<Option<String>> {
        Ok(self
            .jiter
            .next_key()
            .map_err(self.syntax)?
            .map(str::to_owned))
    }
}

fn check_depth(depth: usize, limits: &Limits) -> Result<()> {
    if depth > limits.max_json_depth {
        return Err(Error::bad_request(format!(
            "JSON is nested deeper than the limit of {}",
            limits.max_json_depth
        )));
    }
    Ok(())
}

/// `instances`: a non-empty list of rows.
fn instances(reader: &mut Reader<'_>) -> Result<Vec<Tensor>> {
    if reader.peek()? != Peek::Array {
        return Err(Error::bad_request("Expected \"instances\" to be a list"));
    }
    check_depth(2, &reader.limits)?;
    match reader.jiter.known_array().map_err(reader.syntax)? {
        Some(first) => rows(reader, first, &REQUEST, 2),
        None => Err(Error::bad_request("\"instances\" is an empty list")),
    }
}

/// `predictions`: rows when a list, otherwise one columnar value.
fn predictions(reader: &mut Reader<'_>) -> Result<Vec<Tensor>> {
    if reader.peek()? != Peek::Array {
        return columnar(reader, &RESPONSE, 1);
    }
    check_depth(2, &reader.limits)?;
    match reader.jiter.known_array().map_err(reader.syntax)? {
        Some(first) => rows(reader, first, &RESPONSE, 2),
        None => {
            Ok(vec![Column::batched().into_tensor(
                RESPONSE.default.to_owned(),
                &reader.limits,
            )?])
        }
    }
}

/// Reads the rest of a row-format list at `depth` whose first item is `first` (already peeked).
fn rows(reader: &mut Reader<'_>, first: Peek, names: &Names, depth: usize) -> Result<Vec<Tensor>> {
    let mut column = Column::batched();
    if first == Peek::Object {
        match reader.object(depth + 1)? {
            Object::B64 => column
                .b64_row(reader)
                .context_with(|| format!("{} 0", names.row))?,
            Object::Keyed(key) => return read_named_rows(reader, key, names, depth),
        }
    } else {
        column
            .row(reader, first, depth)
            .context_with(|| format!("{} 0", names.row))?;
    }
    while let Some(peek) = reader.step()? {
        let index = column.rows;
        column
            .row(reader, peek, depth)
            .context_with(|| format!("{} {index}", names.row))?;
    }
    Ok(vec![
        column.into_tensor(names.default.to_owned(), &reader.limits)?,
    ])
}

/// Row format whose rows are objects of named tensors. The first row's object is open and its
/// first key is `first_key`.
fn read_named_rows(
    reader: &mut Reader<'_>,
    first_key: Option<String>,
    names: &Names,
    depth: usize,
) -> Result<Vec<Tensor>> {
    let Names { row, tensor, .. } = *names;
    let mut columns: IndexMap<String, Column> = IndexMap::new();
    let mut key = first_key;
    if key.is_none() {
        return Err(Error::bad_request(format!("{row} 0 is an empty object")));
    }
    while let Some(name) = key {
        if columns.len() >= reader.limits.max_tensors {
            return Err(Error::bad_request(format!(
                "{row} 0 has more than {} keys, over the {tensor} limit",
                reader.limits.max_tensors
            )));
        }
        let column = match columns.entry(name.clone()) {
            Entry::Occupied(entry) => {
                return Err(Error::bad_request(format!(
                    "{row} 0 has the key '{}' twice",
                    entry.key()
                )));
            }
            Entry::Vacant(entry) => entry.insert(Column::batched()),
        };
        let peek = reader.peek()?;
        column
            .row(reader, peek, depth + 1)
            .map_err(|e| e.context(format_args!("{row} 0, {tensor} '{name}'")))?;
        key = reader.next_key()?;
    }
    let mut index = 1;
    while let Some(peek) = reader.step()? {
        if peek != Peek::Object {
            return Err(Error::bad_request(format!(
                "{row} {index} is not an object, but {row} 0 is"
            )));
        }
        check_depth(depth + 1, &reader.limits)?;
        let mut key = reader.jiter.known_object().map_err(reader.syntax)?;
        while let Some(name) = key {
            let position = columns.get_index_of(name).ok_or_else(|| {
                Error::bad_request(format!(
                    "{row} {index} has the key '{name}' that {row} 0 lacks"
                ))
            })?;
            let (name, column) = columns
                .get_index_mut(position)
                .ok_or_else(|| Error::internal("V1 column index out of range"))?;
            if column.rows != index {
                return Err(Error::bad_request(format!(
                    "{row} {index} has the key '{name}' twice"
                )));
            }
            let peek = reader.peek()?;
            column
                .row(reader, peek, depth + 1)
                .map_err(|e| e.context(format_args!("{row} {index}, {tensor} '{name}'")))?;
            key = reader.jiter.next_key().map_err(reader.syntax)?;
        }
        if let Some((name, _)) = columns.iter().find(|(_, column)| column.rows == index) {
            return Err(Error::bad_request(format!(
                "{row} {index} lacks the key '{name}' that {row} 0 has"
            )));
        }
        index += 1;
    }
    columns
        .into_iter()
        .map(|(name, column)| column.into_tensor(name, &reader.limits))
        .collect()
}

/// Columnar format: an object of named values, or one unnamed value. `depth` is the depth of
/// the object holding the value.
fn columnar(reader: &mut Reader<'_>, names: &Names, depth: usize) -> Result<Vec<Tensor>> {
    let peek = reader.peek()?;
    if peek != Peek::Object {
        let mut column = Column::unbatched();
        column.row(reader, peek, depth)?;
        return Ok(vec![
            column.into_tensor(names.default.to_owned(), &reader.limits)?,
        ]);
    }
    let Object::Keyed(mut key) = reader.object(depth + 1)? else {
        let mut column = Column::unbatched();
        column.b64_row(reader)?;
        return Ok(vec![
            column.into_tensor(names.default.to_owned(), &reader.limits)?,
        ]);
    };
    if key.is_none() {
        return Err(Error::bad_request(format!(
            "\"{}\" is an empty object",
            names.columnar
        )));
    }
    let mut tensors: Vec<Tensor> = Vec::new();
    while let Some(name) = key {
        if tensors.len() >= reader.limits.max_tensors {
            return Err(Error::bad_request(format!(
                "more than {} {}s, over the limit",
                reader.limits.max_tensors, names.tensor
            )));
        }
        if tensors.iter().any(|t| t.name == name) {
            return Err(Error::bad_request(format!(
                "duplicate {} name '{name}'",
                names.tensor
            )));
        }
        let mut column = Column::unbatched();
        let peek = reader.peek()?;
        column
            .row(reader, peek, depth + 1)
            .map_err(|e| e.context(format_args!("{} '{name}'", names.tensor)))?;
        tensors.push(column.into_tensor(name, &reader.limits)?);
        key = reader.next_key()?;
    }
    Ok(tensors)
}

/// The element type seen so far in one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Empty,
    Bool,
    Int,
    Float,
    Bytes,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Self::Empty => "no",
            Self::Bool => "boolean",
            Self::Int | Self::Float => "number",
            Self::Bytes => "string",
        }
    }
}

/// One tensor being read from JSON: a shape-checked flattener. The shape of one value (row) is
/// discovered from the first one and every later value must match it; elements go straight
/// into the raw little-endian buffer (INT64 until the first non-integer, then converted in
/// place to FP64: both are 8 bytes).
#[derive(Debug, Default)]
struct Column {
    /// Whether each value read is one row along a new dimension 0.
    batched: bool,
    kind: Kind,
    data: Vec<u8>,
    elements: usize,
    /// Values (rows) read.
    rows: usize,
    /// The shape of one value; a dimension is `None` while its first list is being read.
    dims: Vec<Option<usize>>,
    /// The rank of one value, fixed by the first element seen.
    rank: Option<usize>,
    /// Items read so far in each list open while reading a value (scratch, reused).
    open: Vec<usize>,
}

impl Column {
    fn batched() -> Self {
        Self {
            batched: true,
            ..Self::default()
        }
    }

    fn unbatched() -> Self {
        Self::default()
    }

    /// Reads one value (a row) whose first token is `peek`; `depth` is the depth of its
    /// container. Iterative, not recursive: `max_json_depth` may be set very high, and the
    /// nesting must never overflow the stack.
    fn row(&mut self, reader: &mut Reader<'_>, peek: Peek, depth: usize) -> Result<()> {
        self.rows += 1;
        self.open.clear();
        let mut peek = peek;
        loop {
            let level = self.open.len();
            match peek {
                Peek::Array => {
                    check_depth(depth + level + 1, &reader.limits)?;
                    self.start_list(level)?;
                    if let Some(first) = reader.jiter.known_array().map_err(reader.syntax)? {
                        self.open.push(0);
                        peek = first;
                        continue;
                    }
                    self.end_list(level, 0)?;
                }
                Peek::Object => {
                    self.leaf(level)?;
                    if let Object::Keyed(_) = reader.object(depth + level + 1)? {
                        return Err(Error::bad_request(
                            "an object inside a tensor must be {\"b64\": \"<base64 string>\"}",
                        ));
                    }
                    self.b64_value(reader)?;
                }
                _ => {
                    self.leaf(level)?;
                    self.scalar(reader, peek)?;
                }
            }
            // The value at `level` is complete: move to the next item, closing finished lists.
            loop {
                let Some(items) = self.open.last_mut() else {
                    return Ok(());
                };
                *items += 1;
                if let Some(next) = reader.step()? {
                    peek = next;
                    break;
                }
                let items = *items;
                self.open.pop();
                self.end_list(self.open.len(), items)?;
            }
        }
    }

    /// Reads a row that is a `{"b64": ...}` object opened up to its string value.
    fn b64_row(&mut self, reader: &mut Reader<'_>) -> Result<()> {
        self.rows += 1;
        self.leaf(0)?;
        self.b64_value(reader)
    }

    /// Checks that a list may start at nesting `level`, adding a dimension on the first one.
    fn start_list(&mut self, level: usize) -> Result<()> {
        if let Some(rank) = self.rank
            && level >= rank
        {
            return Err(Error::bad_request(format!(
                "has a list at nesting level {level} where earlier values have a scalar; \
                 rows must all have the same shape"
            )));
        }
        if level == self.dims.len() {
            self.dims.push(None);
        }
        Ok(())
    }

    /// Checks the length of a finished list at nesting `level` against earlier lists there.
    fn end_list(&mut self, level: usize, items: usize) -> Result<()> {
        match self.dims.get_mut(level) {
            Some(dim @ None) => *dim = Some(items),
            Some(Some(expected)) if *expected == items => {}
            Some(Some(expected)) => {
                return Err(Error::bad_request(format!(
                    "has a list of {items} items at nesting level {level} where earlier ones \
                     have {expected}; rows must all have the same shape (no ragged lists)"
                )));
            }
            None => return Err(Error::internal("V1 shape tracking lost a dimension")),
        }
        Ok(())
    }

    /// Checks that an element may sit at nesting `level`, fixing the rank on the first one.
    fn leaf(&mut self, level: usize) -> Result<()> {
        match self.rank {
            Some(rank) if rank == level => Ok(()),
            None if level == self.dims.len() => {
                self.rank = Some(level);
                Ok(())
            }
            _ => Err(Error::bad_request(format!(
                "has a scalar at nesting level {level} where earlier values have a list; \
                 rows must all have the same shape"
            ))),
        }
    }

    /// Counts one more element, failing as soon as the tensor passes the element limit.
    fn count_element(&mut self, limits: &Limits) -> Result<()> {
        self.elements += 1;
        if self.elements > limits.max_tensor_elements {
            return Err(Error::bad_request(format!(
                "has more elements than the limit of {}",
                limits.max_tensor_elements
            )));
        }
        Ok(())
    }

    fn set_kind(&mut self, kind: Kind) -> Result<()> {
        match self.kind {
            Kind::Empty => self.kind = kind,
            current if current == kind => {}
            current => {
                return Err(Error::bad_request(format!(
                    "mixes {} and {} elements in one tensor",
                    current.describe(),
                    kind.describe()
                )));
            }
        }
        Ok(())
    }

    fn scalar(&mut self, reader: &mut Reader<'_>, peek: Peek) -> Result<()> {
        self.count_element(&reader.limits)?;
        match peek {
            Peek::True | Peek::False => {
                let value = reader.jiter.known_bool(peek).map_err(reader.syntax)?;
                self.set_kind(Kind::Bool)?;
                self.data.push(u8::from(value));
                Ok(())
            }
            Peek::String => {
                self.set_kind(Kind::Bytes)?;
                let text = reader.jiter.known_str().map_err(reader.syntax)?;
                json_read::bytes_element(&mut self.data, text.as_bytes(), &reader.limits)
            }
            Peek::Null => Err(Error::bad_request("null is not a valid tensor element")),
            _ => {
                let text = reader
                    .jiter
                    .known_number_bytes(peek)
                    .map_err(reader.syntax)?;
                self.number(text)
            }
        }
    }

    fn number(&mut self, text: &[u8]) -> Result<()> {
        match (self.kind, parse_int(text)) {
            (Kind::Empty | Kind::Int, Some(value)) => {
                self.kind = Kind::Int;
                self.data.extend_from_slice(&value.to_le_bytes());
            }
            (Kind::Float, Some(value)) => {
                self.data.extend_from_slice(&(value as f64).to_le_bytes());
            }
            (Kind::Empty | Kind::Int | Kind::Float, None) => {
                let value: f64 = fast_float2::parse(text).map_err(|_| {
                    Error::bad_request(format!("invalid number {}", String::from_utf8_lossy(text)))
                })?;
                if self.kind == Kind::Int {
                    for chunk in self.data.as_chunks_mut::<8>().0 {
                        *chunk = (i64::from_le_bytes(*chunk) as f64).to_le_bytes();
                    }
                }
                self.kind = Kind::Float;
                self.data.extend_from_slice(&value.to_le_bytes());
            }
            (current, _) => {
                return Err(Error::bad_request(format!(
                    "mixes {} and number elements in one tensor",
                    current.describe()
                )));
            }
        }
        Ok(())
    }

    /// Reads the string value of a `{"b64": ...}` object and closes the object.
    fn b64_value(&mut self, reader: &mut Reader<'_>) -> Result<()> {
        self.count_element(&reader.limits)?;
        self.set_kind(Kind::Bytes)?;
        let text = reader.jiter.known_str().map_err(reader.syntax)?;
        let prefix = self.data.len();
        self.data.extend_from_slice(&[0; 4]);
        B64_DECODE
            .decode_vec(text, &mut self.data)
            .map_err(|e| Error::bad_request(format!("invalid base64 in \"b64\": {e}")))?;
        let len = self.data.len() - prefix - 4;
        json_read::check_bytes_len(len, &reader.limits)?;
        let len = u32::try_from(len)
            .map_err(|_| Error::bad_request("BYTES element longer than 4 GiB"))?;
        self.data[prefix..prefix + 4].copy_from_slice(&len.to_le_bytes());
        if reader.jiter.next_key().map_err(reader.syntax)?.is_some() {
            return Err(Error::bad_request(
                "a {\"b64\": ...} object must have no other keys",
            ));
        }
        Ok(())
    }

    fn into_tensor(self, name: String, limits: &Limits) -> Result<Tensor> {
        let mut shape = Vec::with_capacity(self.dims.len() + 1);
        if self.batched {
            shape.push(self.rows);
        }
        shape.extend(self.dims.iter().map(|dim| dim.unwrap_or(0)));
        let count = element_count(&shape, limits).context_with(|| format!("tensor '{name}'"))?;
        if count != self.elements {
            return Err(Error::internal(format!(
                "V1 tensor '{name}' of shape {shape:?} read {} elements",
                self.elements
            )));
        }
        let datatype = match self.kind {
            Kind::Bool => DataType::Bool,
            Kind::Int => DataType::Int64,
            Kind::Float | Kind::Empty => DataType::Fp64,
            Kind::Bytes => DataType::Bytes,
        };
        Ok(Tensor::from_validated(
            name,
            datatype,
            shape,
            Bytes::from(self.data),
            Parameters::new(),
        ))
    }
}

/// Parses a JSON integer literal that fits in an i64; `None` for anything else (fractions,
/// exponents, NaN/Infinity, or integers out of range, which are read as FP64).
fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // 19 digits always fit in a u64; longer integers are out of the i64 range anyway.
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude * 10 + u64::from(digit - b'0');
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}
