"""An in-process memo of lowering: compiling a graph that this process has already
compiled, with the same options, reuses its optimized and fused graphs, memory plan and
generated text instead of running the passes and printers again (they are pure functions
of their inputs).

What it keys on is everything the lowering reads: the graph's name, dtype, seed, dims and
name counters, every node in order with its attributes (array values by content hash) and
arguments, the outputs and updates, and the options. Arrays are hashed, not trusted by
identity, so a graph whose parameters changed since is lowered again. The generated file
is still written to and imported from the disk cache, and a C library rebuilt if missing:
only the pure part is skipped. A patched pass or printer named in the options is another
key; `off()` turns the memo off (the fuzzer, whose planted bugs patch printers' insides,
lowers every graph afresh). A new process starts empty; its warm compile is the disk
cache's.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict

import numpy as np
import sympy

from .graph import Graph

SIZE = 32   # lowered graphs kept; each holds its graph's attribute dicts (arrays shared)

_memo: OrderedDict = OrderedDict()
_enabled = [True]


class Unkeyable(Exception):
    """An attribute the memo cannot fingerprint: that graph is simply lowered again."""


def _freeze(value):
    """A hashable, type-strict form of an attribute value (1, 1.0 and True stay apart)."""
    if isinstance(value, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16)
        return ("array", value.dtype.str, value.shape, digest.digest())
    if isinstance(value, sympy.Basic):
        return ("sympy", value)      # structural equality; Float(1.0) != Integer(1)
    if isinstance(value, (str, int, float, bool, type(None), np.generic)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if callable(value):
        return ("callable", value)   # a pass or printer: a patched one is another key
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    raise Unkeyable(type(value).__name__)


def fingerprint(graph: Graph) -> tuple:
    nodes = tuple((n, _freeze(dict(graph.attrs(n))), tuple(graph.args(n)))
                  for n in graph.nx.nodes)
    return (graph.name, graph.dtype, graph.seed, _freeze(dict(graph.dims)), graph._count,
            graph._serial, nodes)


def key(graph: Graph, *options) -> tuple | None:
    """The memo key of lowering `graph` with `options`, or None where it has none."""
    try:
        k = (fingerprint(graph), _freeze(list(options)))
        hash(k)
        return k
    except (Unkeyable, TypeError):   # TypeError: unsortable dict keys, unhashable values
        return None


def _copies(stages: tuple) -> tuple:
    """Graphs copied (a caller may change its graph); plans and texts are not changed."""
    return tuple(s.copy() if isinstance(s, Graph) else s for s in stages)


def get(k: tuple | None) -> tuple | None:
    """The stages stored under k (the graphs as fresh copies), or None."""
    if k is None or not _enabled[0] or k not in _memo:
        return None
    _memo.move_to_end(k)
    return _copies(_memo[k])


def put(k: tuple | None, *stages) -> None:
    if k is None or not _enabled[0]:
        return
    _memo[k] = _copies(stages)
    while len(_memo) > SIZE:
        _memo.popitem(last=False)


def clear() -> None:
    _memo.clear()


@contextlib.contextmanager
def off():
    """Lower every graph afresh inside the block (nothing is read or stored)."""
    was, _enabled[0] = _enabled[0], False
    try:
        yield
    finally:
        _enabled[0] = was
