"""Worst ulp error of the C printer's exp, log, tanh, sigmoid and softplus, compiled with the C
backend's flags (libmvec vector calls in an `omp simd` loop), beside NumPy's own ufuncs.

    python -m graphc.bench.c_ulp [--points 16777216] [--float64-points 16384]

float32: a dense sweep of each function's useful range, errors against float64 (exact enough:
its own error is 2^-29 of a float32 ulp). float64: random points against mpmath.
"""
from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mpmath
import numpy as np
import sympy

from graphc import exprs
from graphc.codegen.c.printer import C_TYPE, PRELUDE, print_expr

from . import harness

FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp",
         "-fPIC", "-shared", "-std=c11"]
LIBS = ["-lmvec", "-lm"]
KERNEL = """
void k_{name}(const {t} *x0, {t} *out, int64_t n) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = {body};
}}
"""
x = exprs.arg(0)
EXPRS = {"exp": sympy.exp(x), "log": sympy.log(x), "tanh": sympy.tanh(x),
         "sigmoid": exprs.sigmoid(x), "softplus": exprs.softplus(x)}
# float32 ranges whose results are normal numbers: exp(x) overflows above 88.72 and is
# subnormal below -87.34; sigmoid and softplus follow exp on the left
RANGES = {"exp": (-87.0, 88.5), "log": (1e-30, 1e30), "tanh": (-100.0, 100.0),
          "sigmoid": (-87.0, 100.0), "softplus": (-87.0, 100.0)}
MP = {"exp": mpmath.exp, "log": mpmath.log, "tanh": mpmath.tanh,
      "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
      "softplus": lambda v: mpmath.log1p(mpmath.exp(v))}


def numpy_like_backend(name: str, a):
    """What graphc's NumPy backend computes: the same ufuncs, in a's dtype."""
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            return 1.0 / (np.exp(-a) + 1.0)
        if name == "softplus":
            return np.log1p(np.exp(-np.abs(a))) + np.maximum(a, 0.0)
        return getattr(np, name)(a)


def float64_truth(name: str, a):
    v = a.astype(np.float64)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-v))
    if name == "softplus":
        return np.logaddexp(0.0, v)
    return getattr(np, name)(v)


def compile_kernels(dtype: str, where: Path):
    """One library with k_<name> for every function, printed by the C printer."""
    src, lib = where / f"ulp_{dtype}.c", where / f"ulp_{dtype}.so"
    bodies = [KERNEL.format(name=n, t=C_TYPE[dtype], body=print_expr(e, {"x0": "x0[i]"}, dtype))
              for n, e in EXPRS.items()]
    src.write_text(PRELUDE + "".join(bodies))
    cc = shutil.which("gcc") or shutil.which("cc") or "cc"
    subprocess.run([cc, *FLAGS, str(src), "-o", str(lib), *LIBS], check=True)
    nm = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True).stdout
    vectors = sorted({w.split("@")[0] for w in nm.split() if w.startswith("_ZGV")})
    return ctypes.CDLL(str(lib)), vectors


def run_c(lib, name: str, a):
    out = np.empty_like(a)
    fn = getattr(lib, f"k_{name}")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn(a.ctypes.data, out.ctypes.data, len(a))
    return out


def ulps32(got, truth):
    """|got - truth| in float32 ulps of truth (2^(e-24) for truth = m 2^e, m in [0.5, 1))."""
    _, e = np.frexp(truth)
    ulp = np.ldexp(1.0, np.maximum(e - 24, -149))
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - truth) / ulp
    return np.where(np.isfinite(err), err, np.inf)


def sweep(name: str, points: int):
    lo, hi = RANGES[name]
    if name == "log":
        return np.unique(np.geomspace(lo, hi, points).astype(np.float32))
    return np.unique(np.linspace(lo, hi, points).astype(np.float32))


def float32_rows(lib, points: int) -> list:
    rows = []
    for name in EXPRS:
        a = sweep(name, points)
        truth = float64_truth(name, a)
        lo, hi = RANGES[name]
        for who, got in [("C", run_c(lib, name, a)), ("NumPy", numpy_like_backend(name, a))]:
            err = ulps32(got, truth)
            k = int(np.argmax(err))
            rows.append([f"{name} ({who})", f"[{lo:g}, {hi:g}]", len(a), float(err[k]),
                         f"x = {a[k]!s}"])
    return rows


def ulps64(got: float, truth) -> float:
    if not np.isfinite(got):
        return float("inf")
    _, e = mpmath.frexp(truth)
    return float(abs(mpmath.mpf(got) - truth) / mpmath.ldexp(1, max(int(e) - 53, -1074)))


def float64_rows(lib, points: int) -> list:
    mpmath.mp.prec = 120
    rng = np.random.default_rng(0)
    rows = []
    for name in EXPRS:
        lo, hi = RANGES[name]
        a = (np.exp(rng.uniform(np.log(lo), np.log(hi), points)) if name == "log"
             else rng.uniform(lo, hi, points))
        truth = [MP[name](mpmath.mpf(float(v))) for v in a]
        for who, got in [("C", run_c(lib, name, a)), ("NumPy", numpy_like_backend(name, a))]:
            err = [ulps64(float(g), t) for g, t in zip(got, truth)]
            k = int(np.argmax(err))
            rows.append([f"{name} ({who})", f"[{lo:g}, {hi:g}]", points, err[k], f"x = {a[k]!s}"])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2 ** 24, help="float32 sweep points")
    ap.add_argument("--float64-points", type=int, default=2 ** 14, help="float64 samples")
    args = ap.parse_args(argv)
    if not (shutil.which("gcc") or shutil.which("cc")):
        print("no C compiler (gcc or cc) on PATH", file=sys.stderr)
        return 1
    start = time.perf_counter()
    header = ["function", "range", "points", "worst ulp", "where"]
    with tempfile.TemporaryDirectory(prefix="graphc-ulp-") as tmp:
        for dtype, rows_of, points in [("float32", float32_rows, args.points),
                                       ("float64", float64_rows, args.float64_points)]:
            lib, vectors = compile_kernels(dtype, Path(tmp))
            print(f"\n{dtype} ({harness.cpu_model()}; vector calls: {', '.join(vectors)})")
            print(harness.table(rows_of(lib, points), header))
    print(f"\n{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
