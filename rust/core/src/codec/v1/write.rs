//! Writing tensors as V1 JSON: nested lists by shape, named rows, b64 for non-UTF-8 BYTES.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::codec::json_write;
use crate::error::{Error, Result};
use crate::tensor::{DataType, InferRequest, InferResponse, Tensor};

use super::B64;

/// A rough JSON size of a tensor, to size the output buffer once.
/// Encodes V2 outputs as a V1 response, `{"predictions": ...}`.
pub fn encode_response(response: &InferResponse) -> Result<Vec<u8>> {
    let outputs = &response.outputs;
    let mut out = Vec::with_capacity(32 + outputs.iter().map(json_size).sum::<usize>());
    out.extend_from_slice(b"{\"predictions\":");
    match outputs.as_slice() {
        [] => out.extend_from_slice(b"[]"),
        [output] => Cursor::new(output).nested(&mut out, output.shape())?,
        // Rows would start `{"b64": "<string>", ...}` and read back as one binary value.
        [first, ..] if reads_as_b64(first) => write_columns(&mut out, outputs)?,
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
        // Rows only when there is at least one: V1 rejects `"instances": []`.
        [input] if input.shape().first().is_some_and(|&rows| rows > 0) => {
            out.extend_from_slice(b"{\"instances\":");
            Cursor::new(input).nested(&mut out, input.shape())?;
        }
        _ => match shared_rows(inputs) {
            Some(rows) if rows > 0 && inputs.len() > 1 && !reads_as_b64(&inputs[0]) => {
                out.extend_from_slice(b"{\"instances\":");
                write_named_rows(&mut out, inputs, rows)?;
            }
            _ => {
                out.extend_from_slice(b"{\"inputs\":");
                write_columns(&mut out, inputs)?;
            }
        },
    }
    out.push(b'}');
    Ok(out)
}

/// A capacity hint for a tensor's V1 JSON, so the buffer is sized once.
fn json_size(tensor: &Tensor) -> usize {
    16 + tensor.name.len() * 6 + json_write::max_data_len(tensor)
}

/// Writes `{"<name>": <nested>, ...}`: every tensor whole (the columnar form).
fn write_columns(out: &mut Vec<u8>, tensors: &[Tensor]) -> Result<()> {
    out.push(b'{');
    for (i, tensor) in tensors.iter().enumerate() {
        json_write::key(out, &tensor.name, i == 0);
        Cursor::new(tensor).nested(out, tensor.shape())?;
    }
    out.push(b'}');
    Ok(())
}

/// Dimension 0 shared by all `tensors` (all of rank ≥ 1), if any.
fn shared_rows(tensors: &[Tensor]) -> Option<usize> {
    let rows = *tensors.first()?.shape().first()?;
    tensors
        .iter()
        .all(|t| t.shape().first() == Some(&rows))
        .then_some(rows)
}

/// Whether `tensor`, first in a named row, would make the row `{"b64": "<string>", ...}`, which
/// V1 reads as a binary value rather than a tensor named `b64`.
fn reads_as_b64(tensor: &Tensor) -> bool {
    tensor.name == B64 && tensor.datatype() == DataType::Bytes && tensor.shape().len() == 1
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
