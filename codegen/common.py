"""What every backend shares: node names -> Python identifiers, safe comments, shapes and
dimension expressions as source text, and the provenance fusion leaves in comments."""
from __future__ import annotations

import keyword
import re

import sympy
from sympy.printing.pycode import PythonCodePrinter

RESERVED = {"np", "torch", "tl", "triton", "p", "c", "buf", "run", "allocate", "math"}


def identifiers(names, taken=()) -> dict:
    """A unique Python identifier for each node name, clear of those in `taken` (a node
    named like a dimension, N, must not rebind it). User names reach generated code only
    through this map (identifiers) and `comment` (escaped text), never verbatim."""
    out, taken = {}, set(taken)
    for name in names:
        # runs of "_" collapse: "x=__import__('os')" -> x_import_os, no dunder in sight
        ident = re.sub(r"_+", "_", re.sub(r"\W", "_", str(name), flags=re.ASCII))
        ident = ident.strip("_") or "node"
        # tmp<k>, ones<k> name the backends' own buffers: a node may not take them
        if ident[0].isdigit() or keyword.iskeyword(ident) or ident in RESERVED \
                or re.fullmatch(r"(tmp|ones)\d+", ident):
            ident = f"n_{ident}"
        base, k = ident, 1
        while ident in taken:
            ident, k = f"{base}_{k}", k + 1
        taken.add(ident)
        out[name] = ident
    return out


def comment(text, limit: int = 140) -> str:
    """Text made safe to sit after '#': one line, printable, shortened."""
    text = str(text).encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- provenance: the nodes fusion merged into a kernel's members ----------------------------

def merged(graph, node) -> list:
    """[(name, expression over the node's arguments by name)] of the nodes that fusion
    merged into `node` (node attrs fused_from, fused_exprs), in graph order."""
    a = graph.attrs(node)
    return list(zip(a.get("fused_from", ()), a.get("fused_exprs", ())))


def merged_lines(graph, nodes, limit: int = 100) -> list:
    """'merged into h: hidden = hidden_b + hidden_mm' per node merged into one of `nodes`:
    escaped text for one comment line each (a backend adds its comment marker)."""
    return [f"merged into {comment(n)}: {comment(m)} = {comment(e, limit)}"
            for n in nodes for m, e in merged(graph, n)]


def held(graph, nodes) -> dict:
    """Expression (over argument names) -> the merged node that computed it, for the
    members `nodes`: a cse temporary equal to one is labelled with its name."""
    return {e: m for n in nodes for m, e in merged(graph, n)}


def temp_labels(shared, readable: dict, values: dict) -> dict:
    """cse symbol -> the merged node it holds: sympy.cse's (symbol, expression) pairs,
    earlier temporaries substituted back and argument symbols renamed by `readable`,
    looked up in `values` (held's)."""
    if not values:
        return {}
    full: dict = {}
    out = {}
    for sym, sub in shared:
        full[sym] = sub.xreplace(full)
        name = values.get(full[sym].xreplace(readable))
        if name is not None:
            out[sym] = name
    return out


class ScalarPrinter(PythonCodePrinter):
    """Dimension arithmetic (N, 1/N, 64*N) as Python source; dims are plain ints at run time."""

    def _print_Symbol(self, expr):
        return self.dim_names.get(expr.name, expr.name)

    def _print_Rational(self, expr):
        return f"({expr.p}/{expr.q})"

    def _print(self, expr, **kwargs):
        if isinstance(expr, sympy.Expr) and expr.is_number and not expr.is_Number:
            return repr(float(expr))  # sqrt(2)/2, 1/sqrt(pi) (erf's derivative): no math import
        return super()._print(expr, **kwargs)


def scalar_source(expr, dim_names: dict) -> str:
    printer = ScalarPrinter({"fully_qualified_modules": False})
    printer.dim_names = dim_names
    return printer.doprint(sympy.sympify(expr))


def shape_source(shape, dim_names: dict) -> str:
    parts = [scalar_source(d, dim_names) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
