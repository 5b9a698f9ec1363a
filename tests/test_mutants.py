"""Mutation check of the fuzzer: every planted bug in tests/fuzz/mutants.py (code
generation, VJP rules, autodiff, CSE, simplify, fusion, memory planning, Triton and C
kernels) must be caught by at most BUDGET random graphs, stopping at the first mismatch.
The catch rate is printed (pytest -s) and must be 100%. The C mutants are skipped where
backend='c' cannot build; all run in this process (a patch does not reach a worker)."""
from __future__ import annotations

import pytest

from tests.fuzz.mutants import MUTANTS
from tests.fuzz.run import fuzz

BUDGET = 200   # graphs per mutant; the slowest to be caught needs about 120
SEED = 7
caught: dict = {}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_fuzzer_catches_planted_bug(mutant):
    if any(c.backend == "c" for c in mutant.configs):
        _c_or_skip()
    with mutant.patch():
        result = fuzz(BUDGET, [SEED], list(mutant.configs), stop_first=True,
                      shrink_failures=False)
    caught[mutant.name] = result["mismatches"] > 0
    assert caught[mutant.name], f"{mutant.name} ({mutant.what}) survived {BUDGET} graphs"


def _c_or_skip() -> None:
    from graphc.codegen.c import build
    ok, why = build.available()
    if not ok:
        pytest.skip(f"backend='c' is not available here: {why}")


def test_catch_rate_is_reported():
    """Runs after the mutants (file order): prints caught / total."""
    print(f"\nfuzzer mutation check: {sum(caught.values())}/{len(MUTANTS)} planted bugs caught")
    assert len(MUTANTS) >= 20


def test_mutants_leave_graphc_unchanged():
    """After every patch is undone, the fuzzer passes again (nothing leaked)."""
    from graphc.codegen.c import build
    from tests.fuzz.run import configs_for
    assert fuzz(20, [SEED], configs_for("numpy"))["mismatches"] == 0
    if build.available()[0]:
        assert fuzz(10, [SEED], configs_for("c"))["mismatches"] == 0
