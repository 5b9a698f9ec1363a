"""Losses and penalties against PyTorch (float64) on both backends: binary cross-entropy on
logits (logits +-100, every reduction, gradients w.r.t. logits and targets, and its
accuracy against a 60-digit reference), softmax cross-entropy and MSE at large logits,
L1/L2 penalties (values, gradients, L2 = torch's SGD weight_decay), L2's effect on
training, show_grad of a penalised loss, and the errors for bad arguments.

Tolerances (float64): vs PyTorch rtol 1e-12, and atol eps (2.2e-16) for BCE, whose
tiniest elements differ by less than that: torch gives log(1 + exp(-100)) = 0 where
graphc keeps 3.7e-44, and sigmoid(30) - 1 with 1e-3 relative error where graphc is exact
(the Triton interpreter, lacking log1p, rounds like torch in the value). Against the
60-digit reference graphc's BCE is held to 4 eps relative.
"""
from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.losses import bce_with_logits, l1_penalty, l2_penalty
from tests.backends import BACKENDS

# interpreter mode is set on import, before torch.optim imports triton (after that,
# Triton's own @jit helpers would not interpret)
from tests.triton_pipeline import INTERPRET  # noqa: F401

N = gc.sym("N")
EPS = np.finfo(np.float64).eps
RTOL, ATOL = 1e-12, EPS

# logits at and around the kink, and large enough that a naive form overflows
Z_SPECIAL = [-100.0, -30.0, -1e-12, 0.0, 1e-12, 30.0, 100.0, 100.0, -100.0, 30.0]
T_SPECIAL = [0.0, 0.3, 1.0, 0.5, 0.0, 1.0, 0.0, 1.0, 1.0, 0.7]


def bce_feeds(n_random: int = 14, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([Z_SPECIAL, rng.normal(0.0, 5.0, n_random)])
    t = np.concatenate([T_SPECIAL, rng.random(n_random)])
    return z.reshape(-1, 2), t.reshape(-1, 2)   # (N, 2): a batch of two logits each


def compile_bce(reduction: str, backend: str):
    """[loss, d sum(loss * R) / dz, ... / dt] for (N, 2) logits and targets."""
    g = gc.Graph(f"bce_{reduction}", dtype="float64")
    z, t, r = g.input("z", (N, 2)), g.input("t", (N, 2)), g.input("r", (N, 2))
    loss = bce_with_logits(z, t, reduction=reduction)
    scalar = gc.sum(loss * r) if reduction == "none" else loss
    return gc.function(g, [loss, *gc.grad(scalar, [z, t])], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch(reduction, backend):
    Z, T = bce_feeds()
    R = np.random.default_rng(1).normal(size=Z.shape)
    loss, gz, gt = compile_bce(reduction, backend)(z=Z, t=T, r=R)
    zt, tt = (torch.tensor(v, requires_grad=True) for v in (Z, T))
    want = F.binary_cross_entropy_with_logits(zt, tt, reduction=reduction)
    (want * torch.tensor(R)).sum().backward() if reduction == "none" else want.backward()
    assert np.isfinite(loss).all() and np.isfinite(gz).all()
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gz, zt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gt, tt.grad.numpy(), rtol=RTOL, atol=ATOL)


def exact_bce(z: float, t: float) -> tuple:
    """log(1 + e^z) - z*t and sigmoid(z) - t at 60 digits."""
    with mpmath.workdps(60):
        Z, T = mpmath.mpf(z), mpmath.mpf(t)
        return float(mpmath.log1p(mpmath.exp(Z)) - Z * T), float(1 / (1 + mpmath.exp(-Z)) - T)


def test_bce_is_accurate_to_a_few_eps():
    """Every term of the stable form is >= 0, so nothing cancels: 4 eps relative to the
    exact value even where the loss is 3.7e-44 or 9.4e-14 (torch: 0 and 1e-3 relative)."""
    Z, T = bce_feeds(n_random=30, seed=2)
    loss, gz, _ = compile_bce("none", "numpy")(z=Z, t=T, r=np.ones_like(Z))
    exact = np.array([exact_bce(z, t) for z, t in zip(Z.ravel(), T.ravel())])
    np.testing.assert_allclose(loss.ravel(), exact[:, 0], rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(gz.ravel(), exact[:, 1], rtol=4 * EPS, atol=1e-300)


def test_bce_gradient_at_zero_logit_is_sigmoid_minus_target():
    """z = 0 is max(z, 0)'s kink: the tie rule gives 1/2 - t = sigmoid(0) - t exactly."""
    T = np.array([[0.0, 0.25], [0.5, 1.0]])
    _, gz, gt = compile_bce("sum", "numpy")(z=np.zeros((2, 2)), t=T, r=np.ones((2, 2)))
    np.testing.assert_array_equal(gz, 0.5 - T)
    np.testing.assert_array_equal(gt, np.zeros((2, 2)))


def test_bce_errors_name_the_nodes():
    g = gc.Graph("bad")
    z, y = g.input("z", (N, 3)), g.input("y", (N, 3), dtype="int64")
    with pytest.raises(gc.DtypeError, match=r"bce_with_logits\('z', 'y'\): 'y' is int64"):
        bce_with_logits(z, y)
    with pytest.raises(gc.ShapeError, match=r"targets of shape \(N,\) differ from logits of "
                                            r"shape \(N, 3\)"):
        bce_with_logits(z, g.input("t", (N,)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        bce_with_logits(z, g.input("u", (N, 3)), reduction="avg")


# ---- softmax cross-entropy and MSE on both backends ---------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_at_large_logits(backend):
    """Logits up to +-100 (exp(100) overflows float32 and is 2.7e43 in float64): the max
    is subtracted first, so values and gradients are finite and equal torch's."""
    Z = np.array([[100.0, -100.0, 0.0], [-100.0, -100.0, 100.0], [30.0, 30.0, -30.0],
                  [0.5, -1.0, 2.0]])
    Y = np.array([1, 2, 0, 2])
    g = gc.Graph("ce", dtype="float64")
    z, y = g.input("z", (N, 3)), g.input("y", (N,), dtype="int64")
    loss = gc.softmax_cross_entropy(z, y)
    got_loss, got_dz = gc.function(g, [loss, *gc.grad(loss, [z])], backend=backend)(z=Z, y=Y)
    zt = torch.tensor(Z, requires_grad=True)
    want = F.cross_entropy(zt, torch.tensor(Y))
    want.backward()
    np.testing.assert_allclose(got_loss, want.item(), rtol=RTOL)
    np.testing.assert_allclose(got_dz, zt.grad.numpy(), rtol=RTOL, atol=1e-300)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("half,reduction", [(False, "mean"), (True, "sum")])
def test_mse_matches_torch(half, reduction, backend):
    """mse(p, t) = mean (or sum) of (p - t)^2; half=True is the course's 1/2 (t - y)^2."""
    rng = np.random.default_rng(3)
    P, T = rng.normal(size=(5, 2)) * 30, rng.normal(size=(5, 2))
    g = gc.Graph("mse", dtype="float64")
    p, t = g.input("p", (N, 2)), g.input("t", (N, 2))
    loss = gc.mse(p, t, half=half, reduction=reduction)
    got = gc.function(g, [loss, *gc.grad(loss, [p, t])], backend=backend)(p=P, t=T)
    pt, tt = (torch.tensor(v, requires_grad=True) for v in (P, T))
    want = (0.5 if half else 1.0) * F.mse_loss(pt, tt, reduction=reduction)
    want.backward()
    for a, b in zip(got, [want.detach().numpy(), pt.grad.numpy(), tt.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=RTOL)


# ---- penalties -----------------------------------------------------------------------------

def two_weights():
    rng = np.random.default_rng(4)
    W1, W2 = rng.normal(size=(3, 4)), rng.normal(size=(4,))
    W1[0, :2] = 0.0   # |w|'s kink: torch.abs gives the gradient 0 there
    return W1, W2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_penalty_value_and_gradient_match_torch(kind, backend):
    """l1 = weight * sum |w|, l2 = weight/2 * sum w^2, over both params (handle and name)."""
    W1, W2 = two_weights()
    g = gc.Graph("pen", dtype="float64")
    w1, w2 = g.param("W1", W1.shape, init=W1), g.param("W2", W2.shape, init=W2)
    fn = {"l1": l1_penalty, "l2": l2_penalty}[kind]
    pen = fn([w1, "W2"], 0.03)
    got = gc.function(g, [pen, *gc.grad(pen, [w1, w2])], backend=backend)()
    t1, t2 = (torch.tensor(v, requires_grad=True) for v in (W1, W2))
    if kind == "l1":
        want = 0.03 * (t1.abs().sum() + t2.abs().sum())
    else:
        want = 0.03 / 2 * (t1.square().sum() + t2.square().sum())
    want.backward()
    for a, b in zip(got, [want.detach().numpy(), t1.grad.numpy(), t2.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=0)
    if kind == "l1":
        np.testing.assert_array_equal(got[1][0, :2], [0.0, 0.0])


def mlp(penalty: float, seed: int = 0):
    """A 4-8-3 tanh MLP with softmax cross-entropy, plus l2_penalty over all its params."""
    g = gc.Graph("mlp", dtype="float64", seed=seed)
    x, y = g.input("x", (N, 4)), g.input("y", (N,), dtype="int64")
    logits = gc.linear(gc.tanh(gc.linear(x, 8, name="l1")), 3, name="l2")
    loss = gc.softmax_cross_entropy(logits, y, name="ce")
    if penalty:
        loss = loss + l2_penalty(g.params(), penalty, graph=g)
    return g, loss


def classification_data(n: int = 24, seed: int = 5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)


def test_l2_penalty_is_torchs_sgd_weight_decay():
    """loss + l2_penalty(params, wd) under SGD with momentum takes the same steps as
    torch.optim.SGD(weight_decay=wd) on the unpenalised loss: d/dw (wd/2 w^2) = wd w."""
    wd, lr, momentum = 0.05, 0.2, 0.9
    g, loss = mlp(penalty=wd)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=lr, momentum=momentum), backend="numpy")
    names = g.params()
    ts = {n: torch.tensor(g.attrs(n)["value"], requires_grad=True) for n in names}
    opt = torch.optim.SGD(ts.values(), lr=lr, momentum=momentum, weight_decay=wd)
    X, Y = classification_data()
    for _ in range(5):
        step(x=X, y=Y)
        opt.zero_grad()
        h = torch.tanh(torch.tensor(X) @ ts["l1_W"] + ts["l1_b"])
        F.cross_entropy(h @ ts["l2_W"] + ts["l2_b"], torch.tensor(Y)).backward()
        opt.step()
    for n in names:
        np.testing.assert_allclose(step[n], ts[n].detach().numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=n)


def test_training_with_l2_shrinks_the_weights():
    """Same init, data and steps: with the penalty every weight matrix ends up smaller (in
    Frobenius norm) than without, and the unpenalised loss still falls."""
    X, Y = classification_data()
    norms, losses = {}, {}
    for wd in (0.0, 0.1):
        g, loss = mlp(penalty=wd)
        step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.5), backend="numpy")
        ce = step.function(["ce"])
        start = ce(x=X, y=Y)[0]
        for _ in range(200):
            step(x=X, y=Y)
        losses[wd] = (start, ce(x=X, y=Y)[0])
        norms[wd] = {n: np.linalg.norm(step[n]) for n in ("l1_W", "l2_W")}
    for n in ("l1_W", "l2_W"):
        assert norms[0.1][n] < 0.9 * norms[0.0][n], (n, norms)
    assert losses[0.1][1] < losses[0.1][0]


def test_show_grad_shows_the_penalty_term():
    """dL/dl1_W = (the data term) + (the penalty's term, 2 * 5e-5 * l1_W); without the
    penalty the second term is not there."""
    g, loss = mlp(penalty=1e-4)
    text = str(gc.show_grad(g, loss, wrt=["l1_W"]))
    head = text.splitlines()[0]
    assert re.fullmatch(r"dadd_\d+/dl1_W = (d_l1_W_sq_x0 \+ d_l1_mm_x1|d_l1_mm_x1 \+ "
                        r"d_l1_W_sq_x0) +\(4, 8\)", head), head
    assert re.search(r"^ +d_l1_W_sq_x0 = 2\*dadd_\d+/dl1_W_sq\*l1_W ", text, re.M), text
    assert re.search(r"^ +dadd_\d+/dl1_W_sq_sum = 5\.0e-5\*dadd_\d+/dadd_\d+ ", text, re.M), text
    plain, plain_loss = mlp(penalty=0.0)
    assert "l1_W_sq" not in str(gc.show_grad(plain, plain_loss, wrt=["l1_W"]))


@pytest.mark.filterwarnings("ignore:Triton")
def test_penalised_training_step_on_triton_matches_numpy():
    X, Y = classification_data(n=6)
    g, loss = mlp(penalty=0.01)
    steps = [gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend=b) for b in ("numpy",
                                                                                 "triton")]
    for _ in range(2):
        losses = [s(x=X, y=Y) for s in steps]
        assert losses[1] == pytest.approx(losses[0], rel=1e-12)
    for n in g.params():
        np.testing.assert_allclose(steps[1][n], steps[0][n], rtol=1e-12, atol=1e-15)


# ---- penalty errors ----------------------------------------------------------------------

def penalty_graph():
    g = gc.Graph("bad")
    x = g.input("x", (N, 3))
    y = g.input("y", (N,), dtype="int64")
    h = gc.linear(x, 2, name="l1")
    return g, x, y, h


@pytest.mark.parametrize("fn", [l1_penalty, l2_penalty])
def test_penalty_on_a_non_param_names_the_node(fn):
    g, x, y, h = penalty_graph()
    op = fn.__name__
    with pytest.raises(gc.GraphError, match=rf"{op}: node 'l1' \(N, 2\) is a map node; a "
                                            r"penalty applies to trainable params"):
        fn([g["l1_W"], h], 0.1)
    with pytest.raises(gc.GraphError, match=rf"{op}: node 'x' \(N, 3\) is a input node"):
        fn(["l1_W", "x"], 0.1, graph=g)
    with pytest.raises(gc.DtypeError, match=rf"{op}: node 'y' \(input\) is int64"):
        fn([y], 0.1)
    g.param("frozen", (2,), trainable=False)
    with pytest.raises(gc.GraphError, match=r"node 'frozen' \(2,\) is an untrained param"):
        fn(["frozen"], 0.1, graph=g)


@pytest.mark.parametrize("fn", [l1_penalty, l2_penalty])
def test_penalty_argument_errors(fn):
    g, x, y, h = penalty_graph()
    W = g["l1_W"]
    with pytest.raises(gc.GraphError, match="has no node 'l3_W'"):
        fn(["l3_W"], 0.1, graph=g)
    with pytest.raises(ValueError, match="are given by name; pass graph="):
        fn(["l1_W"], 0.1)
    with pytest.raises(ValueError, match="no params given"):
        fn([], 0.1)
    with pytest.raises(ValueError, match=r"a param is listed twice in \['l1_W', 'l1_W'\]"):
        fn([W, "l1_W"], 0.1)
    with pytest.raises(ValueError, match="weight must be >= 0, got -0.1"):
        fn([W], -0.1)
    with pytest.raises(ValueError, match="weight must be a finite real number, got nan"):
        fn([W], float("nan"))
    other = gc.Graph("other")
    with pytest.raises(gc.GraphError, match="'l1_W' belongs to graph 'bad', not 'other'"):
        fn([W], 0.1, graph=other)
