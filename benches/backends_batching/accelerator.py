"""The simulated accelerator behind both batching backends (KServe and MLServer): one cost model.

A call on ``rows`` rows blocks its caller for ``ACCEL_FIXED_MS`` milliseconds plus
``ACCEL_PER_ROW_US`` microseconds per row (defaults 2 ms and 20 µs: a batch of 32 takes 2.64 ms,
so one row costs 2.02 ms alone and 82.5 µs in a full batch). The wait is a ``time.sleep``: like a
synchronous call into a GPU it holds the server's thread (and, in a sync predict, its event loop)
but burns no CPU, so the two cores stay with the servers, the gateway and wrk. Calls never
overlap: the server's thread is blocked, and a lock serialises calls from other threads anyway
(one device).

Every call is counted: calls, rows, the time actually slept (``time.sleep`` overshoots by tens of
microseconds) and a histogram of rows per call. ``stats()`` reads them (cumulative since start);
each backend exposes them as a V2 model ``stats``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

FIXED_S = float(os.environ.get("ACCEL_FIXED_MS", "2")) / 1e3
PER_ROW_S = float(os.environ.get("ACCEL_PER_ROW_US", "20")) / 1e6
#: Calls with more rows than this are counted in the last histogram bin.
MAX_ROWS = 256

_lock = threading.Lock()
_calls = 0
_rows = 0
_busy_ns = 0
_sizes = np.zeros(MAX_ROWS + 1, dtype=np.int64)


def run(x: Array) -> Array:
    """Row sums of the FP32 matrix ``x`` after the accelerator's time for ``len(x)`` rows."""
    global _calls, _rows, _busy_ns
    rows = int(x.shape[0])
    with _lock:
        start = time.perf_counter_ns()
        time.sleep(FIXED_S + PER_ROW_S * rows)
        _busy_ns += time.perf_counter_ns() - start
        _calls += 1
        _rows += rows
        _sizes[min(rows, MAX_ROWS)] += 1
    y: Array = x.sum(axis=1, dtype=np.float32)
    return y


def stats() -> dict[str, Array]:
    """Cumulative counters as INT64 arrays: ``calls`` [1], ``rows`` [1], ``busy_us`` [1] and
    ``sizes`` [MAX_ROWS + 1] (``sizes[k]``: calls with ``k`` rows)."""
    with _lock:
        return {
            "calls": np.array([_calls], dtype=np.int64),
            "rows": np.array([_rows], dtype=np.int64),
            "busy_us": np.array([_busy_ns // 1000], dtype=np.int64),
            "sizes": _sizes.copy(),
        }
