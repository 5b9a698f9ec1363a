"""What every backend runs and where results live: the fused graph's kernel records (or
one kernel per node for an unfused graph), and a storage plan at kernel granularity: only
values a kernel stores get a buffer; members used inside a kernel live in registers.
The Triton and C printers launch these kernels; the NumPy printer groups its statements
by them. One grouping, one storage planner, one in-place rule for all three.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from graphc import exprs
from graphc.ops import LEAVES, VIEWS  # noqa: F401 - the printers take them from here
from graphc.passes.memory import base_of  # noqa: F401 - as LEAVES
from graphc.printing import describe

KINDS = ("elementwise", "rows", "matmul", "reduce")   # rand, a leaf: computed where it is read


@dataclass
class Kernel:
    """One launch: `nodes` in topological order, `inputs` read from outside, `outputs`
    the members stored (read by other kernels, returned, or parameter updates)."""
    name: str
    kind: str
    nodes: list
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


@dataclass
class Storage:
    """Where stored values live: buffer slots, or parameters updated in place."""

    slot_of: dict = field(default_factory=dict)    # stored node -> buffer slot
    slots: list = field(default_factory=list)      # slot -> (shape, dtype)
    in_place: dict = field(default_factory=dict)   # update node -> param it overwrites
    copy_back: dict = field(default_factory=dict)  # update node -> param copied into last

    def sharing(self, slot: int) -> list:
        """The nodes that use one slot, in turn."""
        return [n for n, s in self.slot_of.items() if s == slot]


def _field(record, key):
    return record[key] if isinstance(record, dict) else getattr(record, key)


def single_node_records(graph) -> list:
    """The fallback grouping for an unfused graph: one kernel per compute node; a
    reduction over the last axis of a matrix (or batch of them) is a rows kernel."""
    records = []
    for n in graph.topo():
        a = graph.attrs(n)
        if a["op"] in VIEWS or a["op"] in LEAVES:
            continue
        kind = {"map": "elementwise", "matmul": "matmul", "reduce": "reduce"}[a["op"]]
        if a["op"] == "reduce":
            rank = len(graph.attrs(graph.args(n)[0])["shape"])
            if rank >= 2 and tuple(a["axes"]) == (rank - 1,):
                kind = "rows"
        records.append({"name": f"{n}_kernel", "kind": kind, "nodes": [n]})
    return records


def kernels_of(graph, outputs, updates: dict) -> list:
    """The schedule: graph.nx.graph['kernels'] if the graph is fused, else one kernel per
    node. Inputs and outputs are recomputed from the graph (the records may omit some)."""
    records = graph.nx.graph.get("kernels")
    if records is None:
        records = single_node_records(graph)
    kept = set(outputs) | set(updates.values())
    kept |= {base_of(graph, n) for n in kept}
    kernels, seen = [], set()
    for rec in records:
        nodes = list(_field(rec, "nodes"))
        kind = _field(rec, "kind")
        if kind not in KINDS:
            raise NotImplementedError(f"kernel records: unknown kernel kind {kind!r}")
        members = set(nodes)
        inputs = list(dict.fromkeys(x for n in nodes for x in graph.args(n) if x not in members))
        stored = [n for n in nodes if n in kept or
                  any(r not in members for r in readers(graph, n))]
        kernels.append(Kernel(str(_field(rec, "name")), kind, nodes, inputs, stored))
        seen |= members
    missing = [n for n in graph.topo() if n not in seen
               and graph.attrs(n)["op"] not in VIEWS + LEAVES]
    if missing:
        raise NotImplementedError(f"kernel records: nodes in no kernel: {', '.join(missing)}")
    return kernels


def kernel_counts(kernels) -> str:
    """'13 kernels (5 matmul, 5 elementwise, 3 reduce)': how the printers' headers and
    `graphc show` count a schedule."""
    kinds = [k.kind for k in kernels]
    counts = ", ".join(f"{kinds.count(x)} {x}" for x in dict.fromkeys(kinds))
    return f"{len(kinds)} kernels ({counts or 'none'})"


def readers(graph, node) -> list:
    """Nodes that read `node`'s storage, looking through views."""
    out, stack = [], [node]
    while stack:
        for u in graph.users(stack.pop()):
            if graph.attrs(u)["op"] in VIEWS:
                stack.append(u)
            else:
                out.append(u)
    return out


def epilogue_of(graph, kernel) -> set:
    """Members that read a reduction of the kernel (directly, through members or views)."""
    after: set = set()
    for n in kernel.nodes:
        if graph.attrs(n)["op"] == "reduce" or any(
                base_of(graph, x) in after for x in graph.args(n)):
            after.add(n)
    return {n for n in after if graph.attrs(n)["op"] != "reduce"}


def _safe_in_place(graph, kernels, where, upd, param) -> bool:
    """An update may write its parameter's storage if every other reader of the old value
    runs in an earlier kernel, or in the same kernel as a plain load of the element being
    written (elementwise members, reduce epilogues: each program reads an element before
    it writes it, and no other program reads it; a matmul's epilogue alike)."""
    k = where[upd]
    kernel = kernels[k]
    a, p = graph.attrs(upd), graph.attrs(param)
    if a["op"] != "map" or a["shape"] != p["shape"] or a["dtype"] != p["dtype"]:
        return False
    if kernel.kind == "reduce":
        same_element = epilogue_of(graph, kernel)
    elif kernel.kind == "elementwise":
        same_element = set(kernel.nodes)
    elif kernel.kind == "matmul":   # its epilogue maps read and write the tile they own
        same_element = {n for n in kernel.nodes if graph.attrs(n)["op"] == "map"}
    else:
        return False
    through_views = {r for v in graph.users(param) if graph.attrs(v)["op"] in VIEWS
                     for r in readers(graph, v)}
    for r in readers(graph, param):
        if r not in where or where[r] > k:
            return False
        if where[r] == k and (r in through_views or r not in same_element
                              or graph.attrs(r)["shape"] != a["shape"]):
            return False   # a transposed or broadcast read may see an element written
    return upd in same_element


def plan_storage(graph, kernels, outputs, updates: dict, in_place_hint=None) -> Storage:
    """Buffer slots for stored values, reused between values of one shape and dtype once
    their last reader has run; a kernel never writes a slot it also reads."""
    where = {n: i for i, k in enumerate(kernels) for n in k.nodes}
    st = Storage()
    hint = in_place_hint if in_place_hint is not None else {u: p for p, u in updates.items()}
    for param, upd in updates.items():
        if upd in where and upd in hint and _safe_in_place(graph, kernels, where, upd, param):
            st.in_place[upd] = param
        else:
            st.copy_back[upd] = param
    end = len(kernels)
    kept = {base_of(graph, n) for n in list(outputs) + list(st.copy_back)}
    last = {}
    for k in kernels:
        for n in k.outputs:
            uses = [where[r] for r in readers(graph, n) if r in where]
            last[n] = end if n in kept else max(uses, default=where[n])
    free: dict = {}
    for i, k in enumerate(kernels):
        for n in k.outputs:
            if n in st.in_place:
                continue
            key = (graph.attrs(n)["shape"], graph.attrs(n)["dtype"])
            pool = free.get(key)
            st.slot_of[n] = pool.pop() if pool else len(st.slots)
            if st.slot_of[n] == len(st.slots):
                st.slots.append(key)
        for n in [n for n, at in last.items() if at == i and n in st.slot_of]:
            s = st.slot_of[n]
            free.setdefault(st.slots[s], []).append(s)
    return st


def fused_expressions(graph, nodes) -> dict:
    """Each member as the text of one expression of the kernel's inputs: producers
    substituted into consumers (fusion is substitution); reductions appear as sum(..).
    A producer goes in as a symbol named by its text, so SymPy never re-evaluates a
    composed Piecewise (that can call its inequality solvers, slowly or not at all)."""
    out: dict = {}

    def operand(x) -> sympy.Symbol:
        if x not in out:
            return sympy.Symbol(x)
        e = out[x]
        return sympy.Symbol(str(e) if e.is_Atom or e.is_Function else f"({e})")

    for n in nodes:
        a = graph.attrs(n)
        if a["op"] == "map":
            out[n] = a["expr"].xreplace({exprs.arg(i): operand(x)
                                         for i, x in enumerate(graph.args(n))})
        elif a["op"] == "reduce":
            out[n] = sympy.Function(a["fn"])(sympy.Symbol(str(operand(graph.args(n)[0]))))
        else:
            out[n] = sympy.Symbol(describe(graph, n))
    return {n: str(e) for n, e in out.items()}
