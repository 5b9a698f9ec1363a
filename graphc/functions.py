"""The elementwise functions a map expression may call, one entry each, keyed by SymPy class:
its NumPy, Triton and C spellings, whether it is float-only, its builder name. The printers
(codegen/ufuncs.py, codegen/triton/printer.py, codegen/c/printer.py) and constant folding
read this table; tests/test_functions.py checks that every entry is spelled everywhere."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy


def _at_number(value, x):
    """The value at a number, in float64: fusion can fold an argument to a literal
    (sigmoid(x - x) is sigmoid(0)), and printers take numbers, not calls of these classes."""
    if not x.is_Number:
        return None
    with np.errstate(all="ignore"):
        return sympy.Float(float(value(np.float64(float(x)))))


# ---- the functions SymPy lacks --------------------------------------------------------------

class sigmoid(sympy.Function):
    """1/(1+exp(-x)); its derivative is written through its own value, which is both stable
    (raw diff is exp(-x)/(1+exp(-x))**2 = nan at x=-1000) and lets backward reuse the output."""

    is_real = True

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, x):
        return _at_number(lambda v: 1 / (1 + np.exp(-v)), x)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))


class softplus(sympy.Function):
    """log(1+exp(x)), printed in the stable form max(x,0) + log1p(exp(-|x|))."""

    is_real = True

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @classmethod
    def eval(cls, x):
        return _at_number(lambda v: np.logaddexp(0, v), x)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))


class expm1(sympy.Function):
    """exp(x) - 1 without the cancellation near 0 (exp(-1e-12) - 1 keeps 5 digits; expm1
    keeps them all), as np.expm1 and libdevice.expm1; its derivative is exp(x)."""

    is_real = True

    def fdiff(self, argindex=1):
        return sympy.exp(self.args[0])

    @classmethod
    def eval(cls, x):
        return _at_number(np.expm1, x)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.exp(x) - 1


# ---- NumPy helpers for functions NumPy has no ufunc for -------------------------------------

_math_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x, out=None):
    """math.erf elementwise into `out` (NumPy has no erf; the Triton interpreter's tl.erf is
    math.erf too). One Python call per element: the C and Triton backends are the fast ones."""
    x = np.asarray(x)
    if out is None:
        out = np.empty(x.shape, x.dtype if x.dtype.kind == "f" else np.float64)
    out[...] = _math_erf(x)
    return out


# names a NumPy step may call besides numpy's ufuncs; generated NumPy code imports them
NUMPY_HELPERS = {"erf": erf}


# ---- the table ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spelling:
    """How each target writes one function of one argument.

    numpy: ufunc steps, each (ufunc, operand.., destination) over "x" (the argument), "out"
      (the result buffer), "tmp" (a scratch buffer; when used, x is computed into it, so x
      stays readable after out is written) and float literals; a bare name is one step
      (name, "x", "out"). numpy_note: a comment on the first step's line.
    triton: a Triton expression in core `tl` ops (what the interpreter has); libdevice: the
      GPU form where it differs. Fields: {x} the argument, {x_atom} it bracketed unless atomic.
    c: a C expression for float and double kernels, c_int for int64 ones (None: refused).
      Fields: {x}, {f} ("f" in float code: expf), {s} (the PRELUDE helpers' suffix: f, "",
      _i64), {one} (the literal 1). simd: the math.h functions it calls, which libmvec has
      vector versions of (declared `omp declare simd` in the C PRELUDE).
    float_only: no integer values (an int64 argument is refused rather than promoted).
    builder: the graphc builder function applying it (gc.tanh), None when there is none.
    """

    numpy: str | tuple
    triton: str
    c: str
    libdevice: str | None = None
    c_int: str | None = None
    simd: tuple = ()
    float_only: bool = True
    builder: str | None = None
    numpy_note: str = ""

    def numpy_steps(self) -> tuple:
        if isinstance(self.numpy, str):
            return ((self.numpy, "x", "out"),)
        return self.numpy

    def triton_text(self, libdevice: bool) -> str:
        return self.libdevice if libdevice and self.libdevice else self.triton


NAN_ALL = "propagate_nan=tl.PropagateNan.ALL"  # tl.maximum drops NaN by default; torch keeps it

FUNCTIONS: dict = {
    sympy.exp: Spelling("exp", "tl.exp({x})", "exp{f}({x})", simd=("exp",), builder="exp"),
    sympy.log: Spelling("log", "tl.log({x})", "log{f}({x})", simd=("log",), builder="log"),
    # the interpreter has no tanh: 2*sigmoid(2x) - 1 (an absolute error of ~eps near 0)
    sympy.tanh: Spelling("tanh", "(2 * tl.sigmoid(2 * {x_atom}) - 1)", "tanh{f}({x})",
                         libdevice="libdevice.tanh({x})", simd=("tanh",), builder="tanh"),
    sympy.sin: Spelling("sin", "tl.sin({x})", "sin{f}({x})", simd=("sin",), builder="sin"),
    sympy.cos: Spelling("cos", "tl.cos({x})", "cos{f}({x})", simd=("cos",), builder="cos"),
    # np.absolute(INT64_MIN) wraps: graphc_abs_i64 does the same without undefined behaviour
    sympy.Abs: Spelling("absolute", "tl.abs({x})", "fabs{f}({x})",
                        c_int="graphc_abs_i64({x})", float_only=False, builder="abs"),
    # the last branch returns x itself: sign(0) = 0 and sign(nan) = nan, as np.sign
    sympy.sign: Spelling("sign", "tl.where({x} > 0, 1.0, tl.where({x} < 0, -1.0, {x}))",
                         "graphc_sign{s}({x})", c_int="graphc_sign{s}({x})", float_only=False),
    sympy.floor: Spelling("floor", "tl.floor({x})", "floor{f}({x})"),
    sigmoid: Spelling(
        (("negative", "x", "out"), ("exp", "out", "out"), ("add", "out", 1.0, "out"),
         ("divide", 1.0, "out", "out")), "tl.sigmoid({x})",
        "({one} / ({one} + exp{f}((-{x}))))", simd=("exp",), builder="sigmoid",
        numpy_note="sigmoid = 1/(1+exp(-x))"),
    # the stable form max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|; the
    # interpreter has no log1p (log(1 + u)); in C a PRELUDE helper, as x is used twice
    softplus: Spelling(
        (("absolute", "x", "out"), ("negative", "out", "out"), ("exp", "out", "out"),
         ("log1p", "out", "out"), ("maximum", "x", 0.0, "tmp"), ("add", "out", "tmp", "out")),
        f"(tl.maximum({{x}}, 0.0, {NAN_ALL}) + tl.log(1 + tl.exp(-tl.abs({{x}}))))",
        "graphc_softplus{s}({x})",
        libdevice=f"(tl.maximum({{x}}, 0.0, {NAN_ALL}) + libdevice.log1p(tl.exp(-tl.abs({{x}}))))",
        simd=("exp", "log1p"), builder="softplus",
        numpy_note="softplus = max(x,0) + log1p(exp(-|x|))"),
    # the interpreter has only tl.exp: exp(x) - 1 (an absolute error of eps near 0)
    expm1: Spelling("expm1", "(tl.exp({x}) - 1)", "expm1{f}({x})",
                    libdevice="libdevice.expm1({x})", simd=("expm1",)),
    sympy.erf: Spelling("erf", "tl.erf({x})", "erf{f}({x})", simd=("erf",)),
}


def spelling(expr) -> Spelling | None:
    """The table's entry for a call (by its class), or None."""
    return FUNCTIONS.get(type(expr)) or FUNCTIONS.get(getattr(expr, "func", None))


def simd_functions() -> tuple:
    """The math.h functions the C spellings call, in table order, each once."""
    return tuple(dict.fromkeys(name for s in FUNCTIONS.values() for name in s.simd))


# ---- NumPy evaluation of the steps (constant folding) ---------------------------------------

def numpy_ufunc(name: str):
    """numpy's ufunc `name`, or a helper of NUMPY_HELPERS."""
    return NUMPY_HELPERS.get(name) or getattr(np, name)


def numpy_evaluate(fn, x) -> np.ndarray:
    """fn(x) for one of FUNCTIONS, by the very ufunc steps the NumPy backend prints."""
    x = np.asarray(x)
    integer = x.dtype.kind in "iub"
    dtype = np.float64 if integer and FUNCTIONS[fn].float_only else x.dtype
    buffers = {"x": x, "out": np.empty(x.shape, dtype), "tmp": np.empty(x.shape, dtype)}
    for name, *operands, dest in FUNCTIONS[fn].numpy_steps():
        numpy_ufunc(name)(*[buffers.get(o, o) for o in operands], out=buffers[dest])
    return buffers["out"]


def for_lambdify(expr: sympy.Expr) -> tuple:
    """(expr with each call of the table renamed graphc_<name>, name -> its NumPy callable):
    sympy.lambdify then calls the table's NumPy steps, not its own spelling of the function."""
    renamed = expr.replace(lambda e: spelling(e) is not None,
                           lambda e: sympy.Function(f"graphc_{e.func.__name__}")(*e.args))
    return renamed, {f"graphc_{fn.__name__}": (lambda x, fn=fn: numpy_evaluate(fn, x))
                     for fn in FUNCTIONS}
