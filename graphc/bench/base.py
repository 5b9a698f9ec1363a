"""What every `graphc bench` workload is made of: timed rows, the workload record, the value
check that runs before any timing, sizes per device, and the optional torch.compile row.

A workload is `build(size, use_compile, device) -> Workload`; `size` is "quick" or
"default", and "default" means the issue's full sizes on a GPU, smaller ones on a CPU."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .device import Device, numpy_of


@dataclass
class Row:
    """One timed contender; `vs` names the graphc row its time is compared with."""
    name: str
    call: Callable[[], object]
    vs: str


@dataclass
class Workload:
    """What the runner needs: how to compile graphc's side (called cold, then warm), and,
    from the compiled result, the rows to time (values already checked)."""
    detail: str
    compile_graphc: Callable[[], object]
    rows: Callable[[object], list]
    bytes_moved: dict = field(default_factory=dict)   # row -> bytes it must read and write
    notes: list = field(default_factory=list)
    timing: tuple | None = None   # (rounds, reps, warm-up) when the size needs fewer calls


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


def pick(size: str, device: Device, quick, cpu, gpu=None):
    """The sizes of a workload: tiny when quick, the full ones on a GPU, else the CPU's."""
    if size == "quick":
        return quick
    return gpu if device.name == "cuda" and gpu is not None else cpu


def loss_of(out) -> float:
    """The loss of one graphc step call: a float (NumPy backend) or the first tensor of
    the generated `run`'s results (Triton backend on device tensors)."""
    return float(numpy_of(out[0] if isinstance(out, (tuple, list)) else out))


def torch_module():
    import torch
    return torch


def compiled(fn, use_compile: bool):
    """torch.compile(fn) when asked, else None."""
    return torch_module().compile(fn) if use_compile else None


def add_compiled(rows: list, name: str, fn, vs: str) -> None:
    if fn is not None:
        rows.append(Row(f"torch.compile {name}".strip(), fn, vs))
