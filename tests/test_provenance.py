"""Provenance through fusion: fused_from / fused_exprs recorded by fuse and kept by the
other passes, the merged nodes named in every backend's comments (and cse temporaries named
after the node they hold), and `graphc code --explain`."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc import lowering, modelfile, ops
from graphc.passes.constfold import constfold
from graphc.passes.cse import cse, node_key
from graphc.passes.fuse import fuse

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.py"
ENCODER = ROOT / "examples" / "encoder_838.py"
S = sympy.Symbol


def chain():
    g = gc.Graph("chain", dtype="float64")
    x, y = g.input("x", (3, 4)), g.input("y", (3, 4))
    a = g.apply(lambda p, q: p + q, [x, y], name="a")
    b = gc.tanh(a, name="b")
    c = g.apply(lambda p, q: p * q, [b, x], name="c")
    return g, c


def test_fuse_records_what_it_merged_in_graph_order():
    g, c = chain()
    f = fuse(g, [c.name])
    assert set(f.nx.nodes) == {"x", "y", "c"}
    a = f.attrs("c")
    assert a["fused_from"] == ("a", "b")
    assert a["fused_exprs"] == (S("x") + S("y"), sympy.tanh(S("x") + S("y")))
    assert "fused_from" not in g.attrs("c")   # the input graph is not changed


def test_literals_folded_by_fuse_are_named_too():
    spec = modelfile.load(ROOT / "examples" / "digits_mlp.py")
    low = lowering.lower(spec.graph, (), "numpy", loss=spec.loss, until="fused")
    a = low.fused.attrs("d_sub_2")
    assert a["fused_from"] == ("d_sum_10", "d_sum_8", "d_pick_7_x2", "d_exp_3_x0")
    assert str(a["fused_exprs"][0]) == "1/N" and str(a["fused_exprs"][1]) == "-1/N"
    assert not any(n.endswith("_value") for n in a["fused_from"])   # fuse's own literals


def test_provenance_is_declared_once_and_kept_by_the_passes():
    assert {"fused_from", "fused_exprs"} <= ops.PROVENANCE
    assert {"fused_from", "fused_exprs"} <= set(ops.KEPT_ON_REWRITE)
    g, c = chain()
    f = fuse(g, [c.name])
    # cse: provenance does not keep two equal computations apart
    twin = f.map(f.attrs("c")["expr"], f.args("c"), name="twin")
    f.nx.nodes["twin"]["kernel"] = f.attrs("c")["kernel"]   # the same but for provenance
    assert node_key(f, "c") == node_key(f, twin.name)
    merged = cse(f, ["c"])
    assert twin.name not in merged and merged.attrs("c")["fused_from"] == ("a", "b")
    # constfold: a node rewritten as a const keeps where it came from
    k = gc.Graph("k", dtype="float64")
    one = k.const(np.ones((2,)), name="one")
    two = k.apply(lambda p: p * 2, [one], name="two")
    k.nx.nodes["two"]["fused_from"] = ("m",)
    folded = constfold(k, [two.name])
    assert folded.attrs("two")["op"] == "const" and folded.attrs("two")["fused_from"] == ("m",)


def sources(path, backend, **kw) -> str:
    spec = modelfile.load(path)
    kw = {"triton_interpret": True, **kw} if backend == "triton" else kw
    out = lowering.lower(spec.graph, (), backend, loss=spec.loss, optimizer=spec.optimizer,
                         **kw).generated
    return out[0] + out[1]("m.c") if backend == "c" else out


@pytest.mark.parametrize("backend,marker", [("numpy", "#"), ("c", "//"), ("triton", "#")])
def test_every_backend_names_the_merged_nodes(backend, marker):
    text = sources(XOR, backend)
    # xor's y = sigmoid(out): out is merged into y, d_y into d_out
    assert f"{marker} merged into y: out = out_b + out_mm" in text
    assert f"{marker} merged into d_out: d_y = -0.5*t + 0.5*y" in text
    assert f"{marker} merged into h: hidden = hidden_b + hidden_mm" in text


@pytest.mark.parametrize("backend,line", [
    ("numpy", "# tmp0 = out = sigmoid(dec_b + dec_mm)  (used more than once)"),
    ("c", "// out = sigmoid(dec_b + dec_mm)"),
    ("triton", "# out = sigmoid(dec_b + dec_mm)"),
])
def test_a_cse_temporary_names_the_merged_node_it_holds(backend, line):
    # the old rule recomputes encoder_838's sigmoid `out` in its users
    text = sources(ENCODER, backend, recompute="count_ops")
    assert line in text
    assert "merged into d_dec: out = sigmoid(dec_b + dec_mm)" in text


def graphc(*args):
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_explain_a_node_and_one_merged_away_on_c():
    done = graphc("code", XOR, "--backend", "c", "--explain", "y")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("y: map (4, 1) float32, kernel fused_add_sigmoid_mul_pow_3 "
                          "(elementwise)\n  formula: y = sigmoid(out_b + out_mm)\n")
    assert "merged into it by fuse: out = out_b + out_mm" in out
    c_file, host = [line for line in out.splitlines() if "line(s) name y" in line]
    assert ".c: " in c_file and ".py: " in host
    assert "[fused_add_sigmoid_mul_pow_3]  const float y = " in out
    done = graphc("code", XOR, "--explain", "out")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("out: merged by fuse into y (kernel "
                                  "fused_add_sigmoid_mul_pow_3): computed there, not stored")
    assert "# merged into y: out = out_b + out_mm" in done.stdout


def test_explain_errors_name_the_pass_or_the_nearest_names():
    done = graphc("code", XOR, "--explain", "hiden")
    assert done.returncode == 2
    assert "no node named 'hiden' in xor_learned: training step; nearest computed: " \
           "hidden_b" in done.stderr
    done = graphc("code", XOR, "--explain", "d_out_unbcast")
    assert done.returncode == 2
    assert "node 'd_out_unbcast' of xor_learned: training step is not computed: removed by " \
           "simplify; its reader d_out_b reads d_out instead" in done.stderr
