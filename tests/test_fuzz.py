"""The differential fuzzer in CI (tests/fuzz): random programs against PyTorch autograd,
every intermediate value and every leaf gradient compared, zero mismatches allowed.

What runs (float64 unless said; rtol 1e-7 on values, 1e-6 on gradients):
  - 500 graphs x seeds 0 and 1 on the NumPy backend, fused and unfused (2,000 compiles);
  - 1,000 graphs on the C backend, fused and unfused (2,000 gcc builds, in JOBS processes),
    and 150 float32 graphs with special values there; skipped where backend='c' cannot
    build (no compiler). The C backend's known refusals (check.KNOWN_REFUSALS: a valid
    program it raises NotImplementedError for) are counted apart, each pinned below;
  - the first 60 graphs of each seed on the Triton backend (the interpreter without a GPU),
    fused and unfused; 80 float32 graphs there with matmul='library' and 'fused'; 80
    with looped rows kernels and split reductions forced on small shapes;
  - 150 graphs in float32 (PyTorch's rule: RMS error vs float64 <= 2x eager float32's +
    atol), 150 on an integer grid (exact zeros, ties) and 150 with special values (+-0,
    +-inf, NaN, 1e30 or -1e30, in float32 1e8 or -1e8; NaN-aware, with the exclusions
    listed in grammar.py), NumPy fused and unfused.
About 2 minutes on two CPU cores, and about 8 more for the C cases. The long runs (10,000
+ 2,000 special graphs per backend) are python -m tests.fuzz, see its --help and
tests/fuzz/results/. A failure prints its shrunk program; python -m tests.fuzz --out DIR
writes it out as a standalone reproducer.
"""
from __future__ import annotations

import pytest

from tests.fuzz.check import KNOWN_REFUSALS, Config, check
from tests.fuzz.run import configs_for, force_parallel_forms, force_wide_forms, fuzz
from tests.fuzz.shrink import shrink

JOBS = 2   # processes for the fuzz cases (CI has two cores)

CASES = [
    pytest.param(500, [0], "numpy", "float64", "normal", id="numpy-seed0"),
    pytest.param(500, [1], "numpy", "float64", "normal", id="numpy-seed1"),
    pytest.param(60, [0, 1], "triton", "float64", "normal", id="triton"),
    pytest.param(150, [2], "numpy", "float32", "normal", id="float32"),
    pytest.param(150, [3], "numpy", "float64", "grid", id="grid"),
    pytest.param(150, [4], "numpy", "float64", "special", id="special"),
]


@pytest.mark.parametrize("graphs, seeds, backend, dtype, inputs", CASES)
def test_fuzzer_finds_no_mismatch(graphs, seeds, backend, dtype, inputs):
    result = fuzz(graphs, seeds, configs_for(backend, "both", dtype, inputs), jobs=JOBS)
    assert result["mismatches"] == 0, "\n".join(result["failures"])
    assert result["graphs"] == graphs * len(seeds)


@pytest.fixture
def c_backend():
    """Skips where backend='c' cannot build and load a library (asked inside the test, so
    the probe goes to the test session's cache folder)."""
    from graphc.codegen.c import build
    ok, why = build.available()
    if not ok:
        pytest.skip(f"backend='c' is not available here: {why}")


@pytest.mark.parametrize("graphs, seeds, dtype, inputs", [
    pytest.param(1000, [8], "float64", "normal", id="c"),
    pytest.param(150, [9], "float32", "special", id="c-float32-special"),
])
def test_fuzzer_finds_no_mismatch_on_c(c_backend, graphs, seeds, dtype, inputs):
    """The C backend fused and unfused, the graphs in JOBS processes; its known refusals
    are printed (pytest -s), not failures."""
    result = fuzz(graphs, seeds, configs_for("c", "both", dtype, inputs), jobs=JOBS)
    print(f"\nC {dtype} {inputs}: {result['graphs']} graphs, {result['refused']} refused")
    assert result["mismatches"] == 0, "\n".join(result["failures"])
    assert result["graphs"] == graphs * len(seeds)


def test_fuzzer_finds_no_mismatch_on_c_parallel_loops(c_backend, monkeypatch):
    """The C loops in the OpenMP forms that large shapes get (parallel loops, reductions
    across threads, per-thread row tiles), forced on the fuzzer's small graphs: two
    threads everywhere, here and in the workers."""
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")   # restored after the test
    force_parallel_forms(monkeypatch.setattr)
    result = fuzz(60, [10], configs_for("c", "both", "float64", "normal"), jobs=JOBS,
                  parallel_forms=True)
    assert result["mismatches"] == 0, "\n".join(result["failures"])
    assert result["graphs"] == 60


def test_a_process_pool_gives_the_serial_summary(c_backend):
    """jobs=2: the graphs in two spawned processes, the results taken in graph order, so the
    summary is the serial one."""
    configs = configs_for("c", "on")
    serial = fuzz(12, [0], configs)
    assert serial["graphs"] == 12 and serial["mismatches"] == 0
    assert fuzz(12, [0], configs, jobs=2) == serial


# programs the C backend once refused or got wrong, found by the fuzzer (value seed kept)
C_FOUND = [
    pytest.param([("leaf", "param", (2, 2)), ("softmax", 0, -1), ("broadcast", 0, (3, 2, 2))],
                 10, id="reduce-kept-axes-not-one-run"),
    pytest.param([("leaf", "param", (1,)), ("unary", "square", 0), ("binary", "minimum", 0, 1),
                  ("labels", (), 1), ("xent", 2, 3)], 8000053, id="cse-temp-of-one-symbol"),
    pytest.param([("leaf", "param", (2, 3, 4)), ("logsumexp", 0, -1, True),
                  ("unary", "elu", 1), ("unary", "relu", 2)], 8000187,
                 id="header-text-of-nested-piecewise"),
]


@pytest.mark.parametrize("prog, seed", C_FOUND)
def test_c_runs_what_the_fuzzer_found(c_backend, prog, seed):
    """Each agrees with torch fused and unfused: a CSE temporary that is one symbol was
    declared `int` (SymPy's Symbol is a Boolean); a header's composed Piecewise sent SymPy
    into its inequality solver."""
    assert check(prog, seed, configs_for("c", "both")) is None


# the smallest program the fuzzer found for each KNOWN_REFUSALS entry, with its value seed
REFUSED: list = []   # none today


@pytest.mark.parametrize("backend, gap, prog, seed", REFUSED)
def test_a_known_refusal_is_still_refused(c_backend, backend, gap, prog, seed):
    """Each known refusal still happens on its program (fused): once the backend runs it,
    this fails, and the entry leaves KNOWN_REFUSALS (and REFUSED)."""
    failure = check(prog, seed, [Config(backend, True)])
    assert failure is not None and failure.what == "refused" and gap in failure.message, \
        f"{backend} no longer refuses {prog}: {failure or 'it runs and agrees'}; take " \
        f"{gap!r} out of KNOWN_REFUSALS in tests/fuzz/check.py and out of REFUSED here"


def test_every_known_refusal_is_pinned():
    pinned = {(p.values[0], p.values[1]) for p in REFUSED}
    assert pinned == {(b, gap) for b, gaps in KNOWN_REFUSALS.items() for gap in gaps}


def test_fuzzer_finds_no_mismatch_with_matmul_epilogues():
    """float32 on the Triton backend with matmul='fused' (generated matmuls, epilogues
    inside) beside the library path, against PyTorch's float32 rule."""
    result = fuzz(80, [5], configs_for("triton", "on", "float32", "normal", "both"))
    assert result["mismatches"] == 0, "\n".join(result["failures"])
    assert result["graphs"] == 80


def test_fuzzer_finds_no_mismatch_with_looped_rows_and_split_reductions(monkeypatch):
    """The Triton templates' wide-data forms forced on the fuzzer's small shapes: rows
    kernels loop over tiles of 4 (float64: 2) columns, reductions of few programs split
    into chunks of 8 elements."""
    force_wide_forms(monkeypatch.setattr)
    result = fuzz(80, [6], configs_for("triton", "on", "float64", "normal"))
    assert result["mismatches"] == 0, "\n".join(result["failures"])


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_a_reproducer_runs_standalone(tmp_path, request, backend):
    """A written reproducer rebuilds the program with graphc and torch by itself, on the
    failing config's backend."""
    import os
    import subprocess
    import sys

    from tests.fuzz.check import Failure
    from tests.fuzz.reproducer import write
    if backend == "c":
        request.getfixturevalue("c_backend")
    prog = [("leaf", "param", (2, 3)), ("leaf", "input", (3, 2)), ("matmul", 0, 1),
            ("unary", "tanh", 2), ("labels", (2,), 2), ("xent", 3, 4),
            ("reduce", "max", 0, (1,), True), ("linear", 0, 2)]
    path = write(Failure(prog, 5, Config(backend), "v3", "planted"), tmp_path)
    assert f'backend="{backend}"' in path.read_text()
    run = subprocess.run([sys.executable, "-W", "ignore", str(path)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": "."})
    assert run.returncode == 0, run.stderr
    assert "mismatches: 0" in run.stdout


def _programs_covering_every_op(limit: int = 400) -> list:
    """Fuzzer programs, few enough, that between them use every kind and every unary,
    binary and reduce op of the grammar (the reproducer prints each one separately)."""
    import numpy as np

    from tests.fuzz import grammar
    wanted = {("kind", k) for k in grammar.KINDS} | {("unary", u) for u in grammar.UNARY} | \
        {("binary", b) for b in grammar.BINARY} | {("reduce", r) for r in grammar.REDUCE}
    chosen = []
    for i in range(limit):
        prog = grammar.program(np.random.default_rng([7, i]), max_ops=4)
        used = {("kind", r[0]) for r in prog} | {(r[0], r[1]) for r in prog
                                                 if r[0] in ("unary", "binary", "reduce")}
        if used & wanted:
            chosen.append(prog)
            wanted -= used
        if not wanted:
            return chosen
    raise AssertionError(f"no program in {limit} uses {sorted(wanted)}")


def test_reproducers_agree_with_the_fuzzer_for_every_op(tmp_path):
    """The reproducer prints its own graphc and torch code for each record (so a person can
    read it without the fuzzer): for programs covering every op, that code must agree as the
    fuzzer's builder and oracle do (exit 0), and an edited torch line must be caught (1)."""
    import ast
    import os
    import subprocess
    import sys

    from tests.fuzz.check import Config, Failure
    from tests.fuzz.reproducer import write
    paths = [write(Failure(p, k, Config(), "-", "coverage"), tmp_path / str(k))
             for k, p in enumerate(_programs_covering_every_op())]
    broken = paths[0].with_name("broken.py")
    text = paths[0].read_text()
    torch_part = text.index("# ---- torch")
    edited = text[:torch_part] + text[torch_part:].replace("touts = [", "touts = [1.5 * ", 1)
    broken.write_text(edited)
    runner = ("import runpy, sys\ncodes = []\nfor p in sys.argv[1:]:\n    try:\n"
              "        runpy.run_path(p, run_name='__main__')\n    except SystemExit as e:\n"
              "        codes.append(e.code)\nprint('CODES', codes)\n")
    run = subprocess.run([sys.executable, "-W", "ignore", "-c", runner, *map(str, paths),
                          str(broken)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": "."})
    assert run.returncode == 0, run.stderr[-3000:]
    codes = ast.literal_eval(run.stdout.split("CODES", 1)[1].strip())
    assert codes == [0] * len(paths) + [1], run.stdout[-3000:]


def test_shrink_keeps_a_failure_and_drops_the_rest():
    prog = [("leaf", "input", (2, 3)), ("unary", "tanh", 0), ("unary", "exp", 1),
            ("binary", "mul", 2, 0), ("reduce", "sum", 3, None, False)]
    # "fails" while some exp is left: everything else can go
    small = shrink(prog, lambda p: any(r[:2] == ("unary", "exp") for r in p))
    assert small == [("leaf", "input", (2, 3)), ("unary", "exp", 0)]


# ---- bugs the fuzzer found, each pinned by a small case --------------------------------

def _grad_vs_torch(build_g, build_t, feeds: dict):
    import numpy as np
    import torch

    import graphc as gc
    g = gc.Graph("regression", dtype="float64")
    xs = {n: g.param(n, v.shape, init=v) for n, v in feeds.items()}
    loss = build_g(g, xs)
    grads = gc.grad(loss, list(xs.values()))
    with np.errstate(all="ignore"):
        got = gc.function(g, grads, backend="numpy")()
    ts = {n: torch.tensor(v, requires_grad=True) for n, v in feeds.items()}
    want = torch.autograd.grad(build_t(ts), list(ts.values()))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b.numpy())


def test_a_kink_gradient_selects_zero_under_an_infinite_upstream_gradient():
    """Found by the fuzzer (special values): relu' and a maximum's losing side multiplied
    the upstream gradient by 0, so an infinite one gave inf * 0 = nan; torch selects 0."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import graphc as gc
    inf = float("inf")
    feeds = {"x": np.array([-1.0, 2.0, 0.0]), "y": np.array([0.5, 0.5, 0.5])}
    _grad_vs_torch(
        lambda g, v: gc.sum(g.const(np.array([inf, inf, -inf])) *
                            (gc.relu(v["x"]) + gc.maximum(v["x"], v["y"]))),
        lambda t: (torch.tensor([inf, inf, -inf], dtype=torch.float64) *
                   (F.relu(t["x"]) + torch.maximum(t["x"], t["y"]))).sum(), feeds)


def test_cross_entropy_keeps_log_sum_under_huge_logits():
    """Found by the fuzzer (special values): max + log(sum) - z_label rounded log(sum)
    away when |max| >> 1 (1e30 + log 2 == 1e30), a loss of 0 where torch gives log 2."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import graphc as gc
    z = np.array([[1e30, 1e30], [-1e30, -1e30], [3.0, -1.0]])
    labels = np.array([0, 1, 0])
    g = gc.Graph("xent_huge", dtype="float64")
    zn = g.param("z", z.shape, init=z)
    loss = gc.softmax_cross_entropy(zn, g.input("y", (3,), dtype="int64"))
    got = gc.function(g, [loss, *gc.grad(loss, [zn])], backend="numpy")(y=labels)
    zt = torch.tensor(z, requires_grad=True)
    want = F.cross_entropy(zt, torch.tensor(labels))
    want.backward()
    np.testing.assert_allclose(got[0], want.item(), rtol=1e-15)
    np.testing.assert_allclose(got[1], zt.grad.numpy(), rtol=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "triton"])
def test_a_folded_literal_inside_sigmoid_softplus_expm1_prints(backend):
    """Found by the fuzzer (long run): sigmoid(v - v) fused to sigmoid(0), which neither
    printer takes (the NumPy one raised PrintMethodNotImplementedError); these functions
    now evaluate at a number."""
    import numpy as np

    import graphc as gc
    g = gc.Graph(f"folded_{backend}", dtype="float64")
    v = g.param("v", (3,), init=np.array([1.0, -2.0, 0.5]))
    s = gc.sum(v)
    zero = s - s   # a scalar map of 0 that reads nothing: simplify inlines it as a literal
    outs = [gc.sigmoid(zero), gc.softplus(zero), gc.elu(zero - 1.0, 0.7)]
    w = g.input("w", ())
    loss = gc.sum(w * zero) + gc.sum(w * outs[0]) + gc.sum(w * outs[1]) + gc.sum(w * outs[2])
    got = gc.function(g, outs + gc.grad(loss, [zero]), backend=backend)(w=np.array(2.0))
    want = [0.5, np.log(2.0), 0.7 * np.expm1(-1.0), 2 * (1 + 0.25 + 0.5 + 0.7 * np.exp(-1))]
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_map_that_cse_reduces_to_a_number_is_typed(dtype):
    """Found by the fuzzer (float32 Triton run): softmax over a size-1 axis fused to
    exp(a)*exp(-a), which sympy.cse turns into the integer 1: the Triton kernel stored a
    Python int and took tl.sigmoid of it. A number alone is now printed as a typed tl.full
    (and cse temporaries nothing reads are dropped)."""
    import warnings

    import numpy as np
    import torch

    import graphc as gc
    g = gc.Graph(f"cse_number_{dtype}", dtype=dtype)
    v = g.input("v", (1, 3, 2))
    s = gc.softmax(v, axis=0)
    y = gc.tanh(s) * 0.1
    dv, = gc.grad(gc.sum(y * y), [v])
    xv = np.random.default_rng(0).standard_normal((1, 3, 2)).astype(dtype)
    t = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    ty = torch.tanh(torch.softmax(t, 0)) * 0.1
    want = [ty.detach().numpy(), torch.autograd.grad((ty * ty).sum(), t)[0].numpy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = gc.function(g, [y, dv], backend="triton")
    assert "_c0 = " not in f.source   # the unused temporary -a is gone
    for a, b in zip(f(v=xv), want):
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == "float32" else 1e-14,
                                   atol=1e-12)
