"""The user-facing pipeline: gradients, compiled functions and training steps.

    graph -> autodiff -> optimizer updates -> optimize (simplify, cse, constfold, dce)
          -> fuse -> memory plan -> generated module (numpy, c or triton, cached file)
          -> Function / TrainStep
"""
from __future__ import annotations

import time
import warnings
from typing import Callable, Sequence

import networkx as nx

from graphc.codegen import numpy as numpy_backend, triton as triton_backend
from graphc.codegen.c import build as c_build, module as c_backend
from graphc.passes import memory
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import fuse
from graphc.passes.modes import for_evaluation
from graphc.passes.pipeline import optimize

from . import cache, config, exprs, lowering_memo, triton_runtime
from .errors import CCompileError, CCompilerMissing, GraphError
from .graph import Graph, Node
from .optim import SGD
from .runtime import Function, TrainStep

BACKENDS = ("auto", "numpy", "c", "triton")
# "library": torch.matmul (cuBLAS) / np.matmul, its epilogue the next kernel; "fused": a
# generated Triton matmul with the epilogue inside (2-D float32 matmuls; others, and the
# NumPy backend's code, stay library calls). The default awaits a GPU measurement.
MATMULS = ("library", "fused")


def _names(graph: Graph, nodes) -> list:
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


def grad(loss: Node, wrt: Sequence) -> list:
    """Gradient nodes d loss / d w for each w, appended to loss's graph (reverse mode)."""
    g = loss.graph
    new, names = autodiff(g, loss.name, _names(g, wrt))
    g.nx, g._count, g._serial, g._topo = new.nx, new._count, new._serial, None
    return [g.node(n) for n in names]


def _declared(graph: Graph) -> list:
    """(name, attrs) of every input of the model, read by the outputs or not."""
    return [(n, graph.attrs(n)) for n in graph.nodes_of("input")]


def _backend(backend: str) -> str:
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
                      RuntimeWarning, stacklevel=3)
    return "c" if ok else "numpy"


def _matmul(matmul: str) -> bool:
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


def _lower(graph: Graph, outputs: list, updates: dict, title: str, backend: str,
           fused: bool, matmul: str, triton_options: tuple, timings: dict) -> tuple:
    """The pure part of a build: (optimized graph, generated text), where the text is the
    module source, or for C (translation unit, host(c_file_name) -> module source)."""
    t0 = time.perf_counter()
    keep = outputs + list(updates.values())
    # every backend prints from the one fused graph (merged maps, kernel groups); unfused,
    # every node is its own kernel (how the fuzzer checks fusion against no fusion). The C
    # backend's matmuls are library calls, their epilogues the next kernel
    optimized = optimize(graph, keep=keep)
    if fused:
        epilogue = _matmul(matmul) and backend == "triton"
        optimized = fuse(optimized, keep, matmul_epilogue=epilogue)
    t1 = time.perf_counter()
    plan = memory.plan(optimized, outputs, updates)
    generated: object
    if backend == "triton":
        interpret, precision = triton_options
        generated = triton_backend.generate(optimized, outputs, updates, plan, title=title,
                                            interpret=interpret, matmul_precision=precision)
    elif backend == "c":
        generated = c_backend.generate(optimized, outputs, updates, plan, title=title)
    else:
        generated = numpy_backend.generate(optimized, outputs, updates, plan, title=title)
    timings.update(optimize=t1 - t0, codegen=time.perf_counter() - t1)
    return optimized, generated


def _c_module(graph: Graph, generated: tuple, threads: int | None) -> tuple:
    """(host module source, bind(module)) of the C backend: the translation unit compiled
    (once, cached) here; the host module loads the library beside it when imported."""
    c_source, host = generated
    so_path = c_build.build(c_source, graph.name)   # the host module loads it on import

    def bind(module):
        blas = any(kind == "matmul" for _, kind, _ in module.KERNELS)
        module.THREADS = threads or config.c_threads(library_matmuls=blas)   # Compiled's
        module.C_PATH = so_path.with_suffix(".c")
    return host(so_path.with_suffix(".c").name), bind


def _build(graph: Graph, outputs: list, updates: dict, title: str, timings: dict,
           backend: str = "numpy", fused: bool = True, matmul: str = "library",
           threads: int | None = None):
    t0 = time.perf_counter()
    triton_options: tuple = ()
    if backend == "triton":
        interpret = config.triton_interpret()   # sets TRITON_INTERPRET before the import
        triton_options = (interpret, "ieee" if interpret else _matmul_precision())
    # the stages are part of the key: a test that patches one gets its own lowering
    stages = (optimize, fuse, memory.plan, numpy_backend.generate, c_backend.generate,
              triton_backend.generate)
    memo_key = lowering_memo.key(graph, outputs, updates, title, backend, fused, matmul,
                                 triton_options, stages)
    lowered = lowering_memo.get(memo_key)
    if lowered is None:
        lowered = _lower(graph, outputs, updates, title, backend, fused, matmul,
                         triton_options, timings)
        lowering_memo.put(memo_key, *lowered)
    else:   # reused: the key's cost is the whole lowering
        timings.update(optimize=time.perf_counter() - t0, codegen=0.0)
    optimized, generated = lowered
    t1 = time.perf_counter()
    source, bind = (_c_module(graph, generated, threads) if backend == "c"
                    else (generated, None))
    key = cache.graph_key(source)
    path = cache.store(graph.name, key, source)
    module = cache.load_module(path, key)
    if bind is not None:
        bind(module)
    timings["codegen"] += time.perf_counter() - t1   # C compile, cache file, import
    params = {n: optimized.attrs(n)["value"].copy() for n in optimized.params()}
    consts = {n: optimized.attrs(n)["value"] for n in optimized.nodes_of("const")}
    return module, optimized, path, params, consts


def _build_or_fall_back(requested: str, backend: str, build: Callable[[str], tuple]) -> tuple:
    """build(backend); with backend='auto' resolved to C, a graph the C printer cannot
    print yet or a failed compile warns and builds for NumPy instead (the result is the
    same; the warning says why). Returns (backend that runs, build's results)."""
    try:
        return backend, build(backend)
    except (NotImplementedError, CCompileError, CCompilerMissing) as e:
        if requested != "auto" or backend != "c":
            raise
        warnings.warn(f"backend='auto' runs NumPy for this graph: {e}", RuntimeWarning,
                      stacklevel=3)
        return "numpy", build("numpy")


def function(graph: Graph, outputs: Sequence, backend: str = "auto",
             check_finite: bool = False, training: bool = False, *,
             fuse: bool = True, matmul: str = "library", threads: int | None = None) -> Function:
    """Compile the evaluation of `outputs` (handles or node names) into a callable. In
    evaluation (the default) training-only nodes such as dropout are the identity;
    fuse=False skips the fusion pass (one kernel per node), for comparing the two;
    matmul="fused" puts matmul epilogues inside generated Triton matmuls (MATMULS);
    threads: the C backend's threads (default GRAPHC_NUM_THREADS, else every core)."""
    requested, backend = backend, _backend(backend)
    _matmul(matmul)
    names = _names(graph, outputs)
    model = graph.copy() if training else for_evaluation(graph).copy()
    updates: dict = {}
    _count_steps(model, names, updates)
    timings: dict = {}
    title = f"{graph.name}: {', '.join(names)}"
    backend, (module, g, path, params, consts) = _build_or_fall_back(
        requested, backend, lambda b: _build(model, names, updates, title, timings, b, fuse,
                                             matmul, threads))
    cls = triton_runtime.TritonFunction if backend == "triton" else Function
    f = cls(module, g, path, params, consts, check_finite, declared=_declared(graph))
    f.backend = backend
    f.timings = timings
    _c_parts(f)
    return f


def compile(graph: Graph, loss: Node | str, optimizer=None, backend: str = "auto",  # noqa: A001
            check_finite: bool = False, outputs: Sequence = (),
            matmul: str = "library", threads: int | None = None) -> TrainStep:
    """Compile one training step: forward, gradients of `loss` w.r.t. every trainable
    param, and the optimizer's in-place update, as one generated module. `outputs`: other
    nodes computed by the same step (a final hidden state to carry to the next window),
    read after each call from `step.outputs`; `matmul`, `threads`: as for `function`."""
    requested, backend = backend, _backend(backend)
    _matmul(matmul)
    optimizer = optimizer or SGD()
    loss_name, = _names(graph, [loss])
    fetch = [n for n in _names(graph, outputs) if n != loss_name]
    params = graph.params(trainable_only=True)
    if not params:
        raise GraphError(f"graph {graph.name!r} has no trainable params to train")
    t0 = time.perf_counter()
    g, grads = autodiff(graph, loss_name, params)
    updates = optimizer.build(g, params, grads)
    _count_steps(g, [loss_name, *fetch], updates)
    timings = {"autodiff": time.perf_counter() - t0}
    backend, (module, opt_g, path, values, consts) = _build_or_fall_back(
        requested, backend, lambda b: _build(g, [loss_name, *fetch], updates,
                                             f"{graph.name}: training step", timings, b,
                                             matmul=matmul, threads=threads))
    cls = triton_runtime.TritonTrainStep if backend == "triton" else TrainStep
    step = cls(module, opt_g, path, values, consts, check_finite, loss=loss_name,
               model=graph, declared=_declared(graph), fetch=fetch)
    step.backend, step.threads = backend, threads
    step.timings = timings
    _c_parts(step)
    return step


def _c_parts(compiled) -> None:
    """A C-backend Function or TrainStep's translation unit and its kernels (name, kind,
    member nodes, C function)."""
    path = getattr(compiled.module, "C_PATH", None)
    if path is not None:
        compiled.c_path = path
        compiled.kernels = triton_runtime.kernel_infos(compiled.module, path.read_text(), "//")


def bound_function(step: TrainStep, outputs: Sequence) -> Function:
    """A Function of the step's model graph that reads the step's live parameters."""
    f = function(step.model, outputs, backend=getattr(step, "backend", "numpy"),
                 check_finite=step.check_finite, threads=getattr(step, "threads", None))
    f.params = step.params
    return f


def show_grad(graph: Graph, loss: Node | str, wrt: Sequence | None = None):
    """Each parameter's gradient as math: the backward nodes, named d<loss>/d<node>."""
    from .show import GradientReport
    loss_name, = _names(graph, [loss])
    wrt_names = _names(graph, wrt) if wrt is not None else graph.params(trainable_only=True)
    g, grads = autodiff(graph, loss_name, wrt_names)
    return GradientReport(g, loss_name, dict(zip(wrt_names, grads)))
