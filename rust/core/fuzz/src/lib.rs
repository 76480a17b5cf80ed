//! Oracles shared by the fuzz targets: structural equality of decoded messages, with the losses
//! each wire format is allowed to make spelled out, and the rule that a decoder never answers
//! untrusted input with an internal error.

use bytes::Bytes;
use tensorgate_core::codec::v2::Encoded;
use tensorgate_core::{
    DataType, Error, ErrorKind, InferRequest, InferResponse, Limits, Parameter, Parameters,
    RequestedOutput, Tensor,
};

pub const LIMITS: Limits = Limits::DEFAULT;

/// How tensor data must survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEq {
    /// Byte for byte: raw forms (V2 binary extension, gRPC raw contents).
    Exact,
    /// As JSON carries values: all NaNs are one NaN (JSON writes the bare token `NaN`, so the
    /// payload and sign bits are gone) and every non-zero BOOL byte is `true`. Everything else
    /// byte for byte.
    Json,
}

/// Doubles compare by bits (so `-0.0` and `0.0` differ), except that all NaNs are equal.
pub fn f64_eq(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn f32_eq(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn parameter_eq(a: &Parameter, b: &Parameter) -> bool {
    match (a, b) {
        (Parameter::Double(x), Parameter::Double(y)) => f64_eq(*x, *y),
        _ => a == b,
    }
}

/// Parameters compare in order: every codec keeps the order it read them in.
pub fn parameters_eq(a: &Parameters, b: &Parameters) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && parameter_eq(va, vb))
}

pub fn data_eq(datatype: DataType, a: &[u8], b: &[u8], mode: DataEq) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (mode, datatype) {
        (DataEq::Json, DataType::Bool) => a.iter().zip(b).all(|(x, y)| (*x != 0) == (*y != 0)),
        (DataEq::Json, DataType::Fp32) => a
            .as_chunks::<4>()
            .0
            .iter()
            .zip(b.as_chunks::<4>().0)
            .all(|(x, y)| f32_eq(f32::from_le_bytes(*x), f32::from_le_bytes(*y))),
        (DataEq::Json, DataType::Fp64) => a
            .as_chunks::<8>()
            .0
            .iter()
            .zip(b.as_chunks::<8>().0)
            .all(|(x, y)| f64_eq(f64::from_le_bytes(*x), f64::from_le_bytes(*y))),
        _ => a == b,
    }
}

pub fn tensor_eq(a: &Tensor, b: &Tensor, mode: DataEq, names: bool) -> bool {
    (!names || a.name == b.name)
        && a.datatype() == b.datatype()
        && a.shape() == b.shape()
        && parameters_eq(&a.parameters, &b.parameters)
        && data_eq(a.datatype(), a.data(), b.data(), mode)
}

pub fn tensors_eq(a: &[Tensor], b: &[Tensor], mode: DataEq) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| tensor_eq(x, y, mode, true))
}

fn requested_outputs_eq(a: &[RequestedOutput], b: &[RequestedOutput]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && parameters_eq(&x.parameters, &y.parameters))
}

pub fn request_eq(a: &InferRequest, b: &InferRequest, mode: DataEq) -> bool {
    a.model_name == b.model_name
        && a.model_version == b.model_version
        && a.id == b.id
        && parameters_eq(&a.parameters, &b.parameters)
        && tensors_eq(&a.inputs, &b.inputs, mode)
        && requested_outputs_eq(&a.outputs, &b.outputs)
}

pub fn response_eq(a: &InferResponse, b: &InferResponse, mode: DataEq) -> bool {
    a.model_name == b.model_name
        && a.model_version == b.model_version
        && a.id == b.id
        && parameters_eq(&a.parameters, &b.parameters)
        && tensors_eq(&a.outputs, &b.outputs, mode)
}

#[track_caller]
pub fn assert_request_eq(first: &InferRequest, second: &InferRequest, mode: DataEq, what: &str) {
    assert!(
        request_eq(first, second, mode),
        "{what}: the round trip changed the request\nfirst:  {first:?}\nsecond: {second:?}"
    );
}

#[track_caller]
pub fn assert_response_eq(first: &InferResponse, second: &InferResponse, mode: DataEq, what: &str) {
    assert!(
        response_eq(first, second, mode),
        "{what}: the round trip changed the response\nfirst:  {first:?}\nsecond: {second:?}"
    );
}

/// A decoder may reject anything, but an `Internal` error means a broken invariant on our side.
#[track_caller]
pub fn assert_not_internal(error: &Error, what: &str) {
    assert_ne!(
        error.kind(),
        ErrorKind::Internal,
        "{what}: internal error: {error}"
    );
}

/// Splits a V2 target input into a body and its `Inference-Header-Content-Length`. The input
/// starts with three bytes: a mode byte whose low bit says whether the header length is given,
/// then that length as a little-endian u16. The body is the rest, so the fuzzer reaches both
/// plain JSON bodies and the binary tensor extension.
pub fn split_v2_input(data: &[u8]) -> Option<(Bytes, Option<usize>)> {
    let (&[mode, lo, hi], body) = data.split_first_chunk::<3>()?;
    let header_length = (mode & 1 == 1).then_some(usize::from(u16::from_le_bytes([lo, hi])));
    Some((Bytes::copy_from_slice(body), header_length))
}

/// The whole body of an encoded V2 message and its header length.
pub fn v2_body(encoded: &Encoded) -> (Bytes, Option<usize>) {
    (Bytes::from(encoded.to_vec()), encoded.header_length())
}

/// Lossy rendering of an encoded V2 body, for assertion messages.
pub fn show(encoded: &Encoded) -> String {
    format!(
        "json: {}\nbinary: {:?}",
        String::from_utf8_lossy(&encoded.json),
        encoded.binary
    )
}

/// V1 tensors compare like V2 JSON ones, except that a lone tensor's name is not carried (V1
/// names a lone row-format tensor `input-0` / `output-0`).
pub fn v1_tensors_eq(a: &[Tensor], b: &[Tensor]) -> bool {
    let names = a.len() > 1;
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| tensor_eq(x, y, DataEq::Json, names))
}

/// Rewrites parameters into what JSON can tell apart: JSON numbers have no signedness, so a
/// `Uint64` that fits an i64 comes back as `Int64` (the decoder's documented rule).
pub fn as_json_parameters(parameters: &mut Parameters) {
    for value in parameters.values_mut() {
        if let Parameter::Uint64(v) = *value
            && let Ok(v) = i64::try_from(v)
        {
            *value = Parameter::Int64(v);
        }
    }
}

/// What a request keeps through the V2 REST binary form: REST carries the model name and
/// version in the path, parameters go through JSON, and `binary_data_size` belongs to the
/// extension (replaced by the real size on encode, consumed on decode).
pub fn through_v2_binary_request(request: &InferRequest) -> InferRequest {
    let mut expected = request.clone();
    expected.model_name = None;
    expected.model_version = None;
    as_json_parameters(&mut expected.parameters);
    for output in &mut expected.outputs {
        as_json_parameters(&mut output.parameters);
    }
    for input in &mut expected.inputs {
        input.parameters.shift_remove("binary_data_size");
        as_json_parameters(&mut input.parameters);
    }
    expected
}

/// What a response keeps through the V2 REST binary form (see `through_v2_binary_request`).
pub fn through_v2_binary_response(response: &InferResponse) -> InferResponse {
    let mut expected = response.clone();
    as_json_parameters(&mut expected.parameters);
    for output in &mut expected.outputs {
        output.parameters.shift_remove("binary_data_size");
        as_json_parameters(&mut output.parameters);
    }
    expected
}
