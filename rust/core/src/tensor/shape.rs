//! Shape validation: dimensions are non-negative and their product is overflow-checked against
//! the element limit before anything is allocated for it.

use crate::error::{Error, Result};
use crate::limits::Limits;

/// The element count of `shape`, or an error if it overflows or passes the limits.
pub fn element_count(shape: &[usize], limits: &Limits) -> Result<usize> {
    if shape.len() > limits.max_rank {
        return Err(Error::bad_request(format!(
            "shape {shape:?} has {} dimensions, over the limit of {}",
            shape.len(),
            limits.max_rank
        )));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
        .filter(|&count| count <= limits.max_tensor_elements)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "shape {shape:?} has more elements than the limit of {}",
                limits.max_tensor_elements
            ))
        })?;
    Ok(count)
}

/// Converts wire dimensions (signed in JSON and protobuf) to a shape, rejecting negatives.
pub fn shape_from_wire(dims: &[i64]) -> Result<Vec<usize>> {
    dims.iter()
        .map(|&dim| {
            usize::try_from(dim).map_err(|_| {
                Error::bad_request(format!("shape {dims:?} has a negative dimension {dim}"))
            })
        })
        .collect()
}
