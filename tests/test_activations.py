"""The course's activations on both backends (NumPy, and Triton through its interpreter)
against PyTorch in float64: values and gradients at random points, at and beside every
kink (0, -0.0, +-1e-12, +-1 for hard tanh), at +-30, +-100 and +-1000; parametric ReLU
(its slope's gradient too, against torch.nn.functional.prelu) and maxout (against the
same math in torch, ties included); and the errors for bad arguments.

Tolerances (float64): rtol 1e-12 and atol 0, except an absolute eps (2.2e-16) for the
(op, backend) pairs in KNOWN_ABS_ERROR, each with its cause. At exact kinks: equality.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.layers import maxout, prelu
from tests.backends import BACKENDS
from tests.torch_reference import pair

# interpreter mode is set on import, before torch.optim imports triton (after that,
# Triton's own @jit helpers would not interpret)
from tests.triton_pipeline import INTERPRET  # noqa: F401

N = gc.sym("N")
RTOL = 1e-12
EPS = np.finfo(np.float64).eps

# name -> (graphc builder, torch reference), from tests/torch_reference.py
ACTIVATIONS = {
    "sigmoid": pair("sigmoid"),
    "tanh": pair("tanh"),
    "relu": pair("relu"),
    "leaky_relu": pair("leaky_relu"),
    "leaky_relu_0.2": pair("leaky_relu", 0.2),
    "leaky_relu_-0.5": pair("leaky_relu", -0.5),
    "abs": pair("abs"),   # absolute-value rectification
    "elu": pair("elu"),
    "elu_0.5": pair("elu", 0.5),
    "softplus": pair("softplus"),
    "hard_tanh": pair("hard_tanh"),
    "softsign": pair("softsign"),
    "gelu": pair("gelu"),
    "gelu_tanh": pair("gelu_tanh"),
    "silu": pair("silu"),
}
KINKS = {"relu": [0.0], "leaky_relu": [0.0], "leaky_relu_0.2": [0.0], "leaky_relu_-0.5": [0.0],
         "abs": [0.0], "elu": [0.0], "elu_0.5": [0.0], "hard_tanh": [-1.0, 1.0],
         "softsign": [0.0]}
# (op, backend) -> absolute error allowed beside torch, and why
KNOWN_ABS_ERROR = {
    # tanh' = 1 - y^2 (in graphc and in torch): where y is near 1, an ulp of difference in
    # y between numpy's and torch's tanh becomes an absolute eps in the gradient
    ("tanh", "numpy"): EPS, ("tanh", "c"): EPS,   # C: glibc's vector tanh (libmvec)
    # the interpreter has no expm1: elu's alpha*expm1(x) is printed alpha*(exp(x) - 1),
    # an absolute error of eps*alpha near 0 (libdevice.expm1 on a GPU, np.expm1 on NumPy)
    ("elu", "triton"): EPS, ("elu_0.5", "triton"): EPS,
    # the interpreter has no libdevice: tanh is printed 2*sigmoid(2x) - 1 (absolute error
    # ~eps near 0) and log1p(u) as log(1 + u) (softplus(-30): absolute error ~eps)
    ("tanh", "triton"): EPS, ("softplus", "triton"): EPS,
    # gelu' = Phi(x) + x*phi(x), printed as erf(x/sqrt2)/2 + 1/2 + x*phi(x) (tanh form alike):
    # terms of size ~1/2 that cancel where it nears 0 (x near -0.75, and x << 0, where
    # gelu'(-30) = -4e-195 comes out 0), added in another order than torch's: ~eps/2
    **{(op, b): EPS for op in ("gelu", "gelu_tanh") for b in ("numpy", "c", "triton")},
}
SPECIAL = [0.0, -0.0, 1e-12, -1e-12, 1.0, -1.0, 1 + 1e-12, 1 - 1e-12, -1 + 1e-12, -1 - 1e-12,
           30.0, -30.0, 100.0, -100.0]


def points() -> np.ndarray:
    """Kinks and their neighbourhoods, large magnitudes, and random points."""
    return np.concatenate([SPECIAL, np.random.default_rng(0).normal(0.0, 3.0, 23)])


@functools.lru_cache(maxsize=None)
def compiled(op: str, backend: str):
    """f(x=X) -> [op(X), d sum(op(X)) / dX] for a vector X."""
    g = gc.Graph(f"act_{op.replace('.', '_').replace('-', 'm')}", dtype="float64")
    x = g.input("x", (N,))
    y = ACTIVATIONS[op][0](x)
    return gc.function(g, [y, *gc.grad(gc.sum(y), [x])], backend=backend)


def torch_value_and_grad(fn, xs: np.ndarray):
    t = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    return y.detach().numpy(), t.grad.numpy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ACTIVATIONS)
def test_value_and_gradient_match_torch(op, backend):
    xs = points()
    value, grad = compiled(op, backend)(x=xs)
    want_value, want_grad = torch_value_and_grad(ACTIVATIONS[op][1], xs)
    atol = KNOWN_ABS_ERROR.get((op, backend), 0.0)
    np.testing.assert_allclose(value, want_value, rtol=RTOL, atol=atol)
    np.testing.assert_allclose(grad, want_grad, rtol=RTOL, atol=atol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", KINKS)
def test_gradient_at_a_kink_is_torchs(op, backend):
    """Exactly PyTorch's one-sided choice, on both backends (-0.0 as well as 0.0)."""
    xs = np.array(KINKS[op] + [-k for k in KINKS[op]] + [-0.0])
    value, grad = compiled(op, backend)(x=xs)
    want_value, want_grad = torch_value_and_grad(ACTIVATIONS[op][1], xs)
    np.testing.assert_array_equal(value, want_value)
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kink_conventions_spelled_out(backend):
    """The values README's 'Conventions at kinks' states (PyTorch's): relu'(0) = 0,
    |x|'(0) = 0, leaky'(0) = slope, elu'(0) = alpha, softsign'(0) = 1, hard_tanh'(+-1) = 0."""
    at_zero = {"relu": 0.0, "abs": 0.0, "leaky_relu_0.2": 0.2, "elu_0.5": 0.5,
               "softsign": 1.0}
    for op, slope in at_zero.items():
        assert compiled(op, backend)(x=np.array([0.0]))[1][0] == slope, op
    np.testing.assert_array_equal(compiled("hard_tanh", backend)(x=np.array([-1.0, 1.0]))[1],
                                  [0.0, 0.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ACTIVATIONS)
def test_huge_inputs_stay_finite(op, backend):
    """+-1000: exp overflows inside the untaken side of a stable form, never in a result."""
    xs = np.array([-1000.0, 1000.0])
    value, grad = compiled(op, backend)(x=xs)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
    want_value, want_grad = torch_value_and_grad(ACTIVATIONS[op][1], xs)
    np.testing.assert_allclose(value, want_value, rtol=RTOL, atol=0)
    np.testing.assert_allclose(grad, want_grad, rtol=RTOL, atol=0)


# ---- parametric ReLU ---------------------------------------------------------------------

def prelu_case(per_channel: bool, backend: str, rank: int = 2):
    """graphc's prelu(x) and the gradients of sum(prelu(x) * R) w.r.t. x and the slope."""
    C = 5
    shape = (N, C) if rank == 2 else (N, 3, C)
    g = gc.Graph(f"prelu_{int(per_channel)}_{rank}", dtype="float64")
    x, r = g.input("x", shape), g.input("r", shape)
    y = prelu(x, name="act", init=0.25, per_channel=per_channel)
    slope = g["act_slope"]
    if per_channel:  # distinct slopes, so a mix-up of channels shows
        g.attrs("act_slope")["value"] = np.linspace(-0.5, 0.75, C)
    f = gc.function(g, [y, *gc.grad(gc.sum(y * r), [x, slope])], backend=backend)
    return f, g.attrs("act_slope")["value"].copy()


def prelu_feeds(rank: int):
    rng = np.random.default_rng(rank)
    X = rng.normal(0.0, 2.0, (4, 5) if rank == 2 else (4, 3, 5))
    X.reshape(-1)[:6] = [0.0, -0.0, 1e-12, -1e-12, 100.0, -100.0]
    return X, rng.normal(size=X.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_prelu_matches_torch_prelu(per_channel, backend):
    """Value and gradients w.r.t. x and the slope vs torch.nn.functional.prelu; slope
    shape () or (C,), torch's (1,) or (C,) with C = dim 1 = the last axis of (N, C)."""
    f, a = prelu_case(per_channel, backend)
    X, R = prelu_feeds(2)
    y, gx, ga = f(x=X, r=R)
    xt = torch.tensor(X, requires_grad=True)
    at = torch.tensor(np.atleast_1d(a), requires_grad=True)
    yt = F.prelu(xt, at)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=0)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=RTOL, atol=0)
    assert ga.shape == a.shape
    np.testing.assert_allclose(np.atleast_1d(ga), at.grad.numpy(), rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prelu_per_channel_uses_the_last_axis(backend):
    """(N, T, C): one slope per entry of the last axis (torch's channel axis is dim 1, so
    the reference is the formula where(x > 0, x, a*x) in torch)."""
    f, a = prelu_case(True, backend, rank=3)
    X, R = prelu_feeds(3)
    y, gx, ga = f(x=X, r=R)
    xt = torch.tensor(X, requires_grad=True)
    at = torch.tensor(a, requires_grad=True)
    yt = torch.where(xt > 0, xt, at * xt)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=0)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=RTOL, atol=0)
    np.testing.assert_allclose(ga, at.grad.numpy(), rtol=RTOL, atol=1e-14)


def test_prelu_slope_is_trained():
    """Three SGD steps move the slope as torch.optim.SGD moves nn.PReLU's weight."""
    g = gc.Graph("prelu_train", dtype="float64")
    x, t = g.input("x", (N, 3)), g.input("t", (N, 3))
    loss = gc.mse(prelu(x, name="act", init=0.25), t)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.5), backend="numpy")
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    act = torch.nn.PReLU(init=0.25).double()
    opt = torch.optim.SGD(act.parameters(), lr=0.5)
    for _ in range(3):
        step(x=X, t=T)
        opt.zero_grad()
        F.mse_loss(act(torch.tensor(X)), torch.tensor(T)).backward()
        opt.step()
    assert step["act_slope"] != 0.25
    np.testing.assert_allclose(step["act_slope"], act.weight.item(), rtol=RTOL)


# ---- maxout ------------------------------------------------------------------------------

def maxout_graph(backend: str, W=None):
    """maxout(x, 3 outputs, 4 pieces) with the gradients of sum(h * R) w.r.t. x, W, b."""
    g = gc.Graph("maxout", dtype="float64")
    x, r = g.input("x", (N, 5)), g.input("r", (N, 3))
    h = maxout(x, 3, 4, name="mo", init=W)
    if W is None:
        g.attrs("mo_b")["value"] = np.random.default_rng(5).normal(size=12)
    grads = gc.grad(gc.sum(h * r), [x, g["mo_W"], g["mo_b"]])
    f = gc.function(g, [h, *grads], backend=backend)
    return f, g.attrs("mo_W")["value"].copy(), g.attrs("mo_b")["value"].copy()


def torch_maxout(X, W, b, R):
    """The same math in torch: one linear map, groups of 4 columns, amax over each."""
    ts = [torch.tensor(v, requires_grad=True) for v in (X, W, b)]
    h = (ts[0] @ ts[1] + ts[2]).reshape(len(X), 3, 4).amax(-1)
    (h * torch.tensor(R)).sum().backward()
    return [h.detach().numpy()] + [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxout_matches_torch(backend):
    f, W, b = maxout_graph(backend)
    rng = np.random.default_rng(6)
    X, R = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    for got, want in zip(f(x=X, r=R), torch_maxout(X, W, b, R)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxout_ties_share_the_gradient_like_amax(backend):
    """Pieces 0 and 1 of output 0 have equal weights and biases: both are the max, and each
    gets half of the gradient (torch.amax's rule; torch.max(dim) would pick one)."""
    W = np.random.default_rng(7).normal(size=(5, 12))
    W[:, 1] = W[:, 0]
    W[:, 2:4] = -10.0 * np.abs(W[:, 0:1])   # far below pieces 0 and 1 for x >= 0
    f, W, b = maxout_graph(backend, W=W)
    X = np.abs(np.random.default_rng(8).normal(size=(4, 5)))
    R = np.ones((4, 3))
    got = f(x=X, r=R)
    want = torch_maxout(X, W, b, R)
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=RTOL, atol=1e-14)
    dW = got[2]
    np.testing.assert_allclose(dW[:, 0], dW[:, 1], rtol=RTOL)
    np.testing.assert_allclose(dW[:, 0], 0.5 * X.sum(axis=0), rtol=RTOL)


def test_maxout_is_built_from_primitives():
    g = gc.Graph("mo")
    maxout(g.input("x", (N, 5)), 3, 2, name="mo")
    assert [g.attrs(n)["op"] for n in g.topo()] == \
        ["input", "param", "matmul", "param", "map", "reshape", "reduce"]
    assert g["mo_pieces"].shape == (N, 3, 2)
    assert g["mo"].shape == (N, 3) and g["mo_W"].shape == (5, 6)


# ---- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["0.1", float("nan"), float("inf"), True, None])
def test_bad_slope_or_alpha_names_the_node(bad):
    g = gc.Graph("bad")
    h = g.input("h", (2,))
    with pytest.raises(ValueError, match=r"leaky_relu of 'h': slope must be a finite real"):
        gc.leaky_relu(h, bad)
    with pytest.raises(ValueError, match=r"elu of 'h': alpha must be a finite real"):
        gc.elu(h, bad)
    with pytest.raises(ValueError, match=r"prelu 'p' of 'h': init must be a finite real"):
        prelu(h, name="p", init=bad)


def test_slope_may_not_be_a_node():
    g = gc.Graph("bad")
    h = g.input("h", (2,))
    with pytest.raises(ValueError, match="slope must be a finite real number, got <Node"):
        gc.leaky_relu(h, g.param("s", ()))


def test_prelu_per_channel_needs_a_concrete_last_axis():
    g = gc.Graph("bad")
    with pytest.raises(ValueError, match=r"prelu 'p' of 'x': per_channel needs a concrete"):
        prelu(g.input("x", (3, N)), name="p", per_channel=True)
    with pytest.raises(ValueError, match="per_channel needs a concrete last axis"):
        prelu(g.input("s", ()), name="q", per_channel=True)


@pytest.mark.parametrize("out_features,pieces,message", [
    (3, 1, "pieces must be an int >= 2, got 1"),
    (3, 2.0, "pieces must be an int >= 2, got 2.0"),
    (3, True, "pieces must be an int >= 2, got True"),
    (0, 2, "out_features must be an int >= 1, got 0"),
])
def test_bad_maxout_arguments_name_the_node(out_features, pieces, message):
    g = gc.Graph("bad")
    with pytest.raises(ValueError, match=rf"maxout 'mo' of 'x': {message}"):
        maxout(g.input("x", (N, 4)), out_features, pieces, name="mo")


def test_maxout_of_a_scalar_is_a_shape_error():
    g = gc.Graph("bad")
    with pytest.raises(gc.ShapeError, match="maxout 'mo' of 's': x must have a feature axis"):
        maxout(g.input("s", ()), 2, 2, name="mo")
