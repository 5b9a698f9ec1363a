"""The error catalogue: every way to build, differentiate or feed a graph wrongly raises one
GraphError subclass whose message names the node, the op and the shapes involved."""
import contextlib
import re
import warnings

import networkx as nx
import numpy as np
import pytest

import graphc as gc
from graphc.passes.autodiff import GradientWarning

N = gc.sym("N")
ERRORS = [gc.ShapeError, gc.DtypeError, gc.OpError, gc.ExprError, gc.CycleError,
          gc.DuplicateNameError, gc.FeedError, gc.GradError]


@contextlib.contextmanager
def raises(cls, *fragments):
    """pytest.raises for exactly `cls`, whose message must contain every fragment."""
    with pytest.raises(cls) as info:
        yield info
    message = str(info.value)
    assert type(info.value) is cls, f"{type(info.value).__name__}: {message}"
    for f in fragments:
        assert f in message, f"{f!r} not in message: {message}"


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_one_hierarchy(cls):
    assert issubclass(cls, gc.GraphError)
    assert issubclass(gc.GraphError, Exception)


def test_gradient_warning_is_a_warning_not_an_error():
    assert issubclass(GradientWarning, UserWarning)


# ---- building ---------------------------------------------------------------------------

def test_broadcast_mismatch():
    g = gc.Graph("t")
    a, b = g.input("a", (N, 3)), g.input("b", (4,))
    with raises(gc.ShapeError, "'s'", "(map)", "(N, 3)", "(4,)", "3 vs 4"):
        g.apply(lambda p, q: p + q, [a, b], name="s")
    with raises(gc.ShapeError, "(map)", "(N, 3)", "(4,)"):
        a + b  # an operator: the message names the generated node


def test_matmul_inner_dimension_mismatch():
    g = gc.Graph("t")
    a, b = g.input("a", (N, 3)), g.input("b", (4, 5))
    with raises(gc.ShapeError, "'mm'", "matmul", "(N, 3)", "(4, 5)", "3 vs 4"):
        gc.matmul(a, b, name="mm")


def test_unknown_op_via_add():
    g = gc.Graph("t")
    a = g.input("a", (3,))
    with raises(gc.OpError, "'c'", "unknown op 'conv'", "matmul"):
        g.add("conv", [a], name="c")
    assert "c" not in g


def test_unknown_op_via_from_networkx():
    G = nx.MultiDiGraph()
    G.add_node("x", op="input", shape=(3,))
    G.add_node("c", op="conv")
    G.add_edge("x", "c", arg=0)
    with raises(gc.OpError, "'c'", "unknown op 'conv'"):
        gc.Graph.from_networkx(G)


def test_cycle_from_networkx_lists_the_cycle():
    G = nx.DiGraph()
    G.add_node("p", op="input", shape=(3,))
    G.add_node("q", op="map", expr="x0 + x1")
    G.add_node("r", op="map", expr="tanh(x0)")
    G.add_edges_from([("p", "q", {"arg": 0}), ("r", "q", {"arg": 1}), ("q", "r", {"arg": 0})])
    with raises(gc.CycleError) as info:
        gc.Graph.from_networkx(G)
    assert re.search(r"q -> r -> q|r -> q -> r", str(info.value)), str(info.value)
    assert "p ->" not in str(info.value)  # p feeds the cycle but is not on it


def test_expression_names_a_missing_argument():
    g = gc.Graph("t")
    a = g.input("a", (3,))
    with raises(gc.ExprError, "'bad'", "map", "x1", "1 argument"):
        g.map("x0 + x1", [a], name="bad")


def test_expression_names_an_unknown_symbol():
    g = gc.Graph("t")
    a = g.input("a", (N,))
    with raises(gc.ExprError, "'bad'", "names y", "dimension"):
        g.map("x0 + y", [a], name="bad")
    g.map("x0 / N", [a], name="ok")  # a dimension of the graph is allowed


def test_expression_that_does_not_parse():
    g = gc.Graph("t")
    a = g.input("a", (3,))
    with raises(gc.ExprError, "'bad'", "cannot parse", "x0 +* 2"):
        g.map("x0 +* 2", [a], name="bad")


def test_unknown_dtype():
    g = gc.Graph("t")
    with raises(gc.DtypeError, "input 'a'", "float16"):
        g.input("a", (3,), dtype="float16")


def test_duplicate_node_names():
    g = gc.Graph("t")
    x = g.input("x", (N, 4))
    with raises(gc.DuplicateNameError, "'x'", "input"):
        g.param("x", (4,))
    gc.linear(x, 3, name="l1")
    with raises(gc.DuplicateNameError, "'l1_W'", "param"):
        gc.linear(x, 3, name="l1")


def test_reshape_size_mismatch():
    g = gc.Graph("t")
    a, b = g.input("a", (2, 3)), g.input("b", (N, 3))
    with raises(gc.ShapeError, "'r'", "reshape", "(2, 3)", "(4,)", "6 elements"):
        gc.reshape(a, (4,), name="r")
    with raises(gc.ShapeError, "'r2'", "reshape", "(N, 3)", "(5,)"):
        gc.reshape(b, (5,), name="r2")


@pytest.mark.parametrize("perm", [(0, 0), (0, 2), (1,)])
def test_bad_permute(perm):
    g = gc.Graph("t")
    a = g.input("a", (2, 3))
    with raises(gc.ShapeError, "'p'", "permute", str(perm), "(2, 3)"):
        gc.transpose(a, perm, name="p")


def test_param_with_symbolic_shape():
    g = gc.Graph("t")
    with raises(gc.ShapeError, "param 'W'", "(N, 3)", "concrete"):
        g.param("W", (N, 3))


def test_node_of_another_graph():
    g, h = gc.Graph("mine"), gc.Graph("theirs")
    a, o = g.input("a", (N, 3)), h.input("o", (N, 3))
    loss = gc.sum(a, name="loss")
    for use in (lambda: a + o, lambda: gc.matmul(a, o), lambda: gc.function(g, [o]),
                lambda: gc.grad(loss, [o])):
        with raises(gc.GraphError, "'o'", "'theirs'", "'mine'"):
            use()


# ---- gradients --------------------------------------------------------------------------

def _regression():
    g = gc.Graph("t")
    x = g.input("x", (N, 3))
    W = g.param("W", (3, 2), init=np.full((3, 2), 0.5))
    return g, x, W, gc.tanh(x @ W, name="h")


def test_non_scalar_loss_in_grad():
    g, x, W, h = _regression()
    with raises(gc.GradError, "'h'", "scalar", "(N, 2)"):
        gc.grad(h, [W])


def test_non_scalar_loss_in_compile():
    g, x, W, h = _regression()
    with raises(gc.GradError, "'h'", "scalar", "(N, 2)"):
        gc.compile(g, h)


def test_gradient_of_an_unrelated_node_is_zero_and_warns():
    g, x, W, h = _regression()
    unused = g.param("unused", (4,), init=np.ones(4))
    loss = gc.sum(h, name="loss")
    with pytest.warns(GradientWarning, match="'loss' does not depend on 'unused'"):
        d_unused, d_W = gc.grad(loss, [unused, W])
    out = gc.function(g, [d_unused, d_W])(x=np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(out[0], np.zeros(4, np.float32))
    assert np.abs(out[1]).sum() > 0


def test_gradient_wrt_an_integer_input():
    g = gc.Graph("t")
    labels, z = g.input("labels", (N,), dtype="int64"), g.input("z", (N,))
    loss = gc.sum(z * labels, name="loss")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a warning and a zero
        with raises(gc.GradError, "'labels'", "int64"):
            gc.grad(loss, [labels])


# ---- feeds ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_inputs():
    """f(a (N, 3), b (N, 2)) = sum(tanh(a @ W) * b), compiled once for the feed tests."""
    g = gc.Graph("feeds")
    a, b = g.input("a", (N, 3)), g.input("b", (N, 2))
    W = g.param("W", (3, 2), init=np.ones((3, 2)))
    return gc.function(g, [gc.sum(gc.tanh(a @ W) * b, name="s")])


A, B = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)


def test_feeds_that_fit(two_inputs):
    np.testing.assert_allclose(two_inputs(a=A, b=B)[0], 8 * np.tanh(3), rtol=1e-6)


def test_missing_feed(two_inputs):
    with raises(gc.FeedError, "missing feed 'b'", "(N, 2)", "float32"):
        two_inputs(a=A)


def test_unexpected_feed_name(two_inputs):
    with raises(gc.FeedError, "unexpected", "'c'", "'a'", "'b'"):
        two_inputs(a=A, b=B, c=B)


def test_feed_of_the_wrong_shape(two_inputs):
    with raises(gc.FeedError, "feed 'b'", "(4, 3)", "(N, 2)"):
        two_inputs(a=A, b=np.ones((4, 3), np.float32))
    with raises(gc.FeedError, "feed 'b'", "(4, 2, 1)", "(N, 2)", "rank"):
        two_inputs(a=A, b=np.ones((4, 2, 1), np.float32))


def test_feeds_disagree_on_a_symbolic_dim(two_inputs):
    with raises(gc.FeedError, "feed 'b'", "(5, 2)", "N = 5", "N = 4", "feed 'a'"):
        two_inputs(a=A, b=np.ones((5, 2), np.float32))


def test_feed_of_the_wrong_dtype(two_inputs):
    with raises(gc.FeedError, "feed 'b'", "float64", "float32"):
        two_inputs(a=A, b=B.astype(np.float64))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NaN passed through
def test_non_finite_feeds_with_check_finite():
    g, x, W, h = _regression()
    loss = gc.sum(h, name="loss")
    bad = np.ones((2, 3), np.float32)
    bad[0, 1], bad[1, 2] = np.nan, np.inf
    with raises(gc.FeedError, "feed 'x'", "2 NaN/Inf"):
        gc.function(g, [loss], check_finite=True)(x=bad)
    with raises(gc.FeedError, "feed 'x'", "NaN/Inf"):
        gc.compile(g, loss, check_finite=True)(x=bad)
    # accepted (and propagated) when not asked for
    assert np.isnan(gc.function(g, [loss])(x=bad)[0])
    assert np.isnan(gc.compile(g, loss)(x=bad))
