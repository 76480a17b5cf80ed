//! numpy arrays in and out: a caller's inputs read into core tensors (one copy, through the
//! buffer protocol) and the function's answer split back into per-caller views (the batch
//! goes to the function as views from `crate::tensor::numpy_view`).

use std::ffi::CStr;

use pyo3::buffer::{ElementType, PyUntypedBuffer};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PySlice, PyString, PyType};
use tensorgate_core::{DataType, Limits, Tensor as CoreTensor};

use super::{Column, Errors};
use crate::buffer::copy_contiguous;
use crate::error::to_py;
use crate::tensor::Tensor;

fn ndarray_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static NDARRAY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    NDARRAY.import(py, "numpy", "ndarray")
}

fn numpy_asarray(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ASARRAY.import(py, "numpy", "asarray")
}

/// The V2 datatype of a native little-endian buffer format, for the fast path.
fn datatype_of_format(format: &CStr) -> Option<DataType> {
    if !cfg!(target_endian = "little") {
        return None;
    }
    match format.to_bytes() {
        [_] | [b'<' | b'=' | b'@', _] => {}
        _ => return None,
    }
    Some(match ElementType::from_format(format) {
        ElementType::Bool => DataType::Bool,
        ElementType::UnsignedInteger { bytes: 1 } => DataType::Uint8,
        ElementType::UnsignedInteger { bytes: 2 } => DataType::Uint16,
        ElementType::UnsignedInteger { bytes: 4 } => DataType::Uint32,
        ElementType::UnsignedInteger { bytes: 8 } => DataType::Uint64,
        ElementType::SignedInteger { bytes: 1 } => DataType::Int8,
        ElementType::SignedInteger { bytes: 2 } => DataType::Int16,
        ElementType::SignedInteger { bytes: 4 } => DataType::Int32,
        ElementType::SignedInteger { bytes: 8 } => DataType::Int64,
        ElementType::Float { bytes: 2 } => DataType::Fp16,
        ElementType::Float { bytes: 4 } => DataType::Fp32,
        ElementType::Float { bytes: 8 } => DataType::Fp64,
        _ => return None,
    })
}

/// One input array as a core tensor (one copy). Contiguous native numeric arrays are read
/// through the buffer protocol; anything else goes through `Tensor.from_numpy` (BF16, strings,
/// other byte orders, non-contiguous arrays), which refuses dtypes V2 has no datatype for.
fn tensor_of(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<CoreTensor> {
    if value.is_instance(ndarray_type(py)?)?
        && let Ok(buffer) = PyUntypedBuffer::get(value)
        && buffer.is_c_contiguous()
        && let Some(datatype) = datatype_of_format(buffer.format())
        && datatype.element_size() == Some(buffer.item_size())
    {
        let data = copy_contiguous(py, &buffer);
        let shape = buffer.shape().to_vec();
        drop(buffer);
        return CoreTensor::new(name, datatype, shape, data, &Limits::UNLIMITED).map_err(to_py);
    }
    Tensor::from_numpy(py, name.to_owned(), value, None)
        .map(|tensor| tensor.inner)
        .map_err(|e| {
            if e.is_instance_of::<PyTypeError>(py) {
                PyTypeError::new_err(format!("input '{name}': {}", e.value(py)))
            } else {
                e
            }
        })
}

/// The caller's inputs: sorted columns, tensors and rows.
pub(super) fn read_inputs(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
) -> PyResult<(Vec<Column>, Vec<CoreTensor>, usize)> {
    let inputs = inputs.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "inputs must be a dict of numpy arrays, not {}",
            inputs
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let mut tensors = Vec::with_capacity(inputs.len());
    for (name, value) in inputs.iter() {
        let name = name
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("input names must be str"))?;
        tensors.push(tensor_of(py, name.to_str()?, &value)?);
    }
    tensors.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let Some(first) = tensors.first() else {
        return Err(PyValueError::new_err("inputs must hold at least one array"));
    };
    let rows = first.rows();
    let mut key = Vec::with_capacity(tensors.len());
    for tensor in &tensors {
        let Some((&dim0, trailing)) = tensor.shape().split_first() else {
            return Err(PyValueError::new_err(format!(
                "input '{}' is a scalar: batching needs a dimension 0",
                tensor.name
            )));
        };
        if dim0 != rows {
            return Err(PyValueError::new_err(format!(
                "inputs must have the same number of rows (dimension 0): '{}' has {}, '{}' has {dim0}",
                first.name, rows, tensor.name
            )));
        }
        key.push(Column {
            name: tensor.name.clone(),
            datatype: tensor.datatype(),
            trailing: trailing.to_vec(),
        });
    }
    Ok((key, tensors, rows))
}

/// The rows of each member, split out of the function's answer as views.
pub(super) fn split_outputs(
    py: Python<'_>,
    errors: &Errors,
    outputs: &Bound<'_, PyAny>,
    rows: &[usize],
) -> PyResult<Vec<Py<PyAny>>> {
    let output_error = |message: String| PyErr::from_type(errors.output.bind(py).clone(), message);
    let total: usize = rows.iter().sum();
    let Ok(outputs) = outputs.cast::<PyDict>() else {
        return Err(output_error(format!(
            "the batch function must return a dict of arrays, not {}",
            outputs
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        )));
    };
    let ndarray = ndarray_type(py)?;
    let mut columns = Vec::with_capacity(outputs.len());
    for (name, value) in outputs.iter() {
        let array = if value.is_instance(ndarray)? {
            value
        } else {
            numpy_asarray(py)?.call1((value,))?
        };
        let got = match array.len() {
            Ok(got) => got,
            Err(_) => {
                return Err(output_error(format!(
                    "output '{name}' is a scalar: the batch function must return arrays with the \
                     batch's {total} rows on dimension 0"
                )));
            }
        };
        if got != total {
            return Err(output_error(format!(
                "output '{name}' has {got} rows, but the batch has {total} (the batch function \
                 must return one row per input row, on dimension 0)"
            )));
        }
        columns.push((name, array));
    }
    let mut shares = Vec::with_capacity(rows.len());
    let mut start = 0usize;
    for &n in rows {
        let share = PyDict::new(py);
        for (name, array) in &columns {
            if rows.len() == 1 {
                share.set_item(name, array)?;
            } else {
                let stop = start + n;
                let slice = PySlice::new(py, start.cast_signed(), stop.cast_signed(), 1);
                share.set_item(name, array.get_item(slice)?)?;
            }
        }
        start += n;
        shares.push(share.into_any().unbind());
    }
    Ok(shares)
}
