//! `tensorgate._core`: the PyO3 binding of `tensorgate-core`. It only converts types and errors;
//! every rule lives in the core crate.

mod batcher;
mod buffer;
mod codec;
mod error;
mod gateway;
mod request;
mod tensor;

use pyo3::prelude::*;

/// The gateway allocates per request on many threads; mimalloc's thread-local pools are several
/// times cheaper than glibc malloc there (Rust allocations of this module only).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<error::ProtocolError>()?;
    m.add_class::<buffer::Buffer>()?;
    m.add_class::<tensor::Tensor>()?;
    m.add_class::<request::RequestedOutput>()?;
    m.add_class::<request::InferRequest>()?;
    m.add_class::<request::InferResponse>()?;
    m.add_class::<codec::Limits>()?;
    m.add_class::<gateway::Gateway>()?;
    m.add_class::<gateway::PendingCall>()?;
    m.add_class::<batcher::PyBatcher>()?;
    m.add_class::<batcher::Batch>()?;
    m.add_class::<batcher::Ticket>()?;
    m.add_class::<batcher::Resolver>()?;
    codec::register(m)
}
