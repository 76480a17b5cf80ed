"""In-process Python models: what the gateway accepts as ``backend: {python: "module:attr"}``.

A model is any of:

* a function ``fn(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]`` (sync or async);
* an object with a ``predict(inputs)`` method (a ``kserve.Model``-style class), sync or async;
* a class of either kind, instantiated with no arguments (its ``load()`` is called if present).

A model raises :class:`InvalidInput` for a request it cannot take (the client gets a 400).

It declares its tensors with ``inputs`` / ``outputs`` attributes, lists of :class:`TensorSpec`
(``-1`` for a variable dimension); they are served as the model's V2 metadata. The decorator
:func:`model` sets them on a function.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

Arrays = Mapping[str, npt.NDArray[Any]]
"""A model's inputs or outputs: tensor name to numpy array."""

ModelFn = Callable[[Arrays], Arrays | Awaitable[Arrays]]

F = TypeVar("F", bound=Callable[..., Any])


class InvalidInput(ValueError):  # noqa: N818 - KServe's name, kept for familiarity
    """Raised by a model for a request it cannot take; the client gets a 400 with the message
    (as with ``kserve.errors.InvalidInput``). Any other exception is a 500."""


@dataclass(frozen=True)
class TensorSpec:
    """A declared input or output: V2 datatype name and shape (``-1`` = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def model(
    *, inputs: Sequence[TensorSpec] = (), outputs: Sequence[TensorSpec] = ()
) -> Callable[[F], F]:
    """Declares the tensors of a model function.

    >>> @model(inputs=[TensorSpec("x", "FP32", (-1,))], outputs=[TensorSpec("y", "FP32", (-1,))])
    ... def double(inputs):
    ...     return {"y": inputs["x"] * 2}
    >>> double.inputs[0].name
    'x'
    """

    def declare(fn: F) -> F:
        fn.inputs = list(inputs)  # type: ignore[attr-defined]
        fn.outputs = list(outputs)  # type: ignore[attr-defined]
        return fn

    return declare


@dataclass(frozen=True)
class LoadedModel:
    """A resolved in-process model: the callable to run and its declared tensors."""

    target: str
    fn: ModelFn
    is_async: bool
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def load(target: str) -> LoadedModel:
    """Imports ``"module:attr"`` and resolves it to a callable model.

    Raises ``ValueError`` naming the target when it cannot be imported or is not a model.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"python model {target!r} must look like 'package.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"python model {target!r} cannot be loaded: {e}") from e
    except Exception as e:  # the module itself failed: a SyntaxError, an error at import
        raise ValueError(f"python model {target!r} failed to import: {_described(e)}") from e
    try:
        if inspect.isclass(obj):
            obj = obj()
        load_hook = getattr(obj, "load", None)
        if callable(load_hook) and not inspect.isfunction(obj):
            load_hook()
    except Exception as e:  # the model's own constructor or load() failed
        raise ValueError(f"python model {target!r} failed to load: {_described(e)}") from e
    fn = getattr(obj, "predict", None)
    if not callable(fn):
        fn = obj
    if not callable(fn):
        raise ValueError(f"python model {target!r} is neither callable nor has predict()")
    return LoadedModel(
        target=target,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        inputs=_specs(obj, "inputs"),
        outputs=_specs(obj, "outputs"),
    )


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _specs(obj: object, attr: str) -> tuple[TensorSpec, ...]:
    specs = getattr(obj, attr, ())
    if not isinstance(specs, Sequence) or not all(isinstance(s, TensorSpec) for s in specs):
        raise ValueError(f"{attr} of python model {obj!r} must be a list of TensorSpec")
    return tuple(specs)


def as_arrays(outputs: object, target: str) -> dict[str, npt.NDArray[Any]]:
    """Checks a model's return value: a mapping of names to arrays (or array-likes)."""
    if not isinstance(outputs, Mapping):
        raise TypeError(
            f"python model {target!r} returned {type(outputs).__name__}, "
            "expected a dict of numpy arrays"
        )
    return {str(name): np.asarray(value) for name, value in outputs.items()}
