//! V2 gRPC: conversion between the `ModelInferRequest` / `ModelInferResponse` messages and the
//! tensor model, both directions.
//!
//! Raw contents (`raw_input_contents` / `raw_output_contents`) are already the tensor model's
//! layout, and the generated messages hold them as `Bytes`, so decoding from a `Bytes` buffer
//! (or tonic's receive buffer) slices it instead of copying. Typed contents
//! (`InferTensorContents`) are packed into that layout once. Encoders always send raw contents,
//! as Triton does: it is the only form that can hold FP16/BF16, it costs no per-element work, and
//! every client reads it.
//!
//! The message size limit applies to the `Bytes`-taking functions; a server that receives
//! already-decoded messages enforces it through tonic's `max_decoding_message_size`.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use super::BINARY_DATA_SIZE;
use crate::copy;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::{self, InferParameter, InferTensorContents};
use crate::tensor::{
    DataType, InferRequest, InferResponse, Parameter, Parameters, RequestedOutput, Tensor,
    bytes_elements, check_data, element_count, shape_from_wire,
};

type ProtoParameters = BTreeMap<String, InferParameter>;

/// Decodes a serialized `ModelInferRequest`. Raw input contents stay slices of `message`.
pub fn decode_request(message: Bytes, limits: &Limits) -> Result<InferRequest> {
    check_size(&message, limits)?;
    let proto = proto::ModelInferRequest::decode(message)
        .map_err(|e| Error::bad_request(format!("invalid ModelInferRequest message: {e}")))?;
    request_from_proto(proto, limits)
}

/// Decodes a serialized `ModelInferResponse`, with raw or typed output contents.
pub fn decode_response(message: Bytes, limits: &Limits) -> Result<InferResponse> {
    check_size(&message, limits)?;
    let proto = proto::ModelInferResponse::decode(message)
        .map_err(|e| Error::bad_request(format!("invalid ModelInferResponse message: {e}")))?;
    response_from_proto(proto, limits)
}

/// Serializes a request for a gRPC backend, under the backend's model name and version (the
/// route may rename the model), with every input in `raw_input_contents`.
pub fn encode_request(
    request: &InferRequest,
    model_name: &str,
    model_version: Option<&str>,
) -> Vec<u8> {
    copy::encode_to_vec(&request_to_proto(request, model_name, model_version))
}

/// Serializes a response with every output in `raw_output_contents`.
pub fn encode_response(response: &InferResponse) -> Vec<u8> {
    copy::encode_to_vec(&response_to_proto(response))
}

/// Converts a received request. Empty strings are proto3's "unset", so an empty model name,
/// version or id becomes `None`.
pub fn request_from_proto(
    proto: proto::ModelInferRequest,
    limits: &Limits,
) -> Result<InferRequest> {
    let request = InferRequest {
        model_name: non_empty(proto.model_name),
        model_version: non_empty(proto.model_version),
        id: non_empty(proto.id),
        parameters: parameters_from_proto(proto.parameters)?,
        inputs: tensors_from_proto(proto.inputs, proto.raw_input_contents, Side::INPUT, limits)?,
        outputs: proto
            .outputs
            .into_iter()
            .enumerate()
            .map(requested_output_from_proto)
            .collect::<Result<_>>()?,
    };
    request.check(limits)?;
    Ok(request)
}

/// Converts a received response; the rules for contents are those of requests.
pub fn response_from_proto(
    proto: proto::ModelInferResponse,
    limits: &Limits,
) -> Result<InferResponse> {
    let response = InferResponse {
        model_name: proto.model_name,
        model_version: non_empty(proto.model_version),
        id: non_empty(proto.id),
        parameters: parameters_from_proto(proto.parameters)?,
        outputs: tensors_from_proto(
            proto.outputs,
            proto.raw_output_contents,
            Side::OUTPUT,
            limits,
        )?,
    };
    response.check(limits)?;
    Ok(response)
}

/// Builds the message for a request; tensor data is shared with `request`, not copied.
pub fn request_to_proto(
    request: &InferRequest,
    model_name: &str,
    model_version: Option<&str>,
) -> proto::ModelInferRequest {
    let (inputs, raw_input_contents) = tensors_to_proto(&request.inputs);
    proto::ModelInferRequest {
        model_name: model_name.to_owned(),
        model_version: model_version.unwrap_or_default().to_owned(),
        id: request.id.clone().unwrap_or_default(),
        parameters: parameters_to_proto(&request.parameters),
        inputs,
        outputs: request
            .outputs
            .iter()
            .map(|output| InferRequestedOutputTensor {
                name: output.name.clone(),
                parameters: parameters_to_proto(&output.parameters),
            })
            .collect(),
        raw_input_contents,
    }
}

/// Builds the message for a response; tensor data is shared with `response`, not copied.
pub fn response_to_proto(response: &InferResponse) -> proto::ModelInferResponse {
    let (mut outputs, raw_output_contents) =
        tensors_to_proto::<InferOutputTensor>(&response.outputs);
    // As KServe's gRPC server does: each raw output says its size, as a binary REST output does.
    for (output, raw) in outputs.iter_mut().zip(&raw_output_contents) {
        let size = i64::try_from(raw.len()).unwrap_or(i64::MAX);
        let choice = ParameterChoice::Int64Param(size);
        let parameter = InferParameter {
            parameter_choice: Some(choice),
        };
        output
            .parameters
            .insert(BINARY_DATA_SIZE.to_owned(), parameter);
    }
    proto::ModelInferResponse {
        model_name: response.model_name.clone(),
        model_version: response.model_version.clone().unwrap_or_default(),
        id: response.id.clone().unwrap_or_default(),
        parameters: parameters_to_proto(&response.parameters),
        outputs,
        raw_output_contents,
    }
}

fn check_size(message: &Bytes, limits: &Limits) -> Result<()> {
    if message.len() > limits.max_body_bytes {
        return Err(Error::too_large(format!(
            "message of {} bytes is over the limit of {}",
            message.len(),
            limits.max_body_bytes
        )));
    }
    Ok(())
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Names used in errors, so one conversion serves inputs and outputs.
#[derive(Clone, Copy)]
struct Side {
    tensor: &'static str,
    raw_field: &'static str,
}

impl Side {
    const INPUT: Self = Self {
        tensor: "input",
        raw_field: "raw_input_contents",
    };
    const OUTPUT: Self = Self {
        tensor: "output",
        raw_field: "raw_output_contents",
    };
}

/// The fields input and output tensor messages share. They are distinct prost types with the
/// same layout, so both convert through this one struct.
struct TensorMessage {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    parameters: ProtoParameters,
    contents: Option<InferTensorContents>,
}

/// Moves the five shared fields between the two tensor message types and [`TensorMessage`].
macro_rules! convert_tensor_message {
    ($($from:ty => $to:ty),* $(,)?) => {$(
        impl From<$from> for $to {
            fn from(t: $from) -> Self {
                Self {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                    parameters: t.parameters,
                    contents: t.contents,
                }
            }
        }
    )*};
}

convert_tensor_message!(
    InferInputTensor => TensorMessage,
    InferOutputTensor => TensorMessage,
    TensorMessage => InferInputTensor,
    TensorMessage => InferOutputTensor,
);

/// Converts tensor messages, taking data from `raw` when it is used (one entry per tensor, in
/// order, and then no tensor may carry typed contents) and from each tensor's contents otherwise.
fn tensors_from_proto<T: Into<TensorMessage>>(
    messages: Vec<T>,
    raw: Vec<Bytes>,
    side: Side,
    limits: &Limits,
) -> Result<Vec<Tensor>> {
    if !raw.is_empty() && raw.len() != messages.len() {
        return Err(Error::bad_request(format!(
            "{} has {} entries for {} {}s; when it is used it must have exactly one entry per {}",
            side.raw_field,
            raw.len(),
            messages.len(),
            side.tensor,
            side.tensor
        )));
    }
    // Empty when raw contents are not used, so every tensor then gets `None`.
    let mut raw = raw.into_iter();
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| tensor_from_proto(message.into(), raw.next(), side, index, limits))
        .collect()
}

fn tensor_from_proto(
    message: TensorMessage,
    raw: Option<Bytes>,
    side: Side,
    index: usize,
    limits: &Limits,
) -> Result<Tensor> {
    let TensorMessage {
        name,
        datatype,
        shape,
        parameters,
        contents,
    } = message;
    if name.is_empty() {
        return Err(Error::bad_request(format!(
            "{}s[{index}] has no name",
            side.tensor
        )));
    }
    let context = |error: Error| error.context(format_args!("{} '{name}'", side.tensor));
    let datatype: DataType = datatype.parse().map_err(context)?;
    let shape = shape_from_wire(&shape).map_err(context)?;
    let count = element_count(&shape, limits).map_err(context)?;
    let data = match raw {
        Some(raw) => no_typed_contents(contents.as_ref(), side)
            .and_then(|()| check_data(datatype, &shape, count, &raw, limits))
            .map(|()| raw),
        None => typed_data(
            &contents.unwrap_or_default(),
            datatype,
            &shape,
            count,
            limits,
        ),
    }
    .map_err(context)?;
    let mut parameters = parameters_from_proto(parameters).map_err(context)?;
    // The size of the raw contents (KServe sets it) describes this message's wire form only:
    // every encoder sets its own.
    parameters.shift_remove(BINARY_DATA_SIZE);
    Ok(Tensor::from_validated(
        name, datatype, shape, data, parameters,
    ))
}

/// Raw contents exclude typed contents for every tensor; an empty contents message is allowed,
/// as some clients send one.
fn no_typed_contents(contents: Option<&InferTensorContents>, side: Side) -> Result<()> {
    match contents.and_then(|c| set_fields(c).next()) {
        Some((field, _)) => Err(Error::bad_request(format!(
            "sets contents.{field}, but when {} is used no {} may set contents",
            side.raw_field, side.tensor
        ))),
        None => Ok(()),
    }
}

/// The typed contents field that carries `datatype`; `None` for FP16/BF16, which have none.
fn content_field(datatype: DataType) -> Option<&'static str> {
    match datatype {
        DataType::Bool => Some("bool_contents"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => Some("int_contents"),
        DataType::Int64 => Some("int64_contents"),
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => Some("uint_contents"),
        DataType::Uint64 => Some("uint64_contents"),
        DataType::Fp32 => Some("fp32_contents"),
        DataType::Fp64 => Some("fp64_contents"),
        DataType::Bytes => Some("bytes_contents"),
        DataType::Fp16 | DataType::Bf16 => None,
    }
}

/// The non-empty typed contents fields with their lengths, in field-number order.
fn set_fields(c: &InferTensorContents) -> impl Iterator<Item = (&'static str, usize)> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|&(_, len)| len > 0)
}

fn half_error(datatype: DataType) -> Error {
    Error::bad_request(format!(
        "{datatype} has no typed contents field; send it in raw_input_contents / \
         raw_output_contents"
    ))
}

/// Packs typed contents into the raw layout, after checking that only the field for `datatype`
/// is set and that it holds exactly `count` elements.
fn typed_data(
    contents: &InferTensorContents,
    datatype: DataType,
    shape: &[usize],
    count: usize,
    limits: &Limits,
) -> Result<Bytes> {
    let field = content_field(datatype);
    let mut len = 0;
    for (set, set_len) in set_fields(contents) {
        match field {
            Some(field) if field == set => len = set_len,
            Some(field) => {
                return Err(Error::bad_request(format!(
                    "{datatype} data goes in contents.{field}, but contents.{set} is set"
                )));
            }
            None => return Err(half_error(datatype)),
        }
    }
    let Some(field) = field else {
        // FP16/BF16 with no contents at all: only valid when there is nothing to carry.
        return if count == 0 {
            Ok(Bytes::new())
        } else {
            Err(half_error(datatype))
        };
    };
    if len != count {
        return Err(Error::bad_request(format!(
            "shape {shape:?} needs {count} elements but contents.{field} has {len}"
        )));
    }
    let c = contents;
    let packed = match datatype {
        DataType::Bool => pack(&c.bool_contents, |v| Some([u8::from(v)])),
        DataType::Int8 => pack(&c.int_contents, |v| {
            i8::try_from(v).ok().map(i8::to_le_bytes)
        }),
        DataType::Int16 => pack(&c.int_contents, |v| {
            i16::try_from(v).ok().map(i16::to_le_bytes)
        }),
        DataType::Int32 => pack(&c.int_contents, |v| Some(v.to_le_bytes())),
        DataType::Int64 => pack(&c.int64_contents, |v| Some(v.to_le_bytes())),
        DataType::Uint8 => pack(&c.uint_contents, |v| {
            u8::try_from(v).ok().map(u8::to_le_bytes)
        }),
        DataType::Uint16 => pack(&c.uint_contents, |v| {
            u16::try_from(v).ok().map(u16::to_le_bytes)
        }),
        DataType::Uint32 => pack(&c.uint_contents, |v| Some(v.to_le_bytes())),
        DataType::Uint64 => pack(&c.uint64_contents, |v| Some(v.to_le_bytes())),
        DataType::Fp32 => pack(&c.fp32_contents, |v| Some(v.to_le_bytes())),
        DataType::Fp64 => pack(&c.fp64_contents, |v| Some(v.to_le_bytes())),
        DataType::Bytes => return bytes_data(&c.bytes_contents, limits).map(Bytes::from),
        DataType::Fp16 | DataType::Bf16 => return Err(half_error(datatype)),
    };
    packed.map(Bytes::from).map_err(|(index, value)| {
        Error::bad_request(format!(
            "contents.{field}[{index}] = {value} is out of range for {datatype}"
        ))
    })
}

/// Writes each value in little-endian form; `convert` returns `None` for a value the element
/// type cannot hold, reported as its index and value.
fn pack<T: Copy + ToString, const N: usize>(
    values: &[T],
    convert: impl Fn(T) -> Option<[u8; N]>,
) -> Result<Vec<u8>, (usize, String)> {
    let mut out = Vec::with_capacity(values.len() * N);
    for (index, &value) in values.iter().enumerate() {
        let bytes = convert(value).ok_or_else(|| (index, value.to_string()))?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

fn bytes_data(elements: &[Bytes], limits: &Limits) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + 4).sum());
    for (index, element) in elements.iter().enumerate() {
        if element.len() > limits.max_bytes_element_len {
            return Err(Error::bad_request(format!(
                "contents.bytes_contents[{index}] is {} bytes, over the limit of {}",
                element.len(),
                limits.max_bytes_element_len
            )));
        }
        bytes_elements::push(&mut out, element)?;
    }
    Ok(out)
}

/// Tensor messages without typed contents, and their data for the raw contents field.
fn tensors_to_proto<T: From<TensorMessage>>(tensors: &[Tensor]) -> (Vec<T>, Vec<Bytes>) {
    let messages = tensors
        .iter()
        .map(|tensor| {
            T::from(TensorMessage {
                name: tensor.name.clone(),
                datatype: tensor.datatype().as_str().to_owned(),
                // A dimension above i64::MAX cannot exist in memory; saturate rather than wrap.
                shape: tensor
                    .shape()
                    .iter()
                    .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                    .collect(),
                parameters: parameters_to_proto(&tensor.parameters),
                contents: None,
            })
        })
        .collect();
    let raw = tensors.iter().map(|tensor| tensor.data().clone()).collect();
    (messages, raw)
}

fn requested_output_from_proto(
    (index, output): (usize, InferRequestedOutputTensor),
) -> Result<RequestedOutput> {
    if output.name.is_empty() {
        return Err(Error::bad_request(format!("outputs[{index}] has no name")));
    }
    let parameters = parameters_from_proto(output.parameters)
        .map_err(|e| e.context(format_args!("requested output '{}'", output.name)))?;
    Ok(RequestedOutput {
        name: output.name,
        parameters,
    })
}

fn parameters_from_proto(parameters: ProtoParameters) -> Result<Parameters> {
    parameters
        .into_iter()
        .map(|(key, value)| {
            let value = match value.parameter_choice {
                Some(ParameterChoice::BoolParam(v)) => Parameter::Bool(v),
                Some(ParameterChoice::Int64Param(v)) => Parameter::Int64(v),
                Some(ParameterChoice::Uint64Param(v)) => Parameter::Uint64(v),
                Some(ParameterChoice::DoubleParam(v)) => Parameter::Double(v),
                Some(ParameterChoice::StringParam(v)) => Parameter::String(v),
                None => {
                    return Err(Error::bad_request(format!(
                        "parameter '{key}' has no value set"
                    )));
                }
            };
            Ok((key, value))
        })
        .collect()
}

fn parameters_to_proto(parameters: &Parameters) -> ProtoParameters {
    parameters
        .iter()
        .map(|(key, value)| {
            let choice = match value {
                Parameter::Bool(v) => ParameterChoice::BoolParam(*v),
                Parameter::Int64(v) => ParameterChoice::Int64Param(*v),
                Parameter::Uint64(v) => ParameterChoice::Uint64Param(*v),
                Parameter::Double(v) => ParameterChoice::DoubleParam(*v),
                Parameter::String(v) => ParameterChoice::StringParam(v.clone()),
            };
            (
                key.clone(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::ErrorKind;

    fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape: shape.to_vec(),
            ..InferInputTensor::default()
        }
    }

    fn typed(datatype: &str, shape: &[i64], contents: InferTensorContents) -> InferInputTensor {
        InferInputTensor {
            contents: Some(contents),
            ..input("x", datatype, shape)
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> proto::ModelInferRequest {
        proto::ModelInferRequest {
            model_name: "m".to_owned(),
            inputs,
            raw_input_contents: raw,
            ..proto::ModelInferRequest::default()
        }
    }

    fn decode(proto: proto::ModelInferRequest) -> Result<InferRequest> {
        decode_request(Bytes::from(proto.encode_to_vec()), &Limits::DEFAULT)
    }

    fn bad_request(proto: proto::ModelInferRequest) -> String {
        let error = decode(proto).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        error.message().to_owned()
    }

    fn le<const N: usize>(values: impl IntoIterator<Item = [u8; N]>) -> Vec<u8> {
        values.into_iter().flatten().collect()
    }

    fn bytes_raw(elements: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for element in elements {
            bytes_elements::push(&mut out, element).unwrap();
        }
        out
    }

    #[test]
    fn every_typed_datatype_packs_to_raw_layout() {
        let c = InferTensorContents::default;
        let cases: Vec<(&str, InferTensorContents, Vec<u8>)> = vec![
            (
                "BOOL",
                InferTensorContents {
                    bool_contents: vec![true, false],
                    ..c()
                },
                vec![1, 0],
            ),
            (
                "INT8",
                InferTensorContents {
                    int_contents: vec![-128, 127],
                    ..c()
                },
                le([(-128i8).to_le_bytes(), 127i8.to_le_bytes()]),
            ),
            (
                "INT16",
                InferTensorContents {
                    int_contents: vec![-32768, 32767],
                    ..c()
                },
                le([i16::MIN.to_le_bytes(), i16::MAX.to_le_bytes()]),
            ),
            (
                "INT32",
                InferTensorContents {
                    int_contents: vec![i32::MIN, 7],
                    ..c()
                },
                le([i32::MIN.to_le_bytes(), 7i32.to_le_bytes()]),
            ),
            (
                "INT64",
                InferTensorContents {
                    int64_contents: vec![i64::MIN, 9],
                    ..c()
                },
                le([i64::MIN.to_le_bytes(), 9i64.to_le_bytes()]),
            ),
            (
                "UINT8",
                InferTensorContents {
                    uint_contents: vec![0, 255],
                    ..c()
                },
                vec![0, 255],
            ),
            (
                "UINT16",
                InferTensorContents {
                    uint_contents: vec![1, 65535],
                    ..c()
                },
                le([1u16.to_le_bytes(), u16::MAX.to_le_bytes()]),
            ),
            (
                "UINT32",
                InferTensorContents {
                    uint_contents: vec![1, u32::MAX],
                    ..c()
                },
                le([1u32.to_le_bytes(), u32::MAX.to_le_bytes()]),
            ),
            (
                "UINT64",
                InferTensorContents {
                    uint64_contents: vec![1, u64::MAX],
                    ..c()
                },
                le([1u64.to_le_bytes(), u64::MAX.to_le_bytes()]),
            ),
            (
                "FP32",
                InferTensorContents {
                    fp32_contents: vec![1.5, -0.25],
                    ..c()
                },
                le([1.5f32.to_le_bytes(), (-0.25f32).to_le_bytes()]),
            ),
            (
                "FP64",
                InferTensorContents {
                    fp64_contents: vec![1.5, -0.25],
                    ..c()
                },
                le([1.5f64.to_le_bytes(), (-0.25f64).to_le_bytes()]),
            ),
            (
                "BYTES",
                InferTensorContents {
                    bytes_contents: vec![Bytes::from_static(b"ab"), Bytes::new()],
                    ..c()
                },
                bytes_raw(&[b"ab", b""]),
            ),
        ];
        for (datatype, contents, expected) in cases {
            let decoded = decode(request(vec![typed(datatype, &[1, 2], contents)], vec![]))
                .unwrap_or_else(|e| panic!("{datatype}: {e}"));
            let tensor = &decoded.inputs[0];
            assert_eq!(tensor.datatype().as_str(), datatype);
            assert_eq!(tensor.shape(), [1, 2]);
            assert_eq!(tensor.data().as_ref(), expected.as_slice(), "{datatype}");
        }
    }

    #[test]
    fn every_datatype_round_trips_raw() {
        for datatype in DataType::ALL {
            let data = match datatype.element_size() {
                Some(size) => (0..3 * size)
                    .map(|i| u8::try_from(i % 2).unwrap())
                    .collect(),
                None => bytes_raw(&[b"a", b"bc", b""]),
            };
            let tensor =
                Tensor::new("x", datatype, vec![3], Bytes::from(data), &Limits::DEFAULT).unwrap();
            let original = InferRequest::new(vec![tensor]);
            let message = encode_request(&original, "m", Some("2"));
            let decoded = decode_request(Bytes::from(message), &Limits::DEFAULT).unwrap();
            assert_eq!(decoded.inputs, original.inputs, "{datatype}");
            assert_eq!(decoded.model_name.as_deref(), Some("m"));
            assert_eq!(decoded.model_version.as_deref(), Some("2"));
        }
    }

    #[test]
    fn raw_data_is_a_slice_of_the_message() {
        let data = Bytes::from(vec![7u8; 4096]);
        let tensor = Tensor::new("x", DataType::Fp32, vec![1024], data, &Limits::DEFAULT).unwrap();
        let message = Bytes::from(encode_request(&InferRequest::new(vec![tensor]), "m", None));
        let decoded = decode_request(message.clone(), &Limits::DEFAULT).unwrap();
        let range = message.as_ptr_range();
        let data = decoded.inputs[0].data().as_ptr_range();
        assert!(
            range.start <= data.start && data.end <= range.end,
            "data was copied"
        );
    }

    #[test]
    fn raw_entry_count_must_match_inputs() {
        let proto = request(
            vec![input("a", "UINT8", &[1]), input("b", "UINT8", &[1])],
            vec![Bytes::from_static(&[1])],
        );
        let message = bad_request(proto);
        assert!(
            message.contains("raw_input_contents has 1 entries for 2 inputs"),
            "{message}"
        );
    }

    #[test]
    fn raw_and_typed_contents_do_not_mix() {
        let with_contents = typed(
            "UINT8",
            &[1],
            InferTensorContents {
                uint_contents: vec![1],
                ..InferTensorContents::default()
            },
        );
        let proto = request(
            vec![
                input("a", "UINT8", &[1]),
                InferInputTensor {
                    name: "b".into(),
                    ..with_contents
                },
            ],
            vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])],
        );
        let message = bad_request(proto);
        assert!(
            message.starts_with("input 'b': sets contents.uint_contents"),
            "{message}"
        );
        assert!(message.contains("no input may set contents"), "{message}");
    }

    #[test]
    fn empty_contents_message_with_raw_is_accepted() {
        let empty = typed("UINT8", &[1], InferTensorContents::default());
        let decoded = decode(request(vec![empty], vec![Bytes::from_static(&[5])])).unwrap();
        assert_eq!(decoded.inputs[0].data().as_ref(), [5]);
    }

    #[test]
    fn raw_size_is_checked() {
        let message = bad_request(request(
            vec![input("x", "FP32", &[2])],
            vec![Bytes::from_static(&[0; 7])],
        ));
        assert!(
            message.starts_with("input 'x': shape [2] of FP32 needs 8 bytes, got 7"),
            "{message}"
        );
    }

    #[test]
    fn wrong_content_field_for_datatype() {
        let proto = request(
            vec![typed(
                "INT32",
                &[1],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..InferTensorContents::default()
                },
            )],
            vec![],
        );
        let message = bad_request(proto);
        assert_eq!(
            message,
            "input 'x': INT32 data goes in contents.int_contents, but contents.fp32_contents is set"
        );
    }

    #[test]
    fn extra_content_field_next_to_the_right_one() {
        let proto = request(
            vec![typed(
                "INT64",
                &[1],
                InferTensorContents {
                    int64_contents: vec![1],
                    bytes_contents: vec![Bytes::from_static(b"a")],
                    ..InferTensorContents::default()
                },
            )],
            vec![],
        );
        assert!(bad_request(proto).contains("contents.bytes_contents is set"));
    }

    #[test]
    fn narrow_ints_are_range_checked() {
        let int8 = InferTensorContents {
            int_contents: vec![1, 128],
            ..Default::default()
        };
        let message = bad_request(request(vec![typed("INT8", &[2], int8)], vec![]));
        assert_eq!(
            message,
            "input 'x': contents.int_contents[1] = 128 is out of range for INT8"
        );
        let uint16 = InferTensorContents {
            uint_contents: vec![65536],
            ..Default::default()
        };
        let message = bad_request(request(vec![typed("UINT16", &[1], uint16)], vec![]));
        assert!(
            message.contains("65536 is out of range for UINT16"),
            "{message}"
        );
    }

    #[test]
    fn half_precision_needs_raw() {
        let contents = InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        };
        let message = bad_request(request(vec![typed("FP16", &[1], contents)], vec![]));
        assert!(
            message.contains("FP16 has no typed contents field"),
            "{message}"
        );
        let message = bad_request(request(vec![input("x", "BF16", &[1])], vec![]));
        assert!(
            message.contains("BF16 has no typed contents field"),
            "{message}"
        );
        // Nothing to carry: a zero-element tensor needs no contents.
        assert!(decode(request(vec![input("x", "FP16", &[0])], vec![])).is_ok());
    }

    #[test]
    fn element_count_must_match_shape() {
        let contents = InferTensorContents {
            fp64_contents: vec![1.0; 5],
            ..Default::default()
        };
        let message = bad_request(request(vec![typed("FP64", &[2, 3], contents)], vec![]));
        assert_eq!(
            message,
            "input 'x': shape [2, 3] needs 6 elements but contents.fp64_contents has 5"
        );
        let message = bad_request(request(vec![input("x", "INT32", &[2])], vec![]));
        assert!(
            message.contains("needs 2 elements but contents.int_contents has 0"),
            "{message}"
        );
    }

    #[test]
    fn bad_shapes_datatypes_and_names() {
        let message = bad_request(request(vec![input("x", "INT32", &[-1])], vec![]));
        assert!(
            message.starts_with("input 'x': shape [-1] has a negative dimension"),
            "{message}"
        );
        let message = bad_request(request(vec![input("x", "FLOAT", &[0])], vec![]));
        assert_eq!(message, "input 'x': unknown datatype 'FLOAT'");
        let message = bad_request(request(vec![input("", "INT32", &[0])], vec![]));
        assert_eq!(message, "inputs[0] has no name");
        let inputs = vec![input("x", "INT32", &[0]), input("x", "INT32", &[0])];
        assert_eq!(
            bad_request(request(inputs, vec![])),
            "duplicate input name 'x'"
        );
    }

    #[test]
    fn bytes_contents_element_limit() {
        let limits = Limits {
            max_bytes_element_len: 2,
            ..Limits::DEFAULT
        };
        let contents = InferTensorContents {
            bytes_contents: vec![Bytes::from_static(b"abc")],
            ..Default::default()
        };
        let message = request(vec![typed("BYTES", &[1], contents)], vec![]);
        let error = decode_request(Bytes::from(message.encode_to_vec()), &limits).unwrap_err();
        assert!(
            error.message().contains("bytes_contents[0] is 3 bytes"),
            "{error}"
        );
    }

    #[test]
    fn message_size_limit_and_garbage() {
        let limits = Limits {
            max_body_bytes: 4,
            ..Limits::DEFAULT
        };
        let error = decode_request(Bytes::from_static(&[0; 5]), &limits).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PayloadTooLarge);
        let error = decode_request(Bytes::from_static(&[0xff; 3]), &Limits::DEFAULT).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
        assert!(
            error
                .message()
                .starts_with("invalid ModelInferRequest message"),
            "{error}"
        );
    }

    fn all_parameters() -> Parameters {
        Parameters::from_iter([
            ("b".to_owned(), Parameter::Bool(true)),
            ("d".to_owned(), Parameter::Double(0.5)),
            ("i".to_owned(), Parameter::Int64(-3)),
            ("s".to_owned(), Parameter::String("text".to_owned())),
            ("u".to_owned(), Parameter::Uint64(u64::MAX)),
        ])
    }

    #[test]
    fn parameters_round_trip_everywhere() {
        let tensor = Tensor::new(
            "x",
            DataType::Int32,
            vec![0],
            Bytes::new(),
            &Limits::DEFAULT,
        )
        .unwrap()
        .with_parameters(all_parameters());
        let original = InferRequest {
            model_name: Some("m".to_owned()),
            model_version: None,
            id: Some("req-1".to_owned()),
            parameters: all_parameters(),
            inputs: vec![tensor],
            outputs: vec![RequestedOutput {
                name: "y".to_owned(),
                parameters: all_parameters(),
            }],
        };
        let message = encode_request(&original, "m", None);
        let decoded = decode_request(Bytes::from(message), &Limits::DEFAULT).unwrap();
        assert_eq!(decoded, original);
    }

    #[test]
    fn parameter_without_value_is_rejected() {
        let mut proto = request(vec![], vec![]);
        proto
            .parameters
            .insert("p".to_owned(), InferParameter::default());
        assert_eq!(bad_request(proto), "parameter 'p' has no value set");
        let mut tensor = input("x", "INT32", &[0]);
        tensor
            .parameters
            .insert("q".to_owned(), InferParameter::default());
        assert_eq!(
            bad_request(request(vec![tensor], vec![])),
            "input 'x': parameter 'q' has no value set"
        );
    }

    #[test]
    fn empty_strings_are_unset() {
        let mut proto = request(vec![], vec![]);
        proto.model_name = String::new();
        let decoded = decode(proto).unwrap();
        assert_eq!(
            (decoded.model_name, decoded.model_version, decoded.id),
            (None, None, None)
        );
    }

    #[test]
    fn response_round_trips_with_raw_outputs() {
        let data = Bytes::from(le([1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()]));
        let output = Tensor::new("y", DataType::Fp32, vec![2], data, &Limits::DEFAULT)
            .unwrap()
            .with_parameters(all_parameters());
        let original = InferResponse {
            model_name: "m".to_owned(),
            model_version: Some("1".to_owned()),
            id: Some("r".to_owned()),
            parameters: all_parameters(),
            outputs: vec![output],
        };
        let proto = response_to_proto(&original);
        assert_eq!(proto.raw_output_contents.len(), 1);
        assert!(proto.outputs[0].contents.is_none());
        // Each raw output gives its size, as KServe's server does; decoding drops it again.
        let size = &proto.outputs[0].parameters["binary_data_size"];
        assert_eq!(size.parameter_choice, Some(ParameterChoice::Int64Param(8)));
        let message = encode_response(&original);
        let decoded = decode_response(Bytes::from(message), &Limits::DEFAULT).unwrap();
        assert_eq!(decoded, original);
    }

    #[test]
    fn response_accepts_typed_outputs_with_the_same_rules() {
        let output = |contents| InferOutputTensor {
            name: "y".to_owned(),
            datatype: "INT64".to_owned(),
            shape: vec![2],
            contents: Some(contents),
            ..InferOutputTensor::default()
        };
        let proto = proto::ModelInferResponse {
            model_name: "m".to_owned(),
            outputs: vec![output(InferTensorContents {
                int64_contents: vec![1, -1],
                ..Default::default()
            })],
            ..proto::ModelInferResponse::default()
        };
        let decoded = response_from_proto(proto, &Limits::DEFAULT).unwrap();
        assert_eq!(
            decoded.outputs[0].data().as_ref(),
            le([1i64.to_le_bytes(), (-1i64).to_le_bytes()])
        );

        let mixed = proto::ModelInferResponse {
            outputs: vec![output(InferTensorContents {
                int64_contents: vec![1, -1],
                ..Default::default()
            })],
            raw_output_contents: vec![Bytes::from_static(&[0; 16])],
            ..proto::ModelInferResponse::default()
        };
        let error = response_from_proto(mixed, &Limits::DEFAULT).unwrap_err();
        assert!(
            error.message().contains("no output may set contents"),
            "{error}"
        );
    }
}
