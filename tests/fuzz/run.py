"""The fuzzing loop: programs per seed, every configuration, failures shrunk and written
out as reproducers; returns a summary (graphs, mismatches per configuration, paths)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import grammar, reproducer
from .check import Config, Failure, check
from .shrink import shrink


def configs_for(backend: str = "numpy", fusion: str = "both", dtype: str = "float64",
                inputs: str = "normal", matmul: str = "library") -> list:
    backends = ["numpy", "triton"] if backend == "both" else [backend]
    fused = {"on": [True], "off": [False], "both": [True, False]}[fusion]
    matmuls = ["library", "fused"] if matmul == "both" else [matmul]
    # unfused, a matmul has no epilogue to take: matmul="fused" changes nothing there
    return [Config(b, f, dtype, inputs, m) for b in backends for f in fused for m in matmuls
            if f or m == "library"]


def force_wide_forms(set_attr=setattr) -> None:
    """The Triton templates' wide-data forms on the fuzzer's small shapes: rows kernels
    loop over tiles of 4 lanes (2 in float64), reductions of few programs split into
    chunks of 8 elements. `set_attr`: setattr, or a test's monkeypatch.setattr."""
    from graphc.codegen.triton import kernels, reduce
    set_attr(kernels, "ROWS_MAX_BLOCK", 4)
    set_attr(reduce, "SPLIT_CHUNK", 8)


def case(seed: int, index: int, max_ops: int = 8, special: bool = False) -> tuple[list, int]:
    """(program, value seed) of graph `index` under `seed`: the same on every machine."""
    prog = grammar.program(np.random.default_rng([seed, index]), max_ops=max_ops,
                           distinct=special)
    return prog, seed * 1_000_003 + index


def minimize(failure: Failure, budget: int = 150) -> Failure:
    """The failure on the smallest program that still fails in the same configuration."""
    last = [failure]

    def fails(prog):
        if failure.config.inputs == "special" and not grammar.special_ok(prog):
            return False  # a smaller program the grammar would not draw: not this failure
        f = check(prog, failure.seed, [failure.config])
        if f is not None:
            last.append(f)
        return f is not None

    small = shrink(failure.prog, fails, budget)
    return next((f for f in reversed(last) if f.prog == small), failure)


def fuzz(graphs: int, seeds, configs: list, max_ops: int = 8, out: Path | None = None,
         progress: bool = False, stop_first: bool = False, shrink_failures: bool = True):
    """Run `graphs` programs for each seed under every config; the summary as a dict."""
    from tqdm import tqdm
    failures: list = []
    jobs = [(s, i) for s in seeds for i in range(graphs)]
    bar = tqdm(jobs, disable=not progress, unit="graph", mininterval=2.0)
    for s, i in bar:
        prog, vseed = case(s, i, max_ops, any(c.inputs == "special" for c in configs))
        f = check(prog, vseed, configs)
        if f is not None:
            failures.append((s, i, minimize(f) if shrink_failures else f))
            bar.set_postfix(mismatches=len(failures))
            if stop_first:
                break
    paths = [str(reproducer.write(f, out)) for _, _, f in failures] if out else []
    return {"graphs": len(jobs) if not stop_first or not failures else
            jobs.index(failures[0][:2]) + 1,
            "configs": [str(c) for c in configs], "mismatches": len(failures),
            "failures": [f"graph {i} of seed {s}: {f}" for s, i, f in failures],
            "reproducers": paths}
