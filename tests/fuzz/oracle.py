"""The reference: a program run by PyTorch autograd, independent of graphc, and the rules
that compare graphc's arrays to it (NaN-aware; float64 by tolerance, float32 by the rule
PyTorch applies to its own compiler: error against float64 at most 2x eager float32's)."""
from __future__ import annotations

import numpy as np
import torch

from tests.torch_reference import TORCH

from .build import leaf_names
from .grammar import COMPOUND, PARAMS, UNARY as OPS

UNARY = {
    **{op: (lambda t, op=op: TORCH[op](t, *PARAMS.get(op, ()))) for op in OPS
       if op not in COMPOUND},
    "log_x2p1": lambda t: torch.log(torch.square(t) + 1.0),
    "sqrt_x2p05": lambda t: torch.sqrt(t * t + 0.5),
    "scale": lambda t: 0.5 - 1.5 * t, "neg": lambda t: -t,
}
BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul,
    "div": lambda a, b: a / (b * b + 0.5), "maximum": torch.maximum, "minimum": torch.minimum,
}
REDUCE = {"sum": torch.sum, "max": torch.amax, "min": torch.amin, "mean": torch.mean}
# float64: rtol for values and for gradients, atol relative to the array's largest value
RTOL = {"value": 1e-7, "grad": 1e-6}
ATOL64 = 1e-9
ATOL32 = 1e-5  # float32: the small atol added to 2x eager's error (relative, as ATOL64)


def _xent(z, labels):
    lsm = torch.log_softmax(z, dim=-1)
    return -lsm.gather(-1, labels.unsqueeze(-1)).mean()


def _value(kind: str, a: tuple, ts: list, leaves: dict, k: int):
    if kind in ("leaf", "labels"):
        return leaves[f"v{k}"]
    if kind == "unary":
        return UNARY[a[0]](ts[a[1]])
    if kind == "binary":
        return BINARY[a[0]](ts[a[1]], ts[a[2]])
    if kind == "reduce":
        x = ts[a[1]]
        dim = tuple(range(x.dim())) if a[2] is None else a[2]
        return REDUCE[a[0]](x, dim=dim, keepdim=a[3])
    if kind == "matmul":
        return ts[a[0]] @ ts[a[1]]
    if kind == "transpose":
        return ts[a[0]].permute(*a[1])
    if kind == "reshape":
        return ts[a[0]].reshape(a[1])
    if kind == "broadcast":
        return ts[a[0]].broadcast_to(a[1])
    if kind in ("softmax", "log_softmax"):
        return getattr(torch, kind)(ts[a[0]], dim=a[1])
    if kind == "logsumexp":
        return torch.logsumexp(ts[a[0]], dim=a[1], keepdim=a[2])
    if kind == "xent":
        return _xent(ts[a[0]], ts[a[1]])
    if kind == "mse":
        return torch.square(ts[a[0]] - ts[a[1]]).mean()
    return ts[a[0]] @ leaves[f"v{k}_W"] + leaves[f"v{k}_b"]


def run_torch(prog: list, values: dict, dtype: torch.dtype) -> tuple[list, list]:
    """(every non-leaf value, the gradient of sum_k sum(w<k> * v<k>) per float leaf), as
    float64 NumPy arrays; the program is evaluated in `dtype`."""
    names = leaf_names(prog)
    leaves = {n: torch.tensor(v, dtype=dtype if v.dtype.kind == "f" else torch.int64,
                              requires_grad=n in names) for n, v in values.items()}
    ts: list = []
    for k, rec in enumerate(prog):
        ts.append(_value(rec[0], rec[1:], ts, leaves, k))
    outs = [(k, t) for k, t in enumerate(ts) if prog[k][0] not in ("leaf", "labels")]
    loss = sum((leaves[f"w{k}"] * t).sum() for k, t in outs)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True)
    grads = [torch.zeros_like(leaves[n]) if gr is None else gr for n, gr in zip(names, grads)]
    as_np = [t.detach().double().numpy() for _, t in outs]
    return as_np + [loss.detach().double().numpy()], [gr.double().numpy() for gr in grads]


def _special_mismatch(got: np.ndarray, want: np.ndarray) -> str | None:
    """NaN positions and infinities (with sign) must be the same."""
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return f"NaN at {np.argwhere(np.isnan(got) != np.isnan(want))[0].tolist()}"
    inf = np.isinf(got) | np.isinf(want)
    if not np.array_equal(got[inf], want[inf]):
        return f"inf at {np.argwhere(inf & (got != want))[0].tolist()}"
    return None


def mismatch64(got, want, what: str) -> str | None:
    """A message if got differs from the float64 reference, else None."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    bad = _special_mismatch(got, want)
    if bad:
        return bad
    fin = np.isfinite(want)
    g, w = got[fin], want[fin]
    atol = ATOL64 * (1.0 + (np.abs(w).max() if w.size else 0.0))
    err = np.abs(g - w) > atol + RTOL[what] * np.abs(w)
    if err.any():
        k = int(np.argmax(err))
        return f"{g[k]!r} != {w[k]!r} (max abs err {np.abs(g - w).max():.3g})"
    return None


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean(np.square(a - b)))) if a.size else 0.0


def mismatch32(got, eager32, ref64, what: str) -> str | None:
    """PyTorch's accuracy rule for compiled float32 code: RMS error against the float64
    run at most 2x eager float32's, plus a small atol; NaN/inf as eager float32's."""
    got, eager32, ref64 = (np.asarray(a, dtype=float) for a in (got, eager32, ref64))
    if got.shape != ref64.shape:
        return f"shape {got.shape} != {ref64.shape}"
    bad = _special_mismatch(got, eager32)
    if bad:
        return bad
    fin = np.isfinite(ref64) & np.isfinite(eager32)
    g, e, r = got[fin], eager32[fin], ref64[fin]
    atol = ATOL32 * (1.0 + (np.abs(r).max() if r.size else 0.0))
    if _rmse(g, r) > 2.0 * _rmse(e, r) + atol:
        return f"rmse {_rmse(g, r):.3g} > 2 x eager {_rmse(e, r):.3g} + {atol:.2g}"
    return None
