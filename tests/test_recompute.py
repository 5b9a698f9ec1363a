"""The backend-aware recompute rule (passes/recompute.py): what a recompute costs per
backend, the decision fusion takes on small graphs, and values that do not change with
the rule (against torch in float64)."""
import numpy as np
import pytest
import sympy
import torch

import graphc as gc
from graphc import lowering
from graphc.functions import sigmoid
from graphc.passes.fuse import fuse, should_inline
from graphc.passes.recompute import RULES, TRANSCENDENTAL_OPS, rule_for
from graphc.runtime import Function
from graphc.triton_runtime import TritonFunction
from tests.backends import BACKENDS

X0, X1, X2 = sympy.symbols("x0 x1 x2")


def test_costs_per_backend():
    s = sigmoid(X0 + X1)
    assert rule_for(None).cost(s) == 2 == RULES["count_ops"].cost(s)   # count_ops
    assert rule_for("numpy").cost(s) == 5                 # add, negative, exp, add, divide
    assert rule_for("c").cost(s) == 1 + TRANSCENDENTAL_OPS == rule_for("triton").cost(s)
    assert rule_for("numpy").cost(X0 * X1 + X2) == 2 == rule_for("c").cost(X0 * X1 + X2)
    assert rule_for("c").cost(sympy.tanh(X0) * (1 - sympy.tanh(X0) ** 2)) == \
        2 * TRANSCENDENTAL_OPS + 3
    assert rule_for("numpy").cost(X0) == 0
    with pytest.raises(ValueError, match="no recompute rule for 'cuda'"):
        rule_for("cuda")


def shared_graph(make):
    """v = make(a, b) read by two maps of its shape and one broadcast producer w."""
    g = gc.Graph("shared", dtype="float64")
    a, b = g.input("a", (4, 6)), g.input("b", (4, 6))
    col = g.input("col", (4, 1))
    v = make(a, b)
    g.apply(lambda t: t * 3, [v], name="u1")
    g.apply(lambda t, q: t - q, [v, b], name="u2")
    w = g.apply(lambda t: t * 2, [col], name="w")
    g.apply(lambda t, q: t + q, [w, a], name="wide")
    return g, v.name


@pytest.mark.parametrize("make, expected", [
    (lambda a, b: gc.sigmoid(a + b),
     {None: True, "numpy": False, "c": False, "triton": False}),
    (lambda a, b: a + b, {None: True, "numpy": False, "c": True, "triton": True}),
    (lambda a, b: gc.exp(a), {None: True, "numpy": False, "c": False, "triton": False}),
    (lambda a, b: a.graph.apply(lambda p, q: p * q - p / q + q, [a, b]),   # one map, 4 ops
     {None: False, "numpy": False, "c": True, "triton": True}),
])
def test_decision_per_backend(make, expected):
    g, v = shared_graph(make)
    for backend, want in expected.items():
        ok, why = should_inline(g, v, "u1", backend=backend)
        assert ok == want, (backend, why)
        fused = fuse(g, ["u1", "u2", "wide"], backend=backend)
        assert (v in fused) != want, backend   # stored, or merged into both users
        if want:
            assert fused.attrs("u1")["fused_from"][-1] == v == fused.attrs("u2")["fused_from"][-1]


def test_broadcast_producer_per_backend():
    g, _ = shared_graph(lambda a, b: a + b)
    assert should_inline(g, "w", "wide")[0]                       # count_ops 1 <= 1
    assert should_inline(g, "w", "wide", backend="c")[0]          # one op per element
    ok, why = should_inline(g, "w", "wide", backend="numpy")      # a pass over (4, 6)
    assert not ok and why == ("too costly to recompute: ufunc passes 1 > 0 for a smaller "
                              "producer broadcast (4, 1) into (4, 6)")


def test_reasons_name_the_backends_units():
    g, v = shared_graph(lambda a, b: gc.sigmoid(a + b))
    assert should_inline(g, v, "u1", backend="numpy")[1] == \
        "too costly to recompute: ufunc passes 4 x 1 recomputes > 0 with 2 users"
    assert should_inline(g, v, "u1", backend="c")[1] == \
        f"too costly to recompute: ops {TRANSCENDENTAL_OPS} x 1 recomputes > 8 with 2 users"


def heavy_graph():
    """One sigmoid (count_ops 2: the old rule recomputed it) read by an elementwise output,
    a row sum and a tanh."""
    g = gc.Graph("heavy", dtype="float64")
    x, y = g.input("x", (5, 7)), g.input("y", (5, 7))
    v = gc.sigmoid(x + y, name="v")
    out = [v * y, gc.sum(v * x, axis=1), gc.tanh(v) - v]
    return g, out


def compiled(graph, outputs, backend, recompute):
    low = lowering.lower(graph, outputs, backend, recompute=recompute)
    loaded = lowering.load(low)
    cls = TritonFunction if backend == "triton" else Function
    declared = [(n, graph.attrs(n)) for n in graph.nodes_of("input")]
    return cls(loaded.module, low.fused, loaded.path, loaded.params, loaded.consts,
               declared=declared), low


def test_lowering_passes_its_backend_to_fuse():
    g, out = heavy_graph()
    kept = {b: "v" in lowering.lower(g, out, b, until="fused").fused
            for b in ("numpy", "c", "triton")}
    assert kept == {"numpy": True, "c": True, "triton": True}
    assert "v" not in lowering.lower(g, out, "c", until="fused", recompute="count_ops").fused
    with pytest.raises(ValueError, match="no recompute rule"):
        lowering.lower(g, out, "numpy", recompute="fast")


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_do_not_depend_on_the_rule(backend):
    g, out = heavy_graph()
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((5, 7)), "y": rng.standard_normal((5, 7))}
    tx, ty = (torch.tensor(feeds[k]) for k in ("x", "y"))
    v = torch.sigmoid(tx + ty)
    want = [v * ty, (v * tx).sum(1), torch.tanh(v) - v]
    for rule in ("count_ops", None):
        f, _ = compiled(g, out, backend, rule)
        for got, ref in zip(f(**feeds), want):
            np.testing.assert_allclose(np.asarray(got), ref.numpy(), rtol=1e-12, atol=1e-12)


def test_the_benchmark_compares_both_rules_on_a_small_graph():
    from graphc.bench import recompute as bench
    [(name, graph, outputs, feeds)] = [c for c in bench.cases(16, 8, 0)
                                       if c[0] == "sigmoid_rows"]

    def make(rule):
        f, low = bench.function(graph, outputs, "numpy", rule)
        return (lambda: f(feeds)), low
    row = bench.compare(name, make, "numpy", "quick")
    assert not row["same_code"] and row["ratio"] > 0 and row["old"]["n"] == 3 * 2
    assert "sigmoid_rows" in bench.report([row])
