"""Compile time of an unrolled LSTM language model as the sequence grows: the graph of a
character-level LM (one-hot inputs over a vocabulary of 65, LSTM with 256 hidden units,
a shared readout and softmax cross-entropy at every step, averaged over time) unrolled
over T = 8 .. 128 steps, from building the graph to a callable training step (SGD, NumPy
backend) with an empty cache folder; the time of each stage; a JSON record.

    python -m benchmarks.bench_unroll_compile [--lengths 8 16 32 64 128] [--profile 64]

Stages are timed by wrapping, for the length of one gc.compile, the functions graphc.api
calls (autodiff, the optimize passes, fuse, the memory plan, the code generator, storing
and importing the module), so the figures are those of the real pipeline.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import graphc as gc
from benchmarks import harness
from graphc import api, recurrent as rec

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_T, TARGET_S = 64, 10.0


def build_model(T: int, vocab: int = 65, hidden: int = 256):
    """(graph, loss): inputs x0..x{T-1} one-hot (N, vocab), labels y0..y{T-1} (N,)."""
    g = gc.Graph(f"lstm_lm_T{T}")
    N = gc.sym("N")
    xs = rec.sequence_inputs(g, "x", T, (N, vocab))
    ys = rec.sequence_inputs(g, "y", T, (N,), dtype="int64")
    hs, _ = rec.lstm(xs, hidden, name="lstm")
    logits = rec.dense(hs, vocab, name="out")
    loss = rec.time_mean([gc.softmax_cross_entropy(z, y) for z, y in zip(logits, ys)],
                         name="loss")
    return g, loss


@contextlib.contextmanager
def stage_timers(times: dict):
    """Wrap what graphc.api calls so each call adds its seconds to times[stage]; the
    optimize passes report their own times (times['passes'])."""
    passes: dict = {}
    targets = [("autodiff", api, "autodiff"), ("optimize", api, "optimize"),
               ("fuse", api, "fuse"), ("plan", api.memory, "plan"),
               ("generate", api.numpy_backend, "generate"), ("store", api.cache, "store"),
               ("import", api.cache, "load_module")]
    saved = [(owner, attr, getattr(owner, attr)) for _, owner, attr in targets]

    def timer(stage, fn):
        def run(*a, **kw):
            if stage == "optimize":
                kw["timings"] = passes
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[stage] = times.get(stage, 0.0) + time.perf_counter() - t0
        return run
    for (stage, owner, attr), (_, _, fn) in zip(targets, saved):
        setattr(owner, attr, timer(stage, fn))
    try:
        yield
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)
        times["passes"] = passes


def measure(T: int, args) -> dict:
    """Build + compile once, cold (a fresh cache folder), stage by stage."""
    times: dict = {}
    with tempfile.TemporaryDirectory() as cache, harness.env_var("GRAPHC_CACHE_DIR", cache):
        t0 = time.perf_counter()
        g, loss = build_model(T, args.vocab, args.hidden)
        times["build"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        with stage_timers(times):
            step = gc.compile(g, loss, gc.SGD(lr=0.1), backend="numpy")
        times["compile"] = time.perf_counter() - t1
        lines = step.source.count("\n")   # read before the cache folder goes
    times["total"] = times["build"] + times["compile"]
    staged = sum(times[k] for k in ("autodiff", "optimize", "fuse", "plan", "generate",
                                    "store", "import"))
    times["other"] = times["compile"] - staged   # optimizer updates, params, wrappers
    return {"T": T, "model_nodes": len(g), "step_nodes": len(step.graph),
            "kernels": len(step.graph.nx.graph.get("kernels", [])),
            "source_lines": lines, "seconds": times}


def profile(T: int, args, top: int = 25) -> str:
    """cProfile of build + compile at length T: the functions with most own time."""
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as cache, harness.env_var("GRAPHC_CACHE_DIR", cache):
        prof.enable()
        g, loss = build_model(T, args.vocab, args.hidden)
        gc.compile(g, loss, gc.SGD(lr=0.1), backend="numpy")
        prof.disable()
    out = Path(tempfile.mkdtemp()) / f"unroll_T{T}.prof"
    prof.dump_stats(out)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(top)
    return str(out)


COLUMNS = ["T", "nodes", "step nodes", "build", "autodiff", "optimize", "fuse", "plan",
           "generate", "store+import", "other", "total s", "x prev"]


def row(r: dict, prev: dict | None) -> list:
    s = r["seconds"]
    growth = f"{s['total'] / prev['seconds']['total']:.2f}" if prev else ""
    return [r["T"], r["model_nodes"], r["step_nodes"], s["build"], s["autodiff"],
            s["optimize"], s["fuse"], s["plan"], s["generate"], s["store"] + s["import"],
            s["other"], s["total"], growth]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--profile", type=int, metavar="T", help="also cProfile length T")
    p.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/"
                                             "unroll-compile-<cpu>.json)")
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    measure(2, args)   # imports and first-use costs land here, not on the first length
    results, prev = [], None
    for T in args.lengths:
        r = measure(T, args)
        results.append(r)
        print(harness.table([row(r, prev)], COLUMNS).splitlines()[-1], flush=True)
        prev = r
    print("\nseconds, cold cache; x prev: total over the previous length's total\n")
    print(harness.table([row(r, q) for r, q in zip(results, [None] + results[:-1])], COLUMNS))
    at = next((r for r in results if r["T"] == TARGET_T), None)
    if at:
        ok = at["seconds"]["total"] < TARGET_S
        print(f"\nT={TARGET_T}: {at['seconds']['total']:.1f} s "
              f"({'within' if ok else 'over'} the {TARGET_S:.0f} s target)")
    record = {"benchmark": "bench_unroll_compile", "model": {
        "vocab": args.vocab, "hidden": args.hidden, "cell": "lstm", "optimizer": "SGD",
        "backend": "numpy", "loss": "mean over time of softmax cross-entropy"},
        "environment": harness.environment(), "results": results}
    if args.profile:
        record["profile_file"] = profile(args.profile, args)
    if not args.no_json:
        path = args.out or RESULTS / f"unroll-compile-{harness.cpu_label()}.json"
        print(f"wrote {harness.write_json(path, record)}")
    return record


if __name__ == "__main__":
    main()
