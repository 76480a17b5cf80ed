"""KServe ModelServer backend for end-to-end tests (run as a subprocess, never imported by pytest).

Run: ``.venv/bin/python tests/backends/kserve_server.py --http_port N --grpc_port M``

Models (all V1 and V2 REST and gRPC; V1 ``{"instances": rows}`` -> ``{"predictions": row sums}``,
V2 input ``x`` FP32 ``[N, K]`` -> output ``sum`` FP32 ``[N]``):

* ``sum``: row sums.
* ``slow``: row sums after sleeping (asynchronously) for ``sleep`` seconds: the V2 request
  parameter ``sleep`` (number or numeric string), the V1 body key ``"sleep"``, or else the first
  input value.
* ``picky``: row sums, but any negative value raises ``InvalidInput`` (HTTP 400 ``{"error": ...}``,
  gRPC ``INVALID_ARGUMENT``).
* ``stats`` (V1 only): ``{"instances": ["sum", ...]}`` -> ``{"predictions": [[rows per call],
  ...]}``, the number of rows each ``predict`` call of the named models received since start (or
  since the last ``"reset": true`` in a stats request). Batching tests read it to see how
  requests were merged.

kserve must never be imported into the pytest process: its generated protos and tritonclient's
both define protobuf package ``inference``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput

Array = npt.NDArray[Any]

#: Seconds a SIGTERM waits for in-flight requests (KServe's default is 30).
GRACE_SECONDS = 2

#: Rows received by each predict() call, per model name.
CALLS: defaultdict[str, list[int]] = defaultdict(list)


def rows_of(payload: InferRequest | dict[str, Any]) -> Array:
    """The request's input as an FP32 matrix: V2 input 0, or V1 ``instances``."""
    if isinstance(payload, InferRequest):
        data = payload.inputs[0].as_numpy()
    else:
        data = np.asarray(payload.get("instances"))
    if data.ndim != 2:
        raise InvalidInput(f"expected a matrix [N, K], got shape {list(data.shape)}")
    x: Array = data.astype(np.float32, copy=False)
    return x


def parameter(payload: InferRequest | dict[str, Any], key: str) -> object:
    """A request-level parameter: a V1 body key, a V2 REST value or a gRPC ``InferParameter``."""
    if not isinstance(payload, InferRequest):
        return payload.get(key)
    value: Any = (payload.parameters or {}).get(key)
    if hasattr(value, "WhichOneof"):  # gRPC InferParameter (kserve leaves them unconverted)
        choice = value.WhichOneof("parameter_choice")
        return getattr(value, choice) if choice else None
    return value


def respond(model: Model, payload: InferRequest | dict[str, Any], y: Array) -> Any:
    """``y`` as a V1 ``predictions`` body or a V2 response with output ``sum``."""
    if not isinstance(payload, InferRequest):
        return {"predictions": y.tolist()}
    out = InferOutput(name="sum", shape=list(y.shape), datatype="FP32")
    out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
    return InferResponse(
        response_id=payload.id or str(uuid.uuid4()),
        model_name=model.name,
        infer_outputs=[out],
        use_binary_outputs=payload.use_binary_outputs,
        # Without it KServe ignores per-output `binary_data: true` and answers in JSON.
        requested_outputs=payload.request_outputs,
    )


class SumModel(Model):  # type: ignore[misc]  # kserve is untyped
    """Row sums; subclasses check or delay the request in :meth:`check`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 metadata of the input."""
        return [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        """V2 metadata of the output."""
        return [{"name": "sum", "datatype": "FP32", "shape": [-1]}]

    async def check(self, payload: InferRequest | dict[str, Any], x: Array) -> None:
        """Hook run before summing; raises to reject the request."""

    async def predict(self, payload: InferRequest | dict[str, Any], headers: Any = None) -> Any:
        """Records the call's row count and answers the row sums."""
        x = rows_of(payload)
        CALLS[self.name].append(int(x.shape[0]))
        await self.check(payload, x)
        return respond(self, payload, x.sum(axis=1, dtype=np.float32))


class SlowModel(SumModel):
    """Sleeps ``sleep`` seconds (parameter, V1 key or first value) before answering."""

    async def check(self, payload: InferRequest | dict[str, Any], x: Array) -> None:
        value = parameter(payload, "sleep")
        seconds = float(x.flat[0]) if value is None and x.size else float(str(value or 0))
        await asyncio.sleep(max(seconds, 0.0))


class PickyModel(SumModel):
    """Rejects negative values with ``InvalidInput`` (400)."""

    async def check(self, payload: InferRequest | dict[str, Any], x: Array) -> None:
        if (x < 0).any():
            raise InvalidInput("negative values are not allowed")


class StatsModel(Model):  # type: ignore[misc]  # kserve is untyped
    """Reports :data:`CALLS` for the named models (V1 only)."""

    def __init__(self) -> None:
        super().__init__("stats")
        self.ready = True

    def predict(self, payload: InferRequest | dict[str, Any], headers: Any = None) -> Any:
        """``{"instances": [names], "reset": bool}`` -> ``{"predictions": [[rows], ...]}``."""
        if isinstance(payload, InferRequest):
            raise InvalidInput("stats speaks V1 only")
        names = payload.get("instances") or []
        predictions = [list(CALLS[str(name)]) for name in names]
        if payload.get("reset"):
            CALLS.clear()
        return {"predictions": predictions}


def main() -> None:
    """Serves every model; kserve parses its own flags (``--http_port`` ...) from ``sys.argv``."""
    models = [SumModel("sum"), SlowModel("slow"), PickyModel("picky"), StatsModel()]
    ModelServer(grace_period=GRACE_SECONDS).start(models)


if __name__ == "__main__":
    main()
