"""Tests of the fusion pass: the fused graph computes what the original does (reference
interpreter and the NumPy backend) and has the kernels its docstring promises (counts and
kinds per pattern), and every fusion decision can be explained."""
from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

from graphc import builder as B, exprs, shapes
from graphc.codegen import numpy as numpy_backend
from graphc.graph import Graph
from graphc.optim import SGD
from graphc.passes import memory
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import Kernel, explain, fuse, should_inline
from graphc.passes.fuse_groups import VIEWS, computes, is_row_reduction
from graphc.passes.pipeline import optimize
from graphc.passes.validate import validate
from graphc.printing import format_graph, format_kernels
from tests.reference import bind_dims, evaluate
from tests.test_passes import STEP, random_graph, signature

X0, X1, X2 = exprs.args(3)
N = shapes.sym("N")


# ---- helpers -------------------------------------------------------------------------------

def fused(g: Graph, keep: list) -> Graph:
    """The pipeline as api will run it: optimize, then fuse; checked on the way."""
    f = fuse(optimize(g, keep), keep)
    validate(f)
    check_kernels(f, keep)
    return f


def kernels(f: Graph) -> list:
    return f.nx.graph["kernels"]


def kinds(f: Graph) -> Counter:
    return Counter(k.kind for k in kernels(f))


def check_kernels(f: Graph, keep) -> None:
    """Each computing node in exactly one kernel, kernels well formed and in a valid order,
    and topo() listing them in that order, members together."""
    owner: dict = {}
    for k in kernels(f):
        for n in k.nodes:
            assert n not in owner, f"{n} in {owner.get(n)} and {k.name}"
            owner[n] = k.name
            assert f.attrs(n)["kernel"] == k.name
    for n in f.nx.nodes:
        assert (n in owner) == computes(f, n), n
    assert [n for n in f.topo() if n in owner] == [n for k in kernels(f) for n in k.nodes]
    ready = {n for n in f.nx.nodes if not computes(f, n) and f.attrs(n)["op"] not in VIEWS}
    for k in kernels(f):
        inside = set(k.nodes)
        for n in k.nodes:
            for a in f.args(n):
                assert a in inside or memory.base_of(f, a) in ready, f"{k.name} reads {a} early"
        ready |= inside
        assert k.inputs == sorted({a for n in k.nodes for a in f.args(n)} - inside,
                                  key=lambda n: f.attrs(n)["index"])
        assert k.outputs == [n for n in k.nodes if n in keep or set(f.users(n)) - inside]
        check_kind(f, k)


def check_kind(f: Graph, k: Kernel) -> None:
    ops = [f.attrs(n)["op"] for n in k.nodes]
    reductions = [n for n, op in zip(k.nodes, ops) if op == "reduce"]
    if k.kind == "matmul":
        assert ops == ["matmul"]
    elif k.kind == "elementwise":
        assert set(ops) == {"map"} and len({f.attrs(n)["shape"] for n in k.nodes}) == 1
    elif k.kind == "rows":
        assert reductions and all(is_row_reduction(f, r) for r in reductions)
    else:
        assert k.kind == "reduce" and len(reductions) == 1


def assert_close(got: list, want: list, rtol=1e-9, atol=1e-12) -> None:
    for g_, w in zip(got, want):
        np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol, equal_nan=True)


def run_numpy(g: Graph, outputs: list, feeds: dict, updates: dict | None = None):
    """Generate the NumPy module for g (as api._build does) and run it once: (outputs,
    params after the in-place updates)."""
    updates = updates or {}
    plan = memory.plan(g, outputs, updates)
    namespace: dict = {}
    exec(compile(numpy_backend.generate(g, outputs, updates, plan), "<fused>", "exec"),
         namespace)
    sizes = {str(d): v for d, v in bind_dims(g, feeds).items()}
    buf = namespace["allocate"](*[sizes.get(d, 1) for d in namespace["DIMS"]])  # unread: any
    params = {n: g.attrs(n)["value"].copy() for n in g.params()}
    consts = {n: g.attrs(n)["value"] for n in g.nodes_of("const")}
    out = namespace["run"](*[feeds[n] for n in namespace["INPUTS"]], params, consts, buf)
    return [np.array(o) for o in out], params


def check_meaning(g: Graph, f: Graph, feeds: dict, keep: list, rtol=1e-9) -> None:
    """fused == original by the reference interpreter, and by the NumPy backend."""
    want = evaluate(g, feeds, keep)
    assert_close(evaluate(f, feeds, keep), want, rtol=rtol)
    assert_close(run_numpy(f, keep, feeds)[0], want, rtol=max(rtol, 1e-9))


def rows_input(c: int = 5, labels: bool = False):
    g = Graph("rows", dtype="float64")
    z = g.input("z", (N, c))
    return (g, z, g.input("y", (N,), dtype="int64")) if labels else (g, z)


def rows_feeds(n: int = 7, c: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"z": rng.normal(size=(n, c)) * 3, "y": rng.integers(0, c, size=n)}


# ---- patterns: kernel counts ---------------------------------------------------------------

def test_linear_tanh_is_one_matmul_and_one_elementwise_epilogue():
    g = Graph("lin", dtype="float64")
    x = g.input("x", (N, 4))
    B.tanh(B.linear(x, 3, name="l1"), name="h")
    f = fused(g, ["h"])
    assert kinds(f) == {"matmul": 1, "elementwise": 1}
    mm, epi = kernels(f)
    assert (mm.name, mm.nodes, epi.nodes, epi.inputs) == ("matmul_0", ["l1_mm"], ["h"],
                                                          ["l1_mm", "l1_b"])
    assert epi.name == "fused_add_tanh_1" and f.attrs("h")["expr"] == sympy.tanh(X0 + X1)
    check_meaning(g, f, {"x": np.random.default_rng(1).normal(size=(6, 4))}, ["h"])


def chain_graph():
    """A 6-op activation chain over x (N, 8) and loss = sum of it."""
    g = Graph("chain", dtype="float64")
    h = g.input("x", (N, 8))
    for op in ("tanh", "sigmoid", "softsign", "sin", "softplus"):
        h = B.elementwise(op, h)
    g.apply(lambda a: 2 * a - 1, [h], name="y")
    B.sum(g["y"], name="loss")
    return g


def test_activation_chain_is_one_kernel_forward_and_one_backward():
    g = chain_graph()
    feeds = {"x": np.random.default_rng(2).normal(size=(5, 8))}
    f = fused(g, ["y"])
    assert kinds(f) == {"elementwise": 1} and len(f.nodes_of("map")) == 1
    check_meaning(g, f, feeds, ["y"])
    g2, (dx,) = autodiff(g, "loss", ["x"])
    back = fused(g2, [dx])
    assert kinds(back) == {"elementwise": 1}
    check_meaning(g2, back, feeds, [dx])
    both = fused(g2, ["loss", dx])   # forward and backward: one kernel plus the loss sum
    assert kinds(both) == {"elementwise": 1, "reduce": 1}
    assert kernels(both)[0].inputs == ["x"] and len(both) == 5  # the seed 1 is folded in
    check_meaning(g2, both, feeds, ["loss", dx])


@pytest.mark.parametrize("make", [B.softmax, B.log_softmax])
def test_softmax_and_log_softmax_forward_are_one_rows_kernel(make):
    g, z = rows_input()
    make(z, name="out")
    f = fused(g, ["out"])
    assert kinds(f) == {"rows": 1}
    k, = kernels(f)
    assert k.name.startswith("rows_max_exp_sum") and k.inputs == ["z"] and k.outputs == ["out"]
    check_meaning(g, f, rows_feeds(), ["out"])


def sce_graph():
    g, z, y = rows_input(labels=True)
    B.softmax_cross_entropy(z, y, name="loss")
    return g


def test_softmax_cross_entropy_forward_is_one_rows_kernel_plus_the_batch_mean():
    g = sce_graph()
    f = fused(g, ["loss"])
    assert kinds(f) == {"rows": 1, "reduce": 1}
    rows, mean = kernels(f)
    assert rows.kind == "rows" and mean.kind == "reduce" and mean.outputs == ["loss"]
    assert len(mean.nodes) == 2   # the batch sum and its division by N, one kernel
    check_meaning(g, f, rows_feeds(), ["loss"])


def test_softmax_cross_entropy_backward_is_one_rows_kernel():
    g = sce_graph()
    g2, (dz,) = autodiff(g, "loss", ["z"])
    back = fused(g2, [dz])
    assert kinds(back) == {"rows": 1}     # the seed 1/N folds in: no scalar kernel
    check_meaning(g2, back, rows_feeds(), [dz])
    both = fused(g2, ["loss", dz])        # forward and backward rows share one kernel
    assert kinds(both) == {"rows": 1, "reduce": 1}
    assert kernels(both)[0].outputs == [kernels(both)[1].inputs[0], dz]
    check_meaning(g2, both, rows_feeds(), ["loss", dz])


def test_sibling_maps_share_one_kernel_with_two_outputs():
    g = Graph("sib", dtype="float64")
    a = g.input("a", (N, 6))
    t = B.tanh(a, name="t")
    g.apply(lambda v: 1 - v ** 2, [t], name="dt")            # reads the forward value
    g.apply(lambda v: 1 - sympy.tanh(v) ** 2, [a], name="dt2")  # reads a common input
    f = fused(g, ["t", "dt", "dt2"])
    k, = kernels(f)
    assert k.kind == "elementwise" and k.outputs == ["t", "dt", "dt2"] and k.inputs == ["a"]
    check_meaning(g, f, {"a": np.random.default_rng(3).normal(size=(4, 6))}, ["t", "dt", "dt2"])


def test_rows_kernel_never_broadcasts_a_row_value_along_the_row():
    g = Graph("across", dtype="float64")
    x = g.input("x", (4, 4))
    s = B.sum(x, axis=1, name="s")                 # (4,): one value per row
    g.apply(lambda a, b: a * b, [x, s], name="out")  # broadcasts s along columns
    f = fused(g, ["out"])
    assert f.attrs("s")["kernel"] != f.attrs("out")["kernel"]
    assert "across rows" in explain(g, "s", "out")
    check_meaning(g, f, {"x": np.random.default_rng(4).normal(size=(4, 4))}, ["out"])


# ---- the cost rule and explanations --------------------------------------------------------

def cost_graph():
    g = Graph("cost", dtype="float64")
    a = g.input("a", (N, 5))
    col = g.input("col", (N, 1))
    costly = g.apply(lambda v: sympy.sin(v) * sympy.cos(v) + v ** 3, [a], name="costly")
    cheap = g.apply(lambda v: v * 2 + 1, [a], name="cheap")
    for k, p in enumerate([costly, cheap, costly, cheap]):
        g.apply(lambda v, w: sympy.exp(v) * w, [p, a], name=f"u{k}")
    g.apply(lambda v: sympy.exp(v) + v, [col], name="col_costly")
    g.apply(lambda v: -v, [col], name="col_cheap")
    g.apply(lambda v, w, c: v * w + c, [g["col_costly"], a, g["col_cheap"]], name="wide")
    return g, ["u0", "u1", "u2", "u3", "wide"]


def test_cost_rule_recomputes_cheap_producers_and_stores_costly_ones():
    g, keep = cost_graph()
    assert should_inline(g, "cheap", "u1") == (
        True, "cheap (count_ops 2 <= 2): recomputing it in 2 users beats a store and a load")
    ok, why = should_inline(g, "costly", "u0")
    assert not ok and why == "too costly to recompute: count_ops 5 > 2 with 2 users"
    ok, why = should_inline(g, "col_costly", "wide")
    assert not ok and "count_ops 2 > 1" in why and "(N, 1) into (N, 5)" in why
    assert should_inline(g, "col_cheap", "wide")[0]
    f = fused(g, keep)
    assert "costly" in f and "cheap" not in f and "col_cheap" not in f and "col_costly" in f
    assert f.args("u0") == ["costly", "a"]    # not duplicated: both users read it
    assert kinds(f) == {"elementwise": 2}     # (N, 5) work in one kernel, (N, 1) in another
    assert any("too costly to recompute: count_ops 5 > 2" in line
               for line in f.nx.graph["fusion_log"])
    rng = np.random.default_rng(5)
    check_meaning(g, f, {"a": rng.normal(size=(3, 5)), "col": rng.normal(size=(3, 1))}, keep)


def test_explain_gives_each_reason():
    g, _ = cost_graph()
    assert explain(g, "cheap", "u1").startswith("fuse cheap into u1: cheap (count_ops 2")
    assert explain(g, "costly", "u0") == (
        "fuse costly with u0 in one elementwise kernel (costly is not substituted: too costly "
        "to recompute: count_ops 5 > 2 with 2 users)")
    msg = explain(g, "col_costly", "wide")
    assert msg.startswith("cannot fuse col_costly with wide: ")
    assert "count_ops 2 > 1" in msg and "different shapes (col_costly (N, 1), wide (N, 5))" in msg
    assert "in keep" in explain(g, "cheap", "u1", keep=["cheap"])
    assert "is a leaf or a view" in explain(g, "a", "u1")
    h = Graph("cyc", dtype="float64")
    x = h.input("x", (3, 3))
    t = B.tanh(x, name="t")
    m = h.matmul(t, x, name="m")
    h.apply(lambda p, q: p + q, [t, m], name="u")
    B.stop_gradient(t, name="sg")
    h.apply(lambda p: 2 * p, [h["sg"]], name="v")
    assert "would create a cycle (t -> m -> u)" in explain(h, "t", "u")
    assert "cannot fuse m with u: m is a matmul" in explain(h, "m", "u")
    assert "2-D float32" in explain(h, "m", "u", matmul_epilogue=True)   # float64: library
    assert "sg is a stop_gradient boundary" in explain(h, "sg", "v")
    f32 = Graph("mm32")
    x32 = f32.input("x", (3, 3))
    B.tanh(f32.matmul(x32, x32, name="mm"), name="act")
    assert "a library call of its own" in explain(f32, "mm", "act")
    assert explain(f32, "mm", "act", matmul_epilogue=True) == \
        "fuse mm with act in one matmul kernel"


# ---- whole models, determinism, printing ---------------------------------------------------

def mlp_step(momentum: float = 0.9):
    """The digits MLP (examples/digits_mlp.py) with gradients and SGD updates."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.digits_mlp import build_model
    g, _, loss = build_model(hidden=16)
    params = g.params(trainable_only=True)
    g2, grads = autodiff(g, loss.name, params)
    g2, updates = SGD(lr=0.1, momentum=momentum).build(g2, params, grads)
    return g2, [loss.name], updates


def mlp_feeds(n: int = 9, seed: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 64)).astype(np.float32),
            "y": rng.integers(0, 10, size=n).astype(np.int64)}


def test_mlp_training_step_fuses_and_computes_the_same():
    g, outputs, updates = mlp_step()
    keep = outputs + list(updates.values())
    f = fused(g, keep)
    assert kinds(f) == {"matmul": 5, "rows": 1, "reduce": 3, "elementwise": 4}
    position = {n: k for k, kern in enumerate(kernels(f)) for n in kern.nodes}
    for param, new_value in updates.items():  # in place is safe: old values read before
        readers = [u for u in f.users(param) if u in position]
        assert all(position[u] <= position[new_value] for u in readers), param
    feeds = mlp_feeds()
    want = evaluate(g, feeds, keep)
    assert_close(evaluate(f, feeds, keep), want)
    plain = optimize(g, keep)   # the NumPy step, fused and not: same loss, same new params
    got, new = run_numpy(f, outputs, feeds, updates)
    ref, ref_new = run_numpy(plain, outputs, feeds, updates)
    assert_close(got, ref, rtol=1e-6, atol=1e-7)
    assert_close(got, want[:1], rtol=1e-5, atol=1e-6)
    for k, param in enumerate(updates, start=1):
        assert_close([new[param]], [ref_new[param]], rtol=1e-6, atol=1e-7)
        assert_close([new[param]], [want[k]], rtol=1e-5, atol=1e-6)


def test_fusion_is_deterministic_and_pure():
    g, outputs, updates = mlp_step()
    keep = outputs + list(updates.values())
    opt = optimize(g, keep)
    before = signature(opt)
    one, two = fuse(opt, keep), fuse(opt, keep)
    assert signature(opt) == before and "kernels" not in opt.nx.graph
    assert kernels(one) == kernels(two) and signature(one) == signature(two)
    assert str(one) == str(two)


def test_printing_shows_kernels_as_groups():
    g = Graph("lin", dtype="float64")
    x = g.input("x", (N, 4))
    B.tanh(B.linear(x, 3, name="l1"), name="h")
    f = fused(g, ["h"])
    text = format_graph(f)
    assert text == str(f)
    lines = text.splitlines()
    assert lines[0] == "graph 'lin': 5 nodes, 2 kernels"
    at = lines.index("  kernel fused_add_tanh_1 [elementwise] in: l1_mm, l1_b -> out: h")
    assert lines[at + 1].split()[:2] == ["h", "map"] and lines[at + 1].startswith("    ")
    assert "  kernel matmul_0 [matmul] in: x, l1_W -> out: l1_mm" in lines
    assert any(line.split()[:2] == ["x", "input"] and line.startswith("  x") for line in lines)
    assert format_kernels(f).splitlines()[1:3] == [
        "kernel matmul_0 [matmul] in: x, l1_W -> out: l1_mm",
        "  l1_mm matmul    (N, 3) float64         x @ l1_W"]
    assert "kernel" not in str(optimize(g, ["h"]))


# ---- property: random DAGs -------------------------------------------------------------------

@settings(max_examples=40, deadline=None, database=None, print_blob=True)
@given(steps=st.lists(STEP, min_size=1, max_size=10), pick=st.integers(0, 40))
def test_random_dags_fuse_into_valid_kernels_with_the_same_values(steps, pick):
    g, outputs = random_graph(steps, pick)
    feeds = {"a": np.random.default_rng(7).normal(size=(2, 3))}
    before = signature(g)
    f = fused(g, outputs)
    assert signature(g) == before, "fuse mutated its input"
    want = evaluate(g, feeds, outputs)
    assert_close(evaluate(f, feeds, outputs), want, rtol=1e-9)
    assert_close(run_numpy(f, outputs, feeds)[0], want, rtol=1e-9)
    total = g.apply(lambda *v: sum(v), [B.sum(g[o]) for o in outputs], name="total")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g2, grads = autodiff(g, total.name, ["w", "c"])
    keep = [total.name, *grads]
    assert_close(evaluate(fused(g2, keep), feeds, keep), evaluate(g2, feeds, keep), rtol=1e-9)


def test_merging_never_leaves_forms_the_printers_lack():
    g = Graph("kinks", dtype="float64")
    x = g.input("x", (N, 3))
    B.hard_tanh(B.abs(B.relu(x)), name="out")   # Piecewise inside a condition: ITE
    f = fused(g, ["out"])
    assert kinds(f) == {"elementwise": 1}
    assert any("ITE, which printers lack" in line for line in f.nx.graph["fusion_log"])
    feeds = {"x": np.linspace(-2, 2, 12).reshape(4, 3)}
    check_meaning(g, f, feeds, ["out"])
