//! Inputs found by the fuzz targets in `rust/core/fuzz`, minimized, kept as plain tests. Each test
//! states the property the target checks and the input that broke it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use tensorgate_core::codec::{v1, v2};
use tensorgate_core::{ErrorKind, InferRequest, Limits};

/// The `v1_request` oracle: a decoded request that `encode_request` accepts must decode again to
/// the same tensors, and encode again to the same bytes.
fn v1_request_round_trip(body: &[u8]) -> InferRequest {
    let limits = Limits::default();
    let first = v1::decode_request(body, &limits).unwrap();
    let encoded = v1::encode_request(&first).unwrap();
    let text = String::from_utf8_lossy(&encoded).into_owned();
    let second = v1::decode_request(&encoded, &limits)
        .unwrap_or_else(|e| panic!("{text} does not decode: {e}"));
    let names = first.inputs.len() > 1;
    assert_eq!(first.inputs.len(), second.inputs.len(), "{text}");
    for (a, b) in first.inputs.iter().zip(&second.inputs) {
        assert!(!names || a.name == b.name, "{text}: {a:?} != {b:?}");
        assert_eq!(
            (a.datatype(), a.shape(), a.data()),
            (b.datatype(), b.shape(), b.data()),
            "{text}"
        );
    }
    assert_eq!(
        text,
        String::from_utf8_lossy(&v1::encode_request(&second).unwrap())
    );
    second
}

/// fuzz `v1_request`, crash-2dfdefcec53e9dce12e31dc1441e39acaab05038: one input with zero rows
/// was encoded as `{"instances":[]}`, which the decoder rejects ("instances" is an empty list).
#[test]
fn v1_request_zero_rows_round_trip() {
    let decoded = v1_request_round_trip(br#"{"inputs":[]}"#);
    assert_eq!(decoded.inputs[0].shape(), &[0]);
    v1_request_round_trip(br#"{"inputs":{"a":[],"b":[]}}"#);
    v1_request_round_trip(br#"{"inputs":{"a":[[],[]],"b":[]}}"#);
}

/// Several inputs sharing dimension 0 whose first is a BYTES input named `b64` were written as
/// rows `{"b64": "<string>", ...}`, which V1 reads as a binary value, not an input named `b64`.
#[test]
fn v1_request_first_input_named_b64_round_trip() {
    v1_request_round_trip(br#"{"inputs":{"b64":["x"],"a":["y"]}}"#);
    v1_request_round_trip(br#"{"inputs":{"b64":["QQ=="],"a":[1]}}"#);
}

/// The same ambiguity on the response side, found by replaying a hand-made input through the
/// `v1_response` target: outputs `b64` (BYTES, one string per row) then `a` are encoded as
/// `{"predictions":[{"b64":"x","a":"y"}]}`, which `decode_response` rejects. As on the request
/// side, such outputs are now written in the columnar form, `{"predictions":{"b64":[...],...}}`.
#[test]
fn v1_response_first_output_named_b64_round_trip() {
    let limits = Limits::default();
    let first =
        v1::decode_response(br#"{"predictions":{"b64":["x"],"a":["y"]}}"#, "m", &limits).unwrap();
    let encoded = v1::encode_response(&first).unwrap();
    let second = v1::decode_response(&encoded, "m", &limits)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", String::from_utf8_lossy(&encoded)));
    assert_eq!(first.outputs, second.outputs);
}

fn v2_request(json: &str) -> tensorgate_core::Result<InferRequest> {
    v2::decode_request(
        &Bytes::copy_from_slice(json.as_bytes()),
        None,
        &Limits::default(),
    )
}

/// fuzz `v2_request`, crash-42add5bb06e2fcbc63147c209f09a80a2166cad2, minimized to (after the
/// target's 3-byte prefix `00 00 00`: no header length) the body below. `data` is parsed as soon
/// as `shape` and `datatype` are known, and a later second `datatype` replaced the datatype
/// without re-reading the data: an INT32 tensor of shape [1] holding 8 bytes, which re-encoded as
/// two elements. A second `shape` could likewise leave fewer bytes than the shape needs. A
/// tensor object may now hold each of `shape`, `datatype` and `data` once.
#[test]
fn v2_tensor_fields_after_parsed_data() {
    let bodies = [
        r#"{"inputs":[{"name":"u","shape":[1],"datatype":"INT64","data":[4],"datatype":"INT32","a":["9"]}]}"#,
        r#"{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[1],"shape":[1000]}]}"#,
        r#"{"inputs":[{"name":"x","datatype":"UINT64","shape":[1],"data":[18446744073709551615],"datatype":"INT64"}]}"#,
        r#"{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[1],"data":[1,2]}]}"#,
        r#"{"inputs":[{"name":"x","data":[1],"datatype":"INT8","datatype":"INT16","shape":[1]}]}"#,
    ];
    for body in bodies {
        let e = v2_request(body).expect_err(body);
        assert_eq!(e.kind(), ErrorKind::BadRequest, "{body}: {e}");
        assert!(e.message().contains("more than once"), "{body}: {e}");
    }
    // Keys other than these may repeat (last wins), as before.
    let request = v2_request(
        r#"{"inputs":[{"name":"a","name":"x","datatype":"INT8","shape":[2],"data":[1,2]}]}"#,
    )
    .unwrap();
    assert_eq!(request.inputs[0].name, "x");
}
