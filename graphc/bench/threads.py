"""Thread settings of every `graphc bench` contender, for the header, the table and the record:
torch eager at the faster of one thread and torch's default (a short calibration per row,
which also picks the fastest of a row's options, e.g. Adam's foreach or fused), torch.compile
at the default, graphc C at GRAPHC_NUM_THREADS (else every core), NumPy's ufuncs and copies
on one thread, its BLAS at the size of its pool (read by threadpoolctl, where installed)."""
from __future__ import annotations

import itertools
import os
from typing import Callable

import numpy as np

from graphc import config

from .device import Device

CALIBRATION_ROUNDS = 3   # interleaved rounds of the calibration, at most


def torch_default() -> int:
    """torch's thread count as it is now (the runner reads it before changing it)."""
    import torch
    return torch.get_num_threads()


def set_torch(n: int) -> Callable[[], None]:
    """A function that sets torch's intra-op threads to n (0.2 µs: run before each batch)."""
    import torch
    return lambda: torch.set_num_threads(n)


def blas() -> list | str:
    """NumPy's BLAS pools as [{library, threads}], or 'unknown' without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    return [{"library": i.get("internal_api"), "threads": i.get("num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"] or "unknown"


def settings(backends: list, torch_threads: int | None) -> dict:
    """The record's thread settings. torch_threads: eager and torch.compile pinned there;
    None: eager calibrated between 1 and torch's default, torch.compile at the default."""
    default = torch_default()
    out = {"torch_default": default,
           "torch_eager": torch_threads or f"calibrated: the faster of 1 and {default}",
           "torch_compile": torch_threads or default,
           "numpy_ufuncs": 1, "blas": blas()}
    if "c" in backends:
        chosen = os.environ.get("GRAPHC_NUM_THREADS")
        out["graphc_c"] = config.c_threads()
        out["graphc_c_with_blas"] = config.c_threads(library_matmuls=True)
        out["graphc_c_from"] = f"GRAPHC_NUM_THREADS={chosen}" if chosen else \
            "the default: every core, 1 in steps that call BLAS; GRAPHC_NUM_THREADS unset"
    return out


def plural(n) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def blas_text(s: dict) -> str:
    if s["blas"] == "unknown":
        return "BLAS unknown (threadpoolctl not installed)"
    return ", ".join(f"BLAS ({b['library']}) {plural(b['threads'])}" for b in s["blas"])


def describe(s: dict, host: bool) -> str:
    """The header line: every contender's threads."""
    if not host:
        return f"torch threads (host side): {s['torch_default']}"
    eager = s["torch_eager"]
    parts = [f"torch eager {plural(eager)}" if isinstance(eager, int) else
             f"torch eager the faster of 1 and {plural(s['torch_default'])} per row "
             "(calibrated; torch's default is the second)",
             f"torch.compile {plural(s['torch_compile'])}"]
    if "graphc_c" in s:
        parts.append(f"graphc C {plural(s['graphc_c'])} ({s['graphc_c_from']})")
    parts.append(f"graphc NumPy, NumPy by hand and NumPy copy: ufuncs 1 thread, "
                 f"{blas_text(s)}")
    return "threads: " + "; ".join(parts)


def label(rows: list, s: dict, matmuls: bool, host: bool) -> None:
    """Set each row's torch_threads and settings text (calibrate refines eager rows)."""
    if not host:
        return
    blas_part = f", {blas_text(s)}" if matmuls else ""
    eager = s["torch_eager"] if isinstance(s["torch_eager"], int) else s["torch_default"]
    for r in rows:
        if r.torch is not None:
            r.torch_threads = s["torch_compile"] if r.torch == "compile" else eager
            r.settings = plural(r.torch_threads)
        elif r.backend == "c":
            # a step that calls library matmuls runs its kernels on fewer threads (config)
            r.settings = plural(s["graphc_c_with_blas" if matmuls else "graphc_c"]) + blas_part
        else:   # graphc NumPy, NumPy by hand, NumPy copy
            r.settings = plural(1) + ("" if r.copy else blas_part)


def calibrate(rows: list, dev: Device, timing: tuple, s: dict) -> dict:
    """For each eager torch row (on the CPU, torch threads not pinned: 1 and the default)
    and each row with options: time every (option, thread count) in a few interleaved
    rounds and keep the fastest. Returns row -> {"median_us": {candidate: µs}, "chosen"}."""
    counts = sorted({1, s["torch_default"]}) if dev.host and \
        not isinstance(s["torch_eager"], int) else [None]
    rounds, reps, _ = timing
    out = {}
    for r in rows:
        options = r.options or {"": r.call}
        tried = counts if r.torch == "eager" else [None]
        if len(options) * len(tried) < 2:
            continue
        fns, setup, picks = {}, {}, {}
        for (option, call), n in itertools.product(options.items(), tried):
            key = ", ".join(filter(None, [option, n and plural(n)]))
            fns[key], picks[key] = call, (call, n or r.torch_threads, option)
            if n or r.torch_threads:
                setup[key] = set_torch(n or r.torch_threads)
        times = dev.interleaved(fns, min(CALIBRATION_ROUNDS, rounds), max(1, reps // 3), 1,
                                before=setup)
        medians = {k: float(np.median(t)) * 1e6 for k, t in times.items()}
        best = min(medians, key=lambda k: medians[k])
        r.call, r.torch_threads, option = picks[best]
        r.settings = ", ".join(filter(None, [option, r.torch_threads and
                                             plural(r.torch_threads)])) + \
            f" (fastest of {len(fns)})"
        out[r.name] = {"median_us": medians, "chosen": best}
    return out


def before(rows: list) -> dict:
    """row name -> what runs before its batches: rows of torch set its thread count."""
    return {r.name: set_torch(r.torch_threads) for r in rows if r.torch_threads}
