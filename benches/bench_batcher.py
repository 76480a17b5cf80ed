"""In-process batcher benchmark (issue 4): ``tensorgate.Batcher`` against a plain asyncio
batcher in Ray Serve's ``@serve.batch`` pattern, on the same function, in the same run.

    taskset -c 0 python benches/bench_batcher.py [--requests 20000] [--rounds 5] [--loop uvloop]

The baseline (``AsyncioBatcher`` below) is what Ray Serve does: an ``asyncio.Queue`` of
``(inputs, future)``, a batching task that takes the first request, then waits on an
``asyncio.Event`` with ``asyncio.wait_for`` for the rest of the batch time and drains the queue
up to ``max_batch_size``, ``np.concatenate`` of the inputs, one call, ``np.split`` of the
outputs and ``set_result`` on each future.

``concurrency`` async callers on one event loop (the default asyncio loop, or uvloop with
``--loop uvloop``: both batchers on the same loop) each send requests
of one ``[1, 16]`` FP32 row in a loop until ``--requests`` were answered; every answer is
checked. Two functions: ``trivial`` (``x * 2``: the batcher's overhead is all there is) and
``fixed`` (a 100 µs busy wait per call plus ``x * 2``, like a small model). ``per request`` is
wall time / requests; ``overhead`` subtracts the time spent inside the function (measured in
it), so it is what the batcher itself costs per request. Each figure is the best of
``--rounds`` rounds (the least noisy estimate on a shared machine). ``ratio`` is baseline
overhead / tensorgate overhead (> 1: tensorgate is cheaper). max_batch_size is 32;
max_queue_delay_ms is 0 with one caller (there is nobody to wait for) and 2 otherwise.
A last line gives the cost of the awaiting alone (a stub resolving the callers' futures, no
batching work): a floor that both batchers pay, included in both overheads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import tensorgate

Array = npt.NDArray[Any]
Arrays = dict[str, Array]
MAX_BATCH_SIZE = 32
ROW = (1, 16)


class AsyncioBatcher:
    """Ray Serve's ``@serve.batch`` pattern, with numpy concatenation and splitting."""

    def __init__(
        self,
        fn: Callable[[Arrays], Mapping[str, Array] | Awaitable[Mapping[str, Array]]],
        max_batch_size: int,
        max_queue_delay_ms: float,
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.timeout_s = max_queue_delay_ms / 1000
        self.queue: asyncio.Queue[tuple[Mapping[str, Array], asyncio.Future[Arrays]]] = (
            asyncio.Queue()
        )
        self.put_event = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, inputs: Mapping[str, Array]) -> Arrays:
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((inputs, future))
        self.put_event.set()
        return await future

    async def _wait_for_batch(self) -> list[tuple[Mapping[str, Array], asyncio.Future[Arrays]]]:
        batch = [await self.queue.get()]
        start = time.monotonic()
        while True:
            remaining = max(self.timeout_s - (time.monotonic() - start), 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.put_event.wait(), remaining)
            while len(batch) < self.max_batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            if self.queue.empty():
                self.put_event.clear()
            if time.monotonic() - start >= self.timeout_s or len(batch) >= self.max_batch_size:
                return batch

    async def _run(self) -> None:
        while True:
            batch = await self._wait_for_batch()
            names = list(batch[0][0])
            merged = {n: np.concatenate([inputs[n] for inputs, _ in batch]) for n in names}
            rows = [len(inputs[names[0]]) for inputs, _ in batch]
            try:
                result = self.fn(merged)
                outputs = await result if inspect.isawaitable(result) else result
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            cuts = np.cumsum(rows)[:-1]
            parts = {name: np.split(np.asarray(v), cuts) for name, v in outputs.items()}
            for i, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result({name: p[i] for name, p in parts.items()})

    def close(self) -> None:
        self.task.cancel()


class Timed:
    """The benchmarked function: records the time spent inside it."""

    def __init__(self, busy_us: float) -> None:
        self.busy_s = busy_us / 1e6
        self.inside = 0.0
        self.calls = 0

    def __call__(self, inputs: Arrays) -> dict[str, Array]:
        start = time.perf_counter()
        if self.busy_s:
            end = start + self.busy_s
            while time.perf_counter() < end:
                pass
        out = {"y": inputs["x"] * 2}
        self.inside += time.perf_counter() - start
        self.calls += 1
        return out


Submit = Callable[[Mapping[str, Array]], Awaitable[Arrays]]
T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Runs `main` on a new event loop of the kind chosen with ``--loop``."""
    with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
        return runner.run(main)


LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] | None = None


async def drive(submit: Submit, concurrency: int, requests: int) -> float:
    """Wall time for `requests` answered requests from `concurrency` callers."""
    left = requests

    async def caller(i: int) -> None:
        nonlocal left
        x = np.full(ROW, i, np.float32)
        while left > 0:
            left -= 1
            out = await submit({"x": x})
            if out["y"][0, 0] != 2 * i:
                raise AssertionError(f"caller {i} got another caller's rows")

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return time.perf_counter() - start


def measure(
    kind: str, busy_us: float, concurrency: int, requests: int
) -> tuple[float, float, float]:
    """(per request, overhead per request, mean batch size) in µs, one round."""
    delay_ms = 0.0 if concurrency == 1 else 2.0
    fn = Timed(busy_us)

    async def run() -> float:
        if kind == "tensorgate":
            batcher = tensorgate.Batcher(fn, MAX_BATCH_SIZE, delay_ms)
            try:
                await drive(batcher.submit, concurrency, min(requests, 500))  # warm-up
                fn.inside, fn.calls = 0.0, 0
                return await drive(batcher.submit, concurrency, requests)
            finally:
                await batcher.aclose()
        baseline = AsyncioBatcher(fn, MAX_BATCH_SIZE, delay_ms)
        try:
            await drive(baseline.submit, concurrency, min(requests, 500))
            fn.inside, fn.calls = 0.0, 0
            return await drive(baseline.submit, concurrency, requests)
        finally:
            baseline.close()

    wall = run_loop(run())
    return wall / requests * 1e6, (wall - fn.inside) / requests * 1e6, requests / max(fn.calls, 1)


def measure_floor(concurrency: int, requests: int) -> float:
    """µs per request of the awaiting alone: futures resolved in groups of MAX_BATCH_SIZE by a
    stub that does no queueing, merging or splitting (what any asyncio batcher pays)."""

    async def run() -> float:
        loop = asyncio.get_running_loop()
        pending: list[tuple[Mapping[str, Array], asyncio.Future[Arrays]]] = []

        async def submit(inputs: Mapping[str, Array]) -> Arrays:
            future: asyncio.Future[Arrays] = loop.create_future()
            pending.append((inputs, future))
            if len(pending) >= min(MAX_BATCH_SIZE, concurrency):
                batch = pending[:]
                pending.clear()
                for inp, fut in batch:
                    fut.set_result({"y": inp["x"] * 2})
            return await future

        return await drive(submit, concurrency, requests)

    return run_loop(run()) / requests * 1e6


def measure_threads(threads: int, requests: int) -> tuple[float, float]:
    """tensorgate's submit_sync from `threads` threads: (per request, mean batch) in µs."""
    fn = Timed(0)
    batcher = tensorgate.Batcher(fn, MAX_BATCH_SIZE, 2.0)
    per_thread = requests // threads

    def caller(i: int) -> None:
        x = np.full(ROW, i, np.float32)
        for _ in range(per_thread):
            if batcher.submit_sync({"x": x})["y"][0, 0] != 2 * i:
                raise AssertionError("wrong rows")

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    batcher.join()
    total = per_thread * threads
    return wall / total * 1e6, total / max(fn.calls, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,32,128")
    parser.add_argument("--threads", type=int, default=32, help="submit_sync row (0 = off)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        global LOOP_FACTORY
        LOOP_FACTORY = uvloop.new_event_loop

    print(
        "| fn | callers | tensorgate per request | tensorgate overhead | asyncio per request "
        "| asyncio overhead | overhead ratio | mean batch (tg / asyncio) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, busy_us in (("trivial", 0.0), ("fixed 100 µs", 100.0)):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            ours: list[tuple[float, float, float]] = []
            theirs: list[tuple[float, float, float]] = []
            for _ in range(args.rounds):  # interleaved, so drift hits both alike
                ours.append(measure("tensorgate", busy_us, concurrency, args.requests))
                theirs.append(measure("asyncio", busy_us, concurrency, args.requests))
            o = min(ours, key=lambda r: r[1])
            t = min(theirs, key=lambda r: r[1])
            print(
                f"| {name} | {concurrency} | {o[0]:.1f} µs | {o[1]:.1f} µs | {t[0]:.1f} µs "
                f"| {t[1]:.1f} µs | {t[1] / o[1]:.2f}x | {o[2]:.1f} / {t[2]:.1f} |",
                flush=True,
            )
    floors = {
        c: min(measure_floor(c, args.requests) for _ in range(args.rounds))
        for c in (int(c) for c in args.concurrency.split(","))
    }
    print(
        "\nawaiting alone (futures resolved by a stub, no batching work): "
        + ", ".join(f"{c} callers {f:.1f} µs" for c, f in floors.items())
    )
    if args.threads:
        best = min(
            (measure_threads(args.threads, args.requests) for _ in range(args.rounds)),
            key=lambda r: r[0],
        )
        print(
            f"\nsubmit_sync from {args.threads} threads (trivial fn): {best[0]:.1f} µs per "
            f"request, mean batch {best[1]:.1f}"
        )


if __name__ == "__main__":
    main()
