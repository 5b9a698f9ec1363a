"""The Triton pipeline as graphc.api runs it with backend="triton" (optimize, fuse, plan,
generate, load from the cache folder, wrap), for the Triton tests. Importing this module
puts Triton in interpreter mode when there is no GPU, before any generated module loads."""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import cache, config
from graphc.codegen import triton as triton_backend
from graphc.passes import memory
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize
from graphc.triton_runtime import TritonFunction, TritonTrainStep

INTERPRET = config.triton_interpret(warn=False)


def build(graph, outputs: list, updates: dict | None = None, fused: bool = True):
    """optimize -> fuse -> memory plan -> Triton source -> module from the cache folder."""
    updates = updates or {}
    keep = outputs + list(updates.values())
    g = optimize(graph, keep)
    if fused:
        g = fuse(g, keep)
    plan = memory.plan(g, outputs, updates)
    source = triton_backend.generate(g, outputs, updates, plan, title=graph.name,
                                     interpret=INTERPRET)
    key = cache.graph_key(source)
    path = cache.store(graph.name, key, source)
    params = {n: g.attrs(n)["value"].copy() for n in g.params()}
    consts = {n: g.attrs(n)["value"] for n in g.nodes_of("const")}
    return cache.load_module(path, key), g, path, params, consts


def triton_function(graph, outputs, fused: bool = True) -> TritonFunction:
    """A compiled evaluation of `outputs`, running Triton kernels."""
    names = [o.name if isinstance(o, gc.Node) else o for o in outputs]
    declared = [(n, graph.attrs(n)) for n in graph.nodes_of("input")]
    return TritonFunction(*build(graph, names, fused=fused), declared=declared)


def triton_step(graph, loss, optimizer, fused: bool = True) -> TritonTrainStep:
    """A compiled training step of `loss`, running Triton kernels."""
    params = graph.params(trainable_only=True)
    g, grads = autodiff(graph, loss.name, params)
    updates = optimizer.build(g, params, grads)
    declared = [(n, graph.attrs(n)) for n in graph.nodes_of("input")]
    return TritonTrainStep(*build(g, [loss.name], updates, fused=fused), loss=loss.name,
                           model=graph, declared=declared)


def kinds(f) -> list:
    """The kinds of a compiled function's kernels, in launch order."""
    return [k.kind for k in f.kernels]


def digits_batch(n: int, seed: int = 0) -> dict:
    """A batch shaped like scikit-learn's digits: x (n, 64) in [0, 1), labels 0..9."""
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 64)).astype(np.float32), "y": rng.integers(0, 10, n)}
