"""numpy conversions for ``tensorgate.Tensor``: the V2 datatype <-> dtype table.

Called from Rust (``Tensor.__new__``, ``Tensor.from_numpy``, ``Tensor.numpy``). BF16 needs the
``ml_dtypes`` package, imported only when a BF16 tensor is converted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_DTYPES: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}

_DATATYPES: dict[str, str] = {np.dtype(d).newbyteorder("=").str: t for t, d in _DTYPES.items()}


def dtype(datatype: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a fixed-size V2 datatype."""
    if datatype == "BF16":
        try:
            import ml_dtypes
        except ImportError as e:
            raise TypeError("BF16 tensors need the ml_dtypes package") from e
        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    try:
        return np.dtype(_DTYPES[datatype])
    except KeyError:
        raise TypeError(f"datatype {datatype} has no fixed-size numpy dtype") from None


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The V2 datatype of a numpy array's dtype."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    if array.dtype.name == "bfloat16":
        return "BF16"
    native = array.dtype.newbyteorder("=").str
    try:
        return _DATATYPES[native]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no V2 datatype") from None


def is_array(data: object) -> bool:
    return isinstance(data, np.ndarray)


def asarray(data: object) -> npt.NDArray[Any]:
    return np.asarray(data)


def to_raw(data: object, datatype: str) -> memoryview | list[bytes | str]:
    """The raw little-endian bytes of ``data`` as ``datatype``; BYTES gives the elements."""
    if datatype == "BYTES":
        return [_element(e) for e in np.asarray(data, dtype=object).reshape(-1)]
    array = np.ascontiguousarray(np.asarray(data, dtype=dtype(datatype)))
    # A uint8 view, not memoryview(array).cast("B"): the buffer protocol has no format for
    # ml_dtypes' bfloat16, so exporting a BF16 array directly raises ValueError.
    return array.reshape(-1).view(np.uint8).data


def _element(element: object) -> bytes | str:
    if isinstance(element, bytes | str):
        return element
    if isinstance(element, np.bytes_ | np.str_):
        return element.item()
    raise TypeError(f"BYTES elements must be bytes or str, not {type(element).__name__}")


def view(buffer: memoryview, datatype: str, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """A read-only, zero-copy array over a tensor's raw bytes."""
    return np.frombuffer(buffer, dtype=dtype(datatype)).reshape(shape)


def bytes_array(elements: list[bytes], shape: tuple[int, ...]) -> npt.NDArray[np.object_]:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)
