"""Where a benchmark runs: graphc's host backends (C and NumPy) on host arrays, or the Triton
backend on torch tensors on a CUDA GPU (or on the CPU under Triton's interpreter, for smoke
checks only). Device-side timing (CUDA events around batches of calls), graphc's generated
`run` bound to device tensors, and the device's description for the record."""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import harness

HOST_BACKENDS = ("c", "numpy")   # timed side by side on the CPU; the first is the reference


@dataclass(frozen=True)
class Device:
    """backends: the graphc backends timed, the reference first: host ones ('c', 'numpy')
    on host arrays with a per-call wall clock, or ('triton',) on torch tensors on `name`
    ('cuda', or 'cpu' for the interpreter; batches timed on the device)."""
    backends: tuple = HOST_BACKENDS
    name: str = "cpu"

    @property
    def host(self) -> bool:
        """graphc is called on NumPy arrays as a user calls it (C or NumPy backend)."""
        return "triton" not in self.backends

    @property
    def interpreter(self) -> bool:
        return not self.host and self.name == "cpu"

    def tensor(self, array, requires_grad: bool = False):
        """A torch tensor on this device holding a copy of `array` (for eager torch)."""
        import torch
        t = torch.tensor(np.asarray(array), device=self.name)
        return t.requires_grad_() if requires_grad else t

    def call(self, compiled, feeds: dict) -> Callable[[], tuple]:
        """One call of graphc's compiled function or step on these feeds, as it is timed:
        the user's call on NumPy arrays, or the generated `run` on device tensors."""
        if self.host:
            return lambda: compiled(feeds)
        return direct_run(compiled, {k: self.tensor(v) for k, v in feeds.items()})

    def sync(self) -> None:
        sync(self.name)

    def interleaved(self, fns: dict, rounds: int, reps: int, warmup: int,
                    before: dict | None = None) -> dict:
        """Seconds per call: each call on its own on the host, batches on a device;
        before[name](), where given, runs untimed before each warm-up and batch of name."""
        if self.host:
            return harness.interleaved(fns, rounds, reps, warmup, before)
        return interleaved(fns, self.name, rounds, reps, warmup, before)


def numpy_of(value) -> np.ndarray:
    """A NumPy copy of an array, a torch tensor (any device) or a number."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


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
                warmup: int, before: dict | None = None) -> dict[str, np.ndarray]:
    """Seconds per call of each function, one sample per round: after `warmup` calls
    each, every round times a batch of `reps` calls of each function, the order rotating
    from round to round (as harness.interleaved) so drifts of clock and temperature are
    shared evenly. before[name]() runs (untimed) before each warm-up and batch."""
    names = list(fns)
    setup = harness.setups(names, before)
    for name in names:
        setup[name]()
        for _ in range(warmup):
            fns[name]()
    sync(device)
    times: dict[str, list] = {name: [] for name in names}
    for r in range(rounds):
        for name in harness.rotated(names, r):
            setup[name]()
            times[name].append(batch_seconds(fns[name], reps, device))
    return {name: np.asarray(t, dtype=np.float64) for name, t in times.items()}


def first_call(fn: Callable[[], object], device: str) -> tuple[float, object]:
    """(seconds, result) of one call, finished on the device."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


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


# ---- the record -------------------------------------------------------------------------------

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
