//! `v1::decode_request` on arbitrary bodies. When a decoded request has a V1 form, that form must
//! decode to the same tensors (a lone input's name aside) and encode again to the same bytes.
#![no_main]

use fuzz_common::{LIMITS, assert_not_internal, v1_tensors_eq};
use libfuzzer_sys::fuzz_target;
use tensorgate_core::codec::v1;

fuzz_target!(|data: &[u8]| {
    let request = match v1::decode_request(data, &LIMITS) {
        Ok(request) => request,
        Err(e) => return assert_not_internal(&e, "decode_request"),
    };
    let encoded = match v1::encode_request(&request) {
        Ok(encoded) => encoded,
        Err(e) => return assert_not_internal(&e, "encode_request"),
    };
    let text = String::from_utf8_lossy(&encoded);
    let again = v1::decode_request(&encoded, &LIMITS)
        .unwrap_or_else(|e| panic!("re-encoded request does not decode: {e}\nbody: {text}"));
    assert!(
        v1_tensors_eq(&request.inputs, &again.inputs),
        "V1 request: the round trip changed the inputs\nbody:   {text}\nfirst:  {:?}\nsecond: {:?}",
        request.inputs,
        again.inputs
    );
    let encoded_again = v1::encode_request(&again)
        .unwrap_or_else(|e| panic!("second encode_request failed: {e}\nbody: {text}"));
    assert_eq!(
        text,
        String::from_utf8_lossy(&encoded_again),
        "re-encoding is not a fixed point"
    );
});
