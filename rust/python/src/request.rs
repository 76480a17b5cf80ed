//! `tensorgate.InferRequest`, `InferResponse` and `RequestedOutput`: immutable views of the core
//! envelopes. Reading `inputs`/`outputs` makes new `Tensor` objects over the same bytes.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use tensorgate_core::{
    InferRequest as CoreRequest, InferResponse as CoreResponse, Parameter, Parameters,
    RequestedOutput as CoreRequestedOutput, Tensor as CoreTensor,
};

use crate::tensor::Tensor;

/// An output a request asks for, with its parameters (e.g. `{"binary_data": True}`).
#[pyclass(frozen, eq, module = "tensorgate._core")]
#[derive(Debug, PartialEq)]
pub struct RequestedOutput {
    pub inner: CoreRequestedOutput,
}

#[pymethods]
impl RequestedOutput {
    #[new]
    #[pyo3(signature = (name, parameters = None))]
    fn new(name: String, parameters: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut inner = CoreRequestedOutput::new(name);
        if let Some(parameters) = parameters {
            inner.parameters = parameters_from_py(parameters)?;
        }
        Ok(Self { inner })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        parameters_to_py(py, &self.inner.parameters)
    }

    fn __repr__(&self) -> String {
        format!("RequestedOutput(name={:?})", self.inner.name)
    }
}

/// A V2 inference request:
/// `InferRequest(inputs, id=None, parameters=None, outputs=None, *, model_name=None, model_version=None)`.
#[pyclass(frozen, eq, module = "tensorgate._core")]
#[derive(Debug, PartialEq)]
pub struct InferRequest {
    pub inner: CoreRequest,
}

#[pymethods]
impl InferRequest {
    #[new]
    #[pyo3(signature = (inputs, id = None, parameters = None, outputs = None, *, model_name = None, model_version = None))]
    fn new(
        inputs: Vec<PyRef<'_, Tensor>>,
        id: Option<String>,
        parameters: Option<&Bound<'_, PyAny>>,
        outputs: Option<Vec<Bound<'_, PyAny>>>,
        model_name: Option<String>,
        model_version: Option<String>,
    ) -> PyResult<Self> {
        let outputs = outputs
            .unwrap_or_default()
            .iter()
            .map(requested_output)
            .collect::<PyResult<_>>()?;
        Ok(Self {
            inner: CoreRequest {
                model_name,
                model_version,
                id,
                parameters: parameters
                    .map(parameters_from_py)
                    .transpose()?
                    .unwrap_or_default(),
                inputs: tensors_from_py(&inputs),
                outputs,
            },
        })
    }

    #[getter]
    fn inputs(&self) -> Vec<Tensor> {
        tensors_to_py(&self.inner.inputs)
    }

    #[getter]
    fn outputs(&self) -> Vec<RequestedOutput> {
        self.inner
            .outputs
            .iter()
            .map(|o| RequestedOutput { inner: o.clone() })
            .collect()
    }

    #[getter]
    fn id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }

    #[getter]
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        parameters_to_py(py, &self.inner.parameters)
    }

    #[getter]
    fn model_name(&self) -> Option<&str> {
        self.inner.model_name.as_deref()
    }

    #[getter]
    fn model_version(&self) -> Option<&str> {
        self.inner.model_version.as_deref()
    }

    /// Whether the client wants output `name` in binary form: its own `binary_data` parameter,
    /// else the request-level `binary_data_output`.
    fn wants_binary(&self, name: &str) -> bool {
        self.inner.binary_outputs().is_binary(name)
    }

    fn __repr__(&self) -> String {
        let names: Vec<&str> = self.inner.inputs.iter().map(|t| t.name.as_str()).collect();
        format!("InferRequest(id={:?}, inputs={names:?})", self.inner.id)
    }
}

/// A V2 inference response:
/// `InferResponse(model_name, outputs, id=None, model_version=None, parameters=None)`.
#[pyclass(frozen, eq, module = "tensorgate._core")]
#[derive(Debug, PartialEq)]
pub struct InferResponse {
    pub inner: CoreResponse,
}

#[pymethods]
impl InferResponse {
    #[new]
    #[pyo3(signature = (model_name, outputs, id = None, model_version = None, parameters = None))]
    fn new(
        model_name: String,
        outputs: Vec<PyRef<'_, Tensor>>,
        id: Option<String>,
        model_version: Option<String>,
        parameters: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: CoreResponse {
                model_name,
                model_version,
                id,
                parameters: parameters
                    .map(parameters_from_py)
                    .transpose()?
                    .unwrap_or_default(),
                outputs: tensors_from_py(&outputs),
            },
        })
    }

    #[getter]
    fn model_name(&self) -> &str {
        &self.inner.model_name
    }

    #[getter]
    fn model_version(&self) -> Option<&str> {
        self.inner.model_version.as_deref()
    }

    #[getter]
    fn id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }

    #[getter]
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        parameters_to_py(py, &self.inner.parameters)
    }

    #[getter]
    fn outputs(&self) -> Vec<Tensor> {
        tensors_to_py(&self.inner.outputs)
    }

    fn __repr__(&self) -> String {
        let names: Vec<&str> = self.inner.outputs.iter().map(|t| t.name.as_str()).collect();
        format!(
            "InferResponse(model_name={:?}, outputs={names:?})",
            self.inner.model_name
        )
    }
}

fn tensors_from_py(tensors: &[PyRef<'_, Tensor>]) -> Vec<CoreTensor> {
    tensors.iter().map(|t| t.inner.clone()).collect()
}

fn tensors_to_py(tensors: &[CoreTensor]) -> Vec<Tensor> {
    tensors
        .iter()
        .map(|t| Tensor { inner: t.clone() })
        .collect()
}

fn requested_output(output: &Bound<'_, PyAny>) -> PyResult<CoreRequestedOutput> {
    if let Ok(name) = output.cast::<PyString>() {
        return Ok(CoreRequestedOutput::new(name.to_str()?));
    }
    let output = output.cast::<RequestedOutput>().map_err(|_| {
        PyTypeError::new_err("outputs must be names (str) or RequestedOutput objects")
    })?;
    Ok(output.get().inner.clone())
}

/// Converts a dict of `bool | int | float | str` values. Ints above `i64::MAX` become UINT64
/// parameters.
pub fn parameters_from_py(parameters: &Bound<'_, PyAny>) -> PyResult<Parameters> {
    let dict = parameters
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("parameters must be a dict"))?;
    let mut out = Parameters::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let key: String = key.extract()?;
        let parameter = if value.is_instance_of::<PyBool>() {
            Parameter::Bool(value.extract()?)
        } else if value.is_instance_of::<PyInt>() {
            match value.extract::<i64>() {
                Ok(v) => Parameter::Int64(v),
                Err(_) => Parameter::Uint64(value.extract()?),
            }
        } else if value.is_instance_of::<PyFloat>() {
            Parameter::Double(value.extract()?)
        } else if value.is_instance_of::<PyString>() {
            Parameter::String(value.extract()?)
        } else {
            return Err(PyTypeError::new_err(format!(
                "parameter '{key}' must be bool, int, float or str, not {}",
                value.get_type().name()?
            )));
        };
        out.insert(key, parameter);
    }
    Ok(out)
}

pub fn parameters_to_py<'py>(
    py: Python<'py>,
    parameters: &Parameters,
) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    for (key, value) in parameters {
        match value {
            Parameter::Bool(v) => dict.set_item(key, v)?,
            Parameter::Int64(v) => dict.set_item(key, v)?,
            Parameter::Uint64(v) => dict.set_item(key, v)?,
            Parameter::Double(v) => dict.set_item(key, v)?,
            Parameter::String(v) => dict.set_item(key, v)?,
        }
    }
    Ok(dict.into_any())
}
