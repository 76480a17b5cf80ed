//! Requests merged into one batch request, and a batch response split back per request.
//!
//! Requests share a batch when their [`Signature`]s are equal: the same inputs (names,
//! datatypes, dimensions after the first, parameters) and the same request and output
//! parameters, leaving out the binary-extension flags, which only choose each client's own wire
//! form. Each client keeps its own `id`, requested outputs and JSON/binary choice.

use crate::error::{Error, ErrorKind, Result};
use crate::tensor::{DataType, InferRequest, InferResponse, Parameters, RequestedOutput};

use super::rows;

/// Request and output parameters that only shape a client's own answer.
const BINARY_OUTPUT: &str = "binary_data_output";
const BINARY_DATA: &str = "binary_data";

/// What requests must agree on to share a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Sorted by name: clients may list inputs in any order.
    inputs: Vec<InputSignature>,
    parameters: Parameters,
    /// Requested outputs that carry parameters of their own, sorted by name.
    output_parameters: Vec<(String, Parameters)>,
}

#[derive(Debug, Clone, PartialEq)]
struct InputSignature {
    name: String,
    datatype: DataType,
    trailing: Vec<usize>,
    parameters: Parameters,
}

/// How a request may be batched.
#[derive(Debug, Clone)]
pub enum Key {
    Batch(Signature),
    /// Rows cannot be told apart (a scalar input, inputs of different lengths, no inputs): the
    /// request goes on its own.
    Alone,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Batch(a), Self::Batch(b)) => a == b,
            _ => false,
        }
    }
}

/// The batching key of `request` and its rows (dimension 0 of its inputs; 1 when alone).
pub fn key(request: &InferRequest) -> (Key, usize) {
    let Some(rows) = common_rows(request) else {
        return (Key::Alone, 1);
    };
    let mut inputs: Vec<InputSignature> = request
        .inputs
        .iter()
        .map(|t| InputSignature {
            name: t.name.clone(),
            datatype: t.datatype(),
            trailing: t.shape()[1..].to_vec(),
            parameters: t.parameters.clone(),
        })
        .collect();
    inputs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut output_parameters: Vec<(String, Parameters)> = request
        .outputs
        .iter()
        .map(|o| (o.name.clone(), without(&o.parameters, BINARY_DATA)))
        .filter(|(_, parameters)| !parameters.is_empty())
        .collect();
    output_parameters.sort_by(|a, b| a.0.cmp(&b.0));
    let signature = Signature {
        inputs,
        parameters: without(&request.parameters, BINARY_OUTPUT),
        output_parameters,
    };
    (Key::Batch(signature), rows)
}

/// Dimension 0 shared by every input, if there are inputs and they all have one.
fn common_rows(request: &InferRequest) -> Option<usize> {
    let (first, rest) = request.inputs.split_first()?;
    let rows = *first.shape().first()?;
    rest.iter()
        .all(|t| t.shape().first() == Some(&rows))
        .then_some(rows)
}

fn without(parameters: &Parameters, key: &str) -> Parameters {
    let mut parameters = parameters.clone();
    parameters.shift_remove(key);
    parameters
}

/// One request carrying every member's rows, in order. Members must share a [`Key::Batch`].
/// It asks for the union of the members' requested outputs (all of them when any member asks
/// for all), without binary flags: each member's own answer is encoded for it later.
pub fn merge(mut members: Vec<InferRequest>) -> Result<InferRequest> {
    let outputs = union_outputs(&members);
    if members.len() == 1
        && let Some(mut only) = members.pop()
    {
        only.parameters.shift_remove(BINARY_OUTPUT);
        only.outputs = outputs;
        return Ok(only);
    }
    let first = members
        .first()
        .ok_or_else(|| Error::internal("merge of no requests"))?;
    let inputs = first
        .inputs
        .iter()
        .map(|input| {
            let column = members
                .iter()
                .map(|m| {
                    m.inputs
                        .iter()
                        .find(|t| t.name == input.name)
                        .cloned()
                        .ok_or_else(|| {
                            Error::internal(format!("batch member lacks '{}'", input.name))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            rows::concat(&column)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InferRequest {
        model_name: first.model_name.clone(),
        model_version: first.model_version.clone(),
        id: None,
        parameters: without(&first.parameters, BINARY_OUTPUT),
        inputs,
        outputs,
    })
}

fn union_outputs(members: &[InferRequest]) -> Vec<RequestedOutput> {
    if members.iter().any(|m| m.outputs.is_empty()) {
        return Vec::new();
    }
    let mut union: Vec<RequestedOutput> = Vec::new();
    for output in members.iter().flat_map(|m| &m.outputs) {
        if !union.iter().any(|o| o.name == output.name) {
            union.push(RequestedOutput {
                name: output.name.clone(),
                parameters: without(&output.parameters, BINARY_DATA),
            });
        }
    }
    union
}

/// Splits a batch response into one response per member, `rows[i]` rows each. Every output
/// must have the batch's rows on dimension 0; otherwise no member can get its share, and all
/// get a 502. The pieces share the response's buffers.
pub fn split(response: InferResponse, rows: &[usize]) -> Result<Vec<InferResponse>> {
    let total: usize = rows.iter().sum();
    let mut columns = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        if output.shape().first() != Some(&total) {
            return Err(Error::upstream(
                ErrorKind::BadGateway,
                format!(
                    "backend answered a batch of {total} rows with output '{}' of shape {:?}; \
                     outputs need the batch's rows on dimension 0 to be split back",
                    output.name,
                    output.shape()
                ),
            ));
        }
        columns.push(rows::split(output, rows)?);
    }
    let mut columns: Vec<std::vec::IntoIter<_>> = columns.into_iter().map(Vec::into_iter).collect();
    Ok(rows
        .iter()
        .map(|_| InferResponse {
            model_name: response.model_name.clone(),
            model_version: response.model_version.clone(),
            id: None,
            parameters: response.parameters.clone(),
            outputs: columns.iter_mut().filter_map(Iterator::next).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;
    use crate::tensor::{Parameter, Tensor};

    fn fp32(name: &str, shape: Vec<usize>, values: &[f32]) -> Tensor {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(
            name,
            DataType::Fp32,
            shape,
            Bytes::from(data),
            &Default::default(),
        )
        .unwrap()
    }

    fn request(rows: usize, start: f32) -> InferRequest {
        let values: Vec<f32> = (0..rows * 2).map(|i| start + i as f32).collect();
        InferRequest::new(vec![fp32("x", vec![rows, 2], &values)])
    }

    #[test]
    fn binary_flags_do_not_split_batches() {
        let plain = request(1, 0.0);
        let mut binary = request(2, 0.0);
        binary
            .parameters
            .insert(BINARY_OUTPUT.into(), Parameter::Bool(true));
        let mut out = RequestedOutput::new("y");
        out.parameters
            .insert(BINARY_DATA.into(), Parameter::Bool(true));
        binary.outputs.push(out);
        let (a, rows_a) = key(&plain);
        let (b, rows_b) = key(&binary);
        assert_eq!((rows_a, rows_b), (1, 2));
        assert_eq!(a, b);
    }

    #[test]
    fn other_shapes_and_parameters_do_not_batch() {
        let base = key(&request(1, 0.0)).0;
        let wider = InferRequest::new(vec![fp32("x", vec![1, 3], &[0.0; 3])]);
        assert_ne!(base, key(&wider).0);
        let mut tagged = request(1, 0.0);
        tagged
            .parameters
            .insert("priority".into(), Parameter::Int64(1));
        assert_ne!(base, key(&tagged).0);
        let scalar = InferRequest::new(vec![fp32("x", vec![], &[0.0])]);
        let (alone, rows) = key(&scalar);
        assert_eq!(rows, 1);
        assert_ne!(alone, key(&scalar).0);
    }

    #[test]
    fn merges_and_splits_back_in_order() {
        let (a, b) = (request(1, 0.0), request(2, 10.0));
        let merged = merge(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(merged.inputs[0].shape(), &[3, 2]);
        let response = InferResponse {
            model_name: "m".into(),
            outputs: merged.inputs.clone(),
            ..InferResponse::default()
        };
        let pieces = split(response, &[1, 2]).unwrap();
        assert_eq!(pieces[0].outputs[0], a.inputs[0]);
        assert_eq!(pieces[1].outputs[0], b.inputs[0]);
        assert_eq!(pieces[1].model_name, "m");
    }

    #[test]
    fn outputs_without_the_batch_rows_cannot_be_split() {
        let response = InferResponse {
            outputs: vec![fp32("y", vec![1], &[1.0])],
            ..InferResponse::default()
        };
        let error = split(response, &[1, 2]).unwrap_err();
        assert_eq!(error.http_status(), 502);
        assert!(error.message().contains("'y'"), "{error}");
    }

    #[test]
    fn requested_outputs_are_united_or_all() {
        let mut a = request(1, 0.0);
        a.outputs.push(RequestedOutput::new("y"));
        let mut b = request(1, 0.0);
        b.outputs.push(RequestedOutput::new("z"));
        b.outputs.push(RequestedOutput::new("y"));
        let names: Vec<_> = merge(vec![a.clone(), b])
            .unwrap()
            .outputs
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["y", "z"]);
        assert!(merge(vec![a, request(1, 0.0)]).unwrap().outputs.is_empty());
    }
}
