"""Local rewrites: Graph -> Graph. Each rule is data (the op it matches, a name, a function
whose docstring says `before -> after`); one driver runs them all to a fixpoint. A node in
`keep` is never removed (it may be rewritten in place into an equal computation), and a
stop_gradient node is never bypassed. Merging maps into maps is fusion's job, not ours.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import sympy

from graphc import exprs, ops, shapes
from graphc.errors import GraphError
from graphc.graph import Graph

from .dce import check_keep, drop_dead

MAX_ROUNDS = 8          # the rules shrink the graph, so a fixpoint comes in 2-3 rounds
FACTOR_MAX_OPS = 200    # sympy.factor_terms is linear-ish; skip monsters anyway
CANCEL_MAX_OPS = 30     # sympy.cancel can blow up; only small expressions try it
# attributes that survive when a node is rewritten in place into another op


@dataclass(frozen=True)
class Rule:
    """Rewrite nodes of op `op`: `fn(ctx, node)` changes the graph and returns True, or
    leaves it alone and returns False. `fn.__doc__` says `before -> after`."""
    op: str
    name: str
    fn: Callable[[Context, str], bool]

    @property
    def doc(self) -> str:
        return self.fn.__doc__ or ""


@dataclass
class Context:
    graph: Graph
    keep: frozenset
    memo: dict = field(default_factory=dict)  # expression -> cheapest form found


# ---- graph surgery -----------------------------------------------------------------------

def _bypass(ctx: Context, node: str, to: str) -> bool:
    """Readers of `node` read `to` (an equal value) instead; `node` goes if now unread."""
    if node in ctx.keep or ctx.graph.attrs(node).get("stop_gradient"):
        return False
    ctx.graph.replace_uses(node, to)
    drop_dead(ctx.graph, [node], ctx.keep)
    return True


def _rewrite(ctx: Context, node: str, op: str, args: list, **attrs) -> bool:
    """Make `node` (same name, shape, dtype, flags) the primitive `op` over `args`."""
    g = ctx.graph
    a = g.attrs(node)
    old_args = g.args(node)
    kept = {k: a[k] for k in ops.KEPT_ON_REWRITE if k in a}
    info = [(g.attrs(r)["shape"], g.attrs(r)["dtype"]) for r in args]
    shape, dtype = ops.PRIMITIVES[op].infer(f"node {node!r}", info,
                                            {**kept, **attrs, "dims": set(g.dims.values())})
    if not shapes.same_shape(shape, kept["shape"]) or dtype != kept["dtype"]:
        raise GraphError(f"simplify: rewriting {node!r} as {op} gives {shapes.fmt(shape)} "
                         f"{dtype}, not {shapes.fmt(kept['shape'])} {kept['dtype']}")
    a.clear()
    a.update(kept, op=op, **attrs)
    g.nx.remove_edges_from(list(g.nx.in_edges(node, keys=True)))
    for i, r in enumerate(args):
        g.nx.add_edge(r, node, arg=i)
    g._topo = None
    drop_dead(ctx.graph, [r for r in old_args if r not in args], ctx.keep)
    return True


def _set_map(ctx: Context, node: str, expr: sympy.Expr, args: list, kept: list) -> bool:
    """Rewrite a map to `expr` over the arguments at positions `kept`, renumbered."""
    renumber = {exprs.arg(i): exprs.arg(j) for j, i in enumerate(kept)}
    return _rewrite(ctx, node, "map", [args[i] for i in kept], expr=expr.xreplace(renumber))


def _gives_shape(ctx: Context, args: list, shape: tuple) -> bool:
    """Do `args` alone broadcast to exactly `shape`?"""
    arg_shapes = [ctx.graph.attrs(r)["shape"] for r in args]
    return shapes.same_shape(shapes.broadcast(arg_shapes, "simplify"), shape)


# ---- map rules -----------------------------------------------------------------------------

def identity_map(ctx: Context, n: str) -> bool:
    """map(x0)[a], same shape and dtype as a -> a"""
    g, a = ctx.graph, ctx.graph.attrs(n)
    args = g.args(n)
    if a["expr"] != exprs.arg(0) or len(args) != 1:
        return False
    src = g.attrs(args[0])
    if not shapes.same_shape(src["shape"], a["shape"]) or src["dtype"] != a["dtype"]:
        return False
    return _bypass(ctx, n, args[0])


def dedupe_args(ctx: Context, n: str) -> bool:
    """map(f(x0, x1))[a, a] -> map(f(x0, x0))[a]"""
    args = ctx.graph.args(n)
    first: dict = {}
    same = {}
    for i, r in enumerate(args):
        if r in first:
            same[exprs.arg(i)] = exprs.arg(first[r])
        else:
            first[r] = i
    if not same:
        return False
    expr = ctx.graph.attrs(n)["expr"].xreplace(same)
    return _set_map(ctx, n, expr, args, sorted(first.values()))


def literal(g: Graph, name: str) -> sympy.Expr | None:
    """The value of a node as a SymPy literal: a one-element integral const, or a map with
    no arguments (a scalar such as the gradient seed 1 or -1/N). None otherwise."""
    a = g.attrs(name)
    if a["op"] == "map" and g.nx.in_degree(name) == 0:
        return a["expr"]
    if a["op"] == "const" and a["value"].size == 1:
        v = a["value"].reshape(()).item()
        # integers only: a float literal would print differently from the stored value
        if np.isfinite(v) and float(v).is_integer() and abs(v) < 2 ** 31:
            return sympy.Integer(int(v))
    return None


def _drop_positions(ctx: Context, n: str, expr: sympy.Expr, candidates: list) -> list:
    """Argument positions to keep after dropping each candidate that does not decide the
    result's shape (a (3, 4) argument lends its shape even when the expression ignores it)."""
    args, shape = ctx.graph.args(n), ctx.graph.attrs(n)["shape"]
    kept = list(range(len(args)))
    for i in candidates:
        trial = [j for j in kept if j != i]
        if _gives_shape(ctx, [args[j] for j in trial], shape):
            kept = trial
    return kept


def inline_literal_args(ctx: Context, n: str) -> bool:
    """map(f(x0, x1))[a, const 2] -> map(f(x0, 2))[a];  map(-x0/N)[map(1)[]] -> map(-1/N)[]"""
    g, a = ctx.graph, ctx.graph.attrs(n)
    args, free = g.args(n), a["expr"].free_symbols
    sub = {}
    for i, r in enumerate(args):
        lit = literal(g, r) if exprs.arg(i) in free else None
        if lit is not None:
            sub[exprs.arg(i)] = lit
    if not sub:
        return False
    expr = a["expr"].xreplace(sub)
    kept = _drop_positions(ctx, n, expr, [exprs.arg_index(s) for s in sub])
    return _set_map(ctx, n, expr, args, kept)


def drop_unused_args(ctx: Context, n: str) -> bool:
    """map(f(x0))[a, b] -> map(f(x0))[a], when b does not widen the result's shape"""
    a = ctx.graph.attrs(n)
    args, free = ctx.graph.args(n), a["expr"].free_symbols
    unused = [i for i in range(len(args)) if exprs.arg(i) not in free]
    kept = _drop_positions(ctx, n, a["expr"], unused)
    if len(kept) == len(args):
        return False
    return _set_map(ctx, n, a["expr"], args, kept)


def _unbroadcast_source(g: Graph, name: str) -> str | None:
    """For broadcast(a) or reshape(a) that only prepends 1-axes: a (a map's own
    broadcasting does the same). None for anything else."""
    a = g.attrs(name)
    if a.get("stop_gradient") or a["op"] not in ("broadcast", "reshape"):
        return None
    src = g.args(name)[0]
    s, t = g.attrs(src)["shape"], a["shape"]
    lead = len(t) - len(s)
    if a["op"] == "reshape" and not (lead >= 0 and all(d == 1 for d in t[:lead])
                                     and shapes.same_shape(t[lead:], s)):
        return None
    return src


def absorb_broadcast_args(ctx: Context, n: str) -> bool:
    """map(f)[broadcast(a), b] -> map(f)[a, b], when the result keeps its shape
    (also reshape(a) to (1, ..., *a.shape))"""
    g, shape = ctx.graph, ctx.graph.attrs(n)["shape"]
    args = g.args(n)
    new = list(args)
    for i, r in enumerate(args):
        src = _unbroadcast_source(g, r)
        if src is not None and _gives_shape(ctx, new[:i] + [src] + new[i + 1:], shape):
            new[i] = src
    if new == args:
        return False
    return _rewrite(ctx, n, "map", new, expr=g.attrs(n)["expr"])


def _cancel(expr: sympy.Expr) -> sympy.Expr:
    if expr.has(sympy.Piecewise) or sympy.count_ops(expr) > CANCEL_MAX_OPS:
        return expr  # cancel would rewrite conditions / may take long
    return sympy.cancel(expr)


def cheaper_form(expr: sympy.Expr, memo: dict) -> sympy.Expr:
    """The form of `expr` with the fewest operations among a few cheap canonicalisations;
    bounded: never sympy.simplify, and big expressions are left alone."""
    if expr in memo:
        return memo[expr]
    best, cost = expr, sympy.count_ops(expr)
    if 1 < cost <= FACTOR_MAX_OPS:
        funcs = {type(f) for f in expr.atoms(sympy.Function)}
        for transform in (sympy.factor_terms, _cancel):
            c = transform(expr)
            # the same functions and symbols only: no Heaviside, zoo or new names sneak in
            if c.free_symbols <= expr.free_symbols and not c.has(sympy.zoo, sympy.nan) and \
                    {type(f) for f in c.atoms(sympy.Function)} <= funcs:
                c_cost = sympy.count_ops(c)
                if c_cost < cost:
                    best, cost = c, c_cost
    memo[expr] = memo[best] = best
    return best


def simplify_expr(ctx: Context, n: str) -> bool:
    """map(x0*x1 + x0*x2)[a, b, c] -> map(x0*(x1 + x2))[a, b, c], when SymPy's cheap
    canonicalisations (factor_terms, cancel) count fewer operations"""
    a = ctx.graph.attrs(n)
    best = cheaper_form(a["expr"], ctx.memo)
    if best == a["expr"]:
        return False
    return _rewrite(ctx, n, "map", ctx.graph.args(n), expr=best)


# ---- layout and reduce rules ---------------------------------------------------------------

def _arg0(ctx: Context, n: str) -> tuple[str, dict]:
    x = ctx.graph.args(n)[0]
    return x, ctx.graph.attrs(x)


def identity_permute(ctx: Context, n: str) -> bool:
    """permute(a, (0, 1, ..., k-1)) -> a"""
    perm = ctx.graph.attrs(n)["perm"]
    return tuple(perm) == tuple(range(len(perm))) and _bypass(ctx, n, _arg0(ctx, n)[0])


def permute_of_permute(ctx: Context, n: str) -> bool:
    """permute(permute(a, p), q) -> permute(a, (p[q[0]], p[q[1]], ...))"""
    inner, ia = _arg0(ctx, n)
    if ia["op"] != "permute" or ia.get("stop_gradient"):
        return False
    composed = tuple(ia["perm"][q] for q in ctx.graph.attrs(n)["perm"])
    return _rewrite(ctx, n, "permute", ctx.graph.args(inner), perm=composed)


def _collapse_same_op(ctx: Context, n: str) -> bool:
    inner, ia = _arg0(ctx, n)
    a = ctx.graph.attrs(n)
    if ia["op"] != a["op"] or ia.get("stop_gradient"):
        return False
    return _rewrite(ctx, n, a["op"], ctx.graph.args(inner), shape=a["shape"])


def reshape_of_reshape(ctx: Context, n: str) -> bool:
    """reshape(reshape(a, s1), s2) -> reshape(a, s2)"""
    return _collapse_same_op(ctx, n)


def broadcast_of_broadcast(ctx: Context, n: str) -> bool:
    """broadcast(broadcast(a, s1), s2) -> broadcast(a, s2)"""
    return _collapse_same_op(ctx, n)


def noop_layout(ctx: Context, n: str) -> bool:
    """reshape(a, a.shape) -> a;  broadcast(a, a.shape) -> a"""
    x, xa = _arg0(ctx, n)
    return shapes.same_shape(xa["shape"], ctx.graph.attrs(n)["shape"]) and _bypass(ctx, n, x)


def noop_reduce(ctx: Context, n: str) -> bool:
    """reduce(a, axes=()) -> a;  reduce(a, size-1 axes, keepdims) -> a;
    reduce(a, size-1 axes) -> reshape(a, shape without those axes)"""
    a = ctx.graph.attrs(n)
    x, xa = _arg0(ctx, n)
    if not all(xa["shape"][k] == 1 for k in a["axes"]):
        return False
    if not a["axes"] or a["keepdims"]:
        return _bypass(ctx, n, x)
    return _rewrite(ctx, n, "reshape", [x], shape=a["shape"])


def squeeze_after_reduce(ctx: Context, n: str) -> bool:
    """reshape(reduce(a, axes, keepdims=True), shape without axes) -> reduce(a, axes)"""
    g, a = ctx.graph, ctx.graph.attrs(n)
    r, ra = _arg0(ctx, n)
    if ra["op"] != "reduce" or not ra["keepdims"] or ra.get("stop_gradient") or \
            r in ctx.keep or g.nx.out_degree(r) != 1:
        return False  # another reader would make us compute the reduction twice
    x, xa = _arg0(ctx, r)
    squeezed = tuple(d for k, d in enumerate(xa["shape"]) if k not in ra["axes"])
    if not shapes.same_shape(squeezed, a["shape"]):
        return False
    return _rewrite(ctx, n, "reduce", [x], fn=ra["fn"], axes=ra["axes"], keepdims=False)


def _rule(op: str, fn: Callable) -> Rule:
    return Rule(op, fn.__name__, fn)


# the rules, tried in this order on each node; the order only affects speed, not results
RULES = [
    _rule("map", identity_map),
    _rule("map", dedupe_args),
    _rule("map", inline_literal_args),
    _rule("map", drop_unused_args),
    _rule("map", absorb_broadcast_args),
    _rule("map", simplify_expr),
    _rule("permute", identity_permute),
    _rule("permute", permute_of_permute),
    _rule("reshape", reshape_of_reshape),
    _rule("reshape", squeeze_after_reduce),
    _rule("reshape", noop_layout),
    _rule("broadcast", broadcast_of_broadcast),
    _rule("broadcast", noop_layout),
    _rule("reduce", noop_reduce),
]


def simplify(graph: Graph, keep: Iterable[str], rules: list | None = None,
             max_rounds: int = MAX_ROUNDS) -> Graph:
    """Return a copy of `graph` with `rules` (default RULES) applied until none fires
    (at most `max_rounds` sweeps in topological order)."""
    ctx = Context(graph.copy(), check_keep(graph, keep, "simplify"))
    by_op: dict = {}
    for rule in RULES if rules is None else rules:
        by_op.setdefault(rule.op, []).append(rule)
    g = ctx.graph
    for _ in range(max_rounds):
        changed = False
        for n in list(g.topo()):
            for rule in by_op.get(g.attrs(n)["op"] if n in g else None, ()):
                if n not in g or g.attrs(n)["op"] != rule.op:
                    break  # removed, or rewritten into another op: next sweep sees it
                changed |= rule.fn(ctx, n)
        if not changed:
            break
    return g
