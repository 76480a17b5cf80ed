"""A recording V2 REST backend for tests that check what reaches a backend: every answer
carries ``X-Recorded: 1``, every ``/infer`` answers output ``sum`` = [1.0] (V1 ``:predict``
answers ``{"predictions": [1.0]}``; a request with the parameter ``busy`` a 503 with
``Retry-After: 7``), repository calls answer like KServe, and every POST's path and headers are
kept."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers import HOST

#: Seconds to wait for a client's call.
TIMEOUT = 10.0

HANG_S = 3.0


class Recorder(ThreadingHTTPServer):
    """A V2 REST backend: every ``/infer`` answers output ``sum`` = [1.0], repository calls
    answer like KServe (model ``hang`` after :data:`HANG_S` s); keeps every POST's path and
    headers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), RecorderHandler)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        #: Seconds every readiness or liveness answer waits (a slow health check).
        self.health_delay_s = 0.0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://{HOST}:{self.server_address[1]}"

    def headers_of(self, request_id: str) -> dict[str, str] | None:
        """The headers of the POST the backend received with this ``x-request-id``."""
        with self.lock:
            found = [h for _, h in self.seen if h.get("x-request-id") == request_id]
        return found[0] if found else None


class RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def _answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("x-recorded", "1")  # a header of the backend's own
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.endswith(("/ready", "/live")):
            time.sleep(self.server.health_delay_s)
            self._answer(200, {"ready": True, "live": True})
        else:
            self._answer(404, {"error": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        with self.server.lock:
            self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = self.path.split("/")
        if self.path.startswith("/v2/repository/models/"):
            model, action = parts[4], parts[5]
            if model == "hang":
                time.sleep(HANG_S)
            self._answer(200, {"name": model, action: True})
            return
        request = json.loads(raw or b"{}")
        if request.get("parameters", {}).get("busy"):
            self._answer(503, {"error": "busy, come back later"}, {"retry-after": "7"})
            return
        model = parts[3] if len(parts) > 3 else "?"
        output = {"name": "sum", "shape": [1], "datatype": "FP32", "data": [1.0]}
        body = {"model_name": model, "id": request.get("id"), "outputs": [output]}
        if "instances" in request:
            body = {"predictions": [1.0]}
        self._answer(200, body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


@contextlib.contextmanager
def running_recorder() -> Iterator[Recorder]:
    """A :class:`Recorder` serving on a thread until the block ends (the ``recorder`` fixture)."""
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
