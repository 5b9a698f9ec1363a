"""Structural common-subexpression elimination: Graph -> Graph.

    a = tanh(x); b = tanh(x); c = a * b   ->   a = tanh(x); c = a * a
Two nodes merge when op, arguments (in order) and every semantic attribute are equal
(SymPy expressions structurally, const values bit for bit). Leaves that stand for
distinct storage (input, param, rand) never merge.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from graphc import ops
from graphc.graph import Graph

from .dce import check_keep

NEVER_MERGED = frozenset({"input", "param", "rand"})
IGNORED_ATTRS = ops.PROVENANCE   # a name of its own: the fuzzer's mutants widen it


def _hashable(value):
    """A hashable stand-in for an attribute value, or None when there is none."""
    if isinstance(value, np.ndarray):
        # bytes, not np.array_equal: 0.0 and -0.0 must stay apart (1/x differs)
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        items = tuple(_hashable(v) for v in value)
        return None if None in items else (type(value).__name__, items)
    try:
        hash(value)
    except TypeError:
        return None
    return value


def node_key(graph: Graph, name: str):
    """Everything that determines a node's value, or None for a node that never merges."""
    a = graph.attrs(name)
    if a["op"] in NEVER_MERGED:
        return None
    attrs = []
    for k in sorted(a):
        if k in IGNORED_ATTRS or (k == "stop_gradient" and not a[k]):
            continue
        v = _hashable(a[k])
        if v is None:
            return None
        attrs.append((k, v))
    return a["op"], tuple(graph.args(name)), tuple(attrs)


def cse(graph: Graph, keep: Iterable[str]) -> Graph:
    """Return a copy of `graph` where each repeated computation is done once: the users
    of a later duplicate read the first one; the duplicate is removed unless kept."""
    keep = check_keep(graph, keep, "cse")
    g = graph.copy()
    first: dict = {}
    # topological order: a node's arguments are already merged when its key is taken,
    # so whole duplicate chains collapse in one pass
    for n in list(g.topo()):
        key = node_key(g, n)
        if key is None:
            continue
        rep = first.setdefault(key, n)
        if rep == n:
            continue
        g.replace_uses(n, rep)
        if n not in keep:
            g.remove(n)
    return g
