"""Memory planning: Graph + schedule -> which buffer slot each node writes.

Liveness over the schedule; a node's slot is freed after its last reader (views extend
their base's life) and reused by a later node of the same shape and dtype. Parameter
updates write straight into the parameter's storage when no later node reads the old value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphc.graph import Graph
from graphc.ops import OWN_STORAGE, VIEWS


@dataclass
class MemoryPlan:
    order: list                                 # the schedule
    slot_of: dict = field(default_factory=dict)   # node -> slot index
    slots: list = field(default_factory=list)     # slot -> (shape, dtype)
    in_place: dict = field(default_factory=dict)  # update node -> param it overwrites
    copy_back: dict = field(default_factory=dict)  # update node -> param copied into at the end

    def sharing(self, slot: int) -> list:
        return [n for n, s in self.slot_of.items() if s == slot]

    def by_slot(self) -> list:
        """sharing(k) for every slot k, in one pass (not one scan per slot)."""
        users: list = [[] for _ in self.slots]
        for n, s in self.slot_of.items():
            users[s].append(n)
        return users


def base_of(graph: Graph, node: str) -> str:
    """The node whose storage a view reads."""
    while graph.attrs(node)["op"] in VIEWS:
        node = graph.args(node)[0]
    return node


def schedule(graph: Graph, updates: dict) -> list:
    """Topological order with parameter updates last, so each reads the old values first."""
    last = set(updates.values())
    order = [n for n in graph.topo() if n not in last]
    return order + [n for n in graph.topo() if n in last]


def _last_uses(graph: Graph, order: list, keep: set) -> dict:
    pos = {n: i for i, n in enumerate(order)}
    last = {}
    for n in order:
        users = graph.users(n)
        last[n] = max((pos[u] for u in users), default=pos[n])
        if n in keep:
            last[n] = len(order)
    for n in reversed(order):  # a view's readers keep its base alive
        if graph.attrs(n)["op"] in VIEWS:
            b = base_of(graph, n)
            last[b] = max(last[b], last[n])
    return last


def _writes_param_in_place(graph: Graph, order: list, upd: str, param: str) -> bool:
    a, p = graph.attrs(upd), graph.attrs(param)
    if a["op"] != "map" or a["shape"] != p["shape"] or a["dtype"] != p["dtype"]:
        return False
    pos = {n: i for i, n in enumerate(order)}
    readers, stack = [], [param]
    while stack:  # readers through views read the same storage
        for u in graph.users(stack.pop()):
            if graph.attrs(u)["op"] in VIEWS:
                stack.append(u)
            elif u != upd:
                readers.append(u)
    return all(pos[r] < pos[upd] for r in readers)


def plan(graph: Graph, outputs: list, updates: dict | None = None) -> MemoryPlan:
    """Assign slots; `updates` maps param -> node holding its new value."""
    updates = updates or {}
    order = schedule(graph, updates)
    keep = set(outputs) | set(updates.values())
    last = _last_uses(graph, order, keep)
    mp = MemoryPlan(order)
    for param, upd in updates.items():
        if _writes_param_in_place(graph, order, upd, param):
            mp.in_place[upd] = param
        else:
            mp.copy_back[upd] = param
    ending: dict = {}
    for n, at in last.items():
        ending.setdefault(at, []).append(n)
    free: dict = {}
    for i, n in enumerate(order):
        a = graph.attrs(n)
        if a["op"] not in VIEWS and a["op"] not in OWN_STORAGE and n not in mp.in_place:
            key = (a["shape"], a["dtype"])
            # the node's arguments are still live here, so it never gets their slot:
            # kernels write their output while still reading their inputs
            pool = free.get(key)
            mp.slot_of[n] = pool.pop() if pool else len(mp.slots)
            if mp.slot_of[n] == len(mp.slots):
                mp.slots.append(key)
        for dead in ending.get(i, ()):
            if dead in mp.slot_of:
                free.setdefault(mp.slots[mp.slot_of[dead]], []).append(mp.slot_of[dead])
    return mp
