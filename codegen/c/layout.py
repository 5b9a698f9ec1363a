"""Where a C kernel finds each element: strides of values in their storage (views
followed back to their base), broadcast into a kernel's index space, and the loop groups
that index space collapses into (adjacent axes every access walks contiguously)."""
from __future__ import annotations

import sympy

from ..schedule import VIEWS


def same(a, b) -> bool:
    """Equal dimension expressions (16*N and N*16)."""
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def contiguous(shape) -> tuple:
    """Row-major element strides; 0 for axes of size 1 (they are never stepped along)."""
    out, step = [], sympy.Integer(1)
    for d in reversed(shape):
        out.append(sympy.Integer(0) if d == 1 else step)
        step = step * d
    return tuple(reversed(out))


def storage_strides(graph, node) -> tuple | None:
    """Strides of `node`'s elements in the storage of the value its views read; None for a
    reshape of a view that moves elements (no strides describe it: the host copies it)."""
    a = graph.attrs(node)
    op, shape = a["op"], tuple(a["shape"])
    if op == "iota":   # stored as one ramp of its axis' length
        return tuple(sympy.Integer(1) if k == a["axis"] and d != 1 else sympy.Integer(0)
                     for k, d in enumerate(shape))
    if op not in VIEWS:
        return contiguous(shape)
    x = graph.args(node)[0]
    inner = storage_strides(graph, x)
    if inner is None:
        return None
    if op == "permute":
        return tuple(inner[p] for p in a["perm"])
    if op == "broadcast":
        return broadcast(inner, graph.attrs(x)["shape"], shape)
    # reshape: free only of a value laid out row-major
    src = tuple(graph.attrs(x)["shape"])
    return contiguous(shape) if all(same(s, c) for s, c in zip(inner, contiguous(src))) \
        else None


def broadcast(strides, shape, target) -> tuple:
    """Strides of a value of `shape` seen as `target` (NumPy broadcasting, right-aligned):
    new leading axes and axes of size 1 step by 0."""
    lead = len(target) - len(shape)
    out = []
    for k in range(len(target)):
        j = k - lead
        out.append(sympy.Integer(0) if j < 0 or shape[j] == 1 else strides[j])
    return tuple(out)


def place(strides, positions, rank: int) -> tuple:
    """Strides over a kernel's index space of `rank` axes, from strides over the axes at
    `positions` (a row value's axes, a reduction's kept axes); 0 elsewhere."""
    out = [sympy.Integer(0)] * rank
    for s, p in zip(strides, positions):
        out[p] = s
    return tuple(out)


def loop_groups(domain, accesses, cuts) -> list:
    """Runs of adjacent axes of `domain` that one loop can walk: axis b joins the run of
    the axis a before it when every access steps by stride[a] = stride[b] * extent[b].
    `cuts[k]` labels axis k's loop level; runs never cross levels. Axes of extent 1 take
    no loop. Returns [(level, [axes])] outermost first."""
    runs: list = []
    for k, d in enumerate(domain):
        if d == 1:
            continue
        if runs and runs[-1][0] == cuts[k]:
            a = runs[-1][1][-1]
            if all(same(s[a], s[k] * d) for s in accesses):
                runs[-1][1].append(k)
                continue
        runs.append((cuts[k], [k]))
    return runs
