//! The Open Inference Protocol gRPC messages and service, generated from
//! `protos/grpc_predict_v2.proto` and checked in (`tests/proto_bootstrap.rs` regenerates them
//! with protox and fails if they differ), so builds never need protoc.

#[allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
#[rustfmt::skip]
mod generated {
    include!("gen/inference.rs");
}

mod codec;

pub use codec::AliasSafeProstCodec;
pub use generated::*;
