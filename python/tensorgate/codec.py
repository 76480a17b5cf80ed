"""Decode and encode KServe payloads: V2 REST JSON and binary, V2 gRPC, and V1 REST.

Every ``decode_*`` function raises :class:`tensorgate.ProtocolError` (a ``ValueError`` with
``status_code`` and ``grpc_code``) on bad input, and accepts ``limits=tensorgate.Limits(...)``.
Binary tensors decoded from a ``bytes`` body are zero-copy views of that body.

==============================  ===========================================================
V2 REST (server side)           ``decode_v2_request``, ``encode_v2_response``
V2 REST (client side)           ``encode_v2_request``, ``decode_v2_response``
V2 gRPC (server side)           ``decode_grpc_request``, ``encode_grpc_response``
V2 gRPC (client side)           ``encode_grpc_request``, ``decode_grpc_response``
V1 REST (server side)           ``decode_v1_request``, ``encode_v1_response``
V1 REST (client side)           ``encode_v1_request``, ``decode_v1_response``
==============================  ===========================================================

``encode_v2_*`` return ``(body, header_length)``: ``header_length`` is ``None`` for a plain JSON
body, else the value of the ``Inference-Header-Content-Length`` header to send.
"""

from tensorgate._core import (
    decode_grpc_request,
    decode_grpc_response,
    decode_v1_request,
    decode_v1_response,
    decode_v2_request,
    decode_v2_response,
    encode_grpc_request,
    encode_grpc_response,
    encode_v1_request,
    encode_v1_response,
    encode_v2_request,
    encode_v2_response,
)

__all__ = [
    "decode_grpc_request",
    "decode_grpc_response",
    "decode_v1_request",
    "decode_v1_response",
    "decode_v2_request",
    "decode_v2_response",
    "encode_grpc_request",
    "encode_grpc_response",
    "encode_v1_request",
    "encode_v1_response",
    "encode_v2_request",
    "encode_v2_response",
]
