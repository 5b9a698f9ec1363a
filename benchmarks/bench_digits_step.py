"""One training step of the digits MLP (64-128-10, tanh, softmax cross-entropy, SGD with
momentum, batch 64): graphc's generated step (C here, where a compiler works) vs NumPy by
hand vs PyTorch eager vs torch.compile, timed side by side in one process; compile times; a
JSON record.

    python -m benchmarks.bench_digits_step [--rounds 50] [--reps 40] [--no-torch-compile]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import graphc as gc
from benchmarks import harness
from benchmarks.reference_steps import NumpyMLPStep, TorchMLPStep, batches, parity
from examples.digits_mlp import build_model, load_data

GRAPHC = "graphc (generated step)"   # on the backend "auto" picks: config.backend
HAND = "NumPy by hand"
EAGER = "PyTorch eager"
COMPILED = "torch.compile"
RESULTS = Path(__file__).resolve().parent / "results"


def compile_graphc(args, cache_dir: str) -> tuple[dict, object]:
    """Graph build to callable step with an empty cache folder (cold), then again with the
    file already there (warm); returns the times and the cold step."""
    times, steps = {}, {}
    with harness.env_var("GRAPHC_CACHE_DIR", cache_dir):
        for kind in ("cold", "warm"):
            times[f"graphc_{kind}_s"], steps[kind] = harness.timed(lambda: _graphc_step(args))
    times["graphc_cold_stages_s"] = dict(steps["cold"].timings)
    return times, steps["cold"]


def _graphc_step(args):
    graph, _, loss = build_model(seed=args.seed)
    return gc.compile(graph, loss, optimizer=gc.SGD(lr=args.lr, momentum=args.momentum))


def make_steps(args, gstep) -> tuple[dict, dict]:
    """The steps to compare, all from the graphc step's initial parameters, and a note on
    torch.compile: its first call (the compilation) on a fresh cache, or why it was skipped."""
    steps = {GRAPHC: lambda x, y: gstep(x=x, y=y),
             HAND: NumpyMLPStep(gstep, args.lr, args.momentum),
             EAGER: TorchMLPStep(gstep, args.lr, args.momentum)}
    note: dict = {"torch_compile_first_call_s": None, "torch_compile_skipped": None}
    if args.no_torch_compile:
        note["torch_compile_skipped"] = "--no-torch-compile"
        return steps, note
    try:
        steps[COMPILED] = harness.FirstCall(TorchMLPStep(gstep, args.lr, args.momentum,
                                                         compile=True))
    except Exception as e:  # noqa: BLE001 - any failure to set it up means: skip, say why
        note["torch_compile_skipped"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return steps, note


def check_and_probe(steps: dict, data: list, note: dict) -> dict:
    """One step each on the first batch (torch.compile compiles here, timed), then the
    same losses step by step on the rest: the largest difference to graphc's loss."""
    x0, y0 = data[0]
    first = {}
    for name in list(steps):
        try:
            first[name] = steps[name](x0, y0)
        except Exception as e:  # noqa: BLE001 - torch.compile may fail on this machine
            if name != COMPILED:
                raise
            note["torch_compile_skipped"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            del steps[name]
    if COMPILED in steps:
        note["torch_compile_first_call_s"] = steps[COMPILED].seconds
    drift = parity(steps, data[1:])
    return {k: max(v, abs(first[k] - first[GRAPHC])) for k, v in drift.items()}


def set_threads(count: int | None) -> None:
    """Thread count for PyTorch and NumPy's BLAS for this run only (None: leave as is)."""
    if count is None:
        return
    import torch
    torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(count)
    except ImportError:
        print("threadpoolctl missing: NumPy's BLAS threads left as they are")


def run(args) -> dict:
    """Compile, check, time; returns the record written to JSON."""
    x_train, _, y_train, _ = load_data(args.seed)  # loads SciPy's BLAS: before set_threads
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache, \
            tempfile.TemporaryDirectory(prefix="inductor-bench-") as inductor, \
            harness.env_var("TORCHINDUCTOR_CACHE_DIR", inductor):  # torch.compile cold too
        compile_times, gstep = compile_graphc(args, cache)
        steps, note = make_steps(args, gstep)
        data = batches(x_train, y_train, args.batch_size, count=6, seed=args.seed)
        drift = check_and_probe(steps, data, note)
        x, y = data[0]
        times = harness.interleaved({k: (lambda fn=fn: fn(x, y)) for k, fn in steps.items()},
                                    rounds=args.rounds, reps=args.reps, warmup=args.warmup)
    stats = {k: harness.summary(t) for k, t in times.items()}
    med = {k: s["median_us"] for k, s in stats.items()}
    ratios = {"graphc/handwritten": med[GRAPHC] / med[HAND],
              "eager/graphc": med[EAGER] / med[GRAPHC]}
    if COMPILED in med:
        ratios["compiled/graphc"] = med[COMPILED] / med[GRAPHC]
    return {"benchmark": "digits_mlp_training_step",
            "config": {"model": "64-128-10 tanh MLP, softmax cross-entropy",
                       "batch_size": args.batch_size, "lr": args.lr,
                       "momentum": args.momentum, "rounds": args.rounds, "reps": args.reps,
                       "warmup": args.warmup, "threads_set": args.threads,
                       "backend": gstep.backend},
            "environment": harness.environment(),
            "compile": {**compile_times, **note},
            "max_loss_difference_to_graphc": drift,
            "step_us": stats, "ratios": ratios}


def report(record: dict) -> str:
    """The printed summary: the timing table, ratios and compile times."""
    stats, comp = record["step_us"], record["compile"]
    base = stats[GRAPHC]["median_us"]
    rows = [[k, s["median_us"], s["q1_us"], s["q3_us"], s["iqr_us"], s["median_us"] / base]
            for k, s in stats.items()]
    env, cfg = record["environment"], record["config"]
    lines = [f"digits MLP training step (graphc backend {cfg.get('backend')}), batch "
             f"{cfg['batch_size']}: {cfg['rounds']} interleaved "
             f"rounds x {cfg['reps']} calls, after {cfg['warmup']} warm-up calls",
             f"{env['cpu']} ({env['cpu_count']} cores), torch threads "
             f"{env.get('torch_threads')}, thread pools: "
             + (", ".join(f"{b['prefix']} {b['num_threads']}" for b in env["blas"]) or "?"),
             harness.table(rows, ["step", "median µs", "q1", "q3", "IQR", "time / graphc"]),
             "ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in record["ratios"].items()),
             f"graphc compile, graph to callable: cold {comp['graphc_cold_s'] * 1e3:.0f} ms, "
             f"warm (same process: files and lowering reused) {comp['graphc_warm_s'] * 1e3:.0f} ms"]
    if comp["torch_compile_first_call_s"] is not None:
        lines.append(f"torch.compile first call (compiles): "
                     f"{comp['torch_compile_first_call_s']:.1f} s")
    else:
        lines.append(f"torch.compile skipped: {comp['torch_compile_skipped']}")
    drift = record["max_loss_difference_to_graphc"]
    lines.append("same losses, max |difference| to graphc over 6 steps: "
                 + ", ".join(f"{k} {v:.1e}" for k, v in drift.items() if k != GRAPHC))
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=None,
                   help="set torch and BLAS threads for this run (default: as they are)")
    p.add_argument("--no-torch-compile", action="store_true")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: benchmarks/results/cpu-<cpu label>.json)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    record = run(args)
    print(report(record))
    threads = "" if args.threads is None else f"-{args.threads}thread"
    out = args.out or RESULTS / f"cpu-{harness.cpu_label()}{threads}.json"
    print(f"written: {harness.write_json(out, record)}")
    return record


if __name__ == "__main__":
    main()
