"""Recompute or store, measured: fusion's backend-aware rule (passes/recompute.py, each
backend's own) against the backend-blind count_ops rule it replaced, on small graphs where
one sigmoid / tanh / exp value, or a cheap one, is read by two or three consumers, and on
two example training steps. NumPy and C are timed (interleaved rounds, medians, new/old
ratios; C on one thread, so the other core's load moves both rules alike); Triton has no
GPU here: its decisions are printed and, with --triton, its values checked under the
interpreter, which is no timing.

    python -m graphc.bench.recompute [--quick] [--json FILE] [--triton]
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc import lowering, modelfile
from graphc.codegen.c import build as c_build
from graphc.runtime import Function, TrainStep

from . import harness

RULES = {"old": "count_ops", "new": None}   # None: the backend's own rule
SIZES = {"default": [(256, 256), (2048, 1024)], "quick": [(64, 96)]}
TIMING = {"default": (40, 10, 10), "quick": (3, 2, 2)}   # rounds, reps, warm-up


def _inputs(name: str, n: int, c: int, col: bool = False):
    g = gc.Graph(f"recompute_{name}_{n}x{c}")
    x, y = g.input("x", (n, c)), g.input("y", (n, c))
    return (g, x, y, g.input("col", (n, 1))) if col else (g, x, y)


def sigmoid_rows(n: int, c: int):
    """v = sigmoid(x + y) read by an output, a row sum and a tanh (xor's and the encoder's
    sigmoid: count_ops 2, so the old rule recomputed it in each): one rows kernel."""
    g, x, y = _inputs("sigmoid_rows", n, c)
    v = gc.sigmoid(x + y)
    return g, [v * y, gc.sum(v * x, axis=1), gc.tanh(v) - v]


def sigmoid_cols(n: int, c: int):
    """v = sigmoid(x + y) read by an output and a column sum's prologue: two kernels, so
    v is stored by one and loaded by the other, or recomputed in the other."""
    g, x, y = _inputs("sigmoid_cols", n, c)
    v = gc.sigmoid(x + y)
    return g, [v * y, gc.sum(v * x, axis=0)]


def tanh_cols(n: int, c: int):
    """v = tanh(x) * y read by an output and a column sum's prologue (two kernels)."""
    g, x, y = _inputs("tanh_cols", n, c)
    v = gc.tanh(x) * y
    return g, [v + x, gc.sum(v * x, axis=0)]


def exp_cols(n: int, c: int):
    """v = exp(x - y) read by an output and a column sum's prologue (two kernels)."""
    g, x, y = _inputs("exp_cols", n, c)
    v = gc.exp(x - y)
    return g, [v * x, gc.sum(v * y, axis=0)]


def cheap_2(n: int, c: int):
    """v = x + y, one op, read by two outputs: C recomputes it under both rules."""
    g, x, y = _inputs("cheap_2", n, c)
    v = x + y
    return g, [v * x, v * y]


def cheap_cancel(n: int, c: int):
    """v = x + y read by v x and v - 2 y: recomputed, SymPy cancels the second to x - y."""
    g, x, y = _inputs("cheap_cancel", n, c)
    v = x + y
    return g, [v * x, v - y * 2]


def cheap_broadcast(n: int, c: int):
    """w = 2 col, (N, 1), broadcast into an (N, C) output: per element, or once per row."""
    g, x, y, col = _inputs("cheap_broadcast", n, c, col=True)
    return g, [(col * 2) * x + y]


def autoencoder(n: int, d: int, hidden: int) -> modelfile.ModelSpec:
    """examples/encoder_838.py at a size past the call overhead: x (n, d) -> sigmoid(linear
    hidden) -> sigmoid(linear d), half squared error, SGD with momentum. Its output's
    sigmoid is read by the loss's reduction and by the backward's elementwise kernel."""
    g = gc.Graph(f"recompute_autoencoder_{n}x{d}x{hidden}", seed=0)
    x = g.input("x", (n, d))
    code = gc.sigmoid(gc.linear(x, hidden, name="enc"), name="code")
    out = gc.sigmoid(gc.linear(code, d, name="dec"), name="out")
    loss = gc.mse(out, x, half=True, reduction="sum", name="loss")
    data = {"x": np.random.default_rng(0).random((n, d)).astype(np.float32)}
    return modelfile.ModelSpec(g, loss, data, gc.SGD(lr=0.01, momentum=0.5))


GRAPHS = [sigmoid_rows, sigmoid_cols, tanh_cols, exp_cols, cheap_2, cheap_cancel,
          cheap_broadcast]
STEPS = {"encoder_838": None, "digits_mlp": 256}   # example model file: batch (None: all)
AUTOENCODERS = {"default": [(256, 128, 32), (2048, 512, 64)], "quick": [(64, 32, 8)]}


def function(graph, outputs, backend: str, recompute) -> tuple:
    """(callable, lowering) of graph's outputs compiled with one recompute rule."""
    low = lowering.lower(graph, outputs, backend, recompute=recompute)
    loaded = lowering.load(low, threads=1)
    declared = [(n, graph.attrs(n)) for n in graph.nodes_of("input")]
    f = Function(loaded.module, low.fused, loaded.path, loaded.params, loaded.consts,
                 declared=declared)
    return f, low


def step(spec, backend: str, recompute) -> tuple:
    """(training step, lowering) of a model file's loss with one recompute rule."""
    low = lowering.lower(spec.graph, (), backend, loss=spec.loss, optimizer=spec.optimizer,
                         recompute=recompute)
    loaded = lowering.load(low, threads=1)
    declared = [(n, spec.graph.attrs(n)) for n in spec.graph.nodes_of("input")]
    s = TrainStep(loaded.module, low.fused, loaded.path, loaded.params, loaded.consts,
                  loss=low.outputs[0], model=spec.graph, declared=declared)
    return s, low


def text(low) -> str:
    """The generated source (for C: translation unit and host module)."""
    if isinstance(low.generated, str):
        return low.generated
    c_source, host = low.generated
    return c_source + host("recompute.c")


def stored(low) -> int:
    """Values the kernels store: what a rule that recomputes less writes more of."""
    return sum(len(k.outputs) for k in low.kernels)


def compare(name: str, make, backend: str, mode: str) -> dict:
    """One row: both rules compiled, their code compared, timed interleaved when it differs."""
    made = {r: make(rule) for r, rule in RULES.items()}
    (f_old, low_old), (f_new, low_new) = made["old"], made["new"]
    row = {"workload": name, "backend": backend, "kernels_old": len(low_old.kernels),
           "kernels_new": len(low_new.kernels), "stored_old": stored(low_old),
           "stored_new": stored(low_new)}
    if text(low_old) == text(low_new):
        return {**row, "same_code": True, "ratio": 1.0}
    rounds, reps, warmup = TIMING[mode]
    times = harness.interleaved({"old": f_old, "new": f_new}, rounds, reps, warmup)
    old, new = (harness.summary(times[k]) for k in ("old", "new"))
    return {**row, "same_code": False, "old": old, "new": new,
            "ratio": new["median_us"] / old["median_us"]}


def cases(n: int, c: int, seed: int):
    """(name, graph, outputs, feeds) of each of GRAPHS at (n, c)."""
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.standard_normal((n, c)).astype(np.float32),
             "y": rng.standard_normal((n, c)).astype(np.float32),
             "col": rng.standard_normal((n, 1)).astype(np.float32)}
    for build in GRAPHS:
        graph, outputs = build(n, c)
        yield build.__name__, graph, outputs, {k: v for k, v in feeds.items() if k in graph}


def graph_rows(backend: str, mode: str) -> list:
    rows = []
    for n, c in SIZES[mode]:
        for name, graph, outputs, used in cases(n, c, 0):
            def make(rule, graph=graph, outputs=outputs, used=used):
                f, low = function(graph, outputs, backend, rule)
                return (lambda: f(used)), low
            rows.append(compare(f"{name} {n}x{c}", make, backend, mode))
    return rows


def step_rows(backend: str, mode: str) -> list:
    rows = []
    root = Path(__file__).resolve().parents[2] / "examples"
    specs = {f"{example} step": (modelfile.load(root / f"{example}.py"), batch)
             for example, batch in STEPS.items()}
    specs.update({f"autoencoder {n}x{d}x{h} step": (autoencoder(n, d, h), None)
                  for n, d, h in AUTOENCODERS[mode]})
    for name, (spec, batch) in specs.items():
        feeds = {k: v[:batch] for k, v in spec.data.items()}

        def make(rule, spec=spec, feeds=feeds):
            s, low = step(spec, backend, rule)
            return (lambda: s(feeds)), low
        rows.append(compare(name, make, backend, mode))
    return rows


def triton_check(mode: str) -> list:
    """Both rules' Triton code under the interpreter against the NumPy backend (values)."""
    from graphc import config
    from graphc.triton_runtime import TritonFunction
    config.triton_interpret(warn=False)
    out = []
    for name, graph, outputs, used in cases(*SIZES["quick"][0], 1):
        want = function(graph, outputs, "numpy", None)[0](used)
        texts = {}
        for label, rule in RULES.items():
            low = lowering.lower(graph, outputs, "triton", recompute=rule)
            texts[label] = text(low)
            loaded = lowering.load(low)
            declared = [(k, graph.attrs(k)) for k in graph.nodes_of("input")]
            got = TritonFunction(loaded.module, low.fused, loaded.path, loaded.params,
                                 loaded.consts, declared=declared)(used)
            worst = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in zip(got, want))
            out.append({"workload": name, "rule": label, "kernels": len(low.kernels),
                        "stored": stored(low), "same_code": texts.get("old") == texts[label],
                        "max_abs_diff_vs_numpy": worst})
    return out


def one_blas_thread():
    """BLAS on one thread where threadpoolctl is there: its spinning threads on a shared
    2-core machine made a step's time swing 100-fold, for both rules alike."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def report(rows: list) -> str:
    header = ["workload", "backend", "kernels old/new", "stored old/new", "old µs", "new µs",
              "new/old"]
    body = []
    for r in rows:
        times = ["same code", "", "1.00"] if r["same_code"] else \
            [f"{r['old']['median_us']:.1f}", f"{r['new']['median_us']:.1f}", f"{r['ratio']:.2f}"]
        body.append([r["workload"], r["backend"], f"{r['kernels_old']}/{r['kernels_new']}",
                     f"{r['stored_old']}/{r['stored_new']}", *times])
    return harness.table(body, header, text=(0, 1, 2, 3))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small size, few rounds")
    ap.add_argument("--json", metavar="FILE", help="write the record here (default: "
                    "docs/bench-results/recompute-<cpu>.json, not with --quick)")
    ap.add_argument("--triton", action="store_true",
                    help="check both rules' Triton code under the interpreter (values only)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "default"
    backends = ["numpy"] + (["c"] if c_build.available()[0] else [])
    start = time.perf_counter()
    with one_blas_thread():   # the steps' matmuls are the same under both rules
        rows = [r for b in backends for r in graph_rows(b, mode) + step_rows(b, mode)]
    print(f"recompute rules, new (each backend's) / old (count_ops); {harness.cpu_model()}, "
          f"C and BLAS on 1 thread; medians of {TIMING[mode][0]} interleaved rounds")
    print(report(rows))
    record = {"benchmark": "recompute", "environment": harness.environment(), "mode": mode,
              "rows": rows}
    if args.triton:
        record["triton_interpreter"] = triton_check(mode)
        print("\nTriton under the interpreter (values only, no timing):")
        print(harness.table([[t["workload"], t["rule"], t["kernels"], t["stored"],
                              "yes" if t["same_code"] else "no",
                              f"{t['max_abs_diff_vs_numpy']:.1e}"]
                             for t in record["triton_interpreter"]],
                            ["workload", "rule", "kernels", "stored", "code as old",
                             "max |triton - numpy|"], text=(0, 1, 4)))
    print(f"\n{time.perf_counter() - start:.0f} s")
    path = args.json or (None if args.quick else
                         harness.results_dir() / f"recompute-{harness.cpu_label()}.json")
    if path:
        print(f"written: {harness.write_json(Path(path), record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
