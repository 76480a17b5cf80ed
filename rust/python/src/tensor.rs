//! `tensorgate.Tensor`: a core tensor seen from Python. numpy conversions are delegated to
//! `tensorgate._numpy`, which owns the datatype ↔ dtype table.

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use tensorgate_core::tensor::bytes_elements;
use tensorgate_core::{DataType, Limits, Tensor as CoreTensor};

use crate::buffer::Buffer;
use crate::error::to_py;
use crate::request::{parameters_from_py, parameters_to_py};

/// A named, typed, shaped tensor: `Tensor(name, datatype, shape, data, parameters=None)`.
///
/// `data` is a bytes-like object holding the raw little-endian form (BYTES: each element
/// prefixed by its u32 little-endian length), a numpy array or nested lists (converted to
/// `datatype`), or for BYTES a sequence of `bytes`/`str`.
#[pyclass(frozen, eq, module = "tensorgate._core")]
#[derive(Debug, PartialEq)]
pub struct Tensor {
    pub inner: CoreTensor,
}

fn numpy_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    HELPERS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("tensorgate._numpy")?.unbind())
        })
        .map(|helpers| helpers.bind(py))
}

/// A read-only numpy view of a core tensor's data, zero-copy for every fixed-size datatype
/// (BF16 needs `ml_dtypes`); BYTES gives an object array of `bytes`.
pub(crate) fn numpy_view<'py>(py: Python<'py>, tensor: &CoreTensor) -> PyResult<Bound<'py, PyAny>> {
    let helpers = numpy_helpers(py)?;
    let shape = PyTuple::new(py, tensor.shape())?;
    if tensor.datatype() == DataType::Bytes {
        let elements = PyList::empty(py);
        for element in tensor.bytes_elements() {
            elements.append(PyBytes::new(py, &element))?;
        }
        return helpers.call_method1("bytes_array", (elements, shape));
    }
    let raw = Buffer::new(tensor.data().clone());
    helpers.call_method1("view", (raw, tensor.datatype().as_str(), shape))
}

#[pymethods]
impl Tensor {
    #[new]
    #[pyo3(signature = (name, datatype, shape, data, parameters = None))]
    fn new(
        py: Python<'_>,
        name: String,
        datatype: &str,
        shape: Vec<usize>,
        data: &Bound<'_, PyAny>,
        parameters: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let datatype: DataType = datatype.parse().map_err(to_py)?;
        let raw = raw_data(py, datatype, data)?;
        // Built from the caller's own data, not decoded from the network: no size limits.
        let mut inner =
            CoreTensor::new(name, datatype, shape, raw, &Limits::UNLIMITED).map_err(to_py)?;
        if let Some(parameters) = parameters {
            inner.parameters = parameters_from_py(parameters)?;
        }
        Ok(Self { inner })
    }

    /// Builds a tensor from a numpy array (copied once into the tensor). The datatype is taken
    /// from the array's dtype unless given.
    #[staticmethod]
    #[pyo3(signature = (name, array, datatype = None))]
    pub(crate) fn from_numpy(
        py: Python<'_>,
        name: String,
        array: &Bound<'_, PyAny>,
        datatype: Option<String>,
    ) -> PyResult<Self> {
        let helpers = numpy_helpers(py)?;
        let array = helpers.call_method1("asarray", (array,))?;
        let datatype: String = match datatype {
            Some(datatype) => datatype,
            None => helpers.call_method1("datatype_of", (&array,))?.extract()?,
        };
        let shape: Vec<usize> = array.getattr("shape")?.extract()?;
        Self::new(py, name, &datatype, shape, &array, None)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn datatype(&self) -> &'static str {
        self.inner.datatype().as_str()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.shape())
    }

    #[getter]
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        parameters_to_py(py, &self.inner.parameters)
    }

    /// The raw little-endian bytes (BYTES: length-prefixed elements), zero-copy.
    #[getter]
    fn raw(&self) -> Buffer {
        Buffer::new(self.inner.data().clone())
    }

    /// A read-only numpy view of the data, zero-copy for every fixed-size datatype (BF16 needs
    /// `ml_dtypes`); BYTES gives an object array of `bytes`.
    fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        numpy_view(py, &self.inner)
    }

    fn __len__(&self) -> usize {
        self.inner.rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "Tensor(name={:?}, datatype={:?}, shape={:?})",
            self.inner.name,
            self.inner.datatype().as_str(),
            self.inner.shape()
        )
    }
}

/// The raw form of `data`: a bytes-like object as is, a sequence of `bytes`/`str` for BYTES,
/// anything else through numpy. A numpy array is always converted to `datatype`, never taken
/// as raw bytes: a `uint8` array also exports a byte buffer, but holds values, not raw bytes.
fn raw_data(py: Python<'_>, datatype: DataType, data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let helpers = numpy_helpers(py)?;
    if !helpers.call_method1("is_array", (data,))?.is_truthy()?
        && let Ok(buffer) = PyBuffer::<u8>::get(data)
    {
        return Ok(Bytes::from(buffer.to_vec(py)?));
    }
    let converted = helpers.call_method1("to_raw", (data, datatype.as_str()))?;
    if datatype == DataType::Bytes {
        return bytes_elements_from_py(&converted);
    }
    Ok(Bytes::from(PyBuffer::<u8>::get(&converted)?.to_vec(py)?))
}

fn bytes_elements_from_py(elements: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let mut raw = Vec::new();
    for element in elements.try_iter()? {
        let element = element?;
        let result = if let Ok(text) = element.cast::<PyString>() {
            bytes_elements::push(&mut raw, text.to_str()?.as_bytes())
        } else if let Ok(bytes) = element.cast::<PyBytes>() {
            bytes_elements::push(&mut raw, bytes.as_bytes())
        } else {
            return Err(PyTypeError::new_err(format!(
                "BYTES elements must be bytes or str, not {}",
                element.get_type().name()?
            )));
        };
        result.map_err(to_py)?;
    }
    Ok(Bytes::from(raw))
}
