//! Tensor bytes between Rust and Python through the C API: a read-only Python buffer over
//! `bytes::Bytes`, so numpy can view tensor data without a copy (the view keeps the `Buffer`,
//! and so the bytes, alive for as long as numpy holds it), and copies in both directions.
#![allow(unsafe_code)] // the buffer protocol and uninitialized `bytes` are C APIs; only here

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;

use bytes::Bytes;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tensorgate_core::copy;

/// Read-only bytes of a tensor, exported through the buffer protocol.
#[pyclass(frozen, module = "tensorgate._core")]
#[derive(Debug)]
pub struct Buffer {
    data: Bytes,
}

impl Buffer {
    pub fn new(data: Bytes) -> Self {
        Self { data }
    }
}

#[pymethods]
impl Buffer {
    /// # Safety
    /// `view` is a valid `Py_buffer` provided by the interpreter.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let data = &slf.get().data;
        let len = ffi::Py_ssize_t::try_from(data.len())
            .map_err(|_| PyBufferError::new_err("buffer too large"))?;
        // SAFETY: the pointer stays valid while `slf` lives, and FillInfo takes a reference to
        // `slf` in `view.obj`; readonly = 1 makes FillInfo refuse writable requests.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr().cast_mut().cast::<c_void>(),
                len,
                1,
                flags,
            )
        };
        if status == -1 {
            return Err(PyErr::take(slf.py())
                .unwrap_or_else(|| PyBufferError::new_err("PyBuffer_FillInfo failed")));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }
}

/// A copy of a C-contiguous buffer's bytes (the caller checks contiguity), taken with the GIL
/// held so the exporter cannot free or resize the memory meanwhile.
pub fn copy_contiguous(_py: Python<'_>, buffer: &pyo3::buffer::PyUntypedBuffer) -> Bytes {
    let len = buffer.len_bytes();
    if len == 0 || buffer.buf_ptr().is_null() {
        return Bytes::new();
    }
    // SAFETY: the exporter guarantees `len` readable bytes at `buf_ptr` until the buffer is
    // released, and `buffer` is borrowed for the whole copy.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), len) };
    Bytes::copy_from_slice(bytes)
}

/// A `bytes` holding the concatenation of `parts`, copied with `copy::put` (CPython's `memcpy`
/// is many times slower for some placements of the two buffers on some hosts) into memory that
/// is not zero-filled first, as `PyBytes::new_with` would.
pub fn joined<'py, 'a, I>(py: Python<'py>, parts: I) -> PyResult<Bound<'py, PyBytes>>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let parts = parts.into_iter();
    let len: usize = parts.clone().map(<[u8]>::len).sum();
    if len == 0 {
        // CPython hands out one shared empty `bytes`; it must not be written to, even emptily.
        return Ok(PyBytes::new(py, b""));
    }
    let size = ffi::Py_ssize_t::try_from(len)?;
    // SAFETY: with a null source CPython allocates `size` bytes and leaves them uninitialized.
    let object = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), size))?
    };
    // SAFETY: `object` is a new `bytes` of `len` bytes that nothing else references yet; its
    // data is written below, through `MaybeUninit`, before Python can see it: `len` is the
    // parts' total, so they cover every byte.
    let mut rest = unsafe {
        let data = ffi::PyBytes_AsString(object.as_ptr()).cast::<MaybeUninit<u8>>();
        std::slice::from_raw_parts_mut(data, len)
    };
    for part in parts {
        copy::put(&mut rest, part);
    }
    Ok(object.cast_into::<PyBytes>()?)
}
