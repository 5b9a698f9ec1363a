"""Kernel grouping for the fusion pass: a Graph (maps already merged) -> kernels.

Every node that computes (not a leaf, not a view) starts as a kernel of its own. Kernels
then merge greedily, in topological order, with the kernels of their producers, users and
siblings (kernels reading a common node), when `Grouping.kind` allows the union and the
union stays a valid DAG unit: no path leaves it and comes back (it would run before itself).
"""
from __future__ import annotations

import networkx as nx
import sympy

from graphc import ops, shapes
from graphc.graph import Graph
from graphc.shapes import same_shape

VIEWS = ops.VIEWS   # no storage, no kernel: a kernel reads them
MAX_ROUNDS = 6          # a merge can enable another (a prologue whose users all joined)
NAME_OPS = 4            # op names in a kernel name, at most
ARITHMETIC = ("add", "mul", "div", "pow")      # dropped first when a name grows long
PREFIX = {"elementwise": "fused", "rows": "rows", "reduce": "reduce", "matmul": "matmul"}


def computes(graph: Graph, n: str) -> bool:
    """Does `n` belong to a kernel (every node but leaves and views)?"""
    op = graph.attrs(n)["op"]
    return op not in ops.LEAVES and op not in VIEWS


def is_row_reduction(graph: Graph, n: str) -> bool:
    """A reduction over the last axis only, of an input of rank >= 2."""
    a = graph.attrs(n)
    if a["op"] != "reduce":
        return False
    rank = len(graph.attrs(graph.args(n)[0])["shape"])
    return rank >= 2 and tuple(a["axes"]) == (rank - 1,)


class Grouping:
    """Kernels as groups of node names; `group_of[n]` is the group's first member."""

    def __init__(self, graph: Graph, keep: frozenset, matmul_epilogue: bool = False):
        self.g, self.keep = graph, keep
        self.matmul_epilogue = matmul_epilogue   # epilogue maps may join a matmul's kernel
        self.order = list(graph.topo())
        self.pos = {n: i for i, n in enumerate(self.order)}
        self.users = {n: graph.users(n) for n in self.order}
        self.args = {n: graph.args(n) for n in self.order}
        self.group_of = {n: n for n in self.order if computes(graph, n)}
        self.members = {n: [n] for n in self.group_of}
        self.kinds = {n: self.kind([n])[0] for n in self.group_of}
        # unit (group head, or a leaf/view alone) -> its place in a topological order of
        # the graph of units, kept valid across merges: it bounds the cycle search
        self.rank = dict(self.pos)
        self.below, self.above = self._reachability()
        self.log: list[str] = []
        self._logged: set = set()

    def shape(self, n: str) -> tuple:
        return self.g.attrs(n)["shape"]

    def unit(self, n: str) -> str:
        return self.group_of.get(n, n)

    def note(self, line: str) -> None:
        if line not in self._logged:
            self._logged.add(line)
            self.log.append(line)

    # ---- which unions are kernels -----------------------------------------------------------
    def kind(self, nodes: list) -> tuple[str | None, str]:
        """The kind of kernel `nodes` (topological order) can form, or (None, why not)."""
        ops_of = {n: self.g.attrs(n)["op"] for n in nodes}
        matmuls = [n for n in nodes if ops_of[n] == "matmul"]
        if matmuls:
            if len(nodes) == 1:
                return "matmul", ""
            if not self.matmul_epilogue:
                return None, (f"{matmuls[0]} is a matmul, a library call of its own "
                              "(its epilogue is the next kernel; matmul='fused' puts it inside)")
            return self._matmul(nodes, matmuls)
        reductions = [n for n in nodes if ops_of[n] == "reduce"]
        maps = [n for n in nodes if ops_of[n] == "map"]
        if not reductions:
            return self._elementwise(maps)
        if all(is_row_reduction(self.g, r) for r in reductions):
            return self._rows(nodes, reductions, maps)
        if len(reductions) == 1:
            return self._reduce(nodes, reductions[0], maps)
        rows = [r for r in reductions if is_row_reduction(self.g, r)]
        if rows:
            other = next(r for r in reductions if r not in rows)
            return None, (f"{other} reduces axes {self.g.attrs(other)['axes']}, not the last "
                          f"axis alone: it cannot join the rows kernel of {rows[0]}")
        return None, (f"a reduce kernel holds one reduction ({reductions[0]}, "
                      f"{reductions[1]})")

    def _elementwise(self, maps: list) -> tuple[str | None, str]:
        first = maps[0]
        for m in maps[1:]:
            if not same_shape(self.shape(m), self.shape(first)):
                return None, (f"different shapes ({first} {shapes.fmt(self.shape(first))}, "
                              f"{m} {shapes.fmt(self.shape(m))})")
        return "elementwise", ""

    def _rows(self, nodes: list, reductions: list, maps: list) -> tuple[str | None, str]:
        """Reductions over the last axis of one row domain L + (C,), and maps of shape
        L + (C,), L + (1,) or L; a member reads members of its own rank only (an (N,)
        value broadcast into (N, C) would run along the row, not down it)."""
        row = self.shape(self.args[reductions[0]][0])
        for r in reductions[1:]:
            other = self.shape(self.args[r][0])
            if not same_shape(other, row):
                return None, (f"reductions over different rows ({reductions[0]} reads "
                              f"{shapes.fmt(row)}, {r} reads {shapes.fmt(other)})")
        domain = (row, row[:-1] + (1,), row[:-1])
        inside = set(nodes)
        for m in maps:
            s = self.shape(m)
            if not any(same_shape(s, d) for d in domain):
                return None, (f"{m} {shapes.fmt(s)} is outside the row domain "
                              f"{shapes.fmt(row)} of {reductions[0]}")
            for a in self.args[m]:
                if a in inside and len(self.shape(a)) != len(s):
                    return None, (f"{m} {shapes.fmt(s)} reads {a} "
                                  f"{shapes.fmt(self.shape(a))} across rows")
        return "rows", ""

    def _reduce(self, nodes: list, r: str, maps: list) -> tuple[str | None, str]:
        """One reduction with prologue maps of its input's shape used only inside, and
        epilogue maps of its output's shape that follow it."""
        src, out = self.shape(self.args[r][0]), self.shape(r)
        inside = set(nodes)
        after = {r}
        for n in nodes:  # topological order: a member follows r if it reads one that does
            if any(a in after for a in self.args[n]):
                after.add(n)
        for m in maps:
            s = self.shape(m)
            if m in after and same_shape(s, out):
                continue
            if not same_shape(s, src):
                return None, (f"{m} {shapes.fmt(s)} is neither a prologue {shapes.fmt(src)} "
                              f"nor an epilogue {shapes.fmt(out)} of {r}")
            if m in self.keep or any(u not in inside for u in self.users[m]):
                return None, (f"{m} is read outside the kernel of {r} (or kept): a "
                              "reduction's prologue must be used by it alone")
        return "reduce", ""

    def _matmul(self, nodes: list, matmuls: list) -> tuple[str | None, str]:
        """One float32 2-D matmul and epilogue maps of its output's shape that follow it
        (bias add, activation, the derivative the backward reads): the Triton matmul
        template applies them to its accumulator tile before the one store."""
        mm = matmuls[0]
        if len(matmuls) > 1:
            return None, f"a matmul kernel holds one matmul ({mm}, {matmuls[1]})"
        a = self.g.attrs(mm)
        if len(a["shape"]) != 2 or a["dtype"] != "float32":
            return None, (f"{mm} is a {len(a['shape'])}-D {a['dtype']} matmul: the fused "
                          "template takes 2-D float32 (others stay library calls)")
        after = {mm}
        for n in nodes:  # topological order: a member follows mm if it reads one that does
            if n == mm:
                continue
            if self.g.attrs(n)["op"] != "map" or not any(x in after for x in self.args[n]):
                return None, f"{n} is not an epilogue map of {mm} (it does not read it)"
            if not same_shape(self.shape(n), a["shape"]):
                return None, (f"{n} {shapes.fmt(self.shape(n))} is not of the shape "
                              f"{shapes.fmt(a['shape'])} of {mm}")
            after.add(n)
        return "matmul", ""

    # ---- legality: no path out and back in --------------------------------------------------
    def _reachability(self) -> tuple[dict, dict]:
        """Per node, the nodes below it (its descendants) and above it (its ancestors) in
        the graph, as bitsets over `order` (Python ints: one OR per edge)."""
        below: dict = {}
        for n in reversed(self.order):
            bits = 0
            for u in self.users[n]:
                bits |= below[u] | 1 << self.pos[u]
            below[n] = bits
        above: dict = {}
        for n in self.order:
            bits = 0
            for a in self.args[n]:
                bits |= above[a] | 1 << self.pos[a]
            above[n] = bits
        return below, above

    def _graph_path(self, nodes: set) -> list | None:
        """A path of the graph itself that leaves `nodes` and comes back, or None: any
        node both below and above `nodes` lies on one. Cheap (bitsets), and enough to
        refuse most merges that `cycle` refuses (paths through merged groups aside).
        The path is given by its ends, `m -> x -> ... -> y -> m2` (it can be long: a
        forward value that its own backward reads loops through the loss)."""
        mask = down = up = 0
        for m in nodes:
            mask |= 1 << self.pos[m]
            down |= self.below[m]
            up |= self.above[m]
        between = down & up & ~mask
        if not between:
            return None
        members = sorted(nodes, key=self.pos.__getitem__)
        m, x = next((m, u) for m in members for u in self.users[m]
                     if between >> self.pos[u] & 1)
        reach = self.below[x] | 1 << self.pos[x]
        y, m2 = next((a, n) for n in members for a in self.args[n]
                     if a not in nodes and reach >> self.pos[a] & 1)
        if x == y:
            return [m, x, m2]
        return [m, x, y, m2] if y in self.users[x] else [m, x, "...", y, m2]

    def cycle(self, nodes: set) -> list | None:
        """A path that leaves `nodes` (whole units) and comes back (node names), or None.
        Other groups count as one unit: reaching any member reaches all of the group's
        users. Only units ranked below the last of `nodes`' units can lie on such a path
        (ranks are a topological order of units), so the search stops there."""
        path = self._graph_path(nodes)
        if path:
            return path
        hi = max(self.rank[self.unit(m)] for m in nodes)
        parent: dict = {}
        stack = []
        for m in sorted(nodes, key=self.pos.__getitem__):
            for s in self.users[m]:
                if s not in nodes and s not in parent and self.rank[self.unit(s)] < hi:
                    parent[s] = m
                    stack.append(s)
        expanded: set = set()
        while stack:
            v = stack.pop()
            head = self.unit(v)
            if head in expanded:
                continue
            expanded.add(head)
            for u in self.members.get(head, [v]):
                parent.setdefault(u, v)
                for s in self.users[u]:
                    if s in nodes:
                        return self._path(parent, u, nodes) + [s]
                    if s not in parent and self.rank[self.unit(s)] < hi:
                        parent[s] = u
                        stack.append(s)
        return None

    def _reach(self, start: str, step: dict, inside) -> list:
        """Units reachable from unit `start` along `step` (users or args) through units
        whose rank satisfies `inside`."""
        seen, stack, out = {start}, [start], []
        while stack:
            w = stack.pop()
            for m in self.members.get(w, [w]):
                for s in step[m]:
                    v = self.unit(s)
                    if v not in seen and inside(self.rank[v]):
                        seen.add(v)
                        stack.append(v)
                        out.append(v)
        return out

    def _rerank(self, a: str, b: str, head: str) -> None:
        """Ranks after units a and b (no path between them through others) become `head`:
        Pearce and Kelly's update. Between the two ranks, units that reach the later one
        move before the union, units reached from the earlier one after it, each set in
        its old order, into the ranks they held; every other rank stays."""
        lo_u, hi_u = sorted((a, b), key=self.rank.__getitem__)
        lo, hi = self.rank[lo_u], self.rank[hi_u]
        after = self._reach(lo_u, self.users, lambda r: r < hi)
        before = self._reach(hi_u, self.args, lambda r: r > lo)
        slots = sorted([lo, hi] + [self.rank[w] for w in after + before])
        before.sort(key=self.rank.__getitem__)
        after.sort(key=self.rank.__getitem__)
        for w, r in zip(before, slots):
            self.rank[w] = r
        for w, r in zip(after, slots[len(slots) - len(after):]):
            self.rank[w] = r
        del self.rank[lo_u], self.rank[hi_u]
        self.rank[head] = slots[len(before)]

    @staticmethod
    def _path(parent: dict, end: str, nodes: set) -> list:
        path = [end]
        while path[-1] not in nodes:
            path.append(parent[path[-1]])
        return path[::-1]

    def check(self, nodes: list) -> tuple[str | None, str]:
        """(kind, "") when `nodes` can be one kernel, else (None, why not)."""
        kind, why = self.kind(nodes)
        if kind is None:
            return None, why
        path = self.cycle(set(nodes))
        if path:
            return None, f"would create a cycle ({' -> '.join(path)})"
        return kind, ""

    # ---- the greedy merge -------------------------------------------------------------------
    def candidates(self, n: str) -> list:
        """Kernels worth joining n's: its producers, its users, and its siblings through an
        argument as large as n's work (read once instead of twice). A shared scalar such as
        a learning rate makes no siblings: merging those saves no memory traffic."""
        args = self.args[n]
        reduce = self.g.attrs(n)["op"] == "reduce"
        shared = [a for a in args if reduce or same_shape(self.shape(a), self.shape(n))]
        near = args + self.users[n] + [s for a in shared for s in self.users[a]]
        seen, out = {n}, []
        for m in near:
            if m not in seen and m in self.group_of:
                seen.add(m)
                out.append(m)
        return out

    def try_merge(self, n: str, m: str) -> bool:
        """Merge the kernels of n and m if `check` allows; refusals are logged for a
        producer and its user (siblings that stay apart are no news)."""
        a, b = self.group_of[n], self.group_of[m]
        if a == b:
            return False
        nodes = sorted(self.members[a] + self.members[b], key=self.pos.__getitem__)
        kind, why = self.check(nodes)
        if kind is None:
            if m in self.users[n] or n in self.users[m]:
                self.note(f"cannot fuse {n} with {m}: {why}")
            return False
        head = nodes[0]
        self._rerank(a, b, head)
        for x in nodes:
            self.group_of[x] = head
        gone = b if head == a else a
        del self.members[gone], self.kinds[gone]
        self.members[head], self.kinds[head] = nodes, kind
        self.note(f"fuse {n} with {m}: one {kind} kernel of {len(nodes)} nodes")
        return True

    def run(self) -> None:
        for _ in range(MAX_ROUNDS):
            changed = False
            for n in self.group_of:  # topological order (dict order)
                for m in self.candidates(n):
                    changed |= self.try_merge(n, m)
            if not changed:
                return

    def schedule(self) -> tuple[list, list]:
        """([(kind, members)] in run order, every node in that order). Kernels are
        ordered by a topological sort of the graph of kernels, ties by first member, and
        kernels nothing else reads (loss, parameter updates) last, as memory.schedule
        does: an update written in place then follows every reader of the old value."""
        unit = {n: self.group_of.get(n, n) for n in self.order}
        q = nx.DiGraph()
        q.add_nodes_from(unit[n] for n in self.order)
        q.add_edges_from((unit[n], unit[u]) for n in self.order for u in self.users[n]
                         if unit[n] != unit[u])

        def key(u: str) -> tuple:
            return (u in self.members and not q.out_degree(u), self.pos[u])
        units = list(nx.lexicographical_topological_sort(q, key=key))
        kernels = [(self.kinds[u], self.members[u]) for u in units if u in self.members]
        return kernels, [n for u in units for n in self.members.get(u, [u])]


# ---- kernel names ----------------------------------------------------------------------------

def _expr_ops(e: sympy.Basic) -> list:
    """Op names in an expression, innermost first: tanh(x0*x1 + x2) -> mul, add, tanh."""
    names = [name for a in e.args for name in _expr_ops(a)]
    if isinstance(e, sympy.Pow):
        names.append("div" if e.exp == -1 else "pow")
    elif isinstance(e, (sympy.Add, sympy.Mul, sympy.Function, sympy.Max, sympy.Min)):
        names.append({"piecewise": "where"}.get(type(e).__name__.lower(),
                                                type(e).__name__.lower()))
    return names


def kernel_name(graph: Graph, kind: str, nodes: list, k: int) -> str:
    """`<prefix>_<ops>_<k>`: fused_mul_add_tanh_0, rows_max_exp_sum_1, matmul_2 (a library
    matmul), matmul_add_tanh_3 (a matmul with its epilogue inside)."""
    if kind == "matmul" and len(nodes) == 1:
        return f"matmul_{k}"
    names: list = []
    for n in nodes:
        a = graph.attrs(n)
        if a["op"] == "matmul":
            continue
        for name in _expr_ops(a["expr"]) if a["op"] == "map" else [a["fn"]]:
            if name not in names:
                names.append(name)
    if len(names) > NAME_OPS:
        names = [x for x in names if x not in ARITHMETIC] or names
    return "_".join([PREFIX[kind]] + names[:NAME_OPS] + [str(k)])
