"""The workloads of `graphc bench` on the CPU: each builds graphc's compiled function or step,
checks its values against eager PyTorch, and returns the rows to time side by side.

A workload is `build(size, use_compile) -> Workload`, `size` "quick" or "default"; its
`compile_graphc` is called twice by the runner (cold and warm cache) before `rows`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphc as gc

from . import reference


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


class MismatchError(ValueError):
    """graphc's values disagree with eager PyTorch's: nothing is timed."""


def check_close(what: str, got, want, rtol: float = 1e-4, atol: float = 1e-5) -> float:
    """Raise MismatchError unless got ≈ want; returns max |got - want|."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise MismatchError(f"{what}: graphc gives shape {got.shape}, torch {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        raise MismatchError(f"{what}: graphc and eager torch disagree, max |difference| "
                            f"{diff:.3g} (rtol {rtol}, atol {atol})")
    return diff


def _torch():
    import torch
    return torch


def _compiled(fn, use_compile: bool):
    """torch.compile(fn) when asked, else None."""
    return _torch().compile(fn) if use_compile else None


def _add_compiled(rows: list, name: str, fn, vs: str) -> None:
    if fn is not None:
        rows.append(Row(f"torch.compile {name}".strip(), fn, vs))


# ---- elementwise: a six-op activation chain, forward and backward -------------------------

def chain(x, sigmoid, tanh, softplus):
    """y = softplus(tanh(x * sigmoid(x))**2 + x), for graphc nodes and torch tensors alike."""
    u = x * sigmoid(x)
    v = tanh(u)
    return softplus(v * v + x)


def elementwise(size: str, use_compile: bool) -> Workload:
    n = 2 ** (10 if size == "quick" else 18)
    rng = np.random.default_rng(0)
    x, g = (rng.standard_normal(n).astype(np.float32) * 2,
            rng.standard_normal(n).astype(np.float32))

    def compile_graphc():
        graph = gc.Graph("bench_activation_chain")
        xn, up = graph.input("x", (n,)), graph.input("g", (n,))
        y = chain(xn, gc.sigmoid, gc.tanh, gc.softplus)
        dx, = gc.grad(gc.sum(y * up), [xn])     # d sum(y * g) / dx = g * dy/dx
        return gc.function(graph, [y, dx], backend="numpy")

    def rows(f):
        torch = _torch()
        F = torch.nn.functional
        xt, gt = torch.from_numpy(x), torch.from_numpy(g)

        def eager():
            xr = xt.detach().requires_grad_()
            y = chain(xr, torch.sigmoid, torch.tanh, F.softplus)
            return y.detach(), torch.autograd.grad(y, xr, gt)[0]
        y_ref, dx_ref = eager()
        y, dx = f(x=x, g=g)
        check_close("elementwise y", y, y_ref.numpy())
        check_close("elementwise dx", dx, dx_ref.numpy())
        copy_dst = np.empty_like(x)
        out = [Row("graphc", lambda: f(x=x, g=g), "graphc"), Row("torch eager", eager, "graphc"),
               Row("NumPy copy (same size)", lambda: np.copyto(copy_dst, x), "graphc")]
        _add_compiled(out, "", _compiled(eager, use_compile), "graphc")
        return out

    four = 4 * n   # bytes of one float32 vector
    moved = {"graphc": 4 * four, "torch eager": 4 * four, "torch.compile": 4 * four,
             "NumPy copy (same size)": 2 * four}
    return Workload(f"y = softplus(tanh(x*sigmoid(x))**2 + x) and dx, {n:,} float32",
                    compile_graphc, rows, moved,
                    ["GB/s counts x, g read and y, dx written (16 bytes an element)"])


# ---- softmax cross-entropy, forward and backward ------------------------------------------

def softmax_ce(size: str, use_compile: bool) -> Workload:
    n, classes = (16, 10) if size == "quick" else (512, 100)
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((n, classes)).astype(np.float32) * 3
    labels = rng.integers(0, classes, n).astype(np.int64)

    def compile_graphc():
        graph = gc.Graph("bench_softmax_ce")
        z = graph.input("z", (n, classes))
        y = graph.input("y", (n,), dtype="int64")
        loss = gc.softmax_cross_entropy(z, y)
        dz, = gc.grad(loss, [z])
        return gc.function(graph, [loss, dz], backend="numpy")

    def rows(f):
        torch = _torch()
        zt, yt = torch.from_numpy(logits), torch.from_numpy(labels)

        def eager():
            zr = zt.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(zr, yt)
            return loss.detach(), torch.autograd.grad(loss, zr)[0]
        loss_ref, dz_ref = eager()
        loss, dz = f(z=logits, y=labels)
        check_close("softmax_ce loss", loss, loss_ref.numpy())
        check_close("softmax_ce dlogits", dz, dz_ref.numpy())
        out = [Row("graphc", lambda: f(z=logits, y=labels), "graphc"),
               Row("torch eager", eager, "graphc")]
        _add_compiled(out, "", _compiled(eager, use_compile), "graphc")
        return out

    return Workload(f"loss and d loss / d logits, logits {n}x{classes} float32",
                    compile_graphc, rows)


# ---- mlp_small: the digits MLP training step ----------------------------------------------

def mlp_small(size: str, use_compile: bool) -> Workload:
    batch, features, hidden, classes = (8, 16, 32, 10) if size == "quick" else (64, 64, 128, 10)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, features)).astype(np.float32)
    y = rng.integers(0, classes, batch).astype(np.int64)
    lr, momentum = 0.1, 0.9

    def compile_graphc():
        graph = gc.Graph("bench_mlp_small", dtype="float32", seed=0)
        xn = graph.input("x", (gc.sym("N"), features))
        yn = graph.input("y", (gc.sym("N"),), dtype="int64")
        h = gc.tanh(gc.linear(xn, hidden, name="l1"))
        loss = gc.softmax_cross_entropy(gc.linear(h, classes, name="l2"), yn, name="loss")
        return gc.compile(graph, loss, optimizer=gc.SGD(lr=lr, momentum=momentum),
                          backend="numpy")

    def rows(step):
        steps = {"graphc": lambda a, b: step(x=a, y=b),
                 "NumPy by hand": reference.NumpyMLPStep(step, lr, momentum),
                 "torch eager": reference.TorchMLPStep(step, lr, momentum)}
        if use_compile:
            steps["torch.compile"] = reference.TorchMLPStep(step, lr, momentum, compile=True)
        losses = {k: [fn(x, y) for _ in range(3)] for k, fn in steps.items()}
        for k, v in losses.items():   # same start, same batch: same losses step by step
            check_close(f"mlp_small losses of {k} (3 steps)", losses["graphc"], v)
        return [Row(k, (lambda fn=fn: fn(x, y)), "graphc") for k, fn in steps.items()]

    return Workload(f"training step {features}-{hidden}-{classes} tanh MLP, softmax CE, "
                    f"SGD momentum, batch {batch}", compile_graphc, rows)


# ---- lstm: one cell step and an unrolled sequence, forward and backward --------------------

def _lstm_graphc(length: int, batch: int, d_in: int, hidden: int):
    graph = gc.Graph(f"bench_lstm_t{length}", seed=0)
    xs = gc.recurrent.sequence_inputs(graph, "x", length, (batch, d_in))
    h0, c0 = graph.input("h0", (batch, hidden)), graph.input("c0", (batch, hidden))
    hs, (h, c) = gc.recurrent.lstm(xs, hidden, name="lstm", h0=h0, c0=c0)
    loss = gc.mean(h * h) + gc.mean(c)     # touches both final states
    params = graph.params(trainable_only=True)
    grads = gc.grad(loss, params)
    return gc.function(graph, [loss, *grads], backend="numpy"), params


def _lstm_torch(p: dict, xs, h, c):
    """The same LSTM in torch, the course's equations with the graphc params' layout."""
    torch = _torch()

    def gate(k, x, h):
        return x @ p[f"lstm_U_{k}"] + h @ p[f"lstm_W_{k}"] + p[f"lstm_b_{k}"]
    for x in xs:
        i, f, o = (torch.sigmoid(gate(k, x, h)) for k in "ifo")
        c = f * c + i * torch.tanh(gate("c", x, h))
        h = o * torch.tanh(c)
    return (h * h).mean() + c.mean()


def lstm(size: str, use_compile: bool) -> Workload:
    batch, d_in, hidden, length = (4, 8, 8, 3) if size == "quick" else (32, 64, 64, 8)
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((length, batch, d_in)).astype(np.float32)
    h0, c0 = (rng.standard_normal((batch, hidden)).astype(np.float32) * 0.5 for _ in "hc")

    def compile_graphc():
        return (_lstm_graphc(1, batch, d_in, hidden), _lstm_graphc(length, batch, d_in, hidden))

    def rows(compiled):
        torch = _torch()
        out = []
        for (f, names), label in zip(compiled, ("cell", f"T={length}")):
            t = 1 if label == "cell" else length
            feeds = {**gc.recurrent.sequence_feeds("x", xs[:t]), "h0": h0, "c0": c0}
            p = {k: torch.tensor(f.params[k], requires_grad=True) for k in names}
            ins = [torch.from_numpy(v) for v in (xs[:t], h0, c0)]

            def eager(p=p, ins=ins):
                loss = _lstm_torch(p, *ins)
                return loss.detach(), torch.autograd.grad(loss, list(p.values()))
            loss_ref, grads_ref = eager()
            loss, *grads = f(feeds)
            check_close(f"lstm {label} loss", loss, loss_ref.numpy())
            for k, g, want in zip(names, grads, grads_ref):
                check_close(f"lstm {label} d loss / d {k}", g, want.numpy())
            me = f"graphc {label}"
            out += [Row(me, (lambda f=f, feeds=feeds: f(feeds)), me),
                    Row(f"torch eager {label}", eager, me)]
            _add_compiled(out, label, _compiled(eager, use_compile), me)
        return out

    return Workload(f"LSTM {d_in}->{hidden}, batch {batch}: loss and gradients of all 12 "
                    f"params, one cell step and {length} unrolled steps", compile_graphc, rows)


# ---- adam: one Adam update over many parameters --------------------------------------------

def adam(size: str, use_compile: bool) -> Workload:
    count, shape = (4, (8, 8)) if size == "quick" else (24, (128, 256))
    rng = np.random.default_rng(4)
    grads = {f"w{k}": rng.standard_normal(shape).astype(np.float32) for k in range(count)}
    lr = 1e-3

    def compile_graphc():
        graph = gc.Graph("bench_adam", seed=0)
        terms = []
        for k, g in grads.items():   # loss = sum_k sum(w_k * g_k): d loss / d w_k = g_k
            terms.append(gc.sum(graph.param(k, shape) * graph.input(f"g_{k}", shape)))
        loss = terms[0]
        for t in terms[1:]:
            loss = loss + t
        return gc.compile(graph, loss, optimizer=gc.Adam(lr=lr), backend="numpy")

    def rows(step):
        torch = _torch()
        feeds = {f"g_{k}": g for k, g in grads.items()}
        params = {k: torch.tensor(step.params[k]) for k in grads}
        for k, w in params.items():
            w.grad = torch.from_numpy(grads[k])
        opt = torch.optim.Adam(list(params.values()), lr=lr)
        for _ in range(3):
            step(feeds)
            opt.step()
        for k, w in params.items():
            check_close(f"adam {k} after 3 updates", step.params[k], w.numpy(), atol=1e-6)
        out = [Row("graphc", lambda: step(feeds), "graphc"),
               Row("torch.optim.Adam", opt.step, "graphc")]
        _add_compiled(out, "Adam.step", _compiled(opt.step, use_compile), "graphc")
        return out

    total = count * int(np.prod(shape))
    return Workload(f"Adam update of {count} params of {shape[0]}x{shape[1]} "
                    f"({total:,} float32)", compile_graphc, rows,
                    notes=["graphc's step also computes its loss sum(w*g) and reads g "
                           "as feeds; torch's step reads the .grad it is given"])


CPU = {"elementwise": elementwise, "softmax_ce": softmax_ce, "mlp_small": mlp_small,
       "lstm": lstm, "adam": adam}
GPU_ONLY = {"mlp_large": "batch 4096, 1024-4096-4096-10 MLP training step"}
NAMES = (*CPU, *GPU_ONLY)
