"""A plain float64 interpreter of every primitive, for tests only: Graph + feeds -> values.
Independent of codegen and of the passes, so it can judge both."""
from __future__ import annotations

import numpy as np
import sympy

from graphc import exprs

FUNCTIONS = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softplus": lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0),
    "expm1": np.expm1,
}
REDUCERS = {"sum": np.sum, "max": np.max, "min": np.min}


def bind_dims(graph, feeds: dict) -> dict:
    """Symbolic dimension -> size, read off the feeds' shapes."""
    dims = {}
    for n in graph.nodes_of("input"):
        for k, d in enumerate(graph.attrs(n)["shape"]):
            if isinstance(d, sympy.Symbol) and n in feeds:
                dims[d] = np.shape(feeds[n])[k]
    return dims


def _shape(shape, dims: dict) -> tuple:
    return tuple(int(sympy.sympify(d).subs(dims)) for d in shape)


def _map(graph, name: str, values: list, dims: dict) -> np.ndarray:
    a = graph.attrs(name)
    dim_syms = sorted(dims, key=str)
    syms = exprs.args(len(values)) + dim_syms
    # scipy: scipy.special.erf (gelu), a third implementation beside graphc's and torch's
    fn = sympy.lambdify(syms, a["expr"], modules=[FUNCTIONS, "scipy", "numpy"])
    shape = _shape(a["shape"], dims)
    args = [np.broadcast_to(v, shape) for v in values]
    with np.errstate(all="ignore"):
        out = fn(*args, *[float(dims[s]) for s in dim_syms])
    return np.broadcast_to(np.asarray(out, dtype=np.float64), shape)


def _node(graph, name: str, values: list, feeds: dict, dims: dict) -> np.ndarray:
    a = graph.attrs(name)
    op = a["op"]
    if op == "input":
        return np.asarray(feeds[name], dtype=np.float64)
    if op in ("param", "const"):
        return np.asarray(a["value"], dtype=np.float64)
    if op == "iota":
        shape = _shape(a["shape"], dims)
        idx = np.indices(shape)[a["axis"]] if shape else np.zeros(())
        return idx.astype(np.float64)
    if op == "map":
        return _map(graph, name, values, dims)
    if op == "reduce":
        return REDUCERS[a["fn"]](values[0], axis=tuple(a["axes"]), keepdims=a["keepdims"])
    if op == "matmul":
        return values[0] @ values[1]
    if op == "permute":
        return np.transpose(values[0], a["perm"])
    if op == "reshape":
        return np.reshape(values[0], _shape(a["shape"], dims))
    if op == "broadcast":
        return np.broadcast_to(values[0], _shape(a["shape"], dims))
    raise NotImplementedError(f"reference evaluator: op {op!r}")


def evaluate(graph, feeds: dict, outputs: list) -> list:
    """The values of `outputs` (node names) given `feeds` (input name -> array)."""
    dims = bind_dims(graph, feeds)
    values: dict = {}
    for n in graph.topo():
        values[n] = _node(graph, n, [values[r] for r in graph.args(n)], feeds, dims)
    return [np.array(values[o]) for o in outputs]
