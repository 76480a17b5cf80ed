"""Property tests: random arrays of every datatype and shape survive every wire encoding.

JSON cannot carry NaN payloads or the sign of NaN (it has one ``NaN`` token), so the JSON path is
compared NaN-aware; the binary extension and gRPC raw contents must be bit-exact.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
from conftest import Array, assert_same, numpy_dtype
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorgate import InferRequest, InferResponse, Tensor, codec

NUMERIC = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn, datatype: str | None = None) -> tuple[str, Array]:
    """A (datatype, array) pair: any V2 datatype, any small shape, any values."""
    name = datatype or draw(st.sampled_from([*NUMERIC, "BF16", "BYTES", "BYTES_TEXT"]))
    shape = draw(shapes)
    if name == "BF16":
        bits = draw(hnp.arrays(np.uint16, shape))
        return "BF16", bits.view(ml_dtypes.bfloat16)
    if name in ("BYTES", "BYTES_TEXT"):
        element = st.binary(max_size=12) if name == "BYTES" else st.text(max_size=8).map(str.encode)
        array = draw(hnp.arrays(object, shape, elements=element))
        return "BYTES", array
    return name, draw(hnp.arrays(numpy_dtype(name), shape))


def assert_json_equal(actual: Array, expected: Array) -> None:
    """Equal values, NaN equal to any NaN, and the sign of zero kept."""
    if expected.dtype.kind != "f":
        assert_same(actual, expected)
        return
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    finite = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(actual[finite]), np.signbit(expected[finite]))


def has_nan(array: Array) -> bool:
    return array.dtype.kind == "f" and bool(np.isnan(array).any())


@settings(max_examples=200, deadline=None)
@given(st.lists(arrays(), min_size=1, max_size=4))
def test_request_encodings_agree(pairs: list[tuple[str, Array]]) -> None:
    inputs = [Tensor.from_numpy(f"in{i}", a, datatype=n) for i, (n, a) in enumerate(pairs)]
    request = InferRequest(inputs, id="p", parameters={"k": 1}, model_name="m")

    body, header_length = codec.encode_v2_request(request, binary=True)
    via_binary = codec.decode_v2_request(body, header_length)
    body, header_length = codec.encode_v2_request(request, binary=False)
    via_json = codec.decode_v2_request(body, header_length)
    via_grpc = codec.decode_grpc_request(codec.encode_grpc_request(request))

    # REST carries the model name in the URL, not the body.
    assert via_binary.model_name is None
    assert via_grpc.model_name == "m"
    for decoded in (via_binary, via_json, via_grpc):
        assert decoded.id == "p"
        assert decoded.parameters == {"k": 1}
    for (_, array), b, j, g in zip(
        pairs, via_binary.inputs, via_json.inputs, via_grpc.inputs, strict=True
    ):
        assert_same(b.numpy(), array)
        assert_same(g.numpy(), array)
        assert_json_equal(j.numpy(), array)
        assert b == g
        if not has_nan(array):
            assert j == b


@settings(max_examples=200, deadline=None)
@given(st.lists(arrays(), min_size=1, max_size=4), st.data())
def test_response_encodings_agree(pairs: list[tuple[str, Array]], data: st.DataObject) -> None:
    outputs = [Tensor.from_numpy(f"out{i}", a, datatype=n) for i, (n, a) in enumerate(pairs)]
    response = InferResponse("m", outputs, id="r", model_version="1")
    names = [t.name for t in outputs]
    selection: Any = data.draw(
        st.one_of(st.booleans(), st.lists(st.sampled_from(names), unique=True)), label="binary"
    )

    body, header_length = codec.encode_v2_response(response, binary_outputs=selection)
    via_rest = codec.decode_v2_response(body, header_length)
    via_grpc = codec.decode_grpc_response(codec.encode_grpc_response(response))

    assert via_grpc == response
    assert (via_rest.model_name, via_rest.id, via_rest.model_version) == ("m", "r", "1")
    for (_, array), r, g in zip(pairs, via_rest.outputs, via_grpc.outputs, strict=True):
        assert_same(g.numpy(), array)
        assert_json_equal(r.numpy(), array)
        if not has_nan(array):
            assert r == g


@settings(max_examples=200, deadline=None)
@given(arrays())
def test_tensor_from_numpy_round_trips(pair: tuple[str, Array]) -> None:
    name, array = pair
    tensor = Tensor.from_numpy("x", array)
    assert tensor.datatype == name
    assert tensor.shape == array.shape
    assert_same(tensor.numpy(), array)
    rebuilt = Tensor("x", name, list(array.shape), tensor.raw)
    assert rebuilt == tensor
