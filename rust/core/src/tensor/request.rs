//! The V2 request and response envelopes.

use std::collections::{HashMap, HashSet};

use super::{Parameter, Parameters, Tensor};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// An output the client asked for, with its own parameters (e.g. `binary_data`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub parameters: Parameters,
}

impl RequestedOutput {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            parameters: Parameters::new(),
        }
    }
}

/// An inference request. `model_name`/`model_version` are filled by transports that carry them
/// in the message (gRPC); REST carries them in the path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub id: Option<String>,
    pub parameters: Parameters,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<RequestedOutput>,
}

/// An inference response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: Option<String>,
    pub id: Option<String>,
    pub parameters: Parameters,
    pub outputs: Vec<Tensor>,
}

/// Which outputs of a response go in the binary section of the binary tensor extension: a
/// default, overridden per output name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinaryOutputs {
    default: bool,
    overrides: HashMap<String, bool>,
}

impl BinaryOutputs {
    /// Every output binary (`true`) or JSON (`false`).
    pub fn all(binary: bool) -> Self {
        Self {
            default: binary,
            overrides: HashMap::new(),
        }
    }

    #[must_use]
    pub fn with(mut self, name: impl Into<String>, binary: bool) -> Self {
        self.overrides.insert(name.into(), binary);
        self
    }

    pub fn is_binary(&self, name: &str) -> bool {
        self.overrides.get(name).copied().unwrap_or(self.default)
    }
}

fn bool_parameter(parameters: &Parameters, key: &str) -> Option<bool> {
    match parameters.get(key) {
        Some(Parameter::Bool(value)) => Some(*value),
        _ => None,
    }
}

impl InferRequest {
    pub fn new(inputs: Vec<Tensor>) -> Self {
        Self {
            inputs,
            ..Self::default()
        }
    }

    /// Resolves which outputs the client wants binary: a requested output's own `binary_data`
    /// wins, otherwise the request-level `binary_data_output` applies (Triton's rule; KServe
    /// treats a missing per-output value as false, which loses the request-level flag).
    pub fn binary_outputs(&self) -> BinaryOutputs {
        let default = bool_parameter(&self.parameters, "binary_data_output").unwrap_or(false);
        self.outputs.iter().fold(
            BinaryOutputs::all(default),
            |binary, output| match bool_parameter(&output.parameters, "binary_data") {
                Some(value) => binary.with(output.name.clone(), value),
                None => binary,
            },
        )
    }

    /// Checks the rules every decoder shares: tensor count and unique input names.
    pub(crate) fn check(&self, limits: &Limits) -> Result<()> {
        check_tensors("input", &self.inputs, limits)?;
        match self.outputs.iter().position(|o| o.name.is_empty()) {
            Some(index) => Err(Error::bad_request(format!(
                "outputs[{index}] has an empty name"
            ))),
            None => Ok(()),
        }
    }
}

impl InferResponse {
    pub(crate) fn check(&self, limits: &Limits) -> Result<()> {
        check_tensors("output", &self.outputs, limits)
    }
}

fn check_tensors(what: &str, tensors: &[Tensor], limits: &Limits) -> Result<()> {
    if tensors.len() > limits.max_tensors {
        return Err(Error::bad_request(format!(
            "{} {what}s, over the limit of {}",
            tensors.len(),
            limits.max_tensors
        )));
    }
    let mut seen = HashSet::with_capacity(tensors.len());
    for (index, tensor) in tensors.iter().enumerate() {
        // proto3 cannot tell an empty name from none, so no protocol may carry one.
        if tensor.name.is_empty() {
            return Err(Error::bad_request(format!(
                "{what}s[{index}] has an empty name"
            )));
        }
        if !seen.insert(tensor.name.as_str()) {
            return Err(Error::bad_request(format!(
                "duplicate {what} name '{}'",
                tensor.name
            )));
        }
    }
    Ok(())
}
