//! Backends: where a route sends its requests (REST V1/V2, gRPC, or an in-process model), the
//! pooled clients that reach them, and their replica sets.

pub mod control;
pub mod forward;
pub mod grpc;
pub mod http;
pub mod local;
pub mod replicas;

pub use local::{BoxFuture, Host, LocalModel};
