"""Model files: the convention the `graphc` command reads.

A model file is a Python file with a function `build()` that returns a dict:

    def build():
        g = gc.Graph("xor")
        ...
        return {"graph": g, "loss": loss,                  # required
                "data": {"x": X, "y": Y},                   # feeds for `graphc train`
                "optimizer": gc.SGD(lr=0.5)}                # optional, default SGD()

(`(graph, loss)` is accepted too.) The examples in examples/ follow it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .graph import Graph, Node


class ModelFileError(Exception):
    """A model file that cannot be read: the message says what to fix."""


@dataclass
class ModelSpec:
    graph: Graph
    loss: Node
    data: dict = field(default_factory=dict)
    optimizer: object = None
    path: Path | None = None


def load(path) -> ModelSpec:
    """Import a model file and call its build()."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix != ".py":
        raise ModelFileError(f"{path}: a model file is a Python file (.py) with build()")
    spec = importlib.util.spec_from_file_location(f"graphc_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, "build", None)
    if not callable(build):
        raise ModelFileError(f"{path}: defines no build() function returning "
                             "{'graph': ..., 'loss': ...} (see graphc.modelfile)")
    return _spec(build(), path)


def _spec(built, path: Path) -> ModelSpec:
    if isinstance(built, tuple) and len(built) == 2:
        built = {"graph": built[0], "loss": built[1]}
    if not isinstance(built, dict) or not {"graph", "loss"} <= set(built):
        raise ModelFileError(f"{path}: build() must return a dict with 'graph' and 'loss' "
                             f"(or a (graph, loss) tuple), got {type(built).__name__}")
    graph, loss = built["graph"], built["loss"]
    if not isinstance(graph, Graph):
        raise ModelFileError(f"{path}: build()['graph'] is a {type(graph).__name__}, "
                             "not a graphc.Graph")
    loss = graph.node(loss) if isinstance(loss, str) else loss
    if not isinstance(loss, Node) or loss.graph is not graph:
        raise ModelFileError(f"{path}: build()['loss'] must be a node of the graph")
    return ModelSpec(graph, loss, dict(built.get("data") or {}), built.get("optimizer"), path)
