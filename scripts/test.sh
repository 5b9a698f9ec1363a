#!/usr/bin/env bash
# The test command: a fresh virtual environment with graphc and its test extra (PyTorch as
# the numerical reference), then lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GRAPHC_TEST_VENV:-.venv-test}
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e ".[test]"
"$VENV/bin/ruff" check graphc passes codegen tests examples
"$VENV/bin/mypy" graphc    # the core: IR, builder, runtime
"$VENV/bin/python" -m pytest "$@"
