"""Constant folding: Graph -> Graph where computations on constants are done once, here.

    map(x0*2 + x1)[const a, const b]      ->   const (a*2 + b)
    map(1)[loss]  (shape concrete)        ->   const 1.0
    reduce / matmul / permute / reshape / broadcast of consts (or concrete iotas) -> const
Only nodes of concrete shape with at most MAX_ELEMENTS elements are folded.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import sympy

from graphc import exprs, functions, ops, shapes
from graphc.graph import Graph

from .dce import check_keep

MAX_ELEMENTS = 1 << 16  # folding must not turn a small graph into a huge constant table

# the only node attributes a folded node keeps besides op/value/shape/dtype/index


def _concrete(shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def eval_map(expr: sympy.Expr, values: list, shape: tuple) -> np.ndarray:
    """NumPy value of a map expression over argument arrays, broadcast to `shape`."""
    symbols = exprs.args(len(values))
    # the functions by graphc/functions.py's NumPy steps: the values the NumPy backend computes
    expr, table = functions.for_lambdify(expr)
    fn = sympy.lambdify(symbols, expr, modules=[table, "numpy"])
    # broadcast first: printed Max/Min/Piecewise expect operands of one shape
    values = [np.broadcast_to(v, shape) for v in values]
    return np.broadcast_to(np.asarray(fn(*values)), shape)


def _iota(a: dict) -> np.ndarray:
    shape, axis = a["shape"], a["axis"]
    ramp = np.arange(shape[axis]).reshape([-1 if k == axis else 1 for k in range(len(shape))])
    return np.broadcast_to(ramp, shape).astype(a["dtype"])


REDUCERS = {"sum": np.sum, "max": np.max, "min": np.min}

# the value of one non-leaf node from its attributes and its arguments' values
EVALUATORS = {
    "map": lambda a, v: eval_map(a["expr"], v, a["shape"]),
    "reduce": lambda a, v: REDUCERS[a["fn"]](v[0], axis=tuple(a["axes"]),
                                             keepdims=a["keepdims"]),
    "matmul": lambda a, v: np.matmul(*v),
    "permute": lambda a, v: np.transpose(v[0], a["perm"]),
    "reshape": lambda a, v: np.reshape(v[0], a["shape"]),
    "broadcast": lambda a, v: np.broadcast_to(v[0], a["shape"]),
}


def _arg_value(graph: Graph, name: str):
    """The value of a constant argument, or None when it is not known here."""
    a = graph.attrs(name)
    if a["op"] == "const":
        return a["value"]
    if a["op"] == "iota" and _concrete(a["shape"]):
        return _iota(a)
    return None


def _foldable(graph: Graph, name: str) -> list | None:
    """The argument values when `name` can be folded, else None."""
    a = graph.attrs(name)
    if a["op"] not in EVALUATORS:
        return None
    if not _concrete(a["shape"]) or shapes.size(a["shape"]) > MAX_ELEMENTS:
        return None
    args = graph.args(name)
    if a["op"] == "map":
        free = a["expr"].free_symbols
        if any(exprs.arg_index(s) is None for s in free):
            return None  # names a dimension such as N: known only at run time
        # an argument the expression ignores only lends its shape, which is concrete
        args = [r if exprs.arg(i) in free else None for i, r in enumerate(args)]
    values = [np.zeros(()) if r is None else _arg_value(graph, r) for r in args]
    if any(v is None or v.size == 0 for v in values):
        return None
    return values


def _to_const(graph: Graph, name: str, value: np.ndarray) -> None:
    """Turn node `name` into a const holding `value` (same name, shape and dtype)."""
    a = graph.attrs(name)
    kept = {k: a[k] for k in ops.KEPT_ON_REWRITE if k in a}
    graph.nx.remove_edges_from(list(graph.nx.in_edges(name, keys=True)))
    a.clear()
    a.update(kept, op="const", value=np.array(value, dtype=kept["dtype"]))
    graph._topo = None


def constfold(graph: Graph, keep: Iterable[str]) -> Graph:
    """Return a copy of `graph` where every node computable from constants alone is a
    const; arguments left unread are not removed here (dce does that)."""
    check_keep(graph, keep, "constfold")
    g = graph.copy()
    # topological order: a folded node's users see it as a const in the same sweep
    for n in list(g.topo()):
        values = _foldable(g, n)
        if values is None:
            continue
        with np.errstate(all="ignore"):  # inf/nan fold exactly as they would compute
            value = EVALUATORS[g.attrs(n)["op"]](g.attrs(n), values)
        _to_const(g, n, value)
    return g
