"""In-process batching: :class:`Batcher` and the :func:`batch` decorator.

Concurrent callers hand in dicts of numpy arrays; compatible requests (same input names,
dtypes and trailing dimensions) are concatenated along axis 0, the function runs once on the
batch, and each caller gets its own rows of the answer back as views (no copies). Queueing,
concatenation and splitting run in Rust (``tensorgate._core.Batcher``) with the gateway's
batching rule; this module is the typed front and the asyncio glue.

>>> import asyncio, numpy as np, tensorgate
>>> @tensorgate.batch(max_batch_size=8, max_queue_delay_ms=1)
... def double(inputs):
...     return {"y": inputs["x"] * 2}
>>> asyncio.run(double({"x": np.ones((2, 3), np.float32)}))["y"].shape
(2, 3)
>>> double.close()
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeAlias, overload

import numpy.typing as npt

from tensorgate import _core

__all__ = [
    "BatchDroppedError",
    "BatchError",
    "BatchOutputError",
    "BatchQueueFullError",
    "BatchTimeoutError",
    "Batcher",
    "BatcherClosedError",
    "batch",
]

Arrays: TypeAlias = dict[str, npt.NDArray[Any]]
"""What the batch function receives and each caller gets back: arrays by name."""
Outputs: TypeAlias = Mapping[str, npt.ArrayLike]
BatchFunction: TypeAlias = Callable[[Arrays], Outputs | Awaitable[Outputs]]
"""A function of the whole batch, sync or async, returning arrays with the batch's rows."""


class BatchError(RuntimeError):
    """Base class of the batcher's own errors."""


class BatchQueueFullError(BatchError):
    """``max_queue_size`` requests are already waiting; the request was not queued."""


class BatchTimeoutError(BatchError, TimeoutError):
    """The request waited ``queue_timeout_ms`` without its batch being formed."""


class BatcherClosedError(BatchError):
    """The batcher was closed; it takes no new requests."""


class BatchOutputError(BatchError, ValueError):
    """The batch function's answer cannot be split: not a dict of arrays with the batch's rows."""


class BatchDroppedError(BatchError):
    """An async function's batch could not run (its event loop closed before it started)."""


_ERRORS = (
    BatchQueueFullError,
    BatchTimeoutError,
    BatcherClosedError,
    BatchOutputError,
    BatchDroppedError,
)

# Tasks of running async batches: the event loop only keeps weak references to tasks.
_tasks: set[asyncio.Task[None]] = set()
_private_loop: asyncio.AbstractEventLoop | None = None
_private_lock = threading.Lock()


def _own_loop() -> asyncio.AbstractEventLoop:
    """An event loop on a daemon thread, for async functions called only by threads."""
    global _private_loop
    with _private_lock:
        if _private_loop is None or _private_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="tensorgate-batcher-loop", daemon=True
            ).start()
            _private_loop = loop
        return _private_loop


def _start_async(
    loop: asyncio.AbstractEventLoop | None,
    same_thread: bool,
    fn: Callable[[Arrays], Awaitable[Outputs]],
    batch: _core.Batch,
) -> None:
    """Called from Rust: runs an async function's batch as a task on ``loop``."""
    if loop is None:
        loop = _own_loop()
    if same_thread:
        _spawn(loop, fn, batch)
    else:
        loop.call_soon_threadsafe(_spawn, loop, fn, batch)


def _spawn(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[[Arrays], Awaitable[Outputs]],
    batch: _core.Batch,
) -> None:
    task = loop.create_task(_run(loop, fn, batch))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _run(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[[Arrays], Awaitable[Outputs]],
    batch: _core.Batch,
) -> None:
    try:
        outputs = await fn(batch.inputs)
    except BaseException as error:
        batch.fail(error, loop)
        if not isinstance(error, Exception):
            raise
    else:
        batch.finish(outputs, loop)


def _is_async(fn: Callable[..., object]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    call = getattr(fn, "__call__", None)  # noqa: B004 (callable objects with async __call__)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class Batcher:
    """Batches concurrent calls to ``fn`` along axis 0.

    ``fn`` takes a dict of numpy arrays (the requests' arrays concatenated along axis 0,
    read-only) and returns a dict of arrays with the batch's total rows on axis 0; it may be
    ``async def``. ``await batcher.submit(inputs)`` (or ``await batcher(inputs)``) returns this
    caller's rows as views of ``fn``'s arrays; ``submit_sync`` does the same for threads.

    Sizes count rows. A batch is sent when it holds ``max_batch_size`` rows (or a size in
    ``preferred_batch_sizes``), or ``max_queue_delay_ms`` after its oldest request arrived;
    ``"auto"`` learns the delay from ``fn``'s measured latency within ``target_latency_ms``.
    Requests that differ in input names, dtypes or trailing dimensions go in separate batches;
    a request above ``max_batch_size`` rows goes alone. At most ``max_inflight_batches`` batches
    run at once. A request waiting longer than ``queue_timeout_ms`` fails with
    :class:`BatchTimeoutError`; more than ``max_queue_size`` waiting requests are refused with
    :class:`BatchQueueFullError`. An exception raised by ``fn`` is raised in every caller of that
    batch.
    """

    def __init__(
        self,
        fn: BatchFunction,
        max_batch_size: int = 32,
        max_queue_delay_ms: float | Literal["auto"] = 2.0,
        *,
        target_latency_ms: float = 100.0,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_size: int = 1024,
        queue_timeout_ms: float | None = None,
        max_inflight_batches: int = 1,
    ) -> None:
        if max_queue_delay_ms != "auto" and not isinstance(max_queue_delay_ms, int | float):
            raise TypeError(
                f"max_queue_delay_ms must be a number or 'auto', not {max_queue_delay_ms!r}"
            )
        self.fn = fn
        is_async = _is_async(fn)
        self._core = _core.Batcher(
            fn,
            is_async,
            _start_async,
            _ERRORS,
            max_batch_size=max_batch_size,
            max_queue_delay_ms=None if max_queue_delay_ms == "auto" else float(max_queue_delay_ms),
            target_latency_ms=float(target_latency_ms),
            preferred_batch_sizes=list(preferred_batch_sizes),
            max_queue_size=max_queue_size,
            queue_timeout_ms=None if queue_timeout_ms is None else float(queue_timeout_ms),
            max_inflight_batches=max_inflight_batches,
        )
        self._workers = [
            threading.Thread(target=self._core.run_worker, name="tensorgate-batcher", daemon=True)
            # Sync functions run on up to max_inflight_batches workers, and one more is always
            # free for deadlines and queue timeouts; async ones need only that one.
            for _ in range(1 if is_async else max(1, max_inflight_batches) + 1)
        ]
        for worker in self._workers:
            worker.start()
        # A batcher dropped without close() still stops its threads.
        weakref.finalize(self, self._core.close)
        functools.update_wrapper(self, fn)

    async def submit(self, inputs: Mapping[str, npt.NDArray[Any]]) -> Arrays:
        """Queues ``inputs`` and returns this caller's rows of ``fn``'s answer.

        Cancelling the awaiting task before the batch forms takes the request out of the queue.
        """
        # The ticket is awaited like an asyncio future; cancelling this task cancels it.
        return await self._core.submit(inputs, asyncio.get_running_loop())

    __call__ = submit

    def submit_sync(
        self, inputs: Mapping[str, npt.NDArray[Any]], timeout: float | None = None
    ) -> Arrays:
        """Like :meth:`submit`, for threads: blocks (without the GIL) until the answer is back.

        Raises ``TimeoutError`` after ``timeout`` seconds (the request leaves the queue if its
        batch has not formed yet). Not for use on a thread running an event loop.
        """
        return self._core.submit_sync(inputs, timeout)

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return self._core.queued

    def close(self) -> None:
        """Stops taking requests (:class:`BatcherClosedError`); queued ones are still answered.

        Returns at once; :meth:`join` or ``with``/``async with`` wait for the batcher to drain.
        """
        self._core.close()

    def join(self, timeout: float | None = None) -> bool:
        """Closes, then waits until every queued and running batch finished; ``False`` on timeout.

        An async ``fn`` finishes on its callers' event loop: from a coroutine, use
        ``await batcher.aclose()`` instead, which keeps the loop running meanwhile.
        """
        self.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in self._workers)

    async def aclose(self) -> None:
        """Closes and waits, without blocking the event loop, until the batcher drained."""
        self.close()
        await asyncio.get_running_loop().run_in_executor(None, self.join)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.join()

    async def __aenter__(self) -> Batcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


@overload
def batch(fn: BatchFunction, /) -> Batcher: ...
@overload
def batch(
    *,
    max_batch_size: int = 32,
    max_queue_delay_ms: float | Literal["auto"] = 2.0,
    target_latency_ms: float = 100.0,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_size: int = 1024,
    queue_timeout_ms: float | None = None,
    max_inflight_batches: int = 1,
) -> Callable[[BatchFunction], Batcher]: ...
def batch(
    fn: BatchFunction | None = None,
    /,
    *,
    max_batch_size: int = 32,
    max_queue_delay_ms: float | Literal["auto"] = 2.0,
    target_latency_ms: float = 100.0,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_size: int = 1024,
    queue_timeout_ms: float | None = None,
    max_inflight_batches: int = 1,
) -> Batcher | Callable[[BatchFunction], Batcher]:
    """Decorator form of :class:`Batcher`: ``@tensorgate.batch(max_batch_size=...)`` on a batch
    function gives a :class:`Batcher`; ``await f(inputs)`` or ``f.submit_sync(inputs)``."""

    def wrap(fn: BatchFunction) -> Batcher:
        return Batcher(
            fn,
            max_batch_size,
            max_queue_delay_ms,
            target_latency_ms=target_latency_ms,
            preferred_batch_sizes=preferred_batch_sizes,
            max_queue_size=max_queue_size,
            queue_timeout_ms=queue_timeout_ms,
            max_inflight_batches=max_inflight_batches,
        )

    return wrap if fn is None else wrap(fn)
