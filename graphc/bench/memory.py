"""Memory of one call, measured the same way for every contender of a workload.

Two figures a row: `call_bytes`, what one call allocates at its peak beyond what was
resident before it, and for graphc's rows `arena_bytes`, the buffers its memory plan
allocates once per batch size and holds between calls (a step's activations live there).

On the host the measure is resident memory, which sees NumPy's, torch's and C's
allocations alike. A fresh process builds the workload's rows (graphc compiled, torch
eager; no torch.compile) and calls each once, a warm-up in which graphc allocates its
arena and torch its lazy state. Then, for each row, it resets the kernel's peak mark
(/proc/self/clear_refs 5), calls once more and takes VmHWM minus the VmRSS before. glibc's
mmap threshold is fixed at one page in that process (MALLOC_MMAP_THRESHOLD_), so a freed
block goes back to the system and the next call's blocks count again. Linux counts
resident pages per thread in batches of 64, so figures under RESOLUTION (256 KiB) are
noise. On a GPU: torch's allocator peak during one call
(max_memory_allocated minus memory_allocated before), graphc's buffers being torch tensors.

    python -m graphc.bench.memory WORKLOAD [--size quick|default] [--backends c numpy]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from . import workloads
from .device import HOST_BACKENDS, Device

CLEAR_REFS = Path("/proc/self/clear_refs")
RESOLUTION = 64 * 4096   # bytes: the kernel's batch of resident-page counts
METHOD_HOST = ("resident memory: the peak over one call (after a warm-up call) minus what "
               "was resident before it, in a fresh process with glibc's mmap threshold fixed "
               "at 4 KiB, so freed blocks are returned and every call's count again")
METHOD_GPU = "torch's CUDA allocator: the peak during one call minus what was allocated before"
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "4096"}


def available() -> tuple[bool, str]:
    """Whether resident memory can be measured here (Linux with a resettable peak mark)."""
    if not sys.platform.startswith("linux"):
        return False, f"peak resident memory is read from /proc on Linux, not {sys.platform}"
    if not os.access(CLEAR_REFS, os.W_OK):
        return False, f"{CLEAR_REFS} is not writable here (the peak mark cannot be reset)"
    return True, ""


def _resident() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines() if line.startswith(("VmRSS", "VmHWM")))
    return tuple(int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))  # type: ignore


def call_bytes(call) -> int:
    """Resident bytes one call adds at its peak (run in the fresh measuring process)."""
    call()
    gc.collect()
    CLEAR_REFS.write_text("5")
    before, _ = _resident()
    call()
    _, peak = _resident()
    return max(peak - before, 0)


def _cuda_call_bytes(call) -> int:
    import torch
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated() - before)


def _figures(rows, measure) -> dict:
    out = {}
    for r in rows:
        if r.torch == "compile":
            continue
        figures = {"call_bytes": measure(r.call)}
        if r.compiled is not None:
            figures["arena_bytes"] = r.compiled.arena_bytes
        out[r.name] = figures
    return out


def measure(name: str, size: str, dev: Device, rows) -> dict:
    """The record's memory part: on the host measured in a fresh process, on a GPU here."""
    if dev.host:
        return on_host(name, size, dev.backends)
    if dev.interpreter:
        return {"method": METHOD_GPU, "rows": {},
                "skipped": "the Triton interpreter runs on CPU tensors: no GPU memory to read"}
    return on_gpu(rows)


def on_gpu(rows) -> dict:
    """The record's memory part for rows already built on a CUDA device."""
    return {"method": METHOD_GPU, "rows": _figures(rows, _cuda_call_bytes)}


def on_host(name: str, size: str, backends: tuple) -> dict:
    """The record's memory part for workload `name`, measured in a fresh process (the
    skip reason instead where resident memory cannot be measured here)."""
    ok, why = available()
    if not ok:
        return {"method": METHOD_HOST, "skipped": why, "rows": {}}
    cmd = [sys.executable, "-m", "graphc.bench.memory", name, "--size", size,
           "--backends", *backends]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **CHILD_ENV})
    if done.returncode != 0:
        return {"method": METHOD_HOST, "rows": {},
                "skipped": f"the measuring process failed: {done.stderr.strip()[-400:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_here(name: str, size: str, backends: tuple) -> dict:
    """The measuring process's work: build the rows, warm each, measure each."""
    dev = Device(backends)
    work = workloads.WORKLOADS[name](size, False, dev)
    rows = work.rows({b: work.compile_graphc(b) for b in backends})  # values checked
    return {"method": METHOD_HOST, "resolution_bytes": RESOLUTION,
            "rows": _figures(rows, call_bytes)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=workloads.NAMES)
    p.add_argument("--size", choices=("quick", "default"), default="default")
    p.add_argument("--backends", nargs="+", choices=HOST_BACKENDS, default=list(HOST_BACKENDS))
    args = p.parse_args(argv)
    print(json.dumps(measure_here(args.workload, args.size, tuple(args.backends))))


if __name__ == "__main__":
    main()
