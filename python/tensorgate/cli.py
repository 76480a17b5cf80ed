"""The ``tensorgate`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tensorgate import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tensorgate",
        description="A Rust-accelerated data plane for model serving (KServe V1/V2).",
    )
    parser.add_argument("--version", action="version", version=f"tensorgate {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0
