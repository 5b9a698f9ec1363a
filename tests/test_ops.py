"""Every elementwise op (gc.ELEMENTWISE) against independent references: values and first
derivatives vs PyTorch (float64), derivatives vs central differences, PyTorch's kink
conventions, large inputs, second derivatives vs closed forms, and the stable derivative
overrides vs sympy.diff.

Tolerances (float64 throughout):
  vs PyTorch values and autograd: rtol 1e-12, atol 1e-14 (two implementations of the same
  formula; elu's exp(x)-1 against torch's expm1 costs ~1e-16 absolute near 0).
  vs central differences: h = 1e-6, rtol 1e-6, atol 1e-8 (truncation ~h^2, rounding ~eps/h).
  second derivatives vs closed forms: rtol 1e-10, atol 1e-14.
"""
from __future__ import annotations

import functools

import mpmath
import numpy as np
import pytest
import sympy
import torch

import graphc as gc
from graphc import exprs
from tests.torch_reference import pair

RTOL_TORCH, ATOL_TORCH = 1e-12, 1e-14
H, RTOL_FD, ATOL_FD = 1e-6, 1e-6, 1e-8

# name -> (graphc builder, torch reference, domain of inputs: "real" or "positive"); every
# builder op with its defaults, from tests/torch_reference.py, and two parameter variants
POSITIVE = ("log", "sqrt")
OPS = {
    **{op: (*pair(op), "positive" if op in POSITIVE else "real") for op in gc.ELEMENTWISE},
    "leaky_relu_0.2": (*pair("leaky_relu", 0.2), "real"),
    "elu_0.5": (*pair("elu", 0.5), "real"),
}
KINKS = {  # points where the op is not differentiable: PyTorch's one-sided choice applies
    "relu": [0.0], "leaky_relu": [0.0], "leaky_relu_0.2": [0.0], "abs": [0.0],
    "hard_tanh": [-1.0, 0.0, 1.0], "elu": [0.0], "elu_0.5": [0.0], "softsign": [0.0],
}


def test_every_elementwise_op_is_covered():
    assert set(gc.ELEMENTWISE) <= set(OPS)


@functools.lru_cache(maxsize=None)
def compiled(op: str):
    """f(x=X) -> [op(X), d sum(op(X)) / dX] for a vector X of any length."""
    g = gc.Graph(f"op_{op}", dtype="float64")
    x = g.input("x", (gc.sym("N"),))
    y = OPS[op][0](x)
    gx, = gc.grad(gc.sum(y), [x])
    return gc.function(g, [y, gx])


def torch_value_and_grad(op: str, xs: np.ndarray):
    t = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    y = OPS[op][1](t)
    y.sum().backward()
    return y.detach().numpy(), t.grad.numpy()


def sample(op: str, n: int = 64, seed: int = 0) -> np.ndarray:
    """Random points of the op's domain, at least 1e-3 away from its kinks."""
    rng = np.random.default_rng(seed)
    if OPS[op][2] == "positive":
        return rng.uniform(0.05, 5.0, n)
    xs = rng.normal(0.0, 2.0, n)
    for k in KINKS.get(op, []):
        xs = np.where(np.abs(xs - k) < 1e-3, k + 0.5, xs)
    return xs


@pytest.mark.parametrize("op", OPS)
def test_value_and_gradient_match_torch(op):
    xs = sample(op)
    value, grad = compiled(op)(x=xs)
    want_value, want_grad = torch_value_and_grad(op, xs)
    np.testing.assert_allclose(value, want_value, rtol=RTOL_TORCH, atol=ATOL_TORCH)
    np.testing.assert_allclose(grad, want_grad, rtol=RTOL_TORCH, atol=ATOL_TORCH)


@pytest.mark.parametrize("op", OPS)
def test_gradient_matches_central_differences(op):
    xs = sample(op, n=32, seed=1)
    f = compiled(op)
    _, grad = f(x=xs)
    numeric = (f(x=xs + H)[0] - f(x=xs - H)[0]) / (2 * H)  # elementwise op: one pass per side
    np.testing.assert_allclose(grad, numeric, rtol=RTOL_FD, atol=ATOL_FD)


@pytest.mark.parametrize("op,point", [(op, k) for op, ks in KINKS.items() for k in ks])
def test_kink_follows_torch_convention(op, point):
    """relu'(0) = 0, |x|'(0) = 0, hardtanh'(+-1) = 0, leaky'(0) = slope, elu'(0) = alpha."""
    xs = np.array([point])
    value, grad = compiled(op)(x=xs)
    want_value, want_grad = torch_value_and_grad(op, xs)
    np.testing.assert_array_equal(value, want_value)
    np.testing.assert_array_equal(grad, want_grad)


def test_kink_conventions_spelled_out():
    """The PyTorch numbers the conventions above are checked against, stated plainly."""
    at = {op: compiled(op)(x=np.array(KINKS[op]))[1] for op in ("relu", "abs", "hard_tanh")}
    np.testing.assert_array_equal(at["relu"], [0.0])
    np.testing.assert_array_equal(at["abs"], [0.0])
    np.testing.assert_array_equal(at["hard_tanh"], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(compiled("leaky_relu_0.2")(x=np.array([0.0]))[1], [0.2])


@pytest.mark.parametrize("op", OPS)
def test_large_inputs_are_finite_and_match_torch(op):
    if OPS[op][2] == "positive":
        xs = np.array([1e-100, 1e-30, 1 / 30, 30.0, 100.0, 1e30])
    else:
        xs = np.array([-100.0, -30.0, 30.0, 100.0])
    value, grad = compiled(op)(x=xs)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
    want_value, want_grad = torch_value_and_grad(op, xs)
    np.testing.assert_allclose(value, want_value, rtol=RTOL_TORCH, atol=0)
    # gelu'(-30) = Phi(-30) - 30*phi(-30) = -4e-195: printed as erf/2 + 1/2 + x*phi(x), whose
    # first two terms cancel to 0 after x*phi(x) joined them (-0.5 + 0.5): 0 here
    atol = 1e-190 if op == "gelu" else 1e-300
    np.testing.assert_allclose(grad, want_grad, rtol=RTOL_TORCH, atol=atol)


@pytest.mark.parametrize("fn,other", [(gc.maximum, torch.maximum), (gc.minimum, torch.minimum)])
def test_binary_max_min_split_ties_like_torch(fn, other):
    """maximum/minimum: each side of a tie gets half the gradient, as torch.maximum."""
    a0, b0 = np.array([1.0, 2.0, 3.0, -1.0]), np.array([1.0, 0.5, 4.0, -1.0])
    g = gc.Graph("maxmin", dtype="float64")
    a, b = g.input("a", (4,)), g.input("b", (4,))
    y = fn(a, b)
    f = gc.function(g, [y, *gc.grad(gc.sum(y * y), [a, b])])
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a0, b0))
    ty = other(ta, tb)
    (ty * ty).sum().backward()
    value, ga, gb = f(a=a0, b=b0)
    np.testing.assert_array_equal(value, ty.detach().numpy())
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=RTOL_TORCH)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=RTOL_TORCH)
    assert "Heaviside" not in f.source


# ---- second derivatives ----------------------------------------------------------------

def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


SECOND = {  # closed forms of f''
    "tanh": lambda x: -2.0 * np.tanh(x) * (1.0 - np.tanh(x) ** 2),
    "sigmoid": lambda x: _sig(x) * (1.0 - _sig(x)) * (1.0 - 2.0 * _sig(x)),
    "softplus": lambda x: _sig(x) * (1.0 - _sig(x)),
}


@pytest.mark.parametrize("op", SECOND)
def test_second_derivative_matches_closed_form(op):
    """g2 = grad(sum(g1)) where g1 = grad(sum(f(x))): grad of a gradient works."""
    g = gc.Graph(f"second_{op}", dtype="float64")
    x = g.input("x", (gc.sym("N"),))
    g1, = gc.grad(gc.sum(OPS[op][0](x)), [x])
    g2, = gc.grad(gc.sum(g1), [x])
    f = gc.function(g, [g2])
    xs = np.concatenate([np.linspace(-6, 6, 25), [-100.0, -30.0, 30.0, 100.0]])
    got, = f(x=xs)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, SECOND[op](xs), rtol=1e-10, atol=1e-14)
    assert "Heaviside" not in f.source


# ---- derivative overrides and printing -------------------------------------------------

@pytest.mark.parametrize("fn", [exprs.sigmoid, exprs.softplus])
def test_stable_derivative_override_equals_sympy_diff(fn):
    """The override (written through sigmoid) is the derivative of the exp form."""
    x = sympy.Symbol("x", real=True)
    override = sympy.diff(fn(x), x)  # goes through fn.fdiff
    raw = sympy.diff(fn(x).rewrite(sympy.exp), x)
    assert sympy.simplify(override.rewrite(sympy.exp) - raw) == 0
    # and numerically, at 50 digits, where the raw form is still representable
    f_over = sympy.lambdify(x, override.rewrite(sympy.exp), "mpmath")
    f_raw = sympy.lambdify(x, raw, "mpmath")
    with mpmath.workdps(50):
        for p in np.linspace(-40, 40, 33):
            assert abs(f_over(mpmath.mpf(p)) - f_raw(mpmath.mpf(p))) < mpmath.mpf(10) ** -45


def test_sigmoid_derivative_is_stable_where_raw_diff_is_nan():
    raw = sympy.diff(exprs.sigmoid(exprs.arg(0)).rewrite(sympy.exp), exprs.arg(0))
    with np.errstate(all="ignore"):
        assert np.isnan(sympy.lambdify(exprs.arg(0), raw, "numpy")(np.array(-1000.0)))
    _, grad = compiled("sigmoid")(x=np.array([-1000.0, 1000.0]))
    np.testing.assert_array_equal(grad, [0.0, 0.0])


@pytest.mark.parametrize("op", OPS)
def test_no_heaviside_in_generated_code(op):
    src = compiled(op).source
    assert "Heaviside" not in src and "DiracDelta" not in src
