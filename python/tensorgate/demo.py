"""Built-in demo models, served in-process by ``tensorgate serve`` when no config is given.

Each model follows the protocol of :mod:`tensorgate.models`: ``inputs`` / ``outputs`` lists of
:class:`~tensorgate.models.TensorSpec` and ``predict(inputs) -> outputs`` on numpy arrays.

* ``sum``: input ``x`` FP32 ``[-1, -1]`` -> output ``sum`` FP32 ``[-1]``, the row sums.
* ``echo``: input ``x`` -> output ``y``, the same array whatever its datatype or shape.
* ``classifier``: an iris-like softmax classifier with fixed weights: input ``x`` FP32
  ``[-1, 4]`` -> ``probabilities`` FP32 ``[-1, 3]`` and ``label`` INT64 ``[-1]``.

:data:`DEMO_MODELS` maps each route name to its ``"module:attr"`` target.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tensorgate.models import Arrays, InvalidInput, TensorSpec

Outputs = dict[str, npt.NDArray[Any]]

#: Classifier weights, shape [features, classes]: a multinomial logistic regression fitted to the
#: iris data set (sepal length, sepal width, petal length, petal width -> setosa, versicolor,
#: virginica), rounded to two decimals.
CLASSIFIER_WEIGHTS: Final = np.array(
    [
        [-0.42, 0.53, -0.11],
        [0.97, -0.32, -0.65],
        [-2.52, -0.21, 2.73],
        [-1.08, -0.94, 2.02],
    ],
    dtype=np.float32,
)
#: Classifier intercepts, one per class.
CLASSIFIER_BIAS: Final = np.array([9.85, 2.23, -12.08], dtype=np.float32)


def _input(inputs: Arrays, name: str) -> npt.NDArray[Any]:
    """The input tensor ``name``; ``ValueError`` naming it when it is missing."""
    try:
        return np.asarray(inputs[name])
    except KeyError:
        raise InvalidInput(f"missing input tensor {name!r}") from None


def _floats(inputs: Arrays, name: str, ndim: int, width: int | None = None) -> npt.NDArray[Any]:
    """Input ``name`` as FP32 with ``ndim`` dimensions (and ``width`` columns, if given)."""
    x = _input(inputs, name)
    if x.ndim != ndim or (width is not None and x.shape[-1] != width):
        wanted = [-1] * (ndim - 1) + [width if width is not None else -1]
        raise InvalidInput(f"input {name!r} has shape {list(x.shape)}, expected {wanted}")
    try:
        return x.astype(np.float32, copy=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"input {name!r} of dtype {x.dtype} is not numeric: {e}") from None


class SumModel:
    """Row sums: ``x`` FP32 ``[N, K]`` -> ``sum`` FP32 ``[N]``."""

    inputs: Final = [TensorSpec("x", "FP32", (-1, -1))]
    outputs: Final = [TensorSpec("sum", "FP32", (-1,))]

    def predict(self, inputs: Arrays) -> Outputs:
        """Sums each row of ``x`` in FP32."""
        x = _floats(inputs, "x", ndim=2)
        return {"sum": x.sum(axis=1, dtype=np.float32)}


class EchoModel:
    """Identity: returns input ``x`` unchanged as output ``y`` (any datatype, any shape).

    The declared FP32 ``[-1]`` is nominal; BYTES, integers or several dimensions come back as sent.
    """

    inputs: Final = [TensorSpec("x", "FP32", (-1,))]
    outputs: Final = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs: Arrays) -> Outputs:
        """Returns ``{"y": x}`` without copying."""
        return {"y": _input(inputs, "x")}


class ClassifierModel:
    """Softmax classifier over four iris-like features with the fixed weights above."""

    inputs: Final = [TensorSpec("x", "FP32", (-1, 4))]
    outputs: Final = [
        TensorSpec("probabilities", "FP32", (-1, 3)),
        TensorSpec("label", "INT64", (-1,)),
    ]

    def predict(self, inputs: Arrays) -> Outputs:
        """Class probabilities (rows sum to 1) and the most probable class index per row."""
        x = _floats(inputs, "x", ndim=2, width=CLASSIFIER_WEIGHTS.shape[0])
        logits = x @ CLASSIFIER_WEIGHTS + CLASSIFIER_BIAS
        # Shifted by the row maximum so that exp() cannot overflow.
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        label = probabilities.argmax(axis=1).astype(np.int64)
        return {"probabilities": probabilities, "label": label}


# Shadows the builtin on purpose (the route name); the builtin is not used below.
sum = SumModel()
echo = EchoModel()
classifier = ClassifierModel()

#: Route name -> in-process target, as served by ``tensorgate serve`` without a config.
DEMO_MODELS: Final[dict[str, str]] = {
    name: f"tensorgate.demo:{name}" for name in ("sum", "echo", "classifier")
}
