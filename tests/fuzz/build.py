"""A program's records as graphc builder calls: the graph, every value as an output, and
the gradient of sum_k sum(w<k> * v<k>) with respect to every float leaf."""
from __future__ import annotations

import warnings

import graphc as gc
from graphc import builder
from graphc.passes.autodiff import GradientWarning
from tests.torch_reference import graphc_op

from .grammar import COMPOUND, PARAMS, UNARY as OPS

UNARY = {
    **{op: (lambda x, op=op: graphc_op(op)(x, *PARAMS.get(op, ())))
       for op in OPS if op not in COMPOUND},
    # domain guards by construction: log and sqrt of arguments bounded away from 0
    "log_x2p1": lambda x: gc.log(gc.square(x) + 1.0),
    "sqrt_x2p05": lambda x: gc.sqrt(x * x + 0.5),
    "scale": lambda x: 0.5 - 1.5 * x, "neg": lambda x: -x,
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 0.5),  # the denominator is >= 0.5
    "maximum": gc.maximum, "minimum": gc.minimum,
}


def leaf_names(prog: list) -> list:
    """Names of the float leaves (the gradients' order), labels excluded."""
    names = []
    for k, rec in enumerate(prog):
        if rec[0] == "leaf":
            names.append(f"v{k}")
        elif rec[0] == "linear":
            names += [f"v{k}_W", f"v{k}_b"]
    return names


def _node(g, nodes: list, k: int, rec: tuple, values: dict):
    kind, a = rec[0], rec[1:]
    name = f"v{k}"
    if kind == "leaf":
        return g.input(name, a[1]) if a[0] == "input" else g.param(name, a[1], init=values[name])
    if kind == "labels":
        return g.input(name, a[0], dtype="int64")
    if kind == "unary":
        return UNARY[a[0]](nodes[a[1]])
    if kind == "binary":
        return BINARY[a[0]](nodes[a[1]], nodes[a[2]])
    if kind == "reduce":
        return getattr(gc, a[0])(nodes[a[1]], axis=a[2], keepdims=a[3])
    if kind == "matmul":
        return gc.matmul(nodes[a[0]], nodes[a[1]])
    if kind == "transpose":
        return gc.transpose(nodes[a[0]], a[1])
    if kind == "reshape":
        return gc.reshape(nodes[a[0]], a[1])
    if kind == "broadcast":
        return gc.broadcast_to(nodes[a[0]], a[1])
    if kind in ("softmax", "log_softmax"):
        return getattr(gc, kind)(nodes[a[0]], axis=a[1])
    if kind == "logsumexp":
        return builder.logsumexp(nodes[a[0]], axis=a[1], keepdims=a[2])
    if kind == "xent":
        return gc.softmax_cross_entropy(nodes[a[0]], nodes[a[1]])
    if kind == "mse":
        return gc.mse(nodes[a[0]], nodes[a[1]])
    y = gc.linear(nodes[a[0]], a[1], name=name, init=values[f"{name}_W"])
    g.attrs(f"{name}_b")["value"] = values[f"{name}_b"].astype(g.dtype)
    return y


def build(prog: list, values: dict, dtype: str = "float64"):
    """(graph, outputs, leaves): outputs are every non-leaf value then the loss; leaves are
    the float leaf names whose gradients follow the outputs."""
    g = gc.Graph("fuzz", dtype=dtype)
    nodes: list = []
    for k, rec in enumerate(prog):
        nodes.append(_node(g, nodes, k, rec, values))
    values_out = [(k, nodes[k]) for k, rec in enumerate(prog) if rec[0] not in ("leaf", "labels")]
    terms = [gc.sum(g.input(f"w{k}", n.shape) * n) for k, n in values_out]
    loss = terms[0]
    for t in terms[1:]:
        loss = loss + t
    leaves = leaf_names(prog)
    with warnings.catch_warnings():
        # a leaf read only through zero-derivative paths (a max's losers, labels) is fine
        warnings.simplefilter("ignore", GradientWarning)
        grads = gc.grad(loss, [g.node(n) for n in leaves])
    return g, [n for _, n in values_out] + [loss] + grads, leaves
