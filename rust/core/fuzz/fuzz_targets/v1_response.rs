//! `v1::decode_response` on arbitrary bodies. When a decoded response has a V1 form, that form
//! must decode to the same tensors (a lone output's name aside; zero rows read back as one empty
//! FP64 output) and encode again to the same bytes.
#![no_main]

use fuzz_common::{LIMITS, assert_not_internal, v1_tensors_eq};
use libfuzzer_sys::fuzz_target;
use tensorgate_core::codec::v1;

const MODEL: &str = "model";

fuzz_target!(|data: &[u8]| {
    let response = match v1::decode_response(data, MODEL, &LIMITS) {
        Ok(response) => response,
        Err(e) => return assert_not_internal(&e, "decode_response"),
    };
    assert_eq!(response.model_name, MODEL);
    let encoded = match v1::encode_response(&response) {
        Ok(encoded) => encoded,
        Err(e) => return assert_not_internal(&e, "encode_response"),
    };
    let text = String::from_utf8_lossy(&encoded);
    let again = v1::decode_response(&encoded, MODEL, &LIMITS)
        .unwrap_or_else(|e| panic!("re-encoded response does not decode: {e}\nbody: {text}"));
    if encoded == br#"{"predictions":[]}"# {
        // Zero rows: V1 has nothing to carry names or datatypes in, and `[]` reads back as one
        // FP64 output of shape [0] (documented in `codec::v1`).
        assert_eq!(again.outputs.len(), 1, "body: {text}");
        assert_eq!(again.outputs[0].shape(), &[0], "body: {text}");
        return;
    }
    assert!(
        v1_tensors_eq(&response.outputs, &again.outputs),
        "V1 response: the round trip changed the outputs\nbody:   {text}\nfirst:  {:?}\nsecond: {:?}",
        response.outputs,
        again.outputs
    );
    let encoded_again = v1::encode_response(&again)
        .unwrap_or_else(|e| panic!("second encode_response failed: {e}\nbody: {text}"));
    assert_eq!(
        text,
        String::from_utf8_lossy(&encoded_again),
        "re-encoding is not a fixed point"
    );
});
