"""Numerical edge cases on both backends (NumPy, and Triton through its interpreter) against
PyTorch: values and gradients of log-sum-exp, softmax, log-softmax and cross-entropy with
+-inf, NaN and huge logits; activations at +-inf and NaN; NaN, inf and ties through
reductions and maximum/minimum; and, from the generated source alone (nothing allocated),
64-bit offsets for tensors past 2**31 elements and launch grids within CUDA's limits.

Kinks, +-30, +-100 and +-1000 for every activation are in tests/test_activations.py.
Comparisons are NaN-aware: the same NaN positions, the same +-inf, then rtol 1e-12 and
atol 1e-15 in float64 (the one-ulp differences of 1 - 3*(1/3) in log_softmax's gradient),
rtol 1e-5 and atol 1e-6 in float32 against torch in float64 on the same float32 inputs.
"""
from __future__ import annotations

import ast
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.builder import logsumexp
from graphc.codegen import triton as triton_backend
from graphc.passes import memory
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize
from tests.backends import BACKENDS
from tests.test_activations import ACTIVATIONS
from tests.triton_pipeline import INTERPRET

N = gc.sym("N")
TOL = {"float64": dict(rtol=1e-12, atol=1e-15), "float32": dict(rtol=1e-5, atol=1e-6)}
INF, NAN = math.inf, math.nan
# the gradient graphc gives at a NaN input where torch differs, and why
KNOWN_NAN_GRAD = {
    # torch's abs backward is sgn(x) with sgn(nan) = 0; graphc's is sign(x), nan at nan
    "abs": NAN,
}


def assert_like_torch(got, want, dtype: str, what: str = ""):
    """Same shape, NaN positions and infinities (with signs); finite values within TOL."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN at")
    inf = np.isinf(want)
    np.testing.assert_array_equal(np.isinf(got), inf, err_msg=f"{what}: inf at")
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"{what}: sign of inf")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], err_msg=what, **TOL[dtype])


def logits(dtype: str) -> np.ndarray:
    """Rows of 3 logits: all -inf, a +inf, huge finite, -inf beside finite, NaN, two +inf,
    one finite among -inf, equal large values, +inf with -inf, and a wide finite spread."""
    big = 1e300 if dtype == "float64" else 1e30
    rows = [[-INF, -INF, -INF], [INF, 0, 1], [big, 0, -big], [0, -INF, 1], [NAN, 0, 1],
            [INF, INF, 0], [-INF, 0, -INF], [1000, 1000, 1000], [INF, -INF, 0],
            [-1000, 0, 1000], [0.5, -2, 3]]
    return np.array(rows, dtype=dtype)


LABELS = np.array([0, 1, 2, 2, 1, 0, 1, 2, 2, 0, 1])

# name -> (graphc: (x, labels) -> node, torch: (t, labels) -> tensor)
LOGIT_CASES = {
    "logsumexp": (lambda x, lab: logsumexp(x), lambda t, lab: torch.logsumexp(t, -1)),
    "logsumexp_keepdims": (lambda x, lab: logsumexp(x, keepdims=True),
                           lambda t, lab: torch.logsumexp(t, -1, keepdim=True)),
    "softmax": (lambda x, lab: gc.softmax(x), lambda t, lab: torch.softmax(t, -1)),
    "log_softmax": (lambda x, lab: gc.log_softmax(x), lambda t, lab: torch.log_softmax(t, -1)),
    "cross_entropy": (gc.softmax_cross_entropy, F.cross_entropy),
    "cross_entropy_all": (gc.softmax_cross_entropy, F.cross_entropy),  # NaN rows included
    "bce_none": (lambda x, lab: gc.bce_with_logits(x, x.graph.map(0.25, [x]),
                                                   reduction="none"),
                 lambda t, lab: F.binary_cross_entropy_with_logits(
                     t, torch.full_like(t, 0.25), reduction="none")),
}


@functools.lru_cache(maxsize=None)
def logit_function(case: str, dtype: str, backend: str):
    """f(x, labels) -> [y, d sum(y) / dx] for (N, 3) logits."""
    g = gc.Graph(f"edge_{case}_{dtype}", dtype=dtype)
    x, lab = g.input("x", (N, 3)), g.input("labels", (N,), dtype="int64")
    y = LOGIT_CASES[case][0](x, lab)
    total = gc.sum(y) if y.shape else y
    outputs = [y, *gc.grad(total, [x])]
    if case.startswith("cross"):  # labels read: keep them an input either way
        outputs.append(lab)
    return gc.function(g, outputs, backend=backend)


def torch_value_and_grad(fn, xs: np.ndarray, *rest):
    t = torch.tensor(xs.astype(np.float64), requires_grad=True)
    y = fn(t, *rest)
    y.sum().backward()
    return y.detach().numpy(), t.grad.numpy()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("error:tl.where with a non-boolean")  # a cse'd bool cast to f64
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", LOGIT_CASES)
def test_logits_with_infinities_nan_and_huge_values(case, dtype, backend):
    """torch's answers, row by row: logsumexp(-inf row) = -inf and (+inf) = +inf, softmax
    with a +inf or an all -inf row is NaN, cross-entropy finite wherever torch's is."""
    xs = logits(dtype)
    if case == "cross_entropy":  # the finite rows only: one NaN row makes the mean NaN
        xs, labels = xs[[2, 3, 6, 7, 9, 10]], LABELS[[2, 3, 6, 7, 9, 10]]
    else:
        labels = LABELS
    value, grad = logit_function(case, dtype, backend)(x=xs, labels=labels)[:2]
    want_value, want_grad = torch_value_and_grad(LOGIT_CASES[case][1], xs,
                                                 torch.tensor(labels))
    if case == "bce_none":
        # torch computes (1 - t)*z + max(-z, 0) = -inf + inf = nan at z = -inf; graphc's
        # max(z,0)(1-t) - min(z,0)t + softplus(-|z|) gives the limit, +inf (for 0 < t)
        want_value[xs == -INF] = INF
    assert_like_torch(value, want_value, dtype, f"{case} value")
    assert_like_torch(grad, want_grad, dtype, f"{case} gradient")


@pytest.mark.parametrize("backend", BACKENDS)
def test_logsumexp_of_minus_inf_rows_is_minus_inf(backend):
    """The case a naive max-subtraction gets wrong (-inf - -inf = nan)."""
    f = logit_function("logsumexp", "float64", backend)
    value = f(x=np.full((2, 3), -INF), labels=np.zeros(2, np.int64))[0]
    np.testing.assert_array_equal(value, [-INF, -INF])


# ---- activations at +-inf and NaN --------------------------------------------------------

@functools.lru_cache(maxsize=None)
def activation(op: str, backend: str):
    g = gc.Graph(f"edge_act_{op.replace('.', '_').replace('-', 'm')}", dtype="float64")
    x = g.input("x", (N,))
    y = ACTIVATIONS[op][0](x)
    return gc.function(g, [y, *gc.grad(gc.sum(y), [x])], backend=backend)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ACTIVATIONS)
def test_activation_at_infinities_and_nan(op, backend):
    """sigmoid(+-inf) = 1/0 with gradient 0, softplus(inf) = inf with gradient 1, and NaN in
    gives NaN out for every activation, with torch's gradient at NaN (relu'(nan) = 1)."""
    xs = np.array([INF, -INF, NAN, 100.0, -100.0])
    value, grad = activation(op, backend)(x=xs)
    want_value, want_grad = torch_value_and_grad(lambda t: ACTIVATIONS[op][1](t), xs)
    if op in KNOWN_NAN_GRAD:
        want_grad[2] = KNOWN_NAN_GRAD[op]
    assert np.isnan(value[2]), f"{op}(nan) = {value[2]}"
    assert_like_torch(value, want_value, "float64", f"{op} value")
    assert_like_torch(grad, want_grad, "float64", f"{op} gradient")


# ---- NaN, infinities and ties through reductions and maximum/minimum ---------------------

REDUCTIONS = {
    "sum": (gc.sum, torch.sum), "mean": (gc.mean, torch.mean),
    "max": (gc.max, torch.amax), "min": (gc.min, torch.amin),
}
# NaN, +-inf, ties of two and of three, an all-equal row, a -0.0/0.0 tie
TABLE = np.array([[NAN, 1, 2, 0], [INF, 1, INF, -INF], [2, 2, 1, -1], [3, 3, 3, 3],
                  [-INF, -INF, -INF, 0], [-0.0, 0.0, -1, -2], [1, -5, 7, 0.25]])


@functools.lru_cache(maxsize=None)
def reduction(fn: str, axis: int, dtype: str, backend: str):
    g = gc.Graph(f"edge_reduce_{fn}_{axis}_{dtype}", dtype=dtype)
    x = g.input("x", (N, 4))
    y = REDUCTIONS[fn][0](x, axis=axis)
    return gc.function(g, [y, *gc.grad(gc.sum(y), [x])], backend=backend)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("fn", REDUCTIONS)
def test_reductions_propagate_nan_and_split_ties(fn, axis, dtype, backend):
    """NaN in a reduced row gives NaN (Triton's tl.max would drop it); a max's gradient is
    shared evenly by tied maxima, as torch.amax's (1/3 each in a float32 three-way tie)."""
    xs = TABLE.astype(dtype)
    value, grad = reduction(fn, axis, dtype, backend)(x=xs)
    want_value, want_grad = torch_value_and_grad(lambda t: REDUCTIONS[fn][1](t, axis), xs)
    assert_like_torch(value, want_value, dtype, f"{fn} value")
    assert_like_torch(grad, want_grad, dtype, f"{fn} gradient")
    if fn in ("max", "min"):  # the float32 tie count is exact, not computed in float32 only
        assert grad.dtype == np.dtype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_ties_follow_amax_not_max_dim(backend):
    """graphc documents torch.amax's rule (gc.max's docstring); torch.max(dim) gives the
    whole gradient to the first maximum instead. This pins which one graphc follows."""
    xs = np.array([[2.0, 2.0, 1.0], [5.0, 5.0, 5.0]])
    g = gc.Graph("edge_ties", dtype="float64")
    x = g.input("x", (N, 3))
    y = gc.max(x, axis=1)
    grad = gc.function(g, gc.grad(gc.sum(y), [x]), backend=backend)(x=xs)[0]
    np.testing.assert_allclose(grad, [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-15)
    t = torch.tensor(xs, requires_grad=True)
    torch.max(t, 1).values.sum().backward()
    assert not np.allclose(t.grad.numpy(), grad)  # [[1, 0, 0], [1, 0, 0]]


PAIRS = (np.array([NAN, 0.0, 1.0, 2.0, INF, -INF, NAN, -0.0]),
         np.array([0.0, NAN, 1.0, 1.0, INF, 3.0, NAN, 0.0]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_minimum_with_nan_and_ties(fn, backend):
    """NaN on either side gives NaN and gradient 1 to both sides; a tie (inf with inf
    included) gives each side 1/2; as torch.maximum/minimum."""
    g = gc.Graph(f"edge_{fn}", dtype="float64")
    a, b = g.input("a", (N,)), g.input("b", (N,))
    y = getattr(gc, fn)(a, b)
    value, da, db = gc.function(g, [y, *gc.grad(gc.sum(y), [a, b])], backend=backend)(
        a=PAIRS[0], b=PAIRS[1])
    ta, tb = (torch.tensor(v, requires_grad=True) for v in PAIRS)
    ty = getattr(torch, fn)(ta, tb)
    ty.sum().backward()
    assert_like_torch(value, ty.detach().numpy(), "float64", f"{fn} value")
    assert_like_torch(da, ta.grad.numpy(), "float64", f"{fn} d/da")
    assert_like_torch(db, tb.grad.numpy(), "float64", f"{fn} d/db")


# ---- 64-bit offsets and launch grids, from the generated source --------------------------

BIG = (1 << 16, (1 << 15) + 3)  # 2**31 + 196608 elements: offsets pass int32


def triton_source(graph, outputs) -> str:
    """The Triton module's source (generation only: no tensor is allocated)."""
    names = [o.name for o in outputs]
    g = fuse(optimize(graph, names), names)
    plan = memory.plan(g, names, {})
    return triton_backend.generate(g, names, {}, plan, title=graph.name, interpret=INTERPRET)


def big_graph(shape):
    """One kernel of each kind over `shape`: elementwise, rows (softmax), reduce (axis 0),
    and a full sum (one program: split in chunks when the size may be large)."""
    g = gc.Graph("edge_big")
    x, y = g.input("x", shape), g.input("y", shape[::-1])  # y's map cannot join x's rows
    outs = [gc.tanh(y) * 2 + 1, gc.softmax(x), gc.sum(x, axis=0), gc.max(x * x, axis=0),
            gc.transpose(x) * y,  # a strided load: idx * stride in int64 too
            gc.sum(gc.exp(y))]
    return g, outs


def jit_functions(tree) -> list:
    return [f for f in tree.body if isinstance(f, ast.FunctionDef) and any(
        ast.unparse(d).startswith("triton.jit") for d in f.decorator_list)
        and any("program_id" in ast.unparse(s) for s in f.body)]


def is_int64_cast(node, parents) -> bool:
    """node.to(tl.int64)"""
    up = parents.get(node)
    call = parents.get(up)
    return isinstance(up, ast.Attribute) and up.attr == "to" and isinstance(call, ast.Call) \
        and [ast.unparse(a) for a in call.args] == ["tl.int64"]


def uncast_program_ids(fn) -> list:
    """Uses of tl.program_id(..) that reach arithmetic before a cast to int64."""
    parents = {c: p for p in ast.walk(fn) for c in ast.iter_child_nodes(p)}
    bad = []
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "tl.program_id"):
            continue
        if is_int64_cast(node, parents):
            continue
        assign = parents.get(node)
        if not (isinstance(assign, ast.Assign) and isinstance(assign.targets[0], ast.Name)):
            bad.append(ast.unparse(parents.get(node, node)))
            continue
        var = assign.targets[0].id
        bad += [ast.unparse(parents[u]) for u in ast.walk(fn) if isinstance(u, ast.Name)
                and u.id == var and isinstance(u.ctx, ast.Load) and not is_int64_cast(u, parents)]
    return bad


@pytest.mark.parametrize("shape", [BIG, (N, 3)], ids=["2**31+", "symbolic"])
def test_offsets_are_int64_before_any_multiplication(shape):
    source = triton_source(*big_graph(shape))
    tree = ast.parse(source)
    kernels = jit_functions(tree)
    table = next(s.value for s in tree.body if isinstance(s, ast.Assign)
                 and ast.unparse(s.targets[0]) == "KERNELS")
    kinds = {kind for _, kind, _ in ast.literal_eval(table)}
    assert {"elementwise", "rows", "reduce"} <= kinds, kinds
    assert kernels
    for fn in kernels:
        assert uncast_program_ids(fn) == [], (fn.name, uncast_program_ids(fn))
        assert "program_id(2)" not in ast.unparse(fn)
        for line in ast.unparse(fn).splitlines():   # column and tile indices are int64 too
            if line.strip().startswith(("cols = ", "m = ", "kk = ")):
                assert "tl.int64" in line, (fn.name, line)
        if "program_id(1)" in ast.unparse(fn):   # a split reduction's chunk, and only that
            assert "n_splits" in [a.arg for a in fn.args.args], fn.name


def launches(source: str) -> list:
    """(kernel name, grid source) for every `kernel[grid](...)` in run()."""
    tree = ast.parse(source)
    jit = {f.name for f in jit_functions(tree)}
    run = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "run")
    return [(n.value.id, n.slice) for n in ast.walk(run)
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in jit]


def test_launch_grids_stay_within_cuda_limits():
    """CUDA allows 2**31 - 1 blocks on a grid's x axis and 65535 on y and z: launches are
    one-dimensional within the x limit even for a tensor of more than 2**31 elements, but
    for a split reduction's chunks on y, at most MAX_SPLITS of them."""
    from types import SimpleNamespace

    from graphc.codegen.triton.reduce import MAX_SPLITS
    source = triton_source(*big_graph(BIG))
    found = launches(source)
    assert len(found) >= 4 and "n_splits" in source   # the full sum over 2**31+ is split
    from graphc import triton_host
    helpers = {"grid_1d": triton_host.grid_1d, "n_splits": MAX_SPLITS,
               "triton": SimpleNamespace(cdiv=triton_host.cdiv)}
    for name, grid in found:
        value = eval(compile(ast.Expression(grid), "<grid>", "eval"), helpers)  # our own source
        assert isinstance(value, tuple) and 0 < value[0] <= 2 ** 31 - 1, (name, value)
        assert len(value) == 1 or (len(value) == 2 and ast.unparse(grid).endswith("n_splits)")
                                   and MAX_SPLITS <= 65535), (name, ast.unparse(grid))
