//! Merging tensors along dimension 0 and splitting them back by row counts.

use bytes::BytesMut;

use crate::copy;
use crate::error::{Error, Result};
use crate::tensor::{DataType, Tensor, bytes_elements};

/// Concatenates tensors of one name and datatype whose trailing dimensions agree, along
/// dimension 0. One tensor is returned as is (zero-copy); the parameters of the first are kept.
pub fn concat(tensors: &[Tensor]) -> Result<Tensor> {
    let (first, rest) = tensors
        .split_first()
        .ok_or_else(|| Error::internal("concat of no tensors"))?;
    if first.shape().is_empty() {
        return Err(Error::bad_request(format!(
            "tensor '{}' is a scalar and has no dimension 0 to batch along",
            first.name
        )));
    }
    let mut rows = first.rows();
    for tensor in rest {
        check_compatible(first, tensor)?;
        // Rows of tensors with no elements (a trailing dimension of 0) are unbounded.
        rows = rows.checked_add(tensor.rows()).ok_or_else(|| {
            Error::bad_request(format!(
                "batch of '{}' has more rows than fit in usize",
                first.name
            ))
        })?;
    }
    if rest.is_empty() {
        return Ok(first.clone());
    }
    let mut data = BytesMut::with_capacity(tensors.iter().map(|t| t.data().len()).sum());
    for tensor in tensors {
        copy::put(&mut data, tensor.data());
    }
    let mut shape = first.shape().to_vec();
    shape[0] = rows;
    Ok(Tensor::from_validated(
        first.name.clone(),
        first.datatype(),
        shape,
        data.freeze(),
        first.parameters.clone(),
    ))
}

fn check_compatible(first: &Tensor, other: &Tensor) -> Result<()> {
    let same = other.name == first.name
        && other.datatype() == first.datatype()
        && other.shape().len() == first.shape().len()
        && other.shape()[1..] == first.shape()[1..];
    if same {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "cannot batch '{}' {} {:?} with '{}' {} {:?}: name, datatype and trailing \
             dimensions must agree",
            first.name,
            first.datatype(),
            first.shape(),
            other.name,
            other.datatype(),
            other.shape()
        )))
    }
}

/// Splits a tensor along dimension 0 into consecutive pieces of `rows` rows each. Pieces are
/// zero-copy slices of the tensor's data.
pub fn split(tensor: &Tensor, rows: &[usize]) -> Result<Vec<Tensor>> {
    let total = rows.iter().try_fold(0usize, |sum, &n| sum.checked_add(n));
    if tensor.shape().is_empty() || total != Some(tensor.rows()) {
        return Err(Error::internal(format!(
            "tensor '{}' of shape {:?} cannot be split into rows {rows:?}: they do not add up to \
             dimension 0",
            tensor.name,
            tensor.shape()
        )));
    }
    // Saturating: the product can only overflow when dimension 0 is 0 (the shape's element count
    // was checked), and then every piece has 0 rows and so 0 bytes.
    let row_elements = tensor.shape()[1..]
        .iter()
        .fold(1usize, |acc, &dim| acc.saturating_mul(dim));
    let offsets = row_offsets(tensor, row_elements, rows);
    let mut pieces = Vec::with_capacity(rows.len());
    for (&n, window) in rows.iter().zip(offsets.windows(2)) {
        let mut shape = tensor.shape().to_vec();
        shape[0] = n;
        pieces.push(Tensor::from_validated(
            tensor.name.clone(),
            tensor.datatype(),
            shape,
            tensor.data().slice(window[0]..window[1]),
            tensor.parameters.clone(),
        ));
    }
    Ok(pieces)
}

/// Byte offsets of each piece's start, plus the end.
fn row_offsets(tensor: &Tensor, row_elements: usize, rows: &[usize]) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    match tensor.datatype().element_size() {
        Some(size) => {
            let mut end = 0;
            for &n in rows {
                end += n * row_elements * size;
                offsets.push(end);
            }
        }
        None => {
            debug_assert_eq!(tensor.datatype(), DataType::Bytes);
            let mut elements = bytes_elements::Elements::new(tensor.data().clone());
            let mut end = 0;
            for &n in rows {
                end += (&mut elements)
                    .take(n * row_elements)
                    .map(|e| e.len() + 4)
                    .sum::<usize>();
                offsets.push(end);
            }
        }
    }
    offsets
}
