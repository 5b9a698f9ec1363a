"""Experiment: graphc's generated NumPy code with numexpr evaluating fused maps
(benchmarks/numexpr_prototype.py) against today's ufunc sequence and eager PyTorch, timed
side by side in one process; a size sweep of single maps; a NaN/inf check on every activation.

    python -m benchmarks.bench_numexpr [--threads 1,2] [--rounds 15] [--reps 10]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numexpr
import numpy as np
import torch

import graphc as gc
from benchmarks import harness
from benchmarks.numexpr_prototype import patched
from benchmarks.reference_steps import TorchMLPStep, batches
from examples.digits_mlp import build_model, load_data
from graphc.bench import workloads

RESULTS = Path(__file__).resolve().parent / "results"
# name -> patched() arguments (None: graphc as it is); threshold 0 puts every float map on
# numexpr, so the small workloads show its per-call cost too
VARIANTS = {"ufunc (today)": None,
            "numexpr.evaluate": dict(mode="evaluate", threshold=0, cse=True),
            "numexpr.NumExpr": dict(mode="NumExpr", threshold=0, cse=True),
            "NumExpr, no cse": dict(mode="NumExpr", threshold=0, cse=False)}
WORKLOADS = ("elementwise", "softmax_ce", "adam", "mlp_small")


def variant(kwargs):
    return patched(**kwargs) if kwargs else _nothing()


class _nothing:
    def __enter__(self): return self
    def __exit__(self, *exc): return False


def workload_rows(name: str) -> dict:
    """name -> call: graphc's row under every variant (each checked against eager torch by
    the workload itself), then the workload's other rows (eager torch, copy) once."""
    calls = {}
    for label, kwargs in VARIANTS.items():
        with variant(kwargs):
            work = workloads.WORKLOADS[name]("default", False)
            rows = work.rows(work.compile_graphc())
        calls[label] = next(r.call for r in rows if r.name == "graphc")
        if kwargs is None:
            others = {r.name: r.call for r in rows if r.name != "graphc"}
    return {**calls, **others}


def digits_rows(seed: int = 0) -> dict:
    """The digits MLP step (bench_digits_step's model, batch 64) under every variant, and
    PyTorch eager from the same parameters; first-step losses must agree."""
    x_train, _, y_train, _ = load_data(seed)
    x, y = batches(x_train, y_train, 64, count=1, seed=seed)[0]
    calls, losses = {}, {}
    for label, kwargs in VARIANTS.items():
        with variant(kwargs):
            graph, _, loss = build_model(seed=seed)
            step = gc.compile(graph, loss, optimizer=gc.SGD(lr=0.1, momentum=0.9))
        eager = TorchMLPStep(step, 0.1, 0.9) if kwargs is None else None
        losses[label] = float(step(x=x, y=y))
        calls[label] = lambda s=step: s(x=x, y=y)
        if eager is not None:
            eager_step = eager
    spread = max(losses.values()) - min(losses.values())
    assert spread < 1e-5, f"digits step: first losses differ by {spread}"
    return {**calls, "PyTorch eager": lambda: eager_step(x, y)}


def time_all(args) -> dict:
    """Per workload and numexpr thread count: median µs and time / ufunc of every row."""
    table: dict = {}
    groups = {name: workload_rows(name) for name in WORKLOADS}
    groups["digits_step"] = digits_rows()
    for threads in args.threads:
        numexpr.set_num_threads(threads)
        for name, calls in groups.items():
            times = harness.interleaved(calls, args.rounds, args.reps, args.warmup)
            med = {k: harness.summary(t)["median_us"] for k, t in times.items()}
            base = med["ufunc (today)"]
            table.setdefault(name, {})[f"numexpr_threads_{threads}"] = {
                k: {"median_us": round(v, 1), "time_vs_ufunc": round(v / base, 3)}
                for k, v in med.items()}
    return table


def sweep(args) -> dict:
    """One map at sizes 2^10..2^22, float32: the ufunc sequence vs numexpr (NumExpr,
    compiled once), per thread count: where numexpr starts to pay, if anywhere."""
    maps = {"arithmetic x*y + x*x - 2*y": lambda x, y: x * y + x * x - 2 * y,
            "chain forward tanh(x*sigmoid(x))": lambda x, y: gc.tanh(x * gc.sigmoid(x))}
    out: dict = {}
    for label, fn in maps.items():
        for k in range(10, 23, 2):
            n = 2 ** k
            rng = np.random.default_rng(k)
            feeds = {"x": rng.standard_normal(n).astype(np.float32),
                     "y": rng.standard_normal(n).astype(np.float32)}
            calls = {}
            for name, kwargs in (("ufunc", None), ("numexpr", VARIANTS["numexpr.NumExpr"])):
                with variant(kwargs):
                    graph = gc.Graph(f"sweep_{k}")
                    xn, yn = graph.input("x", (n,)), graph.input("y", (n,))
                    f = gc.function(graph, [fn(xn, yn)])
                calls[name] = lambda f=f: f(feeds)
            reps = max(1, min(args.reps, 2 ** 20 // n))
            for threads in args.threads:
                numexpr.set_num_threads(threads)
                times = harness.interleaved(calls, args.rounds, reps, args.warmup)
                med = {k2: harness.summary(t)["median_us"] for k2, t in times.items()}
                out.setdefault(label, {}).setdefault(f"numexpr_threads_{threads}", {})[n] = {
                    "ufunc_us": round(med["ufunc"], 1), "numexpr_us": round(med["numexpr"], 1),
                    "ufunc_over_numexpr": round(med["ufunc"] / med["numexpr"], 3)}
    return out


def check() -> dict:
    """Every activation of graphc's op table, value and gradient, float64 and float32, on
    random points with 0, +-inf and NaN: numexpr maps vs the ufunc path, NaN where NaN."""
    acts = {"sigmoid": gc.sigmoid, "tanh": gc.tanh, "relu": gc.relu,
            "leaky_relu": gc.leaky_relu, "abs": gc.abs, "elu": gc.elu,
            "softplus": gc.softplus, "hard_tanh": gc.hard_tanh, "softsign": gc.softsign}
    x = np.concatenate([np.random.default_rng(0).standard_normal(1000) * 10,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 30, -30, 100, -100, 1, -1]])
    worst: dict = {}
    for name, act in acts.items():
        for dtype, rtol in (("float64", 1e-7), ("float32", 1e-5)):
            got = []
            for kwargs in (None, VARIANTS["numexpr.NumExpr"]):
                with variant(kwargs):
                    graph = gc.Graph(f"check_{name}")
                    xn = graph.input("x", (x.size,), dtype=dtype)
                    y = act(xn)
                    d, = gc.grad(gc.sum(y), [xn])
                    got.append(gc.function(graph, [y, d])(x=x.astype(dtype)))
            for a, b in zip(*got):
                assert a.dtype == b.dtype == dtype, (name, a.dtype, b.dtype)
                # atol eps: tanh' = 1 - y**2 turns an ulp of y near 1 into an absolute eps
                eps = float(np.finfo(dtype).eps)
                np.testing.assert_allclose(b, a, rtol=rtol, atol=eps, equal_nan=True,
                                           err_msg=f"{name} {dtype}")
                big = np.isfinite(a) & (np.abs(a) >= 1e-3)   # relative error where it means one
                err = float(np.max(np.abs(b[big] / a[big] - 1), initial=0.0))
                worst[f"{name} {dtype}"] = max(worst.get(f"{name} {dtype}", 0.0), err)
    return worst


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="numexpr thread counts, comma-separated")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="graphc-numexpr-") as cache, \
            harness.env_var("GRAPHC_CACHE_DIR", cache):
        record = {"experiment": "numexpr as the evaluator of fused maps (NumPy backend)",
                  "command": " ".join(["python -m benchmarks.bench_numexpr", *(argv or [])]),
                  "environment": {**harness.environment(), "numexpr": numexpr.__version__,
                                  "numexpr_vml": numexpr.use_vml},
                  "torch_threads": torch.get_num_threads(),
                  "check_max_relative_difference": check(),
                  "workloads": time_all(args), "sweep": sweep(args)}
    for name, by_threads in record["workloads"].items():
        for threads, rows in by_threads.items():
            print(name, threads, {k: v["time_vs_ufunc"] for k, v in rows.items()})
    out = args.out or RESULTS / f"numexpr-experiment-{harness.cpu_label()}.json"
    print(f"written: {harness.write_json(out, record)}")
    return record


if __name__ == "__main__":
    main()
