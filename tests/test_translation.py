"""Translation matrix: every front protocol x every backend protocol gives the same row sums.

One gateway (module fixture) has one route per backend flavour, all serving the row-sum model
(input ``x`` FP32 ``[N, K]`` -> output ``sum`` FP32 ``[N]``):

=============  ==============================================================
route          backend
=============  ==============================================================
kserve-v1      KServe ModelServer, V1 REST (``protocol: v1``)
kserve-v2      KServe ModelServer, V2 REST JSON
kserve-bin     KServe ModelServer, V2 REST with the binary extension
kserve-grpc    KServe ModelServer, gRPC
ml-rest        MLServer, V2 REST (JSON; MLServer has no binary extension)
ml-grpc        MLServer, gRPC
inproc         ``tensorgate.demo:sum`` in the gateway process
=============  ==============================================================

Each is called from every front end: V1 REST (httpx), V2 REST JSON (tritonclient.http), V2 REST
binary in and out (tritonclient.http), gRPC (tritonclient.grpc) and plain V2 JSON (httpx). Every
case sends its own random FP32 matrix and compares with numpy's row sums.

The one pair left out of the matrix, a binary client on the MLServer REST route, has its own test
that pins what the gateway does today (see there).

kserve is never imported here (its protos clash with tritonclient.grpc): both backends are
subprocesses started by the session fixtures of conftest.py.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from servers import Gateway, Server, start_gateway

Array = npt.NDArray[Any]

#: Seconds any one client call may take.
TIMEOUT = 10.0

ROUTES = ("kserve-v1", "kserve-v2", "kserve-bin", "kserve-grpc", "ml-rest", "ml-grpc", "inproc")
V2_FRONTS = ("v2-json", "v2-binary", "grpc", "httpx-v2")
FRONTS = ("v1", *V2_FRONTS)
MATRIX = [(f, r) for f in FRONTS for r in ROUTES]
V2_MATRIX = [(f, r) for f, r in MATRIX if f in V2_FRONTS]
REST_JSON_FRONTS = ("v1", "httpx-v2")

#: The model's metadata, for routes whose backend has none of its own to offer.
SUM_METADATA = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
    "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1]}],
}


def gateway_config(kserve: Server, mlserver: Server) -> dict[str, Any]:
    """One route per backend flavour; every remote backend serves the model as ``sum``."""

    def remote(name: str, url: str, **backend: Any) -> dict[str, Any]:
        return {"name": name, "backend": {"url": url, "model": "sum", **backend}, "timeout_s": 10}

    return {
        "access_log": "off",
        "health_check_interval_s": 0,
        "models": [
            # KServe's V1 server also answers V2 metadata, but say it here: a V1 backend need not.
            {**remote("kserve-v1", kserve.http_url, protocol="v1"), "metadata": SUM_METADATA},
            remote("kserve-v2", kserve.http_url, protocol="v2"),
            remote("kserve-bin", kserve.http_url, protocol="v2", binary=True),
            remote("kserve-grpc", f"grpc://{kserve.grpc_target}"),
            # MLServer has no REST binary extension: binary clients are sent on as JSON.
            remote("ml-rest", mlserver.http_url, protocol="v2", binary=False),
            remote("ml-grpc", f"grpc://{mlserver.grpc_target}"),
            {"name": "inproc", "backend": {"python": "tensorgate.demo:sum"}},
        ],
    }


@pytest.fixture(scope="module")
def gateway(
    kserve_backend: Server, mlserver_backend: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """The gateway in front of every backend flavour, shared by this module."""
    config = gateway_config(kserve_backend, mlserver_backend)
    log_dir: Path = tmp_path_factory.mktemp("gateway-translation")
    server = start_gateway(config, log_dir=log_dir)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Clients:
    """One client of each kind, all pointed at the gateway."""

    http: httpx.Client
    triton_http: Any  # tritonclient.http.InferenceServerClient (untyped)
    triton_grpc: Any  # tritonclient.grpc.InferenceServerClient (untyped)


@pytest.fixture(scope="module")
def clients(gateway: Gateway) -> Iterator[Clients]:
    """Clients with bounded timeouts, reused by every test of the module."""
    http = httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT)
    triton_http = httpclient.InferenceServerClient(
        gateway.http_url.removeprefix("http://"),
        connection_timeout=TIMEOUT,
        network_timeout=TIMEOUT,
    )
    triton_grpc = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        yield Clients(http, triton_http, triton_grpc)
    finally:
        http.close()
        triton_http.close()
        triton_grpc.close()


# -- data ----------------------------------------------------------------------------------------

#: Shapes of the test matrices: None draws a small random [N, K] from the case's seed.
SIZES: dict[str, tuple[int, int] | None] = {"small": None, "large": (48, 257)}


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


# -- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("front", "route"), MATRIX)
def test_row_sums_are_the_same_through_every_front_and_backend(
    clients: Clients, front: str, route: str, size: str
) -> None:
    x = matrix("sums", front, route, size, shape=SIZES[size])
    answer = ask(clients, front, route, x, request_id("sums", front, route, size))
    assert_row_sums(answer.values, x)


@pytest.mark.parametrize(("front", "route"), V2_MATRIX)
def test_v2_clients_get_the_declared_output(clients: Clients, front: str, route: str) -> None:
    """The output is ``sum`` FP32 ``[N]``, as the model's metadata declares and the client asked.

    Whatever protocol the backend speaks: a V1 backend's ``predictions`` are named and typed
    after the route's single declared output, as a V1 client's rows are named after the declared
    input.
    """
    x = matrix("declared", front, route)
    answer = ask(clients, front, route, x, request_id("declared", front, route))
    assert (answer.output, answer.datatype) == ("sum", "FP32"), answer
    assert answer.values.dtype == np.float32
    assert_row_sums(answer.values, x)


@pytest.mark.parametrize(("front", "route"), V2_MATRIX)
def test_v2_responses_name_the_backend_model_and_echo_the_id(
    clients: Clients, front: str, route: str
) -> None:
    """``model_name`` is the backend's model (``sum``) whether the body was passed through or
    translated; ``id`` is the client's id."""
    x = matrix("envelope", front, route)
    rid = request_id("envelope", front, route)
    answer = ask(clients, front, route, x, rid)
    assert answer.id == rid
    assert answer.model_name == ("inproc" if route == "inproc" else "sum")
    assert_row_sums(answer.values, x)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("front", REST_JSON_FRONTS)
def test_rest_responses_echo_the_request_id_header(
    clients: Clients, front: str, route: str
) -> None:
    x = matrix("header", front, route)
    rid = request_id("header", front, route)
    answer = ask(clients, front, route, x, rid)
    assert answer.request_id_header == rid
    assert_row_sums(answer.values, x)


def test_binary_client_on_an_mlserver_route_without_binary_false_is_passed_through(
    mlserver_backend: Server, tmp_path: Path
) -> None:
    """With ``binary`` unset a V2 REST route passes the client's body through as is.

    MLServer 1.7.1 has no REST binary extension: its request validation fails on the binary body,
    its error handler then crashes decoding the bytes as UTF-8, and it answers ``500 Internal
    Server Error`` in text/plain, which the gateway relays with that status and message (the
    matrix route sets ``binary: false`` so that binary clients reach MLServer as JSON).
    """
    route = {"name": "ml-rest", "backend": {"url": mlserver_backend.http_url, "model": "sum"}}
    config = {"access_log": "off", "health_check_interval_s": 0, "models": [route]}
    x = matrix("binary-to-mlserver")
    rid = request_id("binary-to-mlserver")
    with start_gateway(config, log_dir=tmp_path) as gateway:
        client = httpclient.InferenceServerClient(
            gateway.http_url.removeprefix("http://"),
            connection_timeout=TIMEOUT,
            network_timeout=TIMEOUT,
        )
        try:
            with pytest.raises(httpclient.InferenceServerException) as caught:
                ask_triton_http(client, "ml-rest", x, rid, binary=True)
            # MLServer dropped the connection after crashing; the gateway's next request on its
            # pool still gets through (resent on a fresh connection).
            answer = ask_triton_http(client, "ml-rest", x, rid + "-json", binary=False)
            assert_row_sums(answer.values, x)
        finally:
            client.close()
    assert caught.value.status() == "500"
    # Its text/plain body reaches the client in the error envelope.
    assert caught.value.message() == "Internal Server Error"
    # MLServer saw the client's own bytes: its validation error quotes the binary body.
    deadline = time.monotonic() + 5.0
    while f'"id":"{rid}"' not in mlserver_backend.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f'"id":"{rid}"' in mlserver_backend.log()
