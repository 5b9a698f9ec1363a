"""The verifier: Graph -> None, or a GraphError naming the first bad node.

Checks that the graph is acyclic, every op is a known primitive with the right number of
arguments at positions 0..k-1, every stored shape and dtype is what the op's rule infers,
and map expressions name only their arguments and the graph's dimensions.
"""
from __future__ import annotations

import networkx as nx
import sympy

from graphc import ops, shapes
from graphc.errors import CycleError, DtypeError, GraphError, OpError, ShapeError
from graphc.graph import Graph


def _check_acyclic(graph: Graph) -> list:
    """A topological order of the nodes, or CycleError listing one cycle."""
    try:
        return list(nx.topological_sort(graph.nx))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph.nx)
        path = " -> ".join(str(e[0]) for e in cycle) + f" -> {cycle[0][0]}"
        raise CycleError(f"graph {graph.name!r} is not acyclic: {path}") from None


def _check_args(graph: Graph, name: str, prim: ops.Primitive) -> list:
    """The argument names in position order, after checking arity and positions."""
    edges = list(graph.nx.in_edges(name, data="arg"))
    positions = sorted(p for _, _, p in edges if isinstance(p, int))
    if len(positions) != len(edges) or positions != list(range(len(edges))):
        found = [p for _, _, p in edges]
        raise GraphError(f"node {name!r}: argument positions {found} are not "
                         f"0..{len(edges) - 1}")
    if prim.arity is not None and len(edges) != prim.arity:
        raise OpError(f"node {name!r} ({prim.name}): takes {prim.arity} argument(s), "
                      f"has {len(edges)}")
    return [src for src, _, _ in sorted(edges, key=lambda e: e[2])]


def _check_node(graph: Graph, name: str, dims: set) -> None:
    a = graph.attrs(name)
    where = f"node {name!r}"
    if "op" not in a:
        raise OpError(f"{where} has no 'op' attribute")
    prim = ops.primitive(a["op"], where)
    where = f"node {name!r} ({a['op']})"
    args = _check_args(graph, name, prim)
    for key in ("shape", "dtype", "index"):
        if key not in a:
            raise GraphError(f"{where}: missing attribute {key!r}")
    if a["op"] == "map" and not isinstance(a.get("expr"), sympy.Expr):
        raise GraphError(f"{where}: expr must be a SymPy expression, got {a.get('expr')!r}")
    arg_info = [(graph.attrs(r)["shape"], graph.attrs(r)["dtype"]) for r in args]
    try:
        shape, dtype = prim.infer(where, arg_info, {**a, "dims": dims})
    except KeyError as e:
        raise GraphError(f"{where}: missing attribute {e}") from None
    if not shapes.same_shape(shape, a["shape"]):
        raise ShapeError(f"{where}: stored shape {shapes.fmt(a['shape'])}, but its "
                         f"arguments give {shapes.fmt(shape)}")
    if dtype != a["dtype"]:
        raise DtypeError(f"{where}: stored dtype {a['dtype']}, but its arguments give {dtype}")


def validate(graph: Graph) -> None:
    """Raise a GraphError (CycleError, OpError, ShapeError, DtypeError, ExprError) naming
    the first bad node; return None for a well-formed graph."""
    order = _check_acyclic(graph)
    dims = set(graph.dims.values())
    for name in order:
        _check_node(graph, name, dims)
