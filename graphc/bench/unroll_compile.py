"""Compile time of an unrolled LSTM language model as the sequence grows: the graph of a
character-level LM (one-hot inputs over a vocabulary of 65, LSTM with 256 hidden units,
a shared readout and softmax cross-entropy at every step, averaged over time) unrolled
over T = 8 .. 128 steps, from building the graph to a callable training step (SGD, NumPy
backend) with an empty cache folder; the time of each stage; a JSON record.

    python -m graphc.bench.unroll_compile [--lengths 8 16 32 64 128] [--repeats 3]
                                              [--threads 1] [--profile 64]

Each length runs in a fresh Python process (imports not timed; SymPy's caches and the
cache folder empty), best of --repeats runs by total time. The stages are the ones
graphc.lowering times inside gc.compile (autodiff, the optimizer's updates, the optimize
passes, fuse, the memory plan, the code generator, storing and importing the module), so
the figures are those of the real pipeline. NumPy's BLAS is limited to --threads threads
(default 1): compiling is Python work, BLAS runs only for the orthogonal init (four QRs of
256x256), and on a loaded 2-core machine threaded BLAS made one QR take up to 0.5 s.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import graphc as gc
from graphc import recurrent as rec

from . import harness

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


def measure(T: int, args) -> dict:
    """Build + compile once, cold (a fresh cache folder), stage by stage: the stages are
    the lowering's own timings (step.timings, graphc.lowering), the passes optimize's."""
    with tempfile.TemporaryDirectory() as cache, harness.env_var("GRAPHC_CACHE_DIR", cache):
        cpu, t0 = time.process_time(), time.perf_counter()
        g, loss = build_model(T, args.vocab, args.hidden)
        times: dict = {"build": time.perf_counter() - t0}
        t1 = time.perf_counter()
        step = gc.compile(g, loss, gc.SGD(lr=0.1), backend="numpy")
        times["compile"] = time.perf_counter() - t1
        lines = step.source.count("\n")   # read before the cache folder goes
    times.update(step.timings)
    times["passes"] = dict(step.lowering.pass_timings)
    times["total"] = times["build"] + times["compile"]
    times["cpu"] = time.process_time() - cpu   # less disturbed by other processes
    times["other"] = times["compile"] - sum(step.timings.values())   # the runtime's wrappers
    return {"T": T, "model_nodes": len(g), "step_nodes": len(step.graph),
            "kernels": len(step.lowering.kernels), "source_lines": lines, "seconds": times}


def profile(T: int, args, top: int = 25) -> list:
    """cProfile of build + compile at length T: the `top` functions by own time, printed
    and returned as [function, calls, own s, cumulative s] rows."""
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as cache, harness.env_var("GRAPHC_CACHE_DIR", cache):
        prof.enable()
        g, loss = build_model(T, args.vocab, args.hidden)
        gc.compile(g, loss, gc.SGD(lr=0.1), backend="numpy")
        prof.disable()
    # {(file, line, name): (prim, calls, own, cum, ...)}; not in pstats' type stubs
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    table = [[f"{Path(f).name}:{line}({name})", calls, own, cum]
             for (f, line, name), (_, calls, own, cum, _) in rows]
    print(f"\ncProfile, T={T} (profiled run: slower than the table)\n")
    print(harness.table(table, ["function", "calls", "own s", "cumulative s"]))
    return table


COLUMNS = ["T", "nodes", "step nodes", "build", "autodiff", "updates", "optimize", "fuse",
           "plan", "generate", "store+import", "other", "total s", "x prev", "cpu s"]


def row(r: dict, prev: dict | None) -> list:
    s = r["seconds"]
    growth = f"{s['total'] / prev['seconds']['total']:.2f}" if prev else ""
    return [r["T"], r["model_nodes"], r["step_nodes"], s["build"], s["autodiff"],
            s["updates"], s["optimize"], s["fuse"], s["plan"], s["generate"],
            s["store"] + s["import"], s["other"], s["total"], growth, s["cpu"]]


def set_threads(count: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(count)
    except ImportError:
        print("threadpoolctl missing: NumPy's BLAS threads left as they are", file=sys.stderr)


def in_fresh_process(T: int, args) -> dict:
    """measure(T) in a new interpreter: nothing cached from the other lengths."""
    cmd = [sys.executable, "-m", "graphc.bench.unroll_compile", "--one", str(T),
           "--vocab", str(args.vocab), "--hidden", str(args.hidden),
           "--threads", str(args.threads)]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def best_of(T: int, args) -> dict:
    runs = [in_fresh_process(T, args) for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["seconds"]["total"])
    best["totals_of_repeats"] = [r["seconds"]["total"] for r in runs]
    return best


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--repeats", type=int, default=1, help="runs per length, best kept")
    p.add_argument("--threads", type=int, default=1, help="NumPy BLAS threads")
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--profile", type=int, metavar="T", help="also cProfile length T")
    p.add_argument("--out", type=Path, help="JSON path (default: docs/bench-results/"
                                             "unroll-compile-<cpu>.json)")
    p.add_argument("--no-json", action="store_true")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one length, JSON out
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return None
    results = []
    for T in args.lengths:
        results.append(best_of(T, args))
        print(harness.table([row(results[-1], results[-2] if len(results) > 1 else None)],
                            COLUMNS).splitlines()[-1], flush=True)
    print(f"\nseconds, cold (fresh process, empty cache folder), best of {args.repeats}; "
          "x prev: total over the previous length's total\n")
    previous: list = [None, *results[:-1]]
    print(harness.table([row(r, q) for r, q in zip(results, previous)], COLUMNS))
    at = next((r for r in results if r["T"] == TARGET_T), None)
    if at:
        ok = at["seconds"]["total"] < TARGET_S
        print(f"\nT={TARGET_T}: {at['seconds']['total']:.1f} s "
              f"({'within' if ok else 'over'} the {TARGET_S:.0f} s target)")
    record = {"benchmark": "bench_unroll_compile", "model": {
        "vocab": args.vocab, "hidden": args.hidden, "cell": "lstm", "optimizer": "SGD",
        "backend": "numpy", "loss": "mean over time of softmax cross-entropy"},
        "repeats": args.repeats, "blas_threads": args.threads,
        "environment": harness.environment(), "results": results}
    if args.profile:
        record["profile"] = {"T": args.profile, "top_by_own_time": profile(args.profile, args)}
    if not args.no_json:
        path = args.out or harness.results_dir() / f"unroll-compile-{harness.cpu_label()}.json"
        print(f"wrote {harness.write_json(path, record)}")
    return record


if __name__ == "__main__":
    main()
