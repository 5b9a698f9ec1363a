"""Dead-code elimination: Graph -> Graph without the nodes no kept node depends on.

    x -> a -> out, x -> b (unused)   ->   x -> a -> out
    param w (unread, not kept)       ->   (gone)
"""
from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from graphc.errors import GraphError
from graphc.graph import Graph


def check_keep(graph: Graph, keep: Iterable[str], pass_name: str) -> frozenset:
    """The kept names as a set; each must be a node of the graph."""
    names = frozenset(keep)
    missing = sorted(n for n in names if n not in graph)
    if missing:
        raise GraphError(f"{pass_name}: graph {graph.name!r} has no node(s) "
                         f"{', '.join(map(repr, missing))} to keep")
    return names


def drop_dead(graph: Graph, names: Iterable[str], keep: frozenset) -> None:
    """In place, for a pass on its own copy: remove the nodes of `names` that lost their
    last reader, and what only they read; never kept nodes, inputs or params (dce decides
    about those)."""
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in graph and n not in keep and not graph.nx.out_degree(n) and \
                graph.attrs(n)["op"] not in ("input", "param"):
            stack.extend(graph.args(n))
            graph.remove(n)


def live_nodes(graph: Graph, keep: frozenset) -> set:
    """The kept nodes and everything they read, directly or not."""
    live = set(keep)
    for n in keep:
        live |= nx.ancestors(graph.nx, n)
    return live


def dce(graph: Graph, keep: Iterable[str]) -> Graph:
    """Return a copy of `graph` holding only `keep` and its ancestors (inputs and params
    included: one that nothing kept reads is removed unless it is kept itself)."""
    keep = check_keep(graph, keep, "dce")
    g = graph.copy()
    live = live_nodes(g, keep)
    # reverse topological order: every user of a dead node is removed before it
    for n in reversed(g.topo()):
        if n not in live:
            g.remove(n)
    return g
