"""The one spelling table (graphc/functions.py): every function in it must be spelled by every
target and have a torch reference (tests/torch_reference.py), so a function added with a
spelling missing fails here. Each is printed by the NumPy, C (float, double and, unless
float-only, int64) and Triton (interpreter and libdevice) printers, folded by constfold,
and computed by each backend against torch.

Tolerances: float64 values rtol 1e-12, atol eps (2.2e-16: the interpreter's tanh and
expm1 are 2*sigmoid(2x) - 1 and exp(x) - 1). gelu and silu in float32 on C against float64
torch: |error| <= 8 float32 eps * (1 + |x|), room for libmvec's 4-ulp erff/expf/tanhf scaled
by the x that multiplies them, and for float32 rounding of the sums.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

import graphc as gc
from graphc import builder, exprs, functions
from graphc.codegen.c.printer import SIMD_MATH, print_expr as c_print
from graphc.codegen.triton.printer import print_expr as triton_print
from graphc.codegen.ufuncs import UfuncLowering
from graphc.passes.constfold import eval_map
from tests.backends import BACKENDS, C
from tests.torch_reference import TORCH, graphc_op, pair

# interpreter mode is set on import, before torch.optim imports triton
from tests.triton_pipeline import INTERPRET  # noqa: F401

EPS, EPS32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps
FUNCTIONS = list(functions.FUNCTIONS)
IDS = [fn.__name__ for fn in FUNCTIONS]
x0 = exprs.arg(0)


def reference(fn):
    """The torch reference of a function: by its builder op, else by its own name."""
    return TORCH[functions.FUNCTIONS[fn].builder or fn.__name__]


def points(fn) -> np.ndarray:
    xs = np.concatenate([[0.0, -0.0, 1e-12, -1e-12, 1.0, -1.0, 2.5, -2.5, 30.0, -30.0],
                         np.random.default_rng(0).normal(0.0, 2.0, 27)])
    return np.abs(xs) + 0.05 if fn is sympy.log else xs


def torch_of(fn, xs):
    return reference(fn)(torch.tensor(xs, dtype=torch.float64)).numpy()


# ---- coverage ------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_every_function_has_a_torch_reference(fn):
    assert (functions.FUNCTIONS[fn].builder or fn.__name__) in TORCH


def test_every_builder_op_has_a_builder_and_a_torch_reference():
    assert set(gc.ELEMENTWISE) <= set(TORCH)
    for op in gc.ELEMENTWISE:
        assert callable(graphc_op(op))
    for fn, spelled in functions.FUNCTIONS.items():
        if spelled.builder:
            assert gc.ELEMENTWISE[spelled.builder] is fn
            assert spelled.builder in gc.__all__, f"gc.{spelled.builder} is not exported"
            assert spelled.float_only == (spelled.builder in builder.FLOAT_ONLY)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_every_function_is_spelled_by_every_printer(fn):
    spelled, e = functions.FUNCTIONS[fn], fn(x0 + exprs.arg(1))
    for name, *_ in spelled.numpy_steps():
        assert callable(functions.numpy_ufunc(name)), f"{IDS}: no NumPy ufunc {name}"
    statements = UfuncLowering({x0: "a", exprs.arg(1): "b"}, {}, lambda k, d: f"s{k}{d}").lower(
        e, "o")
    assert statements and all("{" not in s.source() for s in statements)
    names = {"x0": "a", "x1": "b"}
    for dtype in ("float32", "float64"):
        for libdevice in (False, True):
            text = triton_print(e, names, dtype, libdevice)[0]
            assert "a + b" in text and "{" not in text, text
        text = c_print(e, names, dtype)
        assert "(a + b)" in text and "{" not in text, text
    assert set(spelled.simd) <= set(SIMD_MATH)
    if spelled.float_only:
        with pytest.raises(NotImplementedError, match="int64"):
            c_print(e, names, "int64")
    else:
        assert "(a + b)" in c_print(e, names, "int64")


# ---- values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_constant_folding_matches_torch(fn):
    xs = points(fn)
    got = eval_map(fn(x0), [xs], xs.shape)
    np.testing.assert_allclose(got, torch_of(fn, xs), rtol=1e-12, atol=EPS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_every_backend_matches_torch(fn, backend):
    g = gc.Graph(f"fn_{fn.__name__}", dtype="float64")
    x = g.input("x", (gc.sym("N"),))
    y = g.apply(fn, [x], hint=fn.__name__)
    xs = points(fn)
    got, = gc.function(g, [y], backend=backend)(x=xs)
    np.testing.assert_allclose(got, torch_of(fn, xs), rtol=1e-12, atol=EPS)


# ---- gelu and silu in float32 on C (libmvec's vector erff, expf, tanhf) ----------------------

@pytest.mark.parametrize("backend", [C])
@pytest.mark.parametrize("op", ["gelu", "gelu_tanh", "silu"])
def test_gelu_silu_float32_on_c(op, backend):
    g = gc.Graph(f"f32_{op}")
    x = g.input("x", (gc.sym("N"),))
    y = graphc_op(op)(x)
    f = gc.function(g, [y, *gc.grad(gc.sum(y), [x])], backend=backend)
    xs = np.concatenate([np.linspace(-12, 12, 997), [0.0, -0.0, 30.0, -30.0]])
    value, grad = f(x=xs.astype(np.float32))
    t = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    want = pair(op)[1](t)
    want.sum().backward()
    bound = 8 * EPS32 * (1 + np.abs(xs))
    assert np.all(np.abs(value - want.detach().numpy()) <= bound)
    assert np.all(np.abs(grad - t.grad.numpy()) <= bound)


def test_gelu_refuses_an_unknown_approximation():
    g = gc.Graph("gelu_bad")
    with pytest.raises(ValueError, match="approximate"):
        gc.gelu(g.input("x", (3,)), approximate="erf")
