"""Configuration of ``tensorgate serve``: YAML file, ``TENSORGATE_*`` environment, CLI flags.

Precedence is flags > environment > file > defaults. :func:`load_config` validates everything and
returns a frozen :class:`GatewayConfig`; :meth:`GatewayConfig.to_core` turns it into the plain,
fully-resolved dict the Rust core deserializes (durations in integer milliseconds, per-model limits
merged with the global ones, built-in forwarded headers included).

Every problem raises :class:`ConfigError` (a ``ValueError``) whose message names where the bad value
came from and which field it is, e.g. ``config.yaml: models[1].backend.url: must start with http://
or grpc://``, ``TENSORGATE_HTTP_PORT: must be an integer, got 'x'`` or ``--protocol: ...``.

The YAML is read with YAML 1.2 booleans (only ``true``/``false``), so ``access_log: off`` is the
string ``"off"``; duplicate keys in a mapping are an error rather than silently overwritten.

>>> cfg = load_config(env={"TENSORGATE_BACKEND": "http://127.0.0.1:8085"})
>>> [(m.name, m.backend.urls) for m in cfg.models]
[('*', ('http://127.0.0.1:8085',))]
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import yaml

from tensorgate.demo import DEMO_MODELS
from tensorgate.models import TensorSpec

__all__ = [
    "BUILTIN_FORWARD_HEADERS",
    "DATATYPES",
    "BackendConfig",
    "BatchingConfig",
    "ConfigError",
    "GatewayConfig",
    "LimitsConfig",
    "ModelConfig",
    "ModelMetadata",
    "load_config",
]

BUILTIN_FORWARD_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "authorization",
)
"""Request headers always forwarded to backends (tracing and auth)."""

DATATYPES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
)  # fmt: skip
"""V2 tensor datatype names accepted in static model metadata."""

AccessLog = Literal["text", "json", "off"]
Readiness = Literal["all", "any", "live"]
Protocol = Literal["v1", "v2", "both"]
BackendKind = Literal["http", "grpc", "python"]

_ACCESS_LOGS: tuple[AccessLog, ...] = ("text", "json", "off")
_READINESS: tuple[Readiness, ...] = ("all", "any", "live")
_PROTOCOLS: tuple[Protocol, ...] = ("v1", "v2", "both")
# Headers the gateway sets itself (hop-by-hop or body framing): never copied from the client.
_RESERVED_HEADERS = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "inference-header-content-length",
    ]
)
_HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
_NETLOC_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]+)")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_MAX_INT = 2**63 - 1  # every integer ends up in a Rust u64 / usize
_MAX_SECONDS = 1e9
_MAX_MS = 1e9  # the core's longest batch queue wait (batch::Policy::MAX_WAIT)
_WILDCARD = "*"
_DEFAULT_TIMEOUT_S = 600.0


class ConfigError(ValueError):
    """Invalid configuration; the message starts with the source and the field path."""

    def __init__(self, message: str, *, source: str = "", field: str = "") -> None:
        super().__init__(message)
        self.source = source
        """The file name, environment variable or ``--flag`` the bad value came from."""
        self.field = field
        """The field path inside a file, e.g. ``models[1].backend.url`` (``""`` if none)."""


# --------------------------------------------------------------------------- public dataclasses


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds applied when decoding untrusted payloads (mirrors :class:`tensorgate.Limits`)."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_tensor_elements: int = 256 * 1024 * 1024
    max_rank: int = 32
    max_tensors: int = 256
    max_bytes_element_len: int = 16 * 1024 * 1024
    max_json_depth: int = 64

    def to_core(self) -> dict[str, int]:
        """The six limits as a dict (all keys always present)."""
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_tensor_elements": self.max_tensor_elements,
            "max_rank": self.max_rank,
            "max_tensors": self.max_tensors,
            "max_bytes_element_len": self.max_bytes_element_len,
            "max_json_depth": self.max_json_depth,
        }


@dataclass(frozen=True)
class BackendConfig:
    """Where a route's requests go.

    ``kind="http"``: ``urls`` (``http://host:port`` replicas), ``protocol`` (``v1``, ``v2``, or
    ``both`` for a server that speaks both, as KServe's ModelServer does: each client's request
    goes through in its own protocol), ``binary``, ``model``.
    ``kind="grpc"``: ``urls`` (``grpc://host:port`` replicas), ``model``; always V2.
    ``kind="python"``: ``target``, an in-process model as ``"module:attr"``.
    """

    kind: BackendKind
    urls: tuple[str, ...] = ()
    protocol: Protocol = "v2"
    binary: bool | None = None
    """``True``: send tensors binary; ``False``: send JSON; ``None``: pass the client's form."""
    model: str | None = None
    target: str | None = None

    def to_core(self) -> dict[str, Any]:
        """The backend as the Rust core expects it (``grpc://`` rewritten to ``http://``)."""
        if self.kind == "python":
            return {"kind": "python", "target": self.target}
        if self.kind == "grpc":
            urls = ["http://" + url.removeprefix("grpc://") for url in self.urls]
            return {"kind": "grpc", "urls": urls, "model": self.model}
        return {
            "kind": "http",
            "urls": list(self.urls),
            "protocol": self.protocol,
            "binary": self.binary,
            "model": self.model,
        }


@dataclass(frozen=True)
class ModelMetadata:
    """Static V2 model metadata served for a route instead of asking the backend."""

    platform: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def to_core(self) -> dict[str, Any]:
        """``{"platform", "inputs", "outputs"}``."""
        return {
            "platform": self.platform,
            "inputs": [t.to_metadata() for t in self.inputs],
            "outputs": [t.to_metadata() for t in self.outputs],
        }


@dataclass(frozen=True)
class BatchingConfig:
    """A model's dynamic batching: requests merged along dimension 0 into one backend call.

    Sizes count rows (dimension 0); the queue counts requests. ``max_queue_delay_ms`` is how
    long the oldest request may wait for a fuller batch, or ``"auto"`` to learn the wait from
    the backend's measured latency within ``target_latency_ms``.
    """

    max_batch_size: int = 32
    max_queue_delay_ms: float | Literal["auto"] = 2.0
    target_latency_ms: float = 100.0
    """Only with ``max_queue_delay_ms: auto``: the latency the oldest request should stay within."""
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    queue_timeout_ms: float | None = None
    """Longest wait in the queue (then 504); ``None``: the model's ``timeout_s``."""
    max_inflight_batches: int = 2

    def describe(self) -> str:
        """One line for startup and ``check-config`` output."""
        delay = (
            f"auto within {self.target_latency_ms:g} ms"
            if self.max_queue_delay_ms == "auto"
            else f"{self.max_queue_delay_ms:g} ms"
        )
        return f"batching up to {self.max_batch_size} rows, delay {delay}"

    def to_core(self, timeout_s: float) -> dict[str, Any]:
        """The batcher settings as the Rust core expects them."""
        if self.max_queue_delay_ms == "auto":
            delay: dict[str, Any] = {
                "kind": "auto",
                "target_latency_ms": max(1, round(self.target_latency_ms)),
            }
        else:
            delay = {"kind": "fixed", "micros": round(self.max_queue_delay_ms * 1000)}
        queue_timeout_ms = self.queue_timeout_ms
        return {
            "max_batch_size": self.max_batch_size,
            "delay": delay,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
            "max_queue_size": self.max_queue_size,
            # The model's timeout can exceed the longest queue wait the core accepts.
            "queue_timeout_ms": max(
                1,
                round(
                    queue_timeout_ms
                    if queue_timeout_ms is not None
                    else min(timeout_s * 1000, _MAX_MS)
                ),
            ),
            "max_inflight_batches": self.max_inflight_batches,
        }


@dataclass(frozen=True)
class ModelConfig:
    """One route: a model name (or ``"*"``, the default route) and how to serve it."""

    name: str
    backend: BackendConfig
    timeout_s: float = _DEFAULT_TIMEOUT_S
    retries: int = 0
    retry_backoff_s: float = 0.1
    max_concurrency: int = 1024
    eject_after_failures: int = 5
    eject_s: float = 10.0
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metadata: ModelMetadata | None = None
    batching: BatchingConfig | None = None

    def to_core(self) -> dict[str, Any]:
        """The route as the Rust core expects it (durations in milliseconds)."""
        return {
            "name": self.name,
            "backend": self.backend.to_core(),
            "timeout_ms": _ms(self.timeout_s),
            "retries": self.retries,
            "retry_backoff_ms": _ms(self.retry_backoff_s),
            "max_concurrency": self.max_concurrency,
            "eject_after_failures": self.eject_after_failures,
            "eject_ms": _ms(self.eject_s),
            "limits": self.limits.to_core(),
            "metadata": None if self.metadata is None else self.metadata.to_core(),
            "batching": None if self.batching is None else self.batching.to_core(self.timeout_s),
        }


@dataclass(frozen=True)
class GatewayConfig:
    """The validated, fully-resolved gateway configuration (see :func:`load_config`)."""

    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    drain_timeout_s: float = 30.0
    access_log: AccessLog = "text"
    readiness: Readiness = "all"
    """What ``/v2/health/ready`` and gRPC ``ServerReady`` follow besides the drain: every route
    has a healthy backend (``all``, KServe's rule), at least one has (``any``), or only the
    gateway itself (``live``). A model whose backend is down answers 503 in every case."""
    forward_headers: tuple[str, ...] = BUILTIN_FORWARD_HEADERS
    """Built-ins first, then the configured extras; lowercase, no duplicates."""
    health_check_interval_s: float = 2.0
    metadata_ttl_s: float = 30.0
    python_workers: int = 2
    python_queue_size: int = 4096
    """In-process model calls waiting for a worker before new ones are shed (503)."""
    connect_timeout_s: float = 5.0
    """Longest wait for a TCP connection to a backend (then 503)."""
    pool_idle_timeout_s: float = 4.0
    """Keep-alive connections to a REST backend idle this long are closed, not reused: below
    the backend's own idle timeout (uvicorn's, under KServe and MLServer, is 5 s), so that a
    request is never written to a connection the backend is closing."""
    client_timeout_s: float = 30.0
    """Longest wait for a client's request headers, and for its body once the headers are in."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """Global limits; each model's ``limits`` already has them merged in."""
    models: tuple[ModelConfig, ...] = ()
    source: str = field(default="", compare=False)
    """The file the configuration was read from (for messages; not part of equality); ``""``
    when none."""

    def to_core(self) -> dict[str, Any]:
        """The JSON-able snapshot the Rust core deserializes (exact keys, durations in ms)."""
        return {
            "host": self.host,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "grpc_max_message_bytes": self.grpc_max_message_bytes,
            "drain_timeout_ms": _ms(self.drain_timeout_s),
            "access_log": self.access_log,
            "readiness": self.readiness,
            "forward_headers": list(self.forward_headers),
            "health_check_interval_ms": _ms(self.health_check_interval_s),
            "metadata_ttl_ms": _ms(self.metadata_ttl_s),
            "python_workers": self.python_workers,
            "python_queue_size": self.python_queue_size,
            "connect_timeout_ms": _ms(self.connect_timeout_s),
            "pool_idle_timeout_ms": _ms(self.pool_idle_timeout_s),
            "client_timeout_ms": _ms(self.client_timeout_s),
            "models": [m.to_core() for m in self.models],
        }

    def python_models(self) -> list[tuple[str, str]]:
        """``(route name, "module:attr")`` of every in-process Python backend, in config order."""
        return [(name, target) for _, name, target in self._python_routes()]

    def _python_routes(self) -> list[tuple[int, str, str]]:
        return [
            (index, m.name, m.backend.target)
            for index, m in enumerate(self.models)
            if m.backend.kind == "python" and m.backend.target is not None
        ]

    def model_error(self, name: str, message: str) -> ConfigError:
        """A :class:`ConfigError` about the in-process model of route ``name``, naming the file
        and the field (``gateway.yaml: models[1].backend.python: ...``)."""
        index = next((i for i, route, _ in self._python_routes() if route == name), None)
        field = "backend.python" if index is None else f"models[{index}].backend.python"
        return _Ctx(self.source, field).error(message)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# --------------------------------------------------------------------------- field context


@dataclass(frozen=True)
class _Ctx:
    """Where a value comes from: a source (file, env var, flag) and a path inside it.

    ``text`` marks string sources (environment, flags): numbers and lists are parsed from text.
    """

    source: str
    path: str = ""
    text: bool = False

    def at(self, key: str) -> _Ctx:
        return replace(self, path=f"{self.path}.{key}" if self.path else key)

    def index(self, i: int) -> _Ctx:
        return replace(self, path=f"{self.path}[{i}]")

    def error(self, message: str) -> ConfigError:
        where = ": ".join(part for part in (self.source, self.path) if part)
        return ConfigError(f"{where}: {message}", source=self.source, field=self.path)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"))
    for cls, kind in kinds:
        if isinstance(value, cls):
            text = repr(value)
            return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else "?"


# --------------------------------------------------------------------------- scalar parsers

_Parser = Callable[[object, _Ctx], Any]


def _as_int(value: object, ctx: _Ctx, lo: int, hi: int = _MAX_INT) -> int:
    if ctx.text and isinstance(value, str):
        if not _INT_RE.fullmatch(value.strip()):
            raise ctx.error(f"must be an integer, got {value!r}{_service_link_hint(value, ctx)}")
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(f"must be an integer, got {_describe(value)}")
    if not lo <= value <= hi:
        bound = f">= {lo}" if hi == _MAX_INT else f"between {lo} and {hi}"
        raise ctx.error(f"must be {bound}, got {value}")
    return value


def _service_link_hint(value: str, ctx: _Ctx) -> str:
    if not (ctx.source.startswith("TENSORGATE_") and value.startswith(("tcp://", "udp://"))):
        return ""
    return (
        " (this looks like a Kubernetes service link variable, set for a Service named like "
        "'tensorgate-http'; rename the Service or set enableServiceLinks: false in the pod)"
    )


def _as_seconds(value: object, ctx: _Ctx, *, allow_zero: bool) -> float:
    if ctx.text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ctx.error(f"must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(f"must be a number of seconds, got {_describe(value)}")
    seconds = float(value)
    # One message for every way out of the range, so that fixing one never meets another.
    lowest = "0" if allow_zero else "0.001 (1 ms)"
    if (
        not math.isfinite(seconds)
        or seconds < 0
        or seconds > _MAX_SECONDS
        or (seconds == 0 and not allow_zero)
    ):
        raise ctx.error(f"must be between {lowest} and {_MAX_SECONDS:g} seconds, got {value}")
    if 0 < seconds < 0.001:
        raise ctx.error(
            f"must be at least 0.001 (1 ms){' or 0' if allow_zero else ''}, got {value}"
        )
    return seconds


def _as_str(value: object, ctx: _Ctx) -> str:
    if not isinstance(value, str):
        raise ctx.error(f"must be a string, got {_describe(value)}")
    return value


def _as_bool(value: object, ctx: _Ctx) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(f"must be true or false, got {_describe(value)}")
    return value


def _as_choice(value: object, ctx: _Ctx, choices: Collection[str]) -> str:
    text = _as_str(value, ctx)
    if text not in choices:
        raise ctx.error(f"must be one of {', '.join(choices)}, got {text!r}")
    return text


def _as_list(value: object, ctx: _Ctx) -> list[object]:
    if not isinstance(value, list):
        raise ctx.error(f"must be a list, got {_describe(value)}")
    return value


def _as_mapping(value: object, ctx: _Ctx, allowed: Collection[str]) -> dict[str, object]:
    """A mapping with string keys from ``allowed``; ``null`` values are dropped (= not set)."""
    if not isinstance(value, dict):
        raise ctx.error(f"must be a mapping, got {_describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ctx.error(f"keys must be strings, got {_describe(key)}")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ctx.error(
                f"unknown key {key!r}{hint}; allowed keys: {', '.join(sorted(allowed))}"
            )
    return {k: v for k, v in value.items() if v is not None}


def _as_name(value: object, ctx: _Ctx) -> str:
    name = _as_str(value, ctx)
    if not name or "/" in name or name != name.strip():
        raise ctx.error(f"must be a non-empty name without '/' or surrounding spaces, got {name!r}")
    return name


def _int_field(lo: int, hi: int = _MAX_INT) -> _Parser:
    return lambda value, ctx: _as_int(value, ctx, lo, hi)


def _seconds_field(*, allow_zero: bool) -> _Parser:
    return lambda value, ctx: _as_seconds(value, ctx, allow_zero=allow_zero)


# --------------------------------------------------------------------------- top-level fields


def _parse_host(value: object, ctx: _Ctx) -> str:
    host = _as_str(value, ctx).strip()
    if not host or any(c.isspace() for c in host):
        raise ctx.error(f"must be a host name or IP address, got {value!r}")
    return host


def _parse_access_log(value: object, ctx: _Ctx) -> str:
    return _as_choice(value, ctx, _ACCESS_LOGS)


def _parse_readiness(value: object, ctx: _Ctx) -> str:
    return _as_choice(value, ctx, _READINESS)


def _parse_forward_headers(value: object, ctx: _Ctx) -> tuple[str, ...]:
    """Extra header names (a list, or a comma list from text) → built-ins + extras."""
    if ctx.text and isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    headers = list(BUILTIN_FORWARD_HEADERS)
    for i, item in enumerate(_as_list(value, ctx)):
        item_ctx = ctx if ctx.text else ctx.index(i)
        name = _as_str(item, item_ctx).strip().lower()
        if not _HEADER_RE.fullmatch(name):
            raise item_ctx.error(f"{item!r} is not a valid header name")
        if name in _RESERVED_HEADERS:
            raise item_ctx.error(f"{name!r} is set by the gateway itself and cannot be forwarded")
        if name not in headers:
            headers.append(name)
    return tuple(headers)


_TOP_FIELDS: dict[str, _Parser] = {
    "host": _parse_host,
    "http_port": _int_field(0, 65535),
    "grpc_port": _int_field(0, 65535),
    # protobuf messages cannot exceed 2 GiB
    "grpc_max_message_bytes": _int_field(1024, 2**31 - 1),
    "drain_timeout_s": _seconds_field(allow_zero=False),
    "access_log": _parse_access_log,
    "readiness": _parse_readiness,
    "forward_headers": _parse_forward_headers,
    "health_check_interval_s": _seconds_field(allow_zero=True),
    "metadata_ttl_s": _seconds_field(allow_zero=True),
    "python_workers": _int_field(1, 1024),
    "python_queue_size": _int_field(1, 1 << 20),
    "connect_timeout_s": _seconds_field(allow_zero=False),
    "pool_idle_timeout_s": _seconds_field(allow_zero=False),
    "client_timeout_s": _seconds_field(allow_zero=False),
}

_LIMIT_KEYS = tuple(LimitsConfig().to_core())


def _parse_limits(value: object, ctx: _Ctx) -> dict[str, int]:
    """A partial set of limits (only the keys given)."""
    data = _as_mapping(value, ctx, _LIMIT_KEYS)
    return {key: _as_int(raw, ctx.at(key), 1) for key, raw in data.items()}


# --------------------------------------------------------------------------- backends


def _parse_url(value: object, ctx: _Ctx) -> tuple[str, str]:
    """``(scheme, "scheme://host:port")`` from a backend URL (trailing slash stripped)."""
    text = _as_str(value, ctx).strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "grpc"):
        raise ctx.error(f"must start with http:// or grpc://, got {text!r}")
    rest = rest.rstrip("/")
    if any(c in rest for c in "/?#"):
        raise ctx.error(f"must be {scheme}://host:port without a path, got {text!r}")
    if "@" in rest:
        raise ctx.error(f"must not contain credentials, got {text!r}")
    match = _NETLOC_RE.fullmatch(rest)
    if match is None:
        raise ctx.error(f"must be {scheme}://host:port (a host and a port), got {text!r}")
    if not 1 <= int(match.group(2)) <= 65535:
        raise ctx.error(f"port must be between 1 and 65535, got {text!r}")
    return scheme, f"{scheme}://{rest}"


def _parse_url_list(value: object, ctx: _Ctx) -> list[tuple[str, str]]:
    items = _as_list(value, ctx)
    if not items:
        raise ctx.error("must list at least one URL")
    parsed = [_parse_url(item, ctx.index(i)) for i, item in enumerate(items)]
    for i, (scheme, url) in enumerate(parsed):
        if scheme != parsed[0][0]:
            raise ctx.index(i).error(f"all replicas must use {parsed[0][0]}://, got {url!r}")
        if url in (u for _, u in parsed[:i]):
            raise ctx.index(i).error(f"duplicate URL {url!r}")
    return parsed


def _url_backend(scheme: str, urls: list[str], protocol: str, protocol_ctx: _Ctx) -> BackendConfig:
    if scheme == "grpc":
        if protocol != "v2":
            raise protocol_ctx.error(f"{protocol} is not available over grpc:// (gRPC is V2)")
        return BackendConfig(kind="grpc", urls=tuple(urls))
    return BackendConfig(kind="http", urls=tuple(urls), protocol=_protocol(protocol))


def _protocol(text: str) -> Protocol:
    return "v1" if text == "v1" else "both" if text == "both" else "v2"


def _parse_python_target(value: object, ctx: _Ctx) -> str:
    target = _as_str(value, ctx).strip()
    module, sep, attr = target.partition(":")
    parts = [*module.split("."), *attr.split(".")]
    if not sep or not all(part.isidentifier() for part in parts):
        raise ctx.error(f"must be 'module:attr' (e.g. 'pkg.models:predict'), got {target!r}")
    return target


_BACKEND_KEYS = ("url", "urls", "python", "protocol", "binary", "model")
_URL_ONLY_KEYS = ("protocol", "binary", "model")


def _parse_backend(value: object, ctx: _Ctx) -> BackendConfig:
    data = _as_mapping(value, ctx, _BACKEND_KEYS)
    given = [key for key in ("url", "urls", "python") if key in data]
    if len(given) != 1:
        got = f"got {' and '.join(given)}" if given else "got none"
        raise ctx.error(f"must set exactly one of url, urls, python ({got})")
    if given == ["python"]:
        for key in _URL_ONLY_KEYS:
            if key in data:
                raise ctx.at(key).error("only applies to url/urls backends, not python")
        return BackendConfig(
            kind="python", target=_parse_python_target(data["python"], ctx.at("python"))
        )
    if "url" in data:
        parsed = [_parse_url(data["url"], ctx.at("url"))]
    else:
        parsed = _parse_url_list(data["urls"], ctx.at("urls"))
    protocol = _as_choice(data.get("protocol", "v2"), ctx.at("protocol"), _PROTOCOLS)
    binary = _as_bool(data["binary"], ctx.at("binary")) if "binary" in data else None
    scheme = parsed[0][0]
    if binary is not None and (scheme == "grpc" or protocol == "v1"):
        raise ctx.at("binary").error("only applies to http:// backends with protocol v2 or both")
    backend = _url_backend(scheme, [u for _, u in parsed], protocol, ctx.at("protocol"))
    model = _as_name(data["model"], ctx.at("model")) if "model" in data else None
    return replace(backend, binary=binary, model=model)


# --------------------------------------------------------------------------- models


def _parse_tensors(value: object, ctx: _Ctx) -> tuple[TensorSpec, ...]:
    tensors: list[TensorSpec] = []
    for i, item in enumerate(_as_list(value, ctx)):
        item_ctx = ctx.index(i)
        data = _as_mapping(item, item_ctx, ("name", "datatype", "shape"))
        for key in ("name", "datatype", "shape"):
            if key not in data:
                raise item_ctx.at(key).error("is required")
        name = _as_name(data["name"], item_ctx.at("name"))
        if any(t.name == name for t in tensors):
            raise item_ctx.at("name").error(f"duplicate tensor name {name!r}")
        datatype = _as_choice(data["datatype"], item_ctx.at("datatype"), DATATYPES)
        shape_ctx = item_ctx.at("shape")
        dims = _as_list(data["shape"], shape_ctx)
        shape = tuple(_as_int(d, shape_ctx.index(j), -1) for j, d in enumerate(dims))
        tensors.append(TensorSpec(name=name, datatype=datatype, shape=shape))
    return tuple(tensors)


def _parse_metadata(value: object, ctx: _Ctx) -> ModelMetadata:
    data = _as_mapping(value, ctx, ("platform", "inputs", "outputs"))
    return ModelMetadata(
        platform=_as_str(data.get("platform", ""), ctx.at("platform")),
        inputs=_parse_tensors(data.get("inputs", []), ctx.at("inputs")),
        outputs=_parse_tensors(data.get("outputs", []), ctx.at("outputs")),
    )


def _as_ms(value: object, ctx: _Ctx, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(f"must be a number of milliseconds, got {_describe(value)}")
    ms = float(value)
    if not math.isfinite(ms) or ms < 0 or ms > _MAX_MS or (ms == 0 and not allow_zero):
        low = "0" if allow_zero else "more than 0"
        raise ctx.error(f"must be from {low} to {_MAX_MS:g} milliseconds, got {value}")
    return ms


def _parse_queue_delay(value: object, ctx: _Ctx) -> float | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise ctx.error(f"must be a number of milliseconds or 'auto', got {value!r}")
    return _as_ms(value, ctx, allow_zero=True)


_BATCHING_FIELDS: dict[str, _Parser] = {
    "max_batch_size": _int_field(1, 1 << 20),
    "max_queue_delay_ms": _parse_queue_delay,
    "target_latency_ms": lambda value, ctx: _as_ms(value, ctx, allow_zero=False),
    "preferred_batch_sizes": lambda value, ctx: tuple(
        _as_int(item, ctx.index(i), 1, 1 << 20) for i, item in enumerate(_as_list(value, ctx))
    ),
    "max_queue_size": _int_field(1, 1 << 20),
    "queue_timeout_ms": lambda value, ctx: _as_ms(value, ctx, allow_zero=False),
    "max_inflight_batches": _int_field(1, 1024),
}


def _parse_batching(value: object, ctx: _Ctx) -> BatchingConfig:
    data = _as_mapping(value, ctx, _BATCHING_FIELDS)
    settings = {key: _BATCHING_FIELDS[key](raw, ctx.at(key)) for key, raw in data.items()}
    batching = BatchingConfig(**settings)
    if "target_latency_ms" in settings and batching.max_queue_delay_ms != "auto":
        raise ctx.at("target_latency_ms").error("only applies with max_queue_delay_ms: auto")
    for i, size in enumerate(batching.preferred_batch_sizes):
        if size > batching.max_batch_size:
            raise (
                ctx.at("preferred_batch_sizes")
                .index(i)
                .error(f"must not exceed max_batch_size ({batching.max_batch_size}), got {size}")
            )
    return replace(
        batching, preferred_batch_sizes=tuple(sorted(set(batching.preferred_batch_sizes)))
    )


_MODEL_FIELDS: dict[str, _Parser] = {
    "name": _as_name,
    "backend": _parse_backend,
    "timeout_s": _seconds_field(allow_zero=False),
    "retries": _int_field(0, 10),
    "retry_backoff_s": _seconds_field(allow_zero=True),
    "max_concurrency": _int_field(1),
    "eject_after_failures": _int_field(1),
    "eject_s": _seconds_field(allow_zero=False),
    "limits": _parse_limits,
    "metadata": _parse_metadata,
    "batching": _parse_batching,
}


def _parse_model(value: object, ctx: _Ctx) -> dict[str, Any]:
    """The fields a model entry sets explicitly (``limits`` partial); resolved in ``_build``."""
    data = _as_mapping(value, ctx, _MODEL_FIELDS)
    for key in ("name", "backend"):
        if key not in data:
            raise ctx.at(key).error("is required")
    return {key: _MODEL_FIELDS[key](raw, ctx.at(key)) for key, raw in data.items()}


def _parse_models(value: object, ctx: _Ctx) -> list[dict[str, Any]]:
    drafts: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(_as_list(value, ctx)):
        draft = _parse_model(item, ctx.index(i))
        name = draft["name"]
        if name in seen:
            what = (
                "only one wildcard route '*' is allowed"
                if name == _WILDCARD
                else f"duplicate model name {name!r}"
            )
            raise ctx.index(i).at("name").error(f"{what} (also models[{seen[name]}])")
        seen[name] = i
        drafts.append(draft)
    return drafts


# --------------------------------------------------------------------------- sources and merge


@dataclass
class _Builder:
    """Settings accumulated source by source; later sources overwrite earlier ones."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, _Ctx] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    models: list[dict[str, Any]] | None = None
    """Model drafts from the file; ``None`` when it has no ``models`` key at all."""
    default_timeout_s: float | None = None
    source: str = ""
    backend: tuple[object, _Ctx] | None = None
    protocol: tuple[object, _Ctx] | None = None

    def set(self, key: str, raw: object, ctx: _Ctx) -> None:
        self.values[key] = _TOP_FIELDS[key](raw, ctx)
        self.origins[key] = ctx


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (``off``/``yes`` stay strings) and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_yaml(path: str | os.PathLike[str]) -> object:
    label = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{label}: cannot read config file: {reason}", source=label) from None
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{label}: {where}: invalid YAML: {problem}", source=label) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {exc}", source=label) from None


def _apply_file(builder: _Builder, path: str | os.PathLike[str]) -> None:
    ctx = _Ctx(os.fspath(path))
    document = _read_yaml(path)
    if document is None:  # an empty file
        return
    data = _as_mapping(document, ctx, (*_TOP_FIELDS, "limits", "models"))
    for key, raw in data.items():
        if key == "limits":
            builder.limits.update(_parse_limits(raw, ctx.at(key)))
        elif key == "models":
            builder.models = _parse_models(raw, ctx.at(key))
        else:
            builder.set(key, raw, ctx.at(key))


_ENV_TOP = {
    "TENSORGATE_HOST": "host",
    "TENSORGATE_HTTP_PORT": "http_port",
    "TENSORGATE_GRPC_PORT": "grpc_port",
    "TENSORGATE_GRPC_MAX_MESSAGE_BYTES": "grpc_max_message_bytes",
    "TENSORGATE_DRAIN_TIMEOUT_S": "drain_timeout_s",
    "TENSORGATE_ACCESS_LOG": "access_log",
    "TENSORGATE_READINESS": "readiness",
    "TENSORGATE_FORWARD_HEADERS": "forward_headers",
    "TENSORGATE_HEALTH_CHECK_INTERVAL_S": "health_check_interval_s",
    "TENSORGATE_METADATA_TTL_S": "metadata_ttl_s",
    "TENSORGATE_PYTHON_WORKERS": "python_workers",
    "TENSORGATE_PYTHON_QUEUE_SIZE": "python_queue_size",
    "TENSORGATE_CONNECT_TIMEOUT_S": "connect_timeout_s",
    "TENSORGATE_POOL_IDLE_TIMEOUT_S": "pool_idle_timeout_s",
    "TENSORGATE_CLIENT_TIMEOUT_S": "client_timeout_s",
}


def _apply_env(builder: _Builder, env: Mapping[str, str]) -> None:
    def get(name: str) -> tuple[str, _Ctx] | None:
        value = env.get(name, "")
        return (value, _Ctx(name, text=True)) if value.strip() else None

    for name, key in _ENV_TOP.items():
        if (item := get(name)) is not None:
            builder.set(key, *item)
    if (item := get("TENSORGATE_MAX_BODY_BYTES")) is not None:
        builder.limits["max_body_bytes"] = _as_int(*item, 1)
    if (item := get("TENSORGATE_TIMEOUT_S")) is not None:
        builder.default_timeout_s = _as_seconds(*item, allow_zero=False)
    builder.backend = get("TENSORGATE_BACKEND") or builder.backend
    builder.protocol = get("TENSORGATE_BACKEND_PROTOCOL") or builder.protocol


_FLAG_TOP = ("host", "http_port", "grpc_port", "access_log", "drain_timeout_s", "python_workers")


def _apply_flags(builder: _Builder, flags: Mapping[str, object]) -> None:
    for key, value in flags.items():
        if value is None:
            continue
        ctx = _Ctx("--" + key.replace("_", "-"), text=True)
        if key in _FLAG_TOP:
            builder.set(key, value, ctx)
        elif key == "backend":
            builder.backend = (value, ctx)
        elif key == "protocol":
            builder.protocol = (value, ctx)
        else:
            allowed = ", ".join((*_FLAG_TOP, "backend", "protocol"))
            raise ConfigError(f"unknown flag {key!r}; allowed: {allowed}", source=key)


def _sidecar_backend(builder: _Builder) -> BackendConfig | None:
    """The backend of the ``TENSORGATE_BACKEND`` / ``--backend`` wildcard route, if any."""
    if builder.backend is None:
        if builder.protocol is not None:
            raise builder.protocol[1].error("requires a backend URL (TENSORGATE_BACKEND/--backend)")
        return None
    scheme, url = _parse_url(*builder.backend)
    protocol_raw, protocol_ctx = builder.protocol or ("v2", builder.backend[1])
    protocol = _as_choice(protocol_raw, protocol_ctx, _PROTOCOLS)
    return _url_backend(scheme, [url], protocol, protocol_ctx)


def _with_sidecar(drafts: list[dict[str, Any]], backend: BackendConfig) -> list[dict[str, Any]]:
    """Point the wildcard route at ``backend`` (its other settings kept), or append one."""
    if any(d["name"] == _WILDCARD for d in drafts):
        return [{**d, "backend": backend} if d["name"] == _WILDCARD else d for d in drafts]
    return [*drafts, {"name": _WILDCARD, "backend": backend}]


def _check_ports(builder: _Builder, values: Mapping[str, Any]) -> None:
    if values["http_port"] == values["grpc_port"] != 0:
        key, other = ("grpc_port", "http_port")
        if "grpc_port" not in builder.origins:
            key, other = other, key
        raise builder.origins[key].error(f"must differ from {other} ({values[other]})")


def _build(builder: _Builder, demo: bool) -> GatewayConfig:
    defaults = GatewayConfig()
    values = {key: getattr(defaults, key) for key in _TOP_FIELDS} | builder.values
    _check_ports(builder, values)
    limits = replace(defaults.limits, **builder.limits)
    timeout_s = builder.default_timeout_s or _DEFAULT_TIMEOUT_S
    drafts = builder.models or []
    if (sidecar := _sidecar_backend(builder)) is not None:
        drafts = _with_sidecar(drafts, sidecar)
    elif builder.models is None and demo:
        drafts = [
            {"name": name, "backend": BackendConfig(kind="python", target=target)}
            for name, target in DEMO_MODELS.items()
        ]
    models = tuple(
        ModelConfig(
            **{"timeout_s": timeout_s, **d, "limits": replace(limits, **d.get("limits", {}))}
        )
        for d in drafts
    )
    return GatewayConfig(**values, limits=limits, models=models, source=builder.source)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    demo: bool = False,
) -> GatewayConfig:
    """Load, merge and validate the gateway configuration.

    :param path: YAML file; ``None`` falls back to ``$TENSORGATE_CONFIG``, then to no file.
    :param env: environment variables (``None`` means :data:`os.environ`); only ``TENSORGATE_*``
        names are read and empty values count as unset. ``TENSORGATE_BACKEND`` (+
        ``TENSORGATE_BACKEND_PROTOCOL``) points the wildcard route ``"*"`` at a URL, adding it if
        the file has none.
    :param flags: CLI flags by name (``host``, ``http_port``, ``grpc_port``, ``access_log``,
        ``drain_timeout_s``, ``python_workers``, ``backend``, ``protocol``); ``None`` values are
        ignored, strings are parsed like environment values.
    :raises ConfigError: on any unreadable, malformed or invalid setting.

    Flags beat environment, which beats the file, which beats the defaults. A model's own
    ``limits`` and ``timeout_s`` beat the global ones (``TENSORGATE_MAX_BODY_BYTES``,
    ``TENSORGATE_TIMEOUT_S``). With no ``models`` key and no backend anywhere, ``models`` is
    empty, or with ``demo`` the built-in demo models (:data:`tensorgate.demo.DEMO_MODELS`, with
    the global limits and timeout like any route); an explicit ``models: []`` stays empty.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get("TENSORGATE_CONFIG", "").strip():
        path = environ["TENSORGATE_CONFIG"].strip()
    builder = _Builder()
    if path is not None:
        builder.source = os.fspath(path)
        _apply_file(builder, path)
    _apply_env(builder, environ)
    _apply_flags(builder, flags or {})
    return _build(builder, demo)
