"""The graphc command end to end on the example model files (subprocess), its pictures
(valid PNG / SVG / DOT), and its errors."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pydot
import pytest

from graphc import cli, modelfile

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's parser

ROOT = Path(__file__).resolve().parents[1]
ENCODER = ROOT / "examples" / "encoder_838.py"
DIGITS = ROOT / "examples" / "digits_mlp.py"


def graphc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_for_every_subcommand():
    for command in ("show", "grad", "code", "train"):
        done = graphc(command, "--help")
        assert done.returncode == 0 and "model file" in done.stdout, done.stderr


def test_show_text_at_every_stage():
    sizes = {}
    for stage in cli.STAGES:
        done = graphc("show", ENCODER, "--stage", stage)
        assert done.returncode == 0, done.stderr
        sizes[stage] = done.stdout
    assert "d_enc" not in sizes["forward"] and "d_enc" in sizes["backward"]
    assert "kernels" in sizes["fused"] and "kernel fused_" in sizes["fused"]


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_show_and_code_count_the_same_kernels(backend):
    """One lowering: the fused graph `show` prints holds the kernels the generated module
    runs, the optimizer's updates included (they were missing from show: 11 against 13)."""
    shown = graphc("show", ENCODER, "--stage", "fused", "--backend", backend)
    code = graphc("code", ENCODER, "--backend", backend)
    assert shown.returncode == 0 and code.returncode == 0, shown.stderr + code.stderr
    kinds = re.findall(r"^  kernel \S+ \[(\w+)\]", shown.stdout, flags=re.M)
    assert len(kinds) == 13 and "13 kernels (5 matmul, 5 elementwise, 3 reduce)" in shown.stdout
    if backend == "c":   # the translation unit's header counts them, matmuls included
        assert "13 kernels (5 matmul, 5 elementwise, 3 reduce)" in code.stdout
    else:                # the NumPy module: one block a kernel
        ran = re.findall(r"^    # ---- kernel \S+ \((\w+)\)", code.stdout, flags=re.M)
        assert sorted(ran) == sorted(kinds)
    assert "enc_W_new" in shown.stdout   # an optimizer update, printed with its kernel


def test_show_pictures_are_valid_files(tmp_path):
    done = graphc("show", ENCODER, "--stage", "fused", "--format", "dot", "-o", "g.dot",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parsed, = pydot.graph_from_dot_file(str(tmp_path / "g.dot"))
    assert len(parsed.get_subgraphs()) >= 5                   # one cluster per kernel
    for fmt, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<svg")):
        done = graphc("show", ENCODER, "--stage", "backward", "--format", fmt, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        data = (tmp_path / f"encoder_838-backward.{fmt}").read_bytes()
        assert magic in data[:400]


def test_grad_text_and_latex():
    done = graphc("grad", ENCODER, "--wrt", "enc_b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dloss/denc_b = ")
    assert "code*dloss/dcode*(1 - code)" in done.stdout
    tex = graphc("grad", ENCODER, "--wrt", "enc_b", "--latex").stdout
    assert r"\bar{\mathrm{enc\_b}}" in tex and r"\left(1 - \mathrm{code}\right)" in tex


def test_code_writes_the_generated_module(tmp_path):
    done = graphc("code", ENCODER, "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "encoder_838_step.py").read_text()
    assert "def run(" in source and "np.matmul(" in source


def test_matmul_fused_shows_and_generates_matmuls_with_epilogues(tmp_path):
    done = graphc("show", DIGITS, "--stage", "fused", "--backend", "triton", "--matmul", "fused")
    assert done.returncode == 0, done.stderr
    assert "kernel matmul_add_tanh_0 [matmul]" in done.stdout
    refused = graphc("show", DIGITS, "--stage", "fused", "--matmul", "fused")
    assert refused.returncode == 2 and "needs --backend triton" in refused.stderr
    env_done = subprocess.run([sys.executable, "-m", "graphc", "code", str(DIGITS), "--backend",
                               "triton", "--matmul", "fused", "-o", str(tmp_path)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TRITON_INTERPRET": "1"})
    assert env_done.returncode == 0, env_done.stderr
    source = (tmp_path / "digits_mlp_step.py").read_text()
    assert "def matmul_add_tanh_0(" in source and "tl.dot(" in source
    assert "torch.matmul" not in source   # every matmul of this step has an epilogue


def test_train_summary_and_loss_plot(tmp_path):
    done = graphc("train", DIGITS, "--epochs", "3", "--no-progress", "--backend", "numpy",
                  "--plot", tmp_path / "loss.png")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "kernels" in out and "step time" in out
    losses = out.split("\nloss ")[1]
    start, end = float(losses.split()[0]), float(losses.split("-> ")[1].split()[0])
    assert end < start
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_name_the_problem(tmp_path):
    missing = graphc("show", tmp_path / "nope.py")
    assert missing.returncode == 2 and "no such model file" in missing.stderr
    no_build = tmp_path / "m.py"
    no_build.write_text("x = 1\n")
    done = graphc("grad", no_build)
    assert done.returncode == 2 and "defines no build()" in done.stderr
    bad = graphc("show", ENCODER, "--stage", "sideways")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_build_may_return_a_tuple_but_not_junk(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import graphc as gc\n"
                 "def build():\n"
                 "    g = gc.Graph('t'); x = g.input('x', (2,))\n"
                 "    return g, gc.sum(x * g.param('w', (2,)), name='loss')\n")
    spec = modelfile.load(f)
    assert spec.loss.name == "loss" and spec.data == {}
    f.write_text("def build():\n    return 3\n")
    with pytest.raises(modelfile.ModelFileError, match="must return a dict"):
        modelfile.load(f)


def test_notebook_views():
    spec = modelfile.load(ENCODER)
    assert "<svg" in spec.graph._repr_svg_()[:400]
    import graphc as gc
    tex = gc.show_grad(spec.graph, spec.loss, ["enc_b"])._repr_latex_()
    assert tex.startswith("$\\begin{aligned}") and "&=" in tex
