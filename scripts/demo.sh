#!/usr/bin/env bash
# The main job: install graphc (plus scikit-learn for the data and PyTorch for the eager
# comparison) into .venv, then train the digits MLP, show where the generated code is and
# time one training step against hand-written NumPy and PyTorch eager.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GRAPHC_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -e ".[test]"
"$VENV/bin/python" examples/digits_mlp.py "$@"
