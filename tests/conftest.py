"""Shared helpers for the tensorgate test suite: the datatype table, sample arrays and comparisons.

Expected datatypes are taken from tritonclient (the reference V2 client), never from tensorgate.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, cast

import ml_dtypes
import numpy as np
import numpy.typing as npt
import pytest
import tensorgate
from clients import Clients
from recorder import Recorder, running_recorder
from servers import Server, start_kserve, start_mlserver
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

Array = npt.NDArray[Any]

#: Every fixed-size numpy dtype tensorgate supports (BF16 through ml_dtypes).
FIXED_DTYPES: list[np.dtype[Any]] = [
    np.dtype(t)
    for t in (
        np.bool_,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.float16,
        np.float32,
        np.float64,
        ml_dtypes.bfloat16,
    )
]

#: Datatypes JSON cannot carry (they always travel in binary form).
HALF = {"FP16", "BF16"}


def datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype, as the reference client names it."""
    name = np_to_triton_dtype(dtype)
    assert name is not None, dtype
    return str(name)


#: Every V2 datatype name, from the reference client.
ALL_DATATYPES: list[str] = [datatype(d) for d in FIXED_DTYPES] + ["BYTES"]
JSON_DATATYPES: list[str] = [d for d in ALL_DATATYPES if d not in HALF]


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype, as the reference client maps it."""
    dtype: np.dtype[Any] = np.dtype(triton_to_np_dtype(name))
    return dtype


def sample(name: str, shape: tuple[int, ...] = (2, 3), seed: int = 0) -> Array:
    """A deterministic array of V2 datatype ``name`` covering the extremes of its range."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    if name == "BYTES":
        pool = [
            b"",
            b"a",
            b"hello world",
            "h\u00e9llo \u2603".encode(),
            b"\x00\x01\xfe\xff",
            b"x" * 300,
        ]
        return np.array(
            [pool[i % len(pool)] + bytes([i % 256]) * (i % 3) for i in range(count)], dtype=object
        ).reshape(shape)
    dtype = numpy_dtype(name)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=count, dtype=dtype, endpoint=True)
        values[:2] = [info.min, info.max][:count]
        return values.reshape(shape)
    values64 = rng.standard_normal(count) * 1000
    if count >= 3:
        values64[:3] = [0.0, -0.0, 1.0 / 3.0]
    return values64.astype(dtype).reshape(shape)


def assert_same(actual: object, expected: Array) -> None:
    """``actual`` is an ndarray with the dtype, shape and values (floats: bitwise) of ``expected``.

    BYTES arrays compare as object arrays of ``bytes``.
    """
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.shape == expected.shape
    if expected.dtype == object or expected.dtype.kind in "SU":
        assert actual.dtype == object
        as_bytes = [e.encode() if isinstance(e, str) else bytes(e) for e in expected.reshape(-1)]
        got = list(actual.reshape(-1))
        assert all(type(e) is bytes for e in got), [type(e) for e in got]
        assert got == as_bytes
        return
    assert actual.dtype == expected.dtype.newbyteorder("="), (actual.dtype, expected.dtype)
    if expected.dtype.kind == "f" or expected.dtype == ml_dtypes.bfloat16:
        # Bitwise: keeps -0.0 and every NaN payload distinct, which == would not.
        width = f"u{expected.dtype.itemsize}"
        np.testing.assert_array_equal(
            np.ascontiguousarray(actual).view(width),
            np.ascontiguousarray(expected.astype(actual.dtype)).view(width),
        )
    else:
        np.testing.assert_array_equal(actual, expected)


def raw_bytes(tensor: tensorgate.Tensor) -> bytes:
    """A copy of the tensor's raw form, read through the buffer protocol of ``Tensor.raw``."""
    # cast: the stub of Buffer does not declare __buffer__ (it only exists at runtime).
    return bytes(memoryview(cast(Any, tensor.raw)))


def tensors(names: list[str], shape: tuple[int, ...] = (2, 3)) -> list[tensorgate.Tensor]:
    """One tensor per datatype, named after it (``x_fp32`` ...)."""
    return [
        tensorgate.Tensor.from_numpy(f"x_{n.lower()}", sample(n, shape, seed=i), datatype=n)
        for i, n in enumerate(names)
    ]


def assert_protocol_error(
    error: BaseException, status: int, *fragments: str | tuple[str, ...]
) -> None:
    """``error`` is a ProtocolError with HTTP ``status`` whose message names every fragment.

    A tuple of fragments passes when the message holds any one of them.
    """
    assert isinstance(error, tensorgate.ProtocolError)
    assert isinstance(error, ValueError)
    assert error.status_code == status
    assert error.grpc_code == {400: 3, 413: 8}[status]
    assert str(error) == error.message
    for fragment in fragments:
        alternatives = (fragment,) if isinstance(fragment, str) else fragment
        assert any(a in error.message for a in alternatives), (fragment, error.message)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- real backends (tests/servers.py) ---------------------------------------------------------


@pytest.fixture(scope="session")
def kserve_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A KServe ModelServer (models sum, slow, picky, stats) shared by the session.

    Tests must not stop it; use :func:`start_kserve` for one they stop or restart.
    """
    with start_kserve(tmp_path_factory.mktemp("kserve")) as server:
        yield server


@pytest.fixture(scope="session")
def mlserver_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An MLServer 1.7.1 (model sum, V2 REST and gRPC) shared by the session."""
    with start_mlserver(tmp_path_factory.mktemp("mlserver")) as server:
        yield server


class ServerFactory:
    """Starts fresh servers for one test (``factory()``); all are stopped when the test ends."""

    def __init__(self, start: Callable[[Path], Server], log_dir: Path) -> None:
        self._start = start
        self._log_dir = log_dir
        self.started: list[Server] = []

    def __call__(self) -> Server:
        server = self._start(self._log_dir / str(len(self.started)))
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        """Stops every server started (stopping one twice is harmless)."""
        for server in self.started:
            server.stop()


@pytest.fixture(name="start_kserve")
def start_kserve_fixture(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory of fresh KServe backends, for tests that stop, signal or restart one."""
    factory = ServerFactory(start_kserve, tmp_path / "kserve")
    yield factory
    factory.stop_all()


def _servers_of(item: pytest.Item) -> list[Server]:
    """The servers a test uses: Server fixtures and those its factories started."""
    found: list[Server] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Server):
            found.append(value)
        elif isinstance(value, ServerFactory):
            found.extend(value.started)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attaches the log of every server a failed test used to its report."""
    report = yield
    if report.failed:
        for server in _servers_of(item):
            report.sections.append((f"{server.name} log (pid {server.pid})", server.log()))
    return report


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """A recording V2 REST backend (see ``tests/recorder.py``)."""
    with running_recorder() as server:
        yield server


@pytest.fixture(scope="module")
def clients(gateway: Server) -> Iterator[Clients]:
    """Clients of the module's ``gateway`` fixture with bounded timeouts, one of each kind."""
    with Clients.open(gateway) as opened:
        yield opened
