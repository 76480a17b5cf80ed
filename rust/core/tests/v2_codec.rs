//! V2 REST codec: JSON bodies, the binary tensor extension, binary output resolution and the
//! bad-input corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use half::{bf16, f16};
use jiter::{Jiter, JsonValue};
use tensorgate_core::codec::v2;
use tensorgate_core::tensor::BinaryOutputs;
use tensorgate_core::{
    DataType, Error, ErrorKind, InferRequest, InferResponse, Limits, Parameter, Parameters,
    RequestedOutput, Tensor,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The names of the tensors the JSON header marks binary (with `binary_data_size`), in order.
/// Also checks that every tensor has exactly one of `data` and `binary_data_size`.
fn binary_names(json: &[u8], list: &str) -> Vec<String> {
    let mut jiter = Jiter::new(json).with_allow_inf_nan();
    let mut names = Vec::new();
    let mut key = jiter.next_object().unwrap().map(str::to_owned);
    while let Some(top) = key {
        if top == list {
            let mut item = jiter.next_array().unwrap();
            while item.is_some() {
                let (mut name, mut has_size, mut has_data) = (None, false, false);
                let mut field = jiter.next_object().unwrap().map(str::to_owned);
                while let Some(f) = field {
                    match f.as_str() {
                        "name" => name = Some(jiter.next_str().unwrap().to_owned()),
                        "data" => {
                            has_data = true;
                            jiter.next_skip().unwrap();
                        }
                        "parameters" => {
                            let mut p = jiter.next_object().unwrap().map(str::to_owned);
                            while let Some(k) = p {
                                has_size |= k == "binary_data_size";
                                jiter.next_skip().unwrap();
                                p = jiter.next_key().unwrap().map(str::to_owned);
                            }
                        }
                        _ => jiter.next_skip().unwrap(),
                    }
                    field = jiter.next_key().unwrap().map(str::to_owned);
                }
                assert!(
                    has_size != has_data,
                    "tensor {name:?} must have one of data / size"
                );
                if has_size {
                    names.push(name.unwrap());
                }
                item = jiter.array_step().unwrap();
            }
        } else {
            jiter.next_skip().unwrap();
        }
        key = jiter.next_key().unwrap().map(str::to_owned);
    }
    jiter.finish().unwrap();
    names
}

/// Encodes as JSON and as binary, checks which inputs went binary, decodes both and compares.
fn assert_request_round_trip(request: &InferRequest, json_forced_binary: &[&str]) {
    for binary in [false, true] {
        let encoded = v2::encode_request(request, binary).unwrap();
        let expected: Vec<String> = if binary {
            request.inputs.iter().map(|t| t.name.clone()).collect()
        } else {
            json_forced_binary.iter().map(|s| (*s).to_owned()).collect()
        };
        assert_eq!(
            binary_names(&encoded.json, "inputs"),
            expected,
            "binary={binary}"
        );
        assert_eq!(encoded.binary.is_some(), !expected.is_empty());
        if let Some(chunks) = &encoded.binary {
            assert_eq!(chunks.len(), expected.len());
            assert_eq!(encoded.header_length(), Some(encoded.json.len()));
        } else {
            assert_eq!(encoded.header_length(), None);
        }
        let decoded = decode_request(&encoded).unwrap();
        assert_eq!(&decoded, request, "binary={binary}");
    }
}

fn assert_response_round_trip(response: &InferResponse, json_forced_binary: &[&str]) {
    let last = response
        .outputs
        .last()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let selections = [
        BinaryOutputs::all(false),
        BinaryOutputs::all(true),
        BinaryOutputs::all(false).with(last.clone(), true),
        BinaryOutputs::all(true).with(last, false),
    ];
    for selection in selections {
        let encoded = v2::encode_response(response, &selection).unwrap();
        let expected: Vec<String> = response
            .outputs
            .iter()
            .filter(|t| {
                selection.is_binary(&t.name) || json_forced_binary.contains(&t.name.as_str())
            })
            .map(|t| t.name.clone())
            .collect();
        assert_eq!(
            binary_names(&encoded.json, "outputs"),
            expected,
            "{selection:?}"
        );
        let decoded = decode_response(&encoded).unwrap();
        assert_eq!(&decoded, response, "{selection:?}");
    }
}

fn one_input(tensor: Tensor) -> InferRequest {
    InferRequest::new(vec![tensor])
}

fn one_output(tensor: Tensor) -> InferResponse {
    InferResponse {
        model_name: "m".into(),
        outputs: vec![tensor],
        ..InferResponse::default()
    }
}

fn check_both(tensor: Tensor, forced_binary: bool) {
    let name = tensor.name.clone();
    let forced: &[&str] = if forced_binary { &[name.as_str()] } else { &[] };
    assert_request_round_trip(&one_input(tensor.clone()), forced);
    assert_response_round_trip(&one_output(tensor), forced);
}

// ---------------------------------------------------------------------------------------------
// Per-datatype round trips

#[test]
fn round_trip_bool() {
    check_both(
        vector("b", DataType::Bool, &[true, false, true, true]),
        false,
    );
}

#[test]
fn round_trip_integers_at_their_limits() {
    check_both(vector("u8", DataType::Uint8, &[u8::MIN, 1, u8::MAX]), false);
    check_both(
        vector("u16", DataType::Uint16, &[u16::MIN, 1, u16::MAX]),
        false,
    );
    check_both(
        vector("u32", DataType::Uint32, &[u32::MIN, 1, u32::MAX]),
        false,
    );
    check_both(
        vector("u64", DataType::Uint64, &[u64::MIN, 1, u64::MAX]),
        false,
    );
    check_both(
        vector("i8", DataType::Int8, &[i8::MIN, -1, 0, i8::MAX]),
        false,
    );
    check_both(
        vector("i16", DataType::Int16, &[i16::MIN, -1, 0, i16::MAX]),
        false,
    );
    check_both(
        vector("i32", DataType::Int32, &[i32::MIN, -1, 0, i32::MAX]),
        false,
    );
    check_both(
        vector("i64", DataType::Int64, &[i64::MIN, -1, 0, i64::MAX]),
        false,
    );
}

#[test]
fn integer_limits_are_written_as_exact_json_integers() {
    let request = InferRequest::new(vec![
        vector("u64", DataType::Uint64, &[u64::MAX]),
        vector("i64", DataType::Int64, &[i64::MIN]),
    ]);
    let json = String::from_utf8(v2::encode_request(&request, false).unwrap().json).unwrap();
    assert!(json.contains("[18446744073709551615]"), "{json}");
    assert!(json.contains("[-9223372036854775808]"), "{json}");
}

const F32_SPECIALS: [f32; 14] = [
    0.0,
    -0.0,
    1.5,
    0.1,
    f32::MIN_POSITIVE,
    f32::EPSILON,
    f32::MAX,
    f32::MIN,
    1e-45,           // smallest subnormal
    -1e-40,          // subnormal
    1.175_494_2e-38, // largest subnormal
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
];

#[test]
fn round_trip_fp32_specials() {
    let largest_subnormal = f32::from_bits(0x007f_ffff);
    assert!(F32_SPECIALS.contains(&largest_subnormal));
    check_both(vector("f", DataType::Fp32, &F32_SPECIALS), false);
    // -0.0 keeps its sign bit and NaN its canonical bits: Tensor equality compares raw bytes.
    let decoded = decode_json_request(
        r#"{"inputs":[{"name":"f","shape":[4],"datatype":"FP32","data":[-0.0,NaN,Infinity,-Infinity]}]}"#,
    )
    .unwrap();
    let data = decoded.inputs[0].data();
    assert_eq!(
        &data[..],
        &raw(&[-0.0f32, f32::NAN, f32::INFINITY, f32::NEG_INFINITY])[..]
    );
}

#[test]
fn fp32_json_uses_shortest_form_and_nan_tokens() {
    let encoded = v2::encode_request(
        &one_input(vector("f", DataType::Fp32, &F32_SPECIALS)),
        false,
    )
    .unwrap();
    let json = String::from_utf8(encoded.json).unwrap();
    assert!(
        json.contains(
            "[0.0,-0.0,1.5,0.1,1.1754944e-38,1.1920929e-7,3.4028235e+38,-3.4028235e+38,1e-45,-1e-40,1.1754942e-38,Infinity,-Infinity,NaN]"
        ),
        "{json}"
    );
}

#[test]
fn round_trip_fp64_specials() {
    let values = [
        0.0,
        -0.0,
        0.1,
        1.0 / 3.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits(0x000f_ffff_ffff_ffff),
        -f64::from_bits(12345),
        f64::MAX,
        f64::MIN,
        9_007_199_254_740_993.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    check_both(vector("d", DataType::Fp64, &values), false);
}

#[test]
fn nineteen_digit_integers_decode() {
    // jiter's own integer reader (without big ints) rejects every 19-digit number.
    let decoded = decode_json_request(
        r#"{"inputs":[{"name":"a","shape":[5],"datatype":"INT64",
            "data":[9223372036854775807,-9223372036854775808,1000000000000000000,-1000000000000000000,999999999999999999]},
           {"name":"b","shape":[1],"datatype":"UINT64","data":[10000000000000000000]}]}"#,
    )
    .unwrap();
    assert_eq!(
        decoded.inputs[0],
        vector(
            "a",
            DataType::Int64,
            &[
                i64::MAX,
                i64::MIN,
                1_000_000_000_000_000_000,
                -1_000_000_000_000_000_000,
                999_999_999_999_999_999
            ]
        )
    );
    assert_eq!(
        decoded.inputs[1],
        vector("b", DataType::Uint64, &[10_000_000_000_000_000_000u64])
    );
}

#[test]
fn fp32_parses_from_text_without_double_rounding() {
    // 1.00000005960464477550 lies just above the midpoint between two f32 values; rounding via
    // f64 first lands exactly on the midpoint and then ties to even (down).
    let decoded = decode_json_request(
        r#"{"inputs":[{"name":"f","shape":[1],"datatype":"FP32","data":[1.00000005960464477550]}]}"#,
    )
    .unwrap();
    assert_eq!(f32s(decoded.inputs[0].data()), vec![1.000_000_1f32]);
}

#[test]
fn round_trip_half_floats_always_binary() {
    let fp16 = [
        f16::ZERO,
        f16::NEG_ZERO,
        f16::ONE,
        f16::MAX,
        f16::MIN,
        f16::MIN_POSITIVE_SUBNORMAL,
        f16::INFINITY,
        f16::NEG_INFINITY,
        f16::from_bits(0x7e01), // NaN with a payload: binary keeps every bit
        f16::from_bits(0xfc01),
    ];
    let bf = [
        bf16::ZERO,
        bf16::NEG_ZERO,
        bf16::ONE,
        bf16::MAX,
        bf16::MIN_POSITIVE_SUBNORMAL,
        bf16::INFINITY,
        bf16::from_bits(0x7fc1),
    ];
    check_both(vector("h", DataType::Fp16, &fp16), true);
    check_both(vector("bh", DataType::Bf16, &bf), true);
}

#[test]
fn round_trip_bytes() {
    let utf8: [&[u8]; 7] = [
        b"",
        b"hello",
        "ünïcødé 🎉 中文".as_bytes(),
        b"quote\" backslash\\ slash/ newline\n cr\r tab\t nul\0 ctrl\x01\x1f del\x7f",
        "\u{2028}\u{2029}\u{feff}".as_bytes(),
        b"",
        b"{\"json\": [1, 2]}",
    ];
    check_both(bytes_vector("s", &utf8), false);
    let not_utf8: [&[u8]; 3] = [b"ok", b"\xff\xfe\x00", b""];
    check_both(bytes_vector("raw", &not_utf8), true);
    check_both(bytes_vector("empty_only", &[b""; 3]), false);
}

#[test]
fn bytes_json_escapes() {
    let encoded = v2::encode_request(
        &one_input(bytes_vector("s", &[b"a\"b\\c\nd\x01\x7f"])),
        false,
    )
    .unwrap();
    let json = String::from_utf8(encoded.json).unwrap();
    assert!(json.contains(r#""data":["a\"b\\c\nd\u0001"#), "{json}");
    let decoded = decode_json_request(
        r#"{"inputs":[{"name":"s","shape":[3],"datatype":"BYTES","data":["\u00e9\ud83c\udf89","\/\b\f","\u0000"]}]}"#,
    )
    .unwrap();
    let elements: Vec<Bytes> = decoded.inputs[0].bytes_elements().collect();
    assert_eq!(
        elements,
        vec![
            Bytes::from("é🎉"),
            Bytes::from_static(b"/\x08\x0c"),
            Bytes::from_static(b"\0")
        ]
    );
}

#[test]
fn round_trip_every_datatype_in_one_request_and_response() {
    let inputs = vec![
        vector("bool", DataType::Bool, &[false, true]),
        vector("u8", DataType::Uint8, &[7u8, 255]),
        vector("u16", DataType::Uint16, &[7u16, 65535]),
        vector("u32", DataType::Uint32, &[7u32, u32::MAX]),
        vector("u64", DataType::Uint64, &[7u64, u64::MAX]),
        vector("i8", DataType::Int8, &[-7i8, i8::MIN]),
        vector("i16", DataType::Int16, &[-7i16, i16::MIN]),
        vector("i32", DataType::Int32, &[-7i32, i32::MIN]),
        vector("i64", DataType::Int64, &[-7i64, i64::MIN]),
        vector("fp16", DataType::Fp16, &[f16::from_f32(0.5), f16::NAN]),
        vector(
            "bf16",
            DataType::Bf16,
            &[bf16::from_f32(0.5), bf16::NEG_INFINITY],
        ),
        vector("fp32", DataType::Fp32, &[0.5f32, -0.0]),
        vector("fp64", DataType::Fp64, &[0.5f64, 1e-310]),
        bytes_vector("bytes", &["", "x"]),
        tensor("scalar", DataType::Fp32, &[], raw(&[3.25f32])),
        tensor("empty", DataType::Int32, &[0, 3], Bytes::new()),
        tensor(
            "matrix",
            DataType::Int16,
            &[2, 3],
            raw(&[1i16, 2, 3, 4, 5, 6]),
        ),
    ];
    let mut request = InferRequest::new(inputs.clone());
    request.id = Some("req-1".into());
    request
        .parameters
        .insert("priority".into(), Parameter::Int64(3));
    request.outputs = vec![RequestedOutput::new("out")];
    assert_request_round_trip(&request, &["fp16", "bf16"]);
    let response = InferResponse {
        model_name: "model".into(),
        model_version: Some("2".into()),
        id: Some("req-1".into()),
        parameters: Parameters::from([("sequence_end".to_owned(), Parameter::Bool(true))]),
        outputs: inputs,
    };
    assert_response_round_trip(&response, &["fp16", "bf16"]);
}

#[test]
fn parameters_round_trip_in_every_position() {
    let params: Parameters = [
        ("b".to_owned(), Parameter::Bool(false)),
        ("i".to_owned(), Parameter::Int64(i64::MIN)),
        ("u".to_owned(), Parameter::Uint64(u64::MAX)),
        ("d".to_owned(), Parameter::Double(-0.0)),
        ("d2".to_owned(), Parameter::Double(1.0)),
        ("d3".to_owned(), Parameter::Double(1e300)),
        ("s".to_owned(), Parameter::String("x\"y\n".into())),
        ("ключ 🎉".to_owned(), Parameter::String(String::new())),
    ]
    .into_iter()
    .collect();
    let mut request = InferRequest::new(vec![
        vector("a", DataType::Int32, &[1i32]).with_parameters(params.clone()),
        vector("h", DataType::Fp16, &[f16::ONE]).with_parameters(params.clone()),
    ]);
    request.parameters = params.clone();
    request.outputs = vec![
        RequestedOutput {
            name: "o".into(),
            parameters: params.clone(),
        },
        RequestedOutput::new("p"),
    ];
    assert_request_round_trip(&request, &["h"]);
    let response = InferResponse {
        model_name: "m".into(),
        parameters: params.clone(),
        outputs: request.inputs.clone(),
        ..InferResponse::default()
    };
    assert_response_round_trip(&response, &["h"]);
}

#[test]
fn parameter_numbers_are_typed_by_value() {
    let request = decode_json_request(
        r#"{"parameters":{"a":1,"b":-1,"c":18446744073709551615,"d":1.0,"e":1e400,"f":NaN,"g":true,"h":"s"},"inputs":[]}"#,
    )
    .unwrap();
    let p = &request.parameters;
    assert_eq!(p["a"], Parameter::Int64(1));
    assert_eq!(p["b"], Parameter::Int64(-1));
    assert_eq!(p["c"], Parameter::Uint64(u64::MAX));
    assert_eq!(p["d"], Parameter::Double(1.0));
    assert_eq!(p["e"], Parameter::Double(f64::INFINITY));
    assert!(matches!(p["f"], Parameter::Double(v) if v.is_nan()));
    assert_eq!(p["g"], Parameter::Bool(true));
    assert_eq!(p["h"], Parameter::String("s".into()));
    let keys: Vec<&str> = p.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["a", "b", "c", "d", "e", "f", "g", "h"],
        "order is kept"
    );
}

// ---------------------------------------------------------------------------------------------
// JSON decoding flexibility

#[test]
fn nested_and_flat_data_decode_equal() {
    let flat = decode_json_request(
        r#"{"inputs":[{"name":"a","shape":[2,2,2],"datatype":"INT32","data":[1,2,3,4,5,6,7,8]}]}"#,
    )
    .unwrap();
    for data in [
        "[[[1,2],[3,4]],[[5,6],[7,8]]]",
        "[[1,2,3,4],[5,6,7,8]]",
        "[[1,2],[3,4],[5,6],[7,8]]",
    ] {
        let nested = decode_json_request(&format!(
            r#"{{"inputs":[{{"name":"a","shape":[2,2,2],"datatype":"INT32","data":{data}}}]}}"#
        ))
        .unwrap();
        assert_eq!(nested, flat, "{data}");
    }
    assert_eq!(i32s(flat.inputs[0].data()), [1, 2, 3, 4, 5, 6, 7, 8]);
    // Nested BYTES and scalars.
    let nested = decode_json_request(
        r#"{"inputs":[{"name":"s","shape":[2,1],"datatype":"BYTES","data":[["x"],["yz"]]},
                      {"name":"k","shape":[],"datatype":"FP64","data":[2.5]},
                      {"name":"k2","shape":[],"datatype":"FP64","data":2.5}]}"#,
    )
    .unwrap();
    assert_eq!(
        nested.inputs[0],
        tensor("s", DataType::Bytes, &[2, 1], raw_bytes(&["x", "yz"]))
    );
    assert_eq!(
        nested.inputs[1],
        tensor("k", DataType::Fp64, &[], raw(&[2.5f64]))
    );
    assert_eq!(nested.inputs[2].data(), nested.inputs[1].data());
}

#[test]
fn field_order_does_not_matter() {
    let expected = tensor("a", DataType::Int32, &[2, 2], raw(&[1i32, 2, 3, 4]));
    let bodies = [
        r#"{"inputs":[{"data":[[1,2],[3,4]],"name":"a","shape":[2,2],"datatype":"INT32"}]}"#,
        r#"{"inputs":[{"name":"a","shape":[2,2],"data":[[1,2],[3,4]],"datatype":"INT32"}]}"#,
        r#"{"inputs":[{"datatype":"INT32","data":[1,2,3,4],"shape":[2,2],"name":"a"}]}"#,
        r#"{"inputs":[{"data":[1,2,3,4],"datatype":"INT32","shape":[2,2],"name":"a"}]}"#,
        r#"{"outputs":[],"inputs":[{"shape":[2,2],"datatype":"INT32","name":"a","data":[1,2,3,4]}],"id":null}"#,
    ];
    for body in bodies {
        let request = decode_json_request(body).unwrap();
        assert_eq!(request.inputs, vec![expected.clone()], "{body}");
    }
    // Deferred BYTES data (data before datatype) is still UTF-8 checked and limited.
    let request = decode_json_request(
        r#"{"inputs":[{"data":["é","\n"],"name":"s","shape":[2],"datatype":"BYTES"}]}"#,
    )
    .unwrap();
    assert_eq!(request.inputs[0], bytes_vector("s", &["é", "\n"]));
}

#[test]
fn unknown_keys_are_ignored() {
    let request = decode_json_request(
        r#"{"x-extra":{"deep":[1,{"a":null}]},"inputs":[{"name":"a","shape":[1],"datatype":"BOOL","data":[true],
           "contents":{"int_contents":[1]},"unknown":[[[]]]}],"sequence_id":7,
           "outputs":[{"name":"o","unknown":"x"}],"trailing":"ok"}"#,
    )
    .unwrap();
    assert_eq!(request.inputs, vec![vector("a", DataType::Bool, &[true])]);
    assert_eq!(request.outputs, vec![RequestedOutput::new("o")]);
    let response = decode_json_response(
        r#"{"model_name":"m","extra":[1,2],"outputs":[{"name":"o","shape":[1],"datatype":"UINT8","data":[9],"x":{}}]}"#,
    )
    .unwrap();
    assert_eq!(response.outputs, vec![vector("o", DataType::Uint8, &[9u8])]);
}

#[test]
fn null_means_absent_for_optional_fields() {
    // The shape of a KServe Python response.
    let response = decode_json_response(
        r#"{"model_name":"m","model_version":null,"id":null,"parameters":null,
            "outputs":[{"name":"o","shape":[2],"datatype":"FP32","parameters":null,"data":[1.0,2.0]}]}"#,
    )
    .unwrap();
    assert_eq!(
        response,
        InferResponse {
            model_name: "m".into(),
            outputs: vec![vector("o", DataType::Fp32, &[1.0f32, 2.0])],
            ..InferResponse::default()
        }
    );
    let request = decode_json_request(
        r#"{"id":null,"parameters":null,"outputs":null,
            "inputs":[{"name":"a","shape":[1],"datatype":"INT8","parameters":null,"data":[-1]}]}"#,
    )
    .unwrap();
    assert_eq!(
        request,
        InferRequest::new(vec![vector("a", DataType::Int8, &[-1i8])])
    );
    let request =
        decode_json_request(r#"{"inputs":[],"outputs":[{"name":"o","parameters":null}]}"#).unwrap();
    assert_eq!(request.outputs, vec![RequestedOutput::new("o")]);
}

#[test]
fn whitespace_everywhere_is_fine() {
    let request = decode_json_request(
        " \n\t{ \"inputs\" : [ { \"name\" : \"a\" , \"shape\" : [ 2 ] , \"datatype\" : \"UINT16\" , \"data\" : [ 1 , 2 ] } ] } \r\n",
    )
    .unwrap();
    assert_eq!(request.inputs[0], vector("a", DataType::Uint16, &[1u16, 2]));
}

// ---------------------------------------------------------------------------------------------
// Binary extension

#[test]
fn binary_and_json_inputs_mix_and_blobs_follow_input_order() {
    let json = r#"{"inputs":[
        {"name":"j1","shape":[2],"datatype":"INT32","data":[1,2]},
        {"name":"b1","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},
        {"name":"j2","shape":[1],"datatype":"BYTES","data":["x"]},
        {"name":"b2","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7,"keep":"me"}},
        {"name":"b3","shape":[0],"datatype":"FP32","parameters":{"binary_data_size":0}},
        {"name":"b4","shape":[3],"datatype":"UINT8","parameters":{"binary_data_size":3}}]}"#;
    let blob1 = raw(&[10i32, 20]);
    let blob2 = raw_bytes(&["abc"]);
    let (body, header_length) = binary_body(json, &[&blob1, &blob2, &[], &[7, 8, 9]]);
    let request = v2::decode_request(&body, header_length, &LIMITS).unwrap();
    let names: Vec<&str> = request.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["j1", "b1", "j2", "b2", "b3", "b4"]);
    assert_eq!(i32s(request.inputs[0].data()), [1, 2]);
    assert_eq!(i32s(request.inputs[1].data()), [10, 20]);
    assert_eq!(
        request.inputs[3],
        bytes_vector("b2", &["abc"]).with_parameters(Parameters::from([(
            "keep".to_owned(),
            Parameter::String("me".into())
        )]))
    );
    assert_eq!(request.inputs[4].data().len(), 0);
    assert_eq!(&request.inputs[5].data()[..], [7, 8, 9]);
    // Binary tensors are zero-copy views of the body; binary_data_size is consumed.
    for index in [1, 3, 5] {
        let t = &request.inputs[index];
        assert!(points_into(t.data(), &body[json.len()..]), "{}", t.name);
        assert!(!t.parameters.contains_key("binary_data_size"));
    }
    assert!(!points_into(request.inputs[0].data(), &body));
}

#[test]
fn encoded_blobs_follow_tensor_order_and_are_zero_copy() {
    let inputs = vec![
        vector("a", DataType::Fp16, &[f16::ONE]),
        vector("b", DataType::Int32, &[5i32]),
        bytes_vector("c", &[b"\xff"]),
        vector("d", DataType::Fp64, &[1.0f64]),
    ];
    let request = InferRequest::new(inputs.clone());
    let encoded = v2::encode_request(&request, false).unwrap();
    assert_eq!(binary_names(&encoded.json, "inputs"), ["a", "c"]);
    let chunks = encoded.binary.clone().unwrap();
    assert_eq!(chunks, [inputs[0].data().clone(), inputs[2].data().clone()]);
    assert_eq!(
        chunks[0].as_ptr(),
        inputs[0].data().as_ptr(),
        "blobs are the tensors' bytes"
    );
    let encoded = v2::encode_request(&request, true).unwrap();
    let chunks = encoded.binary.clone().unwrap();
    assert_eq!(
        chunks,
        inputs.iter().map(|t| t.data().clone()).collect::<Vec<_>>()
    );
    let (body, header_length) = body_of(&encoded);
    assert_eq!(header_length, Some(encoded.json.len()));
    assert_eq!(body.len(), encoded.len());
    let decoded = v2::decode_request(&body, header_length, &LIMITS).unwrap();
    assert_eq!(decoded, request);
    for t in &decoded.inputs {
        assert!(
            points_into(t.data(), &body[encoded.json.len()..]),
            "{}",
            t.name
        );
    }
}

#[test]
fn unaligned_binary_section_decodes_fp32() {
    let values = [
        1.5f32,
        -2.25,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
    ];
    let fp32 = raw(&values);
    for pad in 0..8 {
        // A 1-byte UINT8 blob first, then the FP32 blob at an odd offset, after a header whose
        // length is padded with spaces through every residue.
        let json = format!(
            r#"{{"inputs":[{{"name":"u","shape":[1],"datatype":"UINT8","parameters":{{"binary_data_size":1}}}},{{"name":"f","shape":[5],"datatype":"FP32","parameters":{{"binary_data_size":20}}}}]}}{}"#,
            " ".repeat(pad)
        );
        let (body, header_length) = binary_body(&json, &[&[42], &fp32]);
        let request = v2::decode_request(&body, header_length, &LIMITS).unwrap();
        let f = &request.inputs[1];
        assert_eq!(f32s(f.data()), values, "pad {pad}");
        assert_eq!(
            f.data().as_ptr() as usize - body.as_ptr() as usize,
            json.len() + 1
        );
    }
}

#[test]
fn header_length_13_covers_a_minimal_header() {
    // `{"inputs":[]}` is 13 bytes: the whole header, so the binary section must be empty.
    let (body, header_length) = binary_body(r#"{"inputs":[]}"#, &[]);
    assert_eq!(header_length, Some(13));
    let request = v2::decode_request(&body, header_length, &LIMITS).unwrap();
    assert!(request.inputs.is_empty());
    let (body, header_length) = binary_body(r#"{"inputs":[]}"#, &[&[1, 2, 3]]);
    let error = v2::decode_request(&body, header_length, &LIMITS).unwrap_err();
    assert!(
        error
            .message()
            .contains("3 bytes that no binary_data_size accounts for")
    );
}

#[test]
fn header_length_equal_to_body_is_plain_json() {
    let json = r#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT64","data":[5]}]}"#;
    let body = Bytes::from_static(json.as_bytes());
    let with = v2::decode_request(&body, Some(body.len()), &LIMITS).unwrap();
    let without = v2::decode_request(&body, None, &LIMITS).unwrap();
    assert_eq!(with, without);
}

#[test]
fn binary_response_decodes_zero_copy() {
    let response = InferResponse {
        model_name: "m".into(),
        outputs: vec![
            vector("a", DataType::Fp32, &[1.0f32, 2.0]),
            vector("b", DataType::Int8, &[1i8]),
            bytes_vector("c", &["x", ""]),
        ],
        ..InferResponse::default()
    };
    let selection = BinaryOutputs::all(true).with("b", false);
    let encoded = v2::encode_response(&response, &selection).unwrap();
    assert_eq!(binary_names(&encoded.json, "outputs"), ["a", "c"]);
    let (body, header_length) = body_of(&encoded);
    let decoded = v2::decode_response(&body, header_length, &LIMITS).unwrap();
    assert_eq!(decoded, response);
    assert!(points_into(decoded.outputs[0].data(), &body));
    assert!(points_into(decoded.outputs[2].data(), &body));
}

// ---------------------------------------------------------------------------------------------
// binary_outputs resolution

fn output(name: &str, binary_data: Option<bool>) -> RequestedOutput {
    let mut output = RequestedOutput::new(name);
    if let Some(value) = binary_data {
        output
            .parameters
            .insert("binary_data".into(), Parameter::Bool(value));
    }
    output
}

#[test]
fn per_output_binary_data_overrides_request_level_both_ways() {
    for default in [None, Some(false), Some(true)] {
        let mut request = InferRequest::new(Vec::new());
        if let Some(value) = default {
            request
                .parameters
                .insert("binary_data_output".into(), Parameter::Bool(value));
        }
        request.outputs = vec![
            output("off", Some(false)),
            output("on", Some(true)),
            output("plain", None),
        ];
        let binary = request.binary_outputs();
        let base = default.unwrap_or(false);
        assert!(!binary.is_binary("off"), "{default:?}");
        assert!(binary.is_binary("on"), "{default:?}");
        assert_eq!(binary.is_binary("plain"), base, "{default:?}");
        assert_eq!(binary.is_binary("not-requested"), base, "{default:?}");
    }
}

#[test]
fn binary_outputs_from_a_decoded_request_drive_the_response() {
    let request = decode_json_request(
        r#"{"inputs":[],"parameters":{"binary_data_output":true},
            "outputs":[{"name":"a","parameters":{"binary_data":false}},{"name":"b"},
                       {"name":"c","parameters":{"binary_data":"yes"}}]}"#,
    )
    .unwrap();
    let binary = request.binary_outputs();
    assert!(!binary.is_binary("a"));
    assert!(binary.is_binary("b"));
    assert!(
        binary.is_binary("c"),
        "a non-boolean binary_data is ignored"
    );
    let response = InferResponse {
        model_name: "m".into(),
        outputs: vec![
            vector("a", DataType::Int32, &[1i32]),
            vector("b", DataType::Int32, &[2i32]),
            vector("c", DataType::Int32, &[3i32]),
        ],
        ..InferResponse::default()
    };
    let encoded = v2::encode_response(&response, &binary).unwrap();
    assert_eq!(binary_names(&encoded.json, "outputs"), ["b", "c"]);
    assert_eq!(decode_response(&encoded).unwrap(), response);

    let request = decode_json_request(
        r#"{"inputs":[],"parameters":{"binary_data_output":false},
            "outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]}"#,
    )
    .unwrap();
    let encoded = v2::encode_response(&response, &request.binary_outputs()).unwrap();
    assert_eq!(binary_names(&encoded.json, "outputs"), ["a"]);
}

#[test]
fn json_only_response_has_no_header_length() {
    let response = one_output(vector("a", DataType::Int32, &[1i32]));
    let encoded = v2::encode_response(&response, &BinaryOutputs::all(false)).unwrap();
    assert_eq!(encoded.binary, None);
    assert_eq!(encoded.header_length(), None);
    assert_eq!(encoded.to_vec(), encoded.json);
    assert_eq!(
        String::from_utf8(encoded.json).unwrap(),
        r#"{"model_name":"m","outputs":[{"name":"a","datatype":"INT32","shape":[1],"data":[1]}]}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Bad-input corpus

struct Case {
    what: &'static str,
    body: Vec<u8>,
    header_length: Option<usize>,
    limits: Limits,
    kind: ErrorKind,
    fragment: &'static str,
}

fn json_case(what: &'static str, body: impl Into<Vec<u8>>, fragment: &'static str) -> Case {
    Case {
        what,
        body: body.into(),
        header_length: None,
        limits: LIMITS,
        kind: ErrorKind::BadRequest,
        fragment,
    }
}

fn binary_case(what: &'static str, json: &str, blob: &[u8], fragment: &'static str) -> Case {
    let mut body = json.as_bytes().to_vec();
    body.extend_from_slice(blob);
    Case {
        header_length: Some(json.len()),
        ..json_case(what, body, fragment)
    }
}

/// An input object wrapped into a request.
fn input(fields: &str) -> String {
    format!(r#"{{"inputs":[{{{fields}}}]}}"#)
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

fn corpus() -> Vec<Case> {
    let small = Limits {
        max_tensors: 2,
        max_body_bytes: 200,
        max_bytes_element_len: 4,
        max_json_depth: 3,
        ..LIMITS
    };
    let ok_input = r#""name":"a","shape":[2],"datatype":"FP32","data":[1,2]"#;
    vec![
        // Syntax
        json_case("empty body", "", "invalid JSON"),
        json_case("truncated JSON", input(ok_input).split_at(30).0, "invalid JSON"),
        json_case("truncated after object", r#"{"inputs":[]"#, "invalid JSON"),
        json_case("invalid JSON", r#"{"inputs" []}"#, "invalid JSON"),
        json_case("close brace in an array", r#"{"inputs":[}"#, "must be a JSON object"),
        json_case("trailing garbage", r#"{"inputs":[]} x"#, "invalid JSON"),
        json_case("two objects", r#"{"inputs":[]}{}"#, "invalid JSON"),
        json_case("single quotes", r#"{'inputs':[]}"#, "invalid JSON"),
        json_case("trailing comma", r#"{"inputs":[],}"#, "invalid JSON"),
        json_case("non-object body (array)", "[1,2]", "request must be a JSON object"),
        json_case("non-object body (string)", r#""inputs""#, "request must be a JSON object"),
        json_case("non-object body (null)", "null", "request must be a JSON object"),
        json_case("invalid UTF-8 in a string", b"{\"inputs\":[{\"name\":\"\xff\xfe\",\"shape\":[1],\"datatype\":\"INT8\",\"data\":[1]}]}".to_vec(), "invalid JSON"),
        json_case("invalid UTF-8 in a key", b"{\"inp\xc3uts\":[]}".to_vec(), "invalid JSON"),
        json_case("invalid UTF-8 outside strings", b"{\"inputs\":[]\xff}".to_vec(), "invalid JSON"),
        json_case("invalid UTF-8 in BYTES data", b"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"\xc0\x80\"]}]}".to_vec(), "invalid JSON"),
        json_case("invalid UTF-8 in deferred BYTES data", b"{\"inputs\":[{\"data\":[\"\xed\xa0\x80\"],\"name\":\"a\",\"shape\":[1],\"datatype\":\"BYTES\"}]}".to_vec(), "invalid JSON"),
        json_case("lone surrogate escape", input(r#""name":"a","shape":[1],"datatype":"BYTES","data":["\ud800"]"#), "invalid JSON"),
        // Structure
        json_case("no inputs", r#"{"id":"x"}"#, "request has no 'inputs'"),
        json_case("inputs not an array", r#"{"inputs":{"name":"a"}}"#, "must be an array"),
        json_case("inputs a number", r#"{"inputs":5}"#, "must be an array"),
        json_case("input not an object", r#"{"inputs":[[1]]}"#, "tensor must be a JSON object"),
        json_case("outputs not an array", r#"{"inputs":[],"outputs":"a"}"#, "must be an array"),
        json_case("output without name", r#"{"inputs":[],"outputs":[{}]}"#, "outputs[0] has no 'name'"),
        json_case("id not a string", r#"{"id":5,"inputs":[]}"#, "expected a string"),
        json_case("parameters not an object", r#"{"parameters":[1],"inputs":[]}"#, "parameters must be an object"),
        json_case("parameter value an object", r#"{"parameters":{"p":{}},"inputs":[]}"#, "parameter 'p': value must be a string, number or boolean"),
        json_case("parameter value null", r#"{"parameters":{"p":null},"inputs":[]}"#, "parameter 'p'"),
        json_case("missing name", input(r#""shape":[1],"datatype":"INT8","data":[1]"#), "inputs[0]: has no 'name'"),
        json_case("missing shape", input(r#""name":"a","datatype":"INT8","data":[1]"#), "input 'a': has no 'shape'"),
        json_case("missing datatype", input(r#""name":"a","shape":[1],"data":[1]"#), "input 'a': has no 'datatype'"),
        json_case("missing data", input(r#""name":"a","shape":[1],"datatype":"INT8""#), "input 'a': has neither 'data' nor binary_data_size"),
        json_case("name not a string", input(r#""name":1,"shape":[1],"datatype":"INT8","data":[1]"#), "name: expected a string"),
        json_case("datatype not a string", input(r#""name":"a","shape":[1],"datatype":8,"data":[1]"#), "datatype: expected a string"),
        json_case("unknown datatype", input(r#""name":"a","shape":[1],"datatype":"FP8","data":[1]"#), "unknown datatype 'FP8'"),
        json_case("lowercase datatype", input(r#""name":"a","shape":[1],"datatype":"fp32","data":[1]"#), "unknown datatype 'fp32'"),
        json_case("duplicate input names", r#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[1]},{"name":"a","shape":[1],"datatype":"INT8","data":[2]}]}"#, "duplicate input name 'a'"),
        // Shapes
        json_case("shape with string", input(r#""name":"a","shape":["2"],"datatype":"INT8","data":[1,2]"#), "shape must be an array of non-negative integers"),
        json_case("shape not an array", input(r#""name":"a","shape":2,"datatype":"INT8","data":[1,2]"#), "must be an array"),
        json_case("shape with float", input(r#""name":"a","shape":[2.0],"datatype":"INT8","data":[1,2]"#), "shape dimension 2.0 is not a non-negative integer"),
        json_case("negative dim", input(r#""name":"a","shape":[-1],"datatype":"INT8","data":[1]"#), "shape dimension -1 is not a non-negative integer"),
        json_case("dim beyond u64", input(r#""name":"a","shape":[18446744073709551616],"datatype":"INT8","data":[1]"#), "is not a non-negative integer"),
        json_case("overflowing dims", input(r#""name":"a","shape":[1099511627776,1099511627776],"datatype":"FP32","data":[1]"#), "has more elements than the limit"),
        json_case("overflowing dims, deferred data", input(r#""data":[1],"name":"a","shape":[1099511627776,1099511627776],"datatype":"FP32""#), "has more elements than the limit"),
        json_case("overflowing dims, binary", input(r#""name":"a","shape":[1099511627776,1099511627776],"datatype":"FP32","parameters":{"binary_data_size":4}"#), "has more elements than the limit"),
        json_case("dims over the element limit", input(r#""name":"a","shape":[268435457],"datatype":"BOOL","data":[true]"#), "has more elements than the limit of 268435456"),
        json_case("rank over the limit", input(&format!(r#""name":"a","shape":[{}],"datatype":"INT8","data":[1]"#, vec!["1"; 33].join(","))), "shape has more dimensions than the limit of 32"),
        // Data types and counts
        json_case("data string for FP32", input(r#""name":"a","shape":[1],"datatype":"FP32","data":["1.0"]"#), "expected a number for FP32 in data, found a string"),
        json_case("data bool for FP32", input(r#""name":"a","shape":[1],"datatype":"FP32","data":[true]"#), "expected a number for FP32 in data, found a boolean"),
        json_case("data null for FP32", input(r#""name":"a","shape":[1],"datatype":"FP32","data":[null]"#), "expected a number for FP32 in data, found null"),
        json_case("data object", input(r#""name":"a","shape":[1],"datatype":"FP32","data":[{}]"#), "expected a number for FP32 in data, found an object"),
        json_case("float for INT32", input(r#""name":"a","shape":[1],"datatype":"INT32","data":[1.5]"#), "value 1.5 is not an integer in the range of INT32"),
        json_case("exponent for INT32", input(r#""name":"a","shape":[1],"datatype":"INT32","data":[1e3]"#), "value 1e3 is not an integer"),
        json_case("NaN for INT32", input(r#""name":"a","shape":[1],"datatype":"INT32","data":[NaN]"#), "value NaN is not an integer"),
        json_case("out-of-range INT8", input(r#""name":"a","shape":[1],"datatype":"INT8","data":[128]"#), "value 128 is out of range for INT8"),
        json_case("out-of-range INT8 low", input(r#""name":"a","shape":[1],"datatype":"INT8","data":[-129]"#), "value -129 is out of range for INT8"),
        json_case("negative UINT8", input(r#""name":"a","shape":[1],"datatype":"UINT8","data":[-1]"#), "value -1 is out of range for UINT8"),
        json_case("out-of-range UINT32", input(r#""name":"a","shape":[1],"datatype":"UINT32","data":[4294967296]"#), "value 4294967296 is out of range for UINT32"),
        json_case("out-of-range INT64", input(r#""name":"a","shape":[1],"datatype":"INT64","data":[9223372036854775808]"#), "value 9223372036854775808 is not an integer in the range of INT64"),
        json_case("negative UINT64", input(r#""name":"a","shape":[1],"datatype":"UINT64","data":[-1]"#), "value -1 is not a UINT64"),
        json_case("out-of-range UINT64", input(r#""name":"a","shape":[1],"datatype":"UINT64","data":[18446744073709551616]"#), "value 18446744073709551616 is not a UINT64"),
        json_case("float UINT64", input(r#""name":"a","shape":[1],"datatype":"UINT64","data":[1.0]"#), "value 1.0 is not a UINT64"),
        json_case("number for BOOL", input(r#""name":"a","shape":[1],"datatype":"BOOL","data":[1]"#), "invalid JSON"),
        json_case("number for BYTES", input(r#""name":"a","shape":[1],"datatype":"BYTES","data":[1]"#), "BYTES elements must be JSON strings"),
        json_case("too few elements", input(r#""name":"a","shape":[2,2],"datatype":"INT16","data":[1,2,3]"#), "needs 4 elements, got 3"),
        json_case("too few elements, deferred", input(r#""data":[[1],[2]],"name":"a","shape":[2,2],"datatype":"INT16""#), "needs 4 elements, got 2"),
        json_case("too many elements", input(r#""name":"a","shape":[2,2],"datatype":"INT16","data":[1,2,3,4,5]"#), "needs 4 elements, got more"),
        json_case("too many elements, nested", input(r#""name":"a","shape":[1],"datatype":"INT16","data":[[1],[2]]"#), "needs 1 elements, got more"),
        json_case("scalar needs one element", input(r#""name":"a","shape":[],"datatype":"INT16","data":[]"#), "needs 1 elements, got 0"),
        json_case("empty shape with data", input(r#""name":"a","shape":[0],"datatype":"INT16","data":[1]"#), "needs 0 elements, got more"),
        json_case("FP16 data in JSON", input(r#""name":"a","shape":[1],"datatype":"FP16","data":[1.0]"#), "FP16 data cannot be sent as JSON; use the binary tensor extension"),
        json_case("BF16 data in JSON, deferred", input(r#""data":[1.0],"name":"a","shape":[1],"datatype":"BF16""#), "BF16 data cannot be sent as JSON"),
        // Binary extension
        binary_case("size larger than section", &input(r#""name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}"#), &[0; 4], "binary_data_size 8 is beyond the 4 bytes left in the binary section"),
        binary_case("leftover bytes", &input(r#""name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}"#), &[0; 6], "binary section has 2 bytes that no binary_data_size accounts for"),
        binary_case("leftover bytes, no binary tensor", &input(ok_input), &[0], "binary section has 1 bytes"),
        binary_case("size not matching shape x dtype", &input(r#""name":"a","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":8}"#), &[0; 8], "needs 12 bytes, got 8"),
        binary_case("binary BYTES with a bad prefix", &input(r#""name":"a","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}"#), &[9, 0, 0, 0, b'a', b'b'], "declares 9 bytes but only 2 remain"),
        binary_case("binary BYTES with leftover", &input(r#""name":"a","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}"#), &[1, 0, 0, 0, b'a', b'b'], "1 bytes left over after 1 elements"),
        binary_case("binary BYTES cut in a prefix", &input(r#""name":"a","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":6}"#), &[1, 0, 0, 0, b'a', 0], "ends inside the length prefix of element 1"),
        json_case("binary_data_size with no header length", input(r#""name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}"#), "binary_data_size is set but the request has no Inference-Header-Content-Length"),
        binary_case("both data and binary_data_size", &input(r#""name":"a","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}"#), &[0; 4], "has both 'data' and binary_data_size"),
        binary_case("both, size first", &input(r#""parameters":{"binary_data_size":4},"name":"a","shape":[1],"datatype":"FP32","data":[1]"#), &[0; 4], "has both 'data' and binary_data_size"),
        binary_case("negative binary_data_size", &input(r#""name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":-4}"#), &[0; 4], "binary_data_size must be a non-negative integer"),
        binary_case("string binary_data_size", &input(r#""name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":"4"}"#), &[0; 4], "binary_data_size must be a non-negative integer"),
        binary_case("float binary_data_size", &input(r#""name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4.0}"#), &[0; 4], "binary_data_size must be a non-negative integer"),
        binary_case("huge binary_data_size", &input(r#""name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":18446744073709551615}"#), &[0; 4], "is beyond the 4 bytes left"),
        Case { header_length: Some(1000), ..json_case("header length beyond body", input(ok_input), "Inference-Header-Content-Length 1000 is beyond the body of") },
        Case { header_length: Some(usize::MAX), ..json_case("header length usize::MAX", input(ok_input), "is beyond the body") },
        Case { header_length: Some(0), ..json_case("header length 0", input(ok_input), "Inference-Header-Content-Length 0") },
        Case { header_length: Some(10), ..json_case("header length cuts the JSON", input(ok_input), "invalid JSON") },
        // Nesting
        json_case("10k '[' as the body", "[".repeat(10_000), "request must be a JSON object"),
        json_case("10k '[' in data", input(&format!(r#""name":"a","shape":[1],"datatype":"INT32","data":{}"#, nested(10_000, "1"))), "data is nested deeper than the limit of 64"),
        json_case("10k unclosed '[' in data", input(&format!(r#""name":"a","shape":[1],"datatype":"INT32","data":{}"#, "[".repeat(10_000))), "data is nested deeper than the limit of 64"),
        json_case("10k '[' in deferred data", input(&format!(r#""data":{},"name":"a","shape":[1],"datatype":"INT32""#, nested(10_000, "1"))), "recursion limit exceeded"),
        json_case("10k '[' in an unknown key", format!(r#"{{"x":{},"inputs":[]}}"#, nested(10_000, "")), "recursion limit exceeded"),
        json_case("10k '{' in an unknown key", format!(r#"{{"x":{}"inputs":[]}}"#, r#"{"a":"#.repeat(10_000)), "recursion limit exceeded"),
        json_case("10k '[' in a parameter", format!(r#"{{"parameters":{{"p":{}}},"inputs":[]}}"#, nested(10_000, "")), "value must be a string, number or boolean"),
        json_case("10k '[' in shape", input(&format!(r#""name":"a","shape":{},"datatype":"INT32","data":[1]"#, nested(10_000, "1"))), "shape must be an array of non-negative integers"),
        json_case("data at depth 65", input(&format!(r#""name":"a","shape":[1],"datatype":"INT32","data":{}"#, nested(65, "1"))), "data is nested deeper than the limit of 64"),
        json_case("deferred data at depth 65", input(&format!(r#""data":{},"name":"a","shape":[1],"datatype":"INT32""#, nested(65, "1"))), "data is nested deeper than the limit of 64"),
        Case { limits: small, ..json_case("data deeper than a custom limit", input(&format!(r#""name":"a","shape":[1],"datatype":"INT32","data":{}"#, nested(4, "1"))), "data is nested deeper than the limit of 3") },
        // Limits
        Case { limits: small, ..json_case("too many inputs", r#"{"inputs":[{"name":"a","shape":[0],"datatype":"INT8","data":[]},{"name":"b","shape":[0],"datatype":"INT8","data":[]},{"name":"c","shape":[0],"datatype":"INT8","data":[]}]}"#, "more than 2 inputs, over the limit") },
        Case { limits: small, kind: ErrorKind::PayloadTooLarge, ..json_case("body over max_body_bytes", input(&format!(r#""name":"a","shape":[1],"datatype":"BYTES","data":["{}"]"#, "x".repeat(300))), "over the limit of 200") },
        Case { limits: small, ..json_case("BYTES element over the limit", input(r#""name":"a","shape":[2],"datatype":"BYTES","data":["abcd","abcde"]"#), "BYTES element is 5 bytes, over the limit of 4") },
        Case { limits: small, ..json_case("deferred BYTES element over the limit", input(r#""data":["abcdef"],"name":"a","shape":[1],"datatype":"BYTES""#), "BYTES element is 6 bytes, over the limit of 4") },
        Case { limits: small, ..binary_case("binary BYTES element over the limit", &input(r#""name":"a","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":9}"#), &[5, 0, 0, 0, 1, 2, 3, 4, 5], "BYTES element 0 is 5 bytes, over the limit of 4") },
        Case { limits: small, ..binary_case("binary BYTES huge declared length", &input(r#""name":"a","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":4}"#), &[0xff; 4], "BYTES element 0 is 4294967295 bytes, over the limit of 4") },
    ]
}

#[test]
fn bad_inputs_are_rejected_with_a_useful_message() {
    let mut failures = Vec::new();
    let cases = corpus();
    for case in &cases {
        let body = Bytes::from(case.body.clone());
        match v2::decode_request(&body, case.header_length, &case.limits) {
            Ok(request) => failures.push(format!("{}: decoded {request:?}", case.what)),
            Err(error) => {
                let status = if case.kind == ErrorKind::PayloadTooLarge {
                    413
                } else {
                    400
                };
                if error.kind() != case.kind
                    || error.http_status() != status
                    || !error.message().contains(case.fragment)
                {
                    failures.push(format!(
                        "{}: got {:?} {} {:?}, want {:?} containing {:?}",
                        case.what,
                        error.kind(),
                        error.http_status(),
                        error.message(),
                        case.kind,
                        case.fragment
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_responses_are_rejected() {
    let cases = [
        (r#"{"model_name":"m"}"#, "response has no 'outputs'"),
        ("[]", "response must be a JSON object"),
        (r#"{"model_name":5,"outputs":[]}"#, "expected a string"),
        (
            r#"{"outputs":[{"name":"o","shape":[1],"datatype":"FP16","data":[1]}]}"#,
            "output 'o': FP16 data cannot be sent as JSON",
        ),
        (
            r#"{"outputs":[{"name":"o","shape":[1],"datatype":"INT8","data":[1]},{"name":"o","shape":[1],"datatype":"INT8","data":[1]}]}"#,
            "duplicate output name 'o'",
        ),
        (
            r#"{"outputs":[{"shape":[1],"datatype":"INT8","data":[1]}]}"#,
            "outputs[0]: has no 'name'",
        ),
    ];
    for (json, fragment) in cases {
        let error = decode_json_response(json).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{json}");
        assert!(
            error.message().contains(fragment),
            "{json}: {}",
            error.message()
        );
    }
    let small = Limits {
        max_tensors: 1,
        ..LIMITS
    };
    let body = Bytes::from_static(br#"{"outputs":[{"name":"a","shape":[0],"datatype":"INT8","data":[]},{"name":"b","shape":[0],"datatype":"INT8","data":[]}]}"#);
    let error = v2::decode_response(&body, None, &small).unwrap_err();
    assert!(
        error.message().contains("more than 1 outputs"),
        "{}",
        error.message()
    );
}

#[test]
fn data_at_the_depth_limit_is_accepted() {
    let body = input(&format!(
        r#""name":"a","shape":[1],"datatype":"INT32","data":{}"#,
        nested(64, "7")
    ));
    let request = decode_json_request(&body).unwrap();
    assert_eq!(i32s(request.inputs[0].data()), [7]);
}

#[test]
fn deep_data_under_a_huge_depth_limit_does_not_overflow_the_stack() {
    let limits = Limits {
        max_json_depth: usize::MAX,
        ..LIMITS
    };
    for depth in [10_000, 1_000_000] {
        let body = input(&format!(
            r#""name":"a","shape":[1],"datatype":"INT32","data":{}"#,
            nested(depth, "7")
        ));
        let request = v2::decode_request(&Bytes::from(body), None, &limits).unwrap();
        assert_eq!(i32s(request.inputs[0].data()), [7]);
    }
}

#[test]
fn overflowing_shape_allocates_nothing_even_with_no_element_limit() {
    // With the element limit lifted the count still overflows and must fail, not allocate.
    let limits = Limits {
        max_tensor_elements: usize::MAX,
        ..LIMITS
    };
    let body =
        input(r#""name":"a","shape":[1099511627776,1099511627776],"datatype":"FP64","data":[1]"#);
    let error = v2::decode_request(&Bytes::from(body), None, &limits).unwrap_err();
    assert!(
        error.message().contains("has more elements than the limit"),
        "{}",
        error.message()
    );
    // A huge but non-overflowing shape with tiny JSON data must not reserve memory up front.
    let body = input(r#""name":"a","shape":[1152921504606846975],"datatype":"FP64","data":[1]"#);
    let error = v2::decode_request(&Bytes::from(body), None, &limits).unwrap_err();
    assert!(error.message().contains("got 1"), "{}", error.message());
}

#[test]
fn large_flat_data_decodes() {
    let n = 100_000;
    let data = (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let body = input(&format!(
        r#""name":"a","shape":[{n}],"datatype":"INT32","data":[{data}]"#
    ));
    let request = decode_json_request(&body).unwrap();
    assert_eq!(i32s(request.inputs[0].data()), (0..n).collect::<Vec<i32>>());
}

// ---------------------------------------------------------------------------------------------
// Error bodies

#[test]
fn error_json_body_is_escaped_json() {
    let error = Error::bad_request("input 'a\"b': bad \\ value\n\ttab \u{1} é");
    assert_eq!(
        error.to_json_body(),
        r#"{"error":"input 'a\"b': bad \\ value\n\ttab \u0001 é"}"#.as_bytes()
    );
    // And it is JSON whose single field is the message.
    let body = error.to_json_body();
    let JsonValue::Object(fields) = JsonValue::parse(&body, false).unwrap() else {
        panic!()
    };
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].0, "error");
    assert_eq!(fields[0].1, JsonValue::Str(error.message().into()));
    assert_eq!(
        Error::internal("").to_json_body(),
        br#"{"error":""}"#.to_vec()
    );
}

#[test]
fn error_kinds_map_to_statuses() {
    assert_eq!(Error::bad_request("x").http_status(), 400);
    assert_eq!(Error::too_large("x").http_status(), 413);
    assert_eq!(Error::unsupported("x").http_status(), 501);
    assert_eq!(Error::internal("x").http_status(), 500);
    assert_eq!(
        Error::bad_request("x").context("input 'a'").message(),
        "input 'a': x"
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions from review

#[test]
fn null_for_a_required_array_is_an_error_not_an_empty_one() {
    let shape_null = r#"{"inputs":[{"name":"a","shape":null,"datatype":"INT32","data":[1]}]}"#;
    let err = decode_json_request(shape_null).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(err.message().contains("'shape' must be an array"), "{err}");

    let err = decode_json_request(r#"{"inputs":null}"#).unwrap_err();
    assert!(err.message().contains("'inputs' must be an array"), "{err}");

    // Optional arrays may still be null.
    let ok =
        r#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT32","data":[1]}],"outputs":null}"#;
    assert!(decode_json_request(ok).unwrap().outputs.is_empty());
}

#[test]
fn bool_bytes_other_than_zero_and_one_are_rejected() {
    let json = r#"{"inputs":[{"name":"b","shape":[2],"datatype":"BOOL","parameters":{"binary_data_size":2}}]}"#;
    let (body, header_length) = binary_body(json, &[&[1, 2]]);
    let err = v2::decode_request(&body, header_length, &Limits::DEFAULT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(
        err.message().contains("BOOL element 1 is the byte 2"),
        "{err}"
    );
}

#[test]
fn a_stale_binary_data_size_parameter_never_reaches_the_wire() {
    let mut stale = Parameters::new();
    stale.insert("binary_data_size".to_owned(), Parameter::Int64(999));
    let x = vector("x", DataType::Int32, &[1i32, 2, 3]).with_parameters(stale);
    let request = InferRequest::new(vec![x]);
    for binary in [false, true] {
        let decoded = decode_request(&v2::encode_request(&request, binary).unwrap()).unwrap();
        assert_eq!(i32s(decoded.inputs[0].data()), [1, 2, 3]);
        assert!(decoded.inputs[0].parameters.is_empty());
    }
}

#[test]
fn empty_tensor_and_output_names_are_rejected_as_in_grpc() {
    let empty_input = r#"{"inputs":[{"name":"","shape":[1],"datatype":"INT32","data":[1]}]}"#;
    let err = decode_json_request(empty_input).unwrap_err();
    assert!(
        err.message().contains("inputs[0] has an empty name"),
        "{err}"
    );
    let empty_output = r#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT32","data":[1]}],"outputs":[{"name":""}]}"#;
    let err = decode_json_request(empty_output).unwrap_err();
    assert!(
        err.message().contains("outputs[0] has an empty name"),
        "{err}"
    );
}
