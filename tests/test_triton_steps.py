"""Whole training steps through the Triton backend (interpreter on the CPU, compiled on a
GPU), parameters as NumPy, in-place updates, the GPU flavour of the source compiled to PTX
without a GPU, and random graphs from test_property's grammar against PyTorch."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings, strategies as st

import graphc as gc
from graphc import api, cache, exprs
from graphc.codegen import triton as triton_backend
from graphc.passes import memory
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize
from graphc.triton_runtime import TritonFunction, TritonTrainStep
from tests.test_property import check_against_torch, programs
from tests.triton_pipeline import INTERPRET, build, digits_batch, triton_function, triton_step

N = gc.sym("N")
R, C = 37, 29


# ---- whole training steps -----------------------------------------------------------------

@pytest.mark.parametrize("momentum,fused", [(0.0, True), (0.9, True), (0.0, False)])
def test_digits_mlp_steps_match_numpy(momentum, fused):
    """Three SGD steps of examples/digits_mlp.py's model: same losses and parameters as
    the NumPy backend; one module serves two batch sizes (symbolic N)."""
    from examples.digits_mlp import build_model
    g, _, loss = build_model(hidden=32)
    opt = gc.SGD(lr=0.1, momentum=momentum)
    ref = gc.compile(g, loss, optimizer=opt, backend="numpy")
    step = triton_step(g, loss, opt, fused=fused)
    for i, n in enumerate([37, 37, 20]):
        feeds = digits_batch(n, seed=i)
        assert step(**feeds) == pytest.approx(ref(**feeds), rel=1e-5)
    for name in ref.params:
        np.testing.assert_allclose(step[name], ref[name], rtol=1e-5, atol=1e-6)
    assert len(step._buffers) == 2


@pytest.mark.skipif("triton" not in api.BACKENDS, reason="graphc.api lacks backend='triton'")
def test_api_backend_triton():
    """gc.compile / gc.function with backend="triton": the step, its evaluate() and a
    function of the model reading the step's live parameters."""
    from examples.digits_mlp import build_model
    g, logits, loss = build_model(hidden=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the interpreter's warning
        step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend="triton")
        predict = step.function([logits])
        f = gc.function(g, [logits], backend="triton")
    ref = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend="numpy")
    assert isinstance(step, TritonTrainStep) and isinstance(f, TritonFunction)
    feeds = digits_batch(13)
    assert step(**feeds) == pytest.approx(ref(**feeds), rel=1e-5)
    assert step.evaluate(**feeds) == pytest.approx(ref.evaluate(**feeds), rel=1e-5)
    want = ref.function([logits])(x=feeds["x"])[0]
    np.testing.assert_allclose(predict(x=feeds["x"])[0], want, rtol=1e-5, atol=1e-6)


def test_updates_are_written_in_place():
    from examples.digits_mlp import build_model
    g, _, loss = build_model(hidden=16)
    step = triton_step(g, loss, gc.SGD(lr=0.1))
    for p in ("l1_W", "l1_b", "l2_W", "l2_b"):
        assert re.search(rf"\b{p}_new = {p}\b.*written in place", step.source), p
    assert ".copy_(" not in step.source
    before = step["l1_W"].copy()
    view = step.params["l1_W"]
    step(**digits_batch(9))
    assert step.params["l1_W"] is view and not np.array_equal(step["l1_W"], before)


def test_update_reading_its_transposed_param_is_copied_back():
    """w <- w - 0.1 * w.T may not overwrite w while other programs still read it
    transposed (40 x 40 > BLOCK: two programs); leaves and params can be outputs."""
    g = gc.Graph("copy_back", dtype="float64")
    x = g.input("x", (N, 40))
    w0 = np.arange(1600.0).reshape(40, 40) / 1600
    w = g.param("w", (40, 40), init=w0)
    y = gc.sum(gc.tanh(x @ w))
    g.map(exprs.arg(0) - 0.1 * exprs.arg(1), [w, gc.transpose(w)], name="w_new")
    f = TritonFunction(*build(g, [y.name, "x", "w"], {"w": "w_new"}))
    assert "w.copy_(w_new)" in f.source
    X = np.ones((3, 40))
    got_y, got_x, got_w = f(x=X)
    np.testing.assert_allclose(got_y, np.tanh(X @ w0).sum(), rtol=1e-12)
    np.testing.assert_array_equal(got_x, X)
    np.testing.assert_allclose(f["w"], w0 - 0.1 * w0.T, rtol=1e-12)
    np.testing.assert_allclose(got_w, f["w"])


def test_parameters_as_numpy_and_save_load(tmp_path):
    from examples.digits_mlp import build_model
    g, _, loss = build_model(hidden=16)
    step = triton_step(g, loss, gc.SGD(lr=0.1))
    step["l2_b"] = np.arange(10)
    assert step["l2_b"].dtype == np.float32 and step["l2_b"][3] == 3.0
    step.save(tmp_path / "p.npz")
    step["l2_b"] = np.zeros(10)
    step.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(step["l2_b"], np.arange(10))
    with pytest.raises(gc.FeedError):
        step["l2_b"] = np.zeros(3)
    assert "triton" in repr(step)


# ---- the GPU source, compiled to PTX without a GPU ----------------------------------------

class Recorder:
    """Stands in for a kernel: records each launch's arguments and runs nothing (argument
    types and sizes do not depend on the values computed)."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


def signature(names, args, kwargs) -> tuple:
    """Triton's signature and constexprs for a launch, as the JIT would specialize it
    (ints equal to 1 become constants)."""
    ptr = {torch.float32: "*fp32", torch.float64: "*fp64", torch.int64: "*i64"}
    sig, consts, values = {}, [], iter(args)
    for i, name in enumerate(names):
        value = kwargs[name] if name in kwargs else next(values)
        if isinstance(value, torch.Tensor):
            sig[name] = ptr[value.dtype]
        elif name in kwargs or value == 1:
            sig[name] = "constexpr"
            consts.append([i, value])
        else:
            sig[name] = "i32" if abs(value) < 2**31 else "i64"
    return sig, consts


PTX_SCRIPT = """
import importlib.util, json, sys
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, compile
spec = importlib.util.spec_from_file_location("gpu_module", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for name, variants in json.loads(sys.argv[2]).items():
    kernel = getattr(module, name)
    kernel = getattr(kernel, "fn", kernel) if hasattr(kernel, "configs") else kernel
    for sig, consts, options in variants:   # an autotuned kernel: one per config
        src = ASTSource(kernel, sig, constexprs={(i,): v for i, v in consts})
        done = compile(src, target=GPUTarget("cuda", 90, 32), options=options)
        assert done.asm["ptx"]
        # an H100's shared memory per block: a config over it could not launch
        assert done.metadata.shared <= 232448, (name, options, done.metadata.shared)
        print("compiled", name, options, done.metadata.shared)
"""


def compile_gpu_kernels(g, outputs, updates, run, monkeypatch) -> int:
    """Run the GPU module (libdevice math) of fused graph `g` on CPU tensors with its
    kernels replaced by recorders, then compile each kernel for sm_90 with the recorded
    signature, in a process where Triton is not in interpreter mode; the first autotuned
    matmul in every config, later ones in their first; a split reduction as one chunk and
    as several, and its finish kernel. Returns the number of compiles."""
    import inspect
    import json
    import os
    import subprocess
    import sys
    plan = memory.plan(g, outputs, updates)
    source = triton_backend.generate(g, outputs, updates, plan, interpret=False)
    path = cache.store(g.name, cache.graph_key(source), source)
    gpu = cache.load_module(path, cache.graph_key(source))
    # library matmuls are torch calls, not kernels; an autotuned matmul is compiled per config
    kernels = {name: getattr(gpu, name) for name, _, _ in gpu.KERNELS if hasattr(gpu, name)}
    configs = {name: [(c.kwargs, {"num_warps": c.num_warps, "num_stages": c.num_stages})
                      for c in k.configs] if hasattr(k, "configs") else [({}, {})]
               for name, k in kernels.items()}
    tuned = [name for name, k in kernels.items() if hasattr(k, "configs")]
    for name in tuned[1:]:   # the configs are the template's: each is compiled once
        configs[name] = configs[name][:1]
    jitted = {name: k.fn if hasattr(k, "configs") else k for name, k in kernels.items()}
    names = {name: list(inspect.signature(k.fn).parameters) for name, k in jitted.items()}
    recorders = {name: Recorder() for name in kernels}
    for name, rec in recorders.items():
        monkeypatch.setattr(gpu, name, rec)
    monkeypatch.setattr(gpu, "DEVICE", "cpu")
    run(gpu)
    signatures = {name: [[*signature(names[name], rec.calls[0][0], {**rec.calls[0][1], **kw}),
                          options] for kw, options in configs[name]]
                  for name, rec in recorders.items() if rec.calls}
    for name in [n for n in signatures if "n_splits" in names[n]]:
        # a split reduction ran as one chunk here: compile it, and its finish kernel (same
        # parameters), for several chunks too
        args = list(recorders[name].calls[0][0])
        args[names[name].index("n_splits")] = 2
        several = [*signature(names[name], args, recorders[name].calls[0][1]), {}]
        signatures[name].append(several)
        signatures[f"{name}_finish"] = [several]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", PTX_SCRIPT, str(path), json.dumps(signatures)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.count("compiled")


@pytest.mark.skipif(not INTERPRET, reason="on a GPU the compiled kernels run for real")
def test_gpu_source_compiles_to_ptx(monkeypatch):
    """The libdevice/CUDA flavour of a training step's kernels (rows, reduce with an
    epilogue, elementwise) and of a float64 rows kernel with libdevice.tanh, float64
    literals and dims compiles for sm_90."""
    from examples.digits_mlp import build_model
    graph, _, loss = build_model(hidden=16)
    params = graph.params(trainable_only=True)
    g, grads = autodiff(graph, loss.name, params)
    g, updates = gc.SGD(lr=0.1, momentum=0.9).build(g, params, grads)
    keep = [loss.name, *updates.values()]
    fused = fuse(optimize(g, keep), keep)
    feeds = digits_batch(9)
    torch_params = {n: torch.tensor(fused.attrs(n)["value"]) for n in fused.params()}

    def step(module):
        module.run(torch.tensor(feeds["x"]), torch.tensor(feeds["y"]), torch_params, {},
                   module.allocate(9))
    assert compile_gpu_kernels(fused, [loss.name], updates, step, monkeypatch) >= 5

    g64 = gc.Graph("rows64", dtype="float64")
    z = g64.input("z", (N, C))
    y = gc.log_softmax(z) * 0.1 + gc.tanh(z) / N
    dz, = gc.grad(gc.sum(y), [z])
    keep = [y.name, dz.name]
    fused = fuse(optimize(g64, keep), keep)

    consts = {n: torch.tensor(fused.attrs(n)["value"]) for n in fused.nodes_of("const")}

    def rows(module):
        module.run(torch.randn(R, C, dtype=torch.float64), {}, consts, module.allocate(R))
    assert compile_gpu_kernels(fused, keep, {}, rows, monkeypatch) == 1


@pytest.mark.skipif(not INTERPRET, reason="on a GPU the compiled kernels run for real")
def test_gpu_dropout_kernels_compile_to_ptx(monkeypatch):
    """tl.rand keyed by (seed << 32) + step, drawn in the forward kernel and again in the
    backward one, compiles for sm_90."""
    g = gc.Graph("dropout_gpu")
    x = g.input("x", (N, C))
    y = gc.dropout(gc.tanh(x), 0.3, seed=5, name="y")
    dx, = gc.grad(gc.sum(y * y), [x])
    keep = [y.name, dx.name]
    fused = fuse(optimize(g, keep), keep)
    params = {n: torch.tensor(fused.attrs(n)["value"]) for n in fused.params()}

    def run(module):
        module.run(torch.randn(R, C), params, {}, module.allocate(R))
    assert compile_gpu_kernels(fused, keep, {}, run, monkeypatch) >= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_step_on_gpu_matches_numpy():
    """On a GPU the same tests run compiled; this one checks a bigger batch on CUDA."""
    from examples.digits_mlp import build_model
    assert INTERPRET is False
    g, _, loss = build_model(hidden=64)
    ref = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend="numpy")
    step = triton_step(g, loss, gc.SGD(lr=0.1))
    assert step.device == "cuda" and "libdevice" in step.source
    for i in range(3):
        feeds = digits_batch(1000 + i, seed=i)
        assert step(**feeds) == pytest.approx(ref(**feeds), rel=1e-4)
    for name in ref.params:
        np.testing.assert_allclose(step[name], ref[name], rtol=1e-4, atol=1e-5)


# ---- random graphs through the fused Triton path ------------------------------------------

@settings(max_examples=30, deadline=None, derandomize=True, print_blob=True)
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_random_graphs_match_torch(prog, seed):
    """test_property's programs, fused and run as Triton kernels: the loss and every
    gradient against PyTorch autograd (float64)."""
    note(f"program: {prog}")
    check_against_torch(prog, seed, triton_function)
