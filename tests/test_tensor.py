"""tensorgate.Tensor and the request/response envelopes: numpy conversion, checks, parameters."""

from __future__ import annotations

import gc
import pickle
import struct
from typing import Any, cast

import ml_dtypes
import numpy as np
import pytest
import tensorgate
from conftest import (
    FIXED_DTYPES,
    Array,
    assert_protocol_error,
    assert_same,
    datatype,
    numpy_dtype,
    raw_bytes,
    sample,
)
from tensorgate import InferRequest, InferResponse, ProtocolError, RequestedOutput, Tensor
from tritonclient.utils import serialize_byte_tensor


@pytest.mark.parametrize("dtype", FIXED_DTYPES, ids=str)
def test_from_numpy_every_fixed_dtype(dtype: np.dtype[Any]) -> None:
    name = datatype(dtype)
    array = sample(name, (3, 4))
    tensor = Tensor.from_numpy("x", array)
    assert tensor.name == "x"
    assert tensor.datatype == name
    assert tensor.shape == (3, 4)
    assert len(tensor) == 3
    assert raw_bytes(tensor) == array.astype(array.dtype.newbyteorder("<")).tobytes()
    assert len(tensor.raw) == array.nbytes
    assert_same(tensor.numpy(), array)


@pytest.mark.parametrize("dtype", FIXED_DTYPES, ids=str)
def test_numpy_is_a_read_only_zero_copy_view(dtype: np.dtype[Any]) -> None:
    tensor = Tensor.from_numpy("x", sample(datatype(dtype), (2, 5)))
    first, second = tensor.numpy(), tensor.numpy()
    assert not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = first[1, 1]
    with pytest.raises(ValueError, match="WRITEABLE"):
        first.setflags(write=True)
    # Two calls view the same bytes: nothing was copied.
    assert np.shares_memory(first, second)
    assert first.ctypes.data == second.ctypes.data


def test_raw_is_a_read_only_view_of_the_same_bytes() -> None:
    tensor = Tensor.from_numpy("x", np.arange(16, dtype=np.int32))
    view = memoryview(cast(Any, tensor.raw))
    assert view.readonly
    assert view.nbytes == 64
    with pytest.raises(TypeError):
        view[0] = 1
    assert np.shares_memory(np.frombuffer(view, dtype=np.int32), tensor.numpy())


def test_numpy_view_outlives_the_tensor() -> None:
    array = np.arange(1000, dtype=np.int64)
    tensor = Tensor.from_numpy("x", array)
    view = tensor.numpy()
    del tensor
    gc.collect()
    # Fresh allocations that would reuse freed memory, if the view did not keep it alive.
    junk = [np.full(1000, -1, dtype=np.int64) for _ in range(50)]
    np.testing.assert_array_equal(view, array)
    assert len(junk) == 50


def test_from_numpy_copies_the_input_once() -> None:
    array = np.arange(6, dtype=np.float32)
    tensor = Tensor.from_numpy("x", array)
    array[0] = 99.0
    assert tensor.numpy()[0] == 0.0
    assert not np.shares_memory(tensor.numpy(), array)


def test_bf16_through_ml_dtypes() -> None:
    values = np.array([[0.0, -1.5, 3.140625], [1e30, -1e-30, np.inf]], dtype=np.float32)
    array = values.astype(ml_dtypes.bfloat16)
    tensor = Tensor.from_numpy("b", array)
    assert tensor.datatype == "BF16"
    assert len(tensor.raw) == 2 * array.size
    result = tensor.numpy()
    assert result.dtype == np.dtype(ml_dtypes.bfloat16)
    assert_same(result, array)
    # The raw form is ml_dtypes' bit pattern, little-endian.
    bits = array.view(np.uint16).astype("<u2")
    np.testing.assert_array_equal(np.frombuffer(raw_bytes(tensor), dtype="<u2").reshape(2, 3), bits)


def test_datatype_override_converts() -> None:
    tensor = Tensor.from_numpy("x", np.arange(4).reshape(2, 2), datatype="FP32")
    assert tensor.datatype == "FP32"
    assert_same(tensor.numpy(), np.arange(4, dtype=np.float32).reshape(2, 2))


@pytest.mark.parametrize("source", [np.uint8, np.int8, np.bool_, np.uint16], ids=str)
@pytest.mark.parametrize("target", ["INT32", "FP32", "UINT64", "FP16"])
def test_datatype_override_converts_every_source_dtype(source: type, target: str) -> None:
    # A uint8 array exports a byte buffer too: it must still be converted, not taken as raw.
    array: Array = np.array([[1, 0], [1, 1]], dtype=source)
    expected = array.astype(numpy_dtype(target))
    assert_same(Tensor.from_numpy("x", array, datatype=target).numpy(), expected)
    assert_same(Tensor("x", target, [2, 2], array).numpy(), expected)


def test_python_scalars_and_lists_infer_numpy_datatypes() -> None:
    assert Tensor.from_numpy("x", [1, 2, 3]).datatype == datatype(np.asarray([1, 2, 3]).dtype)
    assert Tensor.from_numpy("x", [1.5]).datatype == datatype(np.asarray([1.5]).dtype)
    assert Tensor.from_numpy("x", [True, False]).datatype == "BOOL"
    scalar = Tensor.from_numpy("x", np.float32(2.5))
    assert scalar.shape == ()
    assert len(scalar) == 1
    assert_same(scalar.numpy(), np.array(2.5, dtype=np.float32))


@pytest.mark.parametrize(
    "elements",
    [
        [b"a", b"", b"\x00\xff", b"longer element"],
        ["a", "", "h\u00e9llo", "\u2603"],
        [b"mixed", "types"],
    ],
    ids=["bytes", "str", "mixed"],
)
def test_bytes_from_a_list(elements: list[bytes | str]) -> None:
    tensor = Tensor("s", "BYTES", [len(elements)], elements)
    expected = np.array([e.encode() if isinstance(e, str) else e for e in elements], dtype=object)
    assert tensor.datatype == "BYTES"
    assert_same(tensor.numpy(), expected)
    # Raw form as the reference client serializes it.
    assert raw_bytes(tensor) == serialize_byte_tensor(expected).item()


def test_bytes_from_numpy_object_array() -> None:
    array = sample("BYTES", (3, 2))
    tensor = Tensor.from_numpy("s", array)
    assert tensor.datatype == "BYTES"
    assert tensor.shape == (3, 2)
    assert_same(tensor.numpy(), array)
    assert raw_bytes(tensor) == serialize_byte_tensor(array).item()


def test_bytes_from_numpy_bytes_and_str_arrays() -> None:
    fixed = np.array([[b"ab", b"c"], [b"", b"def"]])
    assert fixed.dtype.kind == "S"
    tensor = Tensor.from_numpy("s", fixed)
    assert tensor.datatype == "BYTES"
    assert_same(tensor.numpy(), fixed)

    text = np.array(["x", "h\u00e9", "\u2603\u2603"])
    assert text.dtype.kind == "U"
    tensor = Tensor.from_numpy("s", text)
    assert tensor.datatype == "BYTES"
    assert_same(tensor.numpy(), text)


def test_bytes_numpy_is_an_object_array_of_bytes() -> None:
    tensor = Tensor("s", "BYTES", [2, 1], ["a", b"b"])
    result = tensor.numpy()
    assert result.dtype == object
    assert result.shape == (2, 1)
    assert [type(e) for e in result.reshape(-1)] == [bytes, bytes]


def test_bytes_elements_must_be_bytes_or_str() -> None:
    with pytest.raises(TypeError, match="bytes or str"):
        Tensor("s", "BYTES", [2], [b"a", 3])


@pytest.mark.parametrize(
    "array",
    [
        np.arange(48, dtype=np.int32).reshape(6, 8)[::2, 1::3],
        np.arange(24, dtype=np.float64).reshape(2, 3, 4).transpose(2, 0, 1),
        np.asfortranarray(np.arange(12, dtype=np.uint16).reshape(3, 4)),
        np.arange(10, dtype=np.int64)[::-1],
    ],
    ids=["strided", "transposed", "fortran", "reversed"],
)
def test_non_contiguous_input(array: np.ndarray[Any, Any]) -> None:
    assert not array.flags.c_contiguous
    tensor = Tensor.from_numpy("x", array)
    assert tensor.shape == array.shape
    assert raw_bytes(tensor) == np.ascontiguousarray(array).tobytes()
    assert_same(tensor.numpy(), array)


@pytest.mark.parametrize("code", [">i2", ">u4", ">i8", ">f4", ">f8", ">f2"])
def test_big_endian_input_becomes_little_endian(code: str) -> None:
    array = np.array([[1, -2, 300], [4, 5, 6]]).astype(code)
    tensor = Tensor.from_numpy("x", array)
    little = array.astype(np.dtype(code).newbyteorder("<"))
    assert tensor.datatype == datatype(little.dtype)
    assert raw_bytes(tensor) == little.tobytes()
    result = tensor.numpy()
    assert result.dtype.byteorder in "=<|"
    np.testing.assert_array_equal(result, array)


def test_constructor_with_nested_list() -> None:
    tensor = Tensor("x", "FP32", [2, 3], [[1, 2, 3], [4.5, 5, 6]])
    assert_same(tensor.numpy(), np.array([[1, 2, 3], [4.5, 5, 6]], dtype=np.float32))
    flat = Tensor("x", "INT16", [2, 2], [1, -2, 3, -4])
    assert_same(flat.numpy(), np.array([[1, -2], [3, -4]], dtype=np.int16))


def test_constructor_with_raw_bytes() -> None:
    array = np.array([[1, -2], [3, 2**31 - 1]], dtype="<i4")
    tensor = Tensor("x", "INT32", [2, 2], array.tobytes())
    assert_same(tensor.numpy(), array)
    from_bytearray = Tensor("x", "INT32", [4], bytearray(array.tobytes()))
    assert_same(from_bytearray.numpy(), array.reshape(-1))
    from_memoryview = Tensor("x", "INT32", [2, 2], memoryview(array.tobytes()))
    assert from_memoryview == tensor


def test_constructor_with_raw_bytes_elements() -> None:
    elements = [b"one", b"", b"three"]
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    tensor = Tensor("s", "BYTES", [3], raw)
    assert_same(tensor.numpy(), np.array(elements, dtype=object))


def test_empty_and_zero_sized_tensors() -> None:
    tensor = Tensor("x", "FP32", [0, 3], b"")
    assert tensor.shape == (0, 3)
    assert len(tensor) == 0
    assert_same(tensor.numpy(), np.zeros((0, 3), dtype=np.float32))
    empty_bytes = Tensor("s", "BYTES", [0], [])
    assert_same(empty_bytes.numpy(), np.zeros((0,), dtype=object))


PARAMETERS: dict[str, bool | int | float | str] = {
    "flag": True,
    "off": False,
    "count": -7,
    "ratio": 0.25,
    "name": "h\u00e9llo",
    "min": -(2**63),
    "max_i64": 2**63 - 1,
    "big": 2**64 - 1,
    "above_i64": 2**63,
}


def check_parameters(actual: dict[str, bool | int | float | str]) -> None:
    assert actual == PARAMETERS
    # Equality alone would accept 1 for True: check the types too.
    assert {k: type(v) for k, v in actual.items()} == {k: type(v) for k, v in PARAMETERS.items()}


def test_parameters_round_trip() -> None:
    tensor = Tensor("x", "INT8", [1], [1], parameters=PARAMETERS)
    check_parameters(tensor.parameters)
    request = InferRequest(
        [tensor], parameters=PARAMETERS, outputs=[RequestedOutput("y", PARAMETERS)]
    )
    check_parameters(request.parameters)
    check_parameters(request.outputs[0].parameters)
    response = InferResponse("m", [tensor], parameters=PARAMETERS)
    check_parameters(response.parameters)


def test_parameters_keep_their_order() -> None:
    keys = [f"k{i}" for i in (5, 1, 9, 0, 3)]
    tensor = Tensor("x", "INT8", [1], [1], parameters={k: 1 for k in keys})
    assert list(tensor.parameters) == keys


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_parameters_out_of_64_bit_range_are_rejected(value: int) -> None:
    with pytest.raises((OverflowError, TypeError, ValueError)):
        Tensor("x", "INT8", [1], [1], parameters={"v": value})


def test_parameters_must_be_scalars() -> None:
    with pytest.raises(TypeError, match="'v'"):
        Tensor("x", "INT8", [1], [1], parameters={"v": [1]})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        Tensor("x", "INT8", [1], [1], parameters=[("v", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("datatype_", "shape", "data", "expected_size"),
    [
        ("INT32", [3], b"\x00" * 8, 3 * 4),
        ("FP64", [2, 2], b"\x00" * 33, 2 * 2 * 8),
        ("BOOL", [5], b"", 5),
        ("FP16", [1], b"\x00" * 4, 2),
    ],
)
def test_wrong_data_size(datatype_: str, shape: list[int], data: bytes, expected_size: int) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        Tensor("t", datatype_, shape, data)
    assert_protocol_error(
        excinfo.value, 400, "'t'", datatype_, f"{expected_size} bytes", f"got {len(data)}"
    )


def test_wrong_element_count_from_list() -> None:
    with pytest.raises(ProtocolError) as excinfo:
        Tensor("t", "INT32", [2, 2], [1, 2, 3])
    assert_protocol_error(excinfo.value, 400, "'t'")


@pytest.mark.parametrize(
    ("elements", "count"), [([b"a", b"b"], 3), ([b"a", b"b", b"c"], 2)], ids=["few", "many"]
)
def test_wrong_bytes_element_count(elements: list[bytes], count: int) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        Tensor("t", "BYTES", [count], elements)
    assert_protocol_error(excinfo.value, 400, "'t'", "BYTES")


def test_truncated_raw_bytes_elements() -> None:
    raw = struct.pack("<I", 10) + b"short"
    with pytest.raises(ProtocolError) as excinfo:
        Tensor("t", "BYTES", [1], raw)
    assert_protocol_error(excinfo.value, 400, "'t'", "10 bytes")


@pytest.mark.parametrize("name", ["FOO", "fp32", "STRING", ""])
def test_unknown_datatype(name: str) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        Tensor("t", name, [1], [1])
    assert_protocol_error(excinfo.value, 400, f"unknown datatype '{name}'")


def test_unknown_numpy_dtype() -> None:
    with pytest.raises(TypeError, match="complex"):
        Tensor.from_numpy("t", np.zeros(2, dtype=np.complex64))


def test_protocol_error_is_a_value_error_with_codes() -> None:
    assert issubclass(ProtocolError, ValueError)
    error = ProtocolError("too big", 413, 8)
    assert (error.message, error.status_code, error.grpc_code, str(error)) == (
        "too big",
        413,
        8,
        "too big",
    )
    default = ProtocolError("bad")
    assert (default.status_code, default.grpc_code) == (400, 3)
    with pytest.raises(ValueError, match="bad"):
        raise default


def test_protocol_error_pickles() -> None:
    with pytest.raises(ProtocolError) as excinfo:
        tensorgate.codec.decode_v2_request(b"{}", limits=tensorgate.Limits(max_body_bytes=1))
    copy = pickle.loads(pickle.dumps(excinfo.value))
    assert isinstance(copy, ProtocolError)
    assert (copy.message, copy.status_code, copy.grpc_code) == (
        excinfo.value.message,
        413,
        8,
    )


def test_equality() -> None:
    array = sample("FP32", (2, 2))
    tensor = Tensor.from_numpy("x", array)
    assert tensor == Tensor.from_numpy("x", array.copy())
    assert tensor == Tensor("x", "FP32", [2, 2], array.tobytes())
    assert tensor != Tensor.from_numpy("y", array)
    assert tensor != Tensor.from_numpy("x", array + 1)
    assert tensor != Tensor.from_numpy("x", array.reshape(4))
    assert tensor != Tensor("x", "INT32", [2, 2], array.tobytes())
    assert tensor != Tensor("x", "FP32", [2, 2], array.tobytes(), parameters={"p": 1})
    request = InferRequest([tensor], id="a")
    assert request == InferRequest([Tensor.from_numpy("x", array)], id="a")
    assert request != InferRequest([tensor], id="b")
    assert InferResponse("m", [tensor]) == InferResponse("m", [tensor])
    assert InferResponse("m", [tensor]) != InferResponse("n", [tensor])
    assert RequestedOutput("y") == RequestedOutput("y")
    assert RequestedOutput("y") != RequestedOutput("y", {"binary_data": True})


def test_repr() -> None:
    tensor = Tensor.from_numpy("input_0", np.zeros((2, 3), dtype=np.uint8))
    text = repr(tensor)
    assert text.startswith("Tensor(")
    for fragment in ("input_0", "UINT8", "2", "3"):
        assert fragment in text
    assert "input_0" in repr(InferRequest([tensor], id="req-9"))
    assert "req-9" in repr(InferRequest([tensor], id="req-9"))
    assert "model-z" in repr(InferResponse("model-z", [tensor]))
    assert "out_q" in repr(RequestedOutput("out_q"))


def test_request_and_response_properties() -> None:
    x, y = Tensor.from_numpy("x", np.arange(3)), Tensor.from_numpy("y", np.ones(2))
    request = InferRequest(
        [x, y],
        id="r1",
        parameters={"p": 1},
        outputs=["a", RequestedOutput("b", {"binary_data": False})],
        model_name="m",
        model_version="3",
    )
    assert request.inputs == [x, y]
    assert [o.name for o in request.outputs] == ["a", "b"]
    assert request.outputs[1].parameters == {"binary_data": False}
    assert (request.id, request.model_name, request.model_version) == ("r1", "m", "3")
    assert request.parameters == {"p": 1}
    bare = InferRequest([x])
    assert (bare.id, bare.model_name, bare.model_version, bare.outputs) == (None, None, None, [])
    assert bare.parameters == {}
    response = InferResponse("m", [y], id="r1", model_version="3", parameters={"q": "v"})
    assert (response.model_name, response.id, response.model_version) == ("m", "r1", "3")
    assert response.outputs == [y]
    assert response.parameters == {"q": "v"}
    with pytest.raises(TypeError):
        InferRequest([x], outputs=[3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("parameters", "outputs", "expected"),
    [
        ({}, [], {"a": False, "b": False}),
        ({"binary_data_output": True}, [], {"a": True, "b": True}),
        (
            {"binary_data_output": True},
            [RequestedOutput("a", {"binary_data": False})],
            {"a": False, "b": True},
        ),
        (
            {},
            [RequestedOutput("a", {"binary_data": True}), RequestedOutput("b")],
            {"a": True, "b": False},
        ),
        (
            {"binary_data_output": False},
            [RequestedOutput("b", {"binary_data": True})],
            {"a": False, "b": True},
        ),
    ],
)
def test_wants_binary(
    parameters: dict[str, bool], outputs: list[RequestedOutput], expected: dict[str, bool]
) -> None:
    request = InferRequest([Tensor.from_numpy("x", [1])], parameters=parameters, outputs=outputs)
    assert {name: request.wants_binary(name) for name in expected} == expected


def test_limits() -> None:
    default = tensorgate.Limits()
    for field in (
        "max_body_bytes",
        "max_tensor_elements",
        "max_rank",
        "max_tensors",
        "max_bytes_element_len",
        "max_json_depth",
    ):
        assert getattr(default, field) > 0
        custom = tensorgate.Limits(**{field: 7})
        assert getattr(custom, field) == 7
        assert custom != default
    assert tensorgate.Limits() == default
    assert "max_rank" in repr(default)
    with pytest.raises(OverflowError):
        tensorgate.Limits(max_rank=-1)


def test_version() -> None:
    assert isinstance(tensorgate.__version__, str)
    assert tensorgate.__version__.count(".") >= 2


def test_local_tensors_are_not_bound_by_network_limits() -> None:
    # A tensor built in-process from the caller's own data may exceed the decode limits...
    deep = np.zeros((1,) * 40, dtype=np.int8)
    assert tensorgate.Limits().max_rank < deep.ndim
    assert tensorgate.Tensor.from_numpy("deep", deep).shape == deep.shape
    # ...but its shape must still describe its data without overflowing.
    with pytest.raises(tensorgate.ProtocolError, match="more elements than the limit"):
        tensorgate.Tensor("x", "INT8", [2**40, 2**40], b"")
