"""One training step of the digits MLP (64-128-10, tanh, softmax cross-entropy, SGD with
momentum, batch 64): `graphc bench mlp_small` at more calls. graphc's generated steps (C and
NumPy) vs NumPy by hand vs PyTorch eager (at the faster of 1 thread and torch's default) vs
torch.compile (warmed up; its first call, the compile, on an empty Inductor cache), timed
side by side in one process; compile times; a JSON record.

    python -m graphc.bench.digits_step [--rounds 50] [--reps 40] [--threads 1] [--no-torch-compile]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from . import harness
from .runner import BenchConfig, report, run

WORKLOAD = "mlp_small"   # graphc bench's digits step: one definition, in training.py


def set_blas_threads(count: int | None) -> None:
    """NumPy's BLAS threads for this run (None: as they are); torch's are the runner's."""
    if count is None:
        return
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(count)
    except ImportError:
        print("threadpoolctl missing: NumPy's BLAS threads left as they are")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=None,
                   help="torch (eager and compiled) and BLAS threads for this run (default: "
                        "BLAS as it is, torch eager calibrated)")
    p.add_argument("--no-torch-compile", action="store_true")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: docs/bench-results/digits-step-cpu-<cpu>.json)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run, print the report, write the JSON record; returns the record."""
    args = parse_args(argv)
    set_blas_threads(args.threads)
    cfg = BenchConfig([WORKLOAD], torch_compile=not args.no_torch_compile,
                      compile_skip_reason="--no-torch-compile", torch_threads=args.threads,
                      timing=(args.rounds, args.reps, args.warmup))
    with tempfile.TemporaryDirectory(prefix="inductor-bench-") as inductor, \
            harness.env_var("TORCHINDUCTOR_CACHE_DIR", inductor):   # torch.compile cold too
        record = run(cfg)
    print(report(record))
    threads = "" if args.threads is None else f"-{args.threads}thread"
    out = args.out or harness.results_dir() / f"digits-step-cpu-{harness.cpu_label()}{threads}.json"
    print(f"written: {harness.write_json(out, record)}")
    return record


if __name__ == "__main__":
    main()
