"""Text views of graphs: one node per line, with the expression in the argument names."""
from __future__ import annotations

import sympy

from . import exprs, shapes


def readable_expr(graph, name: str) -> sympy.Expr:
    """A map node's expression with x0, x1, ... replaced by its argument nodes' names."""
    a = graph.attrs(name)
    args = graph.args(name)
    return a["expr"].xreplace({exprs.arg(i): sympy.Symbol(n) for i, n in enumerate(args)})


def describe(graph, name: str) -> str:
    """The op-specific part of a node's line."""
    a = graph.attrs(name)
    op = a["op"]
    if op == "map":
        return str(readable_expr(graph, name))
    if op == "reduce":
        keep = ", keepdims" if a["keepdims"] else ""
        return f"{a['fn']}({graph.args(name)[0]}, axes={a['axes']}{keep})"
    if op == "permute":
        return f"permute({graph.args(name)[0]}, {a['perm']})"
    if op in ("reshape", "broadcast"):
        return f"{op}({graph.args(name)[0]})"
    if op == "matmul":
        return " @ ".join(graph.args(name))
    if op == "iota":
        return f"iota(axis={a['axis']})"
    if op == "const":
        v = a["value"]
        return repr(v.item()) if v.size == 1 else f"const[{v.size} values]"
    if op == "param" and not a.get("trainable", True):
        return "param (state, not trained)"
    return op


def format_graph(graph) -> str:
    rows = []
    for n in graph.topo():
        a = graph.attrs(n)
        tag = " [no grad]" if a.get("stop_gradient") else ""
        kind = f"{shapes.fmt(a['shape'])} {a['dtype']}"
        rows.append((n, a["op"], kind, describe(graph, n) + tag))
    width = max((len(r[0]) for r in rows), default=4)
    head = f"graph {graph.name!r}: {len(rows)} nodes"
    lines = [f"  {n:<{width}} {op:<9} {sh:<22} {d}" for n, op, sh, d in rows]
    return "\n".join([head] + lines)
