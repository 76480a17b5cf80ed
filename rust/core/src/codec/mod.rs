//! Decoders and encoders for every KServe payload format, all producing and consuming the one
//! tensor model of [`crate::tensor`].
//!
//! | format | module |
//! | --- | --- |
//! | V2 REST JSON and the binary tensor extension | [`v2`] |
//! | V2 gRPC (`ModelInferRequest` / `ModelInferResponse`) | [`grpc`] |
//! | V1 REST (`instances` / `inputs` / `predictions`) | [`v1`] |

pub mod grpc;
pub(crate) mod json_data;
mod json_float;
pub(crate) mod json_read;
pub mod json_write;
pub mod v1;
pub mod v2;

pub use v2::Encoded;

/// The tensor parameter that gives the size of a tensor's bytes sent apart from the JSON (the
/// binary extension) or the message (gRPC raw contents).
pub(crate) const BINARY_DATA_SIZE: &str = "binary_data_size";
