"""The looped rows kernel (codegen/triton/kernels.py, Rows): rows too wide for one block,
or of symbolic width, streamed through in column tiles, one loop per reduction phase.
Forced on small shapes by lowering ROWS_MAX_BLOCK (16 float32 / 8 float64 lanes: a
(5, 70) row is 5 or 9 tiles, the last ragged), against PyTorch float64 autograd and the
one-block kernel; the narrow default stays one block, unchanged."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.codegen import triton as triton_backend
from graphc.codegen.triton import kernels
from graphc.passes import memory
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize
from tests.triton_pipeline import INTERPRET, kinds, triton_function

N, M = gc.sym("N"), gc.sym("M")
R, C = 5, 70
LOOP = "for start in range(0, n_cols, BLOCK_C):"
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
SAME = {"float32": dict(rtol=1e-6, atol=1e-7), "float64": dict(rtol=1e-13, atol=1e-15)}


@pytest.fixture
def tiles(monkeypatch):
    """Rows kernels loop over tiles of 16 float32 (8 float64) columns."""
    monkeypatch.setattr(kernels, "ROWS_MAX_BLOCK", 16)


def rows_sources(f) -> list:
    return [k.source for k in f.kernels if k.kind == "rows"]


def source(graph, outputs) -> str:
    keep = [o.name for o in outputs]
    g = fuse(optimize(graph, keep), keep)
    return triton_backend.generate(g, keep, {}, memory.plan(g, keep), interpret=True)


# ---- the choice between one block and a loop ----------------------------------------------

def softmax_graph(cols, dtype="float32"):
    g = gc.Graph("softmax_src", dtype=dtype)
    z = g.input("z", (N, cols))
    y = gc.softmax(z)
    return g, [y, *gc.grad(gc.sum(y * g.input("w", (N, cols))), [z])]


def test_narrow_rows_stay_one_block(monkeypatch):
    """1024 columns: one block of 1024 lanes, the source the same as with no limit at all;
    with the limit forced below the width the same graph loops."""
    default = source(*softmax_graph(1024))
    monkeypatch.setattr(kernels, "ROWS_MAX_BLOCK", 1 << 20)
    assert source(*softmax_graph(1024)) == default
    assert LOOP not in default and "start + tl.arange" not in default
    assert "    cols = tl.arange(0, BLOCK_C).to(tl.int64)\n    mask = cols < n_cols\n" in default
    assert "BLOCK_C=1024, num_warps=4" in default
    monkeypatch.setattr(kernels, "ROWS_MAX_BLOCK", 512)
    looped = source(*softmax_graph(1024))
    assert LOOP in looped and "BLOCK_C=512," in looped


def test_wide_and_symbolic_widths_loop_by_default():
    """Past ROWS_MAX_BLOCK lanes (half as many in float64), or a symbolic width: a loop,
    BLOCK_C at most the limit; the float32 one-block limit is 16384 lanes."""
    assert LOOP not in source(*softmax_graph(16384))
    assert "BLOCK_C=16384" in source(*softmax_graph(20000)) and \
        LOOP in source(*softmax_graph(16385))
    assert LOOP in source(*softmax_graph(8193, "float64")) and \
        "BLOCK_C=8192" in source(*softmax_graph(8193, "float64"))
    symbolic = source(*softmax_graph(M))
    assert LOOP in symbolic and "BLOCK_C=pow2_block(M, 1, 16384)" in symbolic


def test_reductions_that_read_the_same_values_share_a_loop(tiles):
    """Cross-entropy forward and backward, one rows kernel: a loop for the max, one for
    the sum of exp and the picked logit (both need only the max), one for the gradient.
    logsumexp stores its exp in the loop that sums it: two loops, no third."""
    g = gc.Graph("sce_loops", dtype="float64")
    z, y = g.input("z", (N, C)), g.input("y", (N,), dtype="int64")
    loss = gc.softmax_cross_entropy(z, y)
    text, = [s for s in re.split(r"\n(?=# ---- )", source(g, [loss, *gc.grad(loss, [z])]))
             if s.startswith("# ---- rows")]
    assert text.count(LOOP) == 3
    sums = text.split(LOOP)[2]
    assert len(re.findall(r"sum_\d+ = sum_\d+ \+ tl\.sum", sums)) == 2
    g = gc.Graph("lse_loops", dtype="float64")
    z = g.input("z", (N, C))
    lse = gc.logsumexp(z)
    text = source(g, [lse, *gc.grad(gc.sum(lse), [z])])
    assert text.count(LOOP) == 2


# ---- values: PyTorch float64 autograd and the one-block kernel ----------------------------

CASES = {
    "softmax": (gc.softmax, lambda t: torch.softmax(t, -1)),
    "log_softmax": (gc.log_softmax, lambda t: torch.log_softmax(t, -1)),
    "logsumexp": (gc.logsumexp, lambda t: torch.logsumexp(t, -1)),
}


def forward_backward(case, dtype, cols=C):
    """y = f(z) and d sum(y * w) / dz."""
    build, _ = CASES[case]
    g = gc.Graph(f"wide_{case}", dtype=dtype)
    z = g.input("z", (N, cols))
    y = build(z)
    w = g.input("w", (N, cols) if case != "logsumexp" else (N,))
    return g, [y, *gc.grad(gc.sum(y * w), [z])]


def feeds(case, dtype, rows=R, cols=C, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, cols)) * 4
    z[1, 40:] += 30.0          # the row's max is in a later tile
    w = rng.normal(size=(rows, cols) if case != "logsumexp" else (rows,))
    return {"z": z.astype(dtype), "w": w.astype(dtype)}


def torch_reference(case, data) -> list:
    zt = torch.tensor(data["z"], dtype=torch.float64, requires_grad=True)
    yt = CASES[case][1](zt)
    (yt * torch.tensor(data["w"], dtype=torch.float64)).sum().backward()
    return [yt.detach().numpy(), zt.grad.numpy()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_looped_rows_match_torch_and_one_block(case, dtype, monkeypatch):
    data = feeds(case, dtype)
    one_block = triton_function(*forward_backward(case, dtype))
    monkeypatch.setattr(kernels, "ROWS_MAX_BLOCK", 16)
    looped = triton_function(*forward_backward(case, dtype))
    assert all(LOOP in s for s in rows_sources(looped)) and rows_sources(looped)
    assert not any(LOOP in s for s in rows_sources(one_block))
    assert kinds(looped) == kinds(one_block)
    got, block = looped(**data), one_block(**data)
    for a, b, want in zip(got, block, torch_reference(case, data)):
        np.testing.assert_allclose(a, want, **TOL[dtype])
        np.testing.assert_allclose(a, b, **SAME[dtype])


@pytest.mark.filterwarnings("ignore:Triton interpreter")
def test_softmax_cross_entropy_forward_backward(tiles):
    """gc.function and gc.grad, integer labels, float64, against F.cross_entropy."""
    g = gc.Graph("wide_sce", dtype="float64")
    z, y = g.input("z", (N, C)), g.input("y", (N,), dtype="int64")
    loss = gc.softmax_cross_entropy(z, y)
    dz, = gc.grad(loss, [z])
    f = gc.function(g, [loss, dz], backend="triton")
    assert kinds(f).count("rows") == 1 and LOOP in rows_sources(f)[0]
    Z = np.random.default_rng(1).normal(size=(R, C)) * 5
    Y = np.array([0, 69, 16, 33, 64])       # first, last, tile edges, the ragged tile
    got_loss, got_dz = f(z=Z, y=Y)
    zt = torch.tensor(Z, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(Y))
    lt.backward()
    np.testing.assert_allclose(got_loss, lt.item(), **TOL["float64"])
    np.testing.assert_allclose(got_dz, zt.grad.numpy(), **TOL["float64"])


def test_max_and_min_keep_nan_across_tiles(tiles):
    """A NaN in a middle tile makes its row's max and min NaN (torch.amax/amin); an
    all -inf row gives -inf, masked lanes of the ragged tile take no part."""
    g = gc.Graph("wide_nan")
    x = g.input("x", (N, C))
    f = triton_function(g, [gc.max(x, axis=1), gc.min(x, axis=1)])
    assert LOOP in rows_sources(f)[0]
    X = np.random.default_rng(2).normal(size=(R, C)).astype(np.float32)
    X[2, 37] = np.nan
    X[3] = -np.inf
    X[4, 69] = 50.0           # the max in the ragged last tile
    xt = torch.tensor(X)
    for a, b in zip(f(x=X), [xt.amax(1), xt.amin(1)]):
        np.testing.assert_array_equal(a, b.numpy())   # NaN where torch has NaN


def test_dropout_draws_the_same_numbers_in_every_loop(monkeypatch):
    """softmax(dropout(z)) and its gradient: the mask is drawn in each of the backward
    kernel's loops; the same numbers there as in the one-block kernel, and the gradient
    is torch's for the mask the forward returned."""
    def build():
        g = gc.Graph("wide_drop", dtype="float64")
        z = g.input("z", (N, C))
        d = gc.dropout(z, 0.5, seed=11, name="d")
        y = gc.softmax(d)
        return g, [d, y, *gc.grad(gc.sum(y * g.input("w", (N, C))), [z])]
    data = feeds("softmax", "float64", seed=3)
    block = triton_function(*build())(**data)
    monkeypatch.setattr(kernels, "ROWS_MAX_BLOCK", 16)
    f = triton_function(*build())
    assert sum(s.count(LOOP) for s in rows_sources(f)) >= 3
    got = f(**data)
    for a, b in zip(got, block):
        np.testing.assert_allclose(a, b, **SAME["float64"])
    kept = got[0] != 0
    assert 0.3 < kept.mean() < 0.7
    zt = torch.tensor(data["z"], requires_grad=True)
    yt = torch.softmax(zt * torch.tensor(kept * 2.0), -1)
    (yt * torch.tensor(data["w"])).sum().backward()
    np.testing.assert_allclose(got[1], yt.detach().numpy(), **TOL["float64"])
    np.testing.assert_allclose(got[2], zt.grad.numpy(), **TOL["float64"])


# ---- symbolic width, rank 3, per-row inputs -------------------------------------------------

@pytest.mark.parametrize("forced", [False, True])
def test_symbolic_width(forced, monkeypatch):
    """Softmax over a symbolic last dim M: a loop even at the default limit (one tile of
    128 lanes for M = 70), several tiles when forced; two widths from one compile."""
    if forced:
        monkeypatch.setattr(kernels, "ROWS_MAX_BLOCK", 16)
    g, outs = forward_backward("softmax", "float64", cols=M)
    f = triton_function(g, outs)
    assert LOOP in rows_sources(f)[0]
    for rows, cols in [(R, C), (3, 9)]:
        data = feeds("softmax", "float64", rows, cols)
        for a, want in zip(f(**data), torch_reference("softmax", data)):
            np.testing.assert_allclose(a, want, **TOL["float64"])


def test_rank3_rows_with_a_per_row_input(tiles):
    """softmax(x * s) over the last axis of (B, T, C) with s of shape (B, T, 1): rows are
    the flattened leading axes; s has one value per row, loaded before each loop."""
    g = gc.Graph("wide_rank3", dtype="float64")
    x, s = g.input("x", (N, 3, C)), g.input("s", (N, 3, 1))
    f = triton_function(g, [gc.softmax(x * s)])
    text = rows_sources(f)[0]
    assert LOOP in text
    assert not any("tl.load(s_ptr" in line for line in text.split(LOOP, 1)[1].splitlines()
                   if line.startswith("        "))   # no load of s inside a loop
    rng = np.random.default_rng(4)
    X, S = rng.normal(size=(2, 3, C)), rng.uniform(0.5, 3, size=(2, 3, 1))
    want = torch.softmax(torch.tensor(X * S), -1).numpy()
    np.testing.assert_allclose(f(x=X, s=S)[0], want, **TOL["float64"])


def test_a_known_width_past_the_limit_runs():
    """20000 float32 columns at the default limit: two tiles of 16384, the second ragged."""
    g = gc.Graph("wide_20000")
    z = g.input("z", (N, 20000))
    f = triton_function(g, [gc.softmax(z)])
    assert LOOP in rows_sources(f)[0]
    Z = np.random.default_rng(5).normal(size=(2, 20000)).astype(np.float32) * 4
    want = torch.softmax(torch.tensor(Z, dtype=torch.float64), -1).numpy()
    np.testing.assert_allclose(f(z=Z)[0], want, rtol=1e-5, atol=1e-9)


def test_int64_sum_and_max_are_exact(tiles):
    """An int64 max starts from the least int64, not -inf: exact past 2**53."""
    g = gc.Graph("wide_int")
    x = g.input("x", (N, C), dtype="int64")
    f = triton_function(g, [gc.sum(x, axis=1), gc.max(x, axis=1), gc.min(x, axis=1)])
    assert LOOP in rows_sources(f)[0]
    X = np.random.default_rng(6).integers(-2 ** 40, 2 ** 40, size=(R, C))
    X[0, 33] = 2 ** 62 + 1
    X[1, 69] = -2 ** 62 - 1
    for a, want in zip(f(x=X), [X.sum(1), X.max(1), X.min(1)]):
        np.testing.assert_array_equal(a, want)


def test_a_transposed_input_read_in_every_loop(tiles):
    """Found by fuzzing with the loop forced: a strided (transposed) input loaded in each
    loop gave its stride parameters twice (a SyntaxError); they are now declared once."""
    g = gc.Graph("wide_transposed", dtype="float64")
    x = g.input("x", (C, R))
    z = gc.transpose(x) * 2.0
    y = gc.log_softmax(z)
    dx, = gc.grad(gc.sum(y * y), [x])
    f = triton_function(g, [y, dx])
    assert any(src.count(LOOP) >= 2 for src in rows_sources(f))
    xv = np.random.default_rng(5).standard_normal((C, R))
    t = torch.tensor(xv, requires_grad=True)
    ty = F.log_softmax(t.T * 2.0, dim=1)
    want = [ty.detach().numpy(), torch.autograd.grad((ty * ty).sum(), t)[0].numpy()]
    for a, b in zip(f(x=xv), want):
        np.testing.assert_allclose(a, b, **TOL["float64"])


@pytest.mark.skipif(not INTERPRET, reason="on a GPU the compiled kernels run for real")
def test_looped_rows_compile_to_ptx(monkeypatch):
    """The GPU flavour of looped rows kernels (symbolic width: softmax forward and backward,
    an int64 max with its int64 fill) compiles for sm_90."""
    from tests.test_triton_steps import compile_gpu_kernels
    g = gc.Graph("wide_ptx")
    z, i = g.input("z", (N, M)), g.input("i", (N, M), dtype="int64")
    y = gc.softmax(z)
    dz, = gc.grad(gc.sum(y * y), [z])
    top = gc.max(i, axis=1)
    keep = [y.name, dz.name, top.name]
    fused = fuse(optimize(g, keep), keep)

    def run(module):
        module.run(torch.randn(3, 40), torch.zeros(3, 40, dtype=torch.int64), {}, {},
                   module.allocate(3, 40))
    assert compile_gpu_kernels(fused, keep, {}, run, monkeypatch) >= 2
