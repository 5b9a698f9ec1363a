"""The IR: a `Graph` over a networkx.MultiDiGraph (one node per primitive, edge attr `arg`
= argument position) and `Node`, the handle the builder API hands out."""
from __future__ import annotations

import keyword
import zlib
from typing import Callable, Sequence

import networkx as nx
import numpy as np
import sympy

from . import exprs, ops, shapes
from .errors import DtypeError, DuplicateNameError, GraphError, OpError, ShapeError

Operand = "Node | str | float | int"


class Node:
    """A handle on one node of a graph; arithmetic on handles adds `map` nodes."""

    __array_priority__ = 1000  # so numpy scalars on the left defer to Node's operators

    def __init__(self, graph: "Graph", name: str):
        self.graph, self.name = graph, name

    @property
    def op(self) -> str:
        return self.graph.attrs(self.name)["op"]

    @property
    def shape(self) -> tuple:
        return self.graph.attrs(self.name)["shape"]

    @property
    def dtype(self) -> str:
        return self.graph.attrs(self.name)["dtype"]

    @property
    def T(self) -> "Node":
        rank = len(self.shape)
        return self.graph.permute(self, tuple(range(rank - 2)) + (rank - 1, rank - 2)
                                  if rank >= 2 else (0,))

    def __repr__(self):
        return f"<Node {self.name}: {self.op} {shapes.fmt(self.shape)} {self.dtype}>"

    def __eq__(self, other):
        return isinstance(other, Node) and other.graph is self.graph and other.name == self.name

    def __hash__(self):
        return hash((id(self.graph), self.name))

    def _apply(self, fn, *others, hint=None):
        return self.graph.apply(fn, [self, *others], hint=hint)

    def __add__(self, o): return self._apply(lambda a, b: a + b, o, hint="add")
    def __radd__(self, o): return self.graph.apply(lambda a, b: a + b, [o, self], hint="add")
    def __sub__(self, o): return self._apply(lambda a, b: a - b, o, hint="sub")
    def __rsub__(self, o): return self.graph.apply(lambda a, b: a - b, [o, self], hint="sub")
    def __mul__(self, o): return self._apply(lambda a, b: a * b, o, hint="mul")
    def __rmul__(self, o): return self.graph.apply(lambda a, b: a * b, [o, self], hint="mul")
    def __truediv__(self, o): return self._apply(lambda a, b: a / b, o, hint="div")
    def __rtruediv__(self, o): return self.graph.apply(lambda a, b: a / b, [o, self], hint="div")
    def __pow__(self, o): return self._apply(lambda a, b: a ** b, o, hint="pow")
    def __rpow__(self, o): return self.graph.apply(lambda a, b: a ** b, [o, self], hint="pow")
    def __neg__(self): return self._apply(lambda a: -a, hint="neg")
    def __matmul__(self, o): return self.graph.matmul(self, o)
    def __rmatmul__(self, o): return self.graph.matmul(o, self)


class Graph:
    """A DAG of primitives. Nodes are added through methods that check shapes at once."""

    def __init__(self, name: str = "graph", dtype: str = "float32", seed: int = 0):
        self.name = name
        self.dtype = shapes.check_dtype(dtype, f"graph {name!r}")
        self.seed = seed
        self.nx = nx.MultiDiGraph(name=name)
        self.dims: dict[str, sympy.Symbol] = {}
        self._count = 0
        self._serial = 0
        self._topo: list | None = None

    # ---- reading ------------------------------------------------------------------------
    def attrs(self, name: str) -> dict:
        try:
            return self.nx.nodes[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node {name!r}") from None

    def args(self, name: str) -> list:
        # read networkx's adjacency dicts directly: the edge views cost 4x more, and
        # passes call this for every node many times
        try:
            preds = self.nx._pred[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node {name!r}") from None
        found = [(data["arg"], src) for src, keyed in preds.items() for data in keyed.values()]
        found.sort()
        return [src for _, src in found]

    def users(self, name: str) -> list:
        try:
            return sorted(self.nx._succ[name], key=self._index)
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node {name!r}") from None

    def node(self, name: str) -> Node:
        self.attrs(name)
        return Node(self, name)

    def __getitem__(self, name: str) -> Node:
        return self.node(name)

    def __contains__(self, name) -> bool:
        return name in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def _index(self, name):
        return self.nx.nodes[name]["index"]

    def topo(self) -> list:
        """Node names in a deterministic topological order (ties by insertion)."""
        if self._topo is None:
            self._topo = list(nx.lexicographical_topological_sort(self.nx, key=self._index))
        return self._topo

    def nodes_of(self, op: str) -> list:
        return [n for n in self.topo() if self.attrs(n)["op"] == op]

    def params(self, trainable_only: bool = False) -> list:
        return [n for n in self.nodes_of("param")
                if self.attrs(n).get("trainable", True) or not trainable_only]

    # ---- adding -------------------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        while True:
            name = f"{hint}_{self._count}"
            self._count += 1
            if name not in self.nx:
                return name

    def fresh(self, stem: str) -> str:
        """`stem` if no node has that name yet, else `stem_1`, `stem_2`, ..."""
        if stem not in self.nx:
            return stem
        k = 1
        while f"{stem}_{k}" in self.nx:
            k += 1
        return f"{stem}_{k}"

    def _ref(self, x, where: str) -> str:
        if isinstance(x, Node):
            if x.graph is not self:
                raise GraphError(f"{where}: argument {x.name!r} belongs to graph "
                                 f"{x.graph.name!r}, not {self.name!r}")
            return x.name
        if isinstance(x, str) and x in self.nx:
            return x
        raise GraphError(f"{where}: argument {x!r} is not a node of graph {self.name!r}")

    def add(self, op: str, args: Sequence = (), name: str | None = None,
            hint: str | None = None, **attrs) -> Node:
        """Add one primitive node; its shape and dtype are inferred and checked here."""
        if name is not None and name in self.nx:
            raise DuplicateNameError(f"graph {self.name!r} already has a node named {name!r} "
                                     f"({self.attrs(name)['op']})")
        label = name or f"<new {op}>"
        prim = ops.primitive(op, f"node {label!r}")
        node_name = name or self.unique_name(hint or op)
        where = f"node {node_name!r} ({op})"
        if not isinstance(args, (list, tuple)):
            raise OpError(f"{where}: args must be a list, got {type(args).__name__}")
        refs = [self._ref(a, where) for a in args]
        if prim.arity is not None and len(refs) != prim.arity:
            raise OpError(f"{where}: takes {prim.arity} argument(s), got {len(refs)}")
        arg_info = [(self.attrs(r)["shape"], self.attrs(r)["dtype"]) for r in refs]
        shape, dtype = prim.infer(where, arg_info, {**attrs, "dims": set(self.dims.values())})
        attrs.update(op=op, shape=shape, dtype=dtype, index=self._serial)
        self._serial += 1
        self.nx.add_node(node_name, **attrs)
        for i, r in enumerate(refs):
            self.nx.add_edge(r, node_name, arg=i)
        self._topo = None
        return Node(self, node_name)

    def _note_dims(self, shape):
        for d in shape:
            for s in sympy.sympify(d).free_symbols:
                self.dims[s.name] = s

    def input(self, name: str, shape, dtype: str | None = None) -> Node:
        """A tensor fed at every call; dims may be symbols (gc.sym('N'))."""
        shape = shapes.as_shape(shape, f"input {name!r}")
        self._note_dims(shape)
        dtype = shapes.check_dtype(dtype or self.dtype, f"input {name!r}")
        return self.add("input", [], name=name, shape=shape, dtype=dtype)

    def param(self, name: str, shape, init=None, dtype: str | None = None,
              trainable: bool = True) -> Node:
        """A trained tensor. `init`: an array, an initializer `(shape, rng) -> array`, or
        None for zeros; initializers draw from a generator seeded by (graph seed, name)."""
        where = f"param {name!r}"
        shape = shapes.as_shape(shape, where)
        if not all(isinstance(d, int) for d in shape):
            raise ShapeError(f"{where}: parameter shapes must be concrete, got {shapes.fmt(shape)}")
        dtype = shapes.check_dtype(dtype or self.dtype, where)
        if not shapes.is_float(dtype):
            raise DtypeError(f"{where}: parameters must be floating point, got {dtype}")
        value = self._init_value(init, shape, name, where)
        if value.shape != shape:
            raise ShapeError(f"{where}: init has shape {shapes.fmt(value.shape)}, "
                             f"param is {shapes.fmt(shape)}")
        return self.add("param", [], name=name, shape=shape, dtype=dtype,
                        value=value.astype(dtype), trainable=trainable)

    def _init_value(self, init, shape, name, where):
        if init is None:
            return np.zeros(shape)
        if callable(init):
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            return np.asarray(init(shape, rng))
        try:
            return np.asarray(init, dtype=float)
        except (TypeError, ValueError) as e:
            raise GraphError(f"{where}: cannot use {init!r} as initial value: {e}") from None

    def const(self, value, name: str | None = None, dtype: str | None = None) -> Node:
        """A fixed tensor (float32 unless given, int64 for integer values)."""
        value = np.asarray(value)
        if dtype is None:
            dtype = "int64" if value.dtype.kind in "iub" else self.dtype
        dtype = shapes.check_dtype(dtype, f"const {name or value!r}")
        return self.add("const", [], name=name, value=value.astype(dtype), dtype=dtype)

    def iota(self, shape, axis: int = 0, dtype: str = "int64", name: str | None = None) -> Node:
        """Each element holds its index along `axis`."""
        shape = shapes.as_shape(shape, f"iota {name or ''}")
        return self.add("iota", [], name=name, shape=shape, axis=axis,
                        dtype=shapes.check_dtype(dtype, "iota"))

    def rand(self, shape, seed: int | None = None, dtype: str | None = None,
             name: str | None = None) -> Node:
        """Uniform numbers in [0, 1), new at every call of a compiled step: drawn from a
        counter-based generator keyed by (seed, step counter), so a seed gives the same
        sequence of draws on a given backend. The default seed derives from the graph's
        seed and the node's name."""
        shape = shapes.as_shape(shape, f"rand {name or ''}")
        self._note_dims(shape)
        name = name or self.unique_name("rand")
        if seed is None:
            seed = zlib.crc32(f"{self.seed}/{name}".encode()) & 0x7FFFFFFF
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 31:
            raise GraphError(f"rand {name!r}: seed must be an int in [0, 2**31), got {seed!r}")
        return self.add("rand", [self.step_counter()], name=name, shape=shape, seed=int(seed),
                        dtype=shapes.check_dtype(dtype or self.dtype, f"rand {name!r}"))

    def step_counter(self) -> Node:
        """The graph's step counter: a float64 state param that rand nodes key their draws
        on; compiled steps and functions add 1 to it after each call."""
        for n in self.nodes_of("param"):
            if self.attrs(n).get("step_counter"):
                return Node(self, n)
        node = self.param(self.fresh("rng_step"), (), dtype="float64", trainable=False)
        self.attrs(node.name)["step_counter"] = True
        return node

    def map(self, expr, args: Sequence, name: str | None = None, dtype: str | None = None,
            hint: str | None = None) -> Node:
        """Elementwise: `expr` (SymPy or text) over argument symbols x0, x1, ..."""
        where = f"node {name or '<new map>'!r} (map)"
        if isinstance(expr, str):
            expr = exprs.parse(expr, where, self.dims)
        expr = sympy.sympify(expr)
        if dtype is not None:
            dtype = shapes.check_dtype(dtype, where)
        return self.add("map", list(args), name=name, expr=expr, dtype=dtype,
                        hint=hint or map_hint(expr))

    def apply(self, fn: Callable, operands: Sequence, name: str | None = None,
              hint: str | None = None, dtype: str | None = None) -> Node:
        """A map from a Python function of SymPy symbols; numbers are inlined as literals."""
        nodes, symbols = [], []
        for o in operands:
            if isinstance(o, (Node, str)):
                nodes.append(o)
                symbols.append(exprs.arg(len(nodes) - 1))
            elif isinstance(o, (int, float, np.integer, np.floating, sympy.Expr)):
                symbols.append(sympy.sympify(o))
            else:
                raise GraphError(f"cannot use {type(o).__name__} {o!r} as an operand; "
                                 "wrap arrays with graph.const(...)")
        return self.map(fn(*symbols), nodes, name=name, hint=hint, dtype=dtype)

    def reduce(self, x, fn: str, axis=None, keepdims: bool = False, name=None) -> Node:
        where = f"node {name or '<new reduce>'!r} (reduce)"
        rank = len(self.attrs(self._ref(x, where))["shape"])
        axes = shapes.normalize_axes(axis, rank, where)
        return self.add("reduce", [x], name=name, hint=fn, fn=fn, axes=axes,
                        keepdims=bool(keepdims))

    def matmul(self, a, b, name=None) -> Node:
        return self.add("matmul", [a, b], name=name)

    def permute(self, x, perm, name=None) -> Node:
        return self.add("permute", [x], name=name, perm=tuple(int(p) for p in perm))

    def reshape(self, x, shape, name=None) -> Node:
        where = f"node {name or '<new reshape>'!r} (reshape)"
        src = self.attrs(self._ref(x, where))["shape"]
        return self.add("reshape", [x], name=name, shape=_resolve_minus_one(shape, src, where))

    def broadcast(self, x, shape, name=None) -> Node:
        shape = shapes.as_shape(shape, f"node {name or '<new broadcast>'!r} (broadcast)")
        return self.add("broadcast", [x], name=name, shape=shape)

    # ---- rewriting (for passes, on their own copy) ----------------------------------
    def replace_uses(self, old: str, new: str) -> None:
        """Every argument edge that reads `old` reads `new` instead, at the same position.
        `new` must not depend on `old` (the caller keeps the graph acyclic)."""
        for n in (old, new):
            self.attrs(n)  # a GraphError naming a missing node
        if old == new:
            return
        for _, dst, key, data in list(self.nx.out_edges(old, keys=True, data=True)):
            self.nx.remove_edge(old, dst, key)
            self.nx.add_edge(new, dst, **data)
        self._topo = None

    def truncate_args(self, name: str, count: int) -> None:
        """Drop a node's arguments at positions >= count (the caller rewrites the node's
        attributes to match, e.g. a map that reads only its first argument)."""
        for src, _, key, pos in list(self.nx.in_edges(name, keys=True, data="arg")):
            if pos >= count:
                self.nx.remove_edge(src, name, key)
        self._topo = None

    def remove(self, name: str) -> None:
        """Delete a node that no other node reads, with its argument edges."""
        self.attrs(name)
        if self.nx.out_degree(name):
            raise GraphError(f"cannot remove node {name!r}: it is read by "
                             f"{', '.join(self.users(name))}")
        self.nx.remove_node(name)
        self._topo = None

    def grow_into(self, grown: "Graph") -> None:
        """Become `grown`: a copy of this graph with nodes added (gc.grad's gradients), so
        the user's handles stay valid and the new nodes get handles too."""
        missing = [n for n in self.nx.nodes if n not in grown.nx]
        if missing:
            raise GraphError(f"graph {self.name!r}: {grown.name!r} is not this graph grown: "
                             f"it lacks {', '.join(missing[:5])}")
        self.nx, self.dims = grown.nx.copy(), dict(grown.dims)
        self._count, self._serial, self._topo = grown._count, grown._serial, None

    # ---- copying, converting, printing ----------------------------------------------
    def copy(self) -> "Graph":
        g = Graph(self.name, self.dtype, self.seed)
        g.nx = self.nx.copy()
        g.dims, g._count, g._serial = dict(self.dims), self._count, self._serial
        return g

    @classmethod
    def from_networkx(cls, G: nx.DiGraph, name: str | None = None, dtype="float32") -> "Graph":
        """Validate and adopt a hand-written DAG (see graphc.convert)."""
        from .convert import from_networkx
        return from_networkx(G, name=name, dtype=dtype)

    def _repr_svg_(self) -> str | None:
        """Jupyter: the graph as a picture (Graphviz, or matplotlib without `dot`); a graph
        of more than 300 nodes shows as text instead (a picture would be unreadable)."""
        if len(self) > 300:
            return None
        from .render import svg
        return svg(self)

    def __str__(self) -> str:
        from .printing import format_graph
        return format_graph(self)


def map_hint(expr: sympy.Expr) -> str:
    """A readable name stem for a map node: its outermost function (add, mul, tanh, ...)."""
    name = type(expr).__name__.lower()
    return {"piecewise": "where", "integer": "const", "float": "const", "one": "const",
            "zero": "const", "negativeone": "const", "half": "const", "rational": "const",
            "symbol": "copy"}.get(name, name)


def _resolve_minus_one(shape, src, where):
    shape = list(shape) if isinstance(shape, (tuple, list)) else [shape]
    if sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise ShapeError(f"{where}: at most one -1 in reshape target {tuple(shape)}")
    if -1 in shape:
        known = shapes.size([d for d in shape if not (isinstance(d, int) and d == -1)])
        missing = sympy.cancel(sympy.sympify(shapes.size(src)) / known)
        if not (missing.is_integer or missing.is_Integer):
            raise ShapeError(f"{where}: cannot reshape {shapes.fmt(src)} to {tuple(shape)}")
        shape[shape.index(-1)] = missing
    return shapes.as_shape(tuple(shape), where)


def is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)
