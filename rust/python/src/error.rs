//! The one conversion of core errors into Python: `ProtocolError`, a `ValueError` that carries
//! the HTTP status and gRPC code the error maps to.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tensorgate_core::Error as CoreError;

/// Raised when a payload breaks the protocol or a limit. `status_code` is the HTTP status a
/// server answers with (400, 413, ...) and `grpc_code` the numeric gRPC status code.
#[pyclass(extends = PyValueError, subclass, module = "tensorgate._core")]
#[derive(Debug)]
pub struct ProtocolError {
    message: String,
    #[pyo3(get)]
    status_code: u16,
    #[pyo3(get)]
    grpc_code: i32,
}

#[pymethods]
impl ProtocolError {
    #[new]
    #[pyo3(signature = (message, status_code = 400, grpc_code = 3))]
    fn new(message: String, status_code: u16, grpc_code: i32) -> Self {
        Self {
            message,
            status_code,
            grpc_code,
        }
    }

    #[getter]
    fn message(&self) -> &str {
        &self.message
    }

    fn __str__(&self) -> &str {
        &self.message
    }

    fn __repr__(&self) -> String {
        format!(
            "ProtocolError({:?}, status_code={})",
            self.message, self.status_code
        )
    }
}

/// Converts a core error, keeping its message and status.
pub fn to_py(error: CoreError) -> PyErr {
    PyErr::new::<ProtocolError, _>((
        error.message().to_owned(),
        error.http_status(),
        error.grpc_code() as i32,
    ))
}
