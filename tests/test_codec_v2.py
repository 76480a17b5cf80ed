"""V2 REST codec: JSON and the binary extension, round trips and interop with tritonclient.http.

Requests are produced by tritonclient's own request builder and responses are read back by its
own ``InferResult``, so both directions are checked against the reference client.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from conftest import (
    ALL_DATATYPES,
    HALF,
    JSON_DATATYPES,
    Array,
    assert_protocol_error,
    assert_same,
    numpy_dtype,
    sample,
    tensors,
)
from tensorgate import InferRequest, InferResponse, ProtocolError, RequestedOutput, Tensor, codec
from tritonclient.http import _utils as http_utils
from tritonclient.utils import serialize_byte_tensor

# ---------------------------------------------------------------------------------------------
# helpers


def text_sample(shape: tuple[int, ...] = (2, 3)) -> Array:
    """A BYTES array whose elements are all UTF-8 (what JSON can carry)."""
    pool = ["", "a", "hello world", "h\u00e9llo", "\u2603 snow", 'quote " back \\ nl \n tab \t']
    count = int(np.prod(shape))
    return np.array([pool[i % len(pool)].encode() for i in range(count)], dtype=object).reshape(
        shape
    )


def json_sample(name: str, shape: tuple[int, ...] = (2, 3), seed: int = 0) -> Array:
    return text_sample(shape) if name == "BYTES" else sample(name, shape, seed)


def triton_input(name: str, array: Array, datatype: str, binary: bool) -> httpclient.InferInput:
    infer_input = httpclient.InferInput(name, list(array.shape), datatype)
    infer_input.set_data_from_numpy(array, binary_data=binary)
    return infer_input


def triton_body(
    inputs: list[httpclient.InferInput],
    outputs: list[httpclient.InferRequestedOutput] | None = None,
    request_id: str = "",
    custom_parameters: dict[str, Any] | None = None,
    sequence_id: int = 0,
    priority: int = 0,
    timeout: int | None = None,
) -> tuple[bytes, int | None]:
    body, json_size = http_utils._get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=outputs,
        sequence_id=sequence_id,
        sequence_start=sequence_id != 0,
        sequence_end=False,
        priority=priority,
        timeout=timeout,
        custom_parameters=custom_parameters,
    )
    return bytes(body), json_size


def triton_result(body: bytes, header_length: int | None) -> httpclient.InferResult:
    return httpclient.InferResult.from_response_body(
        body, verbose=False, header_length=header_length
    )


def assert_triton_output(actual: Array, expected: Array) -> None:
    """tritonclient's ``as_numpy`` gives ``str`` for BYTES sent as JSON; tensorgate gives bytes."""
    if expected.dtype == object:
        assert actual.shape == expected.shape
        got = [e.encode() if isinstance(e, str) else e for e in actual.reshape(-1)]
        assert got == list(expected.reshape(-1))
    else:
        assert_same(actual, expected)


def split(body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header (parsed by the standard library) and the binary section."""
    end = len(body) if header_length is None else header_length
    header = json.loads(body[:end])
    assert isinstance(header, dict)
    return header, body[end:]


# ---------------------------------------------------------------------------------------------
# round trips through tensorgate alone


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_request_round_trip_every_datatype(binary: bool) -> None:
    inputs = tensors(ALL_DATATYPES)
    request = InferRequest(
        inputs,
        id="req-1",
        parameters={"p": 1, "q": "s", "r": 0.5, "t": True},
        outputs=["a", RequestedOutput("b", {"binary_data": True})],
    )
    body, header_length = codec.encode_v2_request(request, binary=binary)
    # FP16/BF16 and non-UTF-8 BYTES have no JSON form: they always travel binary.
    assert header_length is not None
    decoded = codec.decode_v2_request(body, header_length)
    assert decoded == request
    for got, sent in zip(decoded.inputs, inputs, strict=True):
        assert_same(got.numpy(), sent.numpy())
    assert [o.name for o in decoded.outputs] == ["a", "b"]
    assert decoded.wants_binary("b")
    assert not decoded.wants_binary("a")


@pytest.mark.parametrize("name", JSON_DATATYPES)
def test_pure_json_request(name: str) -> None:
    array = json_sample(name, (3, 2))
    request = InferRequest([Tensor.from_numpy("x", array, datatype=name)])
    body, header_length = codec.encode_v2_request(request)
    assert header_length is None
    header, rest = split(body, header_length)
    assert rest == b""
    (entry,) = header["inputs"]
    assert (entry["name"], entry["datatype"], entry["shape"]) == ("x", name, [3, 2])
    # The flat, row-major data as Python's json module reads it.
    if name == "BYTES":
        assert entry["data"] == [e.decode() for e in array.reshape(-1)]
    else:
        assert_same(np.array(entry["data"], dtype=numpy_dtype(name)), array.reshape(-1))
    assert_same(codec.decode_v2_request(body).inputs[0].numpy(), array)


@pytest.mark.parametrize("name", ALL_DATATYPES)
def test_binary_request_layout(name: str) -> None:
    array = sample(name, (4,))
    request = InferRequest([Tensor.from_numpy("x", array, datatype=name)])
    body, header_length = codec.encode_v2_request(request, binary=True)
    header, rest = split(body, header_length)
    (entry,) = header["inputs"]
    assert "data" not in entry
    raw = serialize_byte_tensor(array).item() if name == "BYTES" else array.tobytes()
    assert entry["parameters"] == {"binary_data_size": len(raw)}
    assert rest == raw


@pytest.mark.parametrize("binary", [False, True, ["x_fp32", "x_bytes"]], ids=str)
def test_response_round_trip_every_datatype(binary: bool | list[str]) -> None:
    outputs = tensors(ALL_DATATYPES)
    response = InferResponse(
        "model", outputs, id="r-7", model_version="3", parameters={"k": "v", "n": 2**64 - 1}
    )
    body, header_length = codec.encode_v2_response(response, binary_outputs=binary)
    decoded = codec.decode_v2_response(body, header_length)
    assert decoded == response
    assert decoded.model_name == "model"
    assert decoded.model_version == "3"
    assert decoded.id == "r-7"
    assert decoded.parameters == {"k": "v", "n": 2**64 - 1}
    for got, sent in zip(decoded.outputs, outputs, strict=True):
        assert_same(got.numpy(), sent.numpy())


def test_binary_outputs_selects_by_name() -> None:
    outputs = [Tensor.from_numpy(n, sample("INT32", (2,), i)) for i, n in enumerate("abc")]
    body, header_length = codec.encode_v2_response(InferResponse("m", outputs), ["b"])
    header, rest = split(body, header_length)
    binary = [o["name"] for o in header["outputs"] if "data" not in o]
    assert binary == ["b"]
    assert rest == outputs[1].numpy().tobytes()


def test_binary_outputs_rejects_non_iterables() -> None:
    response = InferResponse("m", [Tensor.from_numpy("a", [1])])
    with pytest.raises(TypeError, match="binary_outputs"):
        codec.encode_v2_response(response, 3)  # type: ignore[arg-type]


def test_non_utf8_bytes_fall_back_to_binary() -> None:
    array = np.array([b"ok", b"\xff\xfe"], dtype=object)
    body, header_length = codec.encode_v2_response(
        InferResponse("m", [Tensor.from_numpy("s", array)]), binary_outputs=False
    )
    assert header_length is not None
    header, rest = split(body, header_length)
    assert "data" not in header["outputs"][0]
    assert rest == serialize_byte_tensor(array).item()
    assert_same(codec.decode_v2_response(body, header_length).outputs[0].numpy(), array)


def test_decoded_binary_tensors_are_views_of_the_body() -> None:
    array = np.arange(1024, dtype=np.float32)
    body, header_length = codec.encode_v2_request(
        InferRequest([Tensor.from_numpy("x", array)]), binary=True
    )
    decoded = codec.decode_v2_request(body, header_length).inputs[0].numpy()
    assert_same(decoded, array)
    assert np.shares_memory(decoded, np.frombuffer(body, dtype=np.uint8))


def test_json_data_may_come_before_shape_and_datatype() -> None:
    body = b'{"inputs":[{"data":[[1,2],[3,4]],"name":"x","shape":[2,2],"datatype":"INT16"}]}'
    decoded = codec.decode_v2_request(body).inputs[0]
    assert_same(decoded.numpy(), np.array([[1, 2], [3, 4]], dtype=np.int16))


def test_json_nested_and_flat_data_are_equal() -> None:
    nested = b'{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP64","data":[[1,2,3],[4,5,6]]}]}'
    flat = b'{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,6]}]}'
    assert codec.decode_v2_request(nested) == codec.decode_v2_request(flat)
    expected = np.arange(1, 7, dtype=np.float64).reshape(2, 3)
    assert_same(codec.decode_v2_request(flat).inputs[0].numpy(), expected)


def nearest_float32(text: str) -> np.float32:
    """The float32 nearest to the exact decimal ``text`` (ties to even), computed exactly."""
    exact = Fraction(text)
    if exact == 0:
        return np.float32(float(text))  # keeps the sign of -0.0, which Fraction drops
    guess = np.float32(float(exact))
    with np.errstate(over="ignore"):
        around = [np.nextafter(guess, np.float32(d)) for d in (-np.inf, np.inf)]
    candidates = [c for c in [around[0], guess, around[1]] if np.isfinite(c)]
    distance = [abs(Fraction(float(c)) - exact) for c in candidates]
    best = min(distance)
    ties = [c for c, d in zip(candidates, distance, strict=True) if d == best]
    return min(ties, key=lambda c: int(np.array(c).view(np.uint32)) & 1)


def test_json_fp32_parses_to_the_nearest_float32() -> None:
    halfway = Fraction(1) + Fraction(1, 2**24)  # between 1.0 and the next float32
    assert str(halfway.numerator * 10**24 // halfway.denominator) == "1000000059604644775390625"
    texts = [
        "0.1",
        "1e-45",
        "3.4028235e38",
        "16777217",
        "-0.0",
        # Just above halfway: float64 rounds it to exactly halfway, and rounding that to float32
        # goes to even (1.0). Parsed straight to float32 it must round up instead.
        "1.000000059604644775390626",
    ]
    expected = np.array([nearest_float32(t) for t in texts], dtype=np.float32)
    assert expected[-1] == np.nextafter(np.float32(1), np.float32(2))
    assert np.float32(float(texts[-1])) == np.float32(1)  # the double rounding it must avoid
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [len(texts)], "datatype": "FP32", "data": [0]}]}
    ).replace("[0]", "[" + ",".join(texts) + "]")
    assert_same(codec.decode_v2_request(body.encode()).inputs[0].numpy(), expected)


def test_unknown_fields_are_ignored() -> None:
    body = (
        b'{"extra":{"deep":[1,{"a":null}]},"inputs":[{"name":"x","shape":[1],"datatype":"BOOL",'
        b'"data":[true],"extra":"y"}],"outputs":[{"name":"o","extra":1}]}'
    )
    request = codec.decode_v2_request(body)
    assert_same(request.inputs[0].numpy(), np.array([True]))
    assert [o.name for o in request.outputs] == ["o"]


def test_response_without_header_length_is_plain_json() -> None:
    outputs = tensors(["FP32", "INT64", "BOOL"])
    body, header_length = codec.encode_v2_response(InferResponse("m", outputs))
    assert header_length is None
    header, _ = split(body, None)
    assert header["model_name"] == "m"
    for entry, tensor in zip(header["outputs"], outputs, strict=True):
        assert entry["shape"] == list(tensor.shape)
        # FP32 is written shortest-round-trip for float32, so compare after parsing as float32.
        assert_same(np.array(entry["data"], dtype=tensor.numpy().dtype), tensor.numpy().reshape(-1))


@pytest.mark.parametrize("name", ["FP16", "FP32", "FP64"])
def test_longest_float_texts_in_json(name: str) -> None:
    """Values whose shortest text is the longest of their type (plain decimal with a sign and
    every digit), many in a row: the writer sizes its buffer for them once."""
    largest = -65504.0 if name == "FP16" else -1e12
    array = np.array([largest, -1.2345679e-6, -1.0728836e-6] * 100, dtype=numpy_dtype(name))
    response = InferResponse("m", [Tensor.from_numpy("y", array)])
    if name == "FP16":  # V2 JSON has no FP16; V1 writes it as numbers
        data = json.loads(codec.encode_v1_response(response))["predictions"]
    else:
        body, _ = codec.encode_v2_response(response, binary_outputs=False)
        data = json.loads(body)["outputs"][0]["data"]
    assert_same(np.array(data, dtype=array.dtype), array)


@pytest.mark.parametrize("name", ["FP32", "FP64"])
def test_nan_and_infinity_in_json(name: str) -> None:
    array = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0], dtype=numpy_dtype(name))
    body, header_length = codec.encode_v2_response(
        InferResponse("m", [Tensor.from_numpy("y", array)])
    )
    assert header_length is None
    # Python's json module reads the tokens tensorgate writes.
    data = json.loads(body)["outputs"][0]["data"]
    assert math.isnan(data[0])
    assert data[1:] == [math.inf, -math.inf, 1.5, -0.0]
    # So does the reference client.
    assert_same(triton_result(body, None).as_numpy("y"), array)
    # And tensorgate itself.
    assert_same(codec.decode_v2_response(body).outputs[0].numpy(), array)


def test_request_with_nan_from_python_json() -> None:
    text = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [3], "datatype": "FP64", "data": [math.nan, math.inf, -1.0]}
            ]
        }
    )
    assert "NaN" in text
    got = codec.decode_v2_request(text.encode()).inputs[0].numpy()
    assert_same(got, np.array([math.nan, math.inf, -1.0]))


def test_json_string_escapes() -> None:
    elements = [
        'a"b',
        "back\\slash",
        "nl\ncr\rtab\t",
        "\x00\x01\x1f",
        "\u00e9\u2603\U0001f600",
        "/",
    ]
    array = np.array([e.encode() for e in elements], dtype=object)
    response = InferResponse('m"odel', [Tensor.from_numpy("s\n", array)], id="\u2603")
    body, header_length = codec.encode_v2_response(response, binary_outputs=False)
    assert header_length is None
    header = json.loads(body)
    assert header["model_name"] == 'm"odel'
    assert header["id"] == "\u2603"
    assert header["outputs"][0]["name"] == "s\n"
    assert header["outputs"][0]["data"] == elements
    # Escapes written by Python (\uXXXX, surrogate pairs) are read back.
    request = json.dumps(
        {"inputs": [{"name": "s", "shape": [6], "datatype": "BYTES", "data": elements}]}
    )
    assert "\\ud83d" in request
    assert_same(codec.decode_v2_request(request.encode()).inputs[0].numpy(), array)


def test_null_optional_fields() -> None:
    body = (
        b'{"id":null,"parameters":null,"inputs":[{"name":"x","shape":[1],"datatype":"INT8",'
        b'"parameters":null,"data":[1]}],"outputs":null}'
    )
    request = codec.decode_v2_request(body)
    assert request.id is None
    assert request.parameters == {}
    assert request.outputs == []


# ---------------------------------------------------------------------------------------------
# interop: tritonclient.http builds the request, tensorgate decodes it


# FP16/BF16 have no JSON form: see test_tritonclient_json_fp16_is_refused.
@pytest.mark.parametrize(
    ("name", "binary"),
    [(n, True) for n in ALL_DATATYPES] + [(n, False) for n in JSON_DATATYPES],
    ids=lambda v: {True: "binary", False: "json"}.get(v, v) if isinstance(v, bool) else v,
)
def test_decode_tritonclient_request(name: str, binary: bool) -> None:
    array = sample(name, (3, 4)) if binary else json_sample(name, (3, 4))
    body, json_size = triton_body([triton_input("INPUT0", array, name, binary)])
    assert (json_size is None) is not binary
    request = codec.decode_v2_request(body, json_size)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("INPUT0", name, (3, 4))
    assert tensor.parameters == {}
    assert_same(tensor.numpy(), array)


def test_decode_tritonclient_mixed_request() -> None:
    arrays = {n: sample(n, (2, 2), i) for i, n in enumerate(ALL_DATATYPES)}
    arrays["BYTES"] = text_sample((2, 2))
    # Alternate binary and JSON so the binary section skips tensors that are not in it.
    inputs = [
        triton_input(f"in_{n}", a, n, binary=(i % 2 == 0) or n in HALF)
        for i, (n, a) in enumerate(arrays.items())
    ]
    outputs = [
        httpclient.InferRequestedOutput("out_bin", binary_data=True),
        httpclient.InferRequestedOutput("out_json", binary_data=False),
        httpclient.InferRequestedOutput("out_class", binary_data=False, class_count=3),
    ]
    body, json_size = triton_body(
        inputs, outputs, request_id="abc-123", custom_parameters={"user": "x", "n": 5}
    )
    request = codec.decode_v2_request(body, json_size)
    assert request.id == "abc-123"
    assert request.parameters == {"user": "x", "n": 5}
    assert [t.name for t in request.inputs] == [f"in_{n}" for n in arrays]
    for tensor, array in zip(request.inputs, arrays.values(), strict=True):
        assert_same(tensor.numpy(), array)
    assert [o.name for o in request.outputs] == ["out_bin", "out_json", "out_class"]
    assert request.outputs[0].parameters == {"binary_data": True}
    assert request.outputs[2].parameters == {"binary_data": False, "classification": 3}
    assert request.wants_binary("out_bin")
    assert not request.wants_binary("out_json")
    # Not requested and no binary_data_output: JSON.
    assert not request.wants_binary("other")


def test_tritonclient_without_outputs_wants_every_output_binary() -> None:
    array = sample("INT32")
    body, json_size = triton_body([triton_input("x", array, "INT32", binary=False)])
    request = codec.decode_v2_request(body, json_size)
    assert request.parameters == {"binary_data_output": True}
    assert request.outputs == []
    assert request.wants_binary("anything")


def test_tritonclient_sequence_priority_timeout_parameters() -> None:
    body, json_size = triton_body(
        [triton_input("x", sample("FP32"), "FP32", binary=True)],
        outputs=[httpclient.InferRequestedOutput("y")],
        sequence_id=42,
        priority=2,
        timeout=1000,
    )
    request = codec.decode_v2_request(body, json_size)
    assert request.parameters == {
        "sequence_id": 42,
        "sequence_start": True,
        "sequence_end": False,
        "priority": 2,
        "timeout": 1000,
    }


def test_tritonclient_empty_tensors() -> None:
    inputs = [
        triton_input("e_bytes", np.zeros((0,), dtype=object), "BYTES", binary=True),
        triton_input("e_fp32", np.zeros((2, 0), dtype=np.float32), "FP32", binary=True),
        triton_input("x", np.arange(3, dtype=np.int8), "INT8", binary=True),
    ]
    body, json_size = triton_body(inputs)
    request = codec.decode_v2_request(body, json_size)
    assert [t.shape for t in request.inputs] == [(0,), (2, 0), (3,)]
    assert_same(request.inputs[2].numpy(), np.arange(3, dtype=np.int8))


def test_tritonclient_json_fp16_is_refused() -> None:
    array = np.array([1.0, 2.5], dtype=np.float16)
    body, json_size = triton_body([triton_input("half", array, "FP16", binary=False)])
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v2_request(body, json_size)
    assert_protocol_error(excinfo.value, 400, "FP16", "JSON", "binary")
    # Names the input, by name or by position.
    assert re.search(r"'half'|inputs\[0\]", excinfo.value.message)


# ---------------------------------------------------------------------------------------------
# interop: tensorgate encodes the response, tritonclient.http reads it


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", ALL_DATATYPES)
def test_tritonclient_reads_response(name: str, binary: bool) -> None:
    array = sample(name, (2, 3)) if binary else json_sample(name, (2, 3))
    response = InferResponse("m", [Tensor.from_numpy("OUTPUT0", array, datatype=name)], id="i")
    body, header_length = codec.encode_v2_response(response, binary_outputs=binary)
    # Half floats are always binary; everything else follows the flag.
    assert (header_length is None) is (not binary and name not in HALF)
    result = triton_result(body, header_length)
    assert result.get_response()["id"] == "i"
    assert result.get_response()["model_name"] == "m"
    output = result.get_output("OUTPUT0")
    assert (output["datatype"], output["shape"]) == (name, [2, 3])
    assert_triton_output(result.as_numpy("OUTPUT0"), array)


def test_tritonclient_reads_mixed_response() -> None:
    arrays = {n: sample(n, (3,), i) for i, n in enumerate(ALL_DATATYPES)}
    arrays["BYTES"] = text_sample((3,))
    outputs = [Tensor.from_numpy(f"o_{n}", a, datatype=n) for n, a in arrays.items()]
    binary = [f"o_{n}" for i, n in enumerate(arrays) if i % 3 == 0]
    body, header_length = codec.encode_v2_response(InferResponse("m", outputs), binary)
    assert header_length is not None
    result = triton_result(body, header_length)
    for n, array in arrays.items():
        assert_triton_output(result.as_numpy(f"o_{n}"), array)


def test_tritonclient_reads_response_parameters() -> None:
    response = InferResponse(
        "m",
        [Tensor("y", "INT32", [1], [7], parameters={"tp": "v"})],
        model_version="1",
        parameters={"b": True, "i": -1, "f": 0.5, "s": "x"},
    )
    for binary in (False, True):
        body, header_length = codec.encode_v2_response(response, binary_outputs=binary)
        result = triton_result(body, header_length).get_response()
        assert result["parameters"] == {"b": True, "i": -1, "f": 0.5, "s": "x"}
        assert result["model_version"] == "1"
        params = result["outputs"][0]["parameters"]
        assert params["tp"] == "v"
        assert ("binary_data_size" in params) is binary


def test_request_parameters_round_trip_through_python_json() -> None:
    parameters: dict[str, bool | int | float | str] = {
        "b": False,
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 1e-300,
        "s": "\u2603",
    }
    request = InferRequest([Tensor.from_numpy("x", [1])], parameters=parameters)
    body, header_length = codec.encode_v2_request(request)
    assert json.loads(body)["parameters"] == parameters
    assert codec.decode_v2_request(body, header_length).parameters == parameters
