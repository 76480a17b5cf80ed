//! KServe V1 REST (TensorFlow Serving style): `{"instances": ...}` / `{"inputs": ...}` requests
//! and `{"predictions": ...}` responses, converted to and from the V2 tensor model so that a V1
//! client can reach a V2 backend and a V2 client a V1 backend.
//!
//! # Decoding (V1 JSON → tensors)
//!
//! A request body must be a JSON object with `instances` (row format) or `inputs` (columnar
//! format); other top-level keys are ignored. JSON that does not parse is a 400 whose message
//! starts with `Unrecognized request format: ` (KServe's text).
//!
//! * **Row format**, `{"instances": [row, ...]}`. `instances` must be a non-empty list (otherwise
//!   400 `Expected "instances" to be a list`). Each instance is one row along a new dimension 0:
//!   * rows that are numbers, strings, booleans, `{"b64": ...}` objects or nested lists of them
//!     make one tensor named `input-0` of shape `[n_instances, ...row shape]`;
//!   * rows that are other objects are named inputs: every instance must have the same keys, and
//!     each key becomes a tensor of shape `[n_instances, ...value shape]`, in the key order of
//!     the first instance.
//!
//!   Every row (and every value of a key) must have the same shape: nested lists must be
//!   rectangular, or the 400 names the instance.
//! * **Columnar format**, `{"inputs": value}`: an object gives one tensor per key, a list or a
//!   scalar gives one tensor `input-0`; the shape is the nesting of the value itself (no batch
//!   dimension is added).
//! * A response `{"predictions": value}` is read with the same rules: a list is rows (a list of
//!   objects gives one output per key), anything else is columnar; the default output name is
//!   `output-0`. An empty list is an FP64 output of shape `[0]`.
//!
//! Element types are inferred from the values of one tensor:
//!
//! | JSON elements | datatype |
//! | --- | --- |
//! | all `true` / `false` | BOOL |
//! | all integers within the i64 range | INT64 |
//! | any number with a fraction or exponent, `NaN`, `Infinity`, `-Infinity`, or an integer outside the i64 range | FP64 |
//! | strings | BYTES (the UTF-8 text) |
//! | `{"b64": "<base64>"}` | BYTES (the decoded bytes; standard alphabet, padding optional) |
//! | no elements at all | FP64 |
//!
//! Strings and `{"b64"}` objects mix freely; mixing strings, numbers and booleans in one tensor
//! is a 400, as are `null`, other objects inside a tensor, invalid base64, nesting deeper than
//! `max_json_depth`, and tensors over the element, rank or BYTES-element limits. An object whose
//! only key is `b64` with a string value is always a binary value, never an input named `b64`.
//!
//! # Encoding (tensors → V1 JSON)
//!
//! A tensor becomes nested lists following its shape (shape `[]` is the bare value, `[n]` a flat
//! list). Numbers are written shortest round-trip (FP16/BF16 as numbers), BOOL as `true`/`false`,
//! BYTES as JSON strings when UTF-8 and `{"b64": "<base64>"}` otherwise.
//!
//! * Response: one output gives `{"predictions": <the output nested>}`; several outputs that share
//!   dimension 0 give `{"predictions": [{"<name>": <row>, ...}, ...]}`; several outputs that do
//!   not share it cannot be V1 and are an error (501), unless the first is a BYTES output named
//!   `b64`, whose rows would read back as a binary value: those are written columnar,
//!   `{"predictions": {"<name>": <nested>, ...}}`. Model name, id and parameters have no V1 form
//!   and are dropped.
//! * Request: one input with at least one row gives `{"instances": <its rows>}`; several inputs
//!   sharing a non-zero dimension 0 give `{"instances": [{"<name>": <row>, ...}, ...]}`; anything
//!   else (a scalar, zero rows, inputs with different dimension 0, or a first input that would
//!   read back as a `{"b64": ...}` value) gives columnar `{"inputs": {"<name>": <nested>}}`.

use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

mod read;
#[cfg(test)]
mod tests;
mod write;

pub use read::{decode_request, decode_response};
pub use write::{encode_request, encode_response};

/// KServe's conventional name for the single unnamed input of a V1 request.
pub const DEFAULT_INPUT_NAME: &str = "input-0";
/// The name given to the single unnamed output of a V1 response.
pub const DEFAULT_OUTPUT_NAME: &str = "output-0";

const B64: &str = "b64";

/// Standard base64 that accepts input with or without `=` padding.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// Decoding
