//! `v2::decode_response` on arbitrary bodies, plain JSON and binary extension (the first three
//! input bytes choose the header length, see `split_v2_input`). A decoded response must
//! re-encode, with all outputs JSON and with all binary, to a body that decodes to the same
//! response (JSON: up to NaN payloads and non-0/1 BOOL bytes), and encoding that again must give
//! the same bytes.
#![no_main]

use fuzz_common::{
    DataEq, LIMITS, assert_not_internal, assert_response_eq, show, split_v2_input, v2_body,
};
use libfuzzer_sys::fuzz_target;
use tensorgate_core::codec::v2;
use tensorgate_core::tensor::BinaryOutputs;

fuzz_target!(|data: &[u8]| {
    let Some((body, header_length)) = split_v2_input(data) else {
        return;
    };
    let response = match v2::decode_response(&body, header_length, &LIMITS) {
        Ok(response) => response,
        Err(e) => return assert_not_internal(&e, "decode_response"),
    };
    for binary in [false, true] {
        let outputs = BinaryOutputs::all(binary);
        let encoded = v2::encode_response(&response, &outputs).unwrap_or_else(|e| {
            panic!("encode_response(binary={binary}) failed: {e}\n{response:?}")
        });
        let (body, header_length) = v2_body(&encoded);
        let again = v2::decode_response(&body, header_length, &LIMITS).unwrap_or_else(|e| {
            panic!(
                "re-encoded response (binary={binary}) does not decode: {e}\n{}",
                show(&encoded)
            )
        });
        let mode = if binary { DataEq::Exact } else { DataEq::Json };
        assert_response_eq(
            &response,
            &again,
            mode,
            &format!("V2 response, binary={binary}"),
        );
        let encoded_again = v2::encode_response(&again, &outputs)
            .unwrap_or_else(|e| panic!("second encode_response(binary={binary}) failed: {e}"));
        assert_eq!(
            encoded, encoded_again,
            "re-encoding is not a fixed point (binary={binary})"
        );
    }
});
