"""The differential fuzzer in CI (tests/fuzz): random programs against PyTorch autograd,
every intermediate value and every leaf gradient compared, zero mismatches allowed.

What runs (float64 unless said; rtol 1e-7 on values, 1e-6 on gradients):
  - 500 graphs x seeds 0 and 1 on the NumPy backend, fused and unfused (2,000 compiles);
  - the first 60 graphs of each seed on the Triton backend (the interpreter without a GPU),
    fused and unfused;
  - 150 graphs in float32 (PyTorch's rule: RMS error vs float64 <= 2x eager float32's +
    atol) and 150 on an integer grid (exact zeros, ties), NumPy fused and unfused.
Special values (+-0, +-inf, NaN, +-1e30) are not in CI: see the report in the fuzzer's
README figures. A failure prints its shrunk program; python -m tests.fuzz writes it out.
"""
from __future__ import annotations

import pytest

from tests.fuzz.run import configs_for, fuzz
from tests.fuzz.shrink import shrink

CASES = [
    pytest.param(500, [0], "numpy", "float64", "normal", id="numpy-seed0"),
    pytest.param(500, [1], "numpy", "float64", "normal", id="numpy-seed1"),
    pytest.param(60, [0, 1], "triton", "float64", "normal", id="triton"),
    pytest.param(150, [2], "numpy", "float32", "normal", id="float32"),
    pytest.param(150, [3], "numpy", "float64", "grid", id="grid"),
]


@pytest.mark.parametrize("graphs, seeds, backend, dtype, inputs", CASES)
def test_fuzzer_finds_no_mismatch(graphs, seeds, backend, dtype, inputs):
    result = fuzz(graphs, seeds, configs_for(backend, "both", dtype, inputs))
    assert result["mismatches"] == 0, "\n".join(result["failures"])
    assert result["graphs"] == graphs * len(seeds)


def test_shrink_keeps_a_failure_and_drops_the_rest():
    prog = [("leaf", "input", (2, 3)), ("unary", "tanh", 0), ("unary", "exp", 1),
            ("binary", "mul", 2, 0), ("reduce", "sum", 3, None, False)]
    # "fails" while some exp is left: everything else can go
    small = shrink(prog, lambda p: any(r[:2] == ("unary", "exp") for r in p))
    assert small == [("leaf", "input", (2, 3)), ("unary", "exp", 0)]
