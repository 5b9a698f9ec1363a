"""What the GPU benchmarks share: the device for a run (CUDA, or the CPU under Triton's
interpreter for `--smoke`), fresh compile caches, device-side timing of interleaved
batches of calls, graphc's generated `run` bound to device tensors, accuracy against a
float64 reference, targets judged only on a real GPU, and the JSON record's name."""
from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import harness

RESULTS = Path(__file__).resolve().parent / "results"


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
                   help="JSON path (default: benchmarks/results/gpu-<gpu>-<benchmark>.json; "
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


# ---- timing --------------------------------------------------------------------------------

def sync(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def batch_seconds(fn: Callable[[], object], reps: int, device: str) -> float:
    """Seconds per call of `reps` back-to-back calls: CUDA events around the batch on a
    GPU (the calls queue asynchronously, so launch cost hides behind running kernels
    unless it is the bottleneck), the wall clock on the CPU."""
    if device != "cuda":
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps
    import torch
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3 / reps


def interleaved(fns: dict[str, Callable[[], object]], device: str, rounds: int, reps: int,
                warmup: int) -> dict[str, np.ndarray]:
    """Seconds per call of each function, one sample per round: after `warmup` calls
    each, every round times a batch of `reps` calls of each function, the order rotating
    from round to round (as harness.interleaved) so drifts of clock and temperature are
    shared evenly."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync(device)
    times: dict[str, list] = {name: [] for name in names}
    for r in range(rounds):
        for name in harness.rotated(names, r):
            times[name].append(batch_seconds(fns[name], reps, device))
    return {name: np.asarray(t, dtype=np.float64) for name, t in times.items()}


def first_call(fn: Callable[[], object], device: str) -> tuple[float, object]:
    """(seconds, result) of one call, finished on the device."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


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


def skip_reason(error: BaseException) -> str:
    """One line saying why a contender (torch.compile, usually) was left out."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def compile_note(args) -> str | None:
    """Why torch.compile is left out of this run, or None when it runs."""
    if args.torch_compile:
        return None
    return "--smoke (add --torch-compile to include it)" if args.smoke else "--no-torch-compile"


# ---- graphc's generated code on device tensors ------------------------------------------

def direct_run(compiled, feeds: dict) -> Callable[[], tuple]:
    """A call of a compiled graphc Function or TrainStep's generated `run` on torch tensors
    already on its device: no NumPy feeds, no host copies, no result copies (what
    TorchStorage._run does around the same call). Buffers are made once, here."""
    module = compiled.module
    tensors = [feeds[name] for name in module.INPUTS]
    dims: dict = {}
    for name, t in zip(module.INPUTS, tensors):
        if t.device.type != compiled.device or not t.is_contiguous():
            raise ValueError(f"feed {name!r} must be a contiguous tensor on "
                             f"{compiled.device}, got {t.device} (contiguous: "
                             f"{t.is_contiguous()})")
        for d, size in zip(compiled.graph.attrs(name)["shape"], t.shape):
            if not isinstance(d, int):
                dims[str(d)] = int(size)
    buf = module.allocate(*(dims[d] for d in module.DIMS))
    params, consts = compiled.params, compiled.consts
    run = module.run
    if compiled.device == "cpu":  # the interpreter computes masked-off lanes too
        run = np.errstate(all="ignore")(run)
    return lambda: run(*tensors, params, consts, buf)


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


def environment(device: str) -> dict:
    """harness.environment plus Triton, the device and, on a GPU, its name, memory, SMs,
    CUDA and driver versions, clocks and the TF32 settings that change float32 matmuls."""
    import torch
    import triton
    env = harness.environment()
    env.update(triton=triton.__version__, device=device,
               triton_interpret=os.environ.get("TRITON_INTERPRET") == "1")
    if device != "cuda":
        return env
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=torch.cuda.get_device_name(0), gpu_capability=f"{p.major}.{p.minor}",
               gpu_memory_gib=round(p.total_memory / 2**30, 1),
               gpu_multiprocessors=p.multi_processor_count, cuda=torch.version.cuda,
               tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
               float32_matmul_precision=torch.get_float32_matmul_precision(),
               nvidia_smi=nvidia_smi())
    return env


def nvidia_smi() -> dict | None:
    """Driver version, clocks and power limit from nvidia-smi, if it is there."""
    fields = "driver_version,clocks.max.sm,clocks.max.mem,clocks.sm,power.limit,pstate"
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={fields}",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    values = [v.strip() for v in done.stdout.splitlines()[0].split(",")]
    return dict(zip(fields.split(","), values))


def gpu_label() -> str:
    """A file-name label for the GPU: `nvidia-h100-80gb-hbm3`."""
    import torch
    slug = "-".join(re.findall(r"[a-z0-9]+", torch.cuda.get_device_name(0).lower()))
    return slug[:40].strip("-") or "unknown"


def write_record(args, benchmark: str, record: dict) -> Path | None:
    """Write the JSON record: to --out, else benchmarks/results/gpu-<gpu>-<benchmark>.json;
    a smoke run only to --out."""
    path = args.out
    if path is None and not args.smoke:
        path = RESULTS / f"gpu-{gpu_label()}-{benchmark}.json"
    if path is None:
        return None
    return harness.write_json(path, record)


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
