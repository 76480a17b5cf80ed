//! KServe V1 REST (TensorFlow Serving style): `{"instances": ...}` / `{"inputs": ...}` requests
//! and `{"predictions": ...}` responses, converted to and from the V2 tensor model so that a V1
//! client can reach a V2 backend and a V2 client a V1 backend.
//!
//! # Decoding (V1 JSON → tensors)
//!
//! A request body must be a JSON object with `instances` (row format) or `inputs` (columnar
//! format); other top-level keys are ignored. JSON that does not parse is a 400 whose message
//! starts with `Unrecognized request format: ` (KServe's text).
//!
//! * **Row format**, `{"instances": [row, ...]}`. `instances` must be a non-empty list (otherwise
//!   400 `Expected "instances" to be a list`). Each instance is one row along a new dimension 0:
//!   * rows that are numbers, strings, booleans, `{"b64": ...}` objects or nested lists of them
//!     make one tensor named `input-0` of shape `[n_instances, ...row shape]`;
//!   * rows that are other objects are named inputs: every instance must have the same keys, and
//!     each key becomes a tensor of shape `[n_instances, ...value shape]`, in the key order of
//!     the first instance.
//!
//!   Every row (and every value of a key) must have the same shape: nested lists must be
//!   rectangular, or the 400 names the instance.
//! * **Columnar format**, `{"inputs": value}`: an object gives one tensor per key, a list or a
//!   scalar gives one tensor `input-0`; the shape is the nesting of the value itself (no batch
//!   dimension is added).
//! * A response `{"predictions": value}` is read with the same rules: a list is rows (a list of
//!   objects gives one output per key), anything else is columnar; the default output name is
//!   `output-0`. An empty list is an FP64 output of shape `[0]`.
//!
//! Element types are inferred from the values of one tensor:
//!
//! | JSON elements | datatype |
//! | --- | --- |
//! | all `true` / `false` | BOOL |
//! | all integers within the i64 range | INT64 |
//! | any number with a fraction or exponent, `NaN`, `Infinity`, `-Infinity`, or an integer outside the i64 range | FP64 |
//! | strings | BYTES (the UTF-8 text) |
//! | `{"b64": "<base64>"}` | BYTES (the decoded bytes; standard alphabet, padding optional) |
//! | no elements at all | FP64 |
//!
//! Strings and `{"b64"}` objects mix freely; mixing strings, numbers and booleans in one tensor
//! is a 400, as are `null`, other objects inside a tensor, invalid base64, nesting deeper than
//! `max_json_depth`, and tensors over the element, rank or BYTES-element limits. An object whose
//! only key is `b64` with a string value is always a binary value, never an input named `b64`.
//!
//! # Encoding (tensors → V1 JSON)
//!
//! A tensor becomes nested lists following its shape (shape `[]` is the bare value, `[n]` a flat
//! list). Numbers are written shortest round-trip (FP16/BF16 as numbers), BOOL as `true`/`false`,
//! BYTES as JSON strings when UTF-8 and `{"b64": "<base64>"}` otherwise.
//!
//! * Response: one output gives `{"predictions": <the output nested>}`; several outputs that share
//!   dimension 0 give `{"predictions": [{"<name>": <row>, ...}, ...]}`; several outputs that do
//!   not share it cannot be V1 and are an error (501). Model name, id and parameters have no V1
//!   form and are dropped.
//! * Request: one input of rank ≥ 1 gives `{"instances": <its rows>}`; several inputs sharing
//!   dimension 0 give `{"instances": [{"<name>": <row>, ...}, ...]}`; anything else (a scalar,
//!   or inputs with different dimension 0) gives columnar `{"inputs": {"<name>": <nested>}}`.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::Bytes;
use indexmap::IndexMap;
use indexmap::map::Entry;
use jiter::{Jiter, JiterError, Peek};

use super::{json_read, json_write};
use crate::error::{Error, Result, ResultExt};
use crate::limits::Limits;
use crate::tensor::{DataType, InferRequest, InferResponse, Parameters, Tensor, element_count};

/// KServe's conventional name for the single unnamed input of a V1 request.
pub const DEFAULT_INPUT_NAME: &str = "input-0";
/// The name given to the single unnamed output of a V1 response.
pub const DEFAULT_OUTPUT_NAME: &str = "output-0";

const B64: &str = "b64";

/// Standard base64 that accepts input with or without `=` padding.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a V1 request body (`instances` or `inputs`) into V2 input tensors.
pub fn decode_request(body: &[u8], limits: &Limits) -> Result<InferRequest> {
    check_size(body, limits)?;
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

/// Encodes V2 outputs as a V1 response, `{"predictions": ...}`.
pub fn encode_response(response: &InferResponse) -> Result<Vec<u8>> {
    let outputs = &response.outputs;
    let mut out = Vec::with_capacity(32 + outputs.iter().map(json_size).sum::<usize>());
    out.extend_from_slice(b"{\"predictions\":");
    match outputs.as_slice() {
        [] => out.extend_from_slice(b"[]"),
        [output] => Cursor::new(output).nested(&mut out, output.shape())?,
        _ => {
            let rows = shared_rows(outputs).ok_or_else(|| {
                Error::unsupported(format!(
                    "outputs {} do not share dimension 0, so they cannot be V1 predictions \
                     (one row per instance); use the V2 protocol",
                    describe(outputs)
                ))
            })?;
            write_named_rows(&mut out, outputs, rows)?;
        }
    }
    out.push(b'}');
    Ok(out)
}

/// Encodes V2 inputs as a V1 request: `{"instances": ...}` when the inputs are rows, otherwise
/// columnar `{"inputs": {...}}`.
pub fn encode_request(request: &InferRequest) -> Result<Vec<u8>> {
    let inputs = &request.inputs;
    let mut out = Vec::with_capacity(32 + inputs.iter().map(json_size).sum::<usize>());
    match inputs.as_slice() {
        [] => return Err(Error::bad_request("a V1 request needs at least one input")),
        [input] if !input.shape().is_empty() => {
            out.extend_from_slice(b"{\"instances\":");
            Cursor::new(input).nested(&mut out, input.shape())?;
        }
        _ => match shared_rows(inputs) {
            Some(rows) if inputs.len() > 1 => {
                out.extend_from_slice(b"{\"instances\":");
                write_named_rows(&mut out, inputs, rows)?;
            }
            _ => {
                out.extend_from_slice(b"{\"inputs\":{");
                for (i, input) in inputs.iter().enumerate() {
                    json_write::key(&mut out, &input.name, i == 0);
                    Cursor::new(input).nested(&mut out, input.shape())?;
                }
                out.push(b'}');
            }
        },
    }
    out.push(b'}');
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Decoding

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

// ---------------------------------------------------------------------------------------------
// Encoding

/// A rough JSON size of a tensor, to size the output buffer once.
fn json_size(tensor: &Tensor) -> usize {
    16 + tensor.name.len() + tensor.data().len() * 3
}

/// Dimension 0 shared by all `tensors` (all of rank ≥ 1), if any.
fn shared_rows(tensors: &[Tensor]) -> Option<usize> {
    let rows = *tensors.first()?.shape().first()?;
    tensors
        .iter()
        .all(|t| t.shape().first() == Some(&rows))
        .then_some(rows)
}

fn describe(tensors: &[Tensor]) -> String {
    let parts: Vec<String> = tensors
        .iter()
        .map(|t| format!("'{}' {:?}", t.name, t.shape()))
        .collect();
    parts.join(", ")
}

/// Writes `[{"<name>": <row>, ...}, ...]`: row `i` of every tensor, for `rows` rows.
fn write_named_rows(out: &mut Vec<u8>, tensors: &[Tensor], rows: usize) -> Result<()> {
    let mut cursors: Vec<Cursor<'_>> = tensors.iter().map(Cursor::new).collect();
    out.push(b'[');
    for row in 0..rows {
        if row > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (i, cursor) in cursors.iter_mut().enumerate() {
            let tensor = cursor.tensor;
            json_write::key(out, &tensor.name, i == 0);
            cursor.nested(out, tensor.shape().get(1..).unwrap_or_default())?;
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// Walks a tensor's elements in order, writing them as nested JSON lists.
struct Cursor<'t> {
    tensor: &'t Tensor,
    /// Next byte of fixed-size data.
    offset: usize,
    /// Remaining BYTES elements.
    elements: crate::tensor::bytes_elements::Elements,
    /// Items left in each open list while writing nested lists (scratch, reused).
    open: Vec<usize>,
}

impl<'t> Cursor<'t> {
    fn new(tensor: &'t Tensor) -> Self {
        Self {
            tensor,
            offset: 0,
            elements: tensor.bytes_elements(),
            open: Vec::new(),
        }
    }

    /// Writes the next elements nested by `dims` (`[]`: one bare element). Iterative, so a
    /// tensor of very high rank cannot overflow the stack.
    fn nested(&mut self, out: &mut Vec<u8>, dims: &[usize]) -> Result<()> {
        let Some((&last, outer)) = dims.split_last() else {
            return self.run(out, 1);
        };
        // Items still to write in each open list of the outer dimensions.
        self.open.clear();
        loop {
            let level = self.open.len();
            out.push(b'[');
            match outer.get(level) {
                Some(&dim) => self.open.push(dim),
                None => {
                    self.run(out, last)?;
                    out.push(b']');
                }
            }
            // Close finished lists, then start the next item of the innermost open one.
            loop {
                let level = self.open.len();
                match self.open.last_mut() {
                    None => return Ok(()),
                    Some(0) => {
                        out.push(b']');
                        self.open.pop();
                    }
                    Some(left) => {
                        if outer.get(level - 1) != Some(left) {
                            out.push(b',');
                        }
                        *left -= 1;
                        break;
                    }
                }
            }
        }
    }

    /// Writes the next `n` elements, comma separated.
    fn run(&mut self, out: &mut Vec<u8>, n: usize) -> Result<()> {
        let datatype = self.tensor.datatype();
        let Some(size) = datatype.element_size() else {
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                let element = self.elements.next().ok_or_else(|| self.short())?;
                bytes_value(out, &element)?;
            }
            return Ok(());
        };
        let end = n
            .checked_mul(size)
            .and_then(|len| len.checked_add(self.offset));
        let raw = end
            .and_then(|end| self.tensor.data().get(self.offset..end))
            .ok_or_else(|| self.short())?;
        json_write::fixed_elements(out, datatype, raw)?;
        self.offset += raw.len();
        Ok(())
    }

    fn short(&self) -> Error {
        Error::internal(format!(
            "tensor '{}' has fewer elements than its shape {:?}",
            self.tensor.name,
            self.tensor.shape()
        ))
    }
}

/// One BYTES element: a JSON string when UTF-8, `{"b64": "<base64>"}` otherwise.
fn bytes_value(out: &mut Vec<u8>, element: &[u8]) -> Result<()> {
    if let Ok(text) = std::str::from_utf8(element) {
        json_write::string(out, text);
        return Ok(());
    }
    out.extend_from_slice(b"{\"b64\":\"");
    let start = out.len();
    let len = base64::encoded_len(element.len(), true)
        .ok_or_else(|| Error::internal("BYTES element too long to encode as base64"))?;
    out.resize(start + len, 0);
    let written = STANDARD
        .encode_slice(element, &mut out[start..])
        .map_err(|e| Error::internal(format!("base64 encoding failed: {e}")))?;
    out.truncate(start + written);
    out.extend_from_slice(b"\"}");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn request(json: &str) -> Result<InferRequest> {
        decode_request(json.as_bytes(), &Limits::default())
    }

    fn ok(json: &str) -> Vec<Tensor> {
        request(json).unwrap().inputs
    }

    fn err(json: &str) -> Error {
        let e = request(json).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
        e
    }

    fn i64s(t: &Tensor) -> Vec<i64> {
        assert_eq!(t.datatype(), DataType::Int64);
        t.data()
            .as_chunks::<8>()
            .0
            .iter()
            .map(|c| i64::from_le_bytes(*c))
            .collect()
    }

    fn f64s(t: &Tensor) -> Vec<f64> {
        assert_eq!(t.datatype(), DataType::Fp64);
        t.data()
            .as_chunks::<8>()
            .0
            .iter()
            .map(|c| f64::from_le_bytes(*c))
            .collect()
    }

    fn strings(t: &Tensor) -> Vec<Vec<u8>> {
        assert_eq!(t.datatype(), DataType::Bytes);
        t.bytes_elements().map(|b| b.to_vec()).collect()
    }

    fn tensor(name: &str, datatype: DataType, shape: Vec<usize>, data: Vec<u8>) -> Tensor {
        Tensor::new(name, datatype, shape, Bytes::from(data), &Limits::default()).unwrap()
    }

    fn int64(name: &str, shape: Vec<usize>, values: &[i64]) -> Tensor {
        tensor(
            name,
            DataType::Int64,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    fn fp64(name: &str, shape: Vec<usize>, values: &[f64]) -> Tensor {
        tensor(
            name,
            DataType::Fp64,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    fn bytes(name: &str, shape: Vec<usize>, values: &[&[u8]]) -> Tensor {
        let mut data = Vec::new();
        for v in values {
            crate::tensor::bytes_elements::push(&mut data, v).unwrap();
        }
        tensor(name, DataType::Bytes, shape, data)
    }

    fn text(body: Vec<u8>) -> String {
        String::from_utf8(body).unwrap()
    }

    #[test]
    fn rows_of_ints_are_int64() {
        let inputs = ok(r#"{"instances": [[1, 2, 3], [4, 5, -6]]}"#);
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].name, "input-0");
        assert_eq!(inputs[0].shape(), &[2, 3]);
        assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4, 5, -6]);
    }

    #[test]
    fn any_float_makes_fp64() {
        let inputs = ok(r#"{"instances": [[1, 2], [3.5, 4]]}"#);
        assert_eq!(inputs[0].shape(), &[2, 2]);
        assert_eq!(f64s(&inputs[0]), [1.0, 2.0, 3.5, 4.0]);
        let inputs = ok(r#"{"instances": [1e2, NaN, Infinity, -Infinity]}"#);
        let values = f64s(&inputs[0]);
        assert_eq!(values[0], 100.0);
        assert!(values[1].is_nan());
        assert_eq!(values[2..], [f64::INFINITY, f64::NEG_INFINITY]);
        // Integers beyond i64 fall back to FP64.
        let inputs = ok(r#"{"instances": [1, 18446744073709551615]}"#);
        assert_eq!(f64s(&inputs[0]), [1.0, 18446744073709551615.0]);
        let inputs = ok(r#"{"instances": [-9223372036854775808, 9223372036854775807]}"#);
        assert_eq!(i64s(&inputs[0]), [i64::MIN, i64::MAX]);
    }

    #[test]
    fn nested_rows_and_scalar_rows() {
        let inputs = ok(r#"{"instances": [[[1], [2]], [[3], [4]], [[5], [6]]]}"#);
        assert_eq!(inputs[0].shape(), &[3, 2, 1]);
        assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4, 5, 6]);
        let inputs = ok(r#"{"instances": [7, 8]}"#);
        assert_eq!(inputs[0].shape(), &[2]);
        let inputs = ok(r#"{"instances": [[], []]}"#);
        assert_eq!(inputs[0].shape(), &[2, 0]);
        assert_eq!(inputs[0].datatype(), DataType::Fp64);
    }

    #[test]
    fn strings_b64_and_bools() {
        let inputs = ok(r#"{"instances": ["a", "héllo"]}"#);
        assert_eq!(inputs[0].shape(), &[2]);
        assert_eq!(
            strings(&inputs[0]),
            [b"a".to_vec(), "héllo".as_bytes().to_vec()]
        );

        let inputs = ok(r#"{"instances": [{"b64": "AAH/"}, {"b64": "aGk"}, "x"]}"#);
        assert_eq!(inputs[0].shape(), &[3]);
        assert_eq!(
            strings(&inputs[0]),
            [vec![0, 1, 255], b"hi".to_vec(), b"x".to_vec()]
        );

        let inputs = ok(r#"{"instances": [[{"b64": "AA=="}, {"b64": "AQ=="}]]}"#);
        assert_eq!(inputs[0].shape(), &[1, 2]);
        assert_eq!(strings(&inputs[0]), [vec![0], vec![1]]);

        let inputs = ok(r#"{"instances": [[true, false], [false, true]]}"#);
        assert_eq!(inputs[0].datatype(), DataType::Bool);
        assert_eq!(inputs[0].shape(), &[2, 2]);
        assert_eq!(inputs[0].data().as_ref(), [1, 0, 0, 1]);

        assert!(
            err(r#"{"instances": [{"b64": "!!!"}]}"#)
                .message()
                .contains("base64")
        );
        assert!(
            err(r#"{"instances": [{"b64": "AA==", "x": 1}]}"#)
                .message()
                .contains("b64")
        );
    }

    #[test]
    fn named_instances() {
        let inputs = ok(r#"{"instances": [
            {"a": [1, 2], "b": "x", "c": {"b64": "AA=="}},
            {"b": "y", "a": [3, 4], "c": {"b64": "AQ=="}}
        ]}"#);
        let names: Vec<_> = inputs.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(inputs[0].shape(), &[2, 2]);
        assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4]);
        assert_eq!(inputs[1].shape(), &[2]);
        assert_eq!(strings(&inputs[1]), [b"x".to_vec(), b"y".to_vec()]);
        assert_eq!(strings(&inputs[2]), [vec![0], vec![1]]);
        // A "b64" key whose value is not a string is an input named b64.
        let inputs = ok(r#"{"instances": [{"b64": [1]}, {"b64": [2]}]}"#);
        assert_eq!(inputs[0].name, "b64");
        assert_eq!(inputs[0].shape(), &[2, 1]);

        let e = err(r#"{"instances": [{"a": 1, "b": 2}, {"a": 3}]}"#);
        assert!(e.message().contains("instance 1 lacks the key 'b'"), "{e}");
        let e = err(r#"{"instances": [{"a": 1}, {"a": 3, "z": 4}]}"#);
        assert!(e.message().contains("instance 1 has the key 'z'"), "{e}");
        let e = err(r#"{"instances": [{"a": 1}, {"a": 3, "a": 4}]}"#);
        assert!(e.message().contains("twice"), "{e}");
        let e = err(r#"{"instances": [{"a": 1}, [2]]}"#);
        assert!(e.message().contains("instance 1 is not an object"), "{e}");
        let e = err(r#"{"instances": [{"a": [1]}, {"a": [1, 2]}]}"#);
        assert!(e.message().starts_with("instance 1, input 'a': "), "{e}");
        assert!(
            err(r#"{"instances": [{}]}"#)
                .message()
                .contains("empty object")
        );
    }

    #[test]
    fn columnar_inputs() {
        let inputs = ok(r#"{"inputs": {"x": [[1, 2], [3, 4]], "y": "s", "z": 1.5}}"#);
        assert_eq!(inputs.len(), 3);
        assert_eq!(
            (inputs[0].name.as_str(), inputs[0].shape()),
            ("x", &[2, 2][..])
        );
        assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4]);
        assert_eq!((inputs[1].name.as_str(), inputs[1].shape()), ("y", &[][..]));
        assert_eq!(f64s(&inputs[2]), [1.5]);

        let inputs = ok(r#"{"inputs": [[1.0, 2.0]], "signature_name": "x"}"#);
        assert_eq!(inputs[0].name, "input-0");
        assert_eq!(inputs[0].shape(), &[1, 2]);
        let inputs = ok(r#"{"inputs": 3}"#);
        assert_eq!(inputs[0].shape(), &[] as &[usize]);
        assert_eq!(i64s(&inputs[0]), [3]);
        let inputs = ok(r#"{"inputs": {"b64": "AAE="}}"#);
        assert_eq!(inputs[0].name, "input-0");
        assert_eq!(strings(&inputs[0]), [vec![0, 1]]);
        assert!(
            err(r#"{"inputs": {"a": 1, "a": 2}}"#)
                .message()
                .contains("duplicate")
        );
        assert!(
            err(r#"{"inputs": {"a": [[1], [1, 2]]}}"#)
                .message()
                .starts_with("input 'a': ")
        );
    }

    #[test]
    fn ragged_rows_rejected() {
        let e = err(r#"{"instances": [[1, 2], [3]]}"#);
        assert!(e.message().starts_with("instance 1: "), "{e}");
        assert!(e.message().contains("same shape"), "{e}");
        let e = err(r#"{"instances": [[1, 2], [3, 4], [[5], 6]]}"#);
        assert!(e.message().starts_with("instance 2: "), "{e}");
        let e = err(r#"{"instances": [1, [2]]}"#);
        assert!(e.message().starts_with("instance 1: "), "{e}");
        let e = err(r#"{"instances": [[1], 2]}"#);
        assert!(e.message().starts_with("instance 1: "), "{e}");
        let e = err(r#"{"instances": [[[1, 2]], [[3]]]}"#);
        assert!(e.message().starts_with("instance 1: "), "{e}");
        err(r#"{"instances": [[], [1]]}"#);
    }

    #[test]
    fn envelope_errors() {
        let e = err(r#"{"instances": {"a": 1}}"#);
        assert_eq!(e.message(), "Expected \"instances\" to be a list");
        let e = err(r#"{"instances": "x"}"#);
        assert_eq!(e.message(), "Expected \"instances\" to be a list");
        let e = err(r#"{"data": [1]}"#);
        assert!(e.message().contains("\"instances\" or \"inputs\""), "{e}");
        let e = err(r#"{"instances": [1], "inputs": [1]}"#);
        assert!(e.message().contains("more than once"), "{e}");
        assert!(err(r#"{"instances": []}"#).message().contains("empty"));
        let e = err(r#"{"instances": [1, 2"#);
        assert!(
            e.message().starts_with("Unrecognized request format: "),
            "{e}"
        );
        let e = err("not json");
        assert!(
            e.message().starts_with("Unrecognized request format: "),
            "{e}"
        );
        let e = err("[1]");
        assert!(
            e.message().starts_with("Unrecognized request format: "),
            "{e}"
        );
        let e = err(r#"{"instances": [1]} trailing"#);
        assert!(
            e.message().starts_with("Unrecognized request format: "),
            "{e}"
        );

        let limits = Limits {
            max_body_bytes: 8,
            ..Limits::default()
        };
        let e = decode_request(br#"{"instances": [1]}"#, &limits).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
    }

    #[test]
    fn mixed_types_rejected() {
        let e = err(r#"{"instances": [1, "a"]}"#);
        assert!(e.message().contains("mixes number and string"), "{e}");
        let e = err(r#"{"instances": ["a", 1]}"#);
        assert!(e.message().contains("mixes string and number"), "{e}");
        let e = err(r#"{"instances": [true, 1.5]}"#);
        assert!(e.message().contains("mixes boolean and number"), "{e}");
        let e = err(r#"{"instances": [[1], [{"b64": "AA=="}]]}"#);
        assert!(e.message().contains("mixes"), "{e}");
        assert!(err(r#"{"instances": [null]}"#).message().contains("null"));
        assert!(
            err(r#"{"instances": [[{"x": 1}]]}"#)
                .message()
                .contains("b64")
        );
    }

    #[test]
    fn limits_apply() {
        let limits = Limits {
            max_json_depth: 5,
            ..Limits::default()
        };
        // Depth counts every level: root object 1, instances 2, then each nested list.
        assert!(decode_request(br#"{"instances": [[[[1]]]]}"#, &limits).is_ok());
        let e = decode_request(br#"{"instances": [[[[[1]]]]]}"#, &limits).unwrap_err();
        assert!(e.message().contains("nested deeper"), "{e}");
        let deep = format!("{{\"inputs\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(err(&deep).message().contains("nested deeper"));

        let limits = Limits {
            max_tensor_elements: 3,
            ..Limits::default()
        };
        let e = decode_request(br#"{"instances": [[1, 2], [3, 4]]}"#, &limits).unwrap_err();
        assert!(e.message().contains("limit"), "{e}");
        let limits = Limits {
            max_bytes_element_len: 2,
            ..Limits::default()
        };
        assert!(decode_request(br#"{"instances": ["abc"]}"#, &limits).is_err());
        assert!(decode_request(br#"{"instances": [{"b64": "AAAA"}]}"#, &limits).is_err());
        let limits = Limits {
            max_tensors: 1,
            ..Limits::default()
        };
        assert!(decode_request(br#"{"instances": [{"a": 1, "b": 2}]}"#, &limits).is_err());
        assert!(decode_request(br#"{"inputs": {"a": 1, "b": 2}}"#, &limits).is_err());
    }

    #[test]
    fn huge_depth_limit_does_not_overflow_the_stack() {
        let limits = Limits {
            max_json_depth: usize::MAX,
            max_rank: usize::MAX,
            ..Limits::default()
        };
        let depth = 200_000;
        let body = format!(
            "{{\"instances\":[{}7{}]}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let request = decode_request(body.as_bytes(), &limits).unwrap();
        assert_eq!(request.inputs[0].shape().len(), depth + 1);
        assert_eq!(i64s(&request.inputs[0]), [7]);
        assert_eq!(text(encode_request(&request).unwrap()), body);
    }

    #[test]
    fn encode_nests_by_shape() {
        let cases: [(Vec<usize>, &str); 5] = [
            (vec![2, 2, 2], "[[[0,1],[2,3]],[[4,5],[6,7]]]"),
            (vec![1, 3, 1], "[[[0],[1],[2]]]"),
            (vec![2, 0, 3], "[[],[]]"),
            (vec![0, 2], "[]"),
            (vec![1, 1, 1, 1], "[[[[0]]]]"),
        ];
        for (shape, expected) in cases {
            let n: usize = shape.iter().product();
            let values: Vec<i64> = (0..n as i64).collect();
            let response = InferResponse {
                outputs: vec![int64("t", shape, &values)],
                ..InferResponse::default()
            };
            let body = text(encode_response(&response).unwrap());
            assert_eq!(body, format!("{{\"predictions\":{expected}}}"));
        }
    }

    #[test]
    fn encode_single_output() {
        let response = InferResponse {
            outputs: vec![int64("out", vec![2, 2], &[1, 2, 3, 4])],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[[1,2],[3,4]]}"#
        );
        let response = InferResponse {
            outputs: vec![fp64("out", vec![3], &[0.1, 1.0, f64::NAN])],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[0.1,1.0,NaN]}"#
        );
        let response = InferResponse {
            outputs: vec![fp64("s", vec![], &[2.5])],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":2.5}"#
        );
        let response = InferResponse {
            outputs: vec![int64("e", vec![2, 0], &[])],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[[],[]]}"#
        );
        let half: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let response = InferResponse {
            outputs: vec![tensor("h", DataType::Fp16, vec![2], half)],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[1.5,-2.0]}"#
        );
        let response = InferResponse {
            outputs: vec![tensor("b", DataType::Bool, vec![1, 2], vec![1, 0])],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[[true,false]]}"#
        );
    }

    #[test]
    fn encode_bytes_as_strings_or_b64() {
        let response = InferResponse {
            outputs: vec![bytes("b", vec![3], &[b"hi \"x\"", &[0xff, 0x00], b""])],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":["hi \"x\"",{"b64":"/wA="},""]}"#
        );
    }

    #[test]
    fn encode_multi_output() {
        let response = InferResponse {
            outputs: vec![
                int64("label", vec![2], &[1, 0]),
                fp64("scores", vec![2, 2], &[0.25, 0.75, 0.5, 0.5]),
            ],
            ..InferResponse::default()
        };
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[{"label":1,"scores":[0.25,0.75]},{"label":0,"scores":[0.5,0.5]}]}"#
        );
        let response = InferResponse {
            outputs: vec![
                int64("a", vec![2], &[1, 0]),
                int64("b", vec![3], &[1, 2, 3]),
            ],
            ..InferResponse::default()
        };
        let e = encode_response(&response).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("dimension 0"), "{e}");
        let response = InferResponse::default();
        assert_eq!(
            text(encode_response(&response).unwrap()),
            r#"{"predictions":[]}"#
        );
    }

    #[test]
    fn encode_request_forms() {
        let one = InferRequest::new(vec![int64("x", vec![2, 1], &[1, 2])]);
        assert_eq!(
            text(encode_request(&one).unwrap()),
            r#"{"instances":[[1],[2]]}"#
        );
        let named = InferRequest::new(vec![
            int64("a", vec![2], &[1, 2]),
            bytes("b", vec![2, 1], &[b"x", b"y"]),
        ]);
        assert_eq!(
            text(encode_request(&named).unwrap()),
            r#"{"instances":[{"a":1,"b":["x"]},{"a":2,"b":["y"]}]}"#
        );
        let columnar = InferRequest::new(vec![
            int64("a", vec![1], &[1]),
            int64("b", vec![2], &[1, 2]),
        ]);
        assert_eq!(
            text(encode_request(&columnar).unwrap()),
            r#"{"inputs":{"a":[1],"b":[1,2]}}"#
        );
        let scalar = InferRequest::new(vec![int64("s", vec![], &[5])]);
        assert_eq!(
            text(encode_request(&scalar).unwrap()),
            r#"{"inputs":{"s":5}}"#
        );
        assert!(encode_request(&InferRequest::default()).is_err());
    }

    #[test]
    fn request_round_trips() {
        let cases = [
            vec![int64("input-0", vec![2, 3], &[1, 2, 3, 4, 5, 6])],
            vec![fp64("input-0", vec![3], &[0.1, -2.5, 1e300])],
            vec![bytes("input-0", vec![2], &[b"text", &[0x80, 0x81]])],
            vec![
                int64("a", vec![2], &[1, 2]),
                fp64("b", vec![2, 2], &[1.5, 2.5, 3.5, 4.5]),
            ],
            vec![
                int64("a", vec![1], &[1]),
                bytes("b", vec![2], &[b"x", b"y"]),
            ],
            vec![fp64("s", vec![], &[0.5])],
            vec![int64("input-0", vec![2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7])],
            vec![tensor("input-0", DataType::Bool, vec![1, 3], vec![1, 0, 1])],
        ];
        for inputs in cases {
            let request = InferRequest::new(inputs);
            let body = encode_request(&request).unwrap();
            let decoded = decode_request(&body, &Limits::default()).unwrap();
            assert_eq!(decoded.inputs, request.inputs, "{}", text(body));
        }
    }

    #[test]
    fn response_round_trips() {
        let cases = [
            vec![int64("output-0", vec![2, 2], &[1, 2, 3, 4])],
            vec![fp64("output-0", vec![2], &[0.5, f64::INFINITY])],
            vec![bytes("output-0", vec![1, 2], &[b"ok", &[0xfe]])],
            vec![
                int64("label", vec![2], &[1, 0]),
                fp64("p", vec![2, 1], &[0.5, 0.25]),
            ],
            vec![int64("output-0", vec![0], &[])],
        ];
        for outputs in cases {
            let response = InferResponse {
                outputs,
                ..InferResponse::default()
            };
            let body = encode_response(&response).unwrap();
            let decoded = decode_response(&body, "m", &Limits::default()).unwrap();
            assert_eq!(decoded.model_name, "m");
            let mut expected = response.outputs.clone();
            if expected[0].element_count() == 0 {
                // An empty list carries no element type: it reads back as FP64.
                expected = vec![fp64("output-0", vec![0], &[])];
            }
            assert_eq!(decoded.outputs, expected, "{}", text(body));
        }
    }

    #[test]
    fn decode_response_forms() {
        let limits = Limits::default();
        let r = decode_response(br#"{"predictions": [[0.5, 0.5]], "x": 1}"#, "m", &limits).unwrap();
        assert_eq!(r.outputs[0].name, "output-0");
        assert_eq!(r.outputs[0].shape(), &[1, 2]);
        let r = decode_response(br#"{"predictions": {"a": [1], "b": "s"}}"#, "m", &limits).unwrap();
        assert_eq!(r.outputs.len(), 2);
        assert_eq!(r.outputs[0].shape(), &[1]);
        let r = decode_response(br#"{"predictions": 3}"#, "m", &limits).unwrap();
        assert_eq!(i64s(&r.outputs[0]), [3]);
        let e = decode_response(br#"{"outputs": []}"#, "m", &limits).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        assert!(e.message().contains("predictions"), "{e}");
        let e = decode_response(br#"{"predictions": [[1], [2, 3]]}"#, "m", &limits).unwrap_err();
        assert!(e.message().starts_with("prediction 1: "), "{e}");
    }
}
