"""The C backend's threads, measured: (1) where two threads start to pay for an elementwise
kernel (the size behind codegen/c/kernels.py's MIN_PARALLEL_WORK), and (2) whether graphc's
OpenMP threads and BLAS's (np.matmul) or torch's threads get in each other's way when they
take turns in one process (oversubscription), on a training step that alternates them.

    python -m benchmarks.bench_c_threads [--quick]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import graphc as gc
from graphc import lowering_memo
from graphc.bench import harness
from graphc.codegen.c import kernels as c_module


def chain_function(n: int):
    """The activation chain of `graphc bench` and its gradient, n float32, compiled for C,
    with every kernel allowed to use threads (MIN_PARALLEL_WORK lowered to 1)."""
    real = c_module.MIN_PARALLEL_WORK
    c_module.MIN_PARALLEL_WORK = 1
    try:
        g = gc.Graph(f"threads_chain_{n}")
        x, up = g.input("x", (n,)), g.input("g", (n,))
        u = x * gc.sigmoid(x)
        y = gc.softplus(gc.tanh(u) ** 2 + x)
        dx, = gc.grad(gc.sum(y * up), [x])
        with lowering_memo.off():   # the memo does not key on the patched threshold
            return gc.function(g, [y, dx], backend="c")
    finally:
        c_module.MIN_PARALLEL_WORK = real


def crossover(sizes, rounds: int, reps: int) -> list:
    """(n, median µs on 1 thread, on 2 threads) per size."""
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        f = chain_function(n)
        feeds = {"x": rng.standard_normal(n).astype(np.float32),
                 "g": rng.standard_normal(n).astype(np.float32)}
        fns = {t: (lambda: f(feeds)) for t in (1, 2)}
        before = {t: (lambda t=t: f.set_threads(t)) for t in (1, 2)}
        times = harness.interleaved(fns, rounds, reps, warmup=5, before=before)
        rows.append((n, *(float(np.median(times[t])) * 1e6 for t in (1, 2))))
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


def oversubscription(batch: int, rounds: int, reps: int) -> dict:
    """Median µs of the step for each (graphc threads, BLAS threads), and of the step with
    a torch matmul (2 intra-op threads) run between steps."""
    import torch
    from threadpoolctl import threadpool_limits
    step, feeds = mixed_step(batch)
    a = torch.randn(512, 512)
    fns, before = {}, {}
    for c_threads in (1, 2):
        for blas in (1, 2):
            name = f"graphc C {c_threads} / BLAS {blas}"
            fns[name] = lambda: step(feeds)
            before[name] = (lambda c=c_threads, b=blas:
                            (step.set_threads(c), threadpool_limits(b, user_api="blas")))
    fns["graphc C 2 / BLAS 2, torch matmul between"] = lambda: (step(feeds), a @ a)
    fns["torch matmul alone (2 threads)"] = lambda: a @ a
    before["graphc C 2 / BLAS 2, torch matmul between"] = \
        lambda: (step.set_threads(2), threadpool_limits(2, user_api="blas"),
                 torch.set_num_threads(2))
    before["torch matmul alone (2 threads)"] = lambda: torch.set_num_threads(2)
    times = harness.interleaved(fns, rounds, reps, warmup=5, before=before)
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


WAIT_POLICIES = {"libgomp's default (spin, then sleep)": {},
                 "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
                 "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"}}


def wait_policies(quick: bool) -> None:
    """Part (2) again in fresh processes, one per way OpenMP's idle threads wait (read
    once, when libgomp starts)."""
    import subprocess
    import sys
    for label, env in WAIT_POLICIES.items():
        print(f"\n(2) with {label}:", flush=True)
        cmd = [sys.executable, "-m", "benchmarks.bench_c_threads", "--only-mixed"]
        subprocess.run(cmd + (["--quick"] if quick else []), env={**os.environ, **env},
                       check=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--wait-policies", action="store_true",
                   help="also run part (2) under other OpenMP wait policies")
    p.add_argument("--only-mixed", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    rounds, reps = (3, 5) if a.quick else (15, 20)
    if a.only_mixed:
        for name, us in oversubscription(256, rounds, reps).items():
            print(f"  {name:<45} {us:>9.1f} µs")
        return
    print(f"cores: {len(os.sched_getaffinity(0))}; graphc C threads set per row")
    print("\n(1) elementwise chain + gradient, float32: one thread or two")
    print(f"{'elements':>10} {'1 thread µs':>12} {'2 threads µs':>13} {'2 / 1':>6}")
    for n, one, two in crossover([2 ** k for k in range(10, 21, 2)], rounds, reps):
        print(f"{n:>10,} {one:>12.1f} {two:>13.1f} {two / one:>6.2f}")
    print(f"\n(2) 784-512-512-10 SGD step, batch 256: threads of graphc's kernels and of "
          f"BLAS (np.matmul) taking turns; MIN_PARALLEL_WORK = {c_module.MIN_PARALLEL_WORK}")
    for name, us in oversubscription(256, rounds, reps).items():
        print(f"  {name:<45} {us:>9.1f} µs")
    if a.wait_policies:
        wait_policies(a.quick)


if __name__ == "__main__":
    main()
