"""The Triton backend through Triton's interpreter (CPU tensors; compiled on a GPU when
there is one): every elementwise op, broadcast and permuted inputs, NaN, rows kernels
(softmax, log-softmax, cross-entropy, forward and backward), reduce and matmul kernels,
against the NumPy backend and PyTorch; and the generated source itself. Odd sizes
(37 x 29) so that masks matter. Training steps: test_triton_steps.py."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F

import graphc as gc
from graphc import config, exprs
from graphc.codegen import triton as triton_backend
from graphc.passes import memory
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize
from tests.torch_reference import TORCH, graphc_op
from tests.triton_pipeline import INTERPRET, kinds, triton_function

N = gc.sym("N")
R, C = 37, 29
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}


# ---- the expression printer ------------------------------------------------------------

def test_printer_spellings():
    """Interpreter and GPU spellings; NaN-keeping max; nested conditions; float64 literals
    and dims kept exact; no silent Python math for a function Triton lacks."""
    from graphc.codegen.triton.printer import print_expr
    x0, x1 = exprs.args(2)
    names = {"x0": "a", "x1": "b", "N": "N"}

    def both(e, dtype="float32"):
        return print_expr(e, names, dtype)[0], print_expr(e, names, dtype, libdevice=True)[0]
    assert both(sympy.tanh(x0)) == ("(2 * tl.sigmoid(2 * a) - 1)", "libdevice.tanh(a)")
    interp, gpu = both(exprs.softplus(x0))
    assert "tl.log(1 + tl.exp(-tl.abs(a)))" in interp and "libdevice.log1p(" in gpu
    assert both(x0 ** sympy.Rational(5, 2))[1] == "libdevice.pow(a, 2.5)"
    assert both(x0 ** 3 / x1)[0] == "(a * a * a)/b"
    assert "propagate_nan=tl.PropagateNan.ALL" in both(sympy.Max(x0, x1))[0]
    hard = both(gc.ELEMENTWISE["hard_tanh"](x0))[0]
    assert hard == "tl.where((a <= -1), -1, tl.where((a >= 1), 1, a))"  # NaN falls to a
    assert both(0.1 * x0)[0] == "0.1*a"
    assert both(0.1 * x0 / N, "float64")[0] == \
        "tl.full((), 0.1, tl.float64)*a/tl.cast(N, tl.float64)"
    assert both(0.5 * x0, "float64")[0] == "0.5*a"   # exact in float32: left as it is
    assert print_expr(x0 / N, names)[1] == {"N"}
    with pytest.raises(NotImplementedError, match="asin"):
        print_expr(sympy.asin(x0), names)


# ---- every elementwise op --------------------------------------------------------------

POSITIVE = ("log", "sqrt")


def op_values(op: str, dtype: str) -> np.ndarray:
    x = np.random.default_rng(1).normal(size=(R, C)) * 3
    x[0, :7] = [0.0, 1.0, -1.0, 30.0, -30.0, 1e-3, -1e-3]  # kinks and large magnitudes
    return (np.abs(x) + 0.1 if op in POSITIVE else x).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(gc.ELEMENTWISE))
def test_elementwise_op(op, dtype):
    """op(x) vs the NumPy backend and torch; in float64 also d sum(op(x) * w) / dx vs
    torch autograd (the backward kernels)."""
    g = gc.Graph(f"op_{op}", dtype=dtype)
    x = g.input("x", (N, C))
    y = graphc_op(op)(x)
    outputs = [y]
    w = np.random.default_rng(2).normal(size=(R, C)).astype(dtype)
    if dtype == "float64":
        outputs += gc.grad(gc.sum(y * g.input("w", (N, C))), [x])
    feeds = {"x": op_values(op, dtype), **({"w": w} if dtype == "float64" else {})}
    got = triton_function(g, outputs)(**feeds)
    want = gc.function(g, outputs, backend="numpy")(**feeds)
    X = feeds["x"]
    xt = torch.tensor(X, requires_grad=True)
    yt = TORCH[op](xt)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **TOL[dtype])
    np.testing.assert_allclose(got[0], yt.detach().numpy(), **TOL[dtype])
    if dtype == "float64":
        (yt * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(got[1], xt.grad.numpy(), **TOL[dtype])


# ---- broadcasting, permuted views, NaN --------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_broadcast_inputs(dtype):
    """(R, C) with (C,), (R, 1) and () inputs, a const and a literal with no float32 form."""
    g = gc.Graph("bcast", dtype=dtype)
    x, b = g.input("x", (N, C)), g.input("b", (C,))
    r, s = g.input("r", (N, 1)), g.input("s", ())
    k = g.const(np.linspace(-1, 1, C), name="k")
    out = gc.tanh(x * b + r) - s * k + 0.1
    rng = np.random.default_rng(3)
    feeds = {"x": rng.normal(size=(R, C)), "b": rng.normal(size=C),
             "r": rng.normal(size=(R, 1)), "s": np.array(0.7)}
    feeds = {n: v.astype(dtype) for n, v in feeds.items()}
    got, = triton_function(g, [out])(**feeds)
    want = np.tanh(feeds["x"] * feeds["b"] + feeds["r"]) - feeds["s"] * np.linspace(-1, 1, C) \
        + 0.1
    np.testing.assert_allclose(got, want, **TOL[dtype])


def test_permuted_input_is_read_through_strides():
    g = gc.Graph("perm")
    x, z = g.input("x", (C, N)), g.input("z", (N, C))
    out = gc.sigmoid(x.T) * z
    f = triton_function(g, [out])
    X, Z = (np.random.default_rng(4).normal(size=s).astype(np.float32) for s in [(C, R), (R, C)])
    np.testing.assert_allclose(f(x=X, z=Z)[0], 1 / (1 + np.exp(-X.T)) * Z, **TOL["float32"])
    # a torch view, read through its strides: no copy
    assert ".permute((1, 0))" in f.source and re.search(r"\w+_stride1\b", f.source)


def test_nan_propagates_like_torch():
    """tl.maximum drops NaN by default; relu, max-reductions and maximum keep it."""
    g = gc.Graph("nan")
    x = g.input("x", (N, C))
    outs = [gc.relu(x), gc.max(x, axis=1), gc.max(x, axis=0), gc.maximum(x, 0.5)]
    X = np.random.default_rng(5).normal(size=(R, C)).astype(np.float32)
    X[3, 4] = np.nan
    got = triton_function(g, outs)(x=X)
    xt = torch.tensor(X)
    want = [torch.relu(xt), xt.amax(1), xt.amax(0), torch.maximum(xt, torch.tensor(0.5))]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b.numpy()))
        np.testing.assert_allclose(a, b.numpy(), **TOL["float32"])


# ---- rows kernels: softmax family, forward and backward --------------------------------

ROWS_CASES = {
    "softmax": (lambda z: gc.softmax(z), lambda t: torch.softmax(t, -1)),
    "log_softmax": (lambda z: gc.log_softmax(z), lambda t: torch.log_softmax(t, -1)),
}


@pytest.mark.parametrize("case", sorted(ROWS_CASES))
def test_rows_forward_and_backward(case):
    """y = f(z) and d sum(y * w) / dz in float64 against torch autograd; the forward is
    one rows kernel (the fused-softmax pattern), the backward another."""
    build_fn, torch_fn = ROWS_CASES[case]
    g = gc.Graph(case, dtype="float64")
    z = g.input("z", (N, C))
    y = build_fn(z)
    w = np.random.default_rng(6).normal(size=(R, C))
    dz, = gc.grad(gc.sum(y * g.input("w", (N, C))), [z])
    Z = np.random.default_rng(7).normal(size=(R, C)) * 4
    fwd = triton_function(g, [y])
    assert kinds(fwd) == ["rows"]
    both = triton_function(g, [y, dz])
    got_y, got_dz = both(z=Z, w=w)
    zt = torch.tensor(Z, requires_grad=True)
    yt = torch_fn(zt)
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(got_y, yt.detach().numpy(), **TOL["float64"])
    np.testing.assert_allclose(got_dz, zt.grad.numpy(), **TOL["float64"])


def test_softmax_cross_entropy_forward_backward():
    g = gc.Graph("sce", dtype="float64")
    z, y = g.input("z", (N, C)), g.input("y", (N,), dtype="int64")
    loss = gc.softmax_cross_entropy(z, y)
    dz, = gc.grad(loss, [z])
    Z = np.random.default_rng(8).normal(size=(R, C)) * 5
    Y = np.random.default_rng(9).integers(0, C, R)
    fwd = triton_function(g, [loss])
    assert kinds(fwd).count("rows") == 1
    got_loss, got_dz = triton_function(g, [loss, dz])(z=Z, y=Y)
    zt = torch.tensor(Z, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(Y))
    lt.backward()
    np.testing.assert_allclose(got_loss, lt.item(), **TOL["float64"])
    np.testing.assert_allclose(got_dz, zt.grad.numpy(), **TOL["float64"])


def test_rows_of_a_rank3_domain():
    """Softmax over the last axis of (B, T, C): rows are the flattened leading axes."""
    g = gc.Graph("rank3", dtype="float64")
    x = g.input("x", (N, 5, 7))
    X = np.random.default_rng(10).normal(size=(3, 5, 7))
    got, = triton_function(g, [gc.softmax(x)])(x=X)
    np.testing.assert_allclose(got, torch.softmax(torch.tensor(X), -1).numpy(), **TOL["float64"])


# ---- reduce kernels ----------------------------------------------------------------------

@pytest.mark.parametrize("fn,axis,keepdims", [
    ("sum", 0, False), ("sum", None, False), ("max", 0, True), ("min", (0, 2), False),
    ("sum", (0, 2), True), ("max", 1, False)])
def test_reductions_with_prologue(fn, axis, keepdims):
    g = gc.Graph("red", dtype="float64")
    x = g.input("x", (N, 6, 5))
    out = getattr(gc, fn)(gc.exp(x) * 2.0 - 1.0, axis=axis, keepdims=keepdims)
    X = np.random.default_rng(11).normal(size=(R, 6, 5))
    got, = triton_function(g, [out])(x=X)
    want = {"sum": np.sum, "max": np.max, "min": np.min}[fn](
        np.exp(X) * 2.0 - 1.0, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(got, want, **TOL["float64"])


def test_mean_is_a_reduce_kernel_with_an_epilogue():
    g = gc.Graph("mean")
    x = g.input("x", (N, C))
    f = triton_function(g, [gc.mean(gc.square(x), axis=0)])
    X = np.random.default_rng(12).normal(size=(R, C)).astype(np.float32)
    np.testing.assert_allclose(f(x=X)[0], np.mean(X ** 2, axis=0), **TOL["float32"])
    assert kinds(f) == ["reduce"]


# ---- matmul with its epilogue -------------------------------------------------------------

def test_matmul_bias_tanh():
    """tanh(x @ W + b): torch.matmul into a buffer, then one elementwise kernel."""
    g = gc.Graph("mm")
    x = g.input("x", (N, 23))
    h = gc.tanh(gc.linear(x, C, name="l1"))
    f = triton_function(g, [h])
    assert kinds(f) == ["matmul", "elementwise"]
    X = np.random.default_rng(13).normal(size=(R, 23)).astype(np.float32)
    want = np.tanh(X @ f["l1_W"] + f["l1_b"])
    np.testing.assert_allclose(f(x=X)[0], want, rtol=1e-5, atol=1e-5)
    assert "torch.matmul(x, l1_W, out=l1_mm)" in f.source


# ---- the generated source -----------------------------------------------------------------

def tanh_graph():
    g = gc.Graph("tanh_src")
    x = g.input("x", (N, C))
    return g, [gc.softplus(gc.tanh(x * 2.0))]


def source_of(interpret: bool) -> str:
    g, outs = tanh_graph()
    keep = [o.name for o in outs]
    f = fuse(optimize(g, keep), keep)
    return triton_backend.generate(f, keep, {}, memory.plan(f, keep), interpret=interpret)


def test_libdevice_only_for_a_gpu():
    """The interpreter lacks libdevice: tanh prints as 2*sigmoid(2x) - 1 there."""
    interp, gpu = source_of(True), source_of(False)
    assert "libdevice" not in interp and "tl.sigmoid(2 * " in interp
    assert "DEVICE = 'cpu'" in interp
    assert "libdevice.tanh(" in gpu and "libdevice.log1p(" in gpu
    assert "from triton.language.extra import libdevice" in gpu and "DEVICE = 'cuda'" in gpu


def test_source_is_readable_and_deterministic():
    src = source_of(True)
    assert src == source_of(True)
    header = re.search(r"# ---- (\w+): elementwise over \(N, 29\).*\n# nodes: (.*)\n", src)
    assert header, src
    name = header.group(1)
    assert name.startswith("fused_") and f"def {name}(x_ptr, " in src
    assert "tanh(2.0*x)" in src                      # the fused SymPy expression
    for word in ("offsets = pid.to(tl.int64) * BLOCK", "mask = offsets < n_elements",
                 "BLOCK: tl.constexpr", "tl.load(x_ptr + offsets, mask=mask)"):
        assert word in src
    compile(src, "generated", "exec")
    long_lines = [line for line in src.splitlines() if len(line) > 140]
    assert len(long_lines) <= 3, long_lines


def test_kernels_are_listed_with_their_source():
    g, outs = tanh_graph()
    f = triton_function(g, outs)
    k, = f.kernels
    assert k.kind == "elementwise" and k.source.startswith(f"# ---- {k.name}:")
    assert "@triton.jit" in k.source and k.nodes == tuple(f.module.KERNELS[0][2])


def test_node_names_cannot_capture_kernel_locals():
    """A node named like a kernel local (mask, offsets, x_ptr) gets another identifier."""
    g = gc.Graph("clash")
    x = g.input("x", (N, C))
    m = g.apply(lambda a: a * 2, [x], name="mask")
    o = g.apply(lambda a, b: a + b, [m, x], name="x_ptr")
    f = triton_function(g, [o, m], fused=False)
    X = np.ones((R, C), np.float32)
    got_o, got_m = f(x=X)
    np.testing.assert_array_equal(got_o, 3 * X)
    np.testing.assert_array_equal(got_m, 2 * X)


@pytest.mark.skipif(INTERPRET is False, reason="a GPU is present: no interpreter warning")
def test_interpreter_warns():
    with pytest.warns(UserWarning, match="Triton interpreter: for testing only, slow"):
        assert config.triton_interpret() is True


def test_triton_imported_before_interpreter_mode_is_a_clear_error():
    """A fresh process: torch's optimizer imports triton first, with TRITON_INTERPRET unset."""
    import subprocess
    import sys
    import textwrap
    if config.nvidia_driver_present():
        pytest.skip("with a GPU the interpreter is not used")
    script = textwrap.dedent("""
        import torch
        p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)
        torch.optim.Adam([p]).step()
        import graphc as gc
        g = gc.Graph("m")
        gc.function(g, [gc.tanh(g.input("x", (3,)))], backend="triton")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode != 0 and "set TRITON_INTERPRET=1" in done.stderr, done.stderr


def test_repeated_subexpressions_are_computed_once():
    """A chain's derivative repeats sigmoid(x) and tanh(..): sympy.cse names them once."""
    g = gc.Graph("cse")
    x = g.input("x", (64,))
    y = gc.softplus(gc.square(gc.tanh(x * gc.sigmoid(x))) + x, name="y")
    dx, = gc.grad(gc.sum(y), [x])
    f = triton_function(g, [y, dx])
    lines = [s.strip() for s in f.source.splitlines() if s.strip().startswith("d_x")]
    calls = [c for line in lines for c in re.findall(r"tl\.sigmoid\([^()]*\)", line.split("#")[0])]
    assert calls and len(calls) == len(set(calls)), lines
    assert any(line.startswith("d_x_c0 = ") for line in lines)
    X = np.linspace(-3, 3, 64).astype(np.float32)
    t = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    F.softplus(torch.tanh(t * torch.sigmoid(t)) ** 2 + t).sum().backward()
    np.testing.assert_allclose(f(x=X)[1], t.grad.numpy(), rtol=1e-5, atol=1e-5)
