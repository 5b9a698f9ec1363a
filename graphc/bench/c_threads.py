"""The C backend's threads, measured: (1) where two threads start to pay for an elementwise
kernel (the size behind codegen/c/kernels.py's MIN_PARALLEL_WORK), (2) whether graphc's
OpenMP threads and BLAS's (np.matmul) or torch's threads get in each other's way when they
take turns in one process (oversubscription), on a training step that alternates them, and
(3) the same for a graphc function on two threads that the user's own code alternates with
NumPy matmuls or torch ops.

    python -m graphc.bench.c_threads [--quick] [--wait-policies]
"""
from __future__ import annotations

import argparse
import functools
import os
from typing import Callable

import numpy as np

import graphc as gc
from graphc import lowering_memo
from graphc.codegen.c import kernels as c_module

from . import harness

CROSSOVER_SIZES = [2048, 4096, 8192, 16384, 24576, 32768, 49152, 65536, 131072, 262144, 1048576]


def chain_graph(n) -> tuple:
    """The activation chain of `graphc bench` and its gradient: (graph, outputs)."""
    g = gc.Graph(f"threads_chain_{n}")
    x, up = g.input("x", (n,)), g.input("g", (n,))
    u = x * gc.sigmoid(x)
    y = gc.softplus(gc.tanh(u) ** 2 + x)
    dx, = gc.grad(gc.sum(y * up), [x])
    return g, [y, dx]


def chain_function(threshold: int | None = None):
    """The chain over a run-time length N, float32, compiled for C: the loop form graphc
    emits for every size whose work is known only at run time. threshold: the parallel
    threshold to compile in (None: graphc's MIN_PARALLEL_WORK)."""
    real = c_module.MIN_PARALLEL_WORK
    c_module.MIN_PARALLEL_WORK = real if threshold is None else threshold
    try:
        with lowering_memo.off():   # the memo does not key on the patched threshold
            graph, outputs = chain_graph(gc.sym("N"))
            return gc.function(graph, outputs, backend="c")
    finally:
        c_module.MIN_PARALLEL_WORK = real


def chain_feeds(n: int) -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal(n).astype(np.float32),
            "g": rng.standard_normal(n).astype(np.float32)}


def crossover(sizes, rounds: int, reps: int) -> list:
    """(n, median µs on 1 thread, on 2 threads) per size, every size allowed threads."""
    f = chain_function(threshold=1)
    rows = []
    for n in sizes:
        feeds = chain_feeds(n)
        fns = {str(t): (lambda: f(feeds)) for t in (1, 2)}
        before = {str(t): (lambda t=t: f.set_threads(t)) for t in (1, 2)}
        times = harness.interleaved(fns, rounds, reps, warmup=5, before=before)
        rows.append((n, *(float(np.median(times[str(t)])) * 1e6 for t in (1, 2))))
    return rows


def mixed_step(batch: int):
    """A tanh MLP step (784-512-512-10, SGD): matmuls (BLAS) between C kernels."""
    g = gc.Graph("threads_mlp")
    N = gc.sym("N")
    x, y = g.input("x", (N, 784)), g.input("y", (N,), dtype="int64")
    h = gc.tanh(gc.linear(gc.tanh(gc.linear(x, 512, name="l1")), 512, name="l2"))
    loss = gc.softmax_cross_entropy(gc.linear(h, 10, name="l3"), y)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.01), backend="c")
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((batch, 784)).astype(np.float32),
             "y": rng.integers(0, 10, batch)}
    return step, feeds


def set_pools(step, c_threads: int, blas: int, torch_threads: int | None = None) -> None:
    """graphc C's threads for the step, BLAS's (and torch's, if given) threads."""
    from threadpoolctl import threadpool_limits
    step.set_threads(c_threads)
    threadpool_limits(blas, user_api="blas")
    if torch_threads is not None:
        import torch
        torch.set_num_threads(torch_threads)


def in_turn(first: Callable[[], object], second: Callable[[], object]) -> None:
    first()
    second()


def oversubscription(batch: int, rounds: int, reps: int) -> dict:
    """Median µs of the step for each (graphc threads, BLAS threads), and of the step with
    a torch matmul (2 intra-op threads) run between steps."""
    import torch
    step, feeds = mixed_step(batch)
    default = step.kernel_threads
    a = torch.randn(512, 512)
    fns: dict[str, Callable[[], object]] = {}
    before: dict[str, Callable[[], object]] = {}
    for c_threads in (1, 2):
        for blas in (1, 2):
            mark = " (graphc's default here)" if c_threads == default and blas == 2 else ""
            name = f"graphc C {c_threads} / BLAS {blas}{mark}"
            fns[name] = lambda: step(feeds)
            before[name] = functools.partial(set_pools, step, c_threads, blas)
    between = f"graphc C {default} / BLAS 2, torch matmul between"
    fns[between] = lambda: (step(feeds), a @ a)
    fns["torch matmul alone (2 threads)"] = lambda: a @ a
    before[between] = functools.partial(set_pools, step, default, 2, torch_threads=2)
    before["torch matmul alone (2 threads)"] = functools.partial(torch.set_num_threads, 2)
    times = harness.interleaved(fns, rounds, reps, warmup=5, before=before)
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def user_interleaving(n: int, rounds: int, reps: int) -> list:
    """Two calls the caller alternates, each on two threads: a graphc function with no
    matmuls (the chain over n, on its default threads: every core; and on one), NumPy's
    matmul (BLAS),
    torch's matmul, and for reference torch's tanh beside NumPy's matmul (torch's OpenMP
    threads against OpenBLAS's, no graphc). [(first, second, µs first alone, µs second
    alone, µs the pair)]."""
    import torch
    from threadpoolctl import threadpool_limits
    f, feeds = chain_function(), chain_feeds(n)
    f_one = chain_function()
    f_one.set_threads(1)    # the fix for the pair with NumPy's matmul, measured beside it
    a_np = np.random.default_rng(2).standard_normal((512, 512)).astype(np.float32)
    a_torch, t = torch.from_numpy(a_np), torch.randn(4 * n)
    calls = {"graphc chain": lambda: f(feeds), "graphc chain, 1 thread": lambda: f_one(feeds),
             "np.matmul 512x512": lambda: a_np @ a_np,
             "torch matmul 512x512": lambda: a_torch @ a_torch,
             f"torch.tanh {4 * n:,}": lambda: torch.tanh(t)}
    pairs = [("graphc chain", "np.matmul 512x512"), ("graphc chain, 1 thread", "np.matmul 512x512"),
             ("graphc chain", "torch matmul 512x512"),
             (f"torch.tanh {4 * n:,}", "np.matmul 512x512")]
    fns: dict[str, Callable[[], object]] = dict(calls)
    for one, two in pairs:
        fns[f"{one}, then {two}"] = functools.partial(in_turn, calls[one], calls[two])
    with threadpool_limits(2, user_api="blas"):
        torch.set_num_threads(2)
        times = harness.interleaved(fns, rounds, reps, warmup=5)
    us = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
    return [(one, two, us[one], us[two], us[f"{one}, then {two}"]) for one, two in pairs]


def print_mixed(rounds: int, reps: int) -> None:
    for name, us in oversubscription(256, rounds, reps).items():
        print(f"  {name:<55} {us:>9.1f} µs")


def print_user(rounds: int, reps: int) -> None:
    print(f"  {'first':<22} {'then':<22} {'first µs':>9} {'then µs':>8} {'pair µs':>8} "
          f"{'/ sum':>6}")
    for one, two, a, b, both in user_interleaving(2 ** 18, rounds, reps):
        print(f"  {one:<22} {two:<22} {a:>9.1f} {b:>8.1f} {both:>8.1f} {both / (a + b):>6.2f}")


WAIT_POLICIES = {"libgomp's default (spin, then sleep)": {},
                 "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
                 "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"}}


def wait_policies(quick: bool) -> None:
    """Parts (2) and (3) again in fresh processes, one per way OpenMP's idle threads wait
    (read once, when libgomp starts)."""
    import subprocess
    import sys
    for label, env in WAIT_POLICIES.items():
        print(f"\n(2) and (3) with {label}:", flush=True)
        cmd = [sys.executable, "-m", "graphc.bench.c_threads", "--only-mixed"]
        subprocess.run(cmd + (["--quick"] if quick else []), env={**os.environ, **env},
                       check=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--wait-policies", action="store_true",
                   help="also run parts (2) and (3) under other OpenMP wait policies")
    p.add_argument("--only-mixed", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    rounds, reps = (3, 5) if a.quick else (15, 20)
    if a.only_mixed:
        print_mixed(rounds, reps)
        print_user(rounds, reps)
        return
    print(f"cores: {len(os.sched_getaffinity(0))}; graphc C threads set per row")
    print("\n(1) elementwise chain + gradient over a run-time length, float32, every size "
          "allowed threads: one thread or two")
    print(f"{'elements':>10} {'1 thread µs':>12} {'2 threads µs':>13} {'2 / 1':>6}")
    for n, one, two in crossover(CROSSOVER_SIZES, rounds, reps):
        print(f"{n:>10,} {one:>12.1f} {two:>13.1f} {two / one:>6.2f}")
    print(f"\n(2) 784-512-512-10 SGD step, batch 256: threads of graphc's kernels and of "
          f"BLAS (np.matmul) taking turns; MIN_PARALLEL_WORK = {c_module.MIN_PARALLEL_WORK}")
    print_mixed(rounds, reps)
    print("\n(3) calls the caller alternates, each on two threads: a graphc function without "
          "matmuls (the chain, 2^18, graphc's default threads: every core), NumPy's and "
          "torch's matmuls, and torch's tanh beside NumPy's matmul for reference")
    print_user(rounds, reps)
    if a.wait_policies:
        wait_policies(a.quick)


if __name__ == "__main__":
    main()
