"""Elementwise math as SymPy: argument symbols, the rewrites that pin kink conventions, and
the reading of expression text. The functions SymPy lacks (sigmoid, softplus, expm1) and
every function's spellings live in graphc/functions.py; they are re-exported here."""
from __future__ import annotations

import ast

import sympy

from .errors import ExprError
from .functions import FUNCTIONS as SPELLED, expm1, sigmoid, softplus  # noqa: F401

# expm1, sigmoid and softplus are defined in graphc/functions.py and read as exprs.sigmoid


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


def is_condition(expr) -> bool:
    """A truth value (x > 0, And(..), true), not a number. SymPy's Symbol is also a
    Boolean, so a symbol (a value) is tested for first."""
    return isinstance(expr, sympy.logic.boolalg.Boolean) and not isinstance(expr, sympy.Symbol)


def step(z, at_zero=0):
    """The derivative of a kink, with its value at the kink made explicit. z = a - b is
    tested as a < b, a == b (so inf vs inf is a tie, as in torch, not inf - inf = nan); 1 is
    the default branch: a NaN fails both tests and gets 1, as torch.maximum's gradient."""
    terms = sympy.Add.make_args(z)
    a = sympy.Add(*[t for t in terms if not t.could_extract_minus_sign()])
    b = -sympy.Add(*[t for t in terms if t.could_extract_minus_sign()])
    if at_zero == 0:
        return sympy.Piecewise((0, a <= b), (1, True))
    return sympy.Piecewise((0, a < b), (at_zero, sympy.Eq(a, b)), (1, True))


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


# the names expression text may call: every function of the table (graphc/functions.py) by
# its class name, and the structural ones
FUNCTIONS = {
    **{fn.__name__: fn for fn in SPELLED}, "abs": sympy.Abs, "sqrt": sympy.sqrt,
    "Max": sympy.Max, "Min": sympy.Min, "Piecewise": sympy.Piecewise, "Eq": sympy.Eq,
    "pi": sympy.pi, "E": sympy.E,
}


# Expression text is read by walking Python's own syntax tree and building SymPy objects
# node by node: nothing is ever eval'd (sympy.parse_expr evals its rewritten text, so
# "__import__('os')" or "().__class__" would reach Python through it).
_BINARY = {ast.Add: sympy.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sympy.Mul,
           ast.Div: lambda a, b: a / b, ast.Pow: sympy.Pow,
           ast.BitAnd: sympy.And, ast.BitOr: sympy.Or}
_COMPARE = {ast.Gt: sympy.Gt, ast.GtE: sympy.Ge, ast.Lt: sympy.Lt, ast.LtE: sympy.Le,
            ast.Eq: sympy.Eq, ast.NotEq: sympy.Ne}
_CONSTANTS = {"pi": sympy.pi, "E": sympy.E, "True": sympy.true, "False": sympy.false}
# number constructors callable on literals only, as parse_expr's namespace allowed
_NUMBERS = {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational}
MAX_TEXT = 10_000       # longer text is refused, not parsed
MAX_LITERAL_POWER = 64  # 9**9**9 between literals would be evaluated exactly: refused


class _Reader:
    """ast node -> SymPy object, for the closed grammar of map expressions."""

    def __init__(self, names: dict):
        self.names = names

    def read(self, node):
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ValueError(f"{_kind(node)} is not allowed")
        return method(node)

    def _Expression(self, node):
        return self.read(node.body)

    def _Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            return sympy.true if v else sympy.false
        if isinstance(v, int):
            return sympy.Integer(v)
        if isinstance(v, float):
            return sympy.Float(repr(v))  # the shortest text that round-trips
        raise ValueError(f"the constant {v!r} is not a number")

    def _Name(self, node):
        name = node.id
        if name in self.names:
            return self.names[name]
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name.startswith("_") or name in FUNCTIONS or name in _NUMBERS:
            raise ValueError(f"the name {name!r} is not a value")
        return sympy.Symbol(name)  # an unknown symbol: the map's check names it

    def _UnaryOp(self, node):
        x = self.read(node.operand)
        if isinstance(node.op, ast.USub):
            return -x
        if isinstance(node.op, ast.UAdd):
            return x
        if isinstance(node.op, ast.Invert):
            return sympy.Not(x)
        raise ValueError(f"the operator {type(node.op).__name__} is not allowed")

    def _BinOp(self, node):
        fn = _BINARY.get(type(node.op))
        if fn is None:
            raise ValueError(f"the operator {type(node.op).__name__} is not allowed")
        a, b = self.read(node.left), self.read(node.right)
        if fn is sympy.Pow and a.is_Number and b.is_Number and abs(b) > MAX_LITERAL_POWER:
            raise ValueError(f"the literal power {a}**{b} is too large")
        return fn(a, b)

    def _Compare(self, node):
        parts, left = [], self.read(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise ValueError(f"the comparison {type(op).__name__} is not allowed")
            right = self.read(right_node)
            parts.append(fn(left, right))
            left = right
        return parts[0] if len(parts) == 1 else sympy.And(*parts)

    def _Tuple(self, node):  # Piecewise's (value, condition) pairs
        return tuple(self.read(e) for e in node.elts)

    def _Call(self, node):
        if not isinstance(node.func, ast.Name):
            raise ValueError(f"only calls of named functions are allowed, not {_kind(node.func)}")
        name = node.func.id
        if node.keywords:
            raise ValueError(f"keyword arguments in the call of {name!r} are not allowed")
        fn = FUNCTIONS.get(name) or _NUMBERS.get(name)
        if fn is None or name in _CONSTANTS:
            known = sorted(set(FUNCTIONS) - set(_CONSTANTS))
            raise ValueError(f"{name!r} is not a known function ({', '.join(known)})")
        args = [self.read(a) for a in node.args]
        if name in _NUMBERS and not all(getattr(a, "is_Number", False) for a in args):
            raise ValueError(f"{name}() takes number literals only")
        return fn(*args)


def _kind(node) -> str:
    """'attribute access', 'a subscript', ...: what a refused syntax node is."""
    kinds = {"Attribute": "attribute access", "Subscript": "a subscript",
             "Lambda": "a lambda", "Starred": "a starred argument"}
    name = type(node).__name__
    return kinds.get(name, f"Python syntax {name}")


def parse(text: str, where: str, dims: dict) -> sympy.Expr:
    """Parse an expression string without evaluating any Python: numbers, argument symbols
    x0.., the graph's dimension symbols, the known functions, + - * / **, comparisons."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise ExprError(f"{where}: an expression must be a string of at most {MAX_TEXT} "
                        f"characters, got {type(text).__name__} of length {len(str(text))}")
    names = {f"x{i}": arg(i) for i in range(64)}
    names.update(dims)
    reader = _Reader(names)
    try:
        tree = ast.parse(text.strip(), mode="eval")
        expr = reader.read(tree)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError,
            sympy.SympifyError) as e:  # one error for any bad text
        reason = e.msg if isinstance(e, SyntaxError) else str(e) or type(e).__name__
        raise ExprError(f"{where}: cannot parse expression {text!r}: {reason}") from None
    if not isinstance(expr, sympy.Basic):
        raise ExprError(f"{where}: cannot parse expression {text!r}: a tuple is not a value")
    return expr
