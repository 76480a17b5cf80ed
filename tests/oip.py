"""OIP protobuf message classes, generated from ``protos/grpc_predict_v2.proto`` at test time.

The classes live in a PRIVATE descriptor pool, never the default one: ``tritonclient.grpc`` (and
``kserve``) register the same ``inference.*`` names in the default pool, and both must be usable in
the test process. ``protoc`` writes a ``FileDescriptorSet`` into a temporary directory outside the
repository; nothing is generated in the source tree.
"""

from __future__ import annotations

import functools
import importlib.resources
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

PROTO = Path(__file__).resolve().parent.parent / "protos" / "grpc_predict_v2.proto"
PACKAGE = "inference"


@functools.cache
def pool() -> Any:
    """A private descriptor pool holding the OIP proto."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="tensorgate-oip-") as tmp:
        out = Path(tmp) / "oip.pb"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO.parent}",
                f"-I{well_known}",
                f"--descriptor_set_out={out}",
                "--include_imports",
                str(PROTO),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status} on {PROTO}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    private = descriptor_pool.DescriptorPool()
    for file in files.file:
        private.Add(file)
    return private


@functools.cache
def message(name: str) -> Any:
    """The message class ``inference.<name>``; nested names use dots (``ModelInferRequest.X``)."""
    descriptor = pool().FindMessageTypeByName(f"{PACKAGE}.{name}")
    return message_factory.GetMessageClass(descriptor)


def infer_request(**fields: Any) -> Any:
    """A new ``ModelInferRequest``."""
    return message("ModelInferRequest")(**fields)


def infer_response(**fields: Any) -> Any:
    """A new ``ModelInferResponse``."""
    return message("ModelInferResponse")(**fields)
