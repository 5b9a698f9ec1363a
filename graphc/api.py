"""The user-facing pipeline: gradients, compiled functions and training steps.

    graph -> lowering.lower (autodiff, optimizer updates, optimize, fuse, memory plan,
          generated source) -> lowering.load (C compile, cached file, import)
          -> Function / TrainStep
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

from graphc.passes.autodiff import autodiff

from . import lowering, triton_runtime
from .errors import CCompileError, CCompilerMissing
from .graph import Graph, Node
from .lowering import BACKENDS, MATMULS, Lowering, lower  # noqa: F401 - the API's names
from .runtime import Function, TrainStep


def grad(loss: Node, wrt: Sequence) -> list:
    """Gradient nodes d loss / d w for each w, appended to loss's graph (reverse mode)."""
    g = loss.graph
    new, names = autodiff(g, loss.name, lowering.names(g, wrt))
    g.grow_into(new)
    return [g.node(n) for n in names]


def _declared(graph: Graph) -> list:
    """(name, attrs) of every input of the model, read by the outputs or not."""
    return [(n, graph.attrs(n)) for n in graph.nodes_of("input")]


def _lower_or_fall_back(requested: str, lower_for: Callable[[str], Lowering],
                        threads: int | None) -> tuple[Lowering, lowering.Loaded]:
    """lower_for(backend) loaded; with backend='auto' resolved to C, a graph the C printer
    cannot print yet or a failed compile warns and builds for NumPy instead (the result is
    the same; the warning says why)."""
    backend = lowering.resolve_backend(requested, stacklevel=4)
    try:
        low = lower_for(backend)
        return low, lowering.load(low, threads)
    except (NotImplementedError, CCompileError, CCompilerMissing) as e:
        if requested != "auto" or backend != "c":
            raise
        warnings.warn(f"backend='auto' runs NumPy for this graph: {e}", RuntimeWarning,
                      stacklevel=3)
        low = lower_for("numpy")
        return low, lowering.load(low, threads)


def _finish(compiled, low: Lowering, loaded: lowering.Loaded, threads: int | None):
    compiled.backend, compiled.threads = low.backend, threads
    compiled.timings, compiled.lowering = low.timings, low
    if loaded.c_path is not None:   # the translation unit and its kernels
        compiled.c_path = loaded.c_path
        compiled.kernels = triton_runtime.kernel_infos(loaded.module, loaded.c_path.read_text(),
                                                       "//")
    return compiled


def function(graph: Graph, outputs: Sequence, backend: str = "auto",
             check_finite: bool = False, training: bool = False, *,
             fuse: bool = True, matmul: str = "library", threads: int | None = None) -> Function:
    """Compile the evaluation of `outputs` (handles or node names) into a callable. In
    evaluation (the default) training-only nodes such as dropout are the identity;
    fuse=False skips the fusion pass (one kernel per node), for comparing the two;
    matmul="fused" puts matmul epilogues inside generated Triton matmuls (MATMULS);
    threads: the C backend's threads (default GRAPHC_NUM_THREADS, else every core)."""
    low, loaded = _lower_or_fall_back(backend, lambda b: lower(
        graph, outputs, b, fused=fuse, matmul=matmul, training=training), threads)
    cls = triton_runtime.TritonFunction if low.backend == "triton" else Function
    f = cls(loaded.module, low.fused, loaded.path, loaded.params, loaded.consts, check_finite,
            declared=_declared(graph))
    return _finish(f, low, loaded, threads)


def compile(graph: Graph, loss: Node | str, optimizer=None, backend: str = "auto",  # noqa: A001
            check_finite: bool = False, outputs: Sequence = (),
            matmul: str = "library", threads: int | None = None) -> TrainStep:
    """Compile one training step: forward, gradients of `loss` w.r.t. every trainable
    param, and the optimizer's in-place update, as one generated module. `outputs`: other
    nodes computed by the same step (a final hidden state to carry to the next window),
    read after each call from `step.outputs`; `matmul`, `threads`: as for `function`."""
    low, loaded = _lower_or_fall_back(backend, lambda b: lower(
        graph, outputs, b, loss=loss, optimizer=optimizer, matmul=matmul), threads)
    cls = triton_runtime.TritonTrainStep if low.backend == "triton" else TrainStep
    step = cls(loaded.module, low.fused, loaded.path, loaded.params, loaded.consts,
               check_finite, loss=low.outputs[0], model=graph, declared=_declared(graph),
               fetch=low.outputs[1:])
    step.compile_function = bound_function
    return _finish(step, low, loaded, threads)


def bound_function(step: TrainStep, outputs: Sequence) -> Function:
    """A Function of the step's model graph that reads the step's live parameters."""
    f = function(step.model, outputs, backend=getattr(step, "backend", "numpy"),
                 check_finite=step.check_finite, threads=getattr(step, "threads", None))
    f.params = step.params
    return f


def show_grad(graph: Graph, loss: Node | str, wrt: Sequence | None = None):
    """Each parameter's gradient as math: the backward nodes, named d<loss>/d<node>."""
    from .show import GradientReport
    loss_name, = lowering.names(graph, [loss])
    wrt_names = lowering.names(graph, wrt) if wrt is not None else graph.params(trainable_only=True)
    g, grads = autodiff(graph, loss_name, wrt_names)
    return GradientReport(g, loss_name, dict(zip(wrt_names, grads)))
