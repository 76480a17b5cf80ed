//! Unit tests of the V1 codec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;

use super::*;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::tensor::{DataType, InferRequest, InferResponse, Tensor};

fn request(json: &str) -> Result<InferRequest> {
    decode_request(json.as_bytes(), &Limits::default())
}

fn ok(json: &str) -> Vec<Tensor> {
    request(json).unwrap().inputs
}

fn err(json: &str) -> Error {
    let e = request(json).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
    e
}

fn i64s(t: &Tensor) -> Vec<i64> {
    assert_eq!(t.datatype(), DataType::Int64);
    t.data()
        .as_chunks::<8>()
        .0
        .iter()
        .map(|c| i64::from_le_bytes(*c))
        .collect()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    assert_eq!(t.datatype(), DataType::Fp64);
    t.data()
        .as_chunks::<8>()
        .0
        .iter()
        .map(|c| f64::from_le_bytes(*c))
        .collect()
}

fn strings(t: &Tensor) -> Vec<Vec<u8>> {
    assert_eq!(t.datatype(), DataType::Bytes);
    t.bytes_elements().map(|b| b.to_vec()).collect()
}

fn tensor(name: &str, datatype: DataType, shape: Vec<usize>, data: Vec<u8>) -> Tensor {
    Tensor::new(name, datatype, shape, Bytes::from(data), &Limits::default()).unwrap()
}

fn int64(name: &str, shape: Vec<usize>, values: &[i64]) -> Tensor {
    tensor(
        name,
        DataType::Int64,
        shape,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn fp64(name: &str, shape: Vec<usize>, values: &[f64]) -> Tensor {
    tensor(
        name,
        DataType::Fp64,
        shape,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn bytes(name: &str, shape: Vec<usize>, values: &[&[u8]]) -> Tensor {
    let mut data = Vec::new();
    for v in values {
        crate::tensor::bytes_elements::push(&mut data, v).unwrap();
    }
    tensor(name, DataType::Bytes, shape, data)
}

fn text(body: Vec<u8>) -> String {
    String::from_utf8(body).unwrap()
}

#[test]
fn rows_of_ints_are_int64() {
    let inputs = ok(r#"{"instances": [[1, 2, 3], [4, 5, -6]]}"#);
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].name, "input-0");
    assert_eq!(inputs[0].shape(), &[2, 3]);
    assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4, 5, -6]);
}

#[test]
fn any_float_makes_fp64() {
    let inputs = ok(r#"{"instances": [[1, 2], [3.5, 4]]}"#);
    assert_eq!(inputs[0].shape(), &[2, 2]);
    assert_eq!(f64s(&inputs[0]), [1.0, 2.0, 3.5, 4.0]);
    let inputs = ok(r#"{"instances": [1e2, NaN, Infinity, -Infinity]}"#);
    let values = f64s(&inputs[0]);
    assert_eq!(values[0], 100.0);
    assert!(values[1].is_nan());
    assert_eq!(values[2..], [f64::INFINITY, f64::NEG_INFINITY]);
    // Integers beyond i64 fall back to FP64.
    let inputs = ok(r#"{"instances": [1, 18446744073709551615]}"#);
    assert_eq!(f64s(&inputs[0]), [1.0, 18446744073709551615.0]);
    let inputs = ok(r#"{"instances": [-9223372036854775808, 9223372036854775807]}"#);
    assert_eq!(i64s(&inputs[0]), [i64::MIN, i64::MAX]);
}

#[test]
fn nested_rows_and_scalar_rows() {
    let inputs = ok(r#"{"instances": [[[1], [2]], [[3], [4]], [[5], [6]]]}"#);
    assert_eq!(inputs[0].shape(), &[3, 2, 1]);
    assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4, 5, 6]);
    let inputs = ok(r#"{"instances": [7, 8]}"#);
    assert_eq!(inputs[0].shape(), &[2]);
    let inputs = ok(r#"{"instances": [[], []]}"#);
    assert_eq!(inputs[0].shape(), &[2, 0]);
    assert_eq!(inputs[0].datatype(), DataType::Fp64);
}

#[test]
fn strings_b64_and_bools() {
    let inputs = ok(r#"{"instances": ["a", "héllo"]}"#);
    assert_eq!(inputs[0].shape(), &[2]);
    assert_eq!(
        strings(&inputs[0]),
        [b"a".to_vec(), "héllo".as_bytes().to_vec()]
    );

    let inputs = ok(r#"{"instances": [{"b64": "AAH/"}, {"b64": "aGk"}, "x"]}"#);
    assert_eq!(inputs[0].shape(), &[3]);
    assert_eq!(
        strings(&inputs[0]),
        [vec![0, 1, 255], b"hi".to_vec(), b"x".to_vec()]
    );

    let inputs = ok(r#"{"instances": [[{"b64": "AA=="}, {"b64": "AQ=="}]]}"#);
    assert_eq!(inputs[0].shape(), &[1, 2]);
    assert_eq!(strings(&inputs[0]), [vec![0], vec![1]]);

    let inputs = ok(r#"{"instances": [[true, false], [false, true]]}"#);
    assert_eq!(inputs[0].datatype(), DataType::Bool);
    assert_eq!(inputs[0].shape(), &[2, 2]);
    assert_eq!(inputs[0].data().as_ref(), [1, 0, 0, 1]);

    assert!(
        err(r#"{"instances": [{"b64": "!!!"}]}"#)
            .message()
            .contains("base64")
    );
    assert!(
        err(r#"{"instances": [{"b64": "AA==", "x": 1}]}"#)
            .message()
            .contains("b64")
    );
}

#[test]
fn named_instances() {
    let inputs = ok(r#"{"instances": [
        {"a": [1, 2], "b": "x", "c": {"b64": "AA=="}},
        {"b": "y", "a": [3, 4], "c": {"b64": "AQ=="}}
    ]}"#);
    let names: Vec<_> = inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(inputs[0].shape(), &[2, 2]);
    assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4]);
    assert_eq!(inputs[1].shape(), &[2]);
    assert_eq!(strings(&inputs[1]), [b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(strings(&inputs[2]), [vec![0], vec![1]]);
    // A "b64" key whose value is not a string is an input named b64.
    let inputs = ok(r#"{"instances": [{"b64": [1]}, {"b64": [2]}]}"#);
    assert_eq!(inputs[0].name, "b64");
    assert_eq!(inputs[0].shape(), &[2, 1]);

    let e = err(r#"{"instances": [{"a": 1, "b": 2}, {"a": 3}]}"#);
    assert!(e.message().contains("instance 1 lacks the key 'b'"), "{e}");
    let e = err(r#"{"instances": [{"a": 1}, {"a": 3, "z": 4}]}"#);
    assert!(e.message().contains("instance 1 has the key 'z'"), "{e}");
    let e = err(r#"{"instances": [{"a": 1}, {"a": 3, "a": 4}]}"#);
    assert!(e.message().contains("twice"), "{e}");
    let e = err(r#"{"instances": [{"a": 1}, [2]]}"#);
    assert!(e.message().contains("instance 1 is not an object"), "{e}");
    let e = err(r#"{"instances": [{"a": [1]}, {"a": [1, 2]}]}"#);
    assert!(e.message().starts_with("instance 1, input 'a': "), "{e}");
    assert!(
        err(r#"{"instances": [{}]}"#)
            .message()
            .contains("empty object")
    );
}

#[test]
fn columnar_inputs() {
    let inputs = ok(r#"{"inputs": {"x": [[1, 2], [3, 4]], "y": "s", "z": 1.5}}"#);
    assert_eq!(inputs.len(), 3);
    assert_eq!(
        (inputs[0].name.as_str(), inputs[0].shape()),
        ("x", &[2, 2][..])
    );
    assert_eq!(i64s(&inputs[0]), [1, 2, 3, 4]);
    assert_eq!((inputs[1].name.as_str(), inputs[1].shape()), ("y", &[][..]));
    assert_eq!(f64s(&inputs[2]), [1.5]);

    let inputs = ok(r#"{"inputs": [[1.0, 2.0]], "signature_name": "x"}"#);
    assert_eq!(inputs[0].name, "input-0");
    assert_eq!(inputs[0].shape(), &[1, 2]);
    let inputs = ok(r#"{"inputs": 3}"#);
    assert_eq!(inputs[0].shape(), &[] as &[usize]);
    assert_eq!(i64s(&inputs[0]), [3]);
    let inputs = ok(r#"{"inputs": {"b64": "AAE="}}"#);
    assert_eq!(inputs[0].name, "input-0");
    assert_eq!(strings(&inputs[0]), [vec![0, 1]]);
    assert!(
        err(r#"{"inputs": {"a": 1, "a": 2}}"#)
            .message()
            .contains("duplicate")
    );
    assert!(
        err(r#"{"inputs": {"a": [[1], [1, 2]]}}"#)
            .message()
            .starts_with("input 'a': ")
    );
}

#[test]
fn ragged_rows_rejected() {
    let e = err(r#"{"instances": [[1, 2], [3]]}"#);
    assert!(e.message().starts_with("instance 1: "), "{e}");
    assert!(e.message().contains("same shape"), "{e}");
    let e = err(r#"{"instances": [[1, 2], [3, 4], [[5], 6]]}"#);
    assert!(e.message().starts_with("instance 2: "), "{e}");
    let e = err(r#"{"instances": [1, [2]]}"#);
    assert!(e.message().starts_with("instance 1: "), "{e}");
    let e = err(r#"{"instances": [[1], 2]}"#);
    assert!(e.message().starts_with("instance 1: "), "{e}");
    let e = err(r#"{"instances": [[[1, 2]], [[3]]]}"#);
    assert!(e.message().starts_with("instance 1: "), "{e}");
    err(r#"{"instances": [[], [1]]}"#);
}

#[test]
fn envelope_errors() {
    let e = err(r#"{"instances": {"a": 1}}"#);
    assert_eq!(e.message(), "Expected \"instances\" to be a list");
    let e = err(r#"{"instances": "x"}"#);
    assert_eq!(e.message(), "Expected \"instances\" to be a list");
    let e = err(r#"{"data": [1]}"#);
    assert!(e.message().contains("\"instances\" or \"inputs\""), "{e}");
    let e = err(r#"{"instances": [1], "inputs": [1]}"#);
    assert!(e.message().contains("more than once"), "{e}");
    assert!(err(r#"{"instances": []}"#).message().contains("empty"));
    let e = err(r#"{"instances": [1, 2"#);
    assert!(
        e.message().starts_with("Unrecognized request format: "),
        "{e}"
    );
    let e = err("not json");
    assert!(
        e.message().starts_with("Unrecognized request format: "),
        "{e}"
    );
    let e = err("[1]");
    assert!(
        e.message().starts_with("Unrecognized request format: "),
        "{e}"
    );
    let e = err(r#"{"instances": [1]} trailing"#);
    assert!(
        e.message().starts_with("Unrecognized request format: "),
        "{e}"
    );

    let limits = Limits {
        max_body_bytes: 8,
        ..Limits::default()
    };
    let e = decode_request(br#"{"instances": [1]}"#, &limits).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
}

#[test]
fn mixed_types_rejected() {
    let e = err(r#"{"instances": [1, "a"]}"#);
    assert!(e.message().contains("mixes number and string"), "{e}");
    let e = err(r#"{"instances": ["a", 1]}"#);
    assert!(e.message().contains("mixes string and number"), "{e}");
    let e = err(r#"{"instances": [true, 1.5]}"#);
    assert!(e.message().contains("mixes boolean and number"), "{e}");
    let e = err(r#"{"instances": [[1], [{"b64": "AA=="}]]}"#);
    assert!(e.message().contains("mixes"), "{e}");
    assert!(err(r#"{"instances": [null]}"#).message().contains("null"));
    assert!(
        err(r#"{"instances": [[{"x": 1}]]}"#)
            .message()
            .contains("b64")
    );
}

#[test]
fn limits_apply() {
    let limits = Limits {
        max_json_depth: 5,
        ..Limits::default()
    };
    // Depth counts every level: root object 1, instances 2, then each nested list.
    assert!(decode_request(br#"{"instances": [[[[1]]]]}"#, &limits).is_ok());
    let e = decode_request(br#"{"instances": [[[[[1]]]]]}"#, &limits).unwrap_err();
    assert!(e.message().contains("nested deeper"), "{e}");
    let deep = format!("{{\"inputs\": {}1{}}}", "[".repeat(200), "]".repeat(200));
    assert!(err(&deep).message().contains("nested deeper"));

    let limits = Limits {
        max_tensor_elements: 3,
        ..Limits::default()
    };
    let e = decode_request(br#"{"instances": [[1, 2], [3, 4]]}"#, &limits).unwrap_err();
    assert!(e.message().contains("limit"), "{e}");
    let limits = Limits {
        max_bytes_element_len: 2,
        ..Limits::default()
    };
    assert!(decode_request(br#"{"instances": ["abc"]}"#, &limits).is_err());
    assert!(decode_request(br#"{"instances": [{"b64": "AAAA"}]}"#, &limits).is_err());
    let limits = Limits {
        max_tensors: 1,
        ..Limits::default()
    };
    assert!(decode_request(br#"{"instances": [{"a": 1, "b": 2}]}"#, &limits).is_err());
    assert!(decode_request(br#"{"inputs": {"a": 1, "b": 2}}"#, &limits).is_err());
}

#[test]
fn huge_depth_limit_does_not_overflow_the_stack() {
    let limits = Limits {
        max_json_depth: usize::MAX,
        max_rank: usize::MAX,
        ..Limits::default()
    };
    let depth = 200_000;
    let body = format!(
        "{{\"instances\":[{}7{}]}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let request = decode_request(body.as_bytes(), &limits).unwrap();
    assert_eq!(request.inputs[0].shape().len(), depth + 1);
    assert_eq!(i64s(&request.inputs[0]), [7]);
    assert_eq!(text(encode_request(&request).unwrap()), body);
}

#[test]
fn encode_nests_by_shape() {
    let cases: [(Vec<usize>, &str); 5] = [
        (vec![2, 2, 2], "[[[0,1],[2,3]],[[4,5],[6,7]]]"),
        (vec![1, 3, 1], "[[[0],[1],[2]]]"),
        (vec![2, 0, 3], "[[],[]]"),
        (vec![0, 2], "[]"),
        (vec![1, 1, 1, 1], "[[[[0]]]]"),
    ];
    for (shape, expected) in cases {
        let n: usize = shape.iter().product();
        let values: Vec<i64> = (0..n as i64).collect();
        let response = InferResponse {
            outputs: vec![int64("t", shape, &values)],
            ..InferResponse::default()
        };
        let body = text(encode_response(&response).unwrap());
        assert_eq!(body, format!("{{\"predictions\":{expected}}}"));
    }
}

#[test]
fn encode_single_output() {
    let response = InferResponse {
        outputs: vec![int64("out", vec![2, 2], &[1, 2, 3, 4])],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[[1,2],[3,4]]}"#
    );
    let response = InferResponse {
        outputs: vec![fp64("out", vec![3], &[0.1, 1.0, f64::NAN])],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[0.1,1.0,NaN]}"#
    );
    let response = InferResponse {
        outputs: vec![fp64("s", vec![], &[2.5])],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":2.5}"#
    );
    let response = InferResponse {
        outputs: vec![int64("e", vec![2, 0], &[])],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[[],[]]}"#
    );
    let half: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let response = InferResponse {
        outputs: vec![tensor("h", DataType::Fp16, vec![2], half)],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[1.5,-2.0]}"#
    );
    let response = InferResponse {
        outputs: vec![tensor("b", DataType::Bool, vec![1, 2], vec![1, 0])],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[[true,false]]}"#
    );
}

#[test]
fn encode_bytes_as_strings_or_b64() {
    let response = InferResponse {
        outputs: vec![bytes("b", vec![3], &[b"hi \"x\"", &[0xff, 0x00], b""])],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":["hi \"x\"",{"b64":"/wA="},""]}"#
    );
}

#[test]
fn encode_multi_output() {
    let response = InferResponse {
        outputs: vec![
            int64("label", vec![2], &[1, 0]),
            fp64("scores", vec![2, 2], &[0.25, 0.75, 0.5, 0.5]),
        ],
        ..InferResponse::default()
    };
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[{"label":1,"scores":[0.25,0.75]},{"label":0,"scores":[0.5,0.5]}]}"#
    );
    let response = InferResponse {
        outputs: vec![
            int64("a", vec![2], &[1, 0]),
            int64("b", vec![3], &[1, 2, 3]),
        ],
        ..InferResponse::default()
    };
    let e = encode_response(&response).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("dimension 0"), "{e}");
    let response = InferResponse::default();
    assert_eq!(
        text(encode_response(&response).unwrap()),
        r#"{"predictions":[]}"#
    );
}

#[test]
fn encode_request_forms() {
    let one = InferRequest::new(vec![int64("x", vec![2, 1], &[1, 2])]);
    assert_eq!(
        text(encode_request(&one).unwrap()),
        r#"{"instances":[[1],[2]]}"#
    );
    let named = InferRequest::new(vec![
        int64("a", vec![2], &[1, 2]),
        bytes("b", vec![2, 1], &[b"x", b"y"]),
    ]);
    assert_eq!(
        text(encode_request(&named).unwrap()),
        r#"{"instances":[{"a":1,"b":["x"]},{"a":2,"b":["y"]}]}"#
    );
    let columnar = InferRequest::new(vec![
        int64("a", vec![1], &[1]),
        int64("b", vec![2], &[1, 2]),
    ]);
    assert_eq!(
        text(encode_request(&columnar).unwrap()),
        r#"{"inputs":{"a":[1],"b":[1,2]}}"#
    );
    let scalar = InferRequest::new(vec![int64("s", vec![], &[5])]);
    assert_eq!(
        text(encode_request(&scalar).unwrap()),
        r#"{"inputs":{"s":5}}"#
    );
    assert!(encode_request(&InferRequest::default()).is_err());
}

#[test]
fn request_round_trips() {
    let cases = [
        vec![int64("input-0", vec![2, 3], &[1, 2, 3, 4, 5, 6])],
        vec![fp64("input-0", vec![3], &[0.1, -2.5, 1e300])],
        vec![bytes("input-0", vec![2], &[b"text", &[0x80, 0x81]])],
        vec![
            int64("a", vec![2], &[1, 2]),
            fp64("b", vec![2, 2], &[1.5, 2.5, 3.5, 4.5]),
        ],
        vec![
            int64("a", vec![1], &[1]),
            bytes("b", vec![2], &[b"x", b"y"]),
        ],
        vec![fp64("s", vec![], &[0.5])],
        vec![int64("input-0", vec![2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7])],
        vec![tensor("input-0", DataType::Bool, vec![1, 3], vec![1, 0, 1])],
    ];
    for inputs in cases {
        let request = InferRequest::new(inputs);
        let body = encode_request(&request).unwrap();
        let decoded = decode_request(&body, &Limits::default()).unwrap();
        assert_eq!(decoded.inputs, request.inputs, "{}", text(body));
    }
}

#[test]
fn response_round_trips() {
    let cases = [
        vec![int64("output-0", vec![2, 2], &[1, 2, 3, 4])],
        vec![fp64("output-0", vec![2], &[0.5, f64::INFINITY])],
        vec![bytes("output-0", vec![1, 2], &[b"ok", &[0xfe]])],
        vec![
            int64("label", vec![2], &[1, 0]),
            fp64("p", vec![2, 1], &[0.5, 0.25]),
        ],
        vec![int64("output-0", vec![0], &[])],
    ];
    for outputs in cases {
        let response = InferResponse {
            outputs,
            ..InferResponse::default()
        };
        let body = encode_response(&response).unwrap();
        let decoded = decode_response(&body, "m", &Limits::default()).unwrap();
        assert_eq!(decoded.model_name, "m");
        let mut expected = response.outputs.clone();
        if expected[0].element_count() == 0 {
            // An empty list carries no element type: it reads back as FP64.
            expected = vec![fp64("output-0", vec![0], &[])];
        }
        assert_eq!(decoded.outputs, expected, "{}", text(body));
    }
}

#[test]
fn decode_response_forms() {
    let limits = Limits::default();
    let r = decode_response(br#"{"predictions": [[0.5, 0.5]], "x": 1}"#, "m", &limits).unwrap();
    assert_eq!(r.outputs[0].name, "output-0");
    assert_eq!(r.outputs[0].shape(), &[1, 2]);
    let r = decode_response(br#"{"predictions": {"a": [1], "b": "s"}}"#, "m", &limits).unwrap();
    assert_eq!(r.outputs.len(), 2);
    assert_eq!(r.outputs[0].shape(), &[1]);
    let r = decode_response(br#"{"predictions": 3}"#, "m", &limits).unwrap();
    assert_eq!(i64s(&r.outputs[0]), [3]);
    let e = decode_response(br#"{"outputs": []}"#, "m", &limits).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert!(e.message().contains("predictions"), "{e}");
    let e = decode_response(br#"{"predictions": [[1], [2, 3]]}"#, "m", &limits).unwrap_err();
    assert!(e.message().starts_with("prediction 1: "), "{e}");
}

#[test]
fn truncated_json_is_unrecognized_whatever_it_started_as() {
    for body in [
        &br#"{"inputs": [{"name": "x","#[..],
        br#"{"instances": [[1, 2"#,
        b"{",
    ] {
        let message = decode_request(body, &Limits::DEFAULT)
            .err()
            .map(|e| e.message().to_owned());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.starts_with("Unrecognized request format: ")),
            "{message:?}"
        );
    }
}
