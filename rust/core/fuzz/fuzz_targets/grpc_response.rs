//! `grpc::decode_response` on arbitrary `ModelInferResponse` messages. A decoded response must
//! re-encode (always raw contents) to a message that decodes to the same response, byte for byte
//! in the data; encoding that again must give the same message. It must also survive the V2 REST
//! binary form unchanged.
#![no_main]

use bytes::Bytes;
use fuzz_common::{
    DataEq, LIMITS, assert_not_internal, assert_response_eq, show, through_v2_binary_response,
    v2_body,
};
use libfuzzer_sys::fuzz_target;
use tensorgate_core::codec::{grpc, v2};
use tensorgate_core::tensor::BinaryOutputs;

fuzz_target!(|data: &[u8]| {
    let response = match grpc::decode_response(Bytes::copy_from_slice(data), &LIMITS) {
        Ok(response) => response,
        Err(e) => return assert_not_internal(&e, "decode_response"),
    };
    let encoded = grpc::encode_response(&response);
    let again = grpc::decode_response(Bytes::from(encoded.clone()), &LIMITS)
        .unwrap_or_else(|e| panic!("re-encoded response does not decode: {e}\n{response:?}"));
    assert_response_eq(&response, &again, DataEq::Exact, "gRPC response");
    assert_eq!(
        encoded,
        grpc::encode_response(&again),
        "re-encoding is not a fixed point"
    );

    // Through V2 REST with every output binary: only the signedness of integer parameters and
    // `binary_data_size` (owned by the extension) may change.
    let encoded = v2::encode_response(&response, &BinaryOutputs::all(true))
        .unwrap_or_else(|e| panic!("v2::encode_response failed: {e}\n{response:?}"));
    let (body, header_length) = v2_body(&encoded);
    let rest = v2::decode_response(&body, header_length, &LIMITS).unwrap_or_else(|e| {
        panic!(
            "V2 form of a gRPC response does not decode: {e}\n{}",
            show(&encoded)
        )
    });
    let expected = through_v2_binary_response(&response);
    assert_response_eq(
        &expected,
        &rest,
        DataEq::Exact,
        "gRPC response through V2 binary",
    );
});
