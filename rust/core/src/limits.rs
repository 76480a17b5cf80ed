//! Limits applied to everything decoded from the network. Every limit has a safe default and
//! can be changed by the embedding application (config file, environment, Python keyword).

/// Bounds on untrusted payloads. A payload over a limit is rejected before anything is allocated
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request or response body, in bytes (HTTP body or gRPC message).
    pub max_body_bytes: usize,
    /// Most elements one tensor may hold (product of its shape).
    pub max_tensor_elements: usize,
    /// Most dimensions one tensor may have.
    pub max_rank: usize,
    /// Most input (or output) tensors in one request (or response).
    pub max_tensors: usize,
    /// Longest single element of a BYTES tensor, in bytes.
    pub max_bytes_element_len: usize,
    /// Deepest nesting of JSON arrays: inside a tensor's `data` for V2, from the document root
    /// for V1 (where the whole document is tensor data). The rest of a V2 document has a fixed
    /// shape and is bounded by the parser's own recursion limit.
    pub max_json_depth: usize,
}

impl Limits {
    pub const DEFAULT: Self = Self {
        max_body_bytes: 64 << 20,
        max_tensor_elements: 1 << 28,
        max_rank: 32,
        max_tensors: 256,
        max_bytes_element_len: 16 << 20,
        max_json_depth: 64,
    };
}

impl Limits {
    /// No bounds, for tensors built in-process from trusted data (shapes are still checked for
    /// overflow). Never use it for anything decoded from the network.
    pub const UNLIMITED: Self = Self {
        max_body_bytes: usize::MAX,
        max_tensor_elements: usize::MAX,
        max_rank: usize::MAX,
        max_tensors: usize::MAX,
        max_bytes_element_len: usize::MAX,
        max_json_depth: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
