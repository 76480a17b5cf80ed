"""KServe ModelServer backend for benches/bench_batching.py (run as a subprocess).

Run: ``.venv/bin/python benches/backends_batching/kserve_model.py --http_port N --grpc_port M``

* ``m``: V2 input ``x`` FP32 ``[N, K]`` -> output ``sum`` FP32 ``[N]`` (row sums), computed by the
  simulated accelerator of ``accelerator.py`` in a *sync* ``predict``: KServe calls it on its
  event loop, so the server does nothing else while the "device" works.
* ``stats``: any V2 request -> the accelerator's cumulative counters (``calls``, ``rows``,
  ``busy_us``, ``sizes``) as INT64 outputs.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "backends"))

import accelerator  # noqa: E402
from kserve_server import GRACE_SECONDS, SumModel, respond, rows_of  # noqa: E402


class AcceleratorModel(SumModel):
    """The test suite's row-sum model, computed on the simulated accelerator in a *sync*
    predict (it blocks the event loop like a synchronous device call)."""

    def predict(self, payload: InferRequest, headers: Any = None) -> Any:
        """The accelerator's row sums of input 0."""
        return respond(self, payload, accelerator.run(rows_of(payload)))


class StatsModel(Model):  # type: ignore[misc]  # kserve is untyped
    """The accelerator's counters."""

    def __init__(self) -> None:
        super().__init__("stats")
        self.ready = True

    def predict(self, payload: InferRequest, headers: Any = None) -> Any:
        """Any request -> INT64 outputs ``calls``, ``rows``, ``busy_us``, ``sizes``."""
        outputs = []
        for name, value in accelerator.stats().items():
            out = InferOutput(name=name, shape=list(value.shape), datatype="INT64")
            out.set_data_from_numpy(value, binary_data=False)
            outputs.append(out)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
            infer_outputs=outputs,
        )  # fmt: skip


def main() -> None:
    """Serves ``m`` and ``stats``; kserve parses its own flags from ``sys.argv``."""
    ModelServer(grace_period=GRACE_SECONDS).start([AcceleratorModel("m"), StatsModel()])


if __name__ == "__main__":
    main()
