"""matmul="fused": a generated Triton matmul with the epilogue inside (bias, activation,
derivative siblings, optimizer updates written in place), against PyTorch float64 and the
library path, under the interpreter (or on a GPU when there is one); the GPU flavour
(autotuned over every config) compiled for sm_90 without a GPU."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import lowering
from graphc.bench.training import mlp_graph
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize
from tests.test_triton_steps import compile_gpu_kernels
from tests.triton_pipeline import INTERPRET, kinds

N = gc.sym("N")
RTOL32 = 2e-5   # float32 against float64: a 50-term dot plus tanh, a few roundings


def fused_function(g, outputs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gc.function(g, outputs, backend="triton", matmul="fused", **kw)


def layer(rows, inner, cols, seed=0):
    """x (rows, inner) @ W (inner, cols) + b, tanh: graph, output, and the values."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((inner, cols)).astype(np.float32) / np.sqrt(inner)
    b0 = rng.standard_normal(cols).astype(np.float32)
    g = gc.Graph("fused_layer")
    x = g.input("x", (N, inner))
    w, b = g.param("W", (inner, cols), init=w0), g.param("b", (cols,), init=b0)
    return g, x, w, b, rng.standard_normal((rows, inner)).astype(np.float32), w0, b0


@pytest.mark.parametrize("rows,inner,cols", [(37, 50, 29), (1, 16, 16), (70, 8, 130)])
def test_linear_tanh_is_one_kernel(rows, inner, cols):
    """tanh(x @ W + b): one matmul kernel and nothing else, ragged tiles masked."""
    g, x, w, b, xv, w0, b0 = layer(rows, inner, cols)
    y = gc.tanh(x @ w + b)
    f = fused_function(g, [y])
    assert kinds(f) == ["matmul"] and len(f.kernels[0].nodes) == 2
    assert "tl.dot(" in f.source and "torch.matmul" not in f.source
    want = torch.tanh(torch.tensor(xv, dtype=torch.float64) @ torch.tensor(w0, dtype=torch.float64)
                      + torch.tensor(b0, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(f(x=xv)[0], want, rtol=RTOL32, atol=1e-6)


def test_symbolic_batch_serves_every_size():
    g, x, w, b, _, w0, b0 = layer(5, 24, 20)
    y = gc.sigmoid(x @ w + b) * 2.0
    f = fused_function(g, [y])
    for rows in (3, 64, 65):
        xv = np.random.default_rng(rows).standard_normal((rows, 24)).astype(np.float32)
        want = 2 / (1 + np.exp(-(xv.astype(np.float64) @ w0 + b0)))
        np.testing.assert_allclose(f(x=xv)[0], want, rtol=RTOL32, atol=1e-6)


@pytest.mark.parametrize("rows,cols", [(1, 7), (6, 1), (1, 1)])
def test_a_result_with_a_unit_axis(rows, cols):
    """(1, n) and (m, 1) results (static sizes): stores cover the whole tile's rows."""
    g = gc.Graph("fused_unit_axis")
    a, b = g.input("a", (rows, 5)), g.input("b", (5, cols))
    y = gc.softplus(a @ b) - 1.0
    f = fused_function(g, [y])
    assert kinds(f) == ["matmul"]
    rng = np.random.default_rng(rows * 10 + cols)
    av, bv = rng.standard_normal((rows, 5)).astype(np.float32), \
        rng.standard_normal((5, cols)).astype(np.float32)
    want = torch.nn.functional.softplus(torch.tensor(av, dtype=torch.float64)
                                        @ torch.tensor(bv, dtype=torch.float64)) - 1
    np.testing.assert_allclose(f(a=av, b=bv)[0], want.numpy(), rtol=RTOL32, atol=1e-6)


def test_transposed_operands_and_two_outputs():
    """A.T @ B read in place through strides; the matmul itself and an epilogue stored."""
    g = gc.Graph("fused_transposed")
    a, bb = g.input("a", (40, 33)), g.input("b", (40, 18))
    prod = gc.transpose(a) @ bb
    y = gc.exp(prod * 0.1)
    f = fused_function(g, [prod, y])
    assert kinds(f) == ["matmul"]
    rng = np.random.default_rng(3)
    av, bv = rng.standard_normal((40, 33)).astype(np.float32), \
        rng.standard_normal((40, 18)).astype(np.float32)
    want = av.astype(np.float64).T @ bv
    got_prod, got_y = f(a=av, b=bv)
    np.testing.assert_allclose(got_prod, want, rtol=RTOL32, atol=1e-5)
    np.testing.assert_allclose(got_y, np.exp(0.1 * want), rtol=RTOL32, atol=1e-6)


def test_float64_and_batched_matmuls_stay_library_calls():
    g = gc.Graph("fused_f64", dtype="float64")
    x = g.input("x", (N, 8))
    w = g.param("W", (8, 16), init=np.ones((8, 16)))
    y = gc.tanh(x @ w)
    fused = fuse(optimize(g, [y.name]), [y.name], matmul_epilogue=True)
    assert [k.kind for k in fused.nx.graph["kernels"]] == ["matmul", "elementwise"]
    assert any("2-D float32" in line for line in fused.nx.graph["fusion_log"])
    f = fused_function(g, [y])
    assert "torch.matmul" in f.source
    np.testing.assert_allclose(f(x=np.ones((2, 8)))[0], np.tanh(np.full((2, 16), 8.0)))


def test_library_stays_the_default_and_bad_option_is_refused():
    g, x, w, b, xv, _, _ = layer(4, 16, 16)
    y = gc.tanh(x @ w + b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = gc.function(g, [y], backend="triton")
    assert kinds(f) == ["matmul", "elementwise"] and "torch.matmul" in f.source
    with pytest.raises(ValueError, match="matmul='cublas'.*library"):
        gc.function(g, [y], backend="numpy", matmul="cublas")


def mlp_batch():
    rng = np.random.default_rng(1)
    return rng.standard_normal((24, 16)).astype(np.float32), rng.integers(0, 10, 24)


def torch_steps(steps=3):
    """The same steps in PyTorch float64 (addmm, tanh, F.cross_entropy, torch.optim.SGD)
    from the same initial weights: losses and params."""
    from graphc.bench.reference import TorchMLPStep
    graph, _ = mlp_graph("fused_mlp", [16, 32, 32, 10])
    init = {p: graph.attrs(p)["value"].astype(np.float64)
            for p in graph.params(trainable_only=True)}
    ref = TorchMLPStep(init, lr=0.1, momentum=0.9)
    x, y = mlp_batch()
    losses = [ref(x.astype(np.float64), y) for _ in range(steps)]
    return losses, {k: t.detach().numpy() for k, t in ref.p.items()}


def mlp_steps(backend, matmul, steps=3):
    """Losses and params of a 16-32-32-10 tanh MLP after SGD-momentum steps."""
    x, y = mlp_batch()
    graph, loss = mlp_graph("fused_mlp", [16, 32, 32, 10])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = gc.compile(graph, loss, optimizer=gc.SGD(lr=0.1, momentum=0.9),
                          backend=backend, matmul=matmul)
    losses = [float(step(x=x, y=y)) for _ in range(steps)]
    return step, losses, {p: np.array(step[p]) for p in graph.params()}


def test_training_step_matches_the_library_path():
    """Every matmul of the step takes its epilogue: forward bias+tanh, backward
    derivative, weight updates in place; losses and params as the NumPy backend's."""
    step, losses, params = mlp_steps("triton", "fused")
    _, ref_losses, ref_params = mlp_steps("numpy", "library")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    for name, value in ref_params.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    torch_losses, torch_params = torch_steps()   # independent: float64 PyTorch autograd
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-5)
    for name, value in torch_params.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    matmuls = [k for k in step.kernels if k.kind == "matmul"]
    assert len(matmuls) == 8 and all(len(k.nodes) > 1 for k in matmuls)  # 3 fwd, 2 dx, 3 dW
    library, _, _ = mlp_steps("triton", "library", steps=1)
    assert len(step.kernels) < len(library.kernels)
    for p in ("l1_W", "l2_W", "l3_W", "l1_W_velocity"):   # updated inside the dW matmul
        assert re.search(rf"\b{p}_new = {p}\b.*written in place", step.source), p
    assert ".copy_(" not in step.source


def test_numpy_backend_takes_the_option_and_computes_the_same():
    """The fused graph groups differently; the NumPy code (np.matmul, then the maps) does
    the same arithmetic: equal bits."""
    _, fused_losses, fused_params = mlp_steps("numpy", "fused")
    _, losses, params = mlp_steps("numpy", "library")
    assert fused_losses == losses
    for name, value in params.items():
        np.testing.assert_array_equal(fused_params[name], value, err_msg=name)


def test_dropout_in_an_epilogue_draws_the_library_paths_numbers():
    g, x, w, b, xv, _, _ = layer(20, 16, 24)
    y = gc.dropout(gc.tanh(x @ w + b), 0.4, seed=9)
    fused = fused_function(g, [y], training=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        library = gc.function(g, [y], backend="triton", training=True)
    # the matmul kernel draws the mask; the other kernel advances the step counter
    assert kinds(fused) == ["matmul", "elementwise"] and "tl.rand(" in fused.kernels[0].source
    got, want = fused(x=xv)[0], library(x=xv)[0]
    np.testing.assert_array_equal(got == 0, want == 0)
    # the same mask; the values are float32 sums of 16 products in two orders (tiles, and
    # a BLAS kernel that differs by CPU), as the other comparisons in this file allow
    np.testing.assert_allclose(got, want, rtol=RTOL32, atol=1e-6)
    w0, b0 = (fused.params[n].numpy().astype(np.float64) for n in ("W", "b"))
    kept = np.tanh(xv.astype(np.float64) @ w0 + b0) / 0.6   # kept values are x / (1 - p)
    np.testing.assert_allclose(got[got != 0], kept[got != 0], rtol=2e-5, atol=1e-6)
    assert 0.4 < (got != 0).mean() < 0.8                    # about 1 - p kept


@pytest.mark.skipif(not INTERPRET, reason="on a GPU the compiled kernels run for real")
def test_gpu_flavour_compiles_every_config_to_ptx(monkeypatch):
    """The autotuned matmuls of a training step (restore_value for the in-place update)
    compile for sm_90, every config within an H100's shared memory."""
    graph, loss = mlp_graph("fused_mlp_gpu", [16, 10])   # two matmuls: forward, dW
    params = graph.params(trainable_only=True)
    g, grads = autodiff(graph, loss.name, params)
    g, updates = gc.SGD(lr=0.1).build(g, params, grads)
    keep = [loss.name, *updates.values()]
    fused = fuse(optimize(g, keep), keep, matmul_epilogue=True)
    feeds = (torch.randn(9, 16), torch.randint(0, 10, (9,)))
    torch_params = {n: torch.tensor(fused.attrs(n)["value"]) for n in fused.params()}
    seen = {}

    def step(module):
        seen["source"], seen["module"] = open(module.__file__).read(), module
        module.run(*feeds, torch_params, {}, module.allocate(9))
    compiled = compile_gpu_kernels(fused, [loss.name], updates, step, monkeypatch)
    source = seen["source"]
    n_matmuls = source.count("@triton.autotune(")
    assert n_matmuls == 2 and "restore_value=['l1_W_new_ptr']" in source
    from graphc.codegen.triton.matmul import CONFIGS
    from graphc.codegen.triton.module import JIT_HELPERS
    # every config once (the first matmul), the second matmul in one, the other kernels
    # (not the jit helpers they call), each split reduction (the loss mean) once more for
    # several chunks
    splits = source.count("_finish(")
    helpers = sum(f"def {h}(" in source for h in JIT_HELPERS)
    assert compiled == len(CONFIGS) + 1 + source.count("@triton.jit") - n_matmuls - helpers + \
        splits
    import triton
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}) for m, n, k, _, _
               in CONFIGS]
    prune = seen["module"].prune_tiles

    def tiles(rows, cols):
        return {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"])
                for c in prune(configs, {"n_rows": rows, "n_cols": cols, "n_inner": 64})}
    assert len(tiles(4096, 4096)) == len(CONFIGS)      # a large result tunes over all
    assert tiles(4096, 10) == {(64, 32)}               # 10 columns: the narrow tile only
    assert tiles(3, 3) == {(64, 32)}                   # nothing fits: the smallest tile


def test_many_tiles_and_inner_steps_and_a_node_read_twice():
    """x @ x (one node as both operands) over 10 x 10 tiles with 4 steps of the inner
    loop, the last ragged: more than GROUP_M tile rows, the accumulator carried."""
    g = gc.Graph("fused_square")
    a = g.input("a", (600, 600))
    y = gc.tanh((a @ a) * 0.05)
    b, c = g.input("b", (600, 150)), g.input("c", (150, 200))
    z = gc.sigmoid(b @ c)
    f = fused_function(g, [y, z])
    assert kinds(f) == ["matmul", "matmul"]
    rng = np.random.default_rng(11)
    av = rng.standard_normal((600, 600)).astype(np.float32)
    bv, cv = rng.standard_normal((600, 150)).astype(np.float32), \
        rng.standard_normal((150, 200)).astype(np.float32)
    got_y, got_z = f(a=av, b=bv, c=cv)
    a64 = av.astype(np.float64)
    np.testing.assert_allclose(got_y, np.tanh(a64 @ a64 * 0.05), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_z, 1 / (1 + np.exp(-(bv.astype(np.float64) @ cv))),
                               rtol=1e-4, atol=1e-5)


def test_tf32_only_where_torch_allows_it():
    """tl.dot's float32 precision follows torch's own matmul setting, read through the
    new API (the legacy allow_tf32 raises once the new one has been used)."""
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision   # cuBLASModule: monkeypatch cannot restore it
    try:
        assert lowering._matmul_precision() == ("tf32" if before == "tf32" else "ieee")
        matmul.fp32_precision = "tf32"
        assert lowering._matmul_precision() == "tf32"
        matmul.fp32_precision = "ieee"
        assert lowering._matmul_precision() == "ieee"
    finally:
        matmul.fp32_precision = before
    g, x, w, b, _, _, _ = layer(4, 16, 16)
    y = gc.tanh(x @ w + b)
    keep = [y.name]
    from graphc.codegen import triton as triton_backend
    from graphc.passes import memory
    fused = fuse(optimize(g, keep), keep, matmul_epilogue=True)
    source = triton_backend.generate(fused, keep, {}, memory.plan(fused, keep, {}),
                                     interpret=False, matmul_precision="tf32")
    assert "input_precision='tf32'" in source and "@triton.autotune(" in source
