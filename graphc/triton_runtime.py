"""Running Triton-generated modules behind the NumPy-facing runtime API: feeds are NumPy
arrays moved to the module's DEVICE as torch tensors, results come back as NumPy arrays,
and parameters live as torch tensors on DEVICE, updated there in place by the kernels.

`step["W"]` returns a NumPy array: on the CPU (interpreter) a live view of the tensor, as
with the NumPy backend; on a GPU a copy made at that moment.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from . import config
from .errors import FeedError
from .runtime import Compiled, Function, TrainStep


class KernelInfo(NamedTuple):
    """One kernel of a generated module: its name, kind, member nodes and source."""
    name: str
    kind: str
    nodes: tuple
    source: str


def _tensor(value, device):
    import torch
    value = np.asarray(value)
    if not value.flags.c_contiguous:  # not ascontiguousarray: it makes a 0-d array 1-d
        value = np.ascontiguousarray(value)
    if not value.flags.writeable:  # torch.from_numpy shares memory and wants it writable
        value = value.copy()
    return torch.from_numpy(value).to(device)


def kernel_infos(module, source: str, comment: str = "#") -> list:
    """KernelInfo for each entry of module.KERNELS, with the text of its @triton.jit
    function (or C function, comment="//"), header comment included; matmul kernels run
    a library matmul and have none."""
    infos = []
    for name, kind, nodes in getattr(module, "KERNELS", ()):
        found = re.search(rf"^{comment} ---- {re.escape(name)}:.*?(?=\n\n\n|\Z)", source,
                          re.M | re.S)
        infos.append(KernelInfo(name, kind, tuple(nodes), found.group(0) if found else ""))
    return infos


class TorchStorage(Compiled):
    """Compiled with parameters and consts as torch tensors on module.DEVICE (a base of
    TritonFunction and TritonTrainStep, before Function and TrainStep)."""

    backend = "triton"   # step.function(...) compiles its functions for the same backend

    def __init__(self, module, graph, path, params: dict, consts: dict, *args, **kw):
        super().__init__(module, graph, path, params, consts, *args, **kw)
        self.device = module.DEVICE
        self.params = {n: _tensor(v, self.device) for n, v in params.items()}
        self.consts = {n: _tensor(v, self.device) for n, v in consts.items()}
        if not self.kernels:
            self.kernels = kernel_infos(module, self.path.read_text())
        # the interpreter evaluates masked-off lanes too (log(0) there is harmless)
        self._kernel = np.errstate(all="ignore")(module.run) if self.device == "cpu" \
            else module.run

    def _run(self, feeds: dict) -> tuple:
        values, dims = self._feeds(feeds)
        key = tuple(map(dims.get, self.module.DIMS))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self.module.allocate(*key)
        tensors = [_tensor(v, self.device) for v in values]
        outs = self._kernel(*tensors, self.params, self.consts, buf)
        return tuple(o.detach().cpu().numpy() for o in outs)

    # ---- parameters as NumPy (Compiled.save / load go through these) --------------------
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.params:
            raise KeyError(f"no parameter {name!r}; parameters are {sorted(self.params)}")
        t = self.params[name]
        return t.numpy() if t.device.type == "cpu" else t.cpu().numpy()

    def __setitem__(self, name: str, value):
        """Set a parameter's value in place (the compiled code holds its storage)."""
        current = self[name]
        value = np.asarray(value)
        if value.shape != current.shape:
            raise FeedError(f"parameter {name!r} has shape {current.shape}, got {value.shape}")
        self.params[name].copy_(_tensor(value.astype(current.dtype), self.device))


class TritonFunction(TorchStorage, Function):
    """A compiled graph evaluation running Triton kernels: NumPy feeds, NumPy results."""


class TritonTrainStep(TorchStorage, TrainStep):
    """A compiled training step running Triton kernels; parameters stay on DEVICE."""

    def __repr__(self):
        n = sum(int(v.numel()) for k, v in self.params.items()
                if self.graph.attrs(k).get("trainable", True))
        return (f"<TrainStep {self.graph.name!r} (triton, {self.device}): loss {self.loss!r}, "
                f"{n} trained values, code {self.path}>")


def available() -> bool:
    """Whether a CUDA GPU can run compiled Triton kernels (backend='auto' picks Triton)."""
    import importlib.util
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        return False
    if not config.nvidia_driver_present():
        return False  # spares a NumPy user the 1.5 s import of torch on a machine with no GPU
    import torch  # not triton: importing it here would come before TRITON_INTERPRET is set
    return bool(torch.cuda.is_available())
