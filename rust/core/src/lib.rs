//! tensorgate's pure-Rust core: the tensor model, the KServe V1 / V2 (Open Inference Protocol)
//! codecs for REST JSON, the binary tensor extension and gRPC, and the batching primitives.
//!
//! Nothing here links Python; the `tensorgate-python` crate binds it.

pub mod batch;
pub mod body;
pub mod codec;
pub mod config;
pub mod copy;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod proto;
pub mod route;
pub mod server;
pub mod tensor;
pub mod upstream;

pub use error::{Error, ErrorKind, Origin, Result};
pub use limits::Limits;
pub use tensor::{
    DataType, InferRequest, InferResponse, Parameter, Parameters, RequestedOutput, Tensor,
};
