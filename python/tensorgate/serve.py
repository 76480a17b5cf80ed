"""Running the gateway: the Rust servers plus the Python side that serves in-process models,
renders ``/metrics``, reloads on SIGHUP and drains on SIGTERM.

The Rust core answers every request on its own tokio threads. Work that needs Python reaches
the worker threads started here through ``Gateway.next_call()``, which waits without the GIL,
so a busy model never blocks health checks or forwarding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from tensorgate import _core, models
from tensorgate.config import GatewayConfig, ModelConfig, ModelMetadata
from tensorgate.metrics import GatewayCollector

log = logging.getLogger("tensorgate")

#: Seconds a worker waits for work before checking whether it should stop.
_POLL_S = 0.2


def _with_model_metadata(
    config: GatewayConfig, loaded: Mapping[str, models.LoadedModel]
) -> GatewayConfig:
    """Fills the metadata of in-process routes from the models' declared tensors."""

    def fill(route: ModelConfig) -> ModelConfig:
        model = loaded.get(route.name)
        if model is None or route.metadata is not None:
            return route
        metadata = ModelMetadata("tensorgate-python", model.inputs, model.outputs)
        return dataclasses.replace(route, metadata=metadata)

    return dataclasses.replace(config, models=tuple(fill(m) for m in config.models))


def load_models(
    config: GatewayConfig, running: Mapping[str, models.LoadedModel] | None = None
) -> dict[str, models.LoadedModel]:
    """Imports every in-process model of ``config`` (route name -> model); a route whose target
    is already ``running`` keeps that instance instead of loading it again.

    A model that cannot be loaded is a :class:`~tensorgate.config.ConfigError` naming the file
    and the route's field.
    """
    loaded = {}
    for name, target in config.python_models():
        current = (running or {}).get(name)
        if current is not None and current.target == target:
            loaded[name] = current
            continue
        try:
            loaded[name] = models.load(target)
        except ValueError as error:
            raise config.model_error(name, f"model {name!r}: {error}") from error
    return loaded


class Server:
    """A started gateway. ``Server(config)`` binds the ports; :meth:`run` blocks until
    SIGTERM/SIGINT (or :meth:`stop`) and drains."""

    def __init__(self, config: GatewayConfig, *, reload: Callable[[], GatewayConfig] | None = None):
        self._reload_source = reload
        self._models = load_models(config)
        self.config = _with_model_metadata(config, self._models)
        self._stop = threading.Event()
        # Set only once the gateway has drained: calls still in flight at SIGTERM need workers.
        self._closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="tensorgate-async", daemon=True
        )
        self._loop_thread.start()
        self.gateway = _core.Gateway(json.dumps(self.config.to_core()))
        self._collector = GatewayCollector(self.gateway.metrics_json)
        REGISTRY.register(self._collector)
        self._workers = [
            threading.Thread(target=self._work, name=f"tensorgate-worker-{i}", daemon=True)
            for i in range(self.config.python_workers)
        ]
        # Its own thread, so a scrape never waits for a worker busy with a model.
        self._workers.append(
            threading.Thread(
                target=self._work, kwargs={"metrics": True}, name="tensorgate-metrics", daemon=True
            )
        )
        for worker in self._workers:
            worker.start()

    @property
    def http_port(self) -> int:
        return self.gateway.http_port

    @property
    def grpc_port(self) -> int:
        return self.gateway.grpc_port

    def describe(self) -> str:
        """The startup banner: listening addresses and routes."""
        host = self.config.host
        lines = [
            f"tensorgate {_core.__version__} listening on http://{host}:{self.http_port} "
            f"(REST, h2c, gRPC) and {host}:{self.grpc_port} (gRPC)",
        ]
        for route in self.config.models:
            backend = route.backend
            target = backend.target if backend.kind == "python" else ", ".join(backend.urls)
            kind = "python" if backend.kind == "python" else f"{backend.kind} {backend.protocol}"
            if backend.kind == "grpc":
                kind = "grpc v2"
            batching = "" if route.batching is None else f" ({route.batching.describe()})"
            lines.append(f"  model {route.name!r} -> {kind} {target}{batching}")
        return "\n".join(lines)

    def reload(self) -> None:
        """Re-reads the configuration and swaps the routes; a bad config keeps the old one."""
        if self._reload_source is None:
            return
        try:
            config = self._reload_source()
            loaded = load_models(config, self._models)
            # Resolvable before the core routes a request to them; old ones stay for requests
            # still in flight on the old routes.
            self._models = {**self._models, **loaded}
            config = _with_model_metadata(config, loaded)
            self.gateway.reload(json.dumps(config.to_core()))
        except (ValueError, _core.ProtocolError) as error:
            log.error("reload failed, keeping the running configuration: %s", error)
            return
        self._models, self.config = loaded, config
        log.warning("configuration reloaded: %d routes", len(config.models))

    def stop(self) -> None:
        """Asks :meth:`run` to drain and return."""
        self._stop.set()

    def run(self) -> bool:
        """Serves until stopped, then drains. Returns whether every request finished."""
        handlers = self._install_signals()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        return self.close()

    def close(self) -> bool:
        """Drains and stops the gateway and the workers."""
        self.gateway.set_draining()
        drained = self.gateway.drain()
        self._stop.set()
        self._closed.set()
        for worker in self._workers:
            worker.join(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        REGISTRY.unregister(self._collector)
        return drained

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, frame: FrameType | None) -> None:
            self.gateway.set_draining()
            self._stop.set()

        def reload(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=self.reload, name="tensorgate-reload", daemon=True).start()

        previous: dict[int, Any] = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, stop),
            signal.SIGINT: signal.signal(signal.SIGINT, stop),
        }
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
        return previous

    def _work(self, metrics: bool = False) -> None:
        while not self._closed.is_set():
            call = self.gateway.next_call(_POLL_S, metrics=metrics)
            if call is None:
                continue
            if call.kind == "metrics":
                call.respond_metrics(generate_latest(REGISTRY).decode())
            else:
                self._infer(call)

    def _infer(self, call: _core.PendingCall) -> None:
        name, request = call.model, call.request
        model = self._models.get(name or "")
        if model is None or request is None:
            call.fail(f"Model with name {name} does not exist.", 404)
            return
        try:
            arrays = {tensor.name: tensor.numpy() for tensor in request.inputs}
            result: Any = model.fn(arrays)
            if model.is_async:
                result = asyncio.run_coroutine_threadsafe(result, self._loop).result()
            outputs = models.as_arrays(result, model.target)
            tensors = [_core.Tensor.from_numpy(key, value) for key, value in outputs.items()]
            call.respond(_core.InferResponse(name or "", tensors, id=request.id))
        except _core.ProtocolError as error:
            call.fail(error.message, error.status_code)
        except models.InvalidInput as error:
            call.fail(str(error), 400)
        except Exception as error:  # a model's failure is its caller's 500, and the log's
            log.exception("model %s failed", name)
            call.fail(f"{type(error).__name__} : {error}", 500)


def serve(config: GatewayConfig, *, reload: Callable[[], GatewayConfig] | None = None) -> int:
    """Runs the gateway until SIGTERM/SIGINT; the process exit code."""
    server = Server(config, reload=reload)
    print(server.describe(), file=sys.stderr, flush=True)
    drained = server.run()
    return 0 if drained else 1
