"""A corpus of malformed and hostile payloads for every decoder.

Every case must raise ``tensorgate.ProtocolError`` (never another exception, a crash or a hang)
with the right HTTP status and a message that names the offending item or the broken rule.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import oip
import pytest
from conftest import assert_protocol_error
from tensorgate import InferRequest, Limits, ProtocolError, Tensor, codec

DEEP = 100_000


def v2(*inputs: dict[str, Any], **top: Any) -> bytes:
    """A V2 request body (Python's json, as a client would send it)."""
    return json.dumps({"inputs": list(inputs), **top}).encode()


def tensor(
    name: Any = "x", datatype: str = "INT32", shape: Any = (2,), **fields: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(shape)}
    entry.update(fields)
    return entry


def binary(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    """A binary-extension body and its header length."""
    text = json.dumps(header).encode()
    return text + b"".join(chunks), len(text)


def grpc(*inputs: tuple[str, str, list[int]], raw: list[bytes] | None = None) -> bytes:
    """A serialized ModelInferRequest from the private OIP stubs."""
    message = oip.infer_request(model_name="m", raw_input_contents=raw or [])
    for name, datatype, shape in inputs:
        message.inputs.add(name=name, datatype=datatype, shape=shape)
    return bytes(message.SerializeToString())


def grpc_typed(datatype: str, shape: list[int], field_name: str, values: list[Any]) -> bytes:
    message = oip.infer_request()
    entry = message.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(entry.contents, field_name).extend(values)
    return bytes(message.SerializeToString())


def v1(body: object) -> bytes:
    return json.dumps(body).encode()


def _v2_request(body: bytes, header_length: int | None, limits: Limits | None) -> object:
    return codec.decode_v2_request(body, header_length, limits=limits)


def _v2_response(body: bytes, header_length: int | None, limits: Limits | None) -> object:
    return codec.decode_v2_response(body, header_length, limits=limits)


def _grpc_request(body: bytes, header_length: int | None, limits: Limits | None) -> object:
    assert header_length is None
    return codec.decode_grpc_request(body, limits=limits)


def _v1_request(body: bytes, header_length: int | None, limits: Limits | None) -> object:
    assert header_length is None
    return codec.decode_v1_request(body, limits=limits)


Decoder = Callable[[bytes, "int | None", "Limits | None"], object]


@dataclass(frozen=True)
class Case:
    id: str
    decode: Decoder
    body: bytes
    fragments: tuple[str | tuple[str, ...], ...]
    status: int = 400
    header_length: int | None = None
    limits: Limits | None = field(default=None)


def case(
    id: str,
    decode: Decoder,
    body: bytes | tuple[bytes, int],
    *fragments: str | tuple[str, ...],
    status: int = 400,
    limits: Limits | None = None,
) -> Any:
    header_length = None
    if isinstance(body, tuple):
        body, header_length = body
    return pytest.param(
        Case(id, decode, body, fragments, status, header_length, limits),
        id=f"{decode.__name__[1:]}-{id}",
    )


#: The input named ``x``, by name or by position: errors in JSON data read in place name the
#: tensor by its position only (see the report), the others by name.
X = ("'x'", "inputs[0]")
Y = ("'y'", "outputs[0]")

FP32_2 = np.array([1.0, 2.0], dtype="<f4").tobytes()
BYTES_ABC = b"\x03\x00\x00\x00abc"

CASES = [
    # ---- V2 request: JSON syntax and envelope
    case("truncated-json", _v2_request, b'{"inputs":[{"name":"x","shape":[1]', "invalid JSON"),
    case("empty-body", _v2_request, b"", "invalid JSON"),
    case("invalid-token", _v2_request, b'{"inputs":[tru]}', "inputs[0]", "object"),
    case("trailing-garbage", _v2_request, v2(tensor(data=[1, 2])) + b" x", "invalid JSON"),
    case("not-an-object", _v2_request, b"[1, 2]", "request", "object"),
    case("no-inputs", _v2_request, b'{"id": "a"}', "'inputs'"),
    case("inputs-not-a-list", _v2_request, b'{"inputs": 5}', "must be an array"),
    case("input-not-an-object", _v2_request, b'{"inputs": [5]}', "inputs[0]", "object"),
    case("id-not-a-string", _v2_request, v2(tensor(data=[1, 2]), id=5), "string"),
    case("name-not-a-string", _v2_request, v2(tensor(name=7, data=[1, 2])), "inputs[0]", "name"),
    case(
        "invalid-utf8",
        _v2_request,
        b'{"inputs":[{"name":"\xff\xfe","datatype":"INT32","shape":[1],"data":[1]}]}',
        "invalid JSON",
    ),
    case(
        "missing-name",
        _v2_request,
        v2({"datatype": "INT32", "shape": [1], "data": [1]}),
        "inputs[0]",
        "'name'",
    ),
    case(
        "missing-shape",
        _v2_request,
        v2({"name": "x", "datatype": "INT32", "data": [1]}),
        "'x'",
        "'shape'",
    ),
    case(
        "missing-datatype",
        _v2_request,
        v2({"name": "x", "shape": [1], "data": [1]}),
        "'x'",
        "'datatype'",
    ),
    case("missing-data", _v2_request, v2(tensor()), "'x'", "'data'", "binary_data_size"),
    case(
        "unknown-datatype",
        _v2_request,
        v2(tensor(datatype="FLOAT32", data=[1, 2])),
        "unknown datatype 'FLOAT32'",
    ),
    case(
        "lowercase-datatype",
        _v2_request,
        v2(tensor(datatype="int32", data=[1, 2])),
        "unknown datatype 'int32'",
    ),
    case(
        "duplicate-input",
        _v2_request,
        v2(tensor(data=[1, 2]), tensor(data=[3, 4])),
        "duplicate input name 'x'",
    ),
    case(
        "parameters-not-object",
        _v2_request,
        v2(tensor(data=[1, 2]), parameters=[1]),
        "parameters must be an object",
    ),
    case(
        "parameter-is-a-list",
        _v2_request,
        v2(tensor(data=[1, 2]), parameters={"p": [1]}),
        "parameter 'p'",
    ),
    case(
        "parameter-is-null-object",
        _v2_request,
        v2(tensor(data=[1, 2]), parameters={"p": {}}),
        "parameter 'p'",
    ),
    case(
        "output-without-name",
        _v2_request,
        v2(tensor(data=[1, 2]), outputs=[{"parameters": {}}]),
        "outputs[0]",
        "'name'",
    ),
    # ---- V2 request: shapes
    case("shape-not-a-list", _v2_request, v2(tensor(shape="2", data=[1, 2])), X, "shape", "array"),
    case("negative-dim", _v2_request, v2(tensor(shape=[-1], data=[1])), "shape", "-1"),
    case("fractional-dim", _v2_request, v2(tensor(shape=[1.5], data=[1])), "shape", "1.5"),
    case("string-dim", _v2_request, v2(tensor(shape=["2"], data=[1, 2])), "shape", "integer"),
    case("dim-beyond-u64", _v2_request, v2(tensor(shape=[2**64], data=[1])), "shape", str(2**64)),
    case(
        "overflowing-dims",
        _v2_request,
        v2(tensor(shape=[2**40, 2**40], data=[1])),
        "shape",
        "limit",
    ),
    case(
        "overflowing-dims-binary",
        _v2_request,
        binary(
            {"inputs": [tensor(shape=[2**40, 2**40], parameters={"binary_data_size": 4})]},
            b"\0" * 4,
        ),
        "'x'",
        "limit",
    ),
    case(
        "huge-dims-data-first",
        _v2_request,
        b'{"inputs":[{"data":[1],"name":"x","datatype":"INT8","shape":[4294967296,4294967296]}]}',
        "'x'",
        "limit",
    ),
    # ---- V2 request: JSON data
    case(
        "too-few-elements",
        _v2_request,
        v2(tensor(shape=[2, 2], data=[1, 2, 3])),
        X,
        "4 elements",
        "got 3",
    ),
    case("too-many-elements", _v2_request, v2(tensor(shape=[2], data=[1, 2, 3])), X, "2 elements"),
    case(
        "ragged-count", _v2_request, v2(tensor(shape=[2, 2], data=[[1, 2], [3]])), X, "4 elements"
    ),
    case("string-in-int-data", _v2_request, v2(tensor(data=[1, "2"])), X),
    case("float-in-int-data", _v2_request, v2(tensor(data=[1, 2.5])), X),
    case(
        "int8-out-of-range",
        _v2_request,
        v2(tensor(datatype="INT8", data=[1, 300])),
        X,
        "300",
        "INT8",
    ),
    case(
        "uint64-negative",
        _v2_request,
        v2(tensor(datatype="UINT64", data=[1, -1])),
        X,
        "-1",
        "UINT64",
    ),
    case("bool-as-number", _v2_request, v2(tensor(datatype="BOOL", data=[1, 0])), X),
    case("bytes-as-number", _v2_request, v2(tensor(datatype="BYTES", data=[1, 2])), X, "BYTES"),
    case("null-element", _v2_request, v2(tensor(datatype="FP32", data=[1.0, None])), X),
    case("object-element", _v2_request, v2(tensor(datatype="FP64", data=[1.0, {"a": 1}])), X),
    case("fp16-in-json", _v2_request, v2(tensor(datatype="FP16", data=[1.0, 2.0])), "FP16", "JSON"),
    case("bf16-in-json", _v2_request, v2(tensor(datatype="BF16", data=[1.0, 2.0])), "BF16", "JSON"),
    case(
        "deeply-nested-data",
        _v2_request,
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":' + b"[" * DEEP,
        "nested deeper",
    ),
    case(
        "deeply-nested-data-first",
        _v2_request,
        b'{"inputs":[{"name":"x","data":' + b"[" * DEEP,
        "invalid JSON",
    ),
    case("deeply-nested-unknown-key", _v2_request, b'{"extra":' + b"[" * DEEP, "invalid JSON"),
    case("deeply-nested-objects", _v2_request, b'{"a":' * DEEP, "invalid JSON"),
    # ---- V2 request: binary extension
    case(
        "binary-size-without-header-length",
        _v2_request,
        v2(tensor(shape=[2], datatype="FP32", parameters={"binary_data_size": 8})),
        "'x'",
        "Inference-Header-Content-Length",
    ),
    case(
        "binary-section-too-short",
        _v2_request,
        binary(
            {"inputs": [tensor(datatype="FP32", parameters={"binary_data_size": 8})]}, FP32_2[:6]
        ),
        "'x'",
        "binary_data_size 8",
        "6 bytes",
    ),
    case(
        "binary-section-too-long",
        _v2_request,
        binary(
            {"inputs": [tensor(datatype="FP32", parameters={"binary_data_size": 8})]}, FP32_2, b"??"
        ),
        "2 bytes",
        "binary_data_size",
    ),
    case(
        "binary-size-disagrees-with-shape",
        _v2_request,
        binary(
            {"inputs": [tensor(shape=[3], datatype="FP32", parameters={"binary_data_size": 8})]},
            FP32_2,
        ),
        "'x'",
        "12 bytes",
        "got 8",
    ),
    case(
        "binary-sizes-do-not-add-up",
        _v2_request,
        binary(
            {
                "inputs": [
                    tensor("a", "FP32", parameters={"binary_data_size": 8}),
                    tensor("b", "FP32", parameters={"binary_data_size": 8}),
                ]
            },
            FP32_2,
            FP32_2[:4],
        ),
        "'b'",
        "binary_data_size 8",
        "4 bytes",
    ),
    case(
        "binary-and-json-data",
        _v2_request,
        binary(
            {"inputs": [tensor(datatype="FP32", data=[1, 2], parameters={"binary_data_size": 8})]},
            FP32_2,
        ),
        "'x'",
        "both",
    ),
    case(
        "negative-binary-size",
        _v2_request,
        binary({"inputs": [tensor(datatype="FP32", parameters={"binary_data_size": -8})]}, FP32_2),
        "'x'",
        "binary_data_size",
        "non-negative",
    ),
    case(
        "string-binary-size",
        _v2_request,
        binary({"inputs": [tensor(datatype="FP32", parameters={"binary_data_size": "8"})]}, FP32_2),
        "'x'",
        "binary_data_size",
    ),
    case(
        "bytes-length-prefix-beyond-data",
        _v2_request,
        binary(
            {"inputs": [tensor(shape=[1], datatype="BYTES", parameters={"binary_data_size": 6})]},
            BYTES_ABC[:6],
        ),
        "'x'",
        "BYTES",
        "declares 3 bytes",
    ),
    case(
        "bytes-elements-short-of-shape",
        _v2_request,
        binary(
            {"inputs": [tensor(shape=[2], datatype="BYTES", parameters={"binary_data_size": 7})]},
            BYTES_ABC,
        ),
        "'x'",
        "BYTES",
        "element 1",
    ),
    case(
        "header-length-beyond-body",
        _v2_request,
        (v2(tensor(data=[1, 2])), 10_000),
        "Inference-Header-Content-Length",
        "10000",
    ),
    case("header-length-zero", _v2_request, (FP32_2, 0), "Inference-Header-Content-Length"),
    case("header-length-splits-json", _v2_request, (v2(tensor(data=[1, 2])), 10), "invalid JSON"),
    # ---- V2 response
    case("response-no-outputs", _v2_response, b'{"model_name":"m"}', "'outputs'"),
    case("response-not-object", _v2_response, b'"m"', "response", "object"),
    case(
        "response-duplicate-output",
        _v2_response,
        json.dumps(
            {"model_name": "m", "outputs": [tensor("y", data=[1, 2]), tensor("y", data=[1, 2])]}
        ).encode(),
        "duplicate output name 'y'",
    ),
    case(
        "response-shape-mismatch",
        _v2_response,
        json.dumps({"model_name": "m", "outputs": [tensor("y", shape=[3], data=[1, 2])]}).encode(),
        Y,
        "3 elements",
    ),
    case(
        "response-binary-too-short",
        _v2_response,
        binary(
            {
                "model_name": "m",
                "outputs": [tensor("y", "FP32", parameters={"binary_data_size": 8})],
            },
            b"\0",
        ),
        "'y'",
        "binary_data_size 8",
    ),
    case("response-truncated", _v2_response, b'{"model_name":"m","outputs":[{', "invalid JSON"),
    # ---- gRPC request
    case("garbage-message", _grpc_request, b"\xff\xff\xff\xff", "ModelInferRequest"),
    case(
        "truncated-message",
        _grpc_request,
        grpc(("x", "INT32", [1]), raw=[b"\0" * 4])[:-3],
        "ModelInferRequest",
    ),
    case(
        "grpc-negative-dim",
        _grpc_request,
        grpc(("x", "INT32", [-1]), raw=[b""]),
        "'x'",
        "negative",
        "-1",
    ),
    case(
        "grpc-overflowing-dims",
        _grpc_request,
        grpc(("x", "INT8", [2**40, 2**40]), raw=[b"\0"]),
        "'x'",
        "limit",
    ),
    case(
        "grpc-unknown-datatype",
        _grpc_request,
        grpc(("x", "FLOAT", [1]), raw=[b"\0"]),
        "'x'",
        "unknown datatype 'FLOAT'",
    ),
    case(
        "grpc-duplicate-input",
        _grpc_request,
        grpc(("x", "INT8", [1]), ("x", "INT8", [1]), raw=[b"\0", b"\0"]),
        "duplicate input name 'x'",
    ),
    case(
        "grpc-raw-size",
        _grpc_request,
        grpc(("x", "INT32", [2]), raw=[b"\0" * 5]),
        "'x'",
        "8 bytes",
        "got 5",
    ),
    case(
        "grpc-raw-count",
        _grpc_request,
        grpc(("a", "INT8", [1]), ("b", "INT8", [1]), raw=[b"\0"]),
        "raw_input_contents",
        "2 inputs",
    ),
    case(
        "grpc-bytes-prefix",
        _grpc_request,
        grpc(("x", "BYTES", [1]), raw=[b"\xff\xff\xff\xff"]),
        "'x'",
        "BYTES",
    ),
    case(
        "grpc-contents-count",
        _grpc_request,
        grpc_typed("INT64", [3], "int64_contents", [1, 2]),
        "'x'",
        "3 elements",
    ),
    case(
        "grpc-fp16-contents",
        _grpc_request,
        grpc_typed("FP16", [1], "fp32_contents", [1.0]),
        "'x'",
        "FP16",
    ),
    case(
        "grpc-wrong-contents",
        _grpc_request,
        grpc_typed("INT32", [1], "fp64_contents", [1.0]),
        "'x'",
        "fp64_contents",
    ),
    # ---- V1 request
    case(
        "v1-instances-not-list",
        _v1_request,
        v1({"instances": 1}),
        'Expected "instances" to be a list',
    ),
    case("v1-bad-json", _v1_request, b'{"instances": [1,', "Unrecognized request format"),
    case("v1-invalid-utf8", _v1_request, b'{"instances": ["\xff"]}', "Unrecognized request format"),
    case("v1-no-instances", _v1_request, v1({"predictions": [1]}), '"instances" or "inputs"'),
    case("v1-ragged", _v1_request, v1({"instances": [[1, 2], [3]]}), "instance 1", "same shape"),
    case("v1-mixed", _v1_request, v1({"instances": [1, "a"]}), "instance 1", "mixes"),
    case("v1-bad-b64", _v1_request, v1({"instances": [{"b64": "@@"}]}), "base64"),
    case("v1-deeply-nested", _v1_request, b'{"instances":' + b"[" * DEEP, "nested deeper"),
    case(
        "v1-deeply-nested-inputs",
        _v1_request,
        b'{"inputs":' + b"[" * DEEP + b"1" + b"]" * DEEP + b"}",
        "nested deeper",
    ),
    case(
        "v1-deeply-nested-unknown-key",
        _v1_request,
        b'{"x":' + b"[" * DEEP,
        "Unrecognized request format",
    ),
    # ---- Limits, each one on its own, on every decoder that applies it
    case(
        "body-over-limit",
        _v2_request,
        v2(tensor(data=[1, 2])),
        "limit of 16",
        status=413,
        limits=Limits(max_body_bytes=16),
    ),
    case(
        "response-body-over-limit",
        _v2_response,
        b'{"model_name":"m","outputs":[]}',
        "limit of 8",
        status=413,
        limits=Limits(max_body_bytes=8),
    ),
    case(
        "grpc-body-over-limit",
        _grpc_request,
        grpc(("x", "INT8", [1]), raw=[b"\0"]),
        "limit of 4",
        status=413,
        limits=Limits(max_body_bytes=4),
    ),
    case(
        "v1-body-over-limit",
        _v1_request,
        v1({"instances": [1]}),
        "limit of 4",
        status=413,
        limits=Limits(max_body_bytes=4),
    ),
    case(
        "max-tensor-elements",
        _v2_request,
        v2(tensor(shape=[2, 3], data=[1] * 6)),
        X,
        "limit of 5",
        limits=Limits(max_tensor_elements=5),
    ),
    case(
        "max-tensor-elements-binary",
        _v2_request,
        binary(
            {"inputs": [tensor(shape=[6], datatype="INT8", parameters={"binary_data_size": 6})]},
            b"\0" * 6,
        ),
        "'x'",
        "limit of 5",
        limits=Limits(max_tensor_elements=5),
    ),
    case(
        "grpc-max-tensor-elements",
        _grpc_request,
        grpc(("x", "INT8", [6]), raw=[b"\0" * 6]),
        "'x'",
        "limit of 5",
        limits=Limits(max_tensor_elements=5),
    ),
    case(
        "v1-max-tensor-elements",
        _v1_request,
        v1({"instances": [[1, 2, 3], [4, 5, 6]]}),
        "limit of 5",
        limits=Limits(max_tensor_elements=5),
    ),
    case(
        "max-rank",
        _v2_request,
        v2(tensor(shape=[1, 1, 1], data=[1])),
        X,
        "more dimensions than the limit of 2",
        limits=Limits(max_rank=2),
    ),
    case(
        "max-rank-data-first",
        _v2_request,
        b'{"inputs":[{"data":[1],"name":"x","datatype":"INT8","shape":[1,1,1]}]}',
        X,
        "more dimensions than the limit of 2",
        limits=Limits(max_rank=2),
    ),
    case(
        "grpc-max-rank",
        _grpc_request,
        grpc(("x", "INT8", [1, 1, 1]), raw=[b"\0"]),
        "'x'",
        "limit of 2",
        limits=Limits(max_rank=2),
    ),
    case(
        "v1-max-rank",
        _v1_request,
        v1({"instances": [[[1]]]}),
        "limit of 2",
        limits=Limits(max_rank=2),
    ),
    case(
        "max-tensors",
        _v2_request,
        v2(tensor("a", data=[1, 2]), tensor("b", data=[1, 2]), tensor("c", data=[1, 2])),
        "input",
        "limit",
        "2",
        limits=Limits(max_tensors=2),
    ),
    case(
        "response-max-tensors",
        _v2_response,
        json.dumps(
            {"model_name": "m", "outputs": [tensor(n, data=[1, 2]) for n in "abc"]}
        ).encode(),
        "output",
        "limit",
        limits=Limits(max_tensors=2),
    ),
    case(
        "grpc-max-tensors",
        _grpc_request,
        grpc(("a", "INT8", [1]), ("b", "INT8", [1]), ("c", "INT8", [1]), raw=[b"\0"] * 3),
        "input",
        "limit of 2",
        limits=Limits(max_tensors=2),
    ),
    case(
        "v1-max-tensors",
        _v1_request,
        v1({"inputs": {"a": 1, "b": 2, "c": 3}}),
        "limit",
        limits=Limits(max_tensors=2),
    ),
    case(
        "max-bytes-element-len",
        _v2_request,
        v2(tensor(shape=[2], datatype="BYTES", data=["ok", "toolong"])),
        X,
        "7 bytes",
        "limit of 2",
        limits=Limits(max_bytes_element_len=2),
    ),
    case(
        "max-bytes-element-len-binary",
        _v2_request,
        binary(
            {"inputs": [tensor(shape=[1], datatype="BYTES", parameters={"binary_data_size": 7})]},
            BYTES_ABC,
        ),
        "'x'",
        "3 bytes",
        "limit of 2",
        limits=Limits(max_bytes_element_len=2),
    ),
    case(
        "grpc-max-bytes-element-len",
        _grpc_request,
        grpc(("x", "BYTES", [1]), raw=[BYTES_ABC]),
        "'x'",
        "3 bytes",
        "limit of 2",
        limits=Limits(max_bytes_element_len=2),
    ),
    case(
        "v1-max-bytes-element-len",
        _v1_request,
        v1({"instances": ["abc"]}),
        "3 bytes",
        "limit of 2",
        limits=Limits(max_bytes_element_len=2),
    ),
    case(
        "max-json-depth",
        _v2_request,
        v2(tensor(shape=[1], data=[[[1]]])),
        X,
        "nested deeper",
        "limit of 2",
        limits=Limits(max_json_depth=2),
    ),
    case(
        "v1-max-json-depth",
        _v1_request,
        v1({"instances": [[[1]]]}),
        "nested deeper",
        "limit of 3",
        limits=Limits(max_json_depth=3),
    ),
]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_a_protocol_error(bad: Case) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        bad.decode(bad.body, bad.header_length, bad.limits)
    assert_protocol_error(excinfo.value, bad.status, *bad.fragments)


def test_corpus_is_large_and_covers_every_decoder() -> None:
    cases = [p.values[0] for p in CASES]
    assert len(cases) >= 25
    assert {c.decode for c in cases} == {_v2_request, _v2_response, _grpc_request, _v1_request}
    assert len({c.id for c in cases}) == len(cases)


def test_limits_default_accepts_what_the_small_limits_refuse() -> None:
    # The limit cases fail because of the limit, not because the payload is bad.
    for param in CASES:
        bad: Case = param.values[0]
        if bad.limits is not None:
            bad.decode(bad.body, bad.header_length, None)


@pytest.mark.parametrize(
    "decode",
    [
        lambda: codec.decode_v2_request(v2(tensor(shape=[2**40, 2**40], data=[]))),
        lambda: codec.decode_v2_request(v2(tensor(shape=[2**31, 2**31, 2**31], data=[]))),
        lambda: codec.decode_v2_request(
            *binary({"inputs": [tensor(shape=[2**28, 2**28], parameters={"binary_data_size": 0})]})
        ),
        lambda: codec.decode_grpc_request(grpc(("x", "FP64", [2**40, 2**40]))),
        lambda: codec.decode_v2_request(
            v2(tensor(shape=[2**28], data=[1])), limits=Limits(max_tensor_elements=2**28)
        ),
        lambda: Tensor("x", "FP64", [2**40, 2**40], b""),
    ],
    ids=["json", "json-rank3", "binary", "grpc", "claims-more-than-sent", "tensor"],
)
def test_huge_shapes_fail_fast_without_allocating(decode: Callable[[], object]) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ProtocolError) as excinfo:
        decode()
    elapsed = time.perf_counter() - start
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert excinfo.value.status_code == 400
    assert elapsed < 0.5, elapsed
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib} KiB"


def test_errors_leave_the_decoder_usable() -> None:
    good = InferRequest([Tensor.from_numpy("x", np.arange(3, dtype=np.int32))])
    body, header_length = codec.encode_v2_request(good, binary=True)
    for param in CASES:
        bad: Case = param.values[0]
        with pytest.raises(ProtocolError):
            bad.decode(bad.body, bad.header_length, bad.limits)
    assert codec.decode_v2_request(body, header_length) == good


@pytest.mark.parametrize(
    ("decode", "limits"),
    [
        (lambda lim: codec.decode_v2_request(v2(tensor(data=[1, 2])), limits=lim), None),
        (
            lambda lim: codec.decode_v2_request(v2(tensor(shape=[2, 3], data=[1] * 6)), limits=lim),
            Limits(max_tensor_elements=6),
        ),
        (
            lambda lim: codec.decode_grpc_request(
                grpc(("x", "INT8", [6]), raw=[b"\0" * 6]), limits=lim
            ),
            Limits(max_tensor_elements=6),
        ),
        (
            lambda lim: codec.decode_v2_request(v2(tensor(shape=[1, 1, 1], data=[1])), limits=lim),
            Limits(max_rank=3),
        ),
        (
            lambda lim: codec.decode_v1_request(v1({"instances": [[[1]]]}), limits=lim),
            Limits(max_rank=3),
        ),
        (
            lambda lim: codec.decode_v2_request(
                v2(*(tensor(n, data=[1, 2]) for n in "abc")), limits=lim
            ),
            Limits(max_tensors=3),
        ),
        (
            lambda lim: codec.decode_v2_request(
                v2(tensor(shape=[2], datatype="BYTES", data=["ok", "toolong"])), limits=lim
            ),
            Limits(max_bytes_element_len=7),
        ),
        (
            lambda lim: codec.decode_v2_request(v2(tensor(shape=[1], data=[[[1]]])), limits=lim),
            Limits(max_json_depth=3),
        ),
        (
            # V1 counts every level: the root object, the instances list and three lists.
            lambda lim: codec.decode_v1_request(v1({"instances": [[[1]]]}), limits=lim),
            Limits(max_json_depth=4),
        ),
    ],
    ids=[
        "body",
        "elements",
        "grpc-elements",
        "rank",
        "v1-rank",
        "tensors",
        "bytes-element",
        "json-depth",
        "v1-json-depth",
    ],
)
def test_limits_are_inclusive(
    decode: Callable[[Limits], InferRequest], limits: Limits | None
) -> None:
    if limits is None:
        # The body limit: a body of exactly max_body_bytes is accepted.
        limits = Limits(max_body_bytes=len(v2(tensor(data=[1, 2]))))
    assert decode(limits).inputs


CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[1])
import oip
from test_bad_input import binary, grpc, grpc_typed, tensor, v2
from tensorgate import Limits, ProtocolError, codec

big = Limits(max_tensor_elements=2**28)
cases = [
    lambda: codec.decode_v2_request(v2(tensor(shape=[2**28], data=[1])), limits=big),
    lambda: codec.decode_v2_request(
        v2(tensor(shape=[2**27], datatype="BYTES", data=["a"])), limits=big
    ),
    lambda: codec.decode_v2_request(
        b'{"inputs":[{"data":[1.5],"name":"x","datatype":"FP64","shape":[134217728]}]}',
        limits=big,
    ),
    lambda: codec.decode_v2_request(
        *binary({"inputs": [tensor(shape=[2**27], datatype="FP64",
                                   parameters={"binary_data_size": 8})]}, bytes(8)),
        limits=big,
    ),
    lambda: codec.decode_grpc_request(
        grpc_typed("FP64", [2**27], "fp64_contents", [1.0]), limits=big
    ),
    lambda: codec.decode_grpc_request(grpc(("x", "FP64", [2**27]), raw=[bytes(8)]), limits=big),
    lambda: codec.decode_v2_request(v2(tensor(shape=[2**40, 2**40], data=[]))),
]
oip.pool()  # protoc runs before the limit is set
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
limit = vm * 1024 + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    bytearray(1 << 30)
    sys.exit("the address-space limit is not effective")
except MemoryError:
    pass
for i, case in enumerate(cases):
    try:
        case()
    except ProtocolError as e:
        assert e.status_code == 400, (i, e)
    else:
        sys.exit(f"case {i} did not raise")
print("ok", len(cases))
"""


def test_shapes_that_claim_gigabytes_reserve_nothing() -> None:
    """Each payload claims ~1 GiB (or far more) that it does not carry. Run under an
    address-space limit only 256 MiB above the interpreter's, a decoder that reserved memory
    for the claimed shape would abort the process instead of raising ProtocolError."""
    tests = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout.split() == ["ok", "7"]
