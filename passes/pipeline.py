"""The optimisation pipeline: Graph -> Graph through the passes below, in this order."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from graphc.graph import Graph

from .constfold import constfold
from .cse import cse
from .dce import check_keep, dce
from .simplify import simplify
from .validate import validate

# each pass: (graph, keep) -> new graph; read top to bottom
PASSES: list[tuple[str, Callable[[Graph, Iterable[str]], Graph]]] = [
    ("simplify", simplify),     # local rewrites: identity maps, layout chains, literals
    ("cse", cse),               # one node per distinct computation
    ("constfold", constfold),   # computations on constants done now
    ("dce", dce),               # drop what no kept node reads
]


def optimize(graph: Graph, keep: Iterable[str], check: bool = False,
             timings: dict | None = None) -> Graph:
    """Run PASSES on a copy of `graph`, keeping the nodes in `keep` (outputs, updates).
    check=True validates the input and the result of every pass; `timings`, if given,
    is filled with pass name -> seconds."""
    keep = sorted(check_keep(graph, keep, "optimize"))
    if check:
        validate(graph)
    g = graph
    for name, run in PASSES:
        start = time.perf_counter()
        g = run(g, keep)
        if timings is not None:
            timings[name] = time.perf_counter() - start
        if check:
            validate(g)
    return g
