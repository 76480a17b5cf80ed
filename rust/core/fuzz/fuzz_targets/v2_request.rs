//! `v2::decode_request` on arbitrary bodies, plain JSON and binary extension (the first three
//! input bytes choose the header length, see `split_v2_input`). A decoded request must re-encode,
//! in JSON and in binary form, to a body that decodes to the same request (JSON: up to NaN
//! payloads and non-0/1 BOOL bytes), and encoding that again must give the same bytes.
#![no_main]

use fuzz_common::{
    DataEq, LIMITS, assert_not_internal, assert_request_eq, show, split_v2_input, v2_body,
};
use libfuzzer_sys::fuzz_target;
use tensorgate_core::codec::v2;

fuzz_target!(|data: &[u8]| {
    let Some((body, header_length)) = split_v2_input(data) else {
        return;
    };
    let request = match v2::decode_request(&body, header_length, &LIMITS) {
        Ok(request) => request,
        Err(e) => return assert_not_internal(&e, "decode_request"),
    };
    for binary in [false, true] {
        let encoded = v2::encode_request(&request, binary)
            .unwrap_or_else(|e| panic!("encode_request(binary={binary}) failed: {e}\n{request:?}"));
        let (body, header_length) = v2_body(&encoded);
        let again = v2::decode_request(&body, header_length, &LIMITS).unwrap_or_else(|e| {
            panic!(
                "re-encoded request (binary={binary}) does not decode: {e}\n{}",
                show(&encoded)
            )
        });
        let mode = if binary { DataEq::Exact } else { DataEq::Json };
        assert_request_eq(
            &request,
            &again,
            mode,
            &format!("V2 request, binary={binary}"),
        );
        let encoded_again = v2::encode_request(&again, binary)
            .unwrap_or_else(|e| panic!("second encode_request(binary={binary}) failed: {e}"));
        assert_eq!(
            encoded, encoded_again,
            "re-encoding is not a fixed point (binary={binary})"
        );
    }
});
