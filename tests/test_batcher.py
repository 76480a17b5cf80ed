"""tensorgate.Batcher: in-process batching of calls to a Python function (real threads and
event loops; every wait is bounded)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
import tensorgate
from tensorgate import Batcher

Array = npt.NDArray[Any]
Arrays = dict[str, Array]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Recorder:
    """A batch function that doubles ``x`` and records every batch it saw."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[Arrays] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    @property
    def sizes(self) -> list[int]:
        return [len(b["x"]) for b in self.batches]

    def __call__(self, inputs: Arrays) -> dict[str, Array]:
        with self.lock:
            self.batches.append({k: np.array(v) for k, v in inputs.items()})
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"y": inputs["x"] * 2, "total": inputs["x"].reshape(len(inputs["x"]), -1).sum(1)}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def batcher_factory() -> Iterator[Callable[..., Batcher]]:
    made: list[Batcher] = []

    def make(fn: Any, *args: Any, **kwargs: Any) -> Batcher:
        b = Batcher(fn, *args, **kwargs)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
        assert b.join(10)


def rows(i: int, n: int = 1, width: int = 3) -> Array:
    """n rows unique to caller i."""
    return (np.arange(n * width, dtype=np.float32).reshape(n, width) + 1000 * i).astype(np.float32)


def check_own_rows(inputs: Sequence[Array], outputs: Sequence[Mapping[str, Array]]) -> None:
    for x, out in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2)
        np.testing.assert_array_equal(out["total"], x.sum(1))


def test_concurrent_async_callers_get_their_own_rows_and_batches_form(
    recorder: Recorder, batcher_factory: Callable[..., Batcher]
) -> None:
    b = batcher_factory(recorder, max_batch_size=8, max_queue_delay_ms=50)
    xs = [rows(i, n=1 + i % 3) for i in range(40)]

    async def main() -> list[Arrays]:
        return await asyncio.gather(*(b.submit({"x": x}) for x in xs))

    outs = run(main())
    check_own_rows(xs, outs)
    assert max(recorder.sizes) <= 8
    assert any(size > 1 for size in recorder.sizes)
    assert sum(recorder.sizes) == sum(len(x) for x in xs)
    # Every row that reached the function belongs to exactly one caller.
    seen = np.concatenate([batch["x"] for batch in recorder.batches])
    assert sorted(seen[:, 0].tolist()) == sorted(np.concatenate(xs)[:, 0].tolist())


def test_async_function_runs_on_the_callers_loop(batcher_factory: Callable[..., Batcher]) -> None:
    sizes: list[int] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def fn(inputs: Arrays) -> dict[str, Array]:
        loops.append(asyncio.get_running_loop())
        sizes.append(len(inputs["x"]))
        await asyncio.sleep(0.001)
        return {"y": inputs["x"] * 2, "total": inputs["x"].sum(1)}

    b = batcher_factory(fn, max_batch_size=16, max_queue_delay_ms=20)
    xs = [rows(i) for i in range(48)]

    async def main() -> tuple[list[Arrays], asyncio.AbstractEventLoop]:
        outs = await asyncio.gather(*(b.submit({"x": x}) for x in xs))
        return outs, asyncio.get_running_loop()

    outs, loop = run(main())
    check_own_rows(xs, outs)
    assert max(sizes) <= 16
    assert any(s > 1 for s in sizes)
    assert all(seen is loop for seen in loops)


def test_submit_sync_from_many_threads(
    recorder: Recorder, batcher_factory: Callable[..., Batcher]
) -> None:
    b = batcher_factory(recorder, max_batch_size=16, max_queue_delay_ms=20)
    results: dict[int, Arrays] = {}
    xs = {i: rows(i, n=1 + i % 2) for i in range(32)}

    def call(i: int) -> None:
        results[i] = b.submit_sync({"x": xs[i]}, timeout=10)

    threads = [threading.Thread(target=call, args=(i,)) for i in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    check_own_rows([xs[i] for i in sorted(xs)], [results[i] for i in sorted(xs)])
    assert max(recorder.sizes) <= 16
    assert any(size > 1 for size in recorder.sizes)


def test_async_function_from_threads_only(batcher_factory: Callable[..., Batcher]) -> None:
    async def fn(inputs: Arrays) -> dict[str, Array]:
        await asyncio.sleep(0)
        return {"y": inputs["x"] * 2, "total": inputs["x"].sum(1)}

    b = batcher_factory(fn, max_batch_size=4, max_queue_delay_ms=5)
    out = b.submit_sync({"x": rows(3)}, timeout=10)
    check_own_rows([rows(3)], [out])


def test_mixed_async_callers_and_threads(
    recorder: Recorder, batcher_factory: Callable[..., Batcher]
) -> None:
    b = batcher_factory(recorder, max_batch_size=32, max_queue_delay_ms=30)
    thread_results: dict[int, Arrays] = {}

    def call(i: int) -> None:
        thread_results[i] = b.submit_sync({"x": rows(i)}, timeout=10)

    async def main() -> list[Arrays]:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(100, 108)]
        for t in threads:
            t.start()
        outs = await asyncio.gather(*(b.submit({"x": rows(i)}) for i in range(16)))
        for t in threads:
            await asyncio.get_running_loop().run_in_executor(None, t.join, 15)
        return outs

    outs = run(main())
    check_own_rows([rows(i) for i in range(16)], outs)
    check_own_rows([rows(i) for i in range(100, 108)], [thread_results[i] for i in range(100, 108)])
    assert sum(recorder.sizes) == 24


def test_incompatible_requests_go_in_separate_batches(
    batcher_factory: Callable[..., Batcher],
) -> None:
    seen: list[tuple[str, tuple[int, ...]]] = []

    def fn(inputs: Arrays) -> dict[str, Array]:
        seen.append((str(inputs["x"].dtype), inputs["x"].shape))
        return {"y": inputs["x"] * 2}

    b = batcher_factory(fn, max_batch_size=64, max_queue_delay_ms=30)
    requests: list[Array] = [
        np.ones((1, 3), np.float32),
        np.ones((2, 4), np.float32),  # other trailing dims
        np.ones((1, 3), np.int64),  # other dtype
        np.full((2, 3), 2, np.float32),
        np.ones((1, 4), np.float32),
    ]

    async def main() -> list[Arrays]:
        return await asyncio.gather(*(b.submit({"x": x}) for x in requests))

    outs = run(main())
    for x, out in zip(requests, outs, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2)
        assert out["y"].dtype == x.dtype
    assert sorted(seen) == sorted([("float32", (3, 3)), ("float32", (3, 4)), ("int64", (1, 3))])


def test_other_input_names_batch_separately_and_order_does_not_matter(
    batcher_factory: Callable[..., Batcher],
) -> None:
    keys: list[tuple[str, ...]] = []

    def fn(inputs: Arrays) -> dict[str, Array]:
        keys.append(tuple(sorted(inputs)))
        return {"n": np.full(len(next(iter(inputs.values()))), len(keys))}

    b = batcher_factory(fn, max_batch_size=64, max_queue_delay_ms=30)
    a, c = np.ones((1, 2), np.float32), np.zeros((1, 1), np.int32)

    async def main() -> Sequence[Arrays]:
        return await asyncio.gather(
            b.submit({"a": a, "c": c}), b.submit({"c": c, "a": a}), b.submit({"a": a})
        )

    run(main())
    assert sorted(keys) == [("a",), ("a", "c")]


def test_a_request_above_max_batch_size_goes_alone(
    recorder: Recorder, batcher_factory: Callable[..., Batcher]
) -> None:
    b = batcher_factory(recorder, max_batch_size=4, max_queue_delay_ms=30)
    big, small = rows(1, n=10), rows(2, n=1)

    async def main() -> Sequence[Arrays]:
        return await asyncio.gather(b.submit({"x": big}), b.submit({"x": small}))

    check_own_rows([big, small], run(main()))
    assert sorted(recorder.sizes) == [1, 10]


@pytest.mark.parametrize("is_async", [False, True])
def test_an_exception_in_fn_reaches_every_member(
    is_async: bool, batcher_factory: Callable[..., Batcher]
) -> None:
    calls: list[int] = []

    class ModelBrokeError(Exception):
        pass

    def broken(inputs: Arrays) -> dict[str, Array]:
        calls.append(len(inputs["x"]))
        raise ModelBrokeError(f"bad batch of {len(inputs['x'])}")

    async def abroken(inputs: Arrays) -> dict[str, Array]:
        return broken(inputs)

    b = batcher_factory(abroken if is_async else broken, max_batch_size=4, max_queue_delay_ms=50)

    async def main() -> list[Arrays | BaseException]:
        return await asyncio.gather(
            *(b.submit({"x": rows(i)}) for i in range(4)), return_exceptions=True
        )

    results = run(main())
    assert calls == [4]
    assert all(isinstance(r, ModelBrokeError) and str(r) == "bad batch of 4" for r in results)
    # Threads too.
    with pytest.raises(ModelBrokeError, match="bad batch of 1"):
        b.submit_sync({"x": rows(9)}, timeout=10)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda x: {"y": x[:-1]}, "output 'y' has 2 rows, but the batch has 3"),
        (lambda x: [x], "must return a dict of arrays, not list"),
        (lambda x: {"y": np.float32(1.0)}, "output 'y' is a scalar"),
    ],
)
def test_a_wrong_answer_from_fn_fails_every_member_clearly(
    answer: Callable[[Array], Any], message: str, batcher_factory: Callable[..., Batcher]
) -> None:
    b = batcher_factory(lambda inputs: answer(inputs["x"]), max_batch_size=3, max_queue_delay_ms=50)

    async def main() -> list[Arrays | BaseException]:
        return await asyncio.gather(
            *(b.submit({"x": rows(i)}) for i in range(3)), return_exceptions=True
        )

    results = run(main())
    for r in results:
        assert isinstance(r, tensorgate.BatchOutputError)
        assert isinstance(r, ValueError)
        assert message in str(r)


def test_queue_full_is_refused_at_once(batcher_factory: Callable[..., Batcher]) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(inputs: Arrays) -> dict[str, Array]:
        started.set()
        release.wait(10)
        return {"y": inputs["x"]}

    b = batcher_factory(slow, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=2)

    async def main() -> None:
        first = asyncio.ensure_future(b.submit({"x": rows(0)}))
        while not started.is_set():  # the first request is in the (blocked) function
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(b.submit({"x": rows(i)})) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(tensorgate.BatchQueueFullError, match="max_queue_size"):
            await b.submit({"x": rows(3)})
        release.set()
        for out, i in zip(await asyncio.gather(first, *queued), (0, 1, 2), strict=True):
            np.testing.assert_array_equal(out["y"], rows(i))

    run(main())


def test_queue_timeout(batcher_factory: Callable[..., Batcher]) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(inputs: Arrays) -> dict[str, Array]:
        started.set()
        release.wait(10)
        return {"y": inputs["x"]}

    b = batcher_factory(slow, max_batch_size=1, max_queue_delay_ms=0, queue_timeout_ms=50)

    async def main() -> None:
        first = asyncio.ensure_future(b.submit({"x": rows(0)}))
        while not started.is_set():
            await asyncio.sleep(0.001)
        waited_from = time.monotonic()
        with pytest.raises(tensorgate.BatchTimeoutError, match="queue_timeout_ms") as info:
            await b.submit({"x": rows(1)})
        assert isinstance(info.value, TimeoutError)
        assert time.monotonic() - waited_from < 5
        release.set()
        await first

    run(main())


def test_a_cancelled_caller_leaves_the_queue_unsent(
    batcher_factory: Callable[..., Batcher],
) -> None:
    release = threading.Event()
    seen: list[float] = []

    def fn(inputs: Arrays) -> dict[str, Array]:
        seen.extend(inputs["x"][:, 0].tolist())
        release.wait(10)
        return {"y": inputs["x"]}

    b = batcher_factory(fn, max_batch_size=4, max_queue_delay_ms=0)

    async def main() -> None:
        first = asyncio.ensure_future(b.submit({"x": rows(1)}))
        while not seen:  # the first batch is in the function
            await asyncio.sleep(0.001)
        doomed = asyncio.ensure_future(b.submit({"x": rows(2)}))
        kept = asyncio.ensure_future(b.submit({"x": rows(3)}))
        await asyncio.sleep(0.01)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        release.set()
        await first
        out = await kept
        np.testing.assert_array_equal(out["y"], rows(3))

    run(main())
    assert 2000.0 not in seen
    assert seen == [1000.0, 3000.0]


def test_cancelling_an_awaiting_task_raises_cancelled_error_in_it(
    batcher_factory: Callable[..., Batcher],
) -> None:
    # Awaiting callers wait on the batcher's own awaitable (not an asyncio future): cancelling
    # the task cancels it, whether the request is still queued or its batch is running, and the
    # other callers are answered as usual.
    gates = [threading.Event(), threading.Event()]
    seen: list[float] = []

    def fn(inputs: Arrays) -> dict[str, Array]:
        calls = len(seen)
        seen.extend(inputs["x"][:, 0].tolist())
        gates[min(calls, 1)].wait(10)
        return {"y": inputs["x"] * 2}

    b = batcher_factory(fn, max_batch_size=2, max_queue_delay_ms=0)

    async def main() -> None:
        running = asyncio.ensure_future(b.submit({"x": rows(1)}))
        while not seen:  # rows(1) is in the function
            await asyncio.sleep(0.001)
        in_batch = asyncio.ensure_future(b.submit({"x": rows(2)}))
        queued = asyncio.ensure_future(b.submit({"x": rows(3)}))
        kept = asyncio.ensure_future(b.submit({"x": rows(4)}))
        await asyncio.sleep(0.01)
        queued.cancel("not needed")
        with pytest.raises(asyncio.CancelledError, match="not needed"):
            await queued
        assert queued.cancelled()
        # A timeout cancels the same way.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.submit({"x": rows(5)}), 0.01)
        gates[0].set()
        out = await running
        np.testing.assert_array_equal(out["y"], rows(1) * 2)
        # A batch that formed before its member left is still answered to the others.
        while len(seen) < 3:
            await asyncio.sleep(0.001)
        in_batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await in_batch
        gates[1].set()
        np.testing.assert_array_equal((await kept)["y"], rows(4) * 2)

    run(main())
    assert 3000.0 not in seen
    assert 5000.0 not in seen
    assert sorted(seen) == [1000.0, 2000.0, 4000.0]


@pytest.mark.parametrize("is_async", [False, True])
def test_answers_wake_each_caller_on_its_own_loop(
    is_async: bool, batcher_factory: Callable[..., Batcher]
) -> None:
    # Callers on two event loops (two threads) share batches; every caller resumes on its own
    # loop's thread, in its own context, with its own rows, and an error reaches all of them.
    def fn(inputs: Arrays) -> dict[str, Array]:
        if (inputs["x"][:, 0] < 0).any():
            raise ValueError("negative rows")
        return {"y": inputs["x"] * 2}

    async def afn(inputs: Arrays) -> dict[str, Array]:
        await asyncio.sleep(0)
        return fn(inputs)

    b = batcher_factory(afn if is_async else fn, max_batch_size=8, max_queue_delay_ms=5)
    var: contextvars.ContextVar[int] = contextvars.ContextVar("caller")
    problems: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    async def caller(i: int, thread: int) -> None:
        var.set(i)
        for _ in range(20):
            x = rows(i)
            try:
                out = await b.submit({"x": -x if i % 7 == 0 else x})
            except ValueError as error:
                errors.append(error)
            else:
                if not np.array_equal(out["y"], x * 2):
                    problems.append(f"caller {i} got other rows")
            if threading.get_ident() != thread or var.get() != i:
                problems.append(f"caller {i} resumed elsewhere")

    def loop_thread(base: int) -> None:
        async def main() -> None:
            thread = threading.get_ident()
            start.wait(10)
            await asyncio.gather(*(caller(base + i, thread) for i in range(1, 9)))

        try:
            run(main())
        except BaseException as error:  # reported by the assertions below
            problems.append(repr(error))

    threads = [threading.Thread(target=loop_thread, args=(base,)) for base in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    # Caller 7 (loop one) and 107 (loop two) sent negative rows: their whole batches failed.
    assert errors
    assert all(str(error) == "negative rows" for error in errors)


def test_split_is_zero_copy(batcher_factory: Callable[..., Batcher]) -> None:
    returned: list[Array] = []

    def fn(inputs: Arrays) -> dict[str, Array]:
        y = inputs["x"] + 1
        returned.append(y)
        return {"y": y}

    b = batcher_factory(fn, max_batch_size=3, max_queue_delay_ms=100)

    async def main() -> list[Arrays]:
        return await asyncio.gather(*(b.submit({"x": rows(i)}) for i in range(3)))

    outs = run(main())
    assert len(returned) == 1
    for i, out in enumerate(outs):
        assert np.shares_memory(out["y"], returned[0])
        np.testing.assert_array_equal(out["y"], rows(i) + 1)


def test_decorator_form(recorder: Recorder) -> None:
    @tensorgate.batch(max_batch_size=4, max_queue_delay_ms=20)
    def double(inputs: Arrays) -> dict[str, Array]:
        return recorder(inputs)

    try:

        async def main() -> list[Arrays]:
            return await asyncio.gather(*(double({"x": rows(i)}) for i in range(8)))

        check_own_rows([rows(i) for i in range(8)], run(main()))
        check_own_rows([rows(9)], [double.submit_sync({"x": rows(9)}, timeout=10)])
        assert isinstance(double, Batcher)
        assert getattr(double, "__name__", None) == "double"
        assert max(recorder.sizes) <= 4
    finally:
        assert double.join(10)


def test_preferred_batch_sizes_go_without_waiting(
    recorder: Recorder, batcher_factory: Callable[..., Batcher]
) -> None:
    # The delay is far longer than the test's bound: only the preferred size sends the batch.
    b = batcher_factory(
        recorder, max_batch_size=16, max_queue_delay_ms=60_000, preferred_batch_sizes=[4]
    )

    async def main() -> list[Arrays]:
        return await asyncio.gather(*(b.submit({"x": rows(i)}) for i in range(4)))

    check_own_rows([rows(i) for i in range(4)], run(main(), timeout=10))
    assert recorder.sizes == [4]


def test_auto_delay(recorder: Recorder, batcher_factory: Callable[..., Batcher]) -> None:
    b = batcher_factory(recorder, max_batch_size=8, max_queue_delay_ms="auto", target_latency_ms=20)

    async def main() -> list[Arrays]:
        return await asyncio.gather(*(b.submit({"x": rows(i)}) for i in range(20)))

    check_own_rows([rows(i) for i in range(20)], run(main()))
    assert max(recorder.sizes) <= 8


def test_close_answers_what_is_queued_then_refuses(recorder: Recorder) -> None:
    b = Batcher(recorder, max_batch_size=8, max_queue_delay_ms=30)

    async def main() -> None:
        pending = [asyncio.ensure_future(b.submit({"x": rows(i)})) for i in range(3)]
        await asyncio.sleep(0)
        b.close()
        assert b.closed
        with pytest.raises(tensorgate.BatcherClosedError):
            await b.submit({"x": rows(5)})
        check_own_rows([rows(i) for i in range(3)], await asyncio.gather(*pending))
        await b.aclose()

    run(main())
    with pytest.raises(tensorgate.BatcherClosedError):
        b.submit_sync({"x": rows(1)})
    assert b.join(5)


def test_context_manager(recorder: Recorder) -> None:
    with Batcher(recorder, max_batch_size=2, max_queue_delay_ms=1) as b:
        check_own_rows([rows(1)], [b.submit_sync({"x": rows(1)}, timeout=10)])
    assert b.closed


def test_bad_inputs_are_refused_clearly(batcher_factory: Callable[..., Batcher]) -> None:
    b = batcher_factory(lambda inputs: inputs, max_batch_size=2, max_queue_delay_ms=1)
    with pytest.raises(TypeError, match="dict of numpy arrays"):
        b.submit_sync([np.ones(2)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input 'x'"):
        b.submit_sync({"x": np.array([[object()]], dtype=object)})
    with pytest.raises(ValueError, match="scalar"):
        b.submit_sync({"x": np.float32(1.0)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="same number of rows"):
        b.submit_sync({"x": np.ones((2, 1)), "z": np.ones((3, 1))})
    with pytest.raises(ValueError, match="at least one array"):
        b.submit_sync({})
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(lambda inputs: inputs, max_batch_size=0)
    # Deadlines past what a clock can hold are refused, not overflowed later.
    with pytest.raises(ValueError, match="at most"):
        Batcher(lambda inputs: inputs, max_queue_delay_ms=1e13)
    with pytest.raises(ValueError, match="at most"):
        Batcher(lambda inputs: inputs, queue_timeout_ms=1e13)


def test_submit_sync_on_an_event_loop_is_refused(batcher_factory: Callable[..., Batcher]) -> None:
    b = batcher_factory(lambda inputs: inputs, max_batch_size=2, max_queue_delay_ms=1)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"await batcher\.submit"):
            b.submit_sync({"x": rows(1)})

    run(main())


def test_submit_sync_timeout(batcher_factory: Callable[..., Batcher]) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(inputs: Arrays) -> dict[str, Array]:
        started.set()
        release.wait(10)
        return {"y": inputs["x"]}

    b = batcher_factory(slow, max_batch_size=1, max_queue_delay_ms=0)
    blocker = threading.Thread(target=lambda: b.submit_sync({"x": rows(0)}, timeout=10))
    blocker.start()
    try:
        assert started.wait(10)
        with pytest.raises(TimeoutError):
            b.submit_sync({"x": rows(1)}, timeout=0.05)
    finally:
        release.set()
        blocker.join(10)


def test_other_dtypes_and_bf16(batcher_factory: Callable[..., Batcher]) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    b = batcher_factory(lambda inputs: {"y": inputs["x"]}, max_batch_size=8, max_queue_delay_ms=20)
    arrays = [
        np.arange(6, dtype=np.float16).reshape(2, 3),
        np.array([[True, False]]),
        np.arange(4, dtype=ml_dtypes.bfloat16).reshape(2, 2),
        np.arange(6, dtype=np.int32).reshape(3, 2)[:, ::-1],  # not contiguous
        np.arange(4, dtype=">i4").reshape(2, 2),  # big-endian
    ]
    for x in arrays:
        out = b.submit_sync({"x": x}, timeout=10)
        np.testing.assert_array_equal(out["y"].astype(np.float64), x.astype(np.float64))
