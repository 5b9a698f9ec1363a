"""Training-step workloads of `graphc bench`: MLP steps (the digits sizes, and the large
1024-4096-4096-10 one), an LSTM cell and unrolled sequence with all gradients, and one Adam
update over many parameters; each on graphc's C and NumPy backends on the CPU, or on the
Triton backend (see base.py)."""
from __future__ import annotations

import functools
import itertools

import numpy as np

import graphc as gc

from . import device as devices, reference
from .base import (
    Row,
    Workload,
    add_compiled,
    check_close,
    compiled,
    copy_row,
    first,
    graphc_rows,
    loss_of,
    pick,
    skip_reason,
    torch_module,
)
from .device import Device

# ---- MLP training steps: tanh layers, softmax cross-entropy, SGD ---------------------------
# The one definition of the MLP step every driver times: `graphc bench` (mlp_small, the
# digits sizes; mlp_large), `python -m graphc.bench.digits_step`, examples/digits_mlp.py
# (both through the runner) and the GPU target script gpu_mlp_step.py.

CHECKED_STEPS = 3   # steps from the same weights on the same batch: the losses must agree
LR, MOMENTUM = 0.1, 0.9


def mlp_graph(name: str, sizes: list, seed: int = 0):
    """x (N, sizes[0]) -> [linear -> tanh] ... -> linear -> softmax cross-entropy; layer i
    has params l<i>_W (in, out) and l<i>_b (what reference.TorchMLPStep reads)."""
    graph = gc.Graph(name, dtype="float32", seed=seed)
    x = graph.input("x", (gc.sym("N"), sizes[0]))
    y = graph.input("y", (gc.sym("N"),), dtype="int64")
    h = x
    for i, width in enumerate(sizes[1:], start=1):
        h = gc.linear(h, width, name=f"l{i}")
        if i < len(sizes) - 1:
            h = gc.tanh(h)
    return graph, gc.softmax_cross_entropy(h, y, name="loss")


def mlp_workload(name: str, sizes: list, batch: int, use_compile: bool, dev: Device,
                 lr: float = LR, momentum: float = MOMENTUM, compile_kw: dict | None = None,
                 **extra) -> Workload:
    """One SGD step of an MLP: graphc's generated steps beside eager torch (and NumPy by
    hand for two layers on the CPU, torch.compile when asked, with compile_kw; on Triton
    also graphc with matmul='fused'), from the same weights. rows(compiled, fused=None)
    takes a fused step compiled already (timed by its caller) or compiles it."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int64)

    def compile_graphc(backend: str, matmul: str = "library"):
        graph, loss = mlp_graph(f"bench_{name}", sizes)   # same seed: same initial weights
        return gc.compile(graph, loss, optimizer=gc.SGD(lr=lr, momentum=momentum),
                          backend=backend, matmul=matmul)

    def rows(compiled_steps: dict, fused=None):
        step = first(compiled_steps)
        xt, yt = (x, y) if dev.host else (dev.tensor(x), dev.tensor(y))
        out = graphc_rows(compiled_steps, dev, {"x": x, "y": y})
        ref = out[0].name
        if not dev.host:   # generated matmuls with their epilogues, the other path
            fused = fused or compile_graphc("triton", "fused")
            out.append(Row(f"{ref} matmul='fused'", dev.call(fused, {"x": x, "y": y}), ref,
                           backend="triton", compiled=fused))
        if dev.host and len(sizes) == 3:
            hand = reference.NumpyMLPStep(step, lr, momentum)
            out.append(Row("NumPy by hand", functools.partial(hand, x, y), ref))
        for label, kind in (("torch eager", "eager"), ("torch.compile", "compile")):
            if kind == "eager" or use_compile:
                s = reference.TorchMLPStep(step, lr, momentum, compile=kind == "compile",
                                           device=dev.name, compile_kw=compile_kw
                                           if kind == "compile" else None)
                out.append(Row(label, functools.partial(s, xt, yt), ref, torch=kind))
        return check_losses(out, work, dev)

    layers = "-".join(map(str, sizes))
    work = Workload(f"training step {layers} tanh MLP, softmax CE, SGD momentum {momentum}, "
                    f"batch {batch}", compile_graphc, rows, matmuls=True, **extra)
    return work


def check_losses(rows: list, work: Workload, dev: Device) -> list:
    """CHECKED_STEPS calls of each row from the same weights on the same batch: the losses
    must agree step by step with the first row's. The first call of each is timed (a JIT,
    torch.compile's compile: work.first_calls); a torch.compile row that fails there is
    left out with its reason (work.skipped, work.notes). Returns the rows kept."""
    losses, kept = {}, []
    for r in rows:
        try:
            work.first_calls[r.name], out = devices.first_call(r.call, dev.name)
        except Exception as e:  # noqa: BLE001 - torch.compile may fail here: skip, say why
            if r.torch != "compile":
                raise
            work.skipped[r.name] = skip_reason(e)
            work.notes.append(f"{r.name} skipped: {work.skipped[r.name]}")
            continue
        losses[r.name] = [loss_of(out)] + [loss_of(r.call()) for _ in range(CHECKED_STEPS - 1)]
        kept.append(r)
    ref = kept[0].name
    for k, v in losses.items():   # same start, same batch: same losses step by step
        check_close(f"{work.detail}: losses of {k} ({CHECKED_STEPS} steps)", losses[ref], v)
    work.checks.update(losses=losses, tolerance="rtol 1e-4, atol 1e-5 (check_close)",
                       max_difference_to=ref,
                       max_difference={k: float(np.max(np.abs(np.subtract(v, losses[ref]))))
                                       for k, v in losses.items() if k != ref})
    return kept


def mlp_small(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    batch, sizes = pick(size, dev, quick=(8, [16, 32, 10]), cpu=(64, [64, 128, 10]))
    return mlp_workload("mlp_small", sizes, batch, use_compile, dev)


LARGE = (4096, [1024, 4096, 4096, 10])   # the large MLP: batch, layer widths


def mlp_large(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    batch, sizes = pick(size, dev, quick=(16, [16, 32, 32, 10]), cpu=LARGE, gpu=LARGE)
    notes, timing = [], None
    if dev.name != "cuda" and size != "quick":   # about 0.5 TFLOP a step: seconds on a CPU
        notes, timing = ["full size on a CPU: 3 rounds of 1 call after 1 warm-up"], (3, 1, 1)
    return mlp_workload("mlp_large", sizes, batch, use_compile, dev, notes=notes,
                        timing=timing)


# ---- lstm: one cell step and an unrolled sequence, forward and backward --------------------

def _lstm_graphc(length: int, batch: int, d_in: int, hidden: int, backend: str):
    graph = gc.Graph(f"bench_lstm_t{length}", seed=0)
    xs = gc.recurrent.sequence_inputs(graph, "x", length, (batch, d_in))
    h0, c0 = graph.input("h0", (batch, hidden)), graph.input("c0", (batch, hidden))
    hs, (h, c) = gc.recurrent.lstm(xs, hidden, name="lstm", h0=h0, c0=c0)
    loss = gc.mean(h * h) + gc.mean(c)     # touches both final states
    params = graph.params(trainable_only=True)
    grads = gc.grad(loss, params)
    return gc.function(graph, [loss, *grads], backend=backend), params


def _lstm_torch(p: dict, xs, h, c):
    """The same LSTM in torch, the course's equations with the graphc params' layout."""
    torch = torch_module()

    def gate(k, x, h):
        return x @ p[f"lstm_U_{k}"] + h @ p[f"lstm_W_{k}"] + p[f"lstm_b_{k}"]
    for x in xs:
        i, f, o = (torch.sigmoid(gate(k, x, h)) for k in "ifo")
        c = f * c + i * torch.tanh(gate("c", x, h))
        h = o * torch.tanh(c)
    return (h * h).mean() + c.mean()


def lstm(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    batch, d_in, hidden, length = pick(size, dev, quick=(4, 8, 8, 3), cpu=(32, 64, 64, 8),
                                       gpu=(256, 256, 256, 16))
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((length, batch, d_in)).astype(np.float32)
    h0, c0 = (rng.standard_normal((batch, hidden)).astype(np.float32) * 0.5 for _ in "hc")

    def compile_graphc(backend: str):
        return tuple(_lstm_graphc(t, batch, d_in, hidden, backend) for t in (1, length))

    def rows(compiled_pairs: dict):
        torch = torch_module()
        out = []
        for i, label in enumerate(("cell", f"T={length}")):
            fs = {backend: pair[i][0] for backend, pair in compiled_pairs.items()}
            names = first(compiled_pairs)[i][1]
            t = 1 if label == "cell" else length
            feeds = {**gc.recurrent.sequence_feeds("x", xs[:t]), "h0": h0, "c0": c0}
            p = {k: dev.tensor(first(fs)[k], requires_grad=True) for k in names}
            ins = [dev.tensor(v) for v in (xs[:t], h0, c0)]

            def eager(p=p, ins=ins):
                loss = _lstm_torch(p, *ins)
                return loss.detach(), torch.autograd.grad(loss, list(p.values()))
            loss_ref, grads_ref = eager()
            for backend, f in fs.items():
                loss, *grads = f(feeds)
                check_close(f"lstm {label} loss ({backend})", loss, loss_ref)
                for k, g, want in zip(names, grads, grads_ref):
                    check_close(f"lstm {label} d loss / d {k} ({backend})", g, want)
            group = graphc_rows(fs, dev, feeds, label)
            me = group[0].name
            out += [*group, Row(f"torch eager {label}", eager, me, torch="eager")]
            add_compiled(out, label, compiled(eager, use_compile), me)
        return out

    return Workload(f"LSTM {d_in}->{hidden}, batch {batch}: loss and gradients of all 12 "
                    f"params, one cell step and {length} unrolled steps", compile_graphc, rows,
                    matmuls=True)


# ---- adam: one Adam update over many parameters --------------------------------------------

ADAM_OPTIONS = {"foreach=False": {"foreach": False}, "foreach=True": {"foreach": True},
                "fused=True": {"fused": True}}   # torch.optim.Adam's implementations
ADAM_BYTES = 7 * 4   # an element of params, grads, m, v read; of params, m, v written


def adam(size: str, use_compile: bool, dev: Device = Device()) -> Workload:
    count, shape = pick(size, dev, quick=(4, (8, 8)), cpu=(24, (128, 256)),
                        gpu=(24, (1024, 1024)))
    rng = np.random.default_rng(4)
    grads = {f"w{k}": rng.standard_normal(shape).astype(np.float32) for k in range(count)}
    lr = 1e-3
    total = count * int(np.prod(shape))
    moved = ADAM_BYTES * total

    def compile_graphc(backend: str):
        graph = gc.Graph("bench_adam", seed=0)
        terms = []
        for k, g in grads.items():   # loss = sum_k sum(w_k * g_k): d loss / d w_k = g_k
            terms.append(gc.sum(graph.param(k, shape) * graph.input(f"g_{k}", shape)))
        loss = terms[0]
        for t in terms[1:]:
            loss = loss + t
        return gc.compile(graph, loss, optimizer=gc.Adam(lr=lr), backend=backend)

    def rows(steps: dict):
        torch = torch_module()
        feeds = {f"g_{k}": g for k, g in grads.items()}

        def optimizer(**kw):   # its own copy of the initial params, .grad given once
            params = {k: dev.tensor(first(steps)[k]) for k in grads}
            for k, w in params.items():
                w.grad = dev.tensor(grads[k])
            return params, torch.optim.Adam(list(params.values()), lr=lr, **kw)
        opts = {label: optimizer(**kw) for label, kw in ADAM_OPTIONS.items()}
        for _ in range(3):
            for step in steps.values():
                step(feeds)
            for _, opt in opts.values():
                opt.step()
        for (backend, step), (label, (params, _)) in \
                itertools.product(steps.items(), opts.items()):
            for k, w in params.items():
                check_close(f"adam {k} after 3 updates ({backend}, torch {label})",
                            step[k], w, atol=1e-6)
        out = graphc_rows(steps, dev, feeds, bytes_moved=moved)
        ref = out[0].name
        out.append(Row("torch.optim.Adam", opts["foreach=False"][1].step, ref, torch="eager",
                       options={k: opt.step for k, (_, opt) in opts.items()},
                       bytes_moved=moved))
        # its own params again: the compiled step would otherwise share an eager one's state
        add_compiled(out, "Adam.step", compiled(optimizer()[1].step, use_compile), ref,
                     bytes_moved=moved)
        flat = np.concatenate([g.ravel() for g in grads.values()])
        return out + [copy_row(flat, dev, ref, "all params' size")]

    return Workload(f"Adam update of {count} params of {shape[0]}x{shape[1]} "
                    f"({total:,} float32)", compile_graphc, rows,
                    notes=["graphc's step also computes its loss sum(w*g) and reads g "
                           "as feeds; torch's step reads the .grad it is given",
                           f"GB/s counts params, grads, m, v read and params, m, v written "
                           f"({ADAM_BYTES} bytes an element); torch.optim.Adam: the fastest "
                           f"of {', '.join(ADAM_OPTIONS)} (on the CPU, each at 1 thread "
                           "and at torch's default)"])


WORKLOADS = {"mlp_small": mlp_small, "mlp_large": mlp_large, "lstm": lstm, "adam": adam}
