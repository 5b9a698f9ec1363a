"""The C printer: each function and construct printed, compiled with gcc into a small
`omp simd` loop and compared elementwise with the NumPy backend, in float32 and float64."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc import exprs
from graphc.codegen.c.printer import C_TYPE, PRELUDE, print_expr

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (gcc or cc) on PATH")

# the C backend's flags; -std=c11 also turns off a*b+c -> fma contraction (GNU modes allow
# it), which would round differently from NumPy's two ufuncs
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp",
         "-fPIC", "-shared", "-std=c11"]
LIBS = ["-lmvec", "-lm"]
KERNEL = """
void k(const {t} *x0, const {t} *x1, {t} *out, int64_t n, int64_t N) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = {body};
}}
"""
NAMES = {"x0": "x0[i]", "x1": "x1[i]", "N": "N"}
# Where libm is called, C and NumPy round differently: C is checked against the exact value
# (arguments kept exact in floating point, 2*x0 rather than x0 + 1, so that it compares) within
# glibc's bound for libmvec, 4 ulp; worst measured by graphc/bench/c_ulp.py: float32 logf 3.83,
# expf 2.61. NumPy's float32 log errs by up to 3.0 the other way: C-NumPy gaps reach 6 ulp.
ULPS = 4
MPMATH = [{"sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)), "expm1": mpmath.expm1,
           "softplus": lambda v: mpmath.log1p(mpmath.exp(v))}, "mpmath"]
x0, x1 = exprs.arg(0), exprs.arg(1)
N = gc.sym("N")


# ---- compiling and running ----------------------------------------------------------------
def build(expr, dtype: str, tmp_path, extra=()) -> tuple:
    """(path of the .so, gcc's stderr) of PRELUDE + one loop computing expr."""
    where = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per library: ctypes caches by path
    src, lib = where / "k.c", where / "k.so"
    body = print_expr(expr, NAMES, dtype)
    src.write_text(PRELUDE + KERNEL.format(t=C_TYPE[dtype], body=body))
    done = subprocess.run([CC, *FLAGS, *extra, str(src), "-o", str(lib), *LIBS],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{done.stderr}\n{src.read_text()}"
    return lib, done.stderr


def run_c(expr, dtype: str, a, b, tmp_path):
    lib = ctypes.CDLL(str(build(expr, dtype, tmp_path)[0]))
    lib.k.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 2
    out = np.empty_like(a)
    lib.k(a.ctypes.data, b.ctypes.data, out.ctypes.data, len(a), len(a))
    return out


def numpy_backend(expr, dtype: str, a, b) -> tuple:
    """(values, expression) of graphc's NumPy backend on a map of expr over inputs a, b:
    the expression is the one graphc's passes left (x0*x1 + 2*x0 - x0/x1 is evaluated as
    x0*(x1 + 2 - 1/x1)), over x0 = a and x1 = b, so the C code can compute the same."""
    g = gc.Graph("t", dtype="float32")
    m = g.map(expr, [g.input("a", (N,), dtype=dtype), g.input("b", (N,), dtype=dtype)])
    f = gc.function(g, [m], backend="numpy")
    with np.errstate(all="ignore"):
        values = f(a=a, b=b)[0]
    out = f.module.OUTPUTS[0]
    operands = {"a": x0, "b": x1}
    ran = f.graph.attrs(out)["expr"].xreplace(
        {exprs.arg(i): operands[x] for i, x in enumerate(f.graph.args(out))})
    return values, ran


def run_numpy(expr, dtype: str, a, b):
    return numpy_backend(expr, dtype, a, b)[0]


def exact(expr, dtype: str, a, b) -> list:
    """The exact value at each finite point as a float64 (float32 inputs: float64 is exact
    to 2^-29 of their ulp) or an mpmath number (float64 inputs); None where undefined."""
    if dtype == "float32":
        return list(run_numpy(expr, "float64", a.astype(np.float64), b.astype(np.float64)))
    mpmath.mp.prec = 120
    f = sympy.lambdify((x0, x1), expr, modules=MPMATH)
    values = []
    for u, v in zip(a.tolist(), b.tolist()):
        try:
            t = f(mpmath.mpf(u), mpmath.mpf(v)) if np.isfinite([u, v]).all() else None
        except (ZeroDivisionError, ValueError, OverflowError):
            t = None
        values.append(t if isinstance(t, mpmath.mpf) else None)
    return values


def ulp_error(got: float, t, dtype: str) -> float:
    """|got - t| in ulps of t in dtype (2^(e-p) for t = m 2^e with m in [0.5, 1))."""
    p, low = (24, -149) if dtype == "float32" else (53, -1074)
    if not np.isfinite(got):
        return float("inf")
    t = mpmath.mpf(t)
    e = int(mpmath.frexp(t)[1]) if t != 0 else low + p
    return float(abs(mpmath.mpf(got) - t) / mpmath.ldexp(1, max(e - p, low)))


# ---- inputs and comparison ----------------------------------------------------------------
def specials(dtype: str) -> list:
    fi = np.finfo(dtype)
    big = 1e30 if dtype == "float32" else 1e300
    return [np.nan, np.inf, -np.inf, -0.0, 0.0, fi.tiny, -fi.tiny, fi.smallest_subnormal,
            fi.max, -fi.max, big, -big, 30.0, -30.0, 100.0, -100.0, 1.0, -1.0, 0.5, -2.0,
            1e-7, 88.5, 710.0]


def inputs(dtype: str) -> tuple:
    """Every pair of special values, then random pairs (some tied); 1,529 elements, so the
    loop's scalar remainder runs too."""
    s = np.array(specials(dtype), dtype)
    a, b = np.repeat(s, len(s)), np.tile(s, len(s))
    rng = np.random.default_rng(0)
    ra = np.concatenate([rng.normal(0, 3, 500), rng.uniform(-100, 100, 500)]).astype(dtype)
    rb = np.concatenate([rng.normal(0, 3, 500), rng.uniform(-100, 100, 500)]).astype(dtype)
    rb[::7] = ra[::7]
    return np.concatenate([a, ra]), np.concatenate([b, rb])


def report(bad, got, want, a, b):
    where = np.flatnonzero(bad)[:8]
    rows = [f"x0={a[i]!r} x1={b[i]!r}: c={got[i]!r} numpy={want[i]!r}" for i in where]
    assert not bad.any(), f"{bad.sum()} mismatches:\n" + "\n".join(rows)


def assert_same(got, want, a, b):
    """Bit for bit (so the sign of every zero too), NaN at the same places."""
    nan = np.isnan(want)
    same = got.view(f"i{got.itemsize}") == want.view(f"i{want.itemsize}")
    report((np.isnan(got) != nan) | (~nan & ~same), got, want, a, b)


def assert_close(got, want, truth: list, dtype: str, a, b):
    """NaN, infinities and signed zeros where NumPy has them; elsewhere within ULPS of the
    exact value."""
    special = ~np.isfinite(want) | (want == 0)
    bad = (np.isnan(got) != np.isnan(want)) | (np.isinf(want) & (got != want))
    bad |= (want == 0) & ((got != 0) | (np.signbit(got) != np.signbit(want)))
    for i in np.flatnonzero(~special):
        t = truth[i]
        if t is not None and mpmath.isfinite(t):
            bad[i] |= ulp_error(float(got[i]), t, dtype) > ULPS
    report(bad, got, want, a, b)


def check_against_numpy(expr, dtype: str, tmp_path, close: bool = False):
    a, b = inputs(dtype)
    want, ran = numpy_backend(expr, dtype, a, b)
    got = run_c(ran, dtype, a, b, tmp_path)
    if close:
        assert_close(got, want, exact(ran, dtype, a, b), dtype, a, b)
    else:
        assert_same(got, want, a, b)


DTYPES = ["float32", "float64"]
TRANSCENDENTAL = {
    "exp": sympy.exp(x0), "log": sympy.log(x0), "tanh": sympy.tanh(x0),
    "sin": sympy.sin(x0), "cos": sympy.cos(x0), "expm1": exprs.expm1(x0),
    "sigmoid": exprs.sigmoid(x0), "softplus": exprs.softplus(x0),
    "softplus_2x": exprs.softplus(2 * x0), "cube": x0 ** 3, "pow_minus3": x0 ** -3,
    "pow8": x0 ** 8, "pow_2.5": x0 ** sympy.Float(2.5), "pow_xy": x0 ** x1,
    "pow_float3": x0 ** sympy.Float(3.0), "tanh_product": sympy.tanh(2 * x0) * x1,
}
EXACT = {
    "abs": sympy.Abs(x0), "sign": sympy.sign(x0), "floor": sympy.floor(x0),
    "sqrt": sympy.sqrt(x0), "sqrt_float": x0 ** sympy.Float(0.5),
    "rsqrt": 1 / sympy.sqrt(x0), "reciprocal": 1 / x0, "square": x0 ** 2,
    "max": sympy.Max(x0, x1), "min": sympy.Min(x0, x1), "max0": sympy.Max(x0, 0),
    "min0": sympy.Min(x0, 0), "max3": sympy.Max(x0, x1, 0.5), "min3": sympy.Min(x0, x1, -0.5),
    "relu": sympy.Piecewise((0, x0 <= 0), (x0, True)),
    "relu_sum": sympy.Piecewise((0, x0 + x1 <= 0), (x0 + x1, True)),
    "indicator": sympy.Piecewise((1, x0 > x1), (0, True)),
    "complement": sympy.Piecewise((0, x0 >= x1), (1, True)),
    "eq": sympy.Piecewise((1, sympy.Eq(x0, x1)), (0, True)),
    "ne": sympy.Piecewise((1, sympy.Ne(x0, x1)), (0, True)),
    "select": sympy.Piecewise((x0, x0 < x1), (2 * x1, x0 > 1), (-x0, True)),
    "and_or": sympy.Piecewise((x0, (x0 > 0) & (x1 < 1)), (x1, (x0 < -1) | (x1 > 2)),
                              (0.5, True)),
    "rational": x0 / 3 + sympy.Rational(2, 7),
    "floats": sympy.Float(0.1) * x0 - sympy.Float(1e-3) + sympy.Float(1e-40) * x1,
    "arithmetic": x0 * x1 - x0 / x1 + 2 * x0, "negation": -x0 - x1,
    "no_fma": x0 * x1 + 1,  # fails in GNU C modes, where gcc contracts it into one fma
    "dims": x0 * N + x1 / N, "dim_scalar": x0 * (N + 1) / 3 + N ** 2,
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TRANSCENDENTAL))
def test_transcendental_matches_numpy(case, dtype, tmp_path):
    check_against_numpy(TRANSCENDENTAL[case], dtype, tmp_path, close=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(EXACT))
def test_exact_matches_numpy(case, dtype, tmp_path):
    check_against_numpy(EXACT[case], dtype, tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_min_relu_sign_nan_and_zero(dtype, tmp_path):
    """The findings the helpers encode, spelled out: NaN in either argument wins, a tie of
    zeros gives the second argument (as np.maximum), relu(-0.0) and sign(-0.0) are 0.0."""
    a = np.array([np.nan, 1.0, -0.0, 0.0, -0.0], dtype)
    b = np.array([1.0, np.nan, 0.0, -0.0, -0.0], dtype)
    for expr in [sympy.Max(x0, x1), sympy.Min(x0, x1)]:
        out = run_c(expr, dtype, a, b, tmp_path)
        assert np.isnan(out[:2]).all()
        assert np.signbit(out[2:]).tolist() == [False, True, True]
    for expr in [EXACT["relu"], sympy.sign(x0)]:
        out = run_c(expr, dtype, a, b, tmp_path)
        assert np.isnan(out[0]) and not np.signbit(out[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_default_not_and_infinity(dtype, tmp_path):
    """What the NumPy backend cannot print (NaN where no condition holds, Not, inf, nan, pi
    and E) against the same thing written in NumPy."""
    a, b = inputs(dtype)
    t = np.dtype(dtype).type
    with np.errstate(over="ignore"):
        constants = a * t(np.pi) + t(np.e)
    cases = [
        (sympy.pi * x0 + sympy.E, constants),
        (sympy.Piecewise((x0, x0 > 1), (x1, x0 < -1)),
         np.where(a > 1, a, np.where(a < -1, b, np.nan))),
        (sympy.Piecewise((1, sympy.Not((x0 > 0) & (x1 > 0))), (0, True)),
         np.where(~((a > 0) & (b > 0)), 1.0, 0.0)),
        (sympy.Piecewise((sympy.oo, x0 > 1), (-sympy.oo, x0 < -1), (sympy.nan, True)),
         np.where(a > 1, np.inf, np.where(a < -1, -np.inf, np.nan))),
    ]
    for expr, want in cases:
        assert_same(run_c(expr, dtype, a, b, tmp_path), want.astype(dtype), a, b)


INT_EXPRS = [x0 * x1 + 3, sympy.Max(x0, x1), sympy.Min(x0, x1, 5), sympy.Abs(x0),
             sympy.sign(x0), x0 ** 3, -x0 - 2 * x1, x0 * N - N,
             sympy.Piecewise((x0, x0 > 1), (2 * x1, sympy.Eq(x0, x1)), (7, True))]


@pytest.mark.parametrize("expr", INT_EXPRS, ids=str)
def test_int64_matches_numpy(expr, tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.integers(-1000, 1000, (2, 301))
    a[:3], b[:3] = [0, -5, 5], [0, -5, -5]
    assert np.array_equal(run_c(expr, "int64", a, b, tmp_path), run_numpy(expr, "int64", a, b))


def test_int64_abs_and_sign_at_the_extremes(tmp_path):
    a = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0], np.int64)
    for expr in [sympy.Abs(x0), sympy.sign(x0)]:
        assert np.array_equal(run_c(expr, "int64", a, a, tmp_path), run_numpy(expr, "int64", a, a))


@pytest.mark.parametrize("expr", [sympy.exp(x0), exprs.sigmoid(x0), exprs.softplus(x0),
                                  sympy.floor(x0), x0 / x1, x0 ** -1, x0 ** 9,
                                  sympy.Float(0.5) * x0, sympy.Piecewise((x0, x0 > 0))],
                         ids=str)
def test_int64_refuses_float_only_code(expr):
    with pytest.raises(NotImplementedError, match="int64"):
        print_expr(expr, NAMES, "int64")


def test_int64_names_the_function():
    with pytest.raises(NotImplementedError, match="tanh"):
        print_expr(sympy.tanh(x0), NAMES, "int64")


@pytest.mark.parametrize("expr", [sympy.atan(x0), sympy.Mod(x0, 3), sympy.gamma(x0),
                                  sympy.Xor(x0 > 0, x1 > 0), sympy.I * x0], ids=str)
def test_unsupported_is_refused_by_name(expr):
    with pytest.raises(NotImplementedError, match="c backend: no C code for"):
        print_expr(expr, NAMES, "float32")


def test_unsupported_message_names_function_and_expression():
    with pytest.raises(NotImplementedError, match=r"atan in x0 \+ atan\(x0\)"):
        print_expr(x0 + sympy.atan(x0), NAMES, "float32")


def test_unbound_symbol_is_named():
    with pytest.raises(NotImplementedError, match="M"):
        print_expr(x0 * gc.sym("M"), NAMES, "float32")


def test_literals_are_exact_and_typed():
    assert print_expr(x0 + 0.5, NAMES, "float32") == "(0.5f + x0[i])"
    assert print_expr(sympy.exp(x0), NAMES, "float32") == "expf(x0[i])"
    assert print_expr(x0 * N, NAMES, "float32") == "(x0[i] * ((float)N))"
    assert print_expr(x0 * N, NAMES, "float64") == "(x0[i] * ((double)N))"
    assert print_expr(x0 * N, NAMES, "int64") == "(x0[i] * N)"
    third = print_expr(x0 * sympy.Rational(1, 3), NAMES, "float64")
    assert float(re.search(r"\* (.*)\)", third).group(1)) == 1 / 3
    assert print_expr(x0 + 5 * 10 ** 9, NAMES, "int64") == "(INT64_C(5000000000) + x0[i])"
    assert print_expr(x0 + sympy.Float(1e300), NAMES, "float32") == "(HUGE_VALF + x0[i])"
    indicator = print_expr(EXACT["indicator"], NAMES, "float32")
    assert indicator == "((x0[i] > x1[i]) ? 1.0f : 0.0f)"


def test_cse_locals_print_as_themselves():
    """kernels.py names sympy.cse temporaries: plain (non-integer) symbols, already typed."""
    c0, c1 = sympy.symbols("t_c0 t_c1")
    names = {**NAMES, "t_c0": "t_c0", "t_c1": "t_c1"}
    text = print_expr(sympy.Piecewise((c0 * x0, c1), (2 * c0, True)), names, "float32")
    assert text == "(t_c1 ? (t_c0 * x0[i]) : (t_c0 * 2.0f))"
    # a local is an operand like x0, not a dim: no cast, not folded into the scalar factor
    assert print_expr(3 * c0 * x0, names, "float32") == "((t_c0 * x0[i]) * 3.0f)"


def test_prelude_calls_no_fmax():
    assert not re.search(r"\bf(max|min)f?\s*\(", PRELUDE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["exp", "log", "tanh", "softplus"])
def test_math_calls_are_libmvec_vectors(case, dtype, tmp_path):
    """With these flags the loop calls glibc's vector math (_ZGVeN16v_expf with AVX-512):
    a flag change that loses the vector calls fails here."""
    lib, _ = build(TRANSCENDENTAL[case], dtype, tmp_path)
    symbols = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True).stdout
    f = "f" if dtype == "float32" else ""
    names = [case + f] if case != "softplus" else ["exp" + f, "log1p" + f]
    isa = "e" if "avx512f" in open("/proc/cpuinfo").read() else "[bcd]"
    for name in names:
        assert re.search(rf"_ZGV{isa}N\d+v_{name}\b", symbols), symbols


NESTED = sympy.Max(sympy.Min(x0, 2), x1) + sympy.Piecewise((sympy.Max(x1, 0), x0 > 0),
                                                           (sympy.Min(x0, x1), True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("expr", [EXACT[k] for k in ["max", "min3", "sign", "relu", "select",
                                                      "and_or"]] + [NESTED], ids=str)
def test_selects_vectorize(expr, dtype, tmp_path):
    """The NaN-keeping max/min (nested too) and the ternaries leave the loop vectorizable
    (one fmaxf, or a NaN test before the compare in nested helpers, did not)."""
    _, log = build(expr, dtype, tmp_path, ["-fopt-info-vec-optimized"])
    assert "loop vectorized" in log, log
