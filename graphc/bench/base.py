"""What every `graphc bench` workload is made of: timed rows, the workload record, the value
check that runs before any timing, sizes per device, and the optional torch.compile row.

A workload is `build(size, use_compile, device) -> Workload`; `size` is "quick" or
"default", and "default" means the issue's full sizes on a GPU, smaller ones on a CPU.
graphc's side is compiled once per backend the device times (C and NumPy on the CPU)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .device import Device, numpy_of

LABELS = {"c": "C", "numpy": "NumPy", "triton": "Triton"}   # backend -> its name in a row


@dataclass
class Row:
    """One timed contender; `vs` names the graphc row its time is compared with.

    backend: the graphc backend of a graphc row (None for the others); torch: "eager"
    (its thread count is calibrated on the CPU) or "compile" (runs at torch's default);
    options: other ways to call the same contender (label -> call; the calibration keeps
    the fastest, `call` is the first); bytes_moved: what one call must read and write."""
    name: str
    call: Callable[[], object]
    vs: str
    backend: str | None = None
    torch: str | None = None
    options: dict = field(default_factory=dict)
    bytes_moved: int | None = None
    copy: bool = False   # the copy that GB/s is measured against
    torch_threads: int | None = None   # torch's thread count for this row (set before it runs)
    settings: str = ""   # how it runs (threads, the option chosen), as printed
    compiled: Any = None   # a graphc row's Function or TrainStep (its arena_bytes)


@dataclass
class Workload:
    """What the runner needs: how to compile graphc's side for one backend (called cold,
    then warm), and, from the compiled results (backend -> result, the reference first),
    the rows to time (values already checked). rows() may fill first_calls (row -> seconds
    of the call its value check made first: a Triton JIT, torch.compile's compile), checks
    (what the value check saw) and skipped (row -> why it was left out)."""
    detail: str
    compile_graphc: Callable[..., Any]
    rows: Callable[..., list]
    notes: list = field(default_factory=list)
    timing: tuple | None = None   # (rounds, reps, warm-up) when the size needs fewer calls
    matmuls: bool = False   # some rows call a BLAS (its threads are part of their settings)
    first_calls: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)


class MismatchError(ValueError):
    """graphc's values disagree with eager PyTorch's: nothing is timed."""


def check_close(what: str, got, want, rtol: float = 1e-4, atol: float = 1e-5) -> float:
    """Raise MismatchError unless got ≈ want (arrays or tensors); returns max |got - want|."""
    got = np.asarray(numpy_of(got), dtype=np.float64)
    want = np.asarray(numpy_of(want), dtype=np.float64)
    if got.shape != want.shape:
        raise MismatchError(f"{what}: graphc gives shape {got.shape}, torch {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        raise MismatchError(f"{what}: graphc and eager torch disagree, max |difference| "
                            f"{diff:.3g} (rtol {rtol}, atol {atol})")
    return diff


def skip_reason(error: BaseException) -> str:
    """One line saying why a contender (torch.compile, usually) was left out."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def pick(size: str, device: Device, quick, cpu, gpu=None):
    """The sizes of a workload: tiny when quick, the full ones on a GPU, else the CPU's."""
    if size == "quick":
        return quick
    return gpu if device.name == "cuda" and gpu is not None else cpu


def graphc_name(backend: str, suffix: str = "") -> str:
    """The row name of graphc on a backend: 'graphc C', 'graphc NumPy T=8'."""
    return " ".join(filter(None, ["graphc", LABELS[backend], suffix]))


def graphc_rows(compiled: dict, dev: Device, feeds: dict, suffix: str = "",
                bytes_moved: int | None = None) -> list:
    """One row per compiled backend, each compared with the first (the reference)."""
    ref = graphc_name(next(iter(compiled)), suffix)
    return [Row(graphc_name(b, suffix), dev.call(f, feeds), ref, backend=b,
                bytes_moved=bytes_moved, compiled=f) for b, f in compiled.items()]


def first(compiled: dict) -> Any:
    """The reference backend's compiled result (the one torch's copies start from)."""
    return next(iter(compiled.values()))


def copy_row(x: np.ndarray, dev: Device, vs: str, what: str = "same size") -> Row:
    """A plain copy of one array, the bandwidth GB/s is measured against: np.copyto on the
    host (one thread), a device-to-device tensor copy on a GPU."""
    if dev.host:
        dst = np.empty_like(x)
        return Row(f"NumPy copy ({what})", lambda: np.copyto(dst, x), vs, copy=True,
                   bytes_moved=2 * x.nbytes)
    src = dev.tensor(x)
    dst = torch_module().empty_like(src)
    return Row(f"torch copy ({what})", lambda: dst.copy_(src), vs, copy=True,
               bytes_moved=2 * x.nbytes)


def loss_of(out) -> float:
    """The loss of one graphc step call: a float (host backends) or the first tensor of
    the generated `run`'s results (Triton backend on device tensors)."""
    return float(numpy_of(out[0] if isinstance(out, (tuple, list)) else out))


def torch_module():
    import torch
    return torch


def compiled(fn, use_compile: bool):
    """torch.compile(fn) when asked, else None."""
    return torch_module().compile(fn) if use_compile else None


def add_compiled(rows: list, name: str, fn, vs: str, bytes_moved: int | None = None) -> None:
    if fn is not None:
        rows.append(Row(f"torch.compile {name}".strip(), fn, vs, torch="compile",
                        bytes_moved=bytes_moved))
