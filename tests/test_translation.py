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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from clients import (
    FRONTS,
    SUM_METADATA,
    TIMEOUT,
    Clients,
    ask,
    ask_triton_http,
    assert_row_sums,
    matrix,
    request_id,
)
from servers import Gateway, Server, start_gateway

#: Shapes of the test matrices: None draws a small random [N, K] from the case's seed.
SIZES: dict[str, tuple[int, int] | None] = {"small": None, "large": (48, 257)}

ROUTES = ("kserve-v1", "kserve-v2", "kserve-bin", "kserve-grpc", "ml-rest", "ml-grpc", "inproc")
V2_FRONTS = tuple(f for f in FRONTS if f != "v1")
MATRIX = [(f, r) for f in FRONTS for r in ROUTES]
V2_MATRIX = [(f, r) for f, r in MATRIX if f in V2_FRONTS]
REST_JSON_FRONTS = ("v1", "httpx-v2")


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
    with start_gateway(config, log_dir=tmp_path_factory.mktemp("gateway-translation")) as server:
        yield server


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
