"""Structured emission: printers lower to records and print them last. In-place updates are
decided on the NumPy statements' reads and writes; no printer leaves or fills placeholders in
text; no generated module (NumPy, C host, Triton) defines or imports a helper it never uses."""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc import exprs, lowering, optim
from graphc.codegen import numpy as numpy_cg
from graphc.codegen.statements import Assign, Call, Comment, Copy, read_after_write, source
from tests import triton_pipeline  # noqa: F401  (the interpreter, before triton loads)
from tests.golden_code import EXAMPLES, sources

x0 = exprs.arg(0)


# ---- in-place updates, decided on records ---------------------------------------------------

def test_in_place_is_direct_when_the_old_value_is_read_only_before_the_write():
    """W_new = W - 0.1*g: the old W is read by the statement that writes, never after."""
    st = [Call("np.multiply", ("g", "0.1"), "tmp0"), Call("np.subtract", ("W", "tmp0"), "W_new")]
    assert not read_after_write(st, "W_new", "W")
    assert source(numpy_cg.in_place(st, "W_new", "W", lambda: pytest.fail("no scratch"))) == [
        "np.multiply(g, 0.1, out=tmp0)", "np.subtract(W, tmp0, out=W)",
        "W_new = W  # new value, held in place"]


def test_in_place_goes_through_scratch_when_the_old_value_is_read_after_the_write():
    """v_new = 0.1*g + 0.9*v computes 0.1*g into its destination first, then reads v."""
    st = [Call("np.multiply", ("g", "0.1"), "v_new"), Call("np.multiply", ("v", "0.9"), "tmp0"),
          Call("np.add", ("v_new", "tmp0"), "v_new")]
    assert read_after_write(st, "v_new", "v")
    assert source(numpy_cg.in_place(st, "v_new", "v", lambda: "tmp9")) == [
        "np.multiply(g, 0.1, out=tmp9)", "np.multiply(v, 0.9, out=tmp0)",
        "np.add(tmp9, tmp0, out=tmp9)", "np.copyto(v, tmp9)",
        "v_new = v  # new value, held in place"]


def test_records_say_what_they_read_and_write():
    masked = Copy("d", "tmp1", where="tmp0")
    assert masked.writes() == ("d",) and set(masked.reads()) == {"tmp1", "tmp0", "d"}
    assert Copy("d", "x").reads() == ("x",)
    reduce = Call("np.add.reduce", ("x",), "s", (("axis", "(1,)"), ("keepdims", "True")))
    assert reduce.source() == "np.add.reduce(x, axis=(1,), keepdims=True, out=s)"
    assert reduce.renamed("x", "y").reads()[0] == "y" and reduce.renamed("s", "t").out == "t"
    assert Assign("a", "b.T", "view", ("b",)).writes() == () and Comment("c").reads() == ()


def run_update(expr, init):
    """One call of a NumPy module that updates W in place with map(expr)(W): (source, W)."""
    g = gc.Graph("update", dtype="float64")
    w = g.param("W", (len(init),), init=np.array(init, dtype=np.float64))
    g.map(expr, [w.name], name="W_new")
    low = lowering.lower(g, [w], "numpy", updates={"W": "W_new"})
    loaded = lowering.load(low)
    params = dict(loaded.params)
    loaded.module.run(params, loaded.consts, loaded.module.allocate())
    return low.generated, params["W"]


def test_in_place_update_read_after_its_first_write_is_copied_back():
    """The piecewise's default (5) is copied into the destination first and W is read after:
    written directly, W would be 5 before the condition reads it."""
    text, w = run_update(sympy.Piecewise((2 * x0, x0 > 0), (5, True)), [-1.0, 0.5, 2.0])
    np.testing.assert_array_equal(w, [5.0, 1.0, 4.0])
    assert re.search(r"np\.copyto\(W, tmp\d+\)", text)


def test_in_place_update_written_directly_when_safe():
    text, w = run_update(x0 - 0.25 * x0 * x0, [-1.0, 0.5, 2.0])
    np.testing.assert_allclose(w, [-1.25, 0.4375, 1.0])
    assert "np.copyto(W" not in text and "out=W)" in text


def test_momentum_step_values_with_in_place_updates():
    """SGD with momentum: the velocity in place through scratch (0.9*v read after the first
    write), the weight directly; the step matches the update computed by hand."""
    g = gc.Graph("momentum", dtype="float64")
    x = g.input("x", (4, 3))
    w = g.param("W", (3, 2), init=np.arange(6.0).reshape(3, 2) / 10)
    loss = gc.sum((x @ w) ** 2)
    low = lowering.lower(g, (), "numpy", loss=loss, optimizer=optim.SGD(lr=0.1, momentum=0.9))
    loaded = lowering.load(low)
    xv = np.linspace(-1, 1, 12).reshape(4, 3)
    params = dict(loaded.params)
    buf = loaded.module.allocate(*[4] * len(loaded.module.DIMS))
    w0 = params["W"].copy()
    for _ in range(2):
        loaded.module.run(xv, params, loaded.consts, buf)
    grad = lambda w_: 2 * xv.T @ (xv @ w_)  # noqa: E731
    v1 = grad(w0)
    w1 = w0 - 0.1 * v1
    v2 = 0.9 * v1 + grad(w1)
    np.testing.assert_allclose(params["W"], w1 - 0.1 * v2, rtol=1e-12)


# ---- generated modules: no placeholders, no unused helpers ----------------------------------

def generated_texts() -> dict:
    """{label: generated module or C source} over the examples and graphs that need the
    helpers (max reductions, split reductions, symbolic row widths, generated matmuls)."""
    texts = {f"{e}/{n}": t for e in EXAMPLES for n, t in sources(e).items()}
    n = gc.sym("N")
    g = gc.Graph("helpers")
    x = g.input("x", (n, 5000))
    z = g.input("z", (n, gc.sym("M")))
    loss = gc.sum(gc.max(x, axis=1)) + gc.sum(gc.softmax(z)) + gc.mean(gc.tanh(x))
    outputs = [loss, gc.min(x, axis=0), *gc.grad(loss, [x])]
    for interpret in (True, False):
        texts[f"helpers/triton.{interpret}"] = lowering.lower(
            g, outputs, "triton", triton_interpret=interpret).generated
    texts["helpers/numpy"] = lowering.lower(g, outputs, "numpy").generated
    c_source, host = lowering.lower(g, outputs, "c").generated
    texts["helpers/c.c"], texts["helpers/c_host.py"] = c_source, host("helpers.c")
    m = gc.Graph("mm")
    a = m.input("a", (n, 8))
    h = gc.relu(gc.linear(a, 16, name="l1"))
    loss = gc.mean(gc.gelu(h))   # erf: a NumPy helper imported
    for interpret in (True, False):
        texts[f"mm/triton.{interpret}"] = lowering.lower(
            m, (), "triton", loss=loss, matmul="fused", triton_interpret=interpret).generated
    texts["mm/numpy"] = lowering.lower(m, (), "numpy", loss=loss).generated
    v = gc.Graph("views")   # a transposed input: a kernel reads it through host strides
    t = gc.transpose(v.input("t", (5, n)), (1, 0))
    outputs = [gc.exp(t) + v.input("u", (n, 5)), gc.sum(gc.tanh(t), axis=0)]
    texts["views/triton"] = lowering.lower(v, outputs, "triton").generated
    c_source, host = lowering.lower(v, outputs, "c").generated
    texts["views/c_host.py"] = host("views.c")
    return texts


@pytest.fixture(scope="module")
def texts():
    return generated_texts()


def test_no_placeholders_in_generated_text(texts):
    """Printers print decided records: no @NAME@ slot is left for a later substitution."""
    for label, text in texts.items():
        assert not re.search(r"@[\w.-]+@", text), label


def test_no_placeholder_substitution_in_the_printers():
    from pathlib import Path

    import graphc.codegen as codegen
    for path in sorted(Path(codegen.__file__).parent.rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"""["']@[\w.-]+@["']""", text), path.name


# names a generated module defines for its caller (the runtime), not for itself
ENTRY_POINTS = {"allocate", "run", "bind"}


def unused_helpers(text: str) -> set:
    """Top-level functions and imports of a module that nothing in it reads."""
    tree = ast.parse(text)
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and
            isinstance(n.ctx, ast.Load)}
    return defined - read - ENTRY_POINTS


def undefined_names(text: str) -> set:
    """Names a module reads that nothing in it binds (nor Python's builtins)."""
    import builtins
    tree = ast.parse(text)
    bound = set(dir(builtins)) | {"__file__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            bound |= {a.arg for a in node.args.args + node.args.kwonlyargs}
            bound |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a}
            bound.add(getattr(node, "name", ""))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "SIGNATURES":
            bound |= set(ast.literal_eval(node.value))   # the C host's bind() makes these
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - bound


def test_generated_modules_define_only_helpers_they_use(texts):
    """and every helper they call is defined or imported (a helper left out fails here)."""
    for label, text in texts.items():
        if not label.endswith(".c"):
            assert not unused_helpers(text), (label, unused_helpers(text))
            assert not undefined_names(text), (label, undefined_names(text))


def test_the_unused_helper_check_sees_an_unused_helper():
    module = "import numpy as np\nfrom os import path\n\ndef _spare(x):\n    return x\n\n" \
             "def run(a):\n    return np.sum(a)\n"
    assert unused_helpers(module) == {"path", "_spare"}
    assert undefined_names(module + "\ndef later(b):\n    return _missing(b)\n") == {"_missing"}
