"""MLServer runtimes for benches/bench_batching.py: the same model as ``kserve_model.py``.

``benches/bench_batching.py`` writes the model repository (``settings.json``, one
``model-settings.json`` per model, adaptive batching on ``m``) into its run directory and starts
``.venv-mlserver/bin/mlserver start REPO`` with this folder on ``PYTHONPATH``.

* ``mlserver_runtime.AcceleratorRuntime`` (model ``m``): ``x`` FP32 ``[N, K]`` -> ``sum`` FP32
  ``[N]`` on the simulated accelerator of ``accelerator.py``. ``predict`` calls it directly, so,
  as KServe's sync predict, it blocks the event loop of the process running the model (the
  inference worker with ``parallel_workers`` >= 1, else the server itself).
* ``mlserver_runtime.StatsRuntime`` (model ``stats``): the accelerator's counters. Both models
  live in the same process (``parallel_workers`` 0 or 1), so they share the counters.

The output is built by hand: ``NumpyCodec.encode_output`` would report a 1-D result as ``[N, 1]``.
"""

from __future__ import annotations

import accelerator
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class AcceleratorRuntime(MLModel):  # type: ignore[misc]  # mlserver lives in another venv
    """Row sums of input 0 on the simulated accelerator."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Row sums (FP32) of the ``[N, K]`` input."""
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = accelerator.run(x.reshape(x.shape[0], -1))
        output = ResponseOutput(name="sum", shape=list(y.shape), datatype="FP32", data=y.tolist())
        return InferenceResponse(
            id=payload.id, model_name=self.name, model_version=self.version, outputs=[output]
        )


class StatsRuntime(MLModel):  # type: ignore[misc]  # mlserver lives in another venv
    """Any request -> INT64 outputs ``calls``, ``rows``, ``busy_us``, ``sizes``."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """The accelerator's cumulative counters."""
        outputs = [
            ResponseOutput(name=name, shape=list(v.shape), datatype="INT64", data=v.tolist())
            for name, v in accelerator.stats().items()
        ]
        return InferenceResponse(id=payload.id, model_name=self.name, outputs=outputs)
