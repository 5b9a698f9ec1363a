"""One template per kernel kind, printing a C function of loops over its index space:

- elementwise: maps of one shape; the axes every access walks contiguously collapse into
  one loop (a same-shape chain is a single `parallel for simd` loop);
- rows: one iteration per row of an (R.., C) domain; each reduction over the row is an
  `omp simd` loop, whole-row members are recomputed in every loop that reads them (as the
  Triton rows kernel does), per-row values are scalars;
- reduce: one reduction over any axes, its prologue maps computed where they are read and
  its epilogue maps on each result. When the last axis is reduced, each result is one
  running value; when it is kept (a column sum), results accumulate in an array walked
  contiguously.
Max and min fold through NaN-keeping reductions (`nanmax`, `nanmin`) declared in the
module; sums through `reduction(+:...)`, which lets the loop vectorise without fast-math.
"""
from __future__ import annotations

import sympy

from graphc import exprs, shapes
from graphc.printing import describe

from ..common import comment as python_comment
from ..schedule import VIEWS, epilogue_of, fused_expressions
from .layout import broadcast, contiguous, loop_groups, place, storage_strides
from .printer import C_TYPE, print_expr


def comment(text, limit: int = 140) -> str:
    """Text made safe to sit after '//': common.comment's escaping, and no backslash (one
    at the end of a line would continue the comment onto the next) or trigraph."""
    return python_comment(text, limit).replace("\\", "%5C").replace("??", "?%3F")


NEUTRAL = {("sum", "f"): "0", ("max", "f"): "-INFINITY", ("min", "f"): "INFINITY",
           ("sum", "i"): "0", ("max", "i"): "INT64_MIN", ("min", "i"): "INT64_MAX"}
COLUMN_BLOCK = 256   # a column sum's results per parallel task (each walks every row)
MIN_PARALLEL_WORK = 32768   # elements of work below which a kernel runs on one thread


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

    def statement(self, n, scope: str = "") -> list:
        """`const T n = <expr>;  // n = <sympy>`, with repeated subexpressions (sympy.cse)
        computed once into `<n>_c0, <n>_c1, ...`."""
        lines, names = [], {}
        for i, x in enumerate(self.graph.args(n)):
            more, text = self.operand(x, self.shape(n), scope)
            lines += more
            names[exprs.arg(i).name] = text
        names.update(self.ctx.dims)
        me, dtype = self.ident(n), self.dtype(n)
        shared, (expr,) = sympy.cse(self.graph.attrs(n)["expr"],
                                    symbols=sympy.numbered_symbols(f"{me}_c"))
        needed = set(expr.free_symbols)
        for sym, sub in reversed(shared):
            if sym in needed:
                needed |= sub.free_symbols
        readable = {exprs.arg(i): sympy.Symbol(x) for i, x in enumerate(self.graph.args(n))}
        for sym, sub in [(t, e) for t, e in shared if t in needed]:
            kind = "int" if isinstance(sub, sympy.logic.boolalg.Boolean) else C_TYPE[dtype]
            lines.append(f"const {kind} {sym.name} = {self.print(sub, names, dtype)};  "
                         f"// {comment(str(sub.xreplace(readable)), 100)}")
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
    all: gcc 12 builds `parallel for simd if(0)` without its vector math calls."""
    if work.isdigit() and int(work) < MIN_PARALLEL_WORK:
        return "#pragma omp" + extra if extra.startswith(" simd") else ""
    return f"#pragma omp parallel for{extra} if({work} >= GRAPHC_PARALLEL_MIN) " \
           "num_threads(GRAPHC_THREADS)"


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


class Rows(CKernel):
    """Last-axis reductions and their maps, one row at a time."""

    kind = "rows"

    def embed(self, shape) -> tuple:
        # a per-row value of shape L lies along the lead axes; L + (1,) and L + (C,) as is
        return tuple(range(len(shape)))

    def strides(self, node, consumer_shape) -> tuple:
        if len(consumer_shape) == len(self.domain) - 1:   # (R,) read as (R, 1)
            consumer_shape = tuple(consumer_shape) + (1,)
            own = storage_strides(self.graph, node) or contiguous(self.shape(node))
            seen = broadcast(own, self.shape(node), consumer_shape[:-1]) + (0,)
            return tuple(seen)
        return super().strides(node, consumer_shape)

    def is_vec(self, n) -> bool:
        s = self.shape(n)
        return len(s) == len(self.domain) and s[-1] == self.domain[-1] and \
            self.domain[-1] != 1

    def write(self) -> str:
        k, g = self.kernel, self.graph
        reductions = [n for n in k.nodes if g.attrs(n)["op"] == "reduce"]
        self.domain = self.shape(g.args(reductions[0])[0]) if reductions else \
            max((self.shape(n) for n in k.nodes), key=len)
        rank = len(self.domain)
        for r in reductions:
            if tuple(g.attrs(r)["axes"]) != (rank - 1,) or \
                    self.shape(g.args(r)[0]) != self.domain:
                raise NotImplementedError(f"c backend: rows kernel {k.name}: {r!r} is not a "
                                          f"last-axis reduction of {shapes.fmt(self.domain)}")
        cuts = [0] * (rank - 1) + [1]
        runs = self.groups(cuts)
        if not runs or runs[-1][0] != 1:   # one column: still a column loop, of extent 1
            self.var[rank - 1] = (f"i{len(runs)}", rank - 1)
            runs = runs + [(1, [rank - 1])]
        lead = [(j, axes) for j, (level, axes) in enumerate(runs) if level == 0]
        self.col = runs[-1]
        body = self.row_body()
        loops = [("", loop(f"i{j}", self.extent(axes))) for j, axes in lead]
        work = self.scalar(shapes.size(self.domain))
        summary = f"over {shapes.fmt(self.domain)}, one row at a time"
        if not self.tiles:
            if loops:
                loops[0] = (parallel(work), loops[0][1])
            return self.function(nest(loops, body), summary)
        # each thread's tiles: one row of each whole-row value that several loops read
        n_cols = self.extent(self.col[1])
        make = [f"{self.ctype(n)} *{self.ident(n)}_tile = malloc(sizeof({self.ctype(n)}) * "
                f"({n_cols} > 0 ? {n_cols} : 1));  // {comment(n)}, one row"
                for n in self.tiles]
        free = [f"free({self.ident(n)}_tile);" for n in self.tiles]
        threads = bool(loops) and not small(work)
        if threads:
            loops[0] = ("#pragma omp for", loops[0][1])
        region = ["{"] + ["    " + x for x in make + nest(loops, body) + free] + ["}"]
        pragma = f"#pragma omp parallel if({work} >= GRAPHC_PARALLEL_MIN) " \
                 "num_threads(GRAPHC_THREADS)"
        return self.function(([pragma] if threads else []) + region,
                             summary + ", whole-row values read twice kept in tiles")

    def stages(self) -> dict:
        """Member -> column loops that must end before its value exists."""
        stage: dict = {}
        for n in self.kernel.nodes:
            s = max((stage.get(self.base(x), 0) for x in self.graph.args(n)), default=0)
            stage[n] = s + 1 if self.graph.attrs(n)["op"] == "reduce" else s
        return stage

    def row_body(self) -> list:
        """Row values between column loops: loop j folds the reductions needing j ended
        loops and stores the whole-row outputs computable there."""
        stage, k = self.stages(), self.kernel
        vec = {n for n in k.nodes if self.graph.attrs(n)["op"] == "map" and self.is_vec(n)}
        passes = []
        for j in range(max(stage.values(), default=0) + 1):
            folded = [n for n in k.nodes if self.graph.attrs(n)["op"] == "reduce"
                      and stage[n] == j + 1]
            stores = [o for o in k.outputs if o in vec and stage[o] == j]
            passes.append((folded, stores, self.needed(folded + stores, vec)))
        # a whole-row value several loops read is computed once, kept in a tile: computed
        # again, a libmvec lane and the scalar remainder may round it differently, and a
        # max's tie mask (x == max(x)) compares the two
        uses = [n for _, _, members in passes for n in members]
        self.tiles = [n for n in k.nodes if uses.count(n) > 1]
        self.in_tile: set = set()
        body = []
        for j, (folded, stores, members) in enumerate(passes):
            for n in k.nodes:
                if stage[n] == j and n not in vec and self.graph.attrs(n)["op"] == "map":
                    body += self.statement(n, "row")
            if folded or stores:
                body += self.column_loop(folded, stores, members, j)
        return body + [self.store(o) for o in k.outputs if o not in vec]

    def needed(self, wanted: list, vec: set) -> list:
        """The whole-row members that computing `wanted` reads, in kernel order."""
        grow = set(wanted)
        for n in reversed(self.kernel.nodes):
            if n in grow:
                grow |= {self.base(x) for x in self.graph.args(n)} & vec
        return [n for n in self.kernel.nodes if n in grow and n in vec]

    def column_loop(self, folded: list, stores: list, members: list, j: int) -> list:
        """One pass over the row's columns: the whole-row members the reductions and stores
        need (from tiles where an earlier loop computed them); each reduction a vectorised
        running value."""
        before, clauses = [], []
        for r in folded:
            a = self.graph.attrs(r)
            kind = "f" if shapes.is_float(a["dtype"]) else "i"
            before.append(f"{self.ctype(r)} {self.ident(r)} = {NEUTRAL[(a['fn'], kind)]};  "
                          f"// {comment(r)} = {comment(describe(self.graph, r), 100)}")
            clauses.append(f" reduction({reduction_clause(a['fn'], a['dtype'])}:"
                           f"{self.ident(r)})")
        saved = dict(self.values)
        inner = []
        col = self.var[len(self.domain) - 1][0]
        for n in members:
            tile = f"{self.ident(n)}_tile[{col}]"
            if n in self.in_tile:
                inner.append(f"const {self.ctype(n)} {self.ident(n)} = {tile};  "
                             f"// {comment(n)}, from its tile")
                self.values[n] = self.ident(n)
                continue
            inner += self.statement(n, f"col{j}")
            if n in self.tiles:
                inner.append(f"{tile} = {self.ident(n)};")
                self.in_tile.add(n)
        for r in folded:
            x = self.graph.args(r)[0]
            more, value = self.operand(x, self.domain, f"col{j}")
            a = self.graph.attrs(r)
            inner += more + [fold(a["fn"], a["dtype"], self.ident(r), value)]
        inner += [self.store(o) for o in stores]
        # whole-row values end with their loop; the reductions' results live on
        self.values = saved | {r: self.ident(r) for r in folded}
        var = self.var[len(self.domain) - 1][0]
        return before + nest([("#pragma omp simd" + "".join(clauses),
                               loop(var, self.extent(self.col[1])))], inner)


class Reduce(CKernel):
    """One reduction over any axes, with prologue maps over its input and epilogue maps
    over its result."""

    kind = "reduce"

    def write(self) -> str:
        k, g = self.kernel, self.graph
        self.r, = [n for n in k.nodes if g.attrs(n)["op"] == "reduce"]
        a = g.attrs(self.r)
        self.domain = self.shape(g.args(self.r)[0])
        rank = len(self.domain)
        self.axes = tuple(a["axes"])
        self.kept = [x for x in range(rank) if x not in self.axes]
        self.after = epilogue_of(g, k)
        self.keepdims = a["keepdims"]
        last_reduced = max(self.axes, default=-1)
        # levels: kept axes before the last reduced one, reduced axes, kept axes after it
        cuts = [1 if x in self.axes else (0 if x < last_reduced else 2) for x in range(rank)]
        runs = self.groups(cuts)
        if any(level == 2 for level, _ in runs):
            body = self.column_body(runs)
        else:
            body = self.running_body(runs)
        return self.function(body, f"{a['fn']} over axes {self.axes} of "
                             f"{shapes.fmt(self.domain)}")

    def embed(self, shape) -> tuple:
        if len(shape) == len(self.domain):
            return tuple(range(len(shape)))
        return tuple(self.kept)   # a result without its reduced axes

    def members(self, scope: str, inner: bool) -> list:
        """Statements of the prologue (inner) or the epilogue (not inner)."""
        lines = []
        for n in self.kernel.nodes:
            if n != self.r and (n in self.after) != inner:
                lines += self.statement(n, scope)
        return lines

    def accumulate(self, acc: str, scope: str) -> list:
        lines = self.members(scope, inner=True)
        more, value = self.operand(self.graph.args(self.r)[0], self.domain, scope)
        a = self.graph.attrs(self.r)
        return lines + more + [fold(a["fn"], a["dtype"], acc, value)]

    def neutral(self) -> str:
        a = self.graph.attrs(self.r)
        return NEUTRAL[(a["fn"], "f" if shapes.is_float(a["dtype"]) else "i")]

    def finish(self, value: str, scope: str) -> list:
        """The reduction's value named, the epilogue, the stores."""
        self.values[self.r] = value
        lines = self.members(scope, inner=False)
        return lines + [self.store(o) for o in self.kernel.outputs]

    def running_body(self, runs) -> list:
        """Last axis reduced: one running value per result, folded over the reduced loops."""
        a = self.graph.attrs(self.r)
        kept = [(f"i{j}", axes) for j, (lv, axes) in enumerate(runs) if lv == 0]
        red = [(f"i{j}", axes) for j, (lv, axes) in enumerate(runs) if lv == 1]
        acc = f"{self.ident(self.r)}"
        clause = f" reduction({reduction_clause(a['fn'], a['dtype'])}:{acc})"
        inner = self.accumulate(acc, "")
        red_loops = [("", loop(v, self.extent(axes))) for v, axes in red]
        if red_loops:
            red_loops[-1] = ("#pragma omp simd" + clause, red_loops[-1][1])
        work = self.scalar(shapes.size(self.domain))
        if not kept and red_loops:   # one result: the threads split the reduction
            first = " simd" if len(red_loops) == 1 else ""
            red_loops[0] = (parallel(work, first + clause), red_loops[0][1])
        body = [f"{self.ctype(self.r)} {acc} = {self.neutral()};  // {comment(self.r)} = "
                f"{comment(describe(self.graph, self.r), 100)}"]
        body += nest(red_loops, inner) + self.finish(acc, "out")
        kept_loops = [("", loop(v, self.extent(axes))) for v, axes in kept]
        if kept_loops:
            kept_loops[0] = (parallel(work), kept_loops[0][1])
        return nest(kept_loops, body)

    def column_body(self, runs) -> list:
        """Last axis kept: results accumulate in an array over the innermost kept group,
        walked contiguously for every reduced element; blocks of it go to threads."""
        outer = [(f"i{j}", axes) for j, (lv, axes) in enumerate(runs) if lv == 0]
        red = [(f"i{j}", axes) for j, (lv, axes) in enumerate(runs) if lv == 1]
        cols = [(f"i{j}", axes) for j, (lv, axes) in enumerate(runs) if lv == 2]
        if len(cols) != 1:
            raise NotImplementedError(f"c backend: reduce kernel {self.kernel.name}: its kept "
                                      "trailing axes are not one contiguous run")
        var, axes = cols[0]
        n_cols = self.extent(axes)
        t, acc = self.ctype(self.r), f"{self.ident(self.r)}_acc"
        self.values[self.r] = f"{acc}[{var} - {var}_block]"
        inner = self.accumulate(f"{acc}[{var} - {var}_block]", "")
        col_loop = ("#pragma omp simd", loop(var, f"{var}_end", f"{var}_block"))
        red_loops = [("", loop(v, self.extent(x))) for v, x in red] + [col_loop]
        body = [f"const int64_t {var}_end = {var}_block + {COLUMN_BLOCK} < {n_cols} ? "
                f"{var}_block + {COLUMN_BLOCK} : {n_cols};",
                f"{t} {acc}[{COLUMN_BLOCK}];  // {comment(self.r)} = "
                f"{comment(describe(self.graph, self.r), 100)}, a block of results",
                *nest([col_loop], [f"{acc}[{var} - {var}_block] = {self.neutral()};"])]
        body += nest(red_loops, inner)
        body += nest([col_loop], self.finish(f"{acc}[{var} - {var}_block]", "out"))
        blocks = f"for (int64_t {var}_block = 0; {var}_block < {n_cols}; " \
                 f"{var}_block += {COLUMN_BLOCK})"
        loops = [("", loop(v, self.extent(x))) for v, x in outer] + [("", blocks)]
        loops[0] = (parallel(self.scalar(shapes.size(self.domain))), loops[0][1])
        return nest(loops, body)


WRITERS = {"elementwise": Elementwise, "rows": Rows, "reduce": Reduce}
