"""In-process models for the gateway's end-to-end tests (``backend: {python: "inproc_models:X"}``).

The gateway subprocess imports this module by name: tests put ``tests/backends`` on its
``PYTHONPATH``. Every model takes input ``x`` FP32 ``[N, K]``.

* ``double``: an async function declared with :func:`tensorgate.models.model`; ``y = 2 x``.
* ``Scaler``: a class whose ``load()`` sets the factor ``predict`` uses; ``y = factor * x`` and
  ``loads``, how many times ``load()`` ran (INT64 ``[1]``).
* ``strict``: raises :class:`~tensorgate.models.InvalidInput` on negative values, else ``y = x``.
* ``strict_async``: the same, as an async function.
* ``not_a_dict``: returns a list instead of a dict of arrays.
* ``slow``: echoes ``x`` as ``y`` after holding its worker for half a second.
* ``sleepy``: the same after ``x[0, 0]`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from tensorgate.models import Arrays, InvalidInput, TensorSpec, model

Array = npt.NDArray[Any]

X = TensorSpec("x", "FP32", (-1, -1))
Y = TensorSpec("y", "FP32", (-1, -1))
LOADS = TensorSpec("loads", "INT64", (1,))

#: The factor ``Scaler.load()`` sets; before ``load()`` it is 1.
SCALE = 3.0
NEGATIVE = "x must be non-negative"


def _x(inputs: Arrays) -> Array:
    x: Array = np.asarray(inputs["x"], dtype=np.float32)
    return x


@model(inputs=[X], outputs=[Y])
async def double(inputs: Arrays) -> dict[str, Array]:
    """``y = 2 x``, after yielding to the event loop once."""
    await asyncio.sleep(0)
    return {"y": _x(inputs) * 2}


class Scaler:
    """``y = factor * x``; the factor is only set by :meth:`load`."""

    inputs: ClassVar[list[TensorSpec]] = [X]
    outputs: ClassVar[list[TensorSpec]] = [Y, LOADS]

    def __init__(self) -> None:
        self.factor = 1.0
        self.loads = 0

    def load(self) -> None:
        """What the gateway calls once at start."""
        self.factor = SCALE
        self.loads += 1

    def predict(self, inputs: Arrays) -> dict[str, Array]:
        return {"y": _x(inputs) * self.factor, "loads": np.array([self.loads], dtype=np.int64)}


class BrokenLoad:
    """A model whose :meth:`load` fails (its weights are missing, say)."""

    def load(self) -> None:
        raise RuntimeError("weights.bin is missing")

    def predict(self, inputs: Arrays) -> dict[str, Array]:
        return {"y": _x(inputs)}


def _check(x: Array) -> Array:
    if (x < 0).any():
        raise InvalidInput(f"{NEGATIVE}, got {float(x.min())}")
    return x


@model(inputs=[X], outputs=[Y])
def strict(inputs: Arrays) -> dict[str, Array]:
    """``y = x``; negative values are the client's error."""
    return {"y": _check(_x(inputs))}


@model(inputs=[X], outputs=[Y])
async def strict_async(inputs: Arrays) -> dict[str, Array]:
    """:func:`strict`, async."""
    await asyncio.sleep(0)
    return {"y": _check(_x(inputs))}


def not_a_dict(inputs: Arrays) -> Any:
    """A broken model: a list, not a dict of arrays."""
    return [_x(inputs)]


def slow(inputs: Arrays) -> dict[str, Array]:
    """Holds its worker for half a second, then echoes ``x`` as ``y``."""
    time.sleep(0.5)
    return {"y": _x(inputs)}


def sleepy(inputs: Arrays) -> dict[str, Array]:
    """Holds its worker for ``x[0, 0]`` seconds, then echoes ``x`` as ``y``."""
    x = _x(inputs)
    time.sleep(float(x[0, 0]))
    return {"y": x}
