"""Evaluation mode: Graph -> Graph in which nodes that act only in training pass their
first argument through.

    y = dropout(x) = x * (u >= p) / (1 - p)   ->   y = x      (u no longer read)
A node opts in with the attribute `training_only`; it keeps its name, so asking for `y`
still works. Compiled training steps use the graph as built; functions and
`step.evaluate` use this view of it.
"""
from __future__ import annotations

from graphc import exprs
from graphc.graph import Graph


def training_only(graph: Graph) -> list:
    return [n for n in graph.topo() if graph.attrs(n).get("training_only")]


def for_evaluation(graph: Graph) -> Graph:
    """A copy of `graph` with every training-only node turned into the identity of its
    first argument (the graph itself when it has none)."""
    nodes = training_only(graph)
    if not nodes:
        return graph
    g = graph.copy()
    for n in nodes:
        g.truncate_args(n, 1)
        g.attrs(n).update(op="map", expr=exprs.arg(0), hint="identity", training_only=False)
    return g
