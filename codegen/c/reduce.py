"""The reduce template: one reduction over any axes, its prologue maps computed where
they are read and its epilogue maps on each result. When the last axis is reduced, each
result is one running value; when it is kept (a column sum), results accumulate in an
array walked contiguously, blocks of it to threads."""
from __future__ import annotations

from graphc import shapes
from graphc.printing import describe

from ..schedule import epilogue_of
from .kernels import NEUTRAL, CKernel, comment, fold, loop, nest, parallel, reduction_clause

COLUMN_BLOCK = 256   # a column sum's results per parallel task (each walks every row)


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
        # only the innermost run of kept axes accumulates in an array; other kept runs after
        # the reduced axes (a transposed input's) loop outside, as the leading kept axes do
        outer, cols = outer + cols[:-1], cols[-1:]
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
