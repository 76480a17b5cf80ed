"""tensorgate: a Rust-accelerated data plane for model serving.

The tensor model and the KServe V1 / V2 (Open Inference Protocol) codecs live in Rust
(``tensorgate._core``); this package re-exports them with types and documentation.

>>> import numpy as np, tensorgate
>>> x = tensorgate.Tensor.from_numpy("x", np.arange(6, dtype=np.float32).reshape(2, 3))
>>> body, header_length = tensorgate.codec.encode_v2_request(tensorgate.InferRequest([x]))
>>> tensorgate.codec.decode_v2_request(body).inputs[0].numpy().sum()
np.float32(15.0)
"""

from tensorgate import codec
from tensorgate._core import (
    InferRequest,
    InferResponse,
    Limits,
    ProtocolError,
    RequestedOutput,
    Tensor,
    __version__,
)
from tensorgate.batching import (
    BatchDroppedError,
    Batcher,
    BatcherClosedError,
    BatchError,
    BatchOutputError,
    BatchQueueFullError,
    BatchTimeoutError,
    batch,
)

__all__ = [
    "BatchDroppedError",
    "BatchError",
    "BatchOutputError",
    "BatchQueueFullError",
    "BatchTimeoutError",
    "Batcher",
    "BatcherClosedError",
    "InferRequest",
    "InferResponse",
    "Limits",
    "ProtocolError",
    "RequestedOutput",
    "Tensor",
    "__version__",
    "batch",
    "codec",
]
