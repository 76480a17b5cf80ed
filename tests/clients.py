"""Front-end clients for end-to-end tests: one call of the row-sum model (input ``x`` FP32
``[N, K]`` -> output ``sum`` FP32 ``[N]``) through each front protocol of the gateway, with real
clients (httpx for V1 and hand-written V2 JSON, tritonclient HTTP in JSON or binary form,
tritonclient gRPC), and the checks of their answers.

kserve must never be imported next to this module (its protos clash with tritonclient.grpc).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from servers import Server

Array = npt.NDArray[Any]

#: Seconds any one client call may take.
TIMEOUT = 10.0

#: The model's metadata, for routes whose backend has none of its own to offer.
SUM_METADATA = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
    "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1]}],
}

#: The front ends :func:`ask` knows.
FRONTS = ("v1", "v2-json", "v2-binary", "grpc", "httpx-v2")


@dataclass
class Clients:
    """One client of each kind, all pointed at the gateway."""

    http: httpx.Client
    triton_http: Any  # tritonclient.http.InferenceServerClient (untyped)
    triton_grpc: Any  # tritonclient.grpc.InferenceServerClient (untyped)

    @classmethod
    @contextlib.contextmanager
    def open(cls, server: Server) -> Iterator[Clients]:
        """Clients of ``server`` with bounded timeouts, closed on exit."""
        http = httpx.Client(base_url=server.http_url, timeout=TIMEOUT)
        triton_http = httpclient.InferenceServerClient(
            server.http_url.removeprefix("http://"),
            connection_timeout=TIMEOUT,
            network_timeout=TIMEOUT,
        )
        triton_grpc = grpcclient.InferenceServerClient(server.grpc_target)
        try:
            yield cls(http, triton_http, triton_grpc)
        finally:
            http.close()
            triton_http.close()
            triton_grpc.close()


# -- data ----------------------------------------------------------------------------------------


def matrix(*case: str, shape: tuple[int, int] | None = None) -> Array:
    """A random FP32 matrix of its own for each test case (seeded by the case's names)."""
    rng = np.random.default_rng(zlib.crc32("/".join(case).encode()))
    if shape is None:
        shape = (int(rng.integers(1, 7)), int(rng.integers(1, 10)))
    x: Array = (rng.standard_normal(shape) * 100).astype(np.float32)
    return x


def request_id(*case: str) -> str:
    """A request id unique to the test case."""
    return "req-" + "-".join(case)


def assert_row_sums(actual: Array, x: Array) -> None:
    """``actual`` holds the FP32 row sums of ``x``, within FP32 rounding.

    The backends sum in FP32 too, so only encoding round trips (V1 and JSON text, FP64) differ.
    """
    expected = x.sum(axis=1, dtype=np.float32)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.abs(x).sum(axis=1).max(initial=1.0))
    np.testing.assert_allclose(
        actual.astype(np.float64),
        expected.astype(np.float64),
        rtol=1e-6,
        atol=float(np.finfo(np.float32).eps) * scale,
    )


# -- one call through each front end -------------------------------------------------------------


@dataclass
class Answer:
    """What a front end got back: the one output and, for V2, the response's envelope."""

    values: Array
    output: str | None = None
    """The output's name (V2 only)."""
    datatype: str | None = None
    model_name: str | None = None
    id: str | None = None
    request_id_header: str | None = None
    """The ``x-request-id`` response header (REST calls made with httpx only)."""


#: Numpy dtypes of the datatypes a row-sum answer may come in.
NUMPY = {"FP32": np.float32, "FP64": np.float64}


def ask(clients: Clients, front: str, route: str, x: Array, rid: str) -> Answer:
    """Sends ``x`` to ``route`` through ``front`` and returns the single output."""
    if front == "v1":
        return ask_v1(clients.http, route, x, rid)
    if front == "httpx-v2":
        return ask_httpx_v2(clients.http, route, x, rid)
    if front == "grpc":
        return ask_grpc(clients.triton_grpc, route, x, rid)
    binary = {"v2-json": False, "v2-binary": True}[front]
    return ask_triton_http(clients.triton_http, route, x, rid, binary=binary)


def ask_v1(http: httpx.Client, route: str, x: Array, rid: str) -> Answer:
    """``POST /v1/models/{route}:predict`` with ``{"instances": rows}``."""
    r = http.post(
        f"/v1/models/{route}:predict",
        json={"instances": x.tolist()},
        headers={"x-request-id": rid},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["predictions"], body
    predictions = body["predictions"]
    assert isinstance(predictions, list), body
    assert all(isinstance(v, float | int) and not isinstance(v, bool) for v in predictions), body
    return Answer(
        np.asarray(predictions, dtype=np.float64), request_id_header=r.headers.get("x-request-id")
    )


def ask_httpx_v2(http: httpx.Client, route: str, x: Array, rid: str) -> Answer:
    """``POST /v2/models/{route}/infer`` with a hand-written JSON body (no ``outputs``)."""
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    r = http.post(
        f"/v2/models/{route}/infer",
        json={"id": rid, "inputs": [tensor]},
        headers={"x-request-id": rid},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    [output] = body["outputs"]
    dtype = NUMPY[output["datatype"]]
    values = np.asarray(output["data"], dtype=dtype).reshape(output["shape"])
    return Answer(
        values,
        output=output["name"],
        datatype=output["datatype"],
        model_name=body.get("model_name"),
        id=body.get("id"),
        request_id_header=r.headers.get("x-request-id"),
    )


def ask_triton_http(client: Any, route: str, x: Array, rid: str, *, binary: bool) -> Answer:
    """tritonclient.http, inputs and the requested output ``sum`` in JSON or binary form."""
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = httpclient.InferRequestedOutput("sum", binary_data=binary)
    result = client.infer(route, [tensor], outputs=[wanted], request_id=rid)
    response = result.get_response()
    [output] = response["outputs"]
    values = result.as_numpy(output["name"])
    assert values is not None, response
    if binary and output["name"] == "sum":
        assert "binary_data_size" in (output.get("parameters") or {}), response
    return Answer(
        values,
        output=output["name"],
        datatype=output["datatype"],
        model_name=response.get("model_name"),
        id=response.get("id"),
    )


def ask_grpc(client: Any, route: str, x: Array, rid: str) -> Answer:
    """tritonclient.grpc (inputs as raw contents), requested output ``sum``."""
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    wanted = grpcclient.InferRequestedOutput("sum")
    result = client.infer(route, [tensor], outputs=[wanted], request_id=rid, client_timeout=TIMEOUT)
    response = result.get_response()
    [output] = response.outputs
    values = result.as_numpy(output.name)
    assert values is not None, response
    return Answer(
        values,
        output=output.name,
        datatype=output.datatype,
        model_name=response.model_name,
        id=response.id,
    )
