"""Type stubs for the Rust extension ``tensorgate._core`` (checked by ``mypy.stubtest``)."""

import asyncio
import contextvars
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, final

import numpy.typing as npt
from typing_extensions import disjoint_base

__version__: str
__all__ = [
    "Batch",
    "Batcher",
    "Buffer",
    "Gateway",
    "InferRequest",
    "InferResponse",
    "Limits",
    "PendingCall",
    "ProtocolError",
    "RequestedOutput",
    "Resolver",
    "Tensor",
    "Ticket",
    "__version__",
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

_ParameterValue: TypeAlias = bool | int | float | str

@disjoint_base
class ProtocolError(ValueError):
    """A payload broke the protocol or a limit.

    ``status_code`` is the HTTP status a server answers with (400, 413, ...) and ``grpc_code``
    the numeric gRPC status code (3 = INVALID_ARGUMENT, 8 = RESOURCE_EXHAUSTED, ...).
    """

    def __new__(cls, message: str, status_code: int = 400, grpc_code: int = 3) -> ProtocolError: ...
    @property
    def message(self) -> str: ...
    @property
    def status_code(self) -> int: ...
    @property
    def grpc_code(self) -> int: ...

@final
class Buffer:
    """Read-only bytes of a tensor, exported through the buffer protocol (zero-copy)."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __len__(self) -> int: ...

@final
class Tensor:
    """A named, typed, shaped tensor.

    ``data`` is a bytes-like object holding the raw little-endian form (BYTES: each element
    prefixed by its u32 little-endian length), a numpy array or nested lists (converted to
    ``datatype``), or for BYTES a sequence of ``bytes``/``str``.
    """

    def __new__(
        cls,
        name: str,
        datatype: str,
        shape: Sequence[int],
        data: object,
        parameters: Mapping[str, _ParameterValue] | None = None,
    ) -> Tensor: ...
    @staticmethod
    def from_numpy(name: str, array: object, datatype: str | None = None) -> Tensor: ...
    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def parameters(self) -> dict[str, _ParameterValue]: ...
    @property
    def raw(self) -> Buffer: ...
    def numpy(self) -> npt.NDArray[Any]: ...
    def __len__(self) -> int: ...

@final
class RequestedOutput:
    def __new__(
        cls, name: str, parameters: Mapping[str, _ParameterValue] | None = None
    ) -> RequestedOutput: ...
    @property
    def name(self) -> str: ...
    @property
    def parameters(self) -> dict[str, _ParameterValue]: ...

@final
class InferRequest:
    def __new__(
        cls,
        inputs: Sequence[Tensor],
        id: str | None = None,
        parameters: Mapping[str, _ParameterValue] | None = None,
        outputs: Sequence[str | RequestedOutput] | None = None,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> InferRequest: ...
    @property
    def inputs(self) -> list[Tensor]: ...
    @property
    def outputs(self) -> list[RequestedOutput]: ...
    @property
    def id(self) -> str | None: ...
    @property
    def parameters(self) -> dict[str, _ParameterValue]: ...
    @property
    def model_name(self) -> str | None: ...
    @property
    def model_version(self) -> str | None: ...
    def wants_binary(self, name: str) -> bool: ...

@final
class InferResponse:
    def __new__(
        cls,
        model_name: str,
        outputs: Sequence[Tensor],
        id: str | None = None,
        model_version: str | None = None,
        parameters: Mapping[str, _ParameterValue] | None = None,
    ) -> InferResponse: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def id(self) -> str | None: ...
    @property
    def parameters(self) -> dict[str, _ParameterValue]: ...
    @property
    def outputs(self) -> list[Tensor]: ...

@final
class Limits:
    """Bounds applied when decoding untrusted payloads; every field has a safe default."""

    def __new__(
        cls,
        *,
        max_body_bytes: int = ...,
        max_tensor_elements: int = ...,
        max_rank: int = ...,
        max_tensors: int = ...,
        max_bytes_element_len: int = ...,
        max_json_depth: int = ...,
    ) -> Limits: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_tensor_elements(self) -> int: ...
    @property
    def max_rank(self) -> int: ...
    @property
    def max_tensors(self) -> int: ...
    @property
    def max_bytes_element_len(self) -> int: ...
    @property
    def max_json_depth(self) -> int: ...

def decode_v2_request(
    body: bytes, header_length: int | None = None, *, limits: Limits | None = None
) -> InferRequest: ...
def encode_v2_request(request: InferRequest, binary: bool = False) -> tuple[bytes, int | None]: ...
def decode_v2_response(
    body: bytes, header_length: int | None = None, *, limits: Limits | None = None
) -> InferResponse: ...
def encode_v2_response(
    response: InferResponse, binary_outputs: bool | Iterable[str] | None = None
) -> tuple[bytes, int | None]: ...
def decode_v1_request(body: bytes, *, limits: Limits | None = None) -> InferRequest: ...
def encode_v1_request(request: InferRequest) -> bytes: ...
def decode_v1_response(
    body: bytes, model_name: str, *, limits: Limits | None = None
) -> InferResponse: ...
def encode_v1_response(response: InferResponse) -> bytes: ...
def decode_grpc_request(data: bytes, *, limits: Limits | None = None) -> InferRequest: ...
def encode_grpc_request(
    request: InferRequest, model_name: str | None = None, model_version: str | None = None
) -> bytes: ...
def decode_grpc_response(data: bytes, *, limits: Limits | None = None) -> InferResponse: ...
def encode_grpc_response(response: InferResponse) -> bytes: ...

@final
class Gateway:
    """The running Rust gateway (see :class:`tensorgate.serve.Server`)."""

    def __new__(cls, config_json: str) -> Gateway: ...
    @property
    def http_port(self) -> int: ...
    @property
    def grpc_port(self) -> int: ...
    def next_call(self, timeout: float, *, metrics: bool = False) -> PendingCall | None: ...
    def reload(self, config_json: str) -> None: ...
    def set_draining(self) -> None: ...
    def drain(self) -> bool: ...
    def metrics_json(self) -> str: ...

@final
class PendingCall:
    """Work for a Python worker: an in-process model call or a metrics page."""

    @property
    def kind(self) -> Literal["infer", "metrics"]: ...
    @property
    def model(self) -> str | None: ...
    @property
    def request(self) -> InferRequest | None: ...
    def respond(self, response: InferResponse) -> None: ...
    def respond_metrics(self, text: str) -> None: ...
    def fail(self, message: str, status_code: int = 500) -> None: ...

@final
class Batcher:
    """The Rust half of ``tensorgate.Batcher``: queue, concatenation, splitting, workers."""

    def __new__(
        cls,
        func: Callable[[dict[str, npt.NDArray[Any]]], object],
        is_async: bool,
        start_async: Callable[[Any, bool, Any, Batch], None],
        errors: tuple[
            type[BaseException],
            type[BaseException],
            type[BaseException],
            type[BaseException],
            type[BaseException],
        ],
        *,
        max_batch_size: int,
        max_queue_delay_ms: float | None,
        target_latency_ms: float,
        preferred_batch_sizes: Sequence[int],
        max_queue_size: int,
        queue_timeout_ms: float | None,
        max_inflight_batches: int,
    ) -> Batcher: ...
    def submit(
        self, inputs: Mapping[str, npt.NDArray[Any]], event_loop: asyncio.AbstractEventLoop
    ) -> Ticket: ...
    def submit_sync(
        self, inputs: Mapping[str, npt.NDArray[Any]], timeout: float | None = None
    ) -> dict[str, npt.NDArray[Any]]: ...
    def run_worker(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def queued(self) -> int: ...

@final
class Batch:
    """An async function's batch, run as a task by ``tensorgate.batching``."""

    @property
    def inputs(self) -> dict[str, npt.NDArray[Any]]: ...
    def finish(self, outputs: object, event_loop: Any = None) -> None: ...
    def fail(self, error: BaseException, event_loop: Any = None) -> None: ...

@final
class Ticket:
    """A queued async request's share of the answer, awaited like an asyncio future (it
    implements the part of the future protocol asyncio tasks use); ``cancel()`` takes the
    request out of the queue before its batch forms."""

    _asyncio_future_blocking: bool
    def __await__(self) -> Generator[Ticket, None, dict[str, npt.NDArray[Any]]]: ...
    def __iter__(self) -> Ticket: ...
    def __next__(self) -> Ticket: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> dict[str, npt.NDArray[Any]]: ...
    def exception(self) -> BaseException | None: ...
    def add_done_callback(
        self, callback: Callable[[Ticket], object], *, context: contextvars.Context | None = None
    ) -> None: ...
    def remove_done_callback(self, callback: Callable[[Ticket], object]) -> int: ...
    def cancel(self, msg: Any | None = None) -> bool: ...

@final
class Resolver:
    """Settles one event loop's tickets of a batch and runs their done callbacks in one pass
    (scheduled with ``call_soon`` or ``call_soon_threadsafe``)."""

    def __call__(self, *args: object, **kwargs: object) -> None: ...
