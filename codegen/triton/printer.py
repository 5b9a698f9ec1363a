"""SymPy expression -> one Triton expression (`tl.exp`, `tl.where`, ...) over kernel locals.

Kink and stability conventions live in the expressions; a function's Triton call is its
spelling in graphc/functions.py. Two targets: the interpreter (core `tl` math only) and a
real GPU (`libdevice` for tanh, log1p, expm1 and general powers).
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from graphc import exprs, functions
from graphc.functions import NAN_ALL

TL_DTYPE = {"float32": "tl.float32", "float64": "tl.float64", "int64": "tl.int64"}
STRUCTURAL = {sympy.Max, sympy.Min, sympy.Piecewise}  # printed here; functions by the table
MAX_MULTIPLY_POWER = 8  # x**k for |k| <= 8 printed as repeated products (exact, no pow)


class TritonPrinter(PythonCodePrinter):
    """Prints one expression. `names`: SymPy symbol name (x0, x1, ... and dims) -> source
    text; `dtype`: the float type the kernel computes in; `libdevice`: GPU-only math."""

    def __init__(self, names: dict, dtype: str = "float32", libdevice: bool = False):
        super().__init__({"fully_qualified_modules": False})
        self.names, self.dtype, self.libdevice = names, dtype, libdevice
        self.dims_used: set = set()
        self.locals: set = set()  # symbols naming kernel locals, not graph dims

    def doprint(self, expr, assign_to=None):
        """Refuses functions with no Triton spelling rather than print Python math."""
        for f in sympy.sympify(expr).atoms(sympy.Function):
            if f.func not in STRUCTURAL and functions.spelling(f) is None:
                raise NotImplementedError(f"triton backend: no Triton code for {f.func} in {expr}")
        return super().doprint(expr, assign_to)

    # ---- atoms -------------------------------------------------------------------------
    def _print_Symbol(self, expr):
        if expr.name not in self.names:
            raise NotImplementedError(f"triton backend: unbound symbol {expr.name}")
        if exprs.arg_index(expr) is not None:
            return self.names[expr.name]
        self.dims_used.add(expr.name)
        if expr.name in self.locals:  # a cse temporary: already typed (a bool condition)
            return self.names[expr.name]
        if self.dtype == "float64":  # int32 dims would make 1/N a float32 division
            return f"tl.cast({self.names[expr.name]}, tl.float64)"
        return self.names[expr.name]

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Float(self, expr):
        return self.literal(float(expr))

    def _print_Rational(self, expr):
        return self.literal(expr.p / expr.q)

    def _print_Exp1(self, expr):
        return self.literal(float(np.e))

    def _print_Pi(self, expr):
        return self.literal(float(np.pi))

    def _print_Infinity(self, expr):
        return 'float("inf")'

    def _print_NegativeInfinity(self, expr):
        return '-float("inf")'

    def _print_NaN(self, expr):
        return 'float("nan")'

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def literal(self, value: float) -> str:
        """A float constant. Triton types Python floats as float32, so a float64 kernel
        spells out constants that float32 cannot hold exactly."""
        with np.errstate(over="ignore"):   # 1e300 is inf in float32: also not exact
            inexact = float(np.float32(value)) != value
        if self.dtype == "float64" and inexact and np.isfinite(value):
            return f"tl.full((), {value!r}, tl.float64)"
        return repr(value)

    # ---- arithmetic --------------------------------------------------------------------
    def _print_Pow(self, expr, rational=False):
        base, ex = expr.args
        b = self.parenthesize(base, 100)  # always bracketed: it may be repeated
        if ex == sympy.Rational(1, 2):
            return f"tl.sqrt({self._print(base)})"
        if ex == sympy.Rational(-1, 2):
            return f"(1.0 / tl.sqrt({self._print(base)}))"
        if ex.is_Integer and 0 < abs(int(ex)) <= MAX_MULTIPLY_POWER:
            product = " * ".join([b] * abs(int(ex)))
            if ex > 0:
                return f"({product})"
            return f"(1.0 / {product})" if ex == -1 else f"(1.0 / ({product}))"
        if self.libdevice:
            return f"libdevice.pow({self._print(base)}, {self._print(ex)})"
        # exp(e*log(b)): defined for b > 0 only, as a real power with a non-integer e is
        return f"tl.exp({self.parenthesize(ex, PRECEDENCE['Mul'])} * tl.log({self._print(base)}))"

    def _print_Max(self, expr):
        return self._fold("tl.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("tl.minimum", expr.args)

    def _fold(self, fn: str, args) -> str:
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{fn}({text}, {self._print(a)}, {NAN_ALL})"
        return text

    # ---- functions ---------------------------------------------------------------------
    def _print(self, expr, **kwargs):
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Number:
            # sqrt(2), 1/sqrt(pi) (erf's derivative): one float, not tl.sqrt of an int32
            return self.literal(float(expr))
        spelled = functions.spelling(expr)
        if spelled is None:
            return super()._print(expr, **kwargs)
        x = self._print(expr.args[0])
        # what self.parenthesize(arg, 100) gives, without printing the argument twice
        atom = f"({x})" if precedence(expr.args[0]) <= 100 else x
        return spelled.triton_text(self.libdevice).format(x=x, x_atom=atom)

    # ---- Piecewise and conditions ------------------------------------------------------
    def _print_Piecewise(self, expr):
        pieces = list(expr.args)
        (v0, c0), last = pieces[0], pieces[-1]
        if len(pieces) == 2 and last.cond == sympy.true and v0 == 0 \
                and c0 == (last.expr <= 0) and last.expr.is_Symbol:
            # relu: one tl.maximum (that keeps NaN, as torch.relu does)
            return f"tl.maximum({self._print(last.expr)}, 0.0, {NAN_ALL})"
        text = self._print(last.expr) if last.cond == sympy.true else 'float("nan")'
        rest = pieces[:-1] if last.cond == sympy.true else pieces
        for v, c in reversed(rest):  # the first true condition wins: it is the outermost
            text = f"tl.where({self._print(c)}, {self._print(v)}, {text})"
        if self.dtype == "float64" and all(p.expr.is_Number for p in pieces):
            # literal branches type as int32/float32: a float64 indicator summed or divided
            # (a max's tie count) would otherwise be computed in float32
            text = f"{text}.to(tl.float64)"
        return text

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(~{self._print(expr.args[0])})"


def print_expr(expr, names: dict, dtype: str = "float32", libdevice: bool = False,
               local_names=()) -> tuple:
    """(Triton source of expr, dims it reads); `local_names`: symbols of kernel locals."""
    p = TritonPrinter(names, dtype, libdevice)
    p.locals = set(local_names)
    return p.doprint(expr), p.dims_used
