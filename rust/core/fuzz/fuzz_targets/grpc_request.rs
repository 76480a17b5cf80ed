//! `grpc::decode_request` on arbitrary `ModelInferRequest` messages. A decoded request must
//! re-encode (always raw contents) to a message that decodes to the same request, byte for byte
//! in the data; encoding that again must give the same message. It must also survive the V2 REST
//! binary form unchanged, apart from the model name and version that REST carries in the path.
#![no_main]

use bytes::Bytes;
use fuzz_common::{
    DataEq, LIMITS, assert_not_internal, assert_request_eq, show, through_v2_binary_request,
    v2_body,
};
use libfuzzer_sys::fuzz_target;
use tensorgate_core::InferRequest;
use tensorgate_core::codec::{grpc, v2};

fn encode(request: &InferRequest) -> Vec<u8> {
    grpc::encode_request(
        request,
        request.model_name.as_deref().unwrap_or_default(),
        request.model_version.as_deref(),
    )
}

fuzz_target!(|data: &[u8]| {
    let request = match grpc::decode_request(Bytes::copy_from_slice(data), &LIMITS) {
        Ok(request) => request,
        Err(e) => return assert_not_internal(&e, "decode_request"),
    };
    let encoded = encode(&request);
    let again = grpc::decode_request(Bytes::from(encoded.clone()), &LIMITS)
        .unwrap_or_else(|e| panic!("re-encoded request does not decode: {e}\n{request:?}"));
    assert_request_eq(&request, &again, DataEq::Exact, "gRPC request");
    assert_eq!(encoded, encode(&again), "re-encoding is not a fixed point");

    // Through V2 REST with every input binary: only the path-borne fields, the signedness of
    // integer parameters, and `binary_data_size` (owned by the extension) may change.
    let encoded = v2::encode_request(&request, true)
        .unwrap_or_else(|e| panic!("v2::encode_request failed: {e}\n{request:?}"));
    let (body, header_length) = v2_body(&encoded);
    let rest = v2::decode_request(&body, header_length, &LIMITS).unwrap_or_else(|e| {
        panic!(
            "V2 form of a gRPC request does not decode: {e}\n{}",
            show(&encoded)
        )
    });
    let expected = through_v2_binary_request(&request);
    assert_request_eq(
        &expected,
        &rest,
        DataEq::Exact,
        "gRPC request through V2 binary",
    );
});
