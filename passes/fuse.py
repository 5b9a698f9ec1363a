"""Fusion: Graph -> the same computation with maps merged and every node given a kernel.

Step 1, merging (fusion *is* SymPy substitution):
    c = map(x0 * x1)[b, d], b = map(x0 + x1)[a, k]   ->   c = map((x0 + x1) * x2)[a, k, d]
a `map` whose every user is a `map` is substituted into each user (argument symbols
renumbered, identical arguments deduplicated) and removed, when `should_inline` allows it
for every user. The cost rule, per producer P and user C:
  - never when P is kept (it stays materialized; its users still read it), when P or C is
    a stop_gradient boundary, or when P's dtype is not C's floating dtype (rounding);
  - P of C's shape with a single user: always (nothing is recomputed);
  - P of C's shape with several users: when recomputing P in each is cheaper than a store
    and a load on the backend at hand (passes/recompute.py: on NumPy every ufunc is a pass
    over memory, so nothing that costs one is recomputed; in C and Triton arithmetic is,
    transcendental calls are not; without a backend, count_ops(P) <= 2);
  - P smaller than C (e.g. (N, 1) read by (N, C)): only when P costs at most the rule's
    broadcast_max, since C recomputes it for every element it is broadcast over.
Each user records what was merged into it: node attrs `fused_from` (the merged nodes'
names, in graph order) and `fused_exprs` (each one's expression over the user's arguments,
by name), provenance only (ops.PROVENANCE), read by the printers' comments.
Literals (maps without arguments such as the gradient seed 1/N, one-element integral
consts) are folded into the maps that read them through views, when those keep their shape
without them; a map of literals alone becomes a view of a new literal, so its readers fold
it in turn. A merge that would give an expression the printers lack (SymPy's ITE, from a
Piecewise inside a condition) is not made.

Step 2, kernels (passes/fuse_groups.py): every node that is not a leaf or a view gets a
node attr `kernel`; `graph.nx.graph["kernels"]` lists `Kernel` records in run order:
  - "elementwise": maps of one shape: dependent maps, and siblings that read a common
    argument of that shape (a shared scalar such as a learning rate makes no siblings);
    several outputs;
  - "rows": reductions over the last axis of one row domain L + (C,), with maps of shape
    L + (C,), L + (1,) or L before, between and after them (softmax is one kernel);
  - "matmul": one matmul, a library call. Its bias/activation epilogue is the elementwise
    kernel right after it; with matmul_epilogue=True (matmul='fused'), epilogue maps of a
    2-D float32 matmul's shape join its kernel instead (a Triton matmul applies them to
    the accumulator tile);
  - "reduce": any other reduction (leading axes, full) with prologue maps of its input's
    shape used only by it and epilogue maps of its output's shape (the batch mean's
    division, an optimizer update of a bias).
Kernels merge only while no path leaves a kernel and re-enters it. The run order is a
topological order of kernels, ties by first member, kernels that only write results (the
loss, parameter updates) last; `graph.topo()` follows it, members contiguous.
`graph.nx.graph["fusion_log"]` says what was fused and what was not, and why.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sympy
from sympy.logic.boolalg import BooleanFunction

from graphc import exprs, shapes
from graphc.graph import Graph
from graphc.printing import readable_expr

from .dce import check_keep, drop_dead
from .fuse_groups import VIEWS, Grouping, kernel_name
from .recompute import rule_for
from .simplify import literal

MAX_ROUNDS = 8          # merging and literal folding alternate until neither changes


@dataclass
class Kernel:
    """One kernel of a fused graph: members in topological order, the nodes outside it
    they read (views by their own names), and the members read outside it or kept."""
    name: str
    kind: str           # "elementwise" | "rows" | "matmul" | "reduce"
    nodes: list[str]
    inputs: list[str]
    outputs: list[str]


def should_inline(graph: Graph, producer: str, consumer: str, keep: Iterable[str] = (),
                  backend: str | None = None) -> tuple[bool, str]:
    """May map `producer` be substituted into map `consumer`? (decision, reason);
    `backend`: whose recompute costs to weigh (passes/recompute.py; None: count_ops)."""
    p, c = graph.attrs(producer), graph.attrs(consumer)
    if p["op"] != "map" or c["op"] != "map":
        return False, f"not elementwise ({producer} is {p['op']}, {consumer} is {c['op']})"
    if producer in keep:
        return False, f"{producer} is in keep: it stays materialized"
    for n, a in ((producer, p), (consumer, c)):
        if a.get("stop_gradient"):
            return False, f"{n} is a stop_gradient boundary"
    if not shapes.is_float(p["dtype"]):
        return False, f"{producer} is {p['dtype']}: inlining would drop its integer rounding"
    if p["dtype"] != c["dtype"]:
        return False, (f"dtypes differ ({p['dtype']} -> {c['dtype']}): inlining would move "
                       "a rounding")
    others = [u for u in graph.users(producer) if graph.attrs(u)["op"] != "map"]
    if others:
        return False, f"{producer} is also read by {others[0]} (not a map): it is stored anyway"
    rule = rule_for(backend)
    cost, users = rule.cost(p["expr"]), len(graph.users(producer))
    if not shapes.same_shape(p["shape"], c["shape"]):
        sizes = f"{shapes.fmt(p['shape'])} into {shapes.fmt(c['shape'])}"
        if cost <= rule.broadcast_max:
            return True, f"cheap enough to recompute per broadcast element ({sizes})"
        return False, (f"too costly to recompute: {rule.unit} {cost} > {rule.broadcast_max} "
                       f"for a smaller producer broadcast {sizes}")
    if users == 1:
        return True, "single user, same shape"
    ok, measure = rule.shared(cost, users)
    if ok:
        return True, (f"cheap ({measure} <= {rule.shared_max}): recomputing it in "
                      f"{users} users beats a store and a load")
    return False, f"too costly to recompute: {measure} > {rule.shared_max} with {users} users"


# ---- step 1: merging maps -----------------------------------------------------------------------

def _set_map(g: Graph, node: str, expr: sympy.Expr, args: list) -> None:
    """Make map `node` compute `expr` over `args` (its shape must not change)."""
    arg_shapes = [g.attrs(a)["shape"] for a in args]
    merged = shapes.broadcast(arg_shapes, f"fuse {node!r}")
    if not shapes.same_shape(merged, g.attrs(node)["shape"]):
        raise AssertionError(f"fuse: rewriting {node!r} would change its shape")
    g.nx.remove_edges_from(list(g.nx.in_edges(node, keys=True)))
    for i, a in enumerate(args):
        g.nx.add_edge(a, node, arg=i)
    g.nx.nodes[node]["expr"] = expr
    g._topo = None


def substituted(g: Graph, producer: str, consumer: str) -> tuple[sympy.Expr, list]:
    """c = map(f(x0, x1))[p, b], p = map(h(x0))[a]  ->  c = map(f(h(x1), x0))[b, a]
    (the new expression and arguments of c; the graph is not changed)"""
    new_args: list = []
    index: dict = {}   # name -> position in new_args (a list scan per argument is O(n^2))

    def slot(name: str) -> sympy.Symbol:
        if name not in index:
            index[name] = len(new_args)
            new_args.append(name)
        return exprs.arg(index[name])
    c_args = g.args(consumer)
    sub = {exprs.arg(i): slot(a) for i, a in enumerate(c_args) if a != producer}
    p_sub = {exprs.arg(j): slot(a) for j, a in enumerate(g.args(producer))}
    inner = g.attrs(producer)["expr"].xreplace(p_sub)
    sub.update({exprs.arg(i): inner for i, a in enumerate(c_args) if a == producer})
    return g.attrs(consumer)["expr"].xreplace(sub), new_args


def unprintable(expr: sympy.Expr) -> str | None:
    """Why a merged expression must not replace the original (None when it may): SymPy
    turns a Piecewise inside a condition into ITE, which no printer takes, and folding
    literals may give zoo or nan where the graph computed inf at run time."""
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return "the merged expression would hold an infinity or nan"
    for e in sympy.preorder_traversal(expr):
        if isinstance(e, BooleanFunction) and not isinstance(e, (sympy.And, sympy.Or)):
            return f"the merged expression would hold {type(e).__name__}, which printers lack"
    return None


def merged_into(g: Graph, host: str) -> list:
    """[(name, expression over host's arguments by name)] of the nodes merged into `host`."""
    a = g.attrs(host)
    return list(zip(a.get("fused_from", ()), a.get("fused_exprs", ())))


def _record(g: Graph, host: str, node: str, value: sympy.Expr, order: dict,
            through: str = "") -> None:
    """Note in `host`'s provenance that `node` (whose value is `value`, over names; read
    `through` a view) went into it, with everything merged into `node` before; mentions of
    it in the host's earlier entries become its value. `order`: the input graph's nodes ->
    their index (a node fusion made, a literal's holder, is not named)."""
    sub = {sympy.Symbol(n): value for n in (node, through) if n}
    entries = [(n, e.xreplace(sub)) for n, e in merged_into(g, host)]
    if node in g and node != host:
        entries += merged_into(g, node)
    if node in order:
        entries.append((node, value))
    entries = sorted(dict(entries).items(), key=lambda t: order[t[0]])
    g.nx.nodes[host]["fused_from"] = tuple(n for n, _ in entries)
    g.nx.nodes[host]["fused_exprs"] = tuple(e for _, e in entries)


def merge_maps(g: Graph, keep: frozenset, log: dict, backend: str | None = None,
               order: dict | None = None) -> bool:
    """One sweep of substitutions in topological order; True if any was made."""
    changed = False
    order = order if order is not None else {n: g.attrs(n)["index"] for n in g.nx.nodes}
    for p in list(g.topo()):
        if p not in g or g.attrs(p)["op"] != "map" or not g.nx.out_degree(p):
            continue
        users = g.users(p)
        verdicts = [(u, *should_inline(g, p, u, keep, backend)) for u in users]
        refused = [(u, why) for u, ok, why in verdicts if not ok]
        merged = {u: substituted(g, p, u) for u in users} if not refused else {}
        refused += [(u, why) for u, (e, _) in merged.items() if (why := unprintable(e))]
        if refused:
            _note(log, f"cannot fuse {p} into {refused[0][0]}: {refused[0][1]}")
            continue
        value = readable_expr(g, p)
        for u, (expr, args) in merged.items():
            _record(g, u, p, value, order)
            _set_map(g, u, expr, args)
        reasons = sorted({why for _, _, why in verdicts})
        _note(log, f"fuse {p} into {', '.join(users)}: {'; '.join(reasons)}")
        drop_dead(g, [p], keep)
        changed = True
    return changed


def _literal_of(g: Graph, v: str, keep: frozenset) -> tuple[str, sympy.Expr] | None:
    """(node, value) of the literal that `v` holds, itself or through views: a map without
    arguments or a one-element integral const (simplify's literals); None otherwise."""
    while g.attrs(v)["op"] in VIEWS:
        v = g.args(v)[0]
    value = literal(g, v)
    if value is None or v in keep or g.attrs(v).get("stop_gradient"):
        return None
    return v, value


def fold_literals(g: Graph, keep: frozenset, log: dict, order: dict | None = None) -> bool:
    """map(f(x0, x1))[broadcast(reshape(s)), b], s = map(1/N)[] -> map(f(1/N, x0))[b],
    when b alone gives the map its shape"""
    changed = False
    for m in list(g.topo()):
        if m not in g or g.attrs(m)["op"] != "map" or g.attrs(m).get("stop_gradient"):
            continue
        for v in g.args(m):
            lit = _literal_of(g, v, keep) if g.attrs(v)["op"] in VIEWS else None
            rest = list(dict.fromkeys(a for a in g.args(m) if a != v))
            if lit is None or not shapes.same_shape(
                    shapes.broadcast([g.attrs(a)["shape"] for a in rest], "fuse"),
                    g.attrs(m)["shape"]):
                continue
            sub = {exprs.arg(k): lit[1] if a == v else exprs.arg(rest.index(a))
                   for k, a in enumerate(g.args(m))}
            expr = g.attrs(m)["expr"].xreplace(sub)
            if unprintable(expr):
                continue
            chain = [v]   # the view chain to the literal: named after its last original node
            while chain[-1] != lit[0]:
                chain.append(g.args(chain[-1])[0])
            known = order if order is not None else {n: 0 for n in g.nx.nodes}
            named = [n for n in chain if n in known] or [lit[0]]
            if named[-1] != lit[0]:   # the literal fusion made: what it was made of
                _record(g, m, lit[0], lit[1], known)
            _record(g, m, named[-1], lit[1], known, through=v)
            _set_map(g, m, expr, rest)
            _note(log, f"fold literal {lit[0]} = {lit[1]} (through {v}) into {m}")
            drop_dead(g, [v], keep)
            changed = True
            break  # the arguments changed: the next sweep looks again
    return changed


def broadcast_literals(g: Graph, keep: frozenset, log: dict, order: dict | None = None) -> bool:
    """map(-x0)[broadcast(s)], s = map(1/N)[] -> broadcast(map(-1/N)[]): a map of literals
    is a literal too, shown through a view, so that its readers can fold it in turn (the
    new literal's provenance: the literals it was made of, and what m had merged)"""
    changed = False
    for m in list(g.topo()):
        a = g.attrs(m)
        if a["op"] != "map" or m in keep or a.get("stop_gradient") or not g.nx.in_degree(m):
            continue
        args = g.args(m)
        lits = [lit for v in args if (lit := _literal_of(g, v, keep)) is not None]
        if len(lits) != len(args):
            continue
        expr = a["expr"].xreplace({exprs.arg(k): lit for k, (_, lit) in enumerate(lits)})
        if unprintable(expr):
            continue
        holder = g.map(expr, [], name=g.fresh(f"{m}_value"), dtype=a["dtype"]).name
        for key in ("fused_from", "fused_exprs"):   # m becomes a view: its holder computes
            if key in a:
                g.nx.nodes[holder][key] = a.pop(key)
        for src, value in lits:
            _record(g, holder, src, value, order if order is not None else {})
        g.nx.remove_edges_from(list(g.nx.in_edges(m, keys=True)))
        g.nx.add_edge(holder, m, arg=0)
        for k in ("expr", "hint"):
            a.pop(k, None)
        a["op"] = "broadcast"
        g._topo = None
        _note(log, f"{m} computes from literals only: {m} = broadcast({holder}), "
                   f"{holder} = {expr}")
        drop_dead(g, args, keep)
        changed = True
    return changed


def _note(log: dict, line: str) -> None:
    log.setdefault(line)   # a dict: ordered, and no list scan per line


# ---- step 2: kernels ----------------------------------------------------------------------------

def _records(g: Graph, groups: list, keep: frozenset) -> list:
    """Kernel records for (kind, members) groups in run order."""
    index = {n: g.attrs(n)["index"] for n in g.nx.nodes}
    kernels = []
    for k, (kind, nodes) in enumerate(groups):
        inside = set(nodes)
        reads = {a for n in nodes for a in g.args(n) if a not in inside}
        outputs = [n for n in nodes if n in keep or any(u not in inside for u in g.users(n))]
        kernels.append(Kernel(kernel_name(g, kind, nodes, k), kind, list(nodes),
                              sorted(reads, key=index.__getitem__), outputs))
    return kernels


def fuse(graph: Graph, keep: Iterable[str], matmul_epilogue: bool = False,
         backend: str | None = None) -> Graph:
    """Return a copy of `graph` with maps merged and every computing node in one kernel:
    node attr `kernel`, graph attrs `kernels` (Kernel records, run order), `fusion_log`.
    matmul_epilogue: a matmul's elementwise epilogue joins its kernel; backend: whose
    recompute costs decide what is recomputed (passes/recompute.py; None: count_ops)."""
    keep = check_keep(graph, keep, "fuse")
    g = graph.copy()
    log: dict[str, None] = {}
    order = {n: graph.attrs(n)["index"] for n in graph.nx.nodes}   # fused_from's order
    for _ in range(MAX_ROUNDS):
        if not (merge_maps(g, keep, log, backend, order) | fold_literals(g, keep, log, order)
                | broadcast_literals(g, keep, log, order)):
            break
    grouping = Grouping(g, keep, matmul_epilogue)
    grouping.run()
    groups, order = grouping.schedule()
    for i, n in enumerate(order):  # topo() now lists kernels in run order, members together
        g.nx.nodes[n]["index"] = i
    g._topo = None
    kernels = _records(g, groups, keep)
    for k in kernels:
        for n in k.nodes:
            g.nx.nodes[n]["kernel"] = k.name
    g.nx.graph["kernels"] = kernels
    g.nx.graph["fusion_log"] = list(log) + grouping.log
    return g


def explain(graph: Graph, a: str, b: str, keep: Iterable[str] = (),
            matmul_epilogue: bool = False, backend: str | None = None) -> str:
    """Why nodes `a` and `b` of `graph`, taken as a pair, fuse or not:
    "fuse a into b: ..." (substitution), "fuse a with b in one <kind> kernel ..." or
    "cannot fuse a with b: <reasons>" (matmul_epilogue, backend: as fuse's)."""
    keep = frozenset(keep)
    inline_why = ""
    for p, c in ((a, b), (b, a)):
        if c in graph.users(p) and graph.attrs(p)["op"] == graph.attrs(c)["op"] == "map":
            ok, inline_why = should_inline(graph, p, c, keep, backend)
            if ok:
                return f"fuse {p} into {c}: {inline_why}"
            inline_why = f"{p} is not substituted: {inline_why}"
    grouping = Grouping(graph, keep, matmul_epilogue)
    if a not in grouping.group_of or b not in grouping.group_of:
        leaf = a if a not in grouping.group_of else b
        why = f"{leaf} ({graph.attrs(leaf)['op']}) is a leaf or a view: no kernel computes it"
        return f"cannot fuse {a} with {b}: {why}"
    kind, why = grouping.check(sorted({a, b}, key=grouping.pos.__getitem__))
    if kind is not None:
        return f"fuse {a} with {b} in one {kind} kernel" + (f" ({inline_why})" if inline_why
                                                              else "")
    return f"cannot fuse {a} with {b}: {'; '.join(r for r in (inline_why, why) if r)}"
