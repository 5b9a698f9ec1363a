"""The fuzzing loop: programs per seed, every configuration, failures shrunk and written
out as reproducers; returns a summary (graphs, mismatches per configuration, paths). With
jobs > 1 the graphs run in a pool of processes, their results taken in graph order."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from . import grammar, reproducer
from .check import Config, Failure, check
from .shrink import shrink

BACKENDS = {"numpy": ["numpy"], "c": ["c"], "triton": ["triton"],
            "both": ["numpy", "triton"], "all": ["numpy", "c", "triton"]}
# what a worker process takes over from this one (spawned workers inherit the environment;
# naming it here keeps the interpreter and the cache folder explicit when they are set late)
WORKER_ENV = ("TRITON_INTERPRET", "GRAPHC_CACHE_DIR", "GRAPHC_NUM_THREADS", "CC")


def configs_for(backend: str = "numpy", fusion: str = "both", dtype: str = "float64",
                inputs: str = "normal", matmul: str = "library") -> list:
    backends = BACKENDS[backend]
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


def force_parallel_forms(set_attr=setattr) -> None:
    """The C backend's parallel loops on the fuzzer's small shapes: every kernel's loops
    split over two OpenMP threads (MIN_PARALLEL_WORK 1, GRAPHC_NUM_THREADS 2, so graphs
    with matmuls too), the reductions and tiles included."""
    from graphc.codegen.c import kernels
    set_attr(kernels, "MIN_PARALLEL_WORK", 1)
    os.environ["GRAPHC_NUM_THREADS"] = "2"


def force(forms: tuple) -> None:
    """forms: (Triton wide forms, C parallel forms) as booleans."""
    wide, parallel = forms
    if wide:
        force_wide_forms()
    if parallel:
        force_parallel_forms()


def case(seed: int, index: int, max_ops: int = 8, special: bool = False) -> tuple[list, int]:
    """(program, value seed) of graph `index` under `seed`: the same on every machine."""
    prog = grammar.program(np.random.default_rng([seed, index]), max_ops=max_ops,
                           distinct=special)
    return prog, seed * 1_000_003 + index


def program_of(task: tuple) -> tuple[list, int]:
    """case() of a task (seed, index, max_ops, configs)."""
    seed, index, max_ops, configs = task
    return case(seed, index, max_ops, any(c.inputs == "special" for c in configs))


def run_case(task: tuple) -> Failure | None:
    """One graph under every config of its task: the unit of work of a worker process."""
    return check(*program_of(task), task[3])


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


# ---- the process pool --------------------------------------------------------------------

def _start_worker(env: dict, forms: tuple) -> None:
    """A worker's set-up: this process's interpreter and cache settings, one torch thread
    (the workers are the parallelism), the forms the run forces (see force)."""
    os.environ.update(env)
    import torch
    torch.set_num_threads(1)
    force(forms)


def _pool(jobs: int, forms: tuple) -> ProcessPoolExecutor:
    # spawn, not fork: the parent may have run OpenMP kernels (libgomp's threads do not
    # survive a fork) and torch's thread pools
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(env, forms))


def _alone(task: tuple, forms: tuple) -> Failure | None:
    """One graph in a process of its own, after a worker died: a crash of that process
    (a signal from generated code) is this graph's failure."""
    with _pool(1, forms) as pool:
        try:
            return pool.submit(run_case, task).result()
        except BrokenProcessPool:
            configs = task[3]
            return Failure(*program_of(task), configs[0], "died", "the process running the "
                           f"graph died (a signal?) under one of {', '.join(map(str, configs))}")


def _pooled(tasks: list, jobs: int, forms: tuple):
    """run_case of every task in `jobs` processes, yielded in task order. When a worker
    dies, the first graph that lost its result runs alone (the one that crashed it fails
    there), and a new pool takes the rest."""
    while tasks:
        pool = _pool(jobs, forms)
        try:
            futures = [pool.submit(run_case, t) for t in tasks]
            for k, future in enumerate(futures):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    yield _alone(tasks[k], forms)
                    tasks = tasks[k + 1:]
                    break
                yield result
            else:
                tasks = []
        finally:  # stop_first, or an error: the graphs not started yet are dropped
            pool.shutdown(wait=True, cancel_futures=True)


def fuzz(graphs: int, seeds, configs: list, max_ops: int = 8, out: Path | None = None,
         progress: bool = False, stop_first: bool = False, shrink_failures: bool = True,
         jobs: int = 1, wide_forms: bool = False, parallel_forms: bool = False):
    """Run `graphs` programs for each seed under every config; the summary as a dict.
    jobs > 1: in that many spawned processes, which see no patch made in this one (a
    mutant's) except the forced forms (Triton's wide forms where `wide_forms`, C's
    parallel loops where `parallel_forms`: the caller forces them here); failures are
    still shrunk here. Interrupted (Ctrl-C), it returns the summary of the graphs done."""
    from tqdm import tqdm
    failures: list = []
    refusals: list = []
    order = [(s, i) for s in seeds for i in range(graphs)]
    tasks = [(s, i, max_ops, list(configs)) for s, i in order]
    forms = (wide_forms, parallel_forms)
    results = map(run_case, tasks) if jobs <= 1 else _pooled(tasks, jobs, forms)
    bar = tqdm(zip(order, results), total=len(order), disable=not progress, unit="graph",
               mininterval=2.0)
    done, interrupted = 0, False
    try:
        for (s, i), f in bar:
            done += 1
            if f is not None and f.what == "refused":
                refusals.append(f"graph {i} of seed {s}: {f}")
            elif f is not None:
                # a program that kills its process is not shrunk here, in this process
                small = shrink_failures and f.what != "died"
                failures.append((s, i, minimize(f) if small else f))
                bar.set_postfix(mismatches=len(failures))
                if stop_first:
                    break
    except KeyboardInterrupt:   # the summary so far; the pool's workers are stopped below
        interrupted = True
    finally:
        bar.close()
        if hasattr(results, "close"):
            results.close()   # the pool's generator: drops the graphs not started
    paths = [str(reproducer.write(f, out)) for _, _, f in failures] if out else []
    return {"graphs": done, "configs": [str(c) for c in configs],
            "mismatches": len(failures),
            "failures": [f"graph {i} of seed {s}: {f}" for s, i, f in failures],
            "reproducers": paths, "refused": len(refusals), "refusals": refusals,
            **({"interrupted": True} if interrupted else {})}
