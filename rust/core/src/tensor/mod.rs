//! The tensor model shared by every codec: a named, typed, shaped block of little-endian bytes,
//! plus the request and response envelopes of the V2 protocol.

pub mod bytes_elements;
mod cast;
mod datatype;
mod request;
mod shape;

use bytes::Bytes;
use indexmap::IndexMap;

pub use datatype::DataType;
pub use request::{BinaryOutputs, InferRequest, InferResponse, RequestedOutput};
pub use shape::{element_count, shape_from_wire};

use crate::error::{Error, Result, ResultExt};
use crate::limits::Limits;

/// A V2 parameter value. JSON numbers become `Int64` when integral and in range, `Uint64` when
/// integral and above `i64::MAX`, and `Double` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum Parameter {
    Bool(bool),
    Int64(i64),
    Uint64(u64),
    Double(f64),
    String(String),
}

/// Parameters keep the order they arrived in, so re-encoding is stable.
pub type Parameters = IndexMap<String, Parameter>;

/// One tensor. `data` is the raw little-endian, row-major form (BYTES: length-prefixed
/// elements). It is a zero-copy view of the request body when the wire form was raw (binary
/// extension, gRPC raw contents), and a buffer owned by the tensor when it came from JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub parameters: Parameters,
    datatype: DataType,
    shape: Vec<usize>,
    data: Bytes,
}

impl Tensor {
    /// Builds a tensor after checking the shape against the limits and `data` against
    /// shape × datatype.
    pub fn new(
        name: impl Into<String>,
        datatype: DataType,
        shape: Vec<usize>,
        data: Bytes,
        limits: &Limits,
    ) -> Result<Self> {
        let name = name.into();
        let count = element_count(&shape, limits).context_with(|| format!("tensor '{name}'"))?;
        check_data(datatype, &shape, count, &data, limits)
            .context_with(|| format!("tensor '{name}'"))?;
        Ok(Self {
            name,
            parameters: Parameters::new(),
            datatype,
            shape,
            data,
        })
    }

    /// Builds a tensor from parts the caller has already validated (decoders that checked the
    /// data while producing it, and slices of validated tensors).
    pub(crate) fn from_validated(
        name: String,
        datatype: DataType,
        shape: Vec<usize>,
        data: Bytes,
        parameters: Parameters,
    ) -> Self {
        Self {
            name,
            parameters,
            datatype,
            shape,
            data,
        }
    }

    #[must_use]
    pub fn with_parameters(mut self, parameters: Parameters) -> Self {
        self.parameters = parameters;
        self
    }

    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The raw form: little-endian elements, or length-prefixed BYTES elements.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements of a BYTES tensor as zero-copy slices (empty for other datatypes).
    pub fn bytes_elements(&self) -> bytes_elements::Elements {
        if self.datatype == DataType::Bytes {
            bytes_elements::Elements::new(self.data.clone())
        } else {
            bytes_elements::Elements::new(Bytes::new())
        }
    }

    /// Rows along dimension 0 (a scalar counts as one row).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// Checks that raw `data` holds exactly `count` elements of `datatype`.
pub(crate) fn check_data(
    datatype: DataType,
    shape: &[usize],
    count: usize,
    data: &[u8],
    limits: &Limits,
) -> Result<()> {
    match datatype.element_size() {
        Some(size) => {
            // count <= max_tensor_elements and size <= 8, so this cannot overflow.
            let expected = count.saturating_mul(size);
            if data.len() != expected {
                return Err(Error::bad_request(format!(
                    "shape {shape:?} of {datatype} needs {expected} bytes, got {}",
                    data.len()
                )));
            }
            // BOOL is one byte of 0 or 1; any other byte would not survive a JSON round trip.
            if datatype == DataType::Bool
                && let Some(index) = data.iter().position(|&b| b > 1)
            {
                return Err(Error::bad_request(format!(
                    "BOOL element {index} is the byte {}, not 0 or 1",
                    data[index]
                )));
            }
            Ok(())
        }
        None => bytes_elements::validate(data, count, limits)
            .context_with(|| format!("shape {shape:?} of BYTES")),
    }
}
