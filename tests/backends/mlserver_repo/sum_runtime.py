"""MLServer custom runtime for end-to-end tests: ``x`` FP32 ``[N, K]`` -> ``sum`` FP32 ``[N]``.

Run by ``.venv-mlserver/bin/mlserver start tests/backends/mlserver_repo`` (MLServer puts this folder
on ``sys.path``); ports come from ``MLSERVER_HTTP_PORT`` / ``MLSERVER_GRPC_PORT``. V2 only:
MLServer has no V1 protocol and no REST binary tensor extension (gRPC raw contents work).

The output is built by hand: ``NumpyCodec.encode_output`` would report a 1-D result as ``[N, 1]``.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class SumRuntime(MLModel):  # type: ignore[misc]  # mlserver lives in another venv (untyped here)
    """Row sums of the first input."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Sums each row of input 0 in FP32."""
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        if x.ndim != 2:
            raise MLServerError(f"expected a matrix [N, K], got shape {list(x.shape)}", 400)
        y = x.sum(axis=1, dtype=np.float32)
        output = ResponseOutput(name="sum", shape=list(y.shape), datatype="FP32", data=y.tolist())
        return InferenceResponse(
            id=payload.id, model_name=self.name, model_version=self.version, outputs=[output]
        )
