"""The ``tensorgate`` command: ``serve``, ``check-config`` and ``--version``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tensorgate import ProtocolError, __version__
from tensorgate.config import ConfigError, GatewayConfig, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensorgate",
        description="A Rust-accelerated data plane for model serving (KServe V1/V2).",
    )
    parser.add_argument("--version", action="version", version=f"tensorgate {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser(
        "serve", help="run the gateway (the built-in demo models when nothing is configured)"
    )
    serve.add_argument("--config", help="YAML configuration file (env TENSORGATE_CONFIG)")
    serve.add_argument("--host", help="listen address (default 0.0.0.0)")
    serve.add_argument("--http-port", type=int, help="REST port (default 8080)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 8081)")
    serve.add_argument("--backend", help="sidecar mode: forward every model to this URL")
    serve.add_argument(
        "--protocol",
        choices=["v1", "v2", "both"],
        help="protocol of --backend (both: KServe's ModelServer; every client's passes through)",
    )
    serve.add_argument("--access-log", choices=["text", "json", "off"])
    serve.add_argument("--drain-timeout-s", type=float)
    serve.add_argument("--python-workers", type=int)
    check = commands.add_parser(
        "check-config",
        help="validate a configuration file and exit (imports and loads in-process models, as "
        "serve would: their load() runs)",
    )
    check.add_argument("file")
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    names = ("host", "http_port", "grpc_port", "backend", "protocol", "access_log")
    flags: dict[str, object] = {name: getattr(args, name) for name in names}
    flags["drain_timeout_s"] = args.drain_timeout_s
    flags["python_workers"] = args.python_workers
    return flags


def _serve(args: argparse.Namespace) -> int:
    from tensorgate.serve import serve

    def load() -> GatewayConfig:
        return load_config(args.config, flags=_flags(args), demo=True)

    return serve(load(), reload=load)


def _check(path: str) -> int:
    from tensorgate.serve import load_models

    config = load_config(path, env={})
    note = ""
    if not config.models and (demo := load_config(path, env={}, demo=True)).models:
        config, note = demo, " (none configured: the built-in demo models)"
    load_models(config)  # an in-process model that would fail `serve` fails here too
    print(f"{path}: ok, {len(config.models)} models{note}")
    for route in config.models:
        target = route.backend.target or " ".join(route.backend.urls)
        batching = "" if route.batching is None else f" ({route.batching.describe()})"
        print(f"  {route.name}: {route.backend.kind} {target}{batching}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # In-process models (`python: "module:attr"`) import from the working directory, as with
    # uvicorn and `python -m`; the console script alone would start from its own bin directory.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            return _check(args.file)
    except ConfigError as error:
        print(f"tensorgate: invalid configuration: {error}", file=sys.stderr)
        return 2
    except ProtocolError as error:  # the core refused to start: a port in use, say
        print(f"tensorgate: cannot start: {error}", file=sys.stderr)
        return 1
    parser.print_help()
    return 0
