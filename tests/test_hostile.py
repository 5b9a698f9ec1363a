"""Hostile and bad input. Node names that are not identifiers or that try to inject code
compile and run on both backends and reach generated source only as generated identifiers,
escaped comments and string literals (data); expression text is read without evaluating
any Python; and the bad inputs tests/test_errors.py does not cover (integer tensors into
float ops, integer feeds, empty dimensions, a cycle of three, a reshape from networkx) fail
with one clear GraphError, or, for empty dimensions, work as in torch.
"""
from __future__ import annotations

import ast
import builtins
import io
import keyword
import re
import tokenize

import networkx as nx
import numpy as np
import pytest
import sympy
import torch

import graphc as gc
from graphc import exprs
from graphc.codegen.common import RESERVED, comment, identifiers
from tests.backends import BACKENDS
from tests.test_errors import raises
from tests.triton_pipeline import INTERPRET  # noqa: F401  (interpreter mode first)

N = gc.sym("N")
HOSTILE = ["x=__import__('os')", 'a"b', "a'b", "line\nbreak", "ünï", "__import__", "tmp0",
           "def", "np", "buf", "N", '"""', "\\", "#", "p", "ones0", "x0", "run", ""]
# names no hostile name may bring into code (tokens outside comments and string literals)
FORBIDDEN = {"__import__", "os", "system", "break", "eval", "exec", "open", "ünï", "def_"}


def build(names: list, graph_name: str) -> tuple:
    """A small network whose 8 named nodes take `names`: two inputs, a param, a matmul,
    tanh, relu, a row max and a softmax; returns (graph, outputs, feeds)."""
    g = gc.Graph(graph_name, dtype="float64")
    x, m = g.input(names[0], (N, 3)), g.input(names[1], (N, 3))
    W = g.param(names[2], (3, 3), init=np.arange(9.0).reshape(3, 3) / 9 - 0.4)
    h = gc.relu(gc.tanh(gc.matmul(x, W, name=names[3]), name=names[4]), name=names[5]) * m
    s = gc.softmax(h, name=names[6]) + gc.max(h, axis=1, keepdims=True, name=names[7])
    loss = gc.sum(s * s, name=names[8])
    rng = np.random.default_rng(0)
    feeds = {names[0]: rng.normal(size=(5, 3)), names[1]: rng.normal(size=(5, 3))}
    return g, [loss, *gc.grad(loss, [x, W])], feeds


def as_networkx(graph) -> nx.MultiDiGraph:
    """The same graph as a hand-written networkx DAG (its nodes' attributes as data)."""
    G = nx.MultiDiGraph()
    for n in graph.topo():
        a = dict(graph.attrs(n))
        a.pop("index")
        G.add_node(n, **a)
        for i, src in enumerate(graph.args(n)):
            G.add_edge(src, n, arg=i)
    return G


def code_tokens(source: str) -> list:
    """The source's tokens less comments and string literals: what Python runs."""
    skip = (tokenize.COMMENT, tokenize.STRING)
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t for t in tokens if t.type not in skip]


def names_for(how: str) -> list:
    """9 hostile names (a rotation of HOSTILE, so every name takes every role somewhere)."""
    k = {"a": 0, "b": 9}[how]
    picked = (HOSTILE[k:] + HOSTILE[:k])[:9]
    return [n if n else "empty_is_refused" for n in picked]


@pytest.mark.parametrize("via", ["builder", "networkx"])
@pytest.mark.parametrize("how", ["a", "b"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_names_compile_run_and_stay_out_of_code(backend, how, via):
    """Values and gradients equal those of the same network with plain names, exactly;
    no hostile name reaches the code Python runs (tokens outside comments and strings)."""
    names = names_for(how)
    g, outputs, feeds = build(names, "g\"\n'''x=__import__('os')")
    if via == "networkx":
        g = gc.Graph.from_networkx(as_networkx(g), name=g.name, dtype="float64")
        outputs = [g.node(o.name) for o in outputs]
    f = gc.function(g, outputs, backend=backend)
    got = f(**feeds)
    plain = [f"n{k}" for k in range(9)]
    g2, outputs2, feeds2 = build(plain, "plain")
    want = gc.function(g2, outputs2, backend=backend)(**dict(zip(plain, feeds.values())))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    source = f.source
    compile(source, "<generated>", "exec")  # still one well-formed module
    tokens = code_tokens(source)
    assert not [t for t in tokens if t.type == tokenize.ERRORTOKEN]
    names_used = {t.string for t in tokens if t.type == tokenize.NAME}
    assert not names_used & FORBIDDEN, names_used & FORBIDDEN
    assert all(n.isascii() for n in names_used)
    defs = sum(isinstance(n, ast.FunctionDef) for n in ast.walk(ast.parse(source)))
    assert sum(t.string == "def" for t in tokens) == defs  # the name "def" stayed a name
    for line in source.splitlines():  # an escaped name never ends a comment early
        if "#" in line and "__import__" in line.split("#", 1)[1]:
            assert "\n" not in line
    if f.c_source is not None:   # C: names only in // comments, none continued by a "\"
        for line in f.c_source.splitlines():
            code, _, note = line.partition("//")
            assert not note.rstrip().endswith("\\") and "__import__" not in code
            assert not set(re.findall(r"[A-Za-z_]\w*", code)) & FORBIDDEN


def test_empty_node_name_is_generated_or_refused():
    """"" is no name: the builder generates one; from_networkx, whose edges name the node,
    refuses it."""
    g = gc.Graph("t")
    x = g.input("x", (3,))
    assert gc.tanh(x, name="").name != ""
    G = nx.DiGraph()
    G.add_node("", op="input", shape=(3,))
    G.add_node("y", op="map", expr="tanh(x0)")
    G.add_edge("", "y", arg=0)
    with raises(gc.GraphError, "named ''", "non-empty"):
        gc.Graph.from_networkx(G)


@pytest.mark.parametrize("name", HOSTILE + ["class", "None", "tl", "torch", "1x", "a b", "é"])
def test_identifiers_are_generated_python_names(name):
    """Every identifier is ASCII, not a keyword, not a backend word, not a scratch buffer."""
    ident = identifiers([name, "other"])[name]
    assert ident.isidentifier() and ident.isascii() and not keyword.iskeyword(ident)
    assert ident not in RESERVED and not re.fullmatch(r"(tmp|ones)\d+", ident)
    assert identifiers([name], taken={ident})[name] != ident  # `taken` is honoured


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\u2028b", "x\x00y", "é" * 300])
def test_comments_are_one_printable_line(text):
    c = comment(text)
    assert c.isprintable() and c.isascii() and len(c) <= 140
    assert len(list(tokenize.generate_tokens(io.StringIO("# " + c + "\n").readline))) == 3


# ---- expression text ---------------------------------------------------------------------

REFUSED = {
    "().__class__.__base__.__subclasses__()": "attribute access",
    "__import__('os').system('touch PWNED')": "attribute access",
    "__import__('os')": "__import__",
    "x0.__class__": "attribute access",
    "x0[0]": "subscript",
    "(lambda: 1)()": "lambda",
    "lambda: 1": "lambda",
    "'text'": "not a number",
    "b'x'": "not a number",
    "foo(x0)": "'foo' is not a known function",
    "eval('1')": "'eval' is not a known function",
    "open('PWNED', 'w')": "'open' is not a known function",
    "Symbol('a')": "'Symbol' is not a known function",
    "exp(x0, evaluate=False)": "keyword arguments",
    "[x0 for x0 in ()]": "ListComp",
    "x0 if x0 else 1": "IfExp",
    "(x0 := 1)": "NamedExpr",
    "f'{x0}'": "JoinedStr",
    "_x": "'_x' is not a value",
    "exp": "'exp' is not a value",
    "Integer(x0)": "number literals only",
    "9**9**9**9": "too large",
    "x0 % 2": "Mod",
    "x0 +* 2": "invalid syntax",
    "x0\x00": "null bytes",
    "(" * 500 + "x0" + ")" * 500: "",
    "x0; x1": "invalid syntax",
}


@pytest.mark.parametrize("text", REFUSED)
def test_expression_text_is_never_evaluated(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a file written by the text would land here
    monkeypatch.setattr(builtins, "eval", lambda *a: pytest.fail("eval was called"))
    g = gc.Graph("t")
    a = g.input("a", (3,))
    with raises(gc.ExprError, "'bad'", "cannot parse", REFUSED[text]):
        g.map(text, [a], name="bad")
    assert "bad" not in g and list(tmp_path.iterdir()) == []


x0, x1 = exprs.args(2)
ACCEPTED = {
    "x0 + 2*x1": x0 + 2 * x1,
    "1.5e-3 * x0": sympy.Float("1.5e-3") * x0,
    "x0**2 / 3 - -x1": x0 ** 2 / 3 + x1,
    "Rational(1, 3) * x0": x0 / 3,
    "Piecewise((x0, x0 > 0), (0, True))": sympy.Piecewise((x0, x0 > 0), (0, True)),
    "Piecewise((1, (x0 > -1) & (x0 < 1)), (0, True))":
        sympy.Piecewise((1, (x0 > -1) & (x0 < 1)), (0, True)),
    "Piecewise((1, Eq(x0, x1) | (x0 >= 2)), (0, True))":
        sympy.Piecewise((1, sympy.Eq(x0, x1) | (x0 >= 2)), (0, True)),
    "0 < x0 <= 1": sympy.Lt(0, x0) & sympy.Le(x0, 1),
    "Max(x0, x1) + Min(x0, 0) + abs(x1) + sign(x0)":
        sympy.Max(x0, x1) + sympy.Min(x0, 0) + sympy.Abs(x1) + sympy.sign(x0),
    "sigmoid(x0) * softplus(x1) + expm1(x0)":
        exprs.sigmoid(x0) * exprs.softplus(x1) + exprs.expm1(x0),
    "exp(x0) * sin(pi * x1) + cos(E) + log(sqrt(tanh(x0)))":
        sympy.exp(x0) * sympy.sin(sympy.pi * x1) + sympy.cos(sympy.E)
        + sympy.log(sympy.sqrt(sympy.tanh(x0))),
    "x0 / N": x0 / N,
}


@pytest.mark.parametrize("text", ACCEPTED)
def test_expression_grammar(text, monkeypatch):
    monkeypatch.setattr(builtins, "eval", lambda *a: pytest.fail("eval was called"))
    assert exprs.parse(text, "t", {"N": N}) == ACCEPTED[text]


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["tanh", "sigmoid", "exp", "log", "softplus", "elu", "sqrt",
                                "softmax", "log_softmax"])
def test_integer_tensor_into_a_float_op(op):
    """No silent promotion (torch would give float32): a DtypeError that says how to convert."""
    g = gc.Graph("t")
    i = g.input("i", (N, 3), dtype="int64")
    with raises(gc.DtypeError, "'i'", "int64", "float", "dtype='float32'"):
        getattr(gc, op)(i)
    for ok in (gc.relu, gc.abs, gc.square):  # integer in, integer out, as torch
        assert ok(i).dtype == "int64"
    assert gc.tanh(g.map("x0", [i], dtype="float32")).dtype == "float32"


def test_integer_logits_into_cross_entropy():
    g = gc.Graph("t")
    z, labels = g.input("z", (N, 3), dtype="int64"), g.input("y", (N,), dtype="int64")
    with raises(gc.DtypeError, "'z'", "int64"):
        gc.softmax_cross_entropy(z, labels)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("feed", [np.arange(6).reshape(2, 3), np.ones((2, 3), np.int32),
                                  np.ones((2, 3), bool)], ids=["int64", "int32", "bool"])
def test_integer_feed_to_a_float_input(feed, backend):
    g = gc.Graph("t")
    x = g.input("x", (N, 3))
    f = gc.function(g, [gc.tanh(x)], backend=backend)
    with raises(gc.FeedError, "feed 'x'", str(feed.dtype), "float32"):
        f(x=feed)


def test_cycle_of_three_prints_the_cycle():
    G = nx.DiGraph()
    for n in "abc":
        G.add_node(n, op="map", expr="tanh(x0)")
    G.add_edges_from([("a", "b", {"arg": 0}), ("b", "c", {"arg": 0}), ("c", "a", {"arg": 0})])
    with raises(gc.CycleError, "not acyclic") as info:
        gc.Graph.from_networkx(G)
    assert re.search(r"a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c", str(info.value))


def test_reshape_mismatch_from_networkx_names_node_and_shapes():
    G = nx.DiGraph()
    G.add_node("x", op="input", shape=(2, 3))
    G.add_node("r", op="reshape", shape=(4, 2))
    G.add_edge("x", "r", arg=0)
    with raises(gc.ShapeError, "'r'", "reshape", "(2, 3)", "(4, 2)"):
        gc.Graph.from_networkx(G)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_batch_runs_as_in_torch(backend):
    """N = 0: empty activations, sum 0, mean nan, gradients zeros; as torch."""
    g = gc.Graph("empty", dtype="float64")
    x = g.input("x", (N, 3))
    W = g.param("W", (3, 2), init=np.ones((3, 2)))
    h = gc.softmax(gc.tanh(x @ W))
    total, mean = gc.sum(h), gc.mean(h, axis=0)
    f = gc.function(g, [h, total, mean, *gc.grad(total, [W])], backend=backend)
    h_, total_, mean_, dW = f(x=np.zeros((0, 3)))
    t, tW = torch.zeros((0, 3), dtype=torch.float64), torch.ones((3, 2), dtype=torch.float64,
                                                                  requires_grad=True)
    th = torch.softmax(torch.tanh(t @ tW), -1)
    th.sum().backward()
    assert h_.shape == (0, 2) and total_ == 0
    np.testing.assert_array_equal(mean_, th.mean(0).detach().numpy())  # nan, nan
    np.testing.assert_array_equal(dW, tW.grad.numpy())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_reductions_over_an_empty_axis(backend):
    """Over a symbolic axis that is 0 at run time: sum 0 and mean nan, as torch; max gives
    -inf and min +inf, their identities (torch.amax raises). Known to be 0 at build time,
    max and min are refused, as torch refuses them."""
    g = gc.Graph("empty_axis", dtype="float64")
    x = g.input("x", (3, gc.sym("K")))
    outs = [gc.sum(x, axis=1), gc.mean(x, axis=1), gc.max(x, axis=1), gc.min(x, axis=1)]
    got = gc.function(g, outs, backend=backend)(x=np.zeros((3, 0)))
    for value, want in zip(got, [0.0, np.nan, -np.inf, np.inf]):
        np.testing.assert_array_equal(value, np.full(3, want))
    g0 = gc.Graph("empty_known")
    z = g0.input("z", (3, 0))
    with raises(gc.ShapeError, "max", "'z'", "axis 1", "size 0", "(3, 0)"):
        gc.max(z, axis=1)
    assert gc.sum(z, axis=1).shape == (3,)
