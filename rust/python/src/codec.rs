//! The `tensorgate.codec` functions. Bodies arrive as `bytes` and are wrapped, not copied, so
//! binary tensors decoded from them are views of the caller's `bytes` object. Decoding and
//! encoding run with the GIL released.

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBool, PyBytes};
use tensorgate_core::codec::{Encoded, grpc, v1, v2};
use tensorgate_core::tensor::BinaryOutputs;
use tensorgate_core::{Limits as CoreLimits, Result as CoreResult};

use crate::buffer::joined;
use crate::error::to_py;
use crate::request::{InferRequest, InferResponse};

/// Bounds applied when decoding untrusted payloads. Every field defaults to a safe value.
#[pyclass(frozen, eq, module = "tensorgate._core")]
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct Limits {
    inner: CoreLimits,
}

#[pymethods]
impl Limits {
    #[new]
    #[pyo3(signature = (*, max_body_bytes = CoreLimits::DEFAULT.max_body_bytes,
        max_tensor_elements = CoreLimits::DEFAULT.max_tensor_elements,
        max_rank = CoreLimits::DEFAULT.max_rank, max_tensors = CoreLimits::DEFAULT.max_tensors,
        max_bytes_element_len = CoreLimits::DEFAULT.max_bytes_element_len,
        max_json_depth = CoreLimits::DEFAULT.max_json_depth))]
    fn new(
        max_body_bytes: usize,
        max_tensor_elements: usize,
        max_rank: usize,
        max_tensors: usize,
        max_bytes_element_len: usize,
        max_json_depth: usize,
    ) -> Self {
        Self {
            inner: CoreLimits {
                max_body_bytes,
                max_tensor_elements,
                max_rank,
                max_tensors,
                max_bytes_element_len,
                max_json_depth,
            },
        }
    }

    #[getter]
    fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
    #[getter]
    fn max_tensor_elements(&self) -> usize {
        self.inner.max_tensor_elements
    }
    #[getter]
    fn max_rank(&self) -> usize {
        self.inner.max_rank
    }
    #[getter]
    fn max_tensors(&self) -> usize {
        self.inner.max_tensors
    }
    #[getter]
    fn max_bytes_element_len(&self) -> usize {
        self.inner.max_bytes_element_len
    }
    #[getter]
    fn max_json_depth(&self) -> usize {
        self.inner.max_json_depth
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

fn limits(limits: Option<&Limits>) -> CoreLimits {
    limits.map_or(CoreLimits::DEFAULT, |l| l.inner)
}

/// Runs `work` without the GIL and converts its error.
fn detached<T: Send>(py: Python<'_>, work: impl FnOnce() -> CoreResult<T> + Send) -> PyResult<T> {
    py.detach(work).map_err(to_py)
}

fn body(data: PyBackedBytes) -> Bytes {
    Bytes::from_owner(data)
}

type EncodedBody<'py> = (Bound<'py, PyBytes>, Option<usize>);

/// The body as one `bytes`, copied once from the JSON header and the tensors.
fn encoded<'py>(py: Python<'py>, encoded: &Encoded) -> PyResult<EncodedBody<'py>> {
    let json = std::iter::once(&encoded.json[..]);
    let chunks = encoded.binary.iter().flatten().map(|chunk| &chunk[..]);
    let body = joined(py, json.chain(chunks))?;
    Ok((body, encoded.header_length()))
}

/// Decodes a V2 REST inference request (JSON, or the binary tensor extension when
/// `header_length`, the `Inference-Header-Content-Length`, is given).
#[pyfunction]
#[pyo3(signature = (body, header_length = None, *, limits = None))]
fn decode_v2_request(
    py: Python<'_>,
    body: PyBackedBytes,
    header_length: Option<usize>,
    limits: Option<&Limits>,
) -> PyResult<InferRequest> {
    let (body, limits) = (self::body(body), self::limits(limits));
    let inner = detached(py, || v2::decode_request(&body, header_length, &limits))?;
    Ok(InferRequest { inner })
}

/// Encodes a V2 REST inference request; with `binary`, every input goes in the binary section.
/// Returns `(body, header_length)`, `header_length` being `None` for a plain JSON body.
#[pyfunction]
#[pyo3(signature = (request, binary = false))]
fn encode_v2_request<'py>(
    py: Python<'py>,
    request: &InferRequest,
    binary: bool,
) -> PyResult<EncodedBody<'py>> {
    let body = detached(py, || v2::encode_request(&request.inner, binary))?;
    encoded(py, &body)
}

/// Decodes a V2 REST inference response (JSON, or binary with `header_length`).
#[pyfunction]
#[pyo3(signature = (body, header_length = None, *, limits = None))]
fn decode_v2_response(
    py: Python<'_>,
    body: PyBackedBytes,
    header_length: Option<usize>,
    limits: Option<&Limits>,
) -> PyResult<InferResponse> {
    let (body, limits) = (self::body(body), self::limits(limits));
    let inner = detached(py, || v2::decode_response(&body, header_length, &limits))?;
    Ok(InferResponse { inner })
}

/// Encodes a V2 REST inference response. `binary_outputs`: `True`/`False` for every output, or
/// the names of the outputs to send binary. Returns `(body, header_length)`.
#[pyfunction]
#[pyo3(signature = (response, binary_outputs = None))]
fn encode_v2_response<'py>(
    py: Python<'py>,
    response: &InferResponse,
    binary_outputs: Option<&Bound<'py, PyAny>>,
) -> PyResult<EncodedBody<'py>> {
    let binary = binary_outputs_from_py(binary_outputs)?;
    let body = detached(py, || v2::encode_response(&response.inner, &binary))?;
    encoded(py, &body)
}

fn binary_outputs_from_py(value: Option<&Bound<'_, PyAny>>) -> PyResult<BinaryOutputs> {
    let Some(value) = value else {
        return Ok(BinaryOutputs::all(false));
    };
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(BinaryOutputs::all(flag.is_true()));
    }
    let mut binary = BinaryOutputs::all(false);
    for name in value.try_iter().map_err(|_| {
        PyTypeError::new_err("binary_outputs must be a bool or an iterable of output names")
    })? {
        binary = binary.with(name?.extract::<String>()?, true);
    }
    Ok(binary)
}

/// Decodes a V1 `{"instances": ...}` or `{"inputs": ...}` request into V2 tensors.
#[pyfunction]
#[pyo3(signature = (body, *, limits = None))]
fn decode_v1_request(
    py: Python<'_>,
    body: PyBackedBytes,
    limits: Option<&Limits>,
) -> PyResult<InferRequest> {
    let limits = self::limits(limits);
    let inner = detached(py, || v1::decode_request(&body, &limits))?;
    Ok(InferRequest { inner })
}

/// Encodes a request as V1 `{"instances": ...}` (or `{"inputs": ...}`).
#[pyfunction]
fn encode_v1_request<'py>(
    py: Python<'py>,
    request: &InferRequest,
) -> PyResult<Bound<'py, PyBytes>> {
    let body = detached(py, || v1::encode_request(&request.inner))?;
    joined(py, [&body[..]])
}

/// Decodes a V1 `{"predictions": ...}` response of model `model_name`.
#[pyfunction]
#[pyo3(signature = (body, model_name, *, limits = None))]
fn decode_v1_response(
    py: Python<'_>,
    body: PyBackedBytes,
    model_name: &str,
    limits: Option<&Limits>,
) -> PyResult<InferResponse> {
    let limits = self::limits(limits);
    let inner = detached(py, || v1::decode_response(&body, model_name, &limits))?;
    Ok(InferResponse { inner })
}

/// Encodes a response as V1 `{"predictions": ...}`.
#[pyfunction]
fn encode_v1_response<'py>(
    py: Python<'py>,
    response: &InferResponse,
) -> PyResult<Bound<'py, PyBytes>> {
    let body = detached(py, || v1::encode_response(&response.inner))?;
    joined(py, [&body[..]])
}

/// Decodes a serialized `inference.ModelInferRequest`; raw contents stay zero-copy.
#[pyfunction]
#[pyo3(signature = (data, *, limits = None))]
fn decode_grpc_request(
    py: Python<'_>,
    data: PyBackedBytes,
    limits: Option<&Limits>,
) -> PyResult<InferRequest> {
    let (data, limits) = (body(data), self::limits(limits));
    let inner = detached(py, || grpc::decode_request(data, &limits))?;
    Ok(InferRequest { inner })
}

/// Serializes a `ModelInferRequest`; the model name and version default to the request's own.
#[pyfunction]
#[pyo3(signature = (request, model_name = None, model_version = None))]
fn encode_grpc_request<'py>(
    py: Python<'py>,
    request: &InferRequest,
    model_name: Option<&str>,
    model_version: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let model_name = model_name
        .or(request.inner.model_name.as_deref())
        .unwrap_or_default();
    let model_version = model_version.or(request.inner.model_version.as_deref());
    let body = py.detach(|| grpc::encode_request(&request.inner, model_name, model_version));
    joined(py, [&body[..]])
}

/// Decodes a serialized `inference.ModelInferResponse`.
#[pyfunction]
#[pyo3(signature = (data, *, limits = None))]
fn decode_grpc_response(
    py: Python<'_>,
    data: PyBackedBytes,
    limits: Option<&Limits>,
) -> PyResult<InferResponse> {
    let (data, limits) = (body(data), self::limits(limits));
    let inner = detached(py, || grpc::decode_response(data, &limits))?;
    Ok(InferResponse { inner })
}

/// Serializes a `ModelInferResponse`, outputs in `raw_output_contents`.
#[pyfunction]
fn encode_grpc_response<'py>(
    py: Python<'py>,
    response: &InferResponse,
) -> PyResult<Bound<'py, PyBytes>> {
    let body = py.detach(|| grpc::encode_response(&response.inner));
    joined(py, [&body[..]])
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_v2_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_v2_request, m)?)?;
    m.add_function(wrap_pyfunction!(decode_v2_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_v2_response, m)?)?;
    m.add_function(wrap_pyfunction!(decode_v1_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_v1_request, m)?)?;
    m.add_function(wrap_pyfunction!(decode_v1_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_v1_response, m)?)?;
    m.add_function(wrap_pyfunction!(decode_grpc_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_grpc_request, m)?)?;
    m.add_function(wrap_pyfunction!(decode_grpc_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_grpc_response, m)?)?;
    Ok(())
}
