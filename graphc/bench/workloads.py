"""The workloads of `graphc bench`: each builds graphc's compiled function or step for a
device (NumPy arrays on the CPU, or Triton kernels on torch tensors), checks its values
against eager PyTorch, and returns the rows to time side by side. Kernel-level workloads
are here; training steps (MLPs, LSTM, Adam) are in training.py."""
from __future__ import annotations

import numpy as np

import graphc as gc

from . import training
from .base import (  # noqa: F401  (check_close, MismatchError: part of this module's API)
    MismatchError,
    Row,
    Workload,
    add_compiled,
    check_close,
    compiled,
    pick,
    torch_module,
)
from .device import Device

# ---- elementwise: a six-op activation chain, forward and backward -------------------------

def chain(x, sigmoid, tanh, softplus):
    """y = softplus(tanh(x * sigmoid(x))**2 + x), for graphc nodes and torch tensors alike."""
    u = x * sigmoid(x)
    v = tanh(u)
    return softplus(v * v + x)


def copy_row(x: np.ndarray, dev: Device) -> Row:
    """A plain copy of one input-sized vector: the bandwidth the chain is measured against
    (np.copyto on the host, a device-to-device tensor copy on a GPU)."""
    if dev.backend == "numpy":
        dst = np.empty_like(x)
        return Row("NumPy copy (same size)", lambda: np.copyto(dst, x), "graphc")
    src = dev.tensor(x)
    dst = torch_module().empty_like(src)
    return Row("torch copy (same size)", lambda: dst.copy_(src), "graphc")


def elementwise(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    n = 2 ** pick(size, dev, quick=10, cpu=18, gpu=26)
    rng = np.random.default_rng(0)
    x, g = (rng.standard_normal(n).astype(np.float32) * 2,
            rng.standard_normal(n).astype(np.float32))

    def compile_graphc():
        graph = gc.Graph("bench_activation_chain")
        xn, up = graph.input("x", (n,)), graph.input("g", (n,))
        y = chain(xn, gc.sigmoid, gc.tanh, gc.softplus)
        dx, = gc.grad(gc.sum(y * up), [xn])     # d sum(y * g) / dx = g * dy/dx
        return gc.function(graph, [y, dx], backend=dev.backend)

    def rows(f):
        torch = torch_module()
        F = torch.nn.functional
        xt, gt = dev.tensor(x), dev.tensor(g)

        def eager():
            xr = xt.detach().requires_grad_()
            y = chain(xr, torch.sigmoid, torch.tanh, F.softplus)
            return y.detach(), torch.autograd.grad(y, xr, gt)[0]
        y_ref, dx_ref = eager()
        y, dx = f(x=x, g=g)
        check_close("elementwise y", y, y_ref)
        check_close("elementwise dx", dx, dx_ref)
        out = [Row("graphc", dev.call(f, {"x": x, "g": g}), "graphc"),
               Row("torch eager", eager, "graphc"), copy_row(x, dev)]
        add_compiled(out, "", compiled(eager, use_compile), "graphc")
        return out

    four = 4 * n   # bytes of one float32 vector
    moved = {"graphc": 4 * four, "torch eager": 4 * four, "torch.compile": 4 * four,
             "NumPy copy (same size)": 2 * four, "torch copy (same size)": 2 * four}
    return Workload(f"y = softplus(tanh(x*sigmoid(x))**2 + x) and dx, {n:,} float32",
                    compile_graphc, rows, moved,
                    ["GB/s counts x, g read and y, dx written (16 bytes an element)"])


# ---- softmax cross-entropy, forward and backward ------------------------------------------

def softmax_ce(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    n, classes = pick(size, dev, quick=(16, 10), cpu=(512, 100), gpu=(32768, 1024))
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((n, classes)).astype(np.float32) * 3
    labels = rng.integers(0, classes, n).astype(np.int64)

    def compile_graphc():
        graph = gc.Graph("bench_softmax_ce")
        z = graph.input("z", (n, classes))
        y = graph.input("y", (n,), dtype="int64")
        loss = gc.softmax_cross_entropy(z, y)
        dz, = gc.grad(loss, [z])
        return gc.function(graph, [loss, dz], backend=dev.backend)

    def rows(f):
        torch = torch_module()
        zt, yt = dev.tensor(logits), dev.tensor(labels)

        def eager():
            zr = zt.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(zr, yt)
            return loss.detach(), torch.autograd.grad(loss, zr)[0]
        loss_ref, dz_ref = eager()
        loss, dz = f(z=logits, y=labels)
        check_close("softmax_ce loss", loss, loss_ref)
        check_close("softmax_ce dlogits", dz, dz_ref)
        out = [Row("graphc", dev.call(f, {"z": logits, "y": labels}), "graphc"),
               Row("torch eager", eager, "graphc")]
        add_compiled(out, "", compiled(eager, use_compile), "graphc")
        return out

    return Workload(f"loss and d loss / d logits, logits {n}x{classes} float32",
                    compile_graphc, rows)


WORKLOADS = {"elementwise": elementwise, "softmax_ce": softmax_ce, **training.WORKLOADS}
NAMES = tuple(WORKLOADS)
