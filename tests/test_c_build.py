"""Building generated C: compiled once per source into the cache folder and loaded with ctypes;
compile errors name the C line, kernel and node; damaged libraries are rebuilt; racing
processes leave one library."""
import ctypes
import multiprocessing
import subprocess
from pathlib import Path

import pytest

from graphc import cache, checkpoint
from graphc.codegen.c import build
from graphc.errors import CCompileError, CCompilerMissing, GraphError

if build.find_compiler() is None:
    pytest.skip("no C compiler (cc, gcc or $CC)", allow_module_level=True)

ADD = """// ---- add_kernel: elementwise
// nodes: a, b, add_0
double add(double a, double b) {
    return a + b;  // add_0 = a + b
}
"""

BROKEN = """#include <stdint.h>
// ---- fused_mul_0: elementwise
// nodes: x, mul_0
void fused_mul_0(const double *x_ptr, double *y_ptr, int64_t n_elements) {
    for (int64_t i = 0; i < n_elements; i++) {
        y_ptr[i] = 2.0 * x_ptr[i];  // mul_0 = 2*x
    }
}

// ---- fused_add_tanh_1: elementwise
// nodes: y, add_1, tanh_2
void fused_add_tanh_1(const double *y_ptr, double *z_ptr, int64_t n_elements) {
    for (int64_t i = 0; i < n_elements; i++) {
        double add_1 = y_ptr[i] + 1.0;  // add_1 = y + 1
        z_ptr[i] = STATEMENT  // tanh_2 = tanh(add_1)
        AFTER
    }
}
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Each test its own cache folder (conftest's is shared by the session)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def compiles(monkeypatch):
    """The compiler runs of the test: subprocess.run calls whose command makes a library."""
    calls, run = [], subprocess.run

    def counting(cmd, *args, **kwargs):
        if "-shared" in cmd:
            calls.append(cmd)
        return run(cmd, *args, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", counting)
    return calls


def add(path) -> float:
    lib = build.load(path)
    lib.add.restype, lib.add.argtypes = ctypes.c_double, [ctypes.c_double, ctypes.c_double]
    return lib.add(1.5, 2.25)


def source(tag: str) -> str:
    """ADD made unique per test: a library another test loaded is never reused here."""
    return f"// {tag}\n{ADD}"


def test_builds_into_the_cache_folder_and_calls_through_ctypes(cache_dir):
    path = build.build(source("first"), "my graph/1")
    key = build.library_key(source("first"))
    assert path == cache_dir / f"my_graph_1-{key}.so" and add(path) == 3.75
    c_file = path.with_suffix(".c")
    assert cache.verified(c_file.read_text(), build.HEADER) == source("first")
    assert c_file.read_text().startswith("// graphc-source-sha256: ")
    assert sorted(p.name for p in cache_dir.iterdir()) == [c_file.name, path.name]


def test_second_build_does_not_recompile(compiles):
    path = build.build(source("twice"), "twice")
    mtime = path.stat().st_mtime_ns
    assert len(compiles) == 1
    assert build.build(source("twice"), "twice") == path
    assert len(compiles) == 1 and path.stat().st_mtime_ns == mtime


def test_key_changes_with_source_flags_and_cpu(monkeypatch):
    key = build.library_key(ADD)
    assert build.library_key(ADD) == key and len(key) == 20
    assert build.library_key(ADD + "\n") != key
    monkeypatch.setattr(build, "FLAGS", [*build.FLAGS[:-1], "-std=c17"])
    flagged = build.library_key(ADD)
    monkeypatch.setattr(build, "cpu_features", lambda: "another cpu")
    assert len({key, flagged, build.library_key(ADD)}) == 3


def test_cpu_features_is_short_and_stable():
    build.cpu_features.cache_clear()
    first = build.cpu_features()
    build.cpu_features.cache_clear()
    assert build.cpu_features() == first and 0 < len(first) <= 64


@pytest.mark.parametrize("statement, after, line", [
    ("add_1 +;", "", "z_ptr[i] = add_1 +;  // tanh_2 = tanh(add_1)"),
    # a line without a statement comment belongs to the nearest statement above it
    ("add_1;", "z_ptr[i] *= undeclared_k;", "z_ptr[i] *= undeclared_k;"),
], ids=["on the statement", "below the statement"])
def test_compile_error_names_the_c_line_kernel_and_node(cache_dir, statement, after, line):
    text = BROKEN.replace("STATEMENT", statement).replace("AFTER", after)
    with pytest.raises(CCompileError) as info:
        build.build(text, "broken")
    message = str(info.value)
    assert "in kernel fused_add_tanh_1, node tanh_2" in message, message
    assert line in message and "error: " in message
    [c_file] = cache_dir.glob("broken-*.c")
    assert str(c_file) in message
    assert [p.name for p in cache_dir.iterdir()] == [c_file.name]   # no .so, no temp file


def test_origin_outside_kernels_and_without_statements():
    lines = BROKEN.splitlines()
    assert build.origin(lines, 0) == "before the first kernel (in the declarations)"
    header = lines.index("// ---- fused_add_tanh_1: elementwise")
    assert build.origin(lines, header + 2) == "in kernel fused_add_tanh_1 (nodes: y, add_1, tanh_2)"


def test_compile_timeout_is_a_compile_error(cache_dir, monkeypatch):
    build.links_libmvec(build.find_compiler())   # probe first: its timeout is not under test
    monkeypatch.setattr(build, "COMPILE_TIMEOUT_S", 0.001)
    with pytest.raises(CCompileError, match=r"did not finish in 0.001 s"):
        build.build(source("slow"), "slow")
    assert [p.suffix for p in cache_dir.iterdir()] == [".c"]


@pytest.mark.parametrize("how", ["CC names a missing program", "no compiler on PATH"])
def test_no_compiler_is_compiler_missing(tmp_path, monkeypatch, how):
    if how == "no compiler on PATH":
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    else:
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(CCompilerMissing, match=r"backend='c' needs a C compiler \(cc or gcc, "
                                               r"or set CC\); none found on PATH"):
        build.build(ADD, "nocc")
    ok, why = build.available()
    assert not ok and "needs a C compiler" in why
    assert issubclass(CCompilerMissing, GraphError) and issubclass(CCompileError, GraphError)


def test_available_here():
    ok, why = build.available()
    assert ok, why
    assert "OpenMP" in why


def _build(text, results):
    results.put(str(build.build(text, "truncated")))


@pytest.mark.parametrize("keep", [0, 0.5, 0.95])
def test_a_truncated_library_is_rebuilt(compiles, keep):
    """Built by another process (one that maps a library it truncates dies of SIGBUS)."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_build, args=(source(f"truncated {keep}"), results))
    child.start()
    path = Path(results.get(timeout=60))
    child.join(timeout=60)
    good = path.read_bytes()
    path.write_bytes(good[:int(len(good) * keep)])   # dlopen of this one would SIGBUS too
    assert build.build(source(f"truncated {keep}"), "truncated") == path
    assert len(compiles) == 1 and path.read_bytes() == good and add(path) == 3.75


def test_without_libmvec_the_simd_declarations_are_left_out(monkeypatch, cache_dir):
    vector = ("#include <math.h>\n#include <stdint.h>\n#ifndef GRAPHC_NO_LIBMVEC\n"
              "#pragma omp declare simd notinbranch\n#endif\nfloat expf(float);\n"
              "// ---- fused_exp_0: elementwise\n// nodes: x, exp_0\n"
              "void fused_exp_0(const float *x_ptr, float *y_ptr, int64_t n_elements) {\n"
              "    for (int64_t i = 0; i < n_elements; i++) y_ptr[i] = expf(x_ptr[i]);"
              "  // exp_0 = exp(x)\n}\n")
    with_mvec = build.library_key(vector)
    monkeypatch.setattr(build, "links_libmvec", lambda cc: False)
    compile_flags, link_flags = build.flags(build.find_compiler())
    assert build.NO_LIBMVEC in compile_flags and "-lmvec" not in link_flags
    assert build.library_key(vector) != with_mvec
    lib = build.load(build.build(vector, "no_mvec"))
    x, y = (ctypes.c_float * 33)(*range(33)), (ctypes.c_float * 33)()
    lib.fused_exp_0(x, y, ctypes.c_int64(33))
    assert abs(y[1] - 2.7182817) < 1e-6


def _build_and_add(text, barrier, results):
    barrier.wait(timeout=60)
    path = build.build(text, "raced")
    results.put((str(path), add(path)))


def test_processes_building_one_library_at_once_leave_one(cache_dir):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_build_and_add, args=(source("raced"), barrier, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert len({path for path, _ in got}) == 1 and {v for _, v in got} == {3.75}
    so = cache_dir / got[0][0].rsplit("/", 1)[1]
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([so.name, so.stem + ".c"])
    assert checkpoint.temp_files(so) == [] and checkpoint.temp_files(so.with_suffix(".c")) == []
