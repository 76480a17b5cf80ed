//! The raw layout of BYTES tensors: each element is a u32 little-endian length then its bytes.

use bytes::{BufMut, Bytes};

use crate::error::{Error, Result};
use crate::limits::Limits;

const PREFIX: usize = 4;

/// Checks that `raw` holds exactly `count` length-prefixed elements, each within the limit.
pub fn validate(raw: &[u8], count: usize, limits: &Limits) -> Result<()> {
    let mut rest = raw;
    for index in 0..count {
        let (len, tail) = split_prefix(rest).ok_or_else(|| {
            Error::bad_request(format!(
                "BYTES data ends inside the length prefix of element {index} of {count}"
            ))
        })?;
        if len > limits.max_bytes_element_len {
            return Err(Error::bad_request(format!(
                "BYTES element {index} is {len} bytes, over the limit of {}",
                limits.max_bytes_element_len
            )));
        }
        if tail.len() < len {
            return Err(Error::bad_request(format!(
                "BYTES element {index} declares {len} bytes but only {} remain",
                tail.len()
            )));
        }
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(Error::bad_request(format!(
            "BYTES data has {} bytes left over after {count} elements",
            rest.len()
        )));
    }
    Ok(())
}

fn split_prefix(raw: &[u8]) -> Option<(usize, &[u8])> {
    let (prefix, tail) = raw.split_first_chunk::<PREFIX>()?;
    let len = usize::try_from(u32::from_le_bytes(*prefix)).ok()?;
    Some((len, tail))
}

/// Iterates the elements of validated raw BYTES data as zero-copy slices.
#[derive(Debug, Clone)]
pub struct Elements {
    rest: Bytes,
}

impl Elements {
    pub fn new(raw: Bytes) -> Self {
        Self { rest: raw }
    }
}

impl Iterator for Elements {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let (len, tail) = split_prefix(&self.rest)?;
        let end = PREFIX.checked_add(len)?;
        if tail.len() < len {
            return None;
        }
        let element = self.rest.slice(PREFIX..end);
        self.rest = self.rest.slice(end..);
        Some(element)
    }
}

/// Appends one element in raw form.
pub fn push(out: &mut Vec<u8>, element: &[u8]) -> Result<()> {
    let len = u32::try_from(element.len())
        .map_err(|_| Error::bad_request("BYTES element longer than 4 GiB"))?;
    out.put_u32_le(len);
    out.extend_from_slice(element);
    Ok(())
}
