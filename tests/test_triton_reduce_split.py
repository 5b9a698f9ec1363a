"""Split reductions on the Triton backend: a reduce kernel with few programs (a full sum,
a column sum of few columns) over many reduced elements runs in chunks on a second grid
axis, then a finish kernel combines the chunks and runs the epilogue. Forced on small
shapes by lowering the chunk size, against PyTorch float64 and the NumPy backend."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import graphc as gc
from graphc.codegen.triton import reduce as reduce_template
from tests.triton_pipeline import INTERPRET  # noqa: F401  (interpreter mode, before triton)

N = gc.sym("N")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 reduced elements: a 1000-row reduction takes several."""
    monkeypatch.setattr(reduce_template, "SPLIT_CHUNK", 64)


class Counted:
    """Stands in for a finish kernel: counts its launches, then launches it."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, 0

    def __getitem__(self, grid):
        self.calls += 1
        return self.kernel[grid]


def count_finishes(f, monkeypatch) -> dict:
    """Wrap every <kernel>_finish of f's module; name -> Counted."""
    counted = {name: Counted(getattr(f.module, name)) for name in dir(f.module)
               if name.endswith("_finish")}
    for name, c in counted.items():
        monkeypatch.setattr(f.module, name, c)
    return counted


def triton(g, outputs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gc.function(g, outputs, backend="triton", **kw)


def full_reductions():
    g = gc.Graph("split_full", dtype="float64")
    x = g.input("x", (N, 7))
    loss = gc.mean((gc.tanh(x) - 0.5) ** 2)
    dx, = gc.grad(loss, [x])
    return g, [loss, gc.max(x * 2.0), gc.min(x), dx]


def torch_full(xv):
    x = torch.tensor(xv, requires_grad=True)
    loss = ((torch.tanh(x) - 0.5) ** 2).mean()
    dx, = torch.autograd.grad(loss, x)
    return [loss.detach().numpy(), (x * 2).amax().detach().numpy(),
            x.amin().detach().numpy(), dx.numpy()]


@pytest.mark.parametrize("rows", [0, 3, 20, 100, 1000])
def test_full_reductions_in_chunks_equal_torch(small_chunks, rows, monkeypatch):
    g, outputs = full_reductions()
    f = triton(g, outputs)
    assert f.source.count("_finish(") == 3 and "n_splits, chunk = split_sizes(" in f.source
    counted = count_finishes(f, monkeypatch)
    xv = np.random.default_rng(rows).standard_normal((rows, 7))
    with np.errstate(invalid="ignore"):
        got = f(x=xv)
    # 7 * rows elements in chunks of 64: one chunk (no finish launch) below 128
    assert [c.calls for c in counted.values()] == [int(7 * rows >= 128)] * 3
    if rows == 0:   # an empty batch: mean NaN, max -inf, min +inf, as torch's identities
        assert np.isnan(got[0]) and got[1] == -np.inf and got[2] == np.inf
        return
    for a, b in zip(got, torch_full(xv)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_chunks_keep_nan_and_infinities(small_chunks):
    g, outputs = full_reductions()
    f = triton(g, outputs[1:3])
    xv = np.random.default_rng(0).standard_normal((900, 7))
    xv[700, 3] = np.inf     # in a late chunk
    got_max, got_min = f(x=xv)
    assert got_max == np.inf and got_min == xv.min()
    xv[5, 1] = np.nan       # in the first chunk: every combine must keep it
    got_max, got_min = f(x=xv)
    assert np.isnan(got_max) and np.isnan(got_min)


def test_chunked_result_is_deterministic_and_close_to_one_chunk(small_chunks, monkeypatch):
    xv = np.random.default_rng(4).standard_normal((5000, 7)).astype(np.float32)
    g = gc.Graph("split_f32")
    x = g.input("x", (N, 7))
    total = gc.sum(gc.exp(x * 0.5))
    chunked = triton(g, [total])
    runs = [chunked(x=xv)[0] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]    # the same chunks, combined in the same order
    monkeypatch.setattr(reduce_template, "SPLIT_CHUNK", 1 << 20)
    whole = triton(g, [total])               # 35,000 elements: one chunk
    want = np.exp(xv.astype(np.float64) * 0.5).sum()
    for got in (runs[0], whole(x=xv)[0]):
        assert got == pytest.approx(want, rel=2e-6)


def test_a_bias_update_after_chunks_matches_numpy(small_chunks):
    """A column sum of 5 columns (one program) with an SGD update as its epilogue,
    written in place by the finish kernel, over several steps."""
    def step(backend):
        g = gc.Graph("split_bias", dtype="float64")
        x = g.input("x", (N, 5))
        b = g.param("b", (5,), init=np.linspace(-1, 1, 5))
        loss = gc.mean(gc.softplus(x + b))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gc.compile(g, loss, optimizer=gc.SGD(lr=0.5), backend=backend)
    fast, ref = step("triton"), step("numpy")
    assert "_finish(" in fast.source
    xv = np.random.default_rng(7).standard_normal((700, 5))
    b = torch.tensor(np.linspace(-1, 1, 5), requires_grad=True)   # the same steps in torch
    opt = torch.optim.SGD([b], lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.softplus(torch.tensor(xv) + b).mean()
        loss.backward()
        opt.step()
        got = fast(x=xv)
        assert got == pytest.approx(ref(x=xv), rel=1e-12)
        assert got == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(fast["b"], ref["b"], rtol=1e-12)
    np.testing.assert_allclose(fast["b"], b.detach().numpy(), rtol=1e-12)


def test_short_or_wide_reductions_are_not_split():
    """A static reduced size below two chunks, or enough programs already: one kernel."""
    g = gc.Graph("split_none", dtype="float64")
    x, w = g.input("x", (300, 7)), g.input("w", (N, 4096))
    f = triton(g, [gc.sum(x), gc.sum(w, axis=0)])   # 2,100 elements; 128 programs
    assert "_finish" not in f.source and "n_splits" not in f.source
    xv, wv = np.ones((300, 7)), np.ones((3, 4096))
    got_x, got_w = f(x=xv, w=wv)
    assert got_x == 2100.0 and np.all(got_w == 3.0)


@pytest.mark.parametrize("chunk", [64, None], ids=["chunks", "whole"])
def test_int64_max_and_min_are_exact_past_2_24(monkeypatch, chunk):
    """Masked lanes of an int64 max (min) hold the least (greatest) int64, not -inf: a
    float fill made the lanes float32 and rounded values past 2**24 (rows one-block,
    reduce, and split kernels alike)."""
    if chunk:
        monkeypatch.setattr(reduce_template, "SPLIT_CHUNK", chunk)
    g = gc.Graph("int_max")
    i = g.input("i", (N, 6), dtype="int64")
    f = triton(g, [gc.max(i, axis=1), gc.min(i, axis=0), gc.max(i), gc.min(i)])
    assert "_finish(" in f.source   # symbolic N: 1,800 elements take 1 chunk, or 29 of 64
    iv = (2 ** 40 + np.random.default_rng(1).integers(-1000, 1000, (300, 6))).astype(np.int64)
    got = f(i=iv)
    for a, b in zip(got, [iv.max(axis=1), iv.min(axis=0), iv.max(), iv.min()]):
        np.testing.assert_array_equal(a, b)


def test_a_node_named_like_the_finish_kernel(small_chunks):
    """An input called <kernel>_finish is renamed in the code, not shadowing the kernel."""
    g = gc.Graph("split_names", dtype="float64")
    x = g.input("reduce_exp_sum_0_finish", (N, 7))
    f = triton(g, [gc.sum(gc.exp(x))])
    assert "def reduce_exp_sum_0_finish(" in f.source
    assert f.module.split_sizes(3500, 4096, 64, 256)[0] > 1   # the finish kernel is launched
    xv = np.random.default_rng(2).standard_normal((500, 7))
    assert f(reduce_exp_sum_0_finish=xv)[0] == pytest.approx(np.exp(xv).sum(), rel=1e-12)
