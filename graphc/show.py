"""Gradients as math: the backward graph listed as equations d<loss>/d<node> = ..."""
from __future__ import annotations

import networkx as nx
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
    """What `gc.show_grad` returns: for each parameter, its gradient and the chain of
    backward nodes (adjoints d<loss>/d<node>) it was computed from, nearest first."""

    def __init__(self, graph, loss: str, grads: dict):
        self.graph, self.loss, self.grads = graph, loss, grads
        topo = graph.topo()
        first = min(i for i, n in enumerate(topo) if graph.attrs(n).get("adjoint_of"))
        self.backward = topo[first:]

    def chain(self, grad_node: str) -> list:
        """The backward nodes a gradient depends on, from the gradient back to the seed."""
        needed = nx.ancestors(self.graph.nx, grad_node) | {grad_node}
        return [n for n in reversed(self.backward) if n in needed]

    def row(self, n: str) -> str:
        lhs = str(_symbol(self.graph, n, self.loss))
        shape = shapes.fmt(self.graph.attrs(n)["shape"])
        return f"{lhs} = {equation(self.graph, n, self.loss)}    {shape}"

    def lines(self) -> list:
        out = []
        for w, d in self.grads.items():
            steps = self.chain(d)
            head = self.row(steps[0])
            if self.graph.attrs(d).get("adjoint_of") != w:  # passed through unchanged
                head = f"d{self.loss}/d{w} = {head}"
            out.append(head)
            out += [f"    {self.row(n)}" for n in steps[1:]]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__

    # ---- LaTeX: adjoints written \bar{node}, the seed d loss / d loss = 1 -------------
    def _tex_symbol(self, n: str) -> sympy.Symbol:
        a = self.graph.attrs(n)
        name = a.get("adjoint_of", n).replace("_", r"\_")
        return sympy.Symbol(rf"\bar{{\mathrm{{{name}}}}}" if "adjoint_of" in a
                            else rf"\mathrm{{{name}}}")

    def tex_row(self, n: str) -> str:
        a, args = self.graph.attrs(n), self.graph.args(n)
        shown = [self._tex_symbol(x) for x in args]
        lhs = sympy.latex(self._tex_symbol(n))
        if a["op"] == "map":
            rhs = sympy.latex(a["expr"].xreplace({exprs.arg(i): s for i, s in enumerate(shown)}))
        elif a["op"] == "matmul":
            rhs = f"{sympy.latex(shown[0])} {sympy.latex(shown[1])}"
        elif a["op"] == "permute" and len(shown) == 1:
            rhs = f"{sympy.latex(shown[0])}^\\top"
        else:
            rhs = rf"\operatorname{{{a['op']}}}({', '.join(sympy.latex(s) for s in shown)})"
        return f"{lhs} = {rhs}"

    def latex(self) -> str:
        """Each gradient's chain as LaTeX equations, one per line (the notebook view)."""
        out = []
        for w, d in self.grads.items():
            out += [f"% d {self.loss} / d {w}"] + [self.tex_row(n) for n in self.chain(d)]
        return "\n".join(out)

    def _repr_latex_(self) -> str:
        return "$\\begin{aligned}" + r" \\ ".join(
            line.replace(" = ", " &= ", 1) for line in self.latex().splitlines()
            if not line.startswith("%")) + "\\end{aligned}$"
