"""What the GPU target benchmarks (gpu_*.py) share: the command line, the device for a run
(CUDA, or the CPU under Triton's interpreter for `--smoke`), fresh compile caches, accuracy
against a float64 reference, targets judged only on a real GPU, and the JSON record's name.
Device-side timing and graphc's `run` bound to device tensors are device.py's."""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from . import harness
from .base import skip_reason
from .device import first_call, gpu_label, sync

# ---- command line and device ---------------------------------------------------------------

def parser(doc: str, rounds: int, reps: int, warmup: int) -> argparse.ArgumentParser:
    """The options every GPU benchmark takes; each script adds its sizes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, on the CPU under the Triton interpreter (a CI check)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="default: cuda; cpu (the interpreter) with --smoke")
    p.add_argument("--rounds", type=int, default=None, help=f"default {rounds}; 2 with --smoke")
    p.add_argument("--reps", type=int, default=None,
                   help=f"calls per timed batch, default {reps}; 1 with --smoke")
    p.add_argument("--warmup", type=int, default=None, help=f"default {warmup}; 0 with --smoke")
    p.set_defaults(timing=(rounds, reps, warmup))
    p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="time torch.compile too (default: yes, except with --smoke)")
    p.add_argument("--compile-mode", default="default", help="torch.compile's mode")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile's backend ('eager' checks the tracing only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: docs/bench-results/gpu-<gpu>-<benchmark>.json; "
                        "a smoke run writes only when this is given)")
    return p


SMOKE_TIMING = (2, 1, 0)   # rounds, reps, warm-up calls: the interpreter is slow


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on --smoke: the device, the rounds, torch.compile."""
    if args.device is None:
        args.device = "cpu" if args.smoke else "cuda"
    given = (args.rounds, args.reps, args.warmup)
    default = SMOKE_TIMING if args.smoke else args.timing
    args.rounds, args.reps, args.warmup = (g if g is not None else d
                                           for g, d in zip(given, default))
    if args.torch_compile is None:
        args.torch_compile = not args.smoke
    return args


def setup(args: argparse.Namespace, program: str) -> str:
    """Check the device (before touching the environment), point the graphc, Triton and
    Inductor caches at fresh temporary folders (cold compiles, the user's caches
    untouched), and return the device. On the CPU, Triton runs as its interpreter, chosen
    here before Triton is imported."""
    import torch
    if args.device == "cpu" and not args.smoke:
        raise SystemExit(f"{program}: full sizes need a CUDA GPU; --smoke runs tiny sizes "
                         "on the CPU under the Triton interpreter")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"{program}: no CUDA GPU here (torch {torch.__version__}, CUDA "
                         f"{torch.version.cuda}); this benchmark times GPU kernels. Run it "
                         "with --smoke for a tiny check on the CPU (Triton interpreter).")
    if args.device == "cuda" and os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit(f"{program}: TRITON_INTERPRET=1 is set; unset it to time compiled "
                         "kernels on the GPU")
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
        warnings.filterwarnings("ignore", message="Triton interpreter")
    for var in ("GRAPHC_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        os.environ[var] = fresh_dir(var.split("_")[0].lower())
    torch.manual_seed(args.seed)
    return args.device


def fresh_dir(stem: str) -> str:
    """An empty temporary folder, removed when the process exits."""
    path = tempfile.mkdtemp(prefix=f"{stem}-bench-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def warm_device(args) -> None:
    """Create the CUDA context and cuBLAS handle and import the compilers before anything
    is timed, so no contender's first call (a compile time) pays for them."""
    import torch
    import triton.language  # noqa: F401  (graphc's modules import it at load)
    if args.torch_compile:
        import torch._dynamo  # noqa: F401
        if args.compile_backend == "inductor":
            import torch._inductor.compile_fx  # noqa: F401
    a = torch.ones(64, 64, device=args.device)
    (a @ a).sum().item()
    sync(args.device)


def first_calls(fns: dict, device: str, optional: tuple = ()) -> tuple[dict, dict, dict]:
    """Call each contender once, timed (a torch.compile contender compiles here): returns
    (results, seconds, skipped). A contender named in `optional` that raises is dropped
    from `fns` with its reason in `skipped`; any other failure propagates."""
    outs, seconds, skipped = {}, {}, {}
    for name in list(fns):
        try:
            seconds[name], outs[name] = first_call(fns[name], device)
        except Exception as e:  # noqa: BLE001 - torch.compile may fail here: skip, say why
            if name not in optional:
                raise
            skipped[name] = skip_reason(e)
            del fns[name]
    return outs, seconds, skipped


def compile_note(args) -> str | None:
    """Why torch.compile is left out of this run, or None when it runs."""
    if args.torch_compile:
        return None
    return "--smoke (add --torch-compile to include it)" if args.smoke else "--no-torch-compile"


def kernel_kinds(compiled) -> list:
    """(name, kind) of each launch of a compiled graphc module, in order."""
    return [[k.name, k.kind] for k in compiled.kernels]


# ---- accuracy, targets, records --------------------------------------------------------------

def error(value, reference) -> float:
    """max |value - reference| / max |reference|: one number per tensor, in units of the
    reference's scale (a float32 result is good to about 1e-6 of it)."""
    v, r = value.detach().double(), reference.detach().double()
    scale = float(r.abs().max()) or 1.0
    return float((v - r).abs().max()) / scale


COMPARE = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b}


def judge(name: str, value: float | None, want: str, threshold: float, smoke: bool) -> dict:
    """A target's record (`want`: '>=', '>' or '<='); judged only on a real run with a
    value (None: a smoke run, or the contender it needs was skipped)."""
    met = None
    if not smoke and value is not None:
        met = bool(COMPARE[want](value, threshold))
    return {"target": name, "want": f"{want} {threshold}", "value": value, "met": met}


def targets_table(targets: list) -> str:
    rows = [[t["target"], t["want"], "-" if t["value"] is None else float(t["value"]),
             {True: "yes", False: "NO", None: "not judged"}[t["met"]]] for t in targets]
    return harness.table(rows, ["target", "wanted", "measured", "met"])


def write_record(args, benchmark: str, record: dict) -> Path | None:
    """Write the JSON record: to --out, else docs/bench-results/gpu-<gpu>-<benchmark>.json;
    a smoke run only to --out."""
    path = args.out
    if path is None and not args.smoke:
        path = harness.results_dir() / f"gpu-{gpu_label()}-{benchmark}.json"
    if path is None:
        return None
    return harness.write_json(path, record)


def time_rows(stats: dict, base: str, measure: dict) -> list:
    """The report table's rows: contender, median and IQR µs, its `measure` (GB/s, TFLOP/s),
    time relative to `base`."""
    ref = stats[base]["median_us"]
    return [[k, s["median_us"], s["iqr_us"], measure[k], s["median_us"] / ref]
            for k, s in stats.items()]


def compile_skipped(comp: dict) -> list:
    """The line saying why torch.compile was not timed, where it was not."""
    return [f"torch.compile skipped: {comp['torch_compile_skipped']}"] \
        if comp["torch_compile_skipped"] else []


def header(record: dict, what: str) -> list:
    """The first lines of a report: what ran, where, how it was timed."""
    env, cfg = record["environment"], record["config"]
    where = (f"{env['gpu']} (CUDA {env['cuda']}, torch {env['torch']}, triton "
             f"{env['triton']})" if env["device"] == "cuda" else
             f"CPU, Triton {env['triton']} interpreter, torch {env['torch']}")
    lines = [what, where,
             f"{cfg['rounds']} interleaved rounds x batches of {cfg['reps']} calls, after "
             f"{cfg['warmup']} warm-up calls; median and IQR over rounds of time per call"]
    if record["smoke"]:
        lines.insert(0, smoke_note(env["device"]).upper())
    return lines


def smoke_note(device: str) -> str:
    where = "on the CPU under the Triton interpreter" if device == "cpu" else "on the GPU"
    return (f"smoke run: tiny sizes {where}; the times say nothing about the targets, "
            "which are not judged")


def run_config(args) -> dict:
    """The timing settings for the record."""
    return {"rounds": args.rounds, "reps": args.reps, "warmup": args.warmup,
            "seed": args.seed, "torch_compile_mode": args.compile_mode,
            "torch_compile_backend": args.compile_backend}



def main(name: str, parse_args, run, report, argv=None) -> dict:
    """A benchmark script's main: parse, run, print the report, write the JSON record."""
    args = parse_args(argv)
    record = run(args)
    print(report(record))
    path = write_record(args, name, record)
    print(f"written: {path}" if path else "no JSON written (a smoke run writes with --out)")
    return record
