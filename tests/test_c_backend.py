"""The C backend as a user meets it: selection and fallback, the backend that runs, errors
naming the op and node, one compile for every batch size, the three dtypes, threads, the
generated C (kernels named after graph nodes, one function per kernel), `graphc code`."""
import os
import re
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import api
from graphc.codegen.c import build, kernels as c_kernels
from graphc.errors import CCompilerMissing
from tests.backends import C_OK, C_WHY

pytestmark = pytest.mark.skipif(not C_OK, reason=f"no C backend: {C_WHY}")
N = gc.sym("N")


def mlp(dtype: str = "float32"):
    g = gc.Graph("c_mlp", dtype=dtype)
    x, y = g.input("x", (N, 6)), g.input("y", (N,), dtype="int64")
    h = gc.tanh(gc.linear(x, 5, name="l1"))
    return g, gc.softmax_cross_entropy(gc.linear(h, 3, name="l2"), y, name="loss")


def feeds(n: int, dtype=np.float32) -> dict:
    rng = np.random.default_rng(n)
    return {"x": rng.standard_normal((n, 6)).astype(dtype), "y": rng.integers(0, 3, n)}


def test_auto_runs_c_where_a_compiler_works_and_says_so():
    g, loss = mlp()
    step = gc.compile(g, loss)
    assert step.backend == "c" and step.c_path.suffix == ".c"
    f = gc.function(g, [loss])
    assert f.backend == "c" and step.function([loss]).backend == "c"
    assert gc.function(g, [loss], backend="numpy").backend == "numpy"


def test_auto_without_a_compiler_warns_and_runs_numpy(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    g, loss = mlp()
    with pytest.warns(RuntimeWarning, match="C backend is unavailable .*no C compiler|none"):
        step = gc.compile(g, loss)
    assert step.backend == "numpy"
    with pytest.raises(CCompilerMissing, match="needs a C compiler"):
        gc.compile(g, loss, backend="c")


def test_a_graph_the_c_printer_cannot_print_falls_back_only_under_auto(monkeypatch):
    def refuse(self):
        raise NotImplementedError(f"c backend: no C template for kernel {self.kernel.name} "
                                  f"({', '.join(self.kernel.nodes)})")
    monkeypatch.setattr(c_kernels.Elementwise, "write", refuse)
    g, loss = mlp()
    with pytest.raises(NotImplementedError, match="no C template for kernel fused_.*tanh"):
        gc.function(g, [loss], backend="c")
    with pytest.warns(RuntimeWarning, match="runs NumPy for this graph: c backend"):
        f = gc.function(g, [loss])
    assert f.backend == "numpy"


def test_one_compile_serves_every_batch_size_and_matches_numpy():
    g, loss = mlp("float64")
    c, ref = (gc.compile(g, loss, optimizer=gc.SGD(lr=0.1, momentum=0.9), backend=b)
              for b in ("c", "numpy"))
    for n in (1, 7, 64, 7, 300):
        fd = feeds(n, np.float64)
        assert c(fd) == pytest.approx(ref(fd), rel=1e-12)
    for name in c.params:
        np.testing.assert_allclose(c[name], ref[name], rtol=1e-11, atol=1e-14)
    assert len(c._buffers) == 4   # one set of buffers per batch size seen


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_dtypes_compute_as_numpy(dtype):
    g = gc.Graph(f"c_dtype_{dtype}", dtype="float64" if dtype == "int64" else dtype)
    a = g.input("a", (N, 4), dtype=dtype)
    b = g.input("b", (4,), dtype=dtype)
    outs = [a * b + a, gc.max(a - b, axis=1), gc.sum(a * a, axis=0), gc.max(a, axis=0)]
    if dtype != "int64":
        outs.append(gc.tanh(a) / (1 + gc.exp(b)))
    rng = np.random.default_rng(0)
    fd = {"a": (rng.standard_normal((9, 4)) * 5).astype(dtype),
          "b": (rng.standard_normal(4) * 5).astype(dtype)}
    got = gc.function(g, outs, backend="c")(fd)
    want = gc.function(g, outs, backend="numpy")(fd)
    for x, w in zip(got, want):
        assert x.dtype == w.dtype
        if dtype == "int64":
            np.testing.assert_array_equal(x, w)
        else:
            np.testing.assert_allclose(x, w, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_transposed_and_broadcast_reads_take_strides_not_copies():
    g = gc.Graph("c_views", dtype="float64")
    a, b = g.input("a", (5, 3)), g.input("b", (3, 5))
    c = g.input("c", (3, 1))
    outs = [a.T * b + c, gc.sum(a.T * b, axis=0), gc.sum(b * c, axis=1)]
    rng = np.random.default_rng(1)
    fd = {k: rng.standard_normal(s) for k, s in (("a", (5, 3)), ("b", (3, 5)), ("c", (3, 1)))}
    f = gc.function(g, outs, backend="c")
    for x, w in zip(f(fd), gc.function(g, outs, backend="numpy")(fd)):
        np.testing.assert_allclose(x, w, rtol=1e-13)
    assert "ascontiguousarray(a_T" not in f.source and "_copy" not in f.source


def test_kernels_are_c_functions_named_after_their_nodes():
    g, loss = mlp()
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1))
    c_kernels_ = [k for k in step.kernels if k.kind != "matmul"]
    assert c_kernels_ and all(k.source.startswith(f"// ---- {k.name}: {k.kind}")
                              for k in c_kernels_)
    rows = next(k for k in step.kernels if k.kind == "rows")
    assert f"void {rows.name}(" in rows.source and "// nodes: " in rows.source
    assert "reduction(nanmax_float:" in rows.source       # NaN-keeping max of the row
    # every statement names the node it computes
    for line in rows.source.splitlines():
        if re.match(r"\s*const float \w+ = ", line):
            assert "// " in line
    assert "tanhf(" in step.c_source and "#pragma omp declare simd" in step.c_source


def test_threads_env_and_api(monkeypatch):
    g, loss = mlp()
    fd = feeds(2000)
    one = gc.function(g, [loss], backend="c", threads=1)
    two = gc.function(g, [loss], backend="c", threads=2)
    np.testing.assert_allclose(one(fd)[0], two(fd)[0], rtol=1e-6)
    two.set_threads(1)
    with pytest.raises(ValueError, match="at least 1"):
        two.set_threads(0)
    # one loaded library serves both functions: each sets its threads before its call
    one(fd)
    assert one.module.get_threads() == 1
    two.set_threads(2)
    two(fd)
    assert two.module.get_threads() == 2 and one.kernel_threads == 1
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "lots")
    with pytest.raises(ValueError, match="GRAPHC_NUM_THREADS='lots'"):
        gc.function(g, [loss], backend="c")


def test_kernel_threads_default_to_one_in_a_module_that_calls_blas(monkeypatch):
    """OpenMP's idle threads spin after a parallel kernel and take the cores the next
    BLAS matmul needs: a module with library matmuls runs its kernels on one thread unless
    threads are asked for; one without them uses every core."""
    monkeypatch.delenv("GRAPHC_NUM_THREADS", raising=False)
    g, loss = mlp()
    assert gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend="c").kernel_threads == 1
    assert gc.function(g, [loss], backend="c", threads=2).kernel_threads == 2
    h = gc.Graph("c_threads_map")
    x = h.input("x", (64,))
    no_blas = gc.function(h, [gc.tanh(x)], backend="c")
    assert no_blas.kernel_threads == len(os.sched_getaffinity(0))
    no_blas.set_threads(1)
    assert no_blas.kernel_threads == 1
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    assert gc.function(g, [loss], backend="c").kernel_threads == 2
    assert gc.function(g, [loss], backend="numpy").kernel_threads is None


def test_run_time_work_below_the_threshold_keeps_vector_math():
    """A loop whose size is known only at run time takes a team of one below the parallel
    threshold (num_threads), not `if(...)`: gcc builds that `if`-false path without its
    vector math calls. Both sides of the threshold agree with NumPy."""
    g = gc.Graph("c_runtime_small", dtype="float32")
    x = g.input("x", (gc.sym("N"),))
    f = gc.function(g, [gc.tanh(x) * gc.sigmoid(x)], backend="c")
    assert "num_threads(N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)" in f.c_source
    assert " if(" not in f.c_source
    ref = gc.function(g, [gc.tanh(x) * gc.sigmoid(x)], backend="numpy")
    for n in (7, c_kernels.MIN_PARALLEL_WORK + 5):
        fd = {"x": np.random.default_rng(n).standard_normal(n).astype(np.float32)}
        np.testing.assert_allclose(f(fd)[0], ref(fd)[0], rtol=2e-6, atol=1e-7)


def test_nan_inf_and_signed_zero_as_numpy():
    g = gc.Graph("c_special", dtype="float32")
    x = g.input("x", (8,))
    outs = [gc.relu(x), gc.max(x, axis=0), gc.sum(x), gc.abs(x), gc.tanh(x) * 0 + x]
    fd = {"x": np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, 1e30, -3.0, 2.0], np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = gc.function(g, outs, backend="numpy")(fd)
    for got, w in zip(gc.function(g, outs, backend="c")(fd), want):
        np.testing.assert_array_equal(got, w)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(w))


def test_graphc_code_prints_the_c_kernels(capsys, tmp_path):
    from graphc import cli
    model = tmp_path / "model.py"
    model.write_text("import graphc as gc\n\ndef build():\n"
                     "    g = gc.Graph('m')\n    x = g.input('x', (4, 3))\n"
                     "    loss = gc.sum(gc.tanh(gc.linear(x, 2, name='l')))\n"
                     "    return {'graph': g, 'loss': loss}\n")
    assert cli.main(["code", str(model), "--backend", "c"]) == 0
    out = capsys.readouterr().out
    assert "// ---- fused_" in out and "def run(" in out
    assert cli.main(["code", str(model), "--backend", "c", "-o", str(tmp_path / "o")]) == 0
    assert sorted(p.suffix for p in (tmp_path / "o").iterdir()) == [".c", ".py"]


def test_the_library_cache_key_names_compiler_flags_and_cpu():
    key = build.library_key("void f(void) {}")
    assert key == build.library_key("void f(void) {}")
    assert key != build.library_key("void g(void) {}")
    assert api.BACKENDS == ("auto", "numpy", "c", "triton")


@pytest.mark.parametrize("perm, axis", [((2, 1, 0), 0), ((1, 0, 2), 0), ((2, 0, 1), (0, 1)),
                                        ((0, 2, 1), 1)])
def test_reductions_of_transposed_values_keep_any_axes(perm, axis):
    """A kept trailing axis that no stride merges with the next one loops outside the
    reduction; the innermost run accumulates in the array."""
    g = gc.Graph("c_transposed_reduce", dtype="float64")
    x = g.input("x", (5, 6, 7))
    xt = gc.transpose(x, perm)
    outs = [gc.sum(gc.exp(xt) * 2, axis=axis), gc.max(xt, axis=axis) + 1]
    fd = {"x": np.random.default_rng(0).normal(size=(5, 6, 7))}
    for got, want in zip(gc.function(g, outs, backend="c")(fd),
                         gc.function(g, outs, backend="numpy")(fd)):
        np.testing.assert_allclose(got, want, rtol=1e-13)
