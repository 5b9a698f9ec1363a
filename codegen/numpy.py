"""NumPy backend: a scheduled, memory-planned Graph -> the source of one Python module.

The module has `allocate(<dims>)`, which makes every buffer once for a set of concrete
dimensions, and `run(<inputs>, p, c, buf)`, which computes the graph with `out=` calls
into those buffers, so a step allocates no arrays after its first call. run()'s work is
lowered to statement records (codegen/statements.py) and printed once every destination,
scratch buffer and in-place update is decided on them.
"""
from __future__ import annotations

import sympy

from graphc import exprs, shapes
from graphc.ops import OWN_STORAGE
from graphc.printing import describe

from .common import (
    comment,
    held,
    identifiers,
    merged_lines,
    scalar_source,
    shape_source,
    temp_labels,
)
from .schedule import kernels_of
from .statements import Assign, Call, Comment, Copy, read_after_write, renamed, source
from .ufuncs import UfuncLowering

REDUCE_FN = {"sum": "np.add.reduce", "max": "np.maximum.reduce", "min": "np.minimum.reduce"}


class _Module:
    def __init__(self, graph, plan, dims):
        self.graph, self.plan = graph, plan
        # dims first and apart: a node may share a dimension's name (its own identifier)
        self.dims = identifiers(dims)
        self.names = identifiers(plan.order, taken=self.dims.values())
        self.scratch: dict = {}  # (shape, dtype, kind, depth) -> identifier
        self.helpers: set = set()  # graphc.functions' NumPy helpers called (erf): imported

    def ident(self, node: str) -> str:
        return self.names[node]

    def shape(self, shape) -> str:
        return shape_source(shape, self.dims)

    def scratch_for(self, shape, dtype):
        def name(kind: str, depth: int) -> str:
            key = (shape, "bool" if kind == "b" else dtype, depth)
            if key not in self.scratch:
                self.scratch[key] = f"tmp{sum(k[2] != 'ones' for k in self.scratch)}"
            return self.scratch[key]
        return name

    def ones(self, shape, dtype) -> str:
        """A buffer of ones: sums over one axis of a matrix run as BLAS products with it."""
        key = (tuple(shape), dtype, "ones")
        if key not in self.scratch:
            self.scratch[key] = f"ones{sum(k[2] == 'ones' for k in self.scratch)}"
        return self.scratch[key]


def generate(graph, outputs: list, updates: dict, plan, title: str = "") -> str:
    """Source text of the module computing `outputs` (and applying `updates`)."""
    dims = sorted(graph.dims)
    m = _Module(graph, plan, dims)
    m.outputs = set(outputs)  # an output broadcast must be a real view of its full shape
    body = []
    # the kernels the C and Triton backends launch, as comments: the same grouping
    first_of = {k.nodes[0]: k for k in kernels_of(graph, outputs, updates)}
    for node in plan.order:
        if node in first_of:
            k = first_of[node]
            body.append(Comment(f"---- kernel {k.name} ({k.kind}): "
                                f"{comment(', '.join(k.nodes), 100)}"))
            body += [Comment(line) for line in merged_lines(graph, k.nodes)]
        body += _node_block(m, node)
    for upd, param in plan.copy_back.items():
        body.append(Copy(m.ident(param), m.ident(upd), note=f"update {comment(param)}"))
    ret = ", ".join(m.ident(o) for o in outputs)
    # bound after lowering the body: its scratch buffers are known only now
    run_lines = source(_bindings(m) + body) + [f"return ({ret}{',' if len(outputs) == 1 else ''})"]
    return "\n".join(_header(graph, outputs, updates, title, m)
                     + _allocate(m) + ["", ""]
                     + [f"def run({', '.join(_run_args(m))}):",
                        '    """One evaluation; every array written is a buffer of `buf`."""']
                     + ["    " + line if line else "" for line in run_lines]) + "\n"


def _run_args(m) -> list:
    return [m.ident(n) for n in m.plan.order if m.graph.attrs(n)["op"] == "input"] + \
        ["p", "c", "buf"]


def _doc(text) -> str:
    """User text made safe inside the module docstring: escaped quotes cannot close it."""
    return comment(text).replace('"', '\\"')


def _header(graph, outputs, updates, title, m) -> list:
    def listing(nodes):
        return ", ".join(f"{_doc(n)} {shapes.fmt(graph.attrs(n)['shape'])} "
                         f"{graph.attrs(n)['dtype']}" for n in nodes) or "none"
    inputs = [n for n in m.plan.order if graph.attrs(n)["op"] == "input"]
    lines = [f'"""graphc: generated NumPy code for {_doc(title or graph.name)}.',
             "",
             f"Inputs:  {listing(inputs)}",
             f"Outputs: {listing(outputs)}"]
    if updates:
        lines.append(f"Updates: {', '.join(_doc(p) for p in updates)} (in place)")
    lines += ["Regenerate from the graph rather than editing this file.", '"""',
              "import numpy as np",
              *[f"from graphc.functions import {h}" for h in sorted(m.helpers)], "",
              f"DIMS = {tuple(m.dims)!r}",
              f"INPUTS = {tuple(inputs)!r}",
              f"OUTPUTS = {tuple(outputs)!r}", "", ""]
    return lines


def _allocate(m) -> list:
    lines = [f"def allocate({', '.join(m.dims.values())}):",
             '    """Every buffer of `run` for one set of dimensions (made once, reused)."""',
             "    return ["]
    sharing = m.plan.by_slot()
    for k, (shape, dtype) in enumerate(m.plan.slots):
        users = ", ".join(comment(n) for n in sharing[k])
        lines.append(f"        np.empty({m.shape(shape)}, np.{dtype}),  # {k}: {users}")
    base = len(m.plan.slots)
    for n in m.plan.order:
        if m.graph.attrs(n)["op"] == "iota":
            lines.append(f"        {_iota(m, n)},  # {base}: {comment(n)}")
            base += 1
    for (shape, dtype, tag), name in m.scratch.items():
        make = "ones" if tag == "ones" else "empty"
        lines.append(f"        np.{make}({m.shape(shape)}, np.{dtype}),  # {base}: {name}")
        base += 1
    return lines + ["    ]"]


def _iota(m, n) -> str:
    a = m.graph.attrs(n)
    shape = a["shape"]
    ramp = [1] * len(shape)
    ramp[a["axis"]] = shape[a["axis"]]
    return (f"np.broadcast_to(np.arange({scalar_source(shape[a['axis']], m.dims)}, "
            f"dtype=np.{a['dtype']}).reshape({m.shape(ramp)}), {m.shape(shape)})")


def _bindings(m) -> list:
    """Locals for dims, params, consts and buffers (scratch last), so statements read with
    node names."""
    g, lines, bound = m.graph, [], set()
    for n in m.plan.order:
        a = g.attrs(n)
        if a["op"] == "input":
            for axis, d in enumerate(a["shape"]):
                for s in sorted(sympy.sympify(d).free_symbols, key=str):
                    if s.name not in bound and d == s:
                        lines.append(Assign(m.dims[s.name], f"{m.ident(n)}.shape[{axis}]"))
                        bound.add(s.name)
        elif a["op"] == "param":
            lines.append(Assign(m.ident(n), f"p[{n!r}]"))
        elif a["op"] == "const":
            lines.append(Assign(m.ident(n), f"c[{n!r}]"))
    base = len(m.plan.slots)
    iotas = [n for n in m.plan.order if g.attrs(n)["op"] == "iota"]
    lines += [Assign(m.ident(n), f"buf[{base + k}]") for k, n in enumerate(iotas)]
    lines += [Assign(m.ident(n), f"buf[{m.plan.slot_of[n]}]")
              for n in m.plan.order if n in m.plan.slot_of]
    base += len(iotas)
    return lines + [Assign(name, f"buf[{base + k}]") for k, name in enumerate(m.scratch.values())]


def _node_block(m, node) -> list:
    g = m.graph
    a = g.attrs(node)
    op, me = a["op"], m.ident(node)
    args = [m.ident(x) for x in g.args(node)]
    head = Comment(f"{comment(node)} = {comment(describe(g, node), 120)}")
    if op in OWN_STORAGE:   # the host hands these in
        return []
    if op == "permute":
        return [Assign(me, f"{args[0]}.transpose({a['perm']!r})", comment(node), (args[0],))]
    if op == "reshape":
        return [Assign(me, f"{args[0]}.reshape({m.shape(a['shape'])})", comment(node),
                       (args[0],))]
    if op == "broadcast" and node not in m.outputs and \
            all(g.attrs(u)["op"] == "map" for u in g.users(node)):
        # maps broadcast their arguments themselves: no view needed
        return [Assign(me, args[0], f"{comment(node)}: broadcast by its users", (args[0],))]
    if op == "broadcast":
        return [Assign(me, f"np.broadcast_to({args[0]}, {m.shape(a['shape'])})", comment(node),
                       (args[0],))]
    if op == "matmul":
        return [head, Call("np.matmul", tuple(args), me)]
    if op == "rand":  # Philox keyed by (seed, step): the same draws for the same step
        draw = f"np.random.Generator(np.random.Philox(key=({a['seed']} << 32) + int({args[0]})))"
        return [head, Call(f"{draw}.random", (), me, (("dtype", f"np.{a['dtype']}"),))]
    if op == "reduce" and _sums_a_matrix_axis(g, node):
        return [head, _sum_by_matmul(m, node, args[0])]
    if op == "reduce":
        kw = [("axis", repr(a["axes"]))] + [("keepdims", "True")] * bool(a["keepdims"])
        src = g.attrs(g.args(node)[0])
        if a["fn"] != "sum" and shapes.is_float(src["dtype"]) and any(
                not isinstance(src["shape"][k], int) for k in a["axes"]):
            # a symbolic axis may be 0 at run time: the identity, as the Triton kernels give
            kw.append(("initial", "-np.inf" if a["fn"] == "max" else "np.inf"))
        return [head, Call(REDUCE_FN[a["fn"]], (args[0],), me, tuple(kw))]
    if op == "map":
        return [head] + _map_statements(m, node, args)
    raise NotImplementedError(f"numpy backend: no code for op {op!r} (node {node!r})")


def _sums_a_matrix_axis(g, node) -> bool:
    a = g.attrs(node)
    src = g.attrs(g.args(node)[0])
    return a["fn"] == "sum" and len(src["shape"]) == 2 and len(a["axes"]) == 1 and \
        src["dtype"] in ("float32", "float64")


def _sum_by_matmul(m, node, x) -> Call:
    """sum over axis 1 = x @ ones(C), over axis 0 = ones(N) @ x: BLAS beats a strided
    reduction on small matrices, and the result is the same sum."""
    a = m.graph.attrs(node)
    rows, cols = m.graph.attrs(m.graph.args(node)[0])["shape"]
    if a["axes"] == (1,):
        ones = m.ones((cols, 1) if a["keepdims"] else (cols,), a["dtype"])
        return Call("np.matmul", (x, ones), m.ident(node))
    ones = m.ones((1, rows) if a["keepdims"] else (rows,), a["dtype"])
    return Call("np.matmul", (ones, x), m.ident(node))


CSE_MIN_OPS = 8  # smaller expressions rarely repeat a subexpression (and cse costs time)


def _lower(operands: dict, m, scratch, expr, dest: str, provenance: tuple = ({}, {})) -> list:
    """Ufunc statements computing expr into dest; a subexpression the expression repeats
    (sigmoid(x) three times in a chain's derivative) goes once into a scratch buffer, its
    comment naming the merged node it holds (provenance: common.temp_labels' readable and
    values)."""
    shared: list = []
    if sympy.count_ops(expr) > CSE_MIN_OPS:
        first = len(operands)   # cse symbols continue the argument symbols x0, x1, ...
        names = (exprs.arg(first + k) for k in range(10 ** 6))
        shared, (expr,) = sympy.cse(expr, symbols=names)
        shared, expr = _numeric_only(shared, expr)
    operands, lines = dict(operands), []
    labels = temp_labels(shared, *provenance)
    for k, (sym, sub) in enumerate(shared):
        buffer = scratch("f", 100 + k)
        readable = sub.xreplace({s: sympy.Symbol(n) for s, n in operands.items()})
        label = f"{comment(labels[sym])} = " if sym in labels else ""
        lines.append(Comment(f"{buffer} = {label}{comment(str(readable), 100)}  "
                             "(used more than once)"))
        lines += UfuncLowering(operands, m.dims, scratch, m.helpers).lower(sub, buffer)
        operands[sym] = buffer
    return lines + UfuncLowering(operands, m.dims, scratch, m.helpers).lower(expr, dest)


def _numeric_only(shared: list, expr) -> tuple:
    """Put conditions (x > 0) back where cse took them out: scratch buffers hold numbers,
    and a Piecewise lowers its conditions itself."""
    undo: dict = {}
    kept = []
    for sym, sub in shared:
        sub = sub.xreplace(undo)
        if exprs.is_condition(sub):
            undo[sym] = sub
        else:
            kept.append((sym, sub))
    return kept, expr.xreplace(undo)


def _map_statements(m, node, args) -> list:
    a = m.graph.attrs(node)
    operands = {exprs.arg(i): name for i, name in enumerate(args)}
    scratch = m.scratch_for(a["shape"], a["dtype"])
    me = m.ident(node)
    names = {exprs.arg(i): sympy.Symbol(x) for i, x in enumerate(m.graph.args(node))}
    statements = _lower(operands, m, scratch, a["expr"], me, (names, held(m.graph, [node])))
    param = m.plan.in_place.get(node)
    if param is None:
        return statements
    return [Comment(f"update {comment(param)} in place")] + \
        in_place(statements, me, m.ident(param), lambda: scratch("f", 99))


def in_place(statements: list, value: str, storage: str, scratch) -> list:
    """Statements computing `value` made to write it into `storage` (a parameter updated
    in place): directly when no statement reads the old `storage` after the first write,
    else into a scratch buffer (`scratch()` names it) copied over at the end. Later nodes
    (momentum: the weight update reads the new velocity) read it as `value`, bound last."""
    if read_after_write(statements, value, storage):
        tmp = scratch()
        statements = renamed(statements, value, tmp) + [Copy(storage, tmp)]
    else:
        statements = renamed(statements, value, storage)
    return statements + [Assign(value, storage, "new value, held in place", (storage,))]
