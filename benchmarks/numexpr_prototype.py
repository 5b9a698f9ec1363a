"""Experiment, not part of graphc: a fused map's SymPy expression -> one numexpr call in the
generated NumPy code, in place of its ufunc sequence. `patched(...)` swaps it into
graphc.codegen.numpy for the maps it can print; benchmarks/bench_numexpr.py times it.

numexpr (2.14) evaluates a float constant such as 0.9 in float64 and so turns a float32
map into a float64 computation: every non-integer constant is passed as a scalar of the
map's dtype (`k0`). Names in the numexpr text are the argument symbols x0, x1, ... (a node
named `exp` or `where` would be taken for numexpr's function of that name).
"""
from __future__ import annotations

import contextlib
import math

import sympy

from graphc import exprs
from graphc.codegen import numpy as numpy_codegen
from graphc.codegen.common import comment
from graphc.codegen.ufuncs import UfuncLowering

FUNCTIONS = {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos",
             "Abs": "abs", "floor": "floor", "expm1": "expm1"}
RELATIONS = {sympy.StrictGreaterThan: ">", sympy.StrictLessThan: "<",
             sympy.GreaterThan: ">=", sympy.LessThan: "<=",
             sympy.Equality: "==", sympy.Unequality: "!="}
# numexpr's signature names float32 by Python's float (its 'float' kind), float64 by double
SIGNATURE_TYPE = {"float32": "float", "float64": "np.float64", "int64": "np.int64",
                  "int32": "np.int32", "bool": "bool"}


class NumexprPrinter:
    """One expression as numexpr text. `operands`: argument symbol -> source text."""

    def __init__(self, operands: dict, dim_names: dict, dtype: str):
        self.operands, self.dim_names, self.dtype = operands, dim_names, dtype
        self.names: dict = {}   # numexpr name -> source text of the array or scalar

    def doprint(self, e) -> str:
        if e in self.operands:
            self.names[e.name] = self.operands[e]
            return e.name
        if not any(exprs.arg_index(s) is not None for s in e.free_symbols):
            return self._constant(e)
        method = getattr(self, f"_print_{type(e).__name__}", None)
        if method is not None:
            return method(e)
        if type(e).__name__ in FUNCTIONS:
            return f"{FUNCTIONS[type(e).__name__]}({self.doprint(e.args[0])})"
        raise NotImplementedError(f"numexpr prototype: no form for {type(e).__name__}")

    def _constant(self, e) -> str:
        if e.is_Integer and abs(int(e)) < 2 ** 24:   # integers stay weak in numexpr
            return f"({int(e)})" if e < 0 else str(int(e))
        # a float literal, 1/N, inf: a scalar of the map's dtype keeps float32 float32
        name = f"k{sum(n.startswith('k') for n in self.names)}"
        text = UfuncLowering({}, self.dim_names, None).leaf(e)
        self.names[name] = f"np.{self.dtype}({text})"
        return name

    def _print_Add(self, e):
        pos = [self.doprint(t) for t in e.args if not t.could_extract_minus_sign()]
        neg = [self.doprint(-t) for t in e.args if t.could_extract_minus_sign()]
        text = " + ".join(pos) if pos else f"-{neg.pop(0)}"
        return "(" + text + "".join(f" - {t}" for t in neg) + ")"

    def _print_Mul(self, e):
        factors = sympy.Mul.make_args(e)
        sign = ""
        if factors[0] == -1:
            sign, factors = "-", factors[1:]
        num = [self.doprint(f) for f in factors if not (f.is_Pow and f.exp.is_negative)]
        den = [self.doprint(f.base ** -f.exp) for f in factors
               if f.is_Pow and f.exp.is_negative]
        text = "*".join(num) or "1"
        return f"({sign}{text}" + "".join(f"/{d}" for d in den) + ")"

    def _print_Pow(self, e):
        base, ex = e.args
        b = self.doprint(base)
        if ex == sympy.Rational(1, 2):
            return f"sqrt({b})"
        if ex == sympy.Rational(-1, 2):
            return f"(1/sqrt({b}))"
        if ex == -1:
            return f"(1/{b})"
        return f"({b}**{self.doprint(ex)})"

    def _print_sigmoid(self, e):   # 1/(1+exp(-x)), as the ufunc path computes it
        return f"(1/(1 + exp(-{self.doprint(e.args[0])})))"

    def _print_softplus(self, e):  # max(x,0) + log1p(exp(-|x|)); where() keeps NaN
        x = self.doprint(e.args[0])
        return f"(where({x} < 0, 0, {x}) + log1p(exp(-abs({x}))))"

    def _print_sign(self, e):      # numexpr's sign() of float32 is float64
        x = self.doprint(e.args[0])
        return f"where({x} > 0, 1, where({x} < 0, -1, {x}*0))"

    def _print_Max(self, e):       # numexpr's maximum propagates NaN, as np.maximum
        return self._fold("maximum", e.args)

    def _print_Min(self, e):
        return self._fold("minimum", e.args)

    def _fold(self, fn, args):
        acc = self.doprint(args[0])
        for a in args[1:]:
            acc = f"{fn}({acc}, {self.doprint(a)})"
        return acc

    def _print_Piecewise(self, e):
        *pieces, (default, last) = e.args
        if last != sympy.true:
            raise NotImplementedError(f"numexpr prototype: Piecewise without a default in {e}")
        text = self.doprint(default)
        for v, c in reversed(pieces):   # the first true condition wins: outermost
            text = f"where({self.condition(c)}, {self.doprint(v)}, {text})"
        return text

    def condition(self, c) -> str:
        if isinstance(c, (sympy.And, sympy.Or)):
            op = " & " if isinstance(c, sympy.And) else " | "
            return "(" + op.join(self.condition(a) for a in c.args) + ")"
        if isinstance(c, sympy.Not):
            return f"~{self.condition(c.args[0])}"
        op = RELATIONS.get(type(c))
        if op is None:
            raise NotImplementedError(f"numexpr prototype: no condition form for {c}")
        return f"({self.doprint(c.lhs)} {op} {self.doprint(c.rhs)})"


class Lowering:
    """What replaces codegen.numpy._lower while patched: numexpr for float maps of at least
    `threshold` elements (the static part of the shape; a symbolic dimension counts 1),
    the ufunc path otherwise. mode 'evaluate' (numexpr.evaluate, parsed on each call's
    cache lookup) or 'NumExpr' (compiled once at import); cse: shared parts into scratch."""

    def __init__(self, mode: str, threshold: int, cse: bool):
        self.mode, self.threshold, self.cse = mode, threshold, cse
        self.ufunc_lower = numpy_codegen._lower

    def __call__(self, operands: dict, m, scratch, expr, dest: str) -> list:
        a = m.graph.attrs(m.current_map)
        if a["dtype"] not in ("float32", "float64") or \
                math.prod(d for d in a["shape"] if isinstance(d, int)) < self.threshold:
            return self.ufunc_lower(operands, m, scratch, expr, dest)
        defined = len(m.numexpr_defs)
        try:
            return self._lines(operands, m, scratch, expr, dest, a["dtype"])
        except NotImplementedError:   # a form numexpr lacks: this map keeps its ufuncs
            del m.numexpr_defs[defined:]
            return self.ufunc_lower(operands, m, scratch, expr, dest)

    def _lines(self, operands, m, scratch, expr, dest, dtype) -> list:
        shared: list = []
        if self.cse and sympy.count_ops(expr) > numpy_codegen.CSE_MIN_OPS:
            names = (exprs.arg(len(operands) + k) for k in range(10 ** 6))
            shared, (expr,) = sympy.cse(expr, symbols=names)
            shared, expr = numpy_codegen._numeric_only(shared, expr)
        operands, lines = dict(operands), []
        for k, (sym, sub) in enumerate(shared):
            buffer = scratch("f", 100 + k)
            readable = sub.xreplace({s: sympy.Symbol(n) for s, n in operands.items()})
            lines.append(f"# {buffer} = {comment(str(readable), 100)}  (used more than once)")
            lines += self._call(m, operands, sub, buffer, dtype)
            operands[sym] = buffer
        return lines + self._call(m, operands, expr, dest, dtype)

    def _call(self, m, operands, expr, dest, dtype) -> list:
        printer = NumexprPrinter(operands, m.dims, dtype)
        text = printer.doprint(expr)
        if self.mode == "evaluate":
            local = ", ".join(f"{k!r}: {v}" for k, v in printer.names.items())
            return [f"numexpr.evaluate({text!r}, local_dict={{{local}}}, "
                    f"out={dest}, casting='same_kind')"]
        fn = f"NE{len(m.numexpr_defs)}"
        sig = ", ".join(f"({k!r}, {self._type(m, v, dtype)})" for k, v in printer.names.items())
        m.numexpr_defs.append(f"{fn} = numexpr.NumExpr({text!r}, signature=[{sig}])")
        args = ", ".join(printer.names.values())
        return [f"{fn}({args}, out={dest}, casting='same_kind', ex_uses_vml=False)"]

    def _type(self, m, source: str, dtype: str) -> str:
        """The numexpr signature type of one argument: its node's dtype, or the map's."""
        node = _node_of(m, source)
        arg_dtype = m.graph.attrs(node)["dtype"] if node else dtype
        if arg_dtype not in SIGNATURE_TYPE:
            raise NotImplementedError(f"numexpr prototype: no {arg_dtype} arguments")
        return SIGNATURE_TYPE[arg_dtype]


def _node_of(m, ident: str):
    return next((n for n, i in m.names.items() if i == ident), None)


@contextlib.contextmanager
def patched(mode: str = "NumExpr", threshold: int = 0, cse: bool = True):
    """Generate NumPy code with numexpr maps inside this block (graphc's own code unchanged
    outside it: the cache keys on the source, so both kinds of module can coexist)."""
    names = ("_lower", "_header", "_map_lines")
    saved = {k: getattr(numpy_codegen, k) for k in names}

    def map_lines(m, node, args):   # the lowering needs the node: its dtype and shape
        m.current_map = node
        if not hasattr(m, "numexpr_defs"):
            m.numexpr_defs = []
        return saved["_map_lines"](m, node, args)

    def header(graph, outputs, updates, title, m):
        lines = saved["_header"](graph, outputs, updates, title, m)
        at = lines.index("import numpy as np") + 1
        return lines[:at] + ["import numexpr"] + getattr(m, "numexpr_defs", []) + lines[at:]

    numpy_codegen._lower = Lowering(mode, threshold, cse)
    numpy_codegen._header, numpy_codegen._map_lines = header, map_lines
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(numpy_codegen, k, v)
