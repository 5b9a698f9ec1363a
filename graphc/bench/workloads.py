"""The workloads of `graphc bench`: each builds graphc's compiled function or step for each
backend of a device (C and NumPy on NumPy arrays on the CPU, or Triton kernels on torch
tensors), checks their values against eager PyTorch, and returns the rows to time side by
side. Kernel-level workloads are here; training steps (MLPs, LSTM, Adam) are in training.py."""
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
    copy_row,
    graphc_rows,
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


def chain_workload(name: str, log2_n: int, use_compile: bool, dev: Device,
                   timing: tuple | None = None, notes: tuple = ()) -> Workload:
    """The activation chain and its gradient map on 2**log2_n float32: one fused kernel
    each way in graphc, measured in GB/s against a copy of one vector."""
    n = 2 ** log2_n
    rng = np.random.default_rng(0)
    x, g = (rng.standard_normal(n).astype(np.float32) * 2,
            rng.standard_normal(n).astype(np.float32))
    moved = 4 * 4 * n   # x, g read and y, dx written, float32

    def compile_graphc(backend: str):
        graph = gc.Graph("bench_activation_chain")
        xn, up = graph.input("x", (n,)), graph.input("g", (n,))
        y = chain(xn, gc.sigmoid, gc.tanh, gc.softplus)
        dx, = gc.grad(gc.sum(y * up), [xn])     # d sum(y * g) / dx = g * dy/dx
        return gc.function(graph, [y, dx], backend=backend)

    def rows(fs: dict):
        torch = torch_module()
        F = torch.nn.functional
        xt, gt = dev.tensor(x), dev.tensor(g)

        def eager():
            xr = xt.detach().requires_grad_()
            y = chain(xr, torch.sigmoid, torch.tanh, F.softplus)
            return y.detach(), torch.autograd.grad(y, xr, gt)[0]
        y_ref, dx_ref = eager()
        for backend, f in fs.items():
            y, dx = f(x=x, g=g)
            check_close(f"{name} y ({backend})", y, y_ref)
            check_close(f"{name} dx ({backend})", dx, dx_ref)
        out = graphc_rows(fs, dev, {"x": x, "g": g}, bytes_moved=moved)
        ref = out[0].name
        out.append(Row("torch eager", eager, ref, torch="eager", bytes_moved=moved))
        add_compiled(out, "", compiled(eager, use_compile), ref, bytes_moved=moved)
        return out + [copy_row(x, dev, ref)]

    return Workload(f"y = softplus(tanh(x*sigmoid(x))**2 + x) and dx, {n:,} float32",
                    compile_graphc, rows, timing=timing,
                    notes=["GB/s counts x, g read and y, dx written (16 bytes an element); "
                           "/ copy: of the copy's GB/s in the same run", *notes])


def elementwise(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    return chain_workload("elementwise", pick(size, dev, quick=10, cpu=18, gpu=26),
                          use_compile, dev)


DRAM_TIMING = (7, 3, 1)   # 2^24: tens of ms a call on a CPU; fewer calls say as much


def elementwise_dram(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    """The same chain at 2^24 float32: 64 MiB a vector, 256 MiB a call, far past the
    CPU's caches (elementwise's 2^18 stays in them)."""
    full = size != "quick"
    return chain_workload("elementwise_dram", pick(size, dev, quick=11, cpu=24, gpu=26),
                          use_compile, dev, timing=DRAM_TIMING if full else None,
                          notes=("DRAM-sized, each call tens of ms or more: "
                                 f"{DRAM_TIMING[0]} rounds x {DRAM_TIMING[1]} calls after "
                                 f"{DRAM_TIMING[2]} warm-up",) if full else ())


# ---- softmax cross-entropy, forward and backward ------------------------------------------

def softmax_ce(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    n, classes = pick(size, dev, quick=(16, 10), cpu=(512, 100), gpu=(32768, 1024))
    return softmax_ce_workload("softmax_ce", n, classes, use_compile, dev)


def softmax_ce_large(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    """4096 rows of 1000 classes (16 MiB of logits): past the L2 cache, where the CPU's
    threads and a one-pass row kernel matter."""
    n, classes = pick(size, dev, quick=(32, 20), cpu=(4096, 1000), gpu=(32768, 1024))
    return softmax_ce_workload("softmax_ce_large", n, classes, use_compile, dev)


def softmax_ce_workload(name: str, n: int, classes: int, use_compile: bool,
                        dev: Device) -> Workload:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((n, classes)).astype(np.float32) * 3
    labels = rng.integers(0, classes, n).astype(np.int64)

    def compile_graphc(backend: str):
        graph = gc.Graph("bench_softmax_ce")
        z = graph.input("z", (n, classes))
        y = graph.input("y", (n,), dtype="int64")
        loss = gc.softmax_cross_entropy(z, y)
        dz, = gc.grad(loss, [z])
        return gc.function(graph, [loss, dz], backend=backend)

    def rows(fs: dict):
        torch = torch_module()
        zt, yt = dev.tensor(logits), dev.tensor(labels)

        def eager():
            zr = zt.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(zr, yt)
            return loss.detach(), torch.autograd.grad(loss, zr)[0]
        loss_ref, dz_ref = eager()
        for backend, f in fs.items():
            loss, dz = f(z=logits, y=labels)
            check_close(f"{name} loss ({backend})", loss, loss_ref)
            check_close(f"{name} dlogits ({backend})", dz, dz_ref)
        out = graphc_rows(fs, dev, {"z": logits, "y": labels})
        out.append(Row("torch eager", eager, out[0].name, torch="eager"))
        add_compiled(out, "", compiled(eager, use_compile), out[0].name)
        return out

    return Workload(f"loss and d loss / d logits, logits {n}x{classes} float32",
                    compile_graphc, rows)


WORKLOADS = {"elementwise": elementwise, "elementwise_dram": elementwise_dram,
             "softmax_ce": softmax_ce, "softmax_ce_large": softmax_ce_large,
             **training.WORKLOADS}
NAMES = tuple(WORKLOADS)
