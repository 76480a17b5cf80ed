//! Property tests: codec round trips over random tensors of every datatype, concat/split
//! identity, and bounded fuzzing of the V2, gRPC and V1 decoders with mutated bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use tensorgate_core::batch::{concat, split};
use tensorgate_core::codec::{grpc, v1, v2};
use tensorgate_core::tensor::BinaryOutputs;
use tensorgate_core::{DataType, InferRequest, InferResponse, Limits, Tensor};

/// Case count for the round-trip properties; the `PROPTEST_CASES` environment variable still
/// overrides it for longer runs.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A random per-name binary selection over the outputs of `response`.
fn selection(response: &InferResponse, default: bool, flips: &[bool]) -> BinaryOutputs {
    response.outputs.iter().zip(flips.iter().cycle()).fold(
        BinaryOutputs::all(default),
        |b, (t, &flip)| {
            if flip {
                b.with(t.name.clone(), !default)
            } else {
                b
            }
        },
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn v2_json_request_round_trips(request in request()) {
        let encoded = v2::encode_request(&request, false).unwrap();
        // Only tensors JSON cannot hold go binary.
        let forced = request.inputs.iter().filter(|t| {
            t.datatype().is_half()
                || t.bytes_elements().any(|e| std::str::from_utf8(&e).is_err())
        });
        prop_assert_eq!(encoded.binary.as_ref().map_or(0, Vec::len), forced.count());
        prop_assert_eq!(decode_request(&encoded).unwrap(), request);
    }

    #[test]
    fn v2_binary_request_round_trips(request in request()) {
        let encoded = v2::encode_request(&request, true).unwrap();
        prop_assert_eq!(encoded.binary.as_ref().map_or(0, Vec::len), request.inputs.len());
        let (body, header_length) = body_of(&encoded);
        let decoded = v2::decode_request(&body, header_length, &LIMITS).unwrap();
        for t in &decoded.inputs {
            prop_assert!(points_into(t.data(), &body[encoded.json.len()..]));
        }
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn v2_response_round_trips(
        response in response(),
        default in any::<bool>(),
        flips in vec(any::<bool>(), 1..4),
    ) {
        for binary in [BinaryOutputs::all(false), BinaryOutputs::all(true), selection(&response, default, &flips)] {
            let encoded = v2::encode_response(&response, &binary).unwrap();
            prop_assert_eq!(decode_response(&encoded).unwrap(), response.clone());
        }
    }

    #[test]
    fn json_and_binary_forms_decode_equal(tensor in any_tensor("t".into())) {
        let request = InferRequest::new(vec![tensor]);
        let json = decode_request(&v2::encode_request(&request, false).unwrap()).unwrap();
        let binary = decode_request(&v2::encode_request(&request, true).unwrap()).unwrap();
        prop_assert_eq!(&json, &binary);
        prop_assert_eq!(json, request);
    }

    #[test]
    fn encoding_is_deterministic(request in request()) {
        let a = v2::encode_request(&request, false).unwrap();
        let b = v2::encode_request(&decode_request(&a).unwrap(), false).unwrap();
        prop_assert_eq!(a.to_vec(), b.to_vec());
    }

    #[test]
    fn concat_then_split_is_identity(
        (parts, rows) in (datatype(), vec(0usize..=4, 0..=3), vec(0usize..=5, 1..=5))
            .prop_flat_map(|(datatype, trailing, rows)| {
                let parts: Vec<_> = rows
                    .iter()
                    .map(|&n| {
                        let mut shape = vec![n];
                        shape.extend_from_slice(&trailing);
                        tensor_of("x".into(), datatype, shape)
                    })
                    .collect();
                (parts, Just(rows))
            })
    ) {
        let merged = concat(&parts).unwrap();
        prop_assert_eq!(merged.rows(), rows.iter().sum::<usize>());
        let rebuilt = Tensor::new("x", merged.datatype(), merged.shape().to_vec(), merged.data().clone(), &LIMITS);
        prop_assert_eq!(rebuilt.as_ref(), Ok(&merged));
        let pieces = split(&merged, &rows).unwrap();
        for piece in &pieces {
            prop_assert!(points_into(piece.data(), merged.data()));
        }
        prop_assert_eq!(pieces, parts);
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz: mutated bodies never panic the decoder

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    SetByte { at: usize, byte: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are taken modulo the body length when applied.
    let interesting = proptest::sample::select(b"[]{}\",:0123456789-.eE \\tfnNI\xff\x00".to_vec());
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (any::<usize>(), prop_oneof![any::<u8>(), interesting.clone()])
            .prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), vec(prop_oneof![any::<u8>(), interesting], 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn apply(body: &mut Vec<u8>, mutation: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if !body.is_empty() {
                let i = pos(*at, body.len());
                body[i] ^= 1 << bit;
            }
        }
        Mutation::SetByte { at, byte } => {
            if !body.is_empty() {
                let i = pos(*at, body.len());
                body[i] = *byte;
            }
        }
        Mutation::Truncate { at } => body.truncate(pos(*at, body.len() + 1)),
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, body.len() + 1);
            body.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let i = pos(*at, body.len() + 1);
            let end = (i + len).min(body.len());
            body.drain(i..end);
        }
        Mutation::Duplicate { at, len } => {
            let i = pos(*at, body.len() + 1);
            let end = (i + len).min(body.len());
            let copy = body[i..end].to_vec();
            body.splice(i..i, copy);
        }
    }
}

#[derive(Debug, Clone)]
enum HeaderLength {
    None,
    Original,
    /// The original shifted by a small amount.
    Shifted(i8),
    Any(usize),
}

fn header_length() -> impl Strategy<Value = HeaderLength> {
    prop_oneof![
        2 => Just(HeaderLength::None),
        3 => Just(HeaderLength::Original),
        2 => any::<i8>().prop_map(HeaderLength::Shifted),
        1 => prop_oneof![0usize..512, Just(usize::MAX)].prop_map(HeaderLength::Any),
    ]
}

/// Valid bodies to mutate: JSON, binary and nested-data variants.
fn seed_body() -> impl Strategy<Value = (Vec<u8>, Option<usize>)> {
    (request(), any::<bool>()).prop_map(|(request, binary)| {
        let encoded = v2::encode_request(&request, binary).unwrap();
        (encoded.to_vec(), encoded.header_length())
    })
}

fn fuzz_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::DEFAULT),
        1 => (0usize..4, 0usize..6, 0usize..3, 0usize..8, 0usize..4).prop_map(
            |(tensors, depth, rank, element_len, elements)| Limits {
                max_tensors: tensors,
                max_json_depth: depth,
                max_rank: rank,
                max_bytes_element_len: element_len,
                max_tensor_elements: elements,
                max_body_bytes: 1 << 16,
            }
        ),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_bodies_never_panic_the_decoder(
        (body, original) in seed_body(),
        mutations in vec(mutation(), 1..5),
        header in header_length(),
        limits in fuzz_limits(),
    ) {
        let mut body = body;
        for m in &mutations {
            apply(&mut body, m);
        }
        let header_length = match header {
            HeaderLength::None => None,
            HeaderLength::Original => original,
            HeaderLength::Shifted(d) => original.map(|h| h.saturating_add_signed(isize::from(d))),
            HeaderLength::Any(h) => Some(h),
        };
        let body = Bytes::from(body);
        // Ok or Err are both fine; a panic fails the property. What decodes must re-encode.
        if let Ok(request) = v2::decode_request(&body, header_length, &limits) {
            let encoded = v2::encode_request(&request, false).unwrap();
            prop_assert_eq!(decode_request(&encoded).map(|r| r.inputs.len()), Ok(request.inputs.len()));
        }
        if let Ok(response) = v2::decode_response(&body, header_length, &limits) {
            v2::encode_response(&response, &BinaryOutputs::all(false)).unwrap();
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(
        body in vec(any::<u8>(), 0..256),
        header in proptest::option::of(0usize..300),
    ) {
        let body = Bytes::from(body);
        let _ = v2::decode_request(&body, header, &LIMITS);
        let _ = v2::decode_response(&body, header, &LIMITS);
    }
}

/// A JSON-ish token soup fed to the decoder: far more likely than random bytes to get past the
/// first syntax error and into the tensor reader.
fn token_soup() -> impl Strategy<Value = String> {
    let token = proptest::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"inputs\"",
        "\"outputs\"",
        "\"name\"",
        "\"shape\"",
        "\"datatype\"",
        "\"data\"",
        "\"parameters\"",
        "\"binary_data_size\"",
        "\"id\"",
        "\"a\"",
        "\"FP32\"",
        "\"INT8\"",
        "\"BYTES\"",
        "\"BOOL\"",
        "\"UINT64\"",
        "\"FP16\"",
        "0",
        "1",
        "2",
        "-1",
        "1.5",
        "1e400",
        "NaN",
        "-Infinity",
        "true",
        "null",
        "\"\\u00e9\"",
        "4294967296",
        "18446744073709551616",
    ]);
    vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn token_soup_never_panics_the_decoder(json in token_soup(), tail in vec(any::<u8>(), 0..12)) {
        let mut body = json.clone().into_bytes();
        body.extend_from_slice(&tail);
        let body = Bytes::from(body);
        let _ = v2::decode_request(&body, None, &LIMITS);
        let _ = v2::decode_request(&body, Some(json.len()), &LIMITS);
        let _ = v2::decode_response(&body, Some(json.len()), &LIMITS);
    }
}

#[test]
fn every_datatype_is_generated() {
    // The generators reach every datatype, so the properties above cover them all.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        seen.insert(datatype().new_tree(&mut runner).unwrap().current());
    }
    assert_eq!(seen.len(), DataType::ALL.len());
}

/// What a request looks like after a gRPC round trip: the model name travels in the message,
/// and proto3 cannot tell an empty id from none.
fn as_grpc_sees_it(mut request: InferRequest, model: &str) -> InferRequest {
    request.model_name = Some(model.to_owned());
    request.model_version = None;
    request.id = request.id.filter(|id| !id.is_empty());
    request
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn grpc_request_round_trips(request in request()) {
        let message = Bytes::from(grpc::encode_request(&request, "m", None));
        let decoded = grpc::decode_request(message.clone(), &LIMITS).unwrap();
        for t in &decoded.inputs {
            prop_assert!(points_into(t.data(), &message) || t.data().is_empty());
        }
        prop_assert_eq!(decoded, as_grpc_sees_it(request, "m"));
    }

    #[test]
    fn grpc_response_round_trips(response in response()) {
        let message = Bytes::from(grpc::encode_response(&response));
        let mut expected = response;
        expected.id = expected.id.filter(|id| !id.is_empty());
        expected.model_version = expected.model_version.filter(|v| !v.is_empty());
        prop_assert_eq!(grpc::decode_response(message, &LIMITS).unwrap(), expected);
    }

    #[test]
    fn json_binary_and_grpc_forms_decode_equal(tensor in any_tensor("t".into())) {
        let request = InferRequest::new(vec![tensor]);
        let json = decode_request(&v2::encode_request(&request, false).unwrap()).unwrap();
        let binary = decode_request(&v2::encode_request(&request, true).unwrap()).unwrap();
        let message = Bytes::from(grpc::encode_request(&request, "m", None));
        let grpc = grpc::decode_request(message, &LIMITS).unwrap();
        prop_assert_eq!(&json.inputs, &binary.inputs);
        prop_assert_eq!(&json.inputs, &grpc.inputs);
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_grpc_messages_never_panic_the_decoder(
        request in request(),
        mutations in vec(mutation(), 1..5),
        limits in fuzz_limits(),
    ) {
        let mut message = grpc::encode_request(&request, "m", None);
        for m in &mutations {
            apply(&mut message, m);
        }
        // Ok or Err are both fine; a panic fails the property. What decodes must re-encode.
        if let Ok(decoded) = grpc::decode_request(Bytes::from(message), &limits) {
            let again = grpc::encode_request(&decoded, "m", None);
            prop_assert!(grpc::decode_request(Bytes::from(again), &LIMITS).is_ok());
        }
    }

    #[test]
    fn mutated_v1_bodies_never_panic_the_decoder(
        request in request(),
        mutations in vec(mutation(), 1..5),
        limits in fuzz_limits(),
    ) {
        let Ok(body) = v1::encode_request(&request) else { return Ok(()) };
        let mut body = body;
        for m in &mutations {
            apply(&mut body, m);
        }
        if let Ok(decoded) = v1::decode_request(&body, &limits) {
            v1::encode_request(&decoded).unwrap();
        }
        if let Ok(decoded) = v1::decode_response(&body, "m", &limits) {
            v1::encode_response(&decoded).unwrap();
        }
    }
}
