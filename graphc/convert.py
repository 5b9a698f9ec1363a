"""Hand-written NetworkX DAGs -> Graph: the same checks as the builder, in topological order.

Nodes carry `op` and the attributes of that op (`expr`, `shape`, `dtype`, `value`, `fn`,
`axes`, `keepdims`, `perm`, `axis`, `init`, `seed`); edges carry `arg`, the argument
position. A `rand` node has no edges: the graph adds its step counter.
"""
from __future__ import annotations

import networkx as nx

from .errors import CycleError, GraphError, OpError
from .graph import Graph

_BUILDERS = {
    "input": lambda g, n, a, args: g.input(n, a["shape"], a.get("dtype")),
    "param": lambda g, n, a, args: g.param(n, a["shape"], a.get("init", a.get("value")),
                                           a.get("dtype"), a.get("trainable", True)),
    "const": lambda g, n, a, args: g.const(a["value"], name=n, dtype=a.get("dtype")),
    "iota": lambda g, n, a, args: g.iota(a["shape"], a.get("axis", 0), a.get("dtype", "int64"),
                                         name=n),
    "rand": lambda g, n, a, args: g.rand(a["shape"], a.get("seed"), a.get("dtype"), name=n),
    "map": lambda g, n, a, args: g.map(a["expr"], args, name=n, dtype=a.get("dtype")),
    "reduce": lambda g, n, a, args: g.reduce(args[0], a.get("fn", "sum"), a.get("axes"),
                                             a.get("keepdims", False), name=n),
    "matmul": lambda g, n, a, args: g.matmul(*args, name=n),
    "permute": lambda g, n, a, args: g.permute(args[0], a["perm"], name=n),
    "reshape": lambda g, n, a, args: g.reshape(args[0], a["shape"], name=n),
    "broadcast": lambda g, n, a, args: g.broadcast(args[0], a["shape"], name=n),
}


def _ordered_args(G: nx.DiGraph, node) -> list:
    edges = G.in_edges(node, data=True)
    positions = []
    for src, _, data in edges:
        if "arg" not in data:
            raise GraphError(f"edge {src!r} -> {node!r} has no 'arg' (argument position)")
        positions.append((data["arg"], src))
    positions.sort(key=lambda p: p[0])
    if [p for p, _ in positions] != list(range(len(positions))):
        raise GraphError(f"node {node!r}: argument positions {[p for p, _ in positions]} "
                         f"are not 0..{len(positions) - 1}")
    return [str(src) for _, src in positions]


def from_networkx(G: nx.DiGraph, name: str | None = None, dtype: str = "float32") -> Graph:
    """Build a Graph from a DiGraph/MultiDiGraph, raising a GraphError on any bad node."""
    if not isinstance(G, nx.DiGraph):
        raise GraphError(f"from_networkx needs a networkx DiGraph or MultiDiGraph, "
                         f"got {type(G).__name__}")
    try:
        cycle = nx.find_cycle(G)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(str(e[0]) for e in cycle) + f" -> {cycle[0][0]}"
        raise CycleError(f"graph is not acyclic: {path}")
    g = Graph(name or G.graph.get("name") or "graph", dtype=dtype)
    for node in nx.lexicographical_topological_sort(G, key=str):
        attrs = G.nodes[node]
        if str(node) == "":  # the builder would generate a name; edges name this one
            raise GraphError(f"a node ({attrs.get('op', 'no op')}) is named ''; node names "
                             "must be non-empty")
        if "op" not in attrs:
            raise OpError(f"node {node!r} has no 'op' attribute")
        build = _BUILDERS.get(attrs["op"])
        if build is None:
            raise OpError(f"node {node!r}: unknown op {attrs['op']!r}; primitives are "
                          f"{', '.join(_BUILDERS)}")
        try:
            build(g, str(node), attrs, _ordered_args(G, node))
        except KeyError as e:
            raise GraphError(f"node {node!r} ({attrs['op']}): missing attribute {e}") from None
    return g
