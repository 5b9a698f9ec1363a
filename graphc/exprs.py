"""Elementwise math as SymPy: argument symbols, the few functions SymPy lacks, and the
rewrites that pin kink conventions. Every elementwise op is one expression built here."""
from __future__ import annotations

import sympy
from sympy.parsing.sympy_parser import parse_expr, standard_transformations

from .errors import ExprError


def arg(i: int) -> sympy.Symbol:
    """The symbol standing for a map node's i-th argument."""
    return sympy.Symbol(f"x{i}", real=True)


def args(n: int) -> list:
    return [arg(i) for i in range(n)]


def arg_index(s: sympy.Symbol) -> int | None:
    """i for the argument symbol x<i>, else None (a dimension symbol such as N)."""
    name = s.name
    if name.startswith("x") and name[1:].isdigit():
        return int(name[1:])
    return None


class sigmoid(sympy.Function):
    """1/(1+exp(-x)); its derivative is written through its own value, which is both stable
    (raw diff is exp(-x)/(1+exp(-x))**2 = nan at x=-1000) and lets backward reuse the output."""

    is_real = True

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))


class softplus(sympy.Function):
    """log(1+exp(x)), printed in the stable form max(x,0) + log1p(exp(-|x|))."""

    is_real = True

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))


class expm1(sympy.Function):
    """exp(x) - 1 without the cancellation near 0 (exp(-1e-12) - 1 keeps 5 digits; expm1
    keeps them all), as np.expm1 and libdevice.expm1; its derivative is exp(x)."""

    is_real = True

    def fdiff(self, argindex=1):
        return sympy.exp(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.exp(x) - 1


def step(z, at_zero=0):
    """The derivative of a kink, with its value at the kink made explicit."""
    if at_zero == 0:
        return sympy.Piecewise((1, z > 0), (0, True))
    return sympy.Piecewise((1, z > 0), (at_zero, sympy.Eq(z, 0)), (0, True))


def explicit_kinks(expr: sympy.Expr) -> sympy.Expr:
    """Heaviside(z) -> Piecewise with H(0) = 1/2 spelled out, so no printer ever meets
    SymPy's Heaviside. 1/2 is what torch.maximum/minimum give each side of a tie; ops that
    follow another convention (relu'(0) = 0) are written as Piecewise and never get here."""
    return expr.replace(sympy.Heaviside, lambda z, *h: step(z, sympy.Rational(1, 2)))


def derivative(expr: sympy.Expr, wrt: sympy.Symbol) -> sympy.Expr:
    """d expr / d wrt by sympy.diff, with kinks made explicit and DiracDelta (the derivative
    of a step, zero almost everywhere) dropped."""
    d = sympy.diff(expr, wrt)
    d = d.replace(sympy.DiracDelta, lambda *a: sympy.Integer(0))
    return explicit_kinks(d)


FUNCTIONS = {
    "sigmoid": sigmoid, "softplus": softplus, "expm1": expm1, "exp": sympy.exp,
    "log": sympy.log,
    "tanh": sympy.tanh, "sin": sympy.sin, "cos": sympy.cos, "sqrt": sympy.sqrt,
    "Abs": sympy.Abs, "abs": sympy.Abs, "Max": sympy.Max, "Min": sympy.Min,
    "Piecewise": sympy.Piecewise, "Eq": sympy.Eq, "sign": sympy.sign, "pi": sympy.pi,
    "E": sympy.E,
}


def parse(text: str, where: str, dims: dict) -> sympy.Expr:
    """Parse an expression string with a closed namespace: argument symbols x0.., the
    known functions, and the graph's dimension symbols; nothing from builtins."""
    names = {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
             "Symbol": sympy.Symbol, "__builtins__": {}}
    names.update(FUNCTIONS)
    local = {f"x{i}": arg(i) for i in range(64)}
    local.update(dims)
    try:
        return parse_expr(text, local_dict=local, global_dict=names,
                          transformations=standard_transformations, evaluate=True)
    except Exception as e:  # SymPy raises many types for bad text; report them as one
        raise ExprError(f"{where}: cannot parse expression {text!r}: {e}") from None
