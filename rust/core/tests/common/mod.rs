//! Helpers and proptest generators shared by the integration tests of `tensorgate-core`.
//!
//! Every test binary that says `mod common;` compiles this file, and each uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use half::{bf16, f16};
use proptest::collection::vec;
use proptest::prelude::*;
use tensorgate_core::codec::Encoded;
use tensorgate_core::codec::v2;
use tensorgate_core::tensor::bytes_elements;
use tensorgate_core::{
    DataType, InferRequest, InferResponse, Limits, Parameter, Parameters, RequestedOutput, Tensor,
};

pub const LIMITS: Limits = Limits::DEFAULT;

// ---------------------------------------------------------------------------------------------
// Raw data builders

/// A value with a little-endian raw form of one tensor element.
pub trait Element: Copy {
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($($ty:ty),*) => {$(
        impl Element for $ty {
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

element!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, f16, bf16);

impl Element for bool {
    fn put(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// The raw little-endian form of `values`.
pub fn raw<T: Element>(values: &[T]) -> Bytes {
    let mut out = Vec::new();
    for &value in values {
        value.put(&mut out);
    }
    Bytes::from(out)
}

/// The raw (length-prefixed) form of BYTES elements.
pub fn raw_bytes<E: AsRef<[u8]>>(elements: &[E]) -> Bytes {
    let mut out = Vec::new();
    for element in elements {
        bytes_elements::push(&mut out, element.as_ref()).unwrap();
    }
    Bytes::from(out)
}

/// A validated tensor; panics if the parts do not agree.
pub fn tensor(name: &str, datatype: DataType, shape: &[usize], data: Bytes) -> Tensor {
    Tensor::new(name, datatype, shape.to_vec(), data, &LIMITS).unwrap()
}

/// A one-dimensional tensor of `values`.
pub fn vector<T: Element>(name: &str, datatype: DataType, values: &[T]) -> Tensor {
    tensor(name, datatype, &[values.len()], raw(values))
}

/// A one-dimensional BYTES tensor.
pub fn bytes_vector<E: AsRef<[u8]>>(name: &str, elements: &[E]) -> Tensor {
    tensor(
        name,
        DataType::Bytes,
        &[elements.len()],
        raw_bytes(elements),
    )
}

/// Decodes `values` (raw little-endian) as f32.
pub fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn i32s(data: &[u8]) -> Vec<i32> {
    data.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Whether `inner` lies entirely inside `outer` in memory (zero-copy check).
pub fn points_into(inner: &[u8], outer: &[u8]) -> bool {
    let start = outer.as_ptr() as usize;
    let end = start + outer.len();
    let p = inner.as_ptr() as usize;
    inner.is_empty() || (p >= start && p + inner.len() <= end)
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// A whole encoded body and its `Inference-Header-Content-Length`.
pub fn body_of(encoded: &Encoded) -> (Bytes, Option<usize>) {
    (Bytes::from(encoded.to_vec()), encoded.header_length())
}

/// A binary-extension body: JSON header then blobs; returns the body and header length.
pub fn binary_body(json: &str, blobs: &[&[u8]]) -> (Bytes, Option<usize>) {
    let mut body = json.as_bytes().to_vec();
    for blob in blobs {
        body.extend_from_slice(blob);
    }
    (Bytes::from(body), Some(json.len()))
}

pub fn decode_request(encoded: &Encoded) -> tensorgate_core::Result<InferRequest> {
    let (body, header_length) = body_of(encoded);
    v2::decode_request(&body, header_length, &LIMITS)
}

pub fn decode_response(encoded: &Encoded) -> tensorgate_core::Result<InferResponse> {
    let (body, header_length) = body_of(encoded);
    v2::decode_response(&body, header_length, &LIMITS)
}

pub fn decode_json_request(json: &str) -> tensorgate_core::Result<InferRequest> {
    v2::decode_request(&Bytes::copy_from_slice(json.as_bytes()), None, &LIMITS)
}

pub fn decode_json_response(json: &str) -> tensorgate_core::Result<InferResponse> {
    v2::decode_response(&Bytes::copy_from_slice(json.as_bytes()), None, &LIMITS)
}

// ---------------------------------------------------------------------------------------------
// Proptest generators

/// Any of the 14 datatypes.
pub fn datatype() -> impl Strategy<Value = DataType> {
    proptest::sample::select(DataType::ALL.to_vec())
}

/// Shapes of rank 0 to 4 with dimensions 0 to 5.
pub fn shape() -> impl Strategy<Value = Vec<usize>> {
    vec(0usize..=5, 0..=4)
}

macro_rules! int_element {
    ($ty:ty) => {
        prop_oneof![
            1 => Just(<$ty>::MIN),
            1 => Just(<$ty>::MAX),
            1 => Just(0 as $ty),
            6 => any::<$ty>(),
        ]
        .prop_map(|v| v.to_le_bytes().to_vec())
        .boxed()
    };
}

/// f32 values covering zero signs, subnormals, extremes, infinities and the canonical NaN (JSON
/// keeps no NaN payload or sign, so other NaNs are replaced by `f32::NAN`).
pub fn f32_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<u32>().prop_map(f32::from_bits),
        2 => any::<f32>(),
        1 => proptest::sample::select(vec![
            0.0,
            -0.0,
            f32::from_bits(1),
            f32::from_bits(0x807f_ffff),
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            0.1,
            16_777_217.0,
        ]),
    ]
    .prop_map(|v| if v.is_nan() { f32::NAN } else { v })
}

/// f64 values, as for [`f32_value`].
pub fn f64_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<u64>().prop_map(f64::from_bits),
        2 => any::<f64>(),
        1 => proptest::sample::select(vec![
            0.0,
            -0.0,
            f64::from_bits(1),
            f64::from_bits(0x800f_ffff_ffff_ffff),
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.1,
            9_007_199_254_740_993.0,
        ]),
    ]
    .prop_map(|v| if v.is_nan() { f64::NAN } else { v })
}

/// Short strings of any characters (controls, quotes, backslashes, astral planes).
pub fn text(max: usize) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            3 => any::<char>(),
            1 => proptest::sample::select(vec!['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{2028}', 'é', '🎉']),
        ],
        0..=max,
    )
    .prop_map(String::from_iter)
}

/// One BYTES element: UTF-8 text (JSON-representable) or arbitrary bytes (often not UTF-8).
pub fn bytes_element() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => text(6).prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..=6),
    ]
}

/// The raw form of one element of `datatype` (BYTES: length prefix included). Every value
/// survives a JSON round trip where JSON can hold the datatype at all.
pub fn element(datatype: DataType) -> BoxedStrategy<Vec<u8>> {
    match datatype {
        DataType::Bool => any::<bool>().prop_map(|b| vec![u8::from(b)]).boxed(),
        DataType::Uint8 => int_element!(u8),
        DataType::Uint16 => int_element!(u16),
        DataType::Uint32 => int_element!(u32),
        DataType::Uint64 => int_element!(u64),
        DataType::Int8 => int_element!(i8),
        DataType::Int16 => int_element!(i16),
        DataType::Int32 => int_element!(i32),
        DataType::Int64 => int_element!(i64),
        // Half floats always travel binary, so any bit pattern (NaN payloads included) is fine.
        DataType::Fp16 | DataType::Bf16 => {
            any::<u16>().prop_map(|v| v.to_le_bytes().to_vec()).boxed()
        }
        DataType::Fp32 => f32_value().prop_map(|v| v.to_le_bytes().to_vec()).boxed(),
        DataType::Fp64 => f64_value().prop_map(|v| v.to_le_bytes().to_vec()).boxed(),
        DataType::Bytes => bytes_element()
            .prop_map(|e| {
                let mut out = Vec::new();
                bytes_elements::push(&mut out, &e).unwrap();
                out
            })
            .boxed(),
    }
}

/// Raw data for `count` elements of `datatype`.
pub fn tensor_data(datatype: DataType, count: usize) -> impl Strategy<Value = Bytes> {
    vec(element(datatype), count).prop_map(|elements| Bytes::from(elements.concat()))
}

/// A tensor of the given datatype and shape, with no parameters.
pub fn tensor_of(name: String, datatype: DataType, shape: Vec<usize>) -> BoxedStrategy<Tensor> {
    let count = shape.iter().product();
    tensor_data(datatype, count)
        .prop_map(move |data| {
            Tensor::new(name.clone(), datatype, shape.clone(), data, &LIMITS).unwrap()
        })
        .boxed()
}

/// A tensor of any datatype and shape (rank 0–4, dims 0–5), with optional parameters.
pub fn any_tensor(name: String) -> impl Strategy<Value = Tensor> {
    (datatype(), shape(), tensor_parameters()).prop_flat_map(
        move |(datatype, shape, parameters)| {
            tensor_of(name.clone(), datatype, shape)
                .prop_map(move |t| t.with_parameters(parameters.clone()))
        },
    )
}

/// Up to `max` tensors with distinct names (names may hold any characters).
pub fn tensors(max: usize) -> impl Strategy<Value = Vec<Tensor>> {
    vec(text(4), 0..=max).prop_flat_map(|names| {
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| any_tensor(format!("{i}:{name}")))
            .collect::<Vec<_>>()
    })
}

/// A parameter value that decodes back to itself: `Uint64` only above `i64::MAX` (smaller
/// unsigned numbers read back as `Int64`), `Double` only finite (NaN != NaN).
pub fn parameter() -> impl Strategy<Value = Parameter> {
    prop_oneof![
        any::<bool>().prop_map(Parameter::Bool),
        any::<i64>().prop_map(Parameter::Int64),
        ((i64::MAX as u64) + 1..=u64::MAX).prop_map(Parameter::Uint64),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(Parameter::Double),
        text(6).prop_map(Parameter::String),
    ]
}

/// Parameters with any keys, e.g. for requests and responses.
pub fn parameters() -> impl Strategy<Value = Parameters> {
    vec((text(5), parameter()), 0..=3).prop_map(|pairs| pairs.into_iter().collect())
}

/// Tensor parameters: never `binary_data_size`, which the codec owns.
pub fn tensor_parameters() -> impl Strategy<Value = Parameters> {
    prop_oneof![3 => Just(Parameters::new()), 1 => parameters()].prop_map(|mut p| {
        p.shift_remove("binary_data_size");
        p
    })
}

pub fn requested_output() -> impl Strategy<Value = RequestedOutput> {
    // Names are never empty: every decoder rejects an empty tensor or output name.
    (text(4), parameters()).prop_map(|(name, parameters)| RequestedOutput {
        name: format!("o{name}"),
        parameters,
    })
}

/// A REST request (REST carries the model in the path, so no model name or version).
pub fn request() -> impl Strategy<Value = InferRequest> {
    (
        proptest::option::of(text(6)),
        parameters(),
        tensors(4),
        vec(requested_output(), 0..=2),
    )
        .prop_map(|(id, parameters, inputs, outputs)| InferRequest {
            model_name: None,
            model_version: None,
            id,
            parameters,
            inputs,
            outputs,
        })
}

pub fn response() -> impl Strategy<Value = InferResponse> {
    (
        text(6),
        proptest::option::of(text(3)),
        proptest::option::of(text(6)),
        parameters(),
        tensors(4),
    )
        .prop_map(
            |(model_name, model_version, id, parameters, outputs)| InferResponse {
                model_name,
                model_version,
                id,
                parameters,
                outputs,
            },
        )
}
