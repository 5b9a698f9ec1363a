"""One lowering: a model graph -> every stage of its compile, each stage timed.

    model -> [autodiff + optimizer updates] -> optimize -> fuse -> memory plan -> source
          -> load (C compile, cache file, import)

`compile`/`function` (graphc.api), `graphc show --stage`, `graphc code`, the tests' pipeline
helpers and the compile-time benchmark all read `lower`, so they print and time the same
kernels. The stages before `load` are pure functions of their inputs (lowering_memo keeps
them); `load` writes the cache folder and imports the module.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import networkx as nx

from graphc.codegen import numpy as numpy_backend, schedule, triton as triton_backend
from graphc.codegen.c import build as c_build, module as c_backend
from graphc.passes import memory
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import fuse
from graphc.passes.modes import for_evaluation
from graphc.passes.pipeline import optimize
from graphc.passes.recompute import rule_for

from . import cache, config, exprs, lowering_memo, triton_runtime
from .errors import GraphError
from .graph import Graph, Node

BACKENDS = ("auto", "numpy", "c", "triton")
# "library": torch.matmul (cuBLAS) / np.matmul, its epilogue the next kernel; "fused": a
# generated Triton matmul with the epilogue inside (2-D float32 matmuls; others, and the
# NumPy backend's code, stay library calls). The default awaits a GPU measurement.
MATMULS = ("library", "fused")
# how far to go: a picture of the fused graph needs no printer
UNTIL = ("backward", "optimized", "fused", "plan", "source")


@dataclass
class Lowering:
    """Every stage of one compile. `graph` is the model with its gradients and the
    optimizer's updates (a training step) or the model in evaluation form (a function);
    `fused` is the graph the printers print (each node its own kernel when fused=False);
    `generated` is the module source, or for C (translation unit, host(c_file) -> source).
    `timings`: seconds per stage, in pipeline order; `pass_timings`: optimize's passes."""
    title: str
    backend: str
    model: Graph
    graph: Graph
    outputs: list
    updates: dict
    optimized: Graph | None = None
    fused: Graph | None = None
    plan: memory.MemoryPlan | None = None
    generated: Any = None
    timings: dict = field(default_factory=dict)
    pass_timings: dict = field(default_factory=dict)

    @property
    def kernels(self) -> list:
        """The kernel records every printer launches, in run order."""
        if self.fused is None:
            raise ValueError(f"{self.title}: lowered only to the backward graph: no kernels")
        return schedule.kernels_of(self.fused, self.outputs, self.updates)

    def stage(self, name: str) -> Graph:
        """The graph after a stage: forward, backward, optimized or fused."""
        graphs = {"forward": self.model, "backward": self.graph, "optimized": self.optimized,
                  "fused": self.fused}
        if name not in graphs:
            raise ValueError(f"unknown stage {name!r}; choose one of {tuple(graphs)}")
        graph = graphs[name]
        if graph is None:
            raise ValueError(f"{self.title}: not lowered as far as the {name} stage")
        return graph


def names(graph: Graph, nodes) -> list:
    """Node names of handles or names, each checked to belong to `graph`."""
    out = []
    for n in nodes:
        if isinstance(n, Node):
            if n.graph is not graph:
                raise GraphError(f"node {n.name!r} belongs to graph {n.graph.name!r}, "
                                 f"not {graph.name!r}")
            out.append(n.name)
        else:
            graph.attrs(n)
            out.append(n)
    return out


def resolve_backend(backend: str, stacklevel: int = 3) -> str:
    """'auto' is Triton when a CUDA GPU is there, else C when a C compiler works here, else
    NumPy (with a warning that says why not C)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    if triton_runtime.available():
        return "triton"
    ok, why = c_build.available()
    if not ok:
        warnings.warn(f"backend='auto' runs NumPy: the C backend is unavailable ({why})",
                      RuntimeWarning, stacklevel=stacklevel)
    return "c" if ok else "numpy"


def check_matmul(matmul: str) -> bool:
    """Whether matmul epilogues join their matmul's kernel."""
    if matmul not in MATMULS:
        raise ValueError(f"unknown matmul={matmul!r}; choose one of {MATMULS}")
    return matmul == "fused"


def _matmul_precision() -> str:
    """tl.dot's precision for float32 in generated matmuls: TF32 only where torch's own
    matmuls may use it, so both paths round alike. torch.backends.cuda.matmul.fp32_precision
    says "tf32" however TF32 was turned on (reading the legacy allow_tf32 raises once the
    new API has been used); torches without it have only allow_tf32."""
    import torch
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    if precision is None:
        return "tf32" if matmul.allow_tf32 else "ieee"
    return "tf32" if precision == "tf32" else "ieee"


def _count_steps(g: Graph, keep: list, updates: dict) -> None:
    """Where a kept value reads rand, the step's last update adds 1 to the step counter,
    so the next call draws new numbers."""
    for n in g.nodes_of("param"):
        if g.attrs(n).get("step_counter") and n not in updates and \
                any(n in nx.ancestors(g.nx, k) for k in keep):
            updates[n] = g.map(exprs.arg(0) + 1, [n], name=g.fresh(f"{n}_next")).name


def _timed(timings: dict, stage: str, start: float) -> float:
    now = time.perf_counter()
    timings[stage] = timings.get(stage, 0.0) + now - start
    return now


def lower(graph: Graph, outputs: Sequence = (), backend: str = "numpy", *, loss=None,
          optimizer=None, updates: dict | None = None, fused: bool = True,
          matmul: str = "library", training: bool = False, until: str = "source",
          triton_interpret: bool | None = None, recompute: str | None = None) -> Lowering:
    """Lower `graph` for `backend` ("auto" resolved here) as far as `until` (UNTIL).

    With `loss`: a training step. Gradients of `loss` w.r.t. every trainable param and the
    `optimizer`'s updates (default SGD) join the graph; `outputs` are other nodes the step
    computes. Without: the evaluation of `outputs`, training-only nodes (dropout) the
    identity unless training=True, and `updates` {param: node} written back each call.
    fused=False: one kernel per node; matmul="fused": matmul epilogues inside generated
    Triton matmuls; triton_interpret: print Triton for its interpreter (True) or a GPU
    (False) whatever runs here (default: the interpreter where no CUDA GPU is);
    recompute: the recompute rule fusion weighs (passes/recompute.py RULES; default the
    backend's own, "count_ops" the backend-blind one, to compare them)."""
    backend = resolve_backend(backend)
    check_matmul(matmul)
    rule_for(recompute or backend)   # an unknown rule fails here, not after autodiff
    if until not in UNTIL:
        raise ValueError(f"unknown until={until!r}; choose one of {UNTIL}")
    timings: dict = {}
    start = time.perf_counter()
    if loss is None:
        kept = names(graph, outputs)
        model = graph if training else for_evaluation(graph)
        g, updates = model.copy(), dict(updates or {})
        title = f"{graph.name}: {', '.join(kept)}"
    else:
        from .optim import SGD
        loss_name, = names(graph, [loss])
        kept = [loss_name] + [n for n in names(graph, outputs) if n != loss_name]
        params = graph.params(trainable_only=True)
        if not params:
            raise GraphError(f"graph {graph.name!r} has no trainable params to train")
        model = graph
        g, grads = autodiff(graph, loss_name, params)
        start = _timed(timings, "autodiff", start)
        g, updates = (optimizer or SGD()).build(g, params, grads)
        title = f"{graph.name}: training step"
    _count_steps(g, kept, updates)
    _timed(timings, "updates" if loss is not None else "model", start)
    low = Lowering(title, backend, model, g, kept, updates, timings=timings)
    if until != "backward":
        _lower_graph(low, fused, matmul, until, triton_interpret, recompute or backend)
    return low


def _options(backend: str, interpret: bool | None) -> tuple:
    """(interpret, tl.dot precision) for Triton; set before anything imports triton."""
    if backend != "triton":
        return ()
    if interpret is None:
        interpret = config.triton_interpret()
    return interpret, "ieee" if interpret else _matmul_precision()


def _lower_graph(low: Lowering, fused: bool, matmul: str, until: str,
                 interpret: bool | None, recompute: str) -> None:
    """optimize -> fuse -> plan -> print, from the memo where this process has lowered the
    same graph with the same options before."""
    start = time.perf_counter()
    options = _options(low.backend, interpret) if until == "source" else ()
    # the stages are part of the key: a test that patches one gets its own lowering
    stages = (optimize, fuse, memory.plan, numpy_backend.generate, c_backend.generate,
              triton_backend.generate)
    memo_key = lowering_memo.key(low.graph, low.outputs, low.updates, low.title, low.backend,
                                 fused, matmul, recompute, options, stages) \
        if until == "source" else None
    reused = lowering_memo.get(memo_key)
    if reused is not None:   # the key's cost is the whole lowering
        low.optimized, low.fused, low.plan, low.generated = reused
        _timed(low.timings, "memo", start)
        return
    keep = low.outputs + list(low.updates.values())
    low.optimized = optimize(low.graph, keep=keep, timings=low.pass_timings)
    start = _timed(low.timings, "optimize", start)
    if until == "optimized":
        return
    # every backend prints from the one fused graph (merged maps, kernel groups); unfused,
    # every node is its own kernel (how the fuzzer checks fusion against no fusion). The C
    # backend's matmuls are library calls, their epilogues the next kernel
    low.fused = low.optimized
    if fused:
        epilogue = check_matmul(matmul) and low.backend == "triton"
        low.fused = fuse(low.optimized, keep, matmul_epilogue=epilogue, backend=recompute)
        start = _timed(low.timings, "fuse", start)
    if until == "fused":
        return
    low.plan = memory.plan(low.fused, low.outputs, low.updates)
    start = _timed(low.timings, "plan", start)
    if until == "plan":
        return
    low.generated = _generate(low, options)
    _timed(low.timings, "generate", start)
    lowering_memo.put(memo_key, low.optimized, low.fused, low.plan, low.generated)


def _generate(low: Lowering, options: tuple):
    g, outputs, updates, plan = low.fused, low.outputs, low.updates, low.plan
    if low.backend == "triton":
        interpret, precision = options
        return triton_backend.generate(g, outputs, updates, plan, title=low.title,
                                       interpret=interpret, matmul_precision=precision)
    if low.backend == "c":
        return c_backend.generate(g, outputs, updates, plan, title=low.title)
    return numpy_backend.generate(g, outputs, updates, plan, title=low.title)


@dataclass
class Loaded:
    """A lowering made runnable: the imported module, its file, the parameters' and
    constants' starting values, and for C the translation unit beside its library."""
    module: Any
    path: Path
    params: dict
    consts: dict
    c_path: Path | None = None


def load(low: Lowering, threads: int | None = None) -> Loaded:
    """Write the source to the cache folder (for C: compile the translation unit first,
    once per source), import it, and take the parameters' values; the times join
    low.timings as cc, store and import."""
    g = low.fused
    if low.generated is None or g is None:
        raise ValueError(f"{low.title}: lowered only as far as {list(low.timings)[-1]}")
    start = time.perf_counter()
    source, c_path = low.generated, None
    if low.backend == "c":
        c_source, host = low.generated
        so_path = c_build.build(c_source, low.model.name)   # the host module loads it
        c_path = so_path.with_suffix(".c")
        source = host(c_path.name)
        start = _timed(low.timings, "cc", start)
    key = cache.graph_key(source)
    path = cache.store(low.model.name, key, source)
    start = _timed(low.timings, "store", start)
    module = cache.load_module(path, key)
    if c_path is not None:
        blas = any(kind == "matmul" for _, kind, _ in module.KERNELS)
        module.THREADS = threads or config.c_threads(library_matmuls=blas)   # Compiled's
        module.C_PATH = c_path
    params = {n: g.attrs(n)["value"].copy() for n in g.params()}
    consts = {n: g.attrs(n)["value"] for n in g.nodes_of("const")}
    _timed(low.timings, "import", start)
    return Loaded(module, path, params, consts, c_path)
