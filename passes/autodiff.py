"""Reverse-mode autodiff: Graph -> Graph with gradient nodes appended.

Seeds d<loss>/d<loss> = 1, visits nodes in reverse topological order, and adds each
argument's VJP contribution (the rule sits with its primitive in graphc.ops) to that
argument's adjoint. Broadcasting is undone here, in one place, for every op.
"""
from __future__ import annotations

import warnings

import networkx as nx
import sympy

from graphc import ops, shapes
from graphc.errors import GradError
from graphc.graph import Graph


class GradientWarning(UserWarning):
    """A gradient was requested for a node the loss does not depend on (it is zero)."""


def unbroadcast(graph: Graph, c: str, shape: tuple) -> str:
    """Sum a contribution of a broadcast shape down to its argument's `shape`."""
    cs = graph.attrs(c)["shape"]
    lead = len(cs) - len(shape)
    axes = list(range(lead)) + [lead + k for k, d in enumerate(shape)
                                if d == 1 and cs[lead + k] != 1]
    if not axes:
        return c
    summed = graph.reduce(c, "sum", axes, keepdims=True, name=graph.fresh(f"{c}_unbcast"))
    if lead:
        summed = graph.reshape(summed, shape, name=graph.fresh(f"{c}_unbcast_r"))
    return summed.name


def _relevant(graph: Graph, loss: str, wrt: list) -> set:
    """Nodes on some path from a wrt node to the loss."""
    upstream = nx.ancestors(graph.nx, loss) | {loss}
    downstream = set()
    for w in wrt:
        if w in upstream:
            downstream |= nx.descendants(graph.nx, w) | {w}
    return upstream & downstream


def _check(graph: Graph, loss: str, wrt: list):
    a = graph.attrs(loss)
    if a["shape"] != ():
        raise GradError(f"loss {loss!r} must be a scalar (shape ()), got shape "
                        f"{shapes.fmt(a['shape'])}; reduce it with gc.sum or gc.mean")
    if not shapes.is_float(a["dtype"]):
        raise GradError(f"loss {loss!r} has dtype {a['dtype']}; it must be floating point")
    for w in wrt:
        if not shapes.is_float(graph.attrs(w)["dtype"]):
            raise GradError(f"cannot differentiate with respect to {w!r}: its dtype "
                            f"{graph.attrs(w)['dtype']} is not floating point")


def _sum(graph: Graph, node: str, parts: list, claimed: set) -> str:
    """The adjoint of `node`, named d_<node>: its single contribution (renamed unless it is
    another node's adjoint, passed through unchanged, e.g. by an add) or their sum."""
    if len(parts) == 1 and parts[0] in claimed:
        return parts[0]
    name = graph.fresh(f"d_{node}")
    if len(parts) == 1 and not graph.users(parts[0]):
        _rename(graph, parts[0], name)
    else:
        xs = [sympy.Symbol(f"x{i}", real=True) for i in range(len(parts))]
        graph.map(sympy.Add(*xs), parts, name=name)
    graph.nx.nodes[name]["adjoint_of"] = node
    return name


def _rename(graph: Graph, old: str, new: str) -> None:
    """Rename a node that nothing reads yet (nx.relabel_nodes scans every node per call)."""
    graph.nx.add_node(new, **graph.nx.nodes[old])
    for src, _, data in list(graph.nx.in_edges(old, data=True)):
        graph.nx.add_edge(src, new, **data)
    graph.nx.remove_node(old)
    graph._topo = None


def autodiff(graph: Graph, loss: str, wrt: list) -> tuple[Graph, list]:
    """Return (a copy of graph with gradient nodes, the names of d loss / d w for w in wrt)."""
    for n in [loss, *wrt]:
        graph.attrs(n)
    _check(graph, loss, wrt)
    g = graph.copy()
    relevant = _relevant(g, loss, wrt)
    seed = g.map(sympy.Integer(1), [loss], name=g.fresh(f"d_{loss}"))
    g.nx.nodes[seed.name]["adjoint_of"] = loss
    pending = {loss: [seed.name]}
    adjoint: dict = {}
    claimed: set = set()   # adjoint.values(), kept as a set: one membership test per node
    for node in reversed(graph.topo()):
        if node not in relevant or node not in pending:
            continue
        parts = pending.pop(node)
        adj = parts[0] if node == loss else _sum(g, node, parts, claimed)
        adjoint[node] = adj
        claimed.add(adj)
        a = g.attrs(node)
        if a["op"] in ops.LEAVES or a.get("stop_gradient"):
            continue
        prim = ops.PRIMITIVES[a["op"]]
        if prim.vjp is None:
            raise GradError(f"node {node!r}: no gradient rule for op {a['op']!r}")
        for i, arg in enumerate(graph.args(node)):
            a_arg = g.attrs(arg)
            if arg not in relevant or not shapes.is_float(a_arg["dtype"]) or \
                    a_arg.get("stop_gradient"):
                continue
            c = prim.vjp(g, node, g.node(adj), i)
            if c is None:
                continue
            c = unbroadcast(g, c.name, g.attrs(arg)["shape"])
            pending.setdefault(arg, []).append(c)
    return g, [_zero_if_missing(g, adjoint, loss, w) for w in wrt]


def _zero_if_missing(g: Graph, adjoint: dict, loss: str, w: str) -> str:
    if w in adjoint:
        return adjoint[w]
    warnings.warn(f"loss {loss!r} does not depend on {w!r}; its gradient is zero",
                  GradientWarning, stacklevel=3)
    z = g.map(sympy.Integer(0), [w], name=g.fresh(f"d_{w}"))
    g.nx.nodes[z.name]["adjoint_of"] = w
    return z.name
