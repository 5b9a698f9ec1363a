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
    if op == "rand":
        return f"rand(seed={a['seed']}, step={graph.args(name)[0]})"
    if op == "const":
        v = a["value"]
        return repr(v.item()) if v.size == 1 else f"const[{v.size} values]"
    if op == "param" and a.get("step_counter"):
        return "param (step counter of rand)"
    if op == "param" and not a.get("trainable", True):
        return "param (state, not trained)"
    return op


def _row(graph, n: str) -> tuple:
    a = graph.attrs(n)
    tag = " [no grad]" if a.get("stop_gradient") else ""
    return n, a["op"], f"{shapes.fmt(a['shape'])} {a['dtype']}", describe(graph, n) + tag


def _lines(rows: list, indent: str, width: int) -> list:
    return [f"{indent}{n:<{width}} {op:<9} {sh:<22} {d}" for n, op, sh, d in rows]


def kernel_header(kernel) -> str:
    """kernel fused_mul_add_tanh_0 [elementwise] in: a, b -> out: c"""
    return (f"kernel {kernel.name} [{kernel.kind}] in: {', '.join(kernel.inputs) or 'none'}"
            f" -> out: {', '.join(kernel.outputs) or 'none'}")


def format_kernels(graph) -> str:
    """The kernels of a fused graph in run order, each with its member nodes."""
    kernels = graph.nx.graph.get("kernels")
    if not kernels:
        return f"graph {graph.name!r}: no kernels (not fused)"
    width = max(len(n) for k in kernels for n in k.nodes)
    lines = [f"graph {graph.name!r}: {len(kernels)} kernels"]
    for k in kernels:
        lines.append(kernel_header(k))
        lines += _lines([_row(graph, n) for n in k.nodes], "  ", width)
    return "\n".join(lines)


def format_graph(graph) -> str:
    """One line per node in topological order; a fused graph shows each kernel as a header
    line with its members indented under it (leaves and views stay outside kernels)."""
    rows = {n: _row(graph, n) for n in graph.topo()}
    width = max((len(n) for n in rows), default=4)
    kernels = graph.nx.graph.get("kernels")
    if not kernels:
        head = f"graph {graph.name!r}: {len(rows)} nodes"
        return "\n".join([head] + _lines(list(rows.values()), "  ", width))
    kernel_of = {n: k for k in kernels for n in k.nodes}
    lines, shown = [f"graph {graph.name!r}: {len(rows)} nodes, {len(kernels)} kernels"], set()
    for n, row in rows.items():
        k = kernel_of.get(n)
        if k is None:
            lines += _lines([row], "  ", width)
        elif k.name not in shown:
            shown.add(k.name)
            lines.append(f"  {kernel_header(k)}")
            lines += _lines([rows[m] for m in k.nodes if m in rows], "    ", width)
    return "\n".join(lines)
