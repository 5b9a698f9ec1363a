"""Gradients as math: the backward graph listed as equations d<loss>/d<node> = ..."""
from __future__ import annotations

import sympy

from . import exprs, shapes


def _symbol(graph, name: str, loss: str) -> sympy.Symbol:
    a = graph.attrs(name)
    if "adjoint_of" in a:
        return sympy.Symbol(f"d{loss}/d{a['adjoint_of']}")
    return sympy.Symbol(name)


def equation(graph, name: str, loss: str) -> str:
    """The right-hand side of one backward node, in the names of the nodes it reads."""
    a, args = graph.attrs(name), graph.args(name)
    shown = [_symbol(graph, x, loss) for x in args]
    op = a["op"]
    if op == "map":
        return str(a["expr"].xreplace({exprs.arg(i): s for i, s in enumerate(shown)}))
    if op == "matmul":
        return f"{shown[0]} @ {shown[1]}"
    if op == "permute":
        rank = len(a["perm"])
        swap = tuple(range(rank - 2)) + (rank - 1, rank - 2)
        return f"{shown[0]}ᵀ" if tuple(a["perm"]) == swap else f"permute({shown[0]}, {a['perm']})"
    if op == "reduce":
        return f"{a['fn']}({shown[0]}, axes={a['axes']})"
    if op in ("reshape", "broadcast"):
        return f"{op}({shown[0]}, {shapes.fmt(a['shape'])})"
    return op


class GradientReport:
    """What `gc.show_grad` returns: prints the backward equations, then each gradient."""

    def __init__(self, graph, loss: str, grads: dict):
        self.graph, self.loss, self.grads = graph, loss, grads

    def backward_nodes(self) -> list:
        topo = self.graph.topo()
        first = min(i for i, n in enumerate(topo) if self.graph.attrs(n).get("adjoint_of"))
        return topo[first:]

    def lines(self) -> list:
        out = [f"backward of {self.loss!r} ({len(self.backward_nodes())} nodes):"]
        for n in self.backward_nodes():
            lhs = _symbol(self.graph, n, self.loss)
            shape = shapes.fmt(self.graph.attrs(n)["shape"])
            out.append(f"  {str(lhs):<28} = {equation(self.graph, n, self.loss)}    {shape}")
        out.append("gradients:")
        for w, d in self.grads.items():
            out.append(f"  d{self.loss}/d{w} = {_symbol(self.graph, d, self.loss)}"
                       f"    {shapes.fmt(self.graph.attrs(d)['shape'])}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__
