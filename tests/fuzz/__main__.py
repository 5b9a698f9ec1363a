"""python -m tests.fuzz: run N random programs per seed through the chosen configurations;
failures are shrunk and written out as runnable reproducers; prints one summary line."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from graphc import config  # noqa: E402 - reads no environment on import

if not config.nvidia_driver_present():  # the interpreter, set before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")

from .run import configs_for, force_parallel_forms, force_wide_forms, fuzz  # noqa: E402


def _interrupt(signum, frame):
    raise KeyboardInterrupt   # fuzz() returns what it has: --summary says how far it got


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--graphs", type=int, default=100, help="programs per seed")
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--backend", choices=["numpy", "c", "triton", "both", "all"],
                   default="numpy", help="both: numpy and triton; all: numpy, c and triton")
    p.add_argument("--fusion", choices=["on", "off", "both"], default="both")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--inputs", choices=["normal", "grid", "special"], default="normal")
    p.add_argument("--matmul", choices=["library", "fused", "both"], default="library",
                   help="fused: matmuls take their epilogues (float32, Triton kernels)")
    p.add_argument("--wide-forms", action="store_true",
                   help="Triton: force looped rows kernels and split reductions on small shapes")
    p.add_argument("--parallel-forms", action="store_true",
                   help="C backend: every loop in its OpenMP parallel form, split over "
                        "threads (MIN_PARALLEL_WORK 1), as large shapes get it")
    p.add_argument("--max-ops", type=int, default=8)
    p.add_argument("--jobs", type=int, default=1,
                   help="graphs run in this many processes (failures are shrunk in this one)")
    p.add_argument("--out", type=Path, default=Path("fuzz-out"), help="reproducers go here")
    p.add_argument("--summary", type=Path, help="also write the summary as JSON here")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    configs = configs_for(a.backend, a.fusion, a.dtype, a.inputs, a.matmul)
    if a.wide_forms:
        force_wide_forms()
    if a.parallel_forms:
        force_parallel_forms()
    signal.signal(signal.SIGTERM, _interrupt)   # kill PID, as Ctrl-C
    start = time.perf_counter()
    result = fuzz(a.graphs, a.seed, configs, max_ops=a.max_ops, out=a.out,
                  progress=not a.no_progress, jobs=a.jobs, wide_forms=a.wide_forms,
                  parallel_forms=a.parallel_forms)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["command"] = "python -m tests.fuzz " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"fuzz: {result['graphs']} graphs x {len(configs)} configs "
          f"({', '.join(result['configs'])}): {result['mismatches']} mismatches, "
          f"{result['refused']} refused (known gaps), {result['wall_s']} s"
          + (" (interrupted)" if result.get("interrupted") else ""))
    for path in result["reproducers"]:
        print(f"  reproducer: {path}")
    if a.summary:
        a.summary.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if result["mismatches"] or result.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
