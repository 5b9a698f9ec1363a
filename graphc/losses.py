"""Losses and weight penalties as composites of primitives: binary cross-entropy on logits
(stable form) and L1/L2 penalties that the user adds to a loss inside the graph."""
from __future__ import annotations

from typing import Sequence

import sympy

from . import exprs, shapes
from .builder import real_number
from .errors import DtypeError, GraphError, ShapeError
from .graph import Graph, Node

REDUCTIONS = ("mean", "sum", "none")


def _reduced(per_element: Node, reduction: str, name: str | None) -> Node:
    """The mean or sum of all elements of a per-element loss, as torch's `reduction`."""
    g = per_element.graph
    total = g.reduce(per_element, "sum", name=name if reduction == "sum" else None)
    if reduction == "sum":
        return total
    count = shapes.size(per_element.shape)
    return g.apply(lambda s: s / count, [total], name=name, hint="mean")


def _bce(z, t):
    """max(z,0) - z*t + log1p(exp(-|z|)), written as max(z,0)*(1-t) - min(z,0)*t +
    softplus(-|z|): for targets in [0, 1] every term is >= 0, so nothing cancels (in
    softplus(z) - z*t, log1p(exp(-30)) = 9.4e-14 at z=30, t=1 loses all its digits) and
    nothing overflows. d/dz = sigmoid(z) - t, through Max/Min's tie rule H(0) = 1/2."""
    return sympy.Max(z, 0) * (1 - t) - sympy.Min(z, 0) * t + exprs.softplus(-sympy.Abs(z))


def bce_with_logits(logits: Node, targets: Node, reduction: str = "mean",
                    name: str | None = None) -> Node:
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], from the logits:
    max(z, 0) - z*t + log1p(exp(-|z|)), finite for any z, with gradient sigmoid(z) - t;
    reduction "mean" | "sum" | "none", as torch's binary_cross_entropy_with_logits."""
    where = f"bce_with_logits({logits.name!r}, {targets.name!r})"
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    for node in (logits, targets):
        if not shapes.is_float(node.dtype):
            raise DtypeError(f"{where}: {node.name!r} is {node.dtype}; logits and targets "
                             "must be float (targets are probabilities, not class indices)")
    if len(logits.shape) != len(targets.shape) or not all(
            shapes.same_dim(a, b) for a, b in zip(logits.shape, targets.shape)):
        raise ShapeError(f"{where}: targets of shape {shapes.fmt(targets.shape)} differ from "
                         f"logits of shape {shapes.fmt(logits.shape)}")
    g = logits.graph
    per_element = g.apply(_bce, [logits, targets], name=name if reduction == "none" else None,
                          hint="bce")
    return per_element if reduction == "none" else _reduced(per_element, reduction, name)


# ---- penalties ---------------------------------------------------------------------------

def _penalised(op: str, params, graph: Graph | None) -> list:
    """The param nodes a penalty applies to: handles or names, checked one by one."""
    items = [params] if isinstance(params, (Node, str)) else list(params)
    if not items:
        raise ValueError(f"{op}: no params given")
    if graph is None:  # not `graph or ...`: a Graph with no nodes is falsy (len 0)
        graph = next((p.graph for p in items if isinstance(p, Node)), None)
    if graph is None:
        raise ValueError(f"{op}: params {items} are given by name; pass graph=")
    nodes = []
    for p in items:
        if isinstance(p, Node) and p.graph is not graph:
            raise GraphError(f"{op}: {p.name!r} belongs to graph {p.graph.name!r}, "
                             f"not {graph.name!r}")
        if not isinstance(p, (Node, str)):
            raise ValueError(f"{op}: expected param nodes or names, got {p!r}")
        node = graph.node(p.name if isinstance(p, Node) else p)  # GraphError if missing
        a = graph.attrs(node.name)
        if not shapes.is_float(a["dtype"]):
            raise DtypeError(f"{op}: node {node.name!r} ({a['op']}) is {a['dtype']}; "
                             "a penalty applies to float params")
        if a["op"] != "param" or not a.get("trainable", True):
            what = "an untrained param" if a["op"] == "param" else f"a {a['op']} node"
            raise GraphError(f"{op}: node {node.name!r} {shapes.fmt(a['shape'])} is {what}; "
                             "a penalty applies to trainable params")
        nodes.append(node)
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"{op}: a param is listed twice in {names}")
    return nodes


def _penalty(op: str, params, weight, graph, name, term, stem: str, scale: float) -> Node:
    """scale * weight * sum over params of sum(term(w)), as one map over per-param sums
    (named `<param>_<stem>` and `<param>_<stem>_sum`, so show_grad reads as the math)."""
    weight = real_number(weight, "weight", op)
    if weight < 0:
        raise ValueError(f"{op}: weight must be >= 0, got {weight!r}")
    nodes = _penalised(op, params, graph)
    g = nodes[0].graph
    sums = [g.reduce(g.apply(term, [w], name=g.fresh(f"{w.name}_{stem}")), "sum",
                     name=g.fresh(f"{w.name}_{stem}_sum")) for w in nodes]
    factor = sympy.Float(scale * weight)
    return g.apply(lambda *s: factor * sympy.Add(*s), sums, name=name, hint=op)


def l1_penalty(params: Sequence | Node | str, weight: float, graph: Graph | None = None,
               name: str | None = None) -> Node:
    """weight * sum of |w| over every element of every param (handles or names; names need
    graph=). Add it to the loss: `loss = ce + gc.l1_penalty([W1, W2], 1e-4)`.
    d/dw = weight * sign(w), 0 at w = 0 (as torch.abs)."""
    return _penalty("l1_penalty", params, weight, graph, name, sympy.Abs, "abs", 1.0)


def l2_penalty(params: Sequence | Node | str, weight: float, graph: Graph | None = None,
               name: str | None = None) -> Node:
    """weight/2 * sum of w^2 over every element of every param: d/dw = weight * w, the
    same step as torch.optim.SGD(weight_decay=weight) on those params."""
    return _penalty("l2_penalty", params, weight, graph, name, lambda w: w ** 2, "sq",
                    0.5)
