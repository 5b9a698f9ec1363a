#!/usr/bin/env bash
# The GPU job, for a machine with an NVIDIA GPU where torch and triton are installed already
# (nothing is downloaded), in parts that run in this order:
#   tests        the GPU-marked tests and every Triton test file, on compiled kernels
#   elementwise  softmax_ce  mlp_step   the three target benchmarks, whose JSON records go to
#                docs/bench-results/gpu-<gpu>-<benchmark>.json (mlp_step also times
#                matmul='fused' and records matmul_choice)
#   bench        `graphc bench` over every workload (graphc-bench-gpu-<gpu>.json and .png)
# then a summary of the targets. Name parts to run only those (a machine lent for a short
# time can take them one call at a time); options after -- go to the three benchmarks:
#
#   bash scripts/gpu_bench.sh [PART ...] [-- --rounds 10 --no-torch-compile]
#
# PYTHON picks the interpreter (default python3). If $OUT is set (a folder that is copied
# back from the machine), the records and the log are copied there as well.
set -uo pipefail
PARTS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
        tests|elementwise|softmax_ce|mlp_step|bench) PARTS+=("$1") ;;
        *) echo "gpu_bench.sh: unknown part '$1' (tests elementwise softmax_ce mlp_step bench)"
           exit 2 ;;
    esac
    shift
done
[ "${1:-}" = "--" ] && shift
[ ${#PARTS[@]} -eq 0 ] && PARTS=(tests elementwise softmax_ce mlp_step bench)
wants() { [[ " ${PARTS[*]} " == *" $1 "* ]]; }
stamp() { echo "== $1 ($(( $(date +%s) - START )) s into the run)"; }
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
RESULTS=docs/bench-results
mkdir -p "$RESULTS"
LOG=$RESULTS/gpu_bench.log
exec > >(tee "$LOG") 2>&1
status=0
START=$(date +%s)

echo "== environment"
"$PY" - <<'EOF' || exit 1
import importlib, sys
need = ["numpy", "sympy", "networkx", "tqdm", "torch", "triton"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages {missing}: graphc needs {need} (no download is tried)")
import torch, triton
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"triton {triton.__version__}")
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA GPU: this job times GPU kernels")
print("GPU:", torch.cuda.get_device_name(0))
EOF

# graphc ships passes/ and codegen/ as graphc.passes and graphc.codegen (pyproject's
# package-dir), so PYTHONPATH=. alone cannot import it: install it in editable mode without
# the network, or, if pip cannot, map those two packages with a small import hook.
if ! "$PY" -c "import graphc.codegen" 2>/dev/null; then
    echo "== installing graphc (editable, --no-deps --no-index)"
    if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . \
            > /dev/null 2>&1; then
        HOOK=$(mktemp -d)
        trap 'rm -rf "$HOOK"' EXIT
        cat > "$HOOK/sitecustomize.py" <<EOF
"""graphc.passes -> $ROOT/passes, graphc.codegen -> $ROOT/codegen (as pyproject maps them)."""
import importlib.util
import sys

_FOLDERS = {"graphc.passes": "$ROOT/passes", "graphc.codegen": "$ROOT/codegen"}


class _GraphcFolders:
    @staticmethod
    def find_spec(name, path=None, target=None):
        folder = _FOLDERS.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            name, folder + "/__init__.py", submodule_search_locations=[folder])


sys.meta_path.append(_GraphcFolders)
EOF
        export PYTHONPATH="$HOOK:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
        echo "pip could not install graphc; using an import hook in $HOOK instead"
    fi
fi
"$PY" -c "import graphc.codegen, graphc.passes" || { echo "graphc does not import"; exit 1; }
unset TRITON_INTERPRET   # compiled kernels, not the interpreter

if wants tests; then
    stamp "tests: GPU-marked, and every Triton test on compiled kernels"
    if "$PY" -c "import pytest" 2>/dev/null; then
        # collection errors (a test module needing hypothesis, say) do not stop the others
        "$PY" -m pytest -m gpu -q -rs --continue-on-collection-errors tests || status=1
        "$PY" -m pytest -q -rs --continue-on-collection-errors tests/test_triton.py \
            tests/test_triton_steps.py tests/test_triton_matmul.py tests/test_triton_wide_rows.py \
            tests/test_triton_reduce_split.py || status=1
    else
        echo "pytest is not installed: GPU tests skipped"
        status=1
    fi
fi

for part in elementwise softmax_ce mlp_step; do
    wants "$part" || continue
    module=graphc.bench.gpu_$part
    stamp "$module"
    "$PY" -m "$module" "$@" || status=1
done

if wants bench; then
    stamp "graphc bench (every workload, Triton backend, torch.compile on)"
    GPU_SLUG=$("$PY" -c "from graphc.bench.device import gpu_label; print(gpu_label())")
    "$PY" -m graphc bench --backend triton --json "$RESULTS/graphc-bench-gpu-$GPU_SLUG.json" \
        --plot "$RESULTS/graphc-bench-gpu-$GPU_SLUG.png" || status=1
fi

stamp "targets"
"$PY" - "$RESULTS" "$START" <<'EOF' || status=1
import json, sys, pathlib
records = sorted(p for p in pathlib.Path(sys.argv[1]).glob("gpu-*.json")
                 if p.stat().st_mtime >= float(sys.argv[2]))   # written by this run
for path in records:
    r = json.loads(path.read_text())
    for t in r["targets"]:
        met = {True: "met", False: "NOT MET", None: "not judged"}[t["met"]]
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        print(f"{r['benchmark']:12} {t['target']:45} {value:>8} ({t['want']}): {met}")
    print(f"{r['benchmark']:12} values agree: {r['agreement']['agree']}  ({path})")
EOF

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/results"
    cp "$RESULTS"/gpu-*.json "$RESULTS"/graphc-bench-gpu-* "$LOG" "$OUT/results/" \
        2>/dev/null || true
fi
exit $status
