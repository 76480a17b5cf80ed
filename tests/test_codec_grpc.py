"""V2 gRPC codec (``ModelInferRequest`` / ``ModelInferResponse``): interop with tritonclient.grpc
and with messages built from the project's own proto (``oip``, a private descriptor pool).

This module imports ``tritonclient.grpc``; ``kserve`` must never be imported in the same process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import oip
import pytest
import tensorgate
import tritonclient.grpc as grpcclient
from conftest import (
    ALL_DATATYPES,
    HALF,
    Array,
    assert_protocol_error,
    assert_same,
    numpy_dtype,
    sample,
    tensors,
)
from google.protobuf import descriptor_pool, json_format
from tensorgate import InferRequest, InferResponse, ProtocolError, RequestedOutput, Tensor, codec
from tritonclient.grpc import _utils as grpc_utils
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

#: The typed contents field of each datatype, from the comments of the OIP proto.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def raw(array: Array) -> bytes:
    """The raw form of an array, as the reference client serializes it."""
    if array.dtype == object:
        return bytes(serialize_byte_tensor(array).item())
    return array.tobytes()


def triton_request(
    inputs: list[tuple[str, Array, str]],
    outputs: list[grpcclient.InferRequestedOutput] | None = None,
    model_name: str = "model",
    model_version: str = "",
    request_id: str = "",
    parameters: dict[str, Any] | None = None,
    sequence_id: int = 0,
    priority: int = 0,
    timeout: int | None = None,
) -> bytes:
    """A serialized ModelInferRequest built by tritonclient.grpc."""
    infer_inputs = []
    for name, array, datatype in inputs:
        infer_input = grpcclient.InferInput(name, list(array.shape), datatype)
        infer_input.set_data_from_numpy(array)
        infer_inputs.append(infer_input)
    message = grpc_utils._get_inference_request(
        model_name=model_name,
        inputs=infer_inputs,
        model_version=model_version,
        request_id=request_id,
        outputs=outputs,
        sequence_id=sequence_id,
        sequence_start=sequence_id != 0,
        sequence_end=False,
        priority=priority,
        timeout=timeout,
        parameters=parameters,
    )
    return bytes(message.SerializeToString())


def typed_input(message: Any, name: str, array: Array, datatype: str) -> None:
    """Adds an input carrying ``array`` in its typed ``contents`` field (private OIP stubs)."""
    tensor = message.inputs.add()
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(array.shape)
    values = (
        [bytes(e) for e in array.reshape(-1)]
        if array.dtype == object
        else array.reshape(-1).tolist()
    )
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values)


def decode_error(message: Any, *fragments: str, status: int = 400) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_grpc_request(message.SerializeToString())
    assert_protocol_error(excinfo.value, status, *fragments)


# ---------------------------------------------------------------------------------------------
# tritonclient.grpc builds the request, tensorgate decodes it


@pytest.mark.parametrize("name", ALL_DATATYPES)
def test_decode_tritonclient_request(name: str) -> None:
    array = sample(name, (3, 4))
    data = triton_request([("INPUT0", array, name)], model_name="m", model_version="7")
    request = codec.decode_grpc_request(data)
    assert (request.model_name, request.model_version, request.id) == ("m", "7", None)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("INPUT0", name, (3, 4))
    assert_same(tensor.numpy(), array)


def test_decode_tritonclient_request_with_everything() -> None:
    arrays = {n: sample(n, (2, 3), i) for i, n in enumerate(ALL_DATATYPES)}
    outputs = [
        grpcclient.InferRequestedOutput("y"),
        grpcclient.InferRequestedOutput("z", class_count=2),
    ]
    data = triton_request(
        [(f"in_{n}", a, n) for n, a in arrays.items()],
        outputs=outputs,
        model_name="resnet",
        model_version="3",
        request_id="req-42",
        parameters={"s": "text", "i": -5, "b": True},
        sequence_id=9,
        priority=4,
        timeout=100,
    )
    request = codec.decode_grpc_request(data)
    assert (request.model_name, request.model_version, request.id) == ("resnet", "3", "req-42")
    assert request.parameters == {
        "s": "text",
        "i": -5,
        "b": True,
        "sequence_id": 9,
        "sequence_start": True,
        "sequence_end": False,
        "priority": 4,
        "timeout": 100,
    }
    assert type(request.parameters["b"]) is bool
    assert [t.name for t in request.inputs] == [f"in_{n}" for n in arrays]
    for tensor, array in zip(request.inputs, arrays.values(), strict=True):
        assert_same(tensor.numpy(), array)
    assert [o.name for o in request.outputs] == ["y", "z"]
    assert request.outputs[1].parameters == {"classification": 2}


def test_decoded_raw_contents_are_views_of_the_message() -> None:
    array = np.arange(4096, dtype=np.float64)
    data = triton_request([("x", array, "FP64")])
    decoded = codec.decode_grpc_request(data).inputs[0].numpy()
    assert_same(decoded, array)
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# typed contents, built with the private OIP stubs


@pytest.mark.parametrize("name", [n for n in ALL_DATATYPES if n not in HALF])
def test_decode_typed_contents(name: str) -> None:
    array = sample(name, (2, 3))
    message = oip.infer_request(model_name="m", id="t")
    typed_input(message, "x", array, name)
    request = codec.decode_grpc_request(message.SerializeToString())
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", name, (2, 3))
    assert_same(tensor.numpy(), array)


def test_typed_and_raw_decode_equal() -> None:
    names = [n for n in ALL_DATATYPES if n not in HALF]
    arrays = {n: sample(n, (4,), i) for i, n in enumerate(names)}
    typed = oip.infer_request(model_name="m")
    for n, a in arrays.items():
        typed_input(typed, f"x_{n}", a, n)
    from_typed = codec.decode_grpc_request(typed.SerializeToString())
    from_raw = codec.decode_grpc_request(
        triton_request([(f"x_{n}", a, n) for n, a in arrays.items()], model_name="m")
    )
    assert from_typed == from_raw


def test_empty_contents_message_next_to_raw_is_accepted() -> None:
    # Some clients send an empty `contents` message along with raw contents.
    array = sample("INT32", (3,))
    message = oip.infer_request(raw_input_contents=[array.tobytes()])
    tensor = message.inputs.add(name="x", datatype="INT32", shape=[3])
    tensor.contents.SetInParent()
    assert tensor.HasField("contents")
    assert_same(codec.decode_grpc_request(message.SerializeToString()).inputs[0].numpy(), array)


def test_typed_zero_element_half_tensor() -> None:
    message = oip.infer_request()
    message.inputs.add(name="h", datatype="FP16", shape=[0, 4])
    tensor = codec.decode_grpc_request(message.SerializeToString()).inputs[0]
    assert_same(tensor.numpy(), np.zeros((0, 4), dtype=np.float16))


# ---------------------------------------------------------------------------------------------
# tensorgate encodes, tritonclient.grpc / the private stubs read


@pytest.mark.parametrize("name", ALL_DATATYPES)
def test_tritonclient_reads_response(name: str) -> None:
    array = sample(name, (2, 3))
    response = InferResponse(
        "m", [Tensor.from_numpy("OUTPUT0", array, datatype=name)], id="i", model_version="2"
    )
    message = service_pb2.ModelInferResponse.FromString(codec.encode_grpc_response(response))
    assert (message.model_name, message.model_version, message.id) == ("m", "2", "i")
    (output,) = message.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("OUTPUT0", name, [2, 3])
    assert list(message.raw_output_contents) == [raw(array)]
    result = grpcclient.InferResult(message)
    expected = array if name == "BYTES" else array.astype(numpy_dtype(name))
    assert_same(result.as_numpy("OUTPUT0"), expected)


def test_tritonclient_reads_multi_output_response() -> None:
    outputs = tensors(ALL_DATATYPES, (3, 1))
    response = InferResponse(
        "m", outputs, parameters={"b": False, "i": 2**63 - 1, "u": 2**64 - 1, "d": -0.5, "s": "x"}
    )
    message = service_pb2.ModelInferResponse.FromString(codec.encode_grpc_response(response))
    result = grpcclient.InferResult(message)
    for tensor in outputs:
        assert_same(result.as_numpy(tensor.name), tensor.numpy())
    params = message.parameters
    assert params["b"].WhichOneof("parameter_choice") == "bool_param"
    assert params["b"].bool_param is False
    assert params["i"].int64_param == 2**63 - 1
    assert params["u"].uint64_param == 2**64 - 1
    assert params["d"].double_param == -0.5
    assert params["s"].string_param == "x"
    # And tensorgate reads its own message back.
    assert codec.decode_grpc_response(message.SerializeToString()) == response


def test_encode_request_read_with_private_stubs() -> None:
    inputs = tensors(ALL_DATATYPES, (2, 2))
    request = InferRequest(
        inputs,
        id="rid",
        parameters={"p": 1.5, "flag": True},
        outputs=["a", RequestedOutput("b", {"binary_data": True, "n": 3})],
        model_name="own",
        model_version="1",
    )
    message = oip.message("ModelInferRequest").FromString(codec.encode_grpc_request(request))
    assert (message.model_name, message.model_version, message.id) == ("own", "1", "rid")
    assert message.parameters["p"].double_param == 1.5
    assert message.parameters["flag"].bool_param is True
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [
        (t.name, t.datatype, [2, 2]) for t in inputs
    ]
    assert not any(t.HasField("contents") for t in message.inputs)
    assert list(message.raw_input_contents) == [raw(t.numpy()) for t in inputs]
    assert [o.name for o in message.outputs] == ["a", "b"]
    assert message.outputs[1].parameters["binary_data"].bool_param is True
    assert message.outputs[1].parameters["n"].int64_param == 3
    # Overriding the model name and version (a route that renames the model).
    renamed = oip.message("ModelInferRequest").FromString(
        codec.encode_grpc_request(request, model_name="backend", model_version="9")
    )
    assert (renamed.model_name, renamed.model_version) == ("backend", "9")
    # Round trip.
    assert codec.decode_grpc_request(codec.encode_grpc_request(request)) == request


def test_encode_request_without_model_name() -> None:
    request = InferRequest([Tensor.from_numpy("x", np.arange(3, dtype=np.int32))])
    message = oip.message("ModelInferRequest").FromString(codec.encode_grpc_request(request))
    assert (message.model_name, message.model_version, message.id) == ("", "", "")
    decoded = codec.decode_grpc_request(message.SerializeToString())
    assert (decoded.model_name, decoded.model_version, decoded.id) == (None, None, None)


def test_decode_response_built_with_private_stubs() -> None:
    raw_array = sample("FP16", (2,))
    message = oip.infer_response(
        model_name="m", model_version="4", id="x", raw_output_contents=[raw_array.tobytes()]
    )
    message.outputs.add(name="h", datatype="FP16", shape=[2])
    message.parameters["u"].uint64_param = 2**64 - 1
    response = codec.decode_grpc_response(message.SerializeToString())
    assert (response.model_name, response.model_version, response.id) == ("m", "4", "x")
    assert response.parameters == {"u": 2**64 - 1}
    assert_same(response.outputs[0].numpy(), raw_array)
    typed = oip.infer_response(model_name="m")
    out = typed.outputs.add(name="y", datatype="INT64", shape=[3])
    out.contents.int64_contents.extend([1, -(2**63), 2**63 - 1])
    assert_same(
        codec.decode_grpc_response(typed.SerializeToString()).outputs[0].numpy(),
        np.array([1, -(2**63), 2**63 - 1], dtype=np.int64),
    )


def test_grpc_and_v2_rest_decode_to_the_same_request() -> None:
    inputs = tensors(ALL_DATATYPES, (2, 3))
    request = InferRequest(inputs, id="same", parameters={"k": "v"})
    via_grpc = codec.decode_grpc_request(codec.encode_grpc_request(request))
    body, header_length = codec.encode_v2_request(request, binary=True)
    via_rest = codec.decode_v2_request(body, header_length)
    assert via_grpc == via_rest == request


# ---------------------------------------------------------------------------------------------
# protocol rules, broken on purpose with the private stubs


def test_raw_input_contents_count_mismatch() -> None:
    message = oip.infer_request(raw_input_contents=[b"\x01"])
    message.inputs.add(name="a", datatype="UINT8", shape=[1])
    message.inputs.add(name="b", datatype="UINT8", shape=[1])
    decode_error(message, "raw_input_contents", "1 entries", "2 inputs")


def test_raw_and_typed_contents_mixed() -> None:
    message = oip.infer_request(raw_input_contents=[b"\x01", b"\x02"])
    message.inputs.add(name="a", datatype="UINT8", shape=[1])
    typed = message.inputs.add(name="b", datatype="UINT8", shape=[1])
    typed.contents.uint_contents.append(2)
    decode_error(message, "'b'", "contents.uint_contents", "raw_input_contents")


@pytest.mark.parametrize("name", sorted(HALF))
def test_half_precision_via_contents(name: str) -> None:
    message = oip.infer_request()
    tensor = message.inputs.add(name="h", datatype=name, shape=[2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    decode_error(message, "'h'", name, "raw_input_contents")
    empty = oip.infer_request()
    empty.inputs.add(name="h", datatype=name, shape=[2])
    decode_error(empty, "'h'", name, "raw_input_contents")


def test_wrong_contents_field_for_datatype() -> None:
    message = oip.infer_request()
    tensor = message.inputs.add(name="x", datatype="INT32", shape=[1])
    tensor.contents.fp32_contents.append(1.0)
    decode_error(message, "'x'", "int_contents", "fp32_contents")


def test_contents_count_must_match_shape() -> None:
    message = oip.infer_request()
    tensor = message.inputs.add(name="x", datatype="FP64", shape=[2, 3])
    tensor.contents.fp64_contents.extend([1.0] * 5)
    decode_error(message, "'x'", "6 elements", "5")


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("INT8", 128), ("INT8", -129), ("INT16", 2**15), ("UINT8", 256), ("UINT16", 2**16)],
)
def test_narrow_integers_are_range_checked(datatype: str, value: int) -> None:
    message = oip.infer_request()
    tensor = message.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend([1, value])
    decode_error(message, "'x'", str(value), datatype, "[1]")


def test_raw_size_must_match_shape() -> None:
    message = oip.infer_request(raw_input_contents=[b"\x00" * 7])
    message.inputs.add(name="x", datatype="FP32", shape=[2])
    decode_error(message, "'x'", "8 bytes", "got 7")


def test_parameter_without_value() -> None:
    message = oip.infer_request()
    message.parameters["p"].SetInParent()
    decode_error(message, "'p'", "no value")


def test_input_without_name() -> None:
    message = oip.infer_request()
    message.inputs.add(datatype="INT32", shape=[0])
    decode_error(message, "inputs[0]", "name")


def test_not_a_protobuf_message() -> None:
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_grpc_request(b"\xff\xff\xff")
    assert_protocol_error(excinfo.value, 400, "ModelInferRequest")
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_grpc_response(b"\x0a\x05ab")
    assert_protocol_error(excinfo.value, 400, "ModelInferResponse")


def test_message_over_the_size_limit() -> None:
    data = triton_request([("x", np.zeros(64, dtype=np.uint8), "UINT8")])
    limits = tensorgate.Limits(max_body_bytes=len(data) - 1)
    with pytest.raises(ProtocolError) as excinfo:
        codec.decode_grpc_request(data, limits=limits)
    assert_protocol_error(excinfo.value, 413, str(len(data)), f"limit of {len(data) - 1}")
    at_limit = codec.decode_grpc_request(data, limits=tensorgate.Limits(max_body_bytes=len(data)))
    assert at_limit.inputs[0].shape == (64,)


# ---------------------------------------------------------------------------------------------
# the project's proto itself


def test_private_stubs_stay_out_of_the_default_pool() -> None:
    ours = oip.message("ModelInferRequest").DESCRIPTOR
    assert ours.file.pool is not descriptor_pool.Default()
    # tritonclient.grpc's classes, registered in the default pool, are unaffected.
    triton = descriptor_pool.Default().FindMessageTypeByName("inference.ModelInferRequest")
    assert triton is service_pb2.ModelInferRequest.DESCRIPTOR
    assert triton is not ours


@pytest.mark.parametrize("kind", ["ModelInferRequest", "ModelInferResponse"])
def test_proto_matches_tritonclient_on_the_wire(kind: str) -> None:
    """Every field of our proto has Triton's field number and type: a message written with one
    reads back identically with the other."""
    message = oip.message(kind)(model_name="m", model_version="2", id="i")
    for key, field_name, value in [
        ("b", "bool_param", True),
        ("i", "int64_param", -(2**63)),
        ("s", "string_param", "text"),
        ("d", "double_param", 0.5),
        ("u", "uint64_param", 2**64 - 1),
    ]:
        setattr(message.parameters[key], field_name, value)
    tensors_field = "inputs" if kind == "ModelInferRequest" else "outputs"
    for i, (datatype, field_name) in enumerate(CONTENTS_FIELD.items()):
        tensor = getattr(message, tensors_field).add(name=f"t{i}", datatype=datatype, shape=[2, 1])
        tensor.parameters["p"].int64_param = i
        values = [b"a", b""] if datatype == "BYTES" else sample(datatype, (2,)).tolist()
        getattr(tensor.contents, field_name).extend(values)
    if kind == "ModelInferRequest":
        output = message.outputs.add(name="y")
        output.parameters["binary_data"].bool_param = True
    data = message.SerializeToString()
    theirs = getattr(service_pb2, kind).FromString(data)
    assert json_format.MessageToDict(theirs) == json_format.MessageToDict(message)
    assert theirs.SerializeToString(deterministic=True) == message.SerializeToString(
        deterministic=True
    )
