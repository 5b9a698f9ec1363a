"""A failing program as a standalone script: the graph rebuilt with graphc's builder, the
same program in PyTorch, the inputs written out, and the comparison that failed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.torch_reference import TORCH_TEXT, call_text, graphc_text

from .build import leaf_names
from .grammar import PARAMS

# the compound ops; the builder ops are printed from tests/torch_reference.py
G_UNARY = {
    "log_x2p1": "gc.log(gc.square({0}) + 1.0)", "sqrt_x2p05": "gc.sqrt({0} * {0} + 0.5)",
    "scale": "0.5 - 1.5 * {}", "neg": "-{}",
}
T_UNARY = {
    "log_x2p1": "torch.log(torch.square({0}) + 1.0)", "sqrt_x2p05": "torch.sqrt({0} * {0} + 0.5)",
    "scale": "0.5 - 1.5 * {}", "neg": "-{}",
}
BIN = {"add": "{} + {}", "sub": "{} - {}", "mul": "{} * {}", "div": "{0} / ({1} * {1} + 0.5)"}
T_REDUCE = {"sum": "torch.sum", "max": "torch.amax", "min": "torch.amin", "mean": "torch.mean"}


def _graphc_line(k: int, rec: tuple) -> str:
    kind, a, v = rec[0], rec[1:], lambda i: f"v{i}"
    if kind == "leaf":
        return (f"g.input('v{k}', {a[1]})" if a[0] == "input" else
                f"g.param('v{k}', {a[1]}, init=values['v{k}'])")
    if kind == "labels":
        return f"g.input('v{k}', {a[0]}, dtype='int64')"
    if kind == "unary":
        if a[0] in G_UNARY:
            return G_UNARY[a[0]].format(v(a[1]))
        return call_text(graphc_text(a[0]), v(a[1]), PARAMS.get(a[0], ()))
    if kind == "binary":
        return BIN.get(a[0], f"gc.{a[0]}({{}}, {{}})").format(v(a[1]), v(a[2]))
    if kind == "reduce":
        return f"gc.{a[0]}({v(a[1])}, axis={a[2]}, keepdims={a[3]})"
    return {
        "matmul": lambda: f"gc.matmul({v(a[0])}, {v(a[1])})",
        "transpose": lambda: f"gc.transpose({v(a[0])}, {a[1]})",
        "reshape": lambda: f"gc.reshape({v(a[0])}, {a[1]})",
        "broadcast": lambda: f"gc.broadcast_to({v(a[0])}, {a[1]})",
        "softmax": lambda: f"gc.softmax({v(a[0])}, axis={a[1]})",
        "log_softmax": lambda: f"gc.log_softmax({v(a[0])}, axis={a[1]})",
        "logsumexp": lambda: f"builder.logsumexp({v(a[0])}, axis={a[1]}, keepdims={a[2]})",
        "xent": lambda: f"gc.softmax_cross_entropy({v(a[0])}, {v(a[1])})",
        "mse": lambda: f"gc.mse({v(a[0])}, {v(a[1])})",
        "linear": lambda: f"gc.linear({v(a[0])}, {a[1]}, name='v{k}', init=values['v{k}_W'])"
                          f"\ng.attrs('v{k}_b')['value'] = values['v{k}_b']",
    }[kind]()


def _torch_line(k: int, rec: tuple) -> str:
    kind, a, v = rec[0], rec[1:], lambda i: f"t{i}"
    if kind in ("leaf", "labels"):
        return f"T['v{k}']"
    if kind == "unary":
        if a[0] in T_UNARY:
            return T_UNARY[a[0]].format(v(a[1]))
        return call_text(TORCH_TEXT[a[0]], v(a[1]), PARAMS.get(a[0], ()))
    if kind == "binary":
        return BIN.get(a[0], f"torch.{a[0]}({{}}, {{}})").format(v(a[1]), v(a[2]))
    if kind == "reduce":
        dim = a[2] if a[2] is not None else f"tuple(range({v(a[1])}.dim()))"
        return f"{T_REDUCE[a[0]]}({v(a[1])}, dim={dim}, keepdim={a[3]})"
    return {
        "matmul": lambda: f"{v(a[0])} @ {v(a[1])}",
        "transpose": lambda: f"{v(a[0])}.permute({a[1]})",
        "reshape": lambda: f"{v(a[0])}.reshape({a[1]})",
        "broadcast": lambda: f"{v(a[0])}.broadcast_to({a[1]})",
        "softmax": lambda: f"torch.softmax({v(a[0])}, dim={a[1]})",
        "log_softmax": lambda: f"torch.log_softmax({v(a[0])}, dim={a[1]})",
        "logsumexp": lambda: f"torch.logsumexp({v(a[0])}, dim={a[1]}, keepdim={a[2]})",
        "xent": lambda: f"-torch.log_softmax({v(a[0])}, -1).gather(-1, "
                        f"{v(a[1])}.unsqueeze(-1)).mean()",
        "mse": lambda: f"torch.square({v(a[0])} - {v(a[1])}).mean()",
        "linear": lambda: f"{v(a[0])} @ T['v{k}_W'] + T['v{k}_b']",
    }[kind]()


def _array(v: np.ndarray) -> str:
    return f"np.array({v.tolist()!r}, dtype='{v.dtype}').reshape({v.shape})"


TEMPLATE = '''"""Fuzzer reproducer: {failure}
Run from the repository root: python {name}"""
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import graphc as gc
from graphc import builder

nan, inf = float("nan"), float("inf")
PROGRAM = {prog!r}
values = {{
{values}
}}
leaves = {leaves}

# ---- graphc ----
g = gc.Graph("repro", dtype="{dtype}")
{graphc}
outs = [{outs}]   # every value is an output
loss = sum(gc.sum(g.input(w, o.shape) * o) for w, o in zip({weights}, outs))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    grads = gc.grad(loss, [g.node(n) for n in leaves])
f = gc.function(g, outs + [loss] + grads, backend="{backend}",
                fuse={fused}, matmul="{matmul}")
with np.errstate(all="ignore"):
    got = f(**{{n: values[n] for n in f.module.INPUTS}})

# ---- torch, float64 ----
T = {{n: torch.tensor(v, dtype=torch.float64 if v.dtype.kind == "f" else torch.int64,
                      requires_grad=n in leaves) for n, v in values.items()}}
{torch}
touts = [{touts}]
tloss = sum((T[w] * o).sum() for w, o in zip({weights}, touts))
tg = torch.autograd.grad(tloss, [T[n] for n in leaves], allow_unused=True)
want = [o.detach().numpy() for o in touts] + [tloss.detach().numpy()]
want += [np.zeros(T[n].shape) if d is None else d.numpy() for n, d in zip(leaves, tg)]
names = {names} + ["loss"] + ["d " + n for n in leaves]
bad = 0
for name, a, b in zip(names, got, want):
    try:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9 * (1 + np.nanmax(
            np.abs(np.where(np.isfinite(b), b, 0)), initial=0)), equal_nan=True)
    except AssertionError as e:
        bad += 1
        print(name, "MISMATCH", str(e).splitlines()[-3:])
print("mismatches:", bad)
raise SystemExit(1 if bad else 0)
'''


def write(failure, out: Path) -> Path:
    """Write the failure's program as out/repro_<seed>_<config>.py; returns the path."""
    from .check import inputs_for
    prog = failure.prog
    values = inputs_for(prog, failure.seed, failure.config)
    outs = [f"v{k}" for k, r in enumerate(prog) if r[0] not in ("leaf", "labels")]
    graphc = "\n".join(f"v{k} = {_graphc_line(k, r)}" for k, r in enumerate(prog))
    torch_src = "\n".join(f"t{k} = {_torch_line(k, r)}" for k, r in enumerate(prog))
    c = failure.config
    name = f"repro_{failure.seed}_{c.backend}_{'fused' if c.fused else 'unfused'}_" \
           f"{c.dtype}_{c.inputs}{'_matmul_fused' if c.matmul == 'fused' else ''}.py"
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(TEMPLATE.format(
        failure=str(failure).replace('"""', "'''"), name=path, prog=prog,
        values="\n".join(f"    {n!r}: {_array(v)}," for n, v in values.items()),
        outs=", ".join(outs), touts=", ".join("t" + o[1:] for o in outs),
        weights=["w" + o[1:] for o in outs], names=outs, leaves=leaf_names(prog),
        dtype=c.dtype, graphc=graphc, torch=torch_src,
        backend=c.backend, fused=c.fused, matmul=c.matmul))
    return path
