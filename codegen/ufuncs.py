"""SymPy expression -> a sequence of NumPy ufunc calls writing into preallocated buffers.

Every call passes `out=`, so evaluating an expression allocates nothing: the first compound
operand of an op is computed in the destination itself, the others in scratch buffers
indexed by nesting depth. The result is a list of statement records (codegen/statements.py),
printed by the module once destinations are decided. Kink and stability conventions live in
the expressions; which ufuncs print a function (exp, sigmoid, ...) is its NumPy spelling in
graphc/functions.py.
"""
from __future__ import annotations

import sympy

from graphc import exprs, functions

from .common import scalar_source
from .statements import Call, Copy

RELATIONS = {
    sympy.StrictGreaterThan: "greater", sympy.StrictLessThan: "less",
    sympy.GreaterThan: "greater_equal", sympy.LessThan: "less_equal",
    sympy.Equality: "equal", sympy.Unequality: "not_equal",
}


class UfuncLowering:
    """Lower one expression. `operands`: argument symbol -> source text; `scratch(kind, k)`:
    the name of scratch buffer k ('f' same dtype as the output, 'b' bool); `helpers`
    collects the names of functions.NUMPY_HELPERS called (the module imports them)."""

    def __init__(self, operands: dict, dim_names: dict, scratch, helpers: set | None = None):
        self.operands, self.dim_names, self.scratch = operands, dim_names, scratch
        self.helpers = set() if helpers is None else helpers
        self.lines: list = []   # Call and Copy records

    # ---- entry points --------------------------------------------------------------------
    def lower(self, expr: sympy.Expr, dest: str) -> list:
        value = self.value(expr, dest, 0)
        if value != dest:
            self.emit(Copy(dest, value))
        return self.lines

    def emit(self, statement):
        self.lines.append(statement)

    def call(self, fn: str, *args, out: str, note: str = ""):
        """np.<fn>(*args, out=out)."""
        self.emit(Call(f"np.{fn}", tuple(args), out, note=note))

    # ---- values --------------------------------------------------------------------------
    def is_leaf(self, e) -> bool:
        return e in self.operands or not any(
            exprs.arg_index(s) is not None for s in e.free_symbols)

    def leaf(self, e) -> str:
        if e in self.operands:
            return self.operands[e]
        if e.is_Integer:
            return str(int(e))
        if e.is_Number:
            return repr(float(e))
        if any(p.exp.is_negative for p in e.atoms(sympy.Pow)):
            # 1/K with K = 0 (a mean over an empty axis) is inf as in torch, not a Python
            # ZeroDivisionError; float() keeps it a weak scalar (computed in the array's dtype)
            dims = {d: f"np.float64({v})" for d, v in self.dim_names.items()}
            return f"float({scalar_source(e, dims)})"
        return scalar_source(e, self.dim_names)

    def value(self, e, dest: str, depth: int) -> str:
        """Compute e; return the source text holding it (a leaf's text, or dest)."""
        if self.is_leaf(e):
            return self.leaf(e)
        if isinstance(e, sympy.Add):
            return self._add(e, dest, depth)
        if isinstance(e, sympy.Mul):
            return self._mul(e, dest, depth)
        if isinstance(e, sympy.Pow):
            return self._pow(e, dest, depth)
        if isinstance(e, sympy.Piecewise):
            return self._piecewise(e, dest, depth)
        if isinstance(e, (sympy.Max, sympy.Min)):
            fn = "maximum" if isinstance(e, sympy.Max) else "minimum"
            acc = self.value(e.args[0], dest, depth)
            for a in e.args[1:]:
                acc = self.binary(fn, acc, a, dest, depth)
            return acc
        spelled = functions.spelling(e)
        if spelled is None:
            raise NotImplementedError(f"numpy backend: no ufunc for {type(e).__name__} in {e}")
        return self.function(spelled, e.args[0], dest, depth)

    def function(self, spelled: functions.Spelling, x, dest: str, depth: int) -> str:
        """The table's ufunc steps; x goes to a scratch buffer when a step reads it after
        dest is written (softplus reads x twice), else into dest itself."""
        steps = spelled.numpy_steps()
        if any("tmp" in step for step in steps):
            buffers = {"tmp": self.scratch("f", depth)}
            buffers["x"] = self.value(x, buffers["tmp"], depth + 1)
        else:
            buffers = {"x": self.value(x, dest, depth)}
        buffers["out"] = dest
        for k, (name, *operands, out) in enumerate(steps):
            fn = name if name in functions.NUMPY_HELPERS else f"np.{name}"
            if name in functions.NUMPY_HELPERS:
                self.helpers.add(name)
            args = tuple(buffers[o] if isinstance(o, str) else repr(o) for o in operands)
            note = spelled.numpy_note if k == 0 else ""
            self.emit(Call(fn, args, buffers[out], note=note))
        return dest

    def binary(self, fn: str, left: str, right_expr, dest: str, depth: int) -> str:
        right = self.leaf(right_expr) if self.is_leaf(right_expr) else \
            self.value(right_expr, self.scratch("f", depth), depth + 1)
        self.call(fn, left, right, out=dest)
        return dest

    def _add(self, e, dest, depth):
        pos = [t for t in e.args if not t.could_extract_minus_sign()]
        neg = [-t for t in e.args if t.could_extract_minus_sign()]
        if not pos:
            acc = self.value(sympy.Add(*neg), dest, depth)
            self.call("negative", acc, out=dest)
            return dest
        pos.sort(key=self.is_leaf)  # a compound term first: it is computed in dest itself
        acc = self.value(pos[0], dest, depth)
        for t in pos[1:]:
            acc = self.binary("add", acc, t, dest, depth)
        for t in neg:
            acc = self.binary("subtract", acc, t, dest, depth)
        return acc

    def _mul(self, e, dest, depth):
        factors = sympy.Mul.make_args(e)
        # numbers and dims (0.9, 1/N) form one Python scalar: one ufunc call, not one each
        scalar = sympy.Mul(*[f for f in factors if self.is_leaf(f) and f not in self.operands])
        arrays = [f for f in factors if not (self.is_leaf(f) and f not in self.operands)]
        den = [f.base ** -f.exp for f in arrays if f.is_Pow and f.exp.is_negative]
        num = [f for f in arrays if not (f.is_Pow and f.exp.is_negative)]
        negate = scalar == -1
        if not num:
            acc = "1.0" if scalar in (1, -1) else self.leaf(scalar)
        else:
            num.sort(key=self.is_leaf)
            acc = self.value(num[0], dest, depth)
            for f in num[1:]:
                acc = self.binary("multiply", acc, f, dest, depth)
            if scalar not in (1, -1):
                self.call("multiply", acc, self.leaf(scalar), out=dest)
                acc = dest
        for f in den:
            acc = self.binary("divide", acc, f, dest, depth)
        if negate:
            self.call("negative", acc, out=dest)
            acc = dest
        return acc

    def _pow(self, e, dest, depth):
        base, ex = e.args
        if ex == -1:
            return self.binary("divide", "1.0", base, dest, depth)
        simple = {2: "square", sympy.Rational(1, 2): "sqrt"}
        if ex in simple:
            arg = self.value(base, dest, depth)
            self.call(simple[ex], arg, out=dest)
            return dest
        if ex == sympy.Rational(-1, 2):
            arg = self.value(base, dest, depth)
            self.call("sqrt", arg, out=dest)
            self.call("divide", "1.0", dest, out=dest)
            return dest
        acc = self.value(base, dest, depth)
        return self.binary("power", acc, ex, dest, depth)

    # ---- Piecewise and conditions --------------------------------------------------------
    def _piecewise(self, e, dest, depth):
        pieces = list(e.args)
        (v0, c0), last = pieces[0], pieces[-1]
        if len(pieces) == 2 and last.cond == sympy.true:
            if v0 == 1 and last.expr == 0:   # an indicator: the condition itself, as 0/1
                self.condition(c0, dest, depth)
                return dest
            if v0 == 0 and last.expr == 1:   # its complement (1 where a NaN fails c0)
                self.condition(c0, dest, depth)
                self.call("logical_not", dest, out=dest)
                return dest
            if is_relu(v0, c0, last.expr) and self.is_leaf(last.expr):
                # relu: np.maximum also keeps NaN, as torch.relu does
                self.call("maximum", self.leaf(last.expr), "0.0", out=dest)
                return dest
        if last.cond != sympy.true:
            raise NotImplementedError(f"numpy backend: Piecewise without a default in {e}")
        default = self.value(last.expr, dest, depth)
        if default != dest:
            self.emit(Copy(dest, default))
        for v, c in reversed(pieces[:-1]):  # the first true condition must win: apply it last
            cond = self.condition(c, self.scratch("b", depth), depth)
            val = self.leaf(v) if self.is_leaf(v) else \
                self.value(v, self.scratch("f", depth), depth + 1)
            self.emit(Copy(dest, val, where=cond))
        return dest

    def condition(self, c, dest: str, depth: int) -> str:
        if c == sympy.true:
            self.emit(Copy(dest, "True"))
            return dest
        if isinstance(c, (sympy.And, sympy.Or)):
            fn = "logical_and" if isinstance(c, sympy.And) else "logical_or"
            self.condition(c.args[0], dest, depth)
            for sub in c.args[1:]:
                other = self.condition(sub, self.scratch("b", depth + 1), depth + 1)
                self.call(fn, dest, other, out=dest)
            return dest
        fn = RELATIONS.get(type(c))
        if fn is None:
            raise NotImplementedError(f"numpy backend: no ufunc for condition {c}")
        lhs, rhs = (self.leaf(s) if self.is_leaf(s) else
                    self.value(s, self.scratch("f", depth + k), depth + k + 1)
                    for k, s in enumerate((c.lhs, c.rhs)))
        self.call(fn, lhs, rhs, out=dest)
        return dest


def is_relu(v0, c0, default) -> bool:
    """Piecewise((0, x <= 0), (x, True)): relu, printed as max(x, 0) that keeps NaN."""
    return v0 == 0 and c0 == (default <= 0)
