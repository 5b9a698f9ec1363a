"""The C kernel templates' shared machinery (pointer parameters, strided loads, member
statements, loop nests, the parallel pragma) and the elementwise template: maps of one
shape, the axes every access walks contiguously collapsed into one loop (a same-shape chain
is a single `parallel for simd` loop). Rows and reduce templates: rows.py, reduce.py.
Max and min fold through NaN-keeping reductions (`nanmax`, `nanmin`) declared in the
module; sums through `reduction(+:...)`, which lets the loop vectorise without fast-math.
"""
from __future__ import annotations

import sympy

from graphc import exprs, shapes
from graphc.printing import describe

from ..common import comment as python_comment, held, merged_lines, temp_labels
from ..schedule import VIEWS, fused_expressions
from .layout import broadcast, contiguous, loop_groups, place, storage_strides
from .printer import C_TYPE, print_expr


def comment(text, limit: int = 140) -> str:
    """Text made safe to sit after '//': common.comment's escaping, and no backslash (one
    at the end of a line would continue the comment onto the next) or trigraph."""
    return python_comment(text, limit).replace("\\", "%5C").replace("??", "?%3F")


NEUTRAL = {("sum", "f"): "0", ("max", "f"): "-INFINITY", ("min", "f"): "INFINITY",
           ("sum", "i"): "0", ("max", "i"): "INT64_MIN", ("min", "i"): "INT64_MAX"}
# elements of work below which a kernel runs on one thread: from 8,192 two threads take at
# most 0.71 of one thread's time on the bench chain, at 4,096 0.76 (9 µs saved); measured
# by graphc/bench/c_threads.py, threads warm (a call after idle first wakes them)
MIN_PARALLEL_WORK = 8192


def reduction_clause(fn: str, dtype: str) -> str:
    """The OpenMP reduction identifier: + for sums, the module's NaN-keeping max/min."""
    if fn == "sum":
        return "+"
    return f"{'nan' if shapes.is_float(dtype) else 'int'}{fn}_{C_TYPE[dtype].split('_')[0]}"


def fold(fn: str, dtype: str, acc: str, value: str) -> str:
    """acc folded with one more value."""
    if fn == "sum":
        return f"{acc} += {value};"
    helper = {"float32": "graphc_{}f", "float64": "graphc_{}", "int64": "graphc_{}_i64"}
    return f"{acc} = {helper[dtype].format(fn)}({acc}, {value});"


class CKernel:
    """Shared machinery: pointer parameters, offsets over the loop groups, loads and member
    statements (one C statement per node, its graph node and expression in a comment)."""

    kind = ""

    def __init__(self, ctx, kernel):
        self.ctx, self.kernel, self.graph = ctx, kernel, ctx.graph
        self.ptrs: dict = {}        # storage identifier -> (C declaration, host expression)
        self.dims_used: set = set()
        self.values: dict = {}      # member -> C local
        self.loaded: dict = {}      # (node, scope) -> C local
        self.var: dict = {}         # domain axis -> (loop variable, stride of the group)
        self.domain: tuple = ()
        self.shared: dict = {}      # plan_shared's temporaries, for one loop body

    # ---- names, shapes, dims -------------------------------------------------------------
    def ident(self, node) -> str:
        return self.ctx.names[node]

    def shape(self, node) -> tuple:
        return tuple(self.graph.attrs(node)["shape"])

    def dtype(self, node) -> str:
        return self.graph.attrs(node)["dtype"]

    def ctype(self, node) -> str:
        return C_TYPE[self.dtype(node)]

    def base(self, node) -> str:
        while self.graph.attrs(node)["op"] in VIEWS:
            node = self.graph.args(node)[0]
        return node

    def scalar(self, expr) -> str:
        """A dimension expression as int64 C source; notes the dims it reads."""
        expr = sympy.sympify(expr)
        self.dims_used |= {s.name for s in expr.free_symbols}
        return self.ctx.scalar(expr)

    # ---- index space -------------------------------------------------------------------
    def embed(self, shape) -> tuple:
        """The domain axes a value of `shape` (a member's) lies along (per template)."""
        return tuple(range(len(shape)))

    def strides(self, node, consumer_shape) -> tuple:
        """Strides over the domain of `node` as read by a statement over consumer_shape."""
        own = storage_strides(self.graph, node)
        if own is None:   # the host passes a contiguous copy
            own = contiguous(self.shape(node))
        seen = broadcast(own, self.shape(node), consumer_shape)
        return place(seen, self.embed(consumer_shape), len(self.domain))

    def accesses(self) -> list:
        """Strides of every load and store of the kernel, for grouping its loops."""
        out = []
        for n in self.kernel.nodes:
            shape = self.shape(n) if self.graph.attrs(n)["op"] == "map" else self.domain
            for x in self.graph.args(n):
                if self.base(x) not in self.kernel.nodes:
                    out.append(self.strides(x, shape))
        out += [place(contiguous(self.shape(o)), self.embed(self.shape(o)), len(self.domain))
                for o in self.kernel.outputs]
        return out

    def groups(self, cuts) -> list:
        """Loop groups of the domain (layout.loop_groups), naming their loop variables."""
        runs = loop_groups(self.domain, self.accesses(), cuts)
        for j, (_, axes) in enumerate(runs):
            for a in axes:
                self.var[a] = (f"i{j}", axes[-1])
        return runs

    def extent(self, axes) -> str:
        return self.scalar(shapes.size([self.domain[a] for a in axes]))

    def offset(self, strides, level=None) -> str:
        """sum of loop variable * stride over the groups; `level`: groups to leave out
        (a per-row value read inside a column loop has stride 0 there anyway)."""
        terms = {}
        for a, (v, last) in self.var.items():
            if a == last and strides[a] != 0 and v not in terms:
                s = self.scalar(strides[a])
                terms[v] = v if s == "1" else f"{v} * {s}"
        return " + ".join(terms.values()) or "0"

    # ---- pointers, loads, statements ---------------------------------------------------
    def pointer(self, node, write: bool = False) -> str:
        """`<storage>_ptr`, a parameter of the kernel (const unless something is stored)."""
        storage = self.ctx.storage_of(node)
        name = f"{storage}_ptr"
        decl, host = self.ptrs.get(name, (None, self.ctx.host_of(node)))
        const = "" if write or (decl and not decl.startswith("const")) else "const "
        self.ptrs[name] = (f"{const}{self.ctype(node)} *{name}", host)
        return name

    def load(self, x, consumer_shape, scope: str) -> tuple:
        """(lines, local) reading input `x` once per scope."""
        key = (x, scope)
        if key in self.loaded:
            return [], self.loaded[key]
        name = self.ident(x) + (f"_{scope}" if scope else "")
        self.loaded[key] = name
        at = self.offset(self.strides(x, consumer_shape))
        return [f"const {self.ctype(x)} {name} = {self.pointer(x)}[{at}];  // {comment(x)}"], name

    def operand(self, x, consumer_shape, scope: str) -> tuple:
        """(lines, C text) of one argument: a member's local, or a load."""
        if x in self.values:
            return [], self.values[x]
        if self.base(x) in self.values:   # a view of a member: the same value here
            return [], self.values[self.base(x)]
        return self.load(x, consumer_shape, scope)

    def plan_shared(self, members: list) -> None:
        """Subexpressions that several members of one loop body repeat (sigmoid(x) in a
        forward value and again in its derivative) computed once: one sympy.cse over the
        members' expressions, written over the C locals they read. Temporaries are printed
        before the first statement that needs them, named after it (`<member>_c0`)."""
        local = []
        for n in members:
            args = self.graph.args(n)
            local.append(self.graph.attrs(n)["expr"].xreplace(
                {exprs.arg(i): sympy.Symbol(self.local_name(x)) for i, x in enumerate(args)}))
        temps, reduced = sympy.cse(local, symbols=sympy.numbered_symbols("graphc_t"))
        readable = {sympy.Symbol(self.local_name(x)): sympy.Symbol(x)
                    for n in members for x in self.graph.args(n)}
        self.shared = {"temps": temps, "exprs": dict(zip(members, reduced)), "named": {},
                       "labels": temp_labels(temps, readable, held(self.graph, members))}

    def local_name(self, x, scope: str = "") -> str:
        """The C local that holds argument `x` in a statement: a member's, or its load's."""
        base = self.base(x)
        if base in self.kernel.nodes:
            return self.ident(base)
        return self.ident(x) + (f"_{scope}" if scope else "")

    def shared_statement(self, n, lines: list, names: dict) -> list:
        """The statement of member `n` under plan_shared: the temporaries it needs first."""
        me, dtype = self.ident(n), self.dtype(n)
        plan, expr = self.shared, self.shared["exprs"][n]
        needed = set(expr.free_symbols)
        for sym, sub in reversed(plan["temps"]):
            if sym in needed:
                needed |= sub.free_symbols
        # the C locals the plan's expressions read (dims, integer symbols, stay dims)
        exprs_ = list(plan["exprs"].values()) + [sub for _, sub in plan["temps"]]
        names = {**names, **{s.name: s.name for e in exprs_ for s in e.free_symbols
                             if not s.is_integer}}
        names.update({v: v for v in plan["named"].values()})   # earlier statements' temps
        for sym, sub in plan["temps"]:
            if sym in needed and sym not in plan["named"]:
                name = f"{me}_c{sum(v.startswith(me + '_c') for v in plan['named'].values())}"
                plan["named"][sym] = name
                sub = sub.xreplace({t: sympy.Symbol(v) for t, v in plan["named"].items()})
                kind = "int" if exprs.is_condition(sub) else C_TYPE[dtype]
                names[name] = name
                label = plan["labels"].get(sym)
                lines.append(f"const {kind} {name} = {self.print(sub, names, dtype)};  "
                             f"// {comment(label) + ' = ' if label else ''}"
                             f"{comment(str(sub), 100)}")
        expr = expr.xreplace({t: sympy.Symbol(v) for t, v in plan["named"].items()})
        lines.append(f"const {C_TYPE[dtype]} {me} = {self.print(expr, names, dtype)};  "
                     f"// {comment(n)} = {comment(describe(self.graph, n), 100)}")
        self.values[n] = me
        return lines

    def statement(self, n, scope: str = "") -> list:
        """`const T n = <expr>;  // n = <sympy>`, with repeated subexpressions (sympy.cse)
        computed once into `<n>_c0, <n>_c1, ...`."""
        lines, names = [], {}
        for i, x in enumerate(self.graph.args(n)):
            more, text = self.operand(x, self.shape(n), scope)
            lines += more
            names[exprs.arg(i).name] = text
        names.update(self.ctx.dims)
        if n in self.shared.get("exprs", {}):
            return self.shared_statement(n, lines, names)
        me, dtype = self.ident(n), self.dtype(n)
        shared, (expr,) = sympy.cse(self.graph.attrs(n)["expr"],
                                    symbols=sympy.numbered_symbols(f"{me}_c"))
        needed = set(expr.free_symbols)
        for sym, sub in reversed(shared):
            if sym in needed:
                needed |= sub.free_symbols
        readable = {exprs.arg(i): sympy.Symbol(x) for i, x in enumerate(self.graph.args(n))}
        labels = temp_labels(shared, readable, held(self.graph, [n]))
        for sym, sub in [(t, e) for t, e in shared if t in needed]:
            kind = "int" if exprs.is_condition(sub) else C_TYPE[dtype]
            label = f"{comment(labels[sym])} = " if sym in labels else ""
            lines.append(f"const {kind} {sym.name} = {self.print(sub, names, dtype)};  "
                         f"// {label}{comment(str(sub.xreplace(readable)), 100)}")
            names[sym.name] = sym.name
        lines.append(f"const {C_TYPE[dtype]} {me} = {self.print(expr, names, dtype)};  "
                     f"// {comment(n)} = {comment(describe(self.graph, n), 100)}")
        self.values[n] = me
        return lines

    def print(self, expr, names: dict, dtype: str) -> str:
        self.dims_used |= {s.name for s in expr.free_symbols if s.name in self.ctx.dims}
        return print_expr(expr, names, dtype)

    def store(self, o, scope_strides=None) -> str:
        """The store of output `o` (contiguous in its own storage)."""
        at = self.offset(place(contiguous(self.shape(o)), self.embed(self.shape(o)),
                               len(self.domain)))
        value = self.values[o]
        return f"{self.pointer(o, write=True)}[{at}] = {value};  // store {comment(o)}"

    # ---- the function ------------------------------------------------------------------
    def function(self, body: list, summary: str) -> str:
        """Header (kind, members, fused expressions), signature, body."""
        k = self.kernel
        head = [f"// ---- {k.name}: {k.kind} {summary}",
                f"// nodes: {comment(', '.join(k.nodes), 200)}",
                *[f"// {comment(line, 200)}" for line in merged_lines(self.graph, k.nodes)],
                f"// stores: {comment(', '.join(k.outputs), 200)}"]
        fused = fused_expressions(self.graph, k.nodes)
        head += [f"//   {comment(o)} = {comment(fused[o], 120)}" for o in k.outputs]
        params = [d for d, _ in self.ptrs.values()] + \
            [f"int64_t {self.ctx.dims[d]}" for d in sorted(self.dims_used)]
        return "\n".join(head + [f"void {k.name}({', '.join(params) or 'void'})", "{"]
                         + ["    " + line if line else "" for line in body] + ["}"]) + "\n"

    def host_args(self) -> list:
        """(C type letter, host expression) per parameter: 'p' pointer, 'i' int64."""
        return [("p", h) for _, h in self.ptrs.values()] + \
            [("i", self.ctx.dims[d]) for d in sorted(self.dims_used)]


def nest(loops: list, body: list) -> list:
    """Loops [(pragma or "", header)] around body, outermost first."""
    for pragma, header in reversed(loops):
        body = ([pragma] if pragma else []) + [f"{header} {{"] + \
            ["    " + line for line in body] + ["}"]
    return body


def parallel(work: str, extra: str = "") -> str:
    """The pragma that splits a loop over threads when its work is large enough; `extra`:
    " simd" and reduction clauses. Work known now to be small gets no parallel pragma at
    all. Work known at run time picks a team of one below the threshold, not `if(...)`:
    gcc 12 builds the `if`-false path of `parallel for simd` without vector math calls
    (14x slower: 70 ns an element for the bench chain at 16,384 elements, against 5)."""
    if work.isdigit() and int(work) < MIN_PARALLEL_WORK:
        return "#pragma omp" + extra if extra.startswith(" simd") else ""
    return f"#pragma omp parallel for{extra} num_threads({team(work)})"


def team(work: str) -> str:
    """The C expression of a parallel loop's thread count: one below the threshold."""
    return f"{work} >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1"


def small(work: str) -> bool:
    """Work known now to stay below the parallel threshold."""
    return work.isdigit() and int(work) < MIN_PARALLEL_WORK


def loop(var: str, extent: str, start: str = "0") -> str:
    return f"for (int64_t {var} = {start}; {var} < {extent}; {var}++)"


class Elementwise(CKernel):
    """Maps of one shape: loops over the collapsed groups of their shape."""

    kind = "elementwise"

    def write(self) -> str:
        k = self.kernel
        self.domain = self.shape(k.outputs[0] if k.outputs else k.nodes[-1])
        for n in k.nodes:
            if self.graph.attrs(n)["op"] != "map" or self.shape(n) != self.domain:
                raise NotImplementedError(f"c backend: elementwise kernel {k.name} holds "
                                          f"{n!r}, not a map of shape {self.domain}")
        runs = self.groups([0] * len(self.domain))
        self.plan_shared(k.nodes)
        body = []
        for n in k.nodes:
            body += self.statement(n)
        body += [self.store(o) for o in k.outputs]
        work = self.scalar(shapes.size(self.domain))
        loops = [("", loop(f"i{j}", self.extent(axes))) for j, (_, axes) in enumerate(runs)]
        if loops:
            loops[-1] = ("#pragma omp simd", loops[-1][1])
            first = " simd" if len(loops) == 1 else ""
            loops[0] = (parallel(work, first), loops[0][1])
        return self.function(nest(loops, body), f"over {shapes.fmt(self.domain)}")
