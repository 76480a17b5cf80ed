#!/usr/bin/env bash
# Installs everything the test suite needs into .venv (from PyPI and crates.io) and runs every
# check CI runs: Rust format, lints and tests; the Python build; pytest; ruff; mypy; stubtest.
set -euo pipefail
cd "$(dirname "$0")/.."

export MATURIN_NO_INSTALL_RUST=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }

step "rust: format, lints, tests"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test -p tensorgate-core --locked

step "python: install into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[test]'

step "python: MLServer backend in .venv-mlserver (MLServer 1.7.1 pins an older fastapi than kserve)"
if ! .venv-mlserver/bin/python -c 'import mlserver' 2>/dev/null; then
    python3 -m venv .venv-mlserver
    .venv-mlserver/bin/pip install -q -r tests/backends/requirements-mlserver.txt
fi

step "python: lints and types"
ruff check python tests benches
ruff format --check python tests benches
mypy
python -m mypy.stubtest tensorgate._core --allowlist .stubtest-allowlist

step "python: tests"
pytest "$@"
