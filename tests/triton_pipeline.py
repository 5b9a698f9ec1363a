"""The Triton pipeline as graphc.api runs it with backend="triton" (graphc.lowering's lower
and load, then the runtime's wrappers), for the Triton tests. Importing this module
puts Triton in interpreter mode when there is no GPU, before any generated module loads."""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import config, lowering, lowering_memo
from graphc.triton_runtime import TritonFunction, TritonTrainStep

INTERPRET = config.triton_interpret(warn=False)


def build(graph, outputs: list, updates: dict | None = None, fused: bool = True):
    """graphc.lowering for Triton, loaded: (module, fused graph, path, params, consts)."""
    with lowering_memo.off():   # the Triton tests patch printers' constants
        low = lowering.lower(graph, outputs, "triton", updates=updates, fused=fused,
                             training=True)
    loaded = lowering.load(low)
    return loaded.module, low.fused, loaded.path, loaded.params, loaded.consts


def triton_function(graph, outputs, fused: bool = True) -> TritonFunction:
    """A compiled evaluation of `outputs`, running Triton kernels."""
    names = [o.name if isinstance(o, gc.Node) else o for o in outputs]
    declared = [(n, graph.attrs(n)) for n in graph.nodes_of("input")]
    return TritonFunction(*build(graph, names, fused=fused), declared=declared)


def triton_step(graph, loss, optimizer, fused: bool = True) -> TritonTrainStep:
    """A compiled training step of `loss`, running Triton kernels."""
    with lowering_memo.off():
        low = lowering.lower(graph, (), "triton", loss=loss, optimizer=optimizer, fused=fused)
    loaded = lowering.load(low)
    declared = [(n, graph.attrs(n)) for n in graph.nodes_of("input")]
    step = TritonTrainStep(loaded.module, low.fused, loaded.path, loaded.params, loaded.consts,
                           loss=loss.name, model=graph, declared=declared)
    step.compile_function = gc.api.bound_function
    return step


def kinds(f) -> list:
    """The kinds of a compiled function's kernels, in launch order."""
    return [k.kind for k in f.kernels]


def digits_batch(n: int, seed: int = 0) -> dict:
    """A batch shaped like scikit-learn's digits: x (n, 64) in [0, 1), labels 0..9."""
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 64)).astype(np.float32), "y": rng.integers(0, 10, n)}
