"""SymPy expression -> one C expression (float, double or int64_t) over kernel locals.

Follows the NumPy backend (codegen/ufuncs.py) node for node: the same operand order, literal
rounding and NaN/-0 results, so the two agree bit for bit wherever no libm call is involved.
A function's C call is its spelling in graphc/functions.py.
"""
from __future__ import annotations

import math

import numpy as np
import sympy
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import BooleanAtom
from sympy.printing.c import C99CodePrinter

from graphc import exprs, functions

C_TYPE = {"float32": "float", "float64": "double", "int64": "int64_t"}
SUFFIX = {"float32": "f", "float64": "", "int64": "_i64"}  # the PRELUDE helpers' name endings
# what this printer prints itself; calls of functions are the table's (functions.FUNCTIONS)
NODES = (sympy.Symbol, sympy.Add, sympy.Mul, sympy.Pow, sympy.Max, sympy.Min, sympy.Piecewise,
         ExprCondPair, sympy.core.relational.Relational, sympy.And, sympy.Or, sympy.Not,
         BooleanAtom)
# math.h functions libmvec has vector versions of (glibc >= 2.35 for tanh, log1p, expm1, erf;
# all present in glibc 2.36's libmvec.so.1): float and double, SSE to AVX-512 (_ZGVeN16v_expf)
SIMD_MATH = (*functions.simd_functions(), "pow")
MAX_MULTIPLY_POWER = 8  # x**k for |k| <= 8 printed as repeated products (no pow call)

_FLOAT_HELPERS = """\
static inline {t} graphc_max{s}({t} a, {t} b) {{
    const {t} m = a > b ? a : b;
    return a != a ? a : m;
}}
static inline {t} graphc_min{s}({t} a, {t} b) {{
    const {t} m = a < b ? a : b;
    return a != a ? a : m;
}}
static inline {t} graphc_sign{s}({t} a) {{ return a > 0 ? 1 : (a < 0 ? -1 : (a == 0 ? 0 : a)); }}
static inline {t} graphc_softplus{s}({t} a) {{
    return graphc_max{s}(a, 0) + log1p{s}(exp{s}(-fabs{s}(a)));
}}"""
_INT_HELPERS = """\
static inline int64_t graphc_max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t graphc_min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t graphc_sign_i64(int64_t a) { return (a > 0) - (a < 0); }
/* np.absolute(INT64_MIN) wraps to INT64_MIN; -a would be undefined behaviour */
static inline int64_t graphc_abs_i64(int64_t a) {
    return a < 0 ? (int64_t)(0 - (uint64_t)a) : a;
}"""


def _simd_declarations() -> list:
    """`declare simd` redeclarations of math.h's functions: gcc then calls libmvec's vector
    versions in `omp simd` loops (glibc's math.h does the same only under -ffast-math)."""
    lines = ["#ifndef GRAPHC_NO_LIBMVEC  /* defined where -lmvec does not link */"]
    for name in SIMD_MATH:
        for ctype, f in (("float", "f"), ("double", "")):
            params = ", ".join([ctype] * (2 if name == "pow" else 1))
            lines += ["#pragma omp declare simd notinbranch", f"{ctype} {name}{f}({params});"]
    return lines + ["#endif"]


PRELUDE = "\n".join([
    "#include <math.h>", "#include <stddef.h>", "#include <stdint.h>", "",
    *_simd_declarations(), "",
    "/* max/min as np.maximum/np.minimum: NaN in either argument gives NaN, and a tie gives b",
    "   (max(-0.0, 0.0) is 0.0, max(0.0, -0.0) is -0.0). Selects, not fmaxf: fmaxf drops NaN",
    "   and keeps gcc from vectorizing the loop; the NaN test comes after the compare (before",
    "   it, gcc 12 vectorizes one call but not nested ones). sign as np.sign: sign(-0.0) = 0. */",
    _FLOAT_HELPERS.format(t="float", s="f"), _FLOAT_HELPERS.format(t="double", s=""),
    _INT_HELPERS, ""])


def float_literal(value: float, dtype: str) -> str:
    """value rounded to dtype, as NumPy rounds a Python float operand to a float32 array's
    type, and spelled so that C reads back exactly that number."""
    if dtype == "float32":
        with np.errstate(over="ignore"):
            value = np.float32(value)
        text, inf = f"{value!s}f", "HUGE_VALF"  # str of a float32: the shortest exact text
    else:
        text, inf = repr(float(value)), "HUGE_VAL"
    if np.isnan(value):
        return "NAN"
    if np.isinf(value):
        return inf if value > 0 else f"(-{inf})"
    return f"({text})" if text.startswith("-") else text


def int_literal(k: int) -> str:
    if not -2 ** 63 <= k < 2 ** 63:
        raise NotImplementedError(f"c backend: the integer {k} does not fit int64_t")
    text = str(k) if -2 ** 31 <= k < 2 ** 31 else f"INT64_C({k})"
    text = "INT64_MIN" if k == -2 ** 63 else text
    return f"({text})" if k < 0 else text


class CPrinter(C99CodePrinter):
    """Prints one expression. `names`: symbol name -> C text (an argument x<i> left out is
    the C local x<i>; integer symbols, the graph's dims, are int64_t values; other symbols
    are kernel locals such as cse temporaries); `dtype`: what the kernel computes in;
    `scalar`: printing an argument-free part (NumPy computes it in Python, in double)."""

    def __init__(self, names: dict, dtype: str = "float32", scalar: bool = False):
        super().__init__({"strict": True})
        if dtype not in C_TYPE:
            raise ValueError(f"c backend: no C type for {dtype!r} ({', '.join(C_TYPE)})")
        self.names, self.dtype, self.scalar = names, dtype, scalar
        self.ctype, self.suffix, self.is_float = C_TYPE[dtype], SUFFIX[dtype], dtype != "int64"

    # ---- what is a leaf (one NumPy operand) --------------------------------------------
    def is_value(self, s: sympy.Symbol) -> bool:
        """An argument or a kernel local; the other symbols are dims."""
        return exprs.arg_index(s) is not None or not s.is_integer

    def is_operand(self, e) -> bool:
        return e.is_Symbol and (self.scalar or self.is_value(e))

    def is_leaf(self, e) -> bool:
        """What the NumPy backend passes to a ufunc as is: an operand, or (outside scalar
        mode) anything free of arguments, which it computes as one Python scalar."""
        if self.is_operand(e):
            return True
        return e.is_number if self.scalar else not any(map(self.is_value, e.free_symbols))

    def _print(self, expr, **kwargs):
        if isinstance(expr, sympy.Expr) and not expr.is_Symbol:
            if expr.is_number:
                return self.literal(expr)
            if not self.scalar and self.is_leaf(expr):
                return self.scalar_value(expr)
            spelled = functions.spelling(expr)
            if spelled is not None:
                return self.function(spelled, expr)
        return super()._print(expr, **kwargs)

    def scalar_value(self, expr) -> str:
        """An argument-free part (2/N): in double, as NumPy's Python scalar, rounded once."""
        inner = CPrinter(self.names, "float64" if self.is_float else "int64", True)._print(expr)
        return f"((float){inner})" if self.dtype == "float32" else inner

    # ---- atoms -------------------------------------------------------------------------
    def _print_Symbol(self, expr):
        name = expr.name
        if exprs.arg_index(expr) is not None:
            return self.names.get(name, name)
        if name not in self.names:
            raise NotImplementedError(f"c backend: unbound symbol {name} (neither an argument "
                                      "nor in names)")
        if self.is_value(expr) or not self.is_float:
            return self.names[name]
        return f"(({self.ctype}){self.names[name]})"  # an int64_t dim in float arithmetic

    def literal(self, expr) -> str:
        if not self.is_float:
            if not expr.is_Integer:
                raise NotImplementedError(f"c backend: int64 code has integer literals only, "
                                          f"not {expr}")
            return int_literal(int(expr))
        try:
            value = float(expr)
        except TypeError:
            raise NotImplementedError(f"c backend: no C code for the number {expr}") from None
        return float_literal(value, self.dtype)

    def _print_BooleanTrue(self, expr):
        return "1"

    def _print_BooleanFalse(self, expr):
        return "0"

    # ---- arithmetic, in the NumPy backend's order --------------------------------------
    def _print_Add(self, expr):
        pos = [t for t in expr.args if not t.could_extract_minus_sign()]
        neg = [-t for t in expr.args if t.could_extract_minus_sign()]
        if not pos:
            return f"(-{self._print(sympy.Add(*neg))})"
        pos.sort(key=self.is_leaf)  # compound terms first, as NumPy computes them in place
        text = self._print(pos[0])
        for t in pos[1:]:
            text = f"({text} + {self._print(t)})"
        for t in neg:
            text = f"({text} - {self._print(t)})"
        return text

    def _print_Mul(self, expr):
        factors = sympy.Mul.make_args(expr)
        numeric = [f for f in factors if self.is_leaf(f) and not self.is_operand(f)]
        scalar = sympy.Mul(*numeric)  # numbers and dims (0.9, 1/N): one factor, as NumPy's
        arrays = [f for f in factors if f not in numeric]
        den = [f.base ** -f.exp for f in arrays if f.is_Pow and f.exp.is_negative]
        num = [f for f in arrays if not (f.is_Pow and f.exp.is_negative)]
        if den and not self.is_float:
            raise NotImplementedError(f"c backend: no int64 C code for the division in {expr}")
        if not num:
            text = self.literal(sympy.Integer(1)) if scalar in (1, -1) else self._print(scalar)
        else:
            num.sort(key=self.is_leaf)
            text = self._print(num[0])
            for f in num[1:]:
                text = f"({text} * {self._print(f)})"
            if scalar not in (1, -1):
                text = f"({text} * {self._print(scalar)})"
        for f in den:
            text = f"({text} / {self._print(f)})"
        return f"(-{text})" if scalar == -1 else text

    def _print_Pow(self, expr):
        base, ex = expr.args
        b, k = self._print(base), integer_power(ex)
        if not self.is_float and not (k is not None and 0 < k <= MAX_MULTIPLY_POWER):
            raise NotImplementedError(f"c backend: no int64 C code for the power {expr}")
        one = self.literal(sympy.Integer(1))
        if ex.is_number and ex.is_real and float(ex) == 0.5:
            # Rational(1, 2) is np.sqrt in the NumPy backend, Float 0.5 np.power's own sqrt
            return f"{self.math('sqrt', expr)}({b})"
        if ex == sympy.Rational(-1, 2):  # NumPy: np.sqrt, then 1/ (1/sqrt(-0.0) = -inf)
            return f"({one} / {self.math('sqrt', expr)}({b}))"
        if k is not None and 0 < abs(k) <= MAX_MULTIPLY_POWER:
            product = " * ".join([b] * abs(k))
            if k > 0:
                return f"({product})" if k > 1 else b
            return f"({one} / {b})" if k == -1 else f"({one} / ({product}))"
        return f"{self.math('pow', expr)}({b}, {self._print(ex)})"

    def _print_Max(self, expr):
        return self._fold(f"graphc_max{self.suffix}", expr.args)

    def _print_Min(self, expr):
        return self._fold(f"graphc_min{self.suffix}", expr.args)

    def _fold(self, fn: str, args) -> str:
        """Left to right, as the NumPy backend's chain of np.maximum (a tie keeps the later)."""
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{fn}({text}, {self._print(a)})"
        return text

    # ---- functions ---------------------------------------------------------------------
    def math(self, name: str, expr) -> str:
        """math.h's `name` for the kernel type: expf in float32 code, exp in float64."""
        if not self.is_float:
            raise NotImplementedError(f"c backend: {expr.func.__name__} has no int64 C code "
                                      f"(in {expr})")
        return name + ("f" if self.dtype == "float32" else "")

    def function(self, spelled: functions.Spelling, expr) -> str:
        """The table's C spelling of a call (c_int in int64 code, where there is one)."""
        text = spelled.c if self.is_float else spelled.c_int
        if text is None:
            raise NotImplementedError(f"c backend: {expr.func.__name__} has no int64 C code "
                                      f"(in {expr})")
        f = "f" if self.dtype == "float32" else ""  # expf in float32 code, exp in float64
        return text.format(x=self._print(expr.args[0]), f=f, s=self.suffix,
                           one=self.literal(sympy.Integer(1)))

    def _print_Function(self, expr):
        raise NotImplementedError(f"c backend: no C code for {expr.func} in {expr}")

    def _print_not_supported(self, expr):
        raise NotImplementedError(f"c backend: no C code for {type(expr).__name__} {expr}")

    # ---- Piecewise and conditions ------------------------------------------------------
    def _print_Piecewise(self, expr):
        """Nested selects, the first true condition outermost; NaN where none holds. The
        relu Piecewise((0, x <= 0), (x, True)) needs no special case: NaN fails x <= 0 and
        stays, -0.0 passes it and gives 0.0, as np.maximum(x, 0.0) in the NumPy backend."""
        pieces = list(expr.args)
        last = pieces[-1]
        if last.cond == sympy.true:
            text, rest = self._print(last.expr), pieces[:-1]
        elif self.is_float:
            text, rest = "NAN", pieces
        else:
            raise NotImplementedError(f"c backend: int64 Piecewise without a default: {expr}")
        for v, c in reversed(rest):
            text = f"({self._print(c)} ? {self._print(v)} : {text})"
        return text

    def _print_Relational(self, expr):
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_And(self, expr):  # & on 0/1 ints: no branch, so the loop still vectorizes
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(!{self._print(expr.args[0])})"


def integer_power(ex) -> int | None:
    """k when the exponent is the integer k (Integer 3 or Float 3.0), else None."""
    if not (ex.is_number and ex.is_real):
        return None
    k = float(ex)
    return int(k) if math.isfinite(k) and k == int(k) else None


def check(expr, top) -> None:
    """Refuses any node this printer has no C for, naming it."""
    if isinstance(expr, sympy.Expr) and expr.is_number:
        return
    if not isinstance(expr, NODES) and functions.spelling(expr) is None:
        raise NotImplementedError(f"c backend: no C code for {expr.func} in {top}")
    for a in expr.args:
        check(a, top)


def print_expr(expr, names: dict, dtype: str = "float32") -> str:
    """One C expression computing `expr` in `dtype` (see CPrinter for `names`)."""
    expr = sympy.sympify(expr)
    check(expr, expr)
    return CPrinter(names, dtype)._print(expr)
