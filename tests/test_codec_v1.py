"""V1 REST codec (``instances`` / ``inputs`` / ``predictions``) and V1 <-> V2 conversion.

Expected tensors are derived from the same Python values with numpy (``np.array(instances)``),
and encoded bodies are read back with orjson.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import assert_protocol_error, assert_same, sample
from tensorgate import InferRequest, InferResponse, Limits, ProtocolError, Tensor, codec


def v1(body: object) -> bytes:
    return orjson.dumps(body)


def decode(body: object) -> InferRequest:
    return codec.decode_v1_request(v1(body))


def decode_error(body: bytes, status: int = 400, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_request(body, **kwargs)
    assert_protocol_error(excinfo.value, status)
    return excinfo.value


def utf8_array(values: list[Any]) -> np.ndarray[Any, Any]:
    """Nested str values as an object array of their UTF-8 bytes."""
    strings = np.array(values, dtype=object)
    return np.vectorize(lambda s: s.encode(), otypes=[object])(strings)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# decode: row format


@pytest.mark.parametrize(
    "instances",
    [
        [1, 2, 3],
        [[1, 2], [3, 4], [5, 6]],
        [[[1], [2]], [[3], [4]]],
        [-(2**63), 2**63 - 1, 0],
        [1.5, 2.25],
        [[1, 2.5], [3, 4]],
        [1e300, -1e-300, 0.1],
        [True, False, True],
        [[True], [False]],
    ],
    ids=lambda v: json.dumps(v)[:40],
)
def test_instances_of_numbers_and_booleans(instances: list[Any]) -> None:
    request = decode({"instances": instances})
    (tensor,) = request.inputs
    # The datatype and shape numpy infers from the same values (int64, float64, bool).
    expected = np.array(instances)
    assert expected.dtype in (np.int64, np.float64, np.bool_)
    assert tensor.name == "input-0"
    assert tensor.shape == expected.shape
    assert_same(tensor.numpy(), expected)


def test_instances_of_strings() -> None:
    instances = [["a", "h\u00e9llo"], ["", "\u2603"]]
    (tensor,) = decode({"instances": instances}).inputs
    assert tensor.datatype == "BYTES"
    assert_same(tensor.numpy(), utf8_array(instances))


def test_instances_of_b64() -> None:
    raw = [b"\x00\xff\xfe", b"", b"plain", bytes(range(256))]
    (tensor,) = decode({"instances": [{"b64": base64.b64encode(r).decode()} for r in raw]}).inputs
    assert tensor.datatype == "BYTES"
    assert tensor.shape == (4,)
    assert_same(tensor.numpy(), np.array(raw, dtype=object))


def test_b64_padding_is_optional_and_mixes_with_strings() -> None:
    padded = base64.b64encode(b"ab").decode()
    assert padded.endswith("=")
    (tensor,) = decode({"instances": [[{"b64": padded.rstrip("=")}, "text"]]}).inputs
    assert_same(tensor.numpy(), np.array([[b"ab", b"text"]], dtype=object))


def test_named_instances() -> None:
    instances = [
        {"image": [[1, 2], [3, 4]], "scale": 0.5, "label": "cat"},
        {"image": [[5, 6], [7, 8]], "scale": 2, "label": "dog"},
        {"image": [[9, 0], [1, 2]], "scale": 1, "label": "\u2603"},
    ]
    request = decode({"instances": instances})
    assert [t.name for t in request.inputs] == ["image", "scale", "label"]
    image, scale, label = request.inputs
    assert_same(image.numpy(), np.array([i["image"] for i in instances]))
    assert_same(scale.numpy(), np.array([i["scale"] for i in instances], dtype=np.float64))
    assert_same(label.numpy(), utf8_array([i["label"] for i in instances]))


def test_named_instances_keys_in_any_order() -> None:
    request = decode({"instances": [{"a": 1, "b": [1.5]}, {"b": [2.5], "a": 2}]})
    assert [t.name for t in request.inputs] == ["a", "b"]
    assert_same(request.inputs[0].numpy(), np.array([1, 2]))
    assert_same(request.inputs[1].numpy(), np.array([[1.5], [2.5]]))


def test_integer_beyond_int64_becomes_fp64() -> None:
    (tensor,) = codec.decode_v1_request(json.dumps({"instances": [1, 2**64]}).encode()).inputs
    assert tensor.datatype == "FP64"
    assert_same(tensor.numpy(), np.array([1.0, float(2**64)]))


def test_nan_and_infinity_instances() -> None:
    body = b'{"instances": [NaN, Infinity, -Infinity, 1]}'
    (tensor,) = codec.decode_v1_request(body).inputs
    assert_same(tensor.numpy(), np.array([math.nan, math.inf, -math.inf, 1.0]))


def test_other_top_level_keys_are_ignored() -> None:
    request = decode({"signature_name": "serving_default", "instances": [[1]], "meta": {"a": [1]}})
    assert_same(request.inputs[0].numpy(), np.array([[1]]))


# ---------------------------------------------------------------------------------------------
# decode: columnar format


def test_columnar_named_inputs() -> None:
    inputs = {"a": [[1, 2, 3]], "b": "text", "c": [0.5, 1.5], "d": True}
    request = decode({"inputs": inputs})
    assert [t.name for t in request.inputs] == list(inputs)
    a, b, c, d = request.inputs
    # Columnar values keep their own shape: no batch dimension is added.
    assert_same(a.numpy(), np.array(inputs["a"]))
    assert_same(b.numpy(), np.array(b"text", dtype=object))
    assert b.shape == ()
    assert_same(c.numpy(), np.array(inputs["c"]))
    assert_same(d.numpy(), np.array(True))


def test_columnar_unnamed_input() -> None:
    values = [[1.0, 2.0], [3.0, 4.0]]
    (tensor,) = decode({"inputs": values}).inputs
    assert tensor.name == "input-0"
    assert_same(tensor.numpy(), np.array(values))
    (scalar,) = decode({"inputs": 7}).inputs
    assert_same(scalar.numpy(), np.array(7))


# ---------------------------------------------------------------------------------------------
# encode


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([[0.1, -2.5], [1e300, -0.0]]),
        np.array([True, False]),
        np.array(3.5),
        np.arange(24, dtype=np.int32).reshape(2, 3, 4),
        np.zeros((2, 0), dtype=np.int64),
        np.array([2**64 - 1, 0], dtype=np.uint64),
    ],
    ids=["int64", "fp64", "bool", "scalar", "rank3", "empty", "uint64"],
)
def test_encode_single_output(array: np.ndarray[Any, Any]) -> None:
    response = InferResponse("m", [Tensor.from_numpy("out", array)], id="dropped")
    body = codec.encode_v1_response(response)
    assert orjson.loads(body) == {"predictions": array.tolist()}


def test_encode_fp32_is_shortest_float32() -> None:
    array = np.array([0.1, 1 / 3, 16777216.0, -1e-40], dtype=np.float32)
    body = codec.encode_v1_response(InferResponse("m", [Tensor.from_numpy("y", array)]))
    predictions = orjson.loads(body)["predictions"]
    # Each number parses back to the same float32 ...
    assert_same(np.array(predictions, dtype=np.float32), array)
    # ... and is as short as numpy's shortest repr of that float32 (not a widened float64).
    tokens = body.removeprefix(b'{"predictions":[').removesuffix(b"]}").split(b",")
    assert len(tokens) == array.size
    for token, value in zip(tokens, array, strict=True):
        assert len(token) <= len(str(value)), (token, str(value))


def test_encode_bytes_as_strings_or_b64() -> None:
    elements = [b"text", "h\u00e9".encode(), b"\xff\x00", b""]
    response = InferResponse("m", [Tensor.from_numpy("s", np.array(elements, dtype=object))])
    predictions = orjson.loads(codec.encode_v1_response(response))["predictions"]
    assert predictions == ["text", "h\u00e9", {"b64": base64.b64encode(b"\xff\x00").decode()}, ""]


def test_encode_multiple_outputs_as_rows() -> None:
    labels = np.array([3, 1, 2])
    scores = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])
    response = InferResponse(
        "m", [Tensor.from_numpy("label", labels), Tensor.from_numpy("scores", scores)]
    )
    predictions = orjson.loads(codec.encode_v1_response(response))["predictions"]
    assert predictions == [
        {"label": label, "scores": row}
        for label, row in zip(labels.tolist(), scores.tolist(), strict=True)
    ]


def test_encode_outputs_without_a_shared_batch_dimension() -> None:
    response = InferResponse(
        "m", [Tensor.from_numpy("a", np.arange(2)), Tensor.from_numpy("b", np.arange(3))]
    )
    with pytest.raises(ProtocolError) as excinfo:
        codec.encode_v1_response(response)
    assert_protocol_error_any_status(excinfo.value, "dimension 0", "'a'")


def assert_protocol_error_any_status(error: ProtocolError, *fragments: str) -> None:
    """Encoding errors are the server's fault or a missing feature, not a client 400."""
    assert error.status_code in (500, 501)
    for fragment in fragments:
        assert fragment in error.message, (fragment, error.message)


@pytest.mark.parametrize(
    "inputs",
    [
        [Tensor.from_numpy("input-0", np.arange(6).reshape(3, 2))],
        [Tensor.from_numpy("input-0", np.array([0.5, -1.25]))],
        [Tensor.from_numpy("input-0", np.array([b"text", b"\x80\x81"], dtype=object))],
        [Tensor.from_numpy("a", np.arange(2)), Tensor.from_numpy("b", np.ones((2, 3)))],
        [Tensor.from_numpy("a", np.arange(1)), Tensor.from_numpy("b", np.arange(2))],
        [Tensor.from_numpy("s", np.array(0.5))],
        [Tensor.from_numpy("input-0", np.array([[True, False]]))],
    ],
    ids=["rows", "fp64", "bytes", "named-rows", "columnar", "scalar", "bool"],
)
def test_encode_request_round_trips(inputs: list[Tensor]) -> None:
    request = InferRequest(inputs)
    body = codec.encode_v1_request(request)
    assert set(orjson.loads(body)) <= {"instances", "inputs"}
    assert codec.decode_v1_request(body).inputs == inputs


def test_encode_request_forms() -> None:
    rows = np.arange(4).reshape(2, 2)
    one = codec.encode_v1_request(InferRequest([Tensor.from_numpy("x", rows)]))
    assert orjson.loads(one) == {"instances": rows.tolist()}
    a, b = np.arange(2), np.array([[0.5], [1.5]])
    named = InferRequest([Tensor.from_numpy("a", a), Tensor.from_numpy("b", b)])
    assert orjson.loads(codec.encode_v1_request(named)) == {
        "instances": [{"a": x, "b": y} for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    }


def test_decode_v1_response() -> None:
    predictions = [[0.5, 0.25], [0.125, 1.0]]
    response = codec.decode_v1_response(v1({"predictions": predictions}), "my-model")
    assert response.model_name == "my-model"
    (output,) = response.outputs
    assert output.name == "output-0"
    assert_same(output.numpy(), np.array(predictions))
    named = codec.decode_v1_response(v1({"predictions": [{"a": 1, "b": "x"}]}), "m")
    assert [o.name for o in named.outputs] == ["a", "b"]
    assert_same(named.outputs[1].numpy(), np.array([b"x"], dtype=object))
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_response(b'{"outputs": []}', "m")
    assert_protocol_error(excinfo.value, 400, "predictions")


# ---------------------------------------------------------------------------------------------
# V1 <-> V2


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [[1, 2, 3], [4, 5, 6]]},
        {"instances": [[0.5], [1.5]]},
        {"instances": ["a", "b\u00e9"]},
        {"instances": [{"b64": base64.b64encode(b"\xff\x00").decode()}]},
        {"instances": [{"x": [1, 2], "y": "s"}, {"x": [3, 4], "y": "t"}]},
        {"inputs": {"x": [[True, False]], "y": 2.5}},
    ],
    ids=["ints", "floats", "strings", "b64", "named", "columnar"],
)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v1_request_to_v2_and_back(body: dict[str, Any], binary: bool) -> None:
    v1_request = decode(body)
    v2_body, header_length = codec.encode_v2_request(v1_request, binary=binary)
    v2_request = codec.decode_v2_request(v2_body, header_length)
    assert [t.name for t in v2_request.inputs] == [t.name for t in v1_request.inputs]
    for got, sent in zip(v2_request.inputs, v1_request.inputs, strict=True):
        assert_same(got.numpy(), sent.numpy())
    # And back to V1: the same instances.
    assert decode(orjson.loads(codec.encode_v1_request(v2_request))) == v1_request


@pytest.mark.parametrize("name", ["INT64", "FP64", "BOOL", "INT8", "UINT32", "UINT64"])
def test_v2_response_to_v1_predictions(name: str) -> None:
    array = sample(name, (3, 2))
    v2_body, header_length = codec.encode_v2_response(
        InferResponse("m", [Tensor.from_numpy("y", array)]), binary_outputs=True
    )
    v2_response = codec.decode_v2_response(v2_body, header_length)
    predictions = orjson.loads(codec.encode_v1_response(v2_response))["predictions"]
    assert predictions == array.tolist()


@pytest.mark.parametrize("name", ["FP32", "FP16", "BF16"])
def test_v2_float_response_to_v1_predictions(name: str) -> None:
    array = sample(name, (3, 2))
    response = InferResponse("m", [Tensor.from_numpy("y", array)])
    predictions = orjson.loads(codec.encode_v1_response(response))["predictions"]
    # Shortest round trip in the tensor's own width: equal once read back at that width.
    assert_same(np.array(predictions).astype(array.dtype), array)


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("instances", [1, "x", {"a": 1}, None, True])
def test_instances_must_be_a_list(instances: object) -> None:
    error = decode_error(v1({"instances": instances}))
    assert error.message == 'Expected "instances" to be a list'


@pytest.mark.parametrize(
    "body", [b"not json", b'{"instances": [1, 2', b"", b'{"instances": [1]} trailing', b"[1]"]
)
def test_unrecognized_request_format(body: bytes) -> None:
    error = decode_error(body)
    assert error.message.startswith("Unrecognized request format")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"instances": []}, "empty"),
        ({"data": [1]}, '"instances" or "inputs"'),
        ({"instances": [[1, 2], [3]]}, "instance 1"),
        ({"instances": [1, [2]]}, "instance 1"),
        ({"instances": [1, "a"]}, "mixes"),
        ({"instances": [True, 1.5]}, "mixes"),
        ({"instances": [None]}, "null"),
        ({"instances": [[{"x": 1}]]}, "b64"),
        ({"instances": [{"b64": "!!!"}]}, "base64"),
        ({"instances": [{"a": 1}, {"b": 1}]}, "'b'"),
        ({"instances": [{"a": 1, "b": 2}, {"a": 1}]}, "'b'"),
        ({"instances": [{"a": 1}, 2]}, "instance 1"),
        ({"instances": [{}]}, "empty"),
        ({"inputs": {}}, "empty"),
        ({"inputs": {"a": [[1], [1, 2]]}}, "'a'"),
    ],
)
def test_bad_v1_requests(body: object, fragment: str) -> None:
    error = decode_error(v1(body))
    assert fragment in error.message, error.message


def test_instances_and_inputs_together() -> None:
    error = decode_error(b'{"instances": [1], "inputs": [1]}')
    assert "more than once" in error.message


def test_v1_limits() -> None:
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_request(v1({"instances": [1]}), limits=Limits(max_body_bytes=8))
    assert_protocol_error(excinfo.value, 413, "limit of 8")
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_request(
            v1({"instances": [[1, 2], [3, 4]]}), limits=Limits(max_tensor_elements=3)
        )
    assert_protocol_error(excinfo.value, 400, "limit of 3")
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_request(v1({"instances": ["abc"]}), limits=Limits(max_bytes_element_len=2))
    assert_protocol_error(excinfo.value, 400, "limit of 2")
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_request(
            v1({"inputs": {"a": 1, "b": 2, "c": 3}}), limits=Limits(max_tensors=2)
        )
    assert_protocol_error(excinfo.value, 400, "limit")
    depth = Limits(max_json_depth=5)
    # Root object, the instances list, then three lists: five levels, accepted.
    assert decode_ok(v1({"instances": [[[[1]]]]}), depth).inputs[0].shape == (1, 1, 1, 1)
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_v1_request(v1({"instances": [[[[[1]]]]]}), limits=depth)
    assert_protocol_error(excinfo.value, 400, "limit of 5")


def decode_ok(body: bytes, limits: Limits) -> InferRequest:
    return codec.decode_v1_request(body, limits=limits)
