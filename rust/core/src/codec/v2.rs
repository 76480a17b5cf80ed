//! V2 REST: JSON bodies and the binary tensor data extension, both directions.
//!
//! With the extension, the body is a JSON header of `Inference-Header-Content-Length` bytes
//! followed by the tensors whose `parameters.binary_data_size` is set, in tensor order. Those
//! tensors are zero-copy slices of the body.

use bytes::Bytes;
use jiter::{Jiter, Peek};

use super::json_read::{self, Reader, optional, syntax};
use super::json_write;
use super::{BINARY_DATA_SIZE, json_data};
use crate::copy;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::tensor::{
    BinaryOutputs, DataType, InferRequest, InferResponse, Parameter, Parameters, RequestedOutput,
    Tensor, check_data, element_count,
};

/// An encoded V2 body: the JSON header, and the binary section when any tensor is binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub json: Vec<u8>,
    /// `None` for a plain JSON body; otherwise the tensors to send after the header, in order.
    pub binary: Option<Vec<Bytes>>,
}

impl Encoded {
    /// The `Inference-Header-Content-Length` to send, when the body uses the extension.
    pub fn header_length(&self) -> Option<usize> {
        self.binary.as_ref().map(|_| self.json.len())
    }

    pub fn len(&self) -> usize {
        self.json.len() + self.binary.iter().flatten().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole body in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.len());
        body.extend_from_slice(&self.json);
        for chunk in self.binary.iter().flatten() {
            copy::put(&mut body, chunk);
        }
        body
    }
}

/// Decodes a V2 inference request; `header_length` is the `Inference-Header-Content-Length`.
pub fn decode_request(
    body: &Bytes,
    header_length: Option<usize>,
    limits: &Limits,
) -> Result<InferRequest> {
    let (json, mut binary) = split_body(body, header_length, limits)?;
    let mut jiter = Reader::new(json);
    let mut request = InferRequest::default();
    let mut inputs = None;
    let mut key = object_start(&mut jiter, "request")?;
    while let Some(name) = key {
        match name.as_str() {
            "id" => request.id = optional(&mut jiter, json_read::string)?,
            "parameters" => request.parameters = parameters(&mut jiter)?,
            "inputs" => inputs = Some(tensors(&mut jiter, &mut binary, "input", limits)?),
            "outputs" => {
                request.outputs = requested_outputs(&mut jiter)?;
            }
            _ => jiter.next_skip().map_err(syntax)?,
        }
        key = next_key(&mut jiter)?;
    }
    jiter.finish().map_err(syntax)?;
    binary.finish()?;
    request.inputs = inputs.ok_or_else(|| Error::bad_request("request has no 'inputs'"))?;
    request.check(limits)?;
    Ok(request)
}

/// Decodes a V2 inference response; `header_length` is the `Inference-Header-Content-Length`.
pub fn decode_response(
    body: &Bytes,
    header_length: Option<usize>,
    limits: &Limits,
) -> Result<InferResponse> {
    let (json, mut binary) = split_body(body, header_length, limits)?;
    let mut jiter = Reader::new(json);
    let mut response = InferResponse::default();
    let mut outputs = None;
    let mut key = object_start(&mut jiter, "response")?;
    while let Some(name) = key {
        match name.as_str() {
            "model_name" => {
                response.model_name = optional(&mut jiter, json_read::string)?.unwrap_or_default();
            }
            "model_version" => response.model_version = optional(&mut jiter, json_read::string)?,
            "id" => response.id = optional(&mut jiter, json_read::string)?,
            "parameters" => response.parameters = parameters(&mut jiter)?,
            "outputs" => outputs = Some(tensors(&mut jiter, &mut binary, "output", limits)?),
            _ => jiter.next_skip().map_err(syntax)?,
        }
        key = next_key(&mut jiter)?;
    }
    jiter.finish().map_err(syntax)?;
    binary.finish()?;
    response.outputs = outputs.ok_or_else(|| Error::bad_request("response has no 'outputs'"))?;
    response.check(limits)?;
    Ok(response)
}

/// Encodes a V2 request. With `binary`, every input goes in the binary section; without, inputs
/// are JSON unless JSON cannot hold them (FP16, BF16, non-UTF-8 BYTES).
pub fn encode_request(request: &InferRequest, binary: bool) -> Result<Encoded> {
    let mut out = Vec::with_capacity(256 + request.inputs.iter().map(json_size).sum::<usize>());
    let mut chunks = Vec::new();
    out.push(b'{');
    let mut first = true;
    if let Some(id) = &request.id {
        json_write::key(&mut out, "id", first);
        json_write::string(&mut out, id);
        first = false;
    }
    if !request.parameters.is_empty() {
        json_write::key(&mut out, "parameters", first);
        json_write::parameters(&mut out, &request.parameters);
        first = false;
    }
    json_write::key(&mut out, "inputs", first);
    write_tensors(&mut out, &mut chunks, &request.inputs, |_| binary)?;
    if !request.outputs.is_empty() {
        out.extend_from_slice(b",\"outputs\":[");
        for (i, output) in request.outputs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            json_write::key(&mut out, "name", true);
            json_write::string(&mut out, &output.name);
            if !output.parameters.is_empty() {
                json_write::key(&mut out, "parameters", false);
                json_write::parameters(&mut out, &output.parameters);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(finish(out, chunks))
}

/// Encodes a V2 response, putting the outputs `binary` selects (and those JSON cannot hold) in
/// the binary section.
pub fn encode_response(response: &InferResponse, binary: &BinaryOutputs) -> Result<Encoded> {
    let mut out = Vec::with_capacity(256 + response.outputs.iter().map(json_size).sum::<usize>());
    let mut chunks = Vec::new();
    out.push(b'{');
    json_write::key(&mut out, "model_name", true);
    json_write::string(&mut out, &response.model_name);
    if let Some(version) = &response.model_version {
        json_write::key(&mut out, "model_version", false);
        json_write::string(&mut out, version);
    }
    if let Some(id) = &response.id {
        json_write::key(&mut out, "id", false);
        json_write::string(&mut out, id);
    }
    if !response.parameters.is_empty() {
        json_write::key(&mut out, "parameters", false);
        json_write::parameters(&mut out, &response.parameters);
    }
    json_write::key(&mut out, "outputs", false);
    write_tensors(&mut out, &mut chunks, &response.outputs, |name| {
        binary.is_binary(name)
    })?;
    out.push(b'}');
    Ok(finish(out, chunks))
}

fn finish(json: Vec<u8>, chunks: Vec<Bytes>) -> Encoded {
    let binary = (!chunks.is_empty()).then_some(chunks);
    Encoded { json, binary }
}

/// A rough JSON size of a tensor, to size the output buffer once.
fn json_size(tensor: &Tensor) -> usize {
    128 + tensor.name.len() * 6 + json_write::max_data_len(tensor)
}

fn write_tensors(
    out: &mut Vec<u8>,
    chunks: &mut Vec<Bytes>,
    tensors: &[Tensor],
    wants_binary: impl Fn(&str) -> bool,
) -> Result<()> {
    out.push(b'[');
    for (i, tensor) in tensors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let binary = wants_binary(&tensor.name) || !json_write::representable(tensor);
        write_tensor(out, tensor, binary)?;
        if binary {
            chunks.push(tensor.data().clone());
        }
    }
    out.push(b']');
    Ok(())
}

fn write_tensor(out: &mut Vec<u8>, tensor: &Tensor, binary: bool) -> Result<()> {
    out.push(b'{');
    json_write::key(out, "name", true);
    json_write::string(out, &tensor.name);
    json_write::key(out, "datatype", false);
    json_write::string(out, tensor.datatype().as_str());
    json_write::key(out, "shape", false);
    out.push(b'[');
    for (i, &dim) in tensor.shape().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_write::int(out, dim);
    }
    out.push(b']');
    // The tensor's own binary_data_size (kept by a caller) describes the wire form we are
    // not necessarily writing: skip it, and add ours when the tensor goes binary. Written from
    // the entries, without copying the parameter map.
    let size = binary
        .then(|| i64::try_from(tensor.data().len()).map(Parameter::Int64))
        .transpose()
        .map_err(|_| Error::internal("tensor larger than i64::MAX bytes"))?;
    let own = tensor
        .parameters
        .iter()
        .filter(|(name, _)| name.as_str() != BINARY_DATA_SIZE)
        .map(|(name, value)| (name.as_str(), value));
    let ours = size.as_ref().map(|size| (BINARY_DATA_SIZE, size));
    if ours.is_some() || own.clone().next().is_some() {
        json_write::key(out, "parameters", false);
        json_write::parameter_entries(out, own.chain(ours));
    }
    if !binary {
        json_write::key(out, "data", false);
        json_write::data(out, tensor)?;
    }
    out.push(b'}');
    Ok(())
}

/// Splits a body into its JSON header and binary section, checking the header length.
fn split_body<'b>(
    body: &'b Bytes,
    header_length: Option<usize>,
    limits: &Limits,
) -> Result<(&'b [u8], BinarySection)> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::too_large(format!(
            "body of {} bytes is over the limit of {}",
            body.len(),
            limits.max_body_bytes
        )));
    }
    match header_length {
        None => Ok((body, BinarySection { rest: None })),
        Some(0) => Err(Error::bad_request(
            "Inference-Header-Content-Length 0 (a raw binary body without a JSON header) is not \
             supported",
        )),
        Some(length) if length > body.len() => Err(Error::bad_request(format!(
            "Inference-Header-Content-Length {length} is beyond the body of {} bytes",
            body.len()
        ))),
        Some(length) => Ok((
            &body[..length],
            BinarySection {
                rest: Some(body.slice(length..)),
            },
        )),
    }
}

/// The unread part of the binary section.
struct BinarySection {
    rest: Option<Bytes>,
}

impl BinarySection {
    fn take(&mut self, size: usize) -> Result<Bytes> {
        let rest = self.rest.as_mut().ok_or_else(|| {
            Error::bad_request(
                "binary_data_size is set but the request has no Inference-Header-Content-Length",
            )
        })?;
        if size > rest.len() {
            return Err(Error::bad_request(format!(
                "binary_data_size {size} is beyond the {} bytes left in the binary section",
                rest.len()
            )));
        }
        Ok(rest.split_to(size))
    }

    fn finish(self) -> Result<()> {
        match self.rest {
            Some(rest) if !rest.is_empty() => Err(Error::bad_request(format!(
                "binary section has {} bytes that no binary_data_size accounts for",
                rest.len()
            ))),
            _ => Ok(()),
        }
    }
}

fn object_start(jiter: &mut Jiter<'_>, what: &str) -> Result<Option<String>> {
    match jiter.peek().map_err(syntax)? {
        Peek::Object => Ok(jiter.known_object().map_err(syntax)?.map(str::to_owned)),
        _ => Err(Error::bad_request(format!("{what} must be a JSON object"))),
    }
}

fn next_key(jiter: &mut Jiter<'_>) -> Result<Option<String>> {
    Ok(jiter.next_key().map_err(syntax)?.map(str::to_owned))
}

fn parameters(jiter: &mut Jiter<'_>) -> Result<Parameters> {
    Ok(optional(jiter, json_read::parameters)?.unwrap_or_default())
}

fn requested_outputs(reader: &mut Reader<'_>) -> Result<Vec<RequestedOutput>> {
    // `outputs` is optional: null means none.
    if reader.peek().map_err(syntax)? == Peek::Null {
        return reader.known_null().map(|()| Vec::new()).map_err(syntax);
    }
    array(reader, "outputs", |jiter, index| {
        let mut output = RequestedOutput::new(String::new());
        let mut name = None;
        let mut key = object_start(jiter, "outputs[] entry")?;
        while let Some(field) = key {
            match field.as_str() {
                "name" => name = optional(jiter, json_read::string)?,
                "parameters" => output.parameters = parameters(jiter)?,
                _ => jiter.next_skip().map_err(syntax)?,
            }
            key = next_key(jiter)?;
        }
        output.name =
            name.ok_or_else(|| Error::bad_request(format!("outputs[{index}] has no 'name'")))?;
        Ok(output)
    })
}

/// Reads a JSON array with `item` called on each element.
fn array<'j, T>(
    jiter: &mut Reader<'j>,
    what: &str,
    mut item: impl FnMut(&mut Reader<'j>, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let mut items = Vec::new();
    let mut next = match jiter.peek().map_err(syntax)? {
        Peek::Array => jiter.known_array().map_err(syntax)?,
        _ => return Err(Error::bad_request(format!("'{what}' must be an array"))),
    };
    while next.is_some() {
        items.push(item(jiter, items.len())?);
        next = jiter.array_step().map_err(syntax)?;
    }
    Ok(items)
}

fn tensors(
    reader: &mut Reader<'_>,
    binary: &mut BinarySection,
    what: &str,
    limits: &Limits,
) -> Result<Vec<Tensor>> {
    array(reader, &format!("{what}s"), |reader, index| {
        if index >= limits.max_tensors {
            return Err(Error::bad_request(format!(
                "more than {} {what}s, over the limit",
                limits.max_tensors
            )));
        }
        let mut fields = TensorFields::default();
        let read = fields.read(reader, limits);
        // Name the tensor in errors once its name is known, else its position.
        let label = match &fields.name {
            Some(name) => format!("{what} '{name}'"),
            None => format!("{what}s[{index}]"),
        };
        read.and_then(|()| fields.into_tensor(binary, limits))
            .map_err(|e| e.context(label))
    })
}

/// Where a tensor's data is: parsed in place, to be parsed once the datatype is known (the
/// object listed `data` before `datatype` or `shape`), or in the binary section.
#[derive(Default)]
enum Data<'j> {
    #[default]
    Missing,
    Parsed(Vec<u8>),
    Deferred(&'j [u8]),
}

#[derive(Default)]
struct TensorFields<'j> {
    name: Option<String>,
    shape: Option<Vec<usize>>,
    datatype: Option<DataType>,
    parameters: Parameters,
    data: Data<'j>,
}

impl<'j> TensorFields<'j> {
    /// Reads the fields of a tensor object into `self`, so a caller can name the tensor in
    /// an error even when reading stopped half way.
    fn read(&mut self, jiter: &mut Reader<'j>, limits: &Limits) -> Result<()> {
        let mut key = object_start(jiter, "tensor")?;
        while let Some(field) = key {
            match field.as_str() {
                "name" => {
                    self.name = Some(json_read::next_string(jiter).map_err(|e| e.context("name"))?);
                }
                // `data` is parsed as soon as `shape` and `datatype` are known, so a second
                // `shape`, `datatype` or `data` would leave data that does not match the tensor.
                "shape" | "datatype" | "data" if self.has(&field) => {
                    return Err(Error::bad_request(format!("has '{field}' more than once")));
                }
                "shape" => self.shape = Some(shape(jiter, limits)?),
                "datatype" => {
                    let text = json_read::next_string(jiter).map_err(|e| e.context("datatype"))?;
                    self.datatype = Some(text.parse()?);
                }
                "parameters" => self.parameters = parameters(jiter)?,
                "data" => self.data = self.read_data(jiter, limits)?,
                _ => jiter.next_skip().map_err(syntax)?,
            }
            key = next_key(jiter)?;
        }
        Ok(())
    }

    /// Whether `field` (`shape`, `datatype` or `data`) has been read already.
    fn has(&self, field: &str) -> bool {
        match field {
            "shape" => self.shape.is_some(),
            "datatype" => self.datatype.is_some(),
            _ => !matches!(self.data, Data::Missing),
        }
    }

    fn read_data(&self, reader: &mut Reader<'j>, limits: &Limits) -> Result<Data<'j>> {
        if let (Some(shape), Some(datatype)) = (&self.shape, self.datatype) {
            let count = element_count(shape, limits)?;
            let (data, used) = json_data::parse(reader.rest(), datatype, count, limits)?;
            reader.skip(used);
            return Ok(Data::Parsed(data));
        }
        reader.skip_value().map(Data::Deferred)
    }

    fn into_tensor(self, binary: &mut BinarySection, limits: &Limits) -> Result<Tensor> {
        let name = self
            .name
            .ok_or_else(|| Error::bad_request("has no 'name'"))?;
        let shape = self
            .shape
            .ok_or_else(|| Error::bad_request("has no 'shape'"))?;
        let datatype = self
            .datatype
            .ok_or_else(|| Error::bad_request("has no 'datatype'"))?;
        let mut parameters = self.parameters;
        let count = element_count(&shape, limits)?;
        let binary_size = parameters
            .shift_remove(BINARY_DATA_SIZE)
            .map(binary_data_size)
            .transpose()?;
        let data = match (self.data, binary_size) {
            (Data::Missing, Some(size)) => {
                let data = binary.take(size)?;
                check_data(datatype, &shape, count, &data, limits)?;
                data
            }
            (Data::Missing, None) => {
                return Err(Error::bad_request(
                    "has neither 'data' nor binary_data_size",
                ));
            }
            (_, Some(_)) => {
                return Err(Error::bad_request("has both 'data' and binary_data_size"));
            }
            (Data::Parsed(data), None) => Bytes::from(data),
            (Data::Deferred(text), None) => {
                let (data, used) = json_data::parse(text, datatype, count, limits)?;
                if used != text.len() {
                    return Err(Error::bad_request(
                        "invalid JSON: trailing characters in data",
                    ));
                }
                Bytes::from(data)
            }
        };
        Ok(Tensor::from_validated(
            name, datatype, shape, data, parameters,
        ))
    }
}

fn binary_data_size(value: Parameter) -> Result<usize> {
    let size = match value {
        Parameter::Int64(v) => usize::try_from(v).ok(),
        Parameter::Uint64(v) => usize::try_from(v).ok(),
        _ => None,
    };
    size.ok_or_else(|| Error::bad_request("binary_data_size must be a non-negative integer"))
}

fn shape(jiter: &mut Reader<'_>, limits: &Limits) -> Result<Vec<usize>> {
    let dims = array(jiter, "shape", |jiter, index| {
        if index >= limits.max_rank {
            return Err(Error::bad_request(format!(
                "shape has more dimensions than the limit of {}",
                limits.max_rank
            )));
        }
        let peek = jiter.peek().map_err(syntax)?;
        let text = jiter
            .known_number_bytes(peek)
            .map_err(|_| Error::bad_request("shape must be an array of non-negative integers"))?;
        std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "shape dimension {} is not a non-negative integer",
                    String::from_utf8_lossy(text)
                ))
            })
    })?;
    Ok(dims)
}
