"""The rows template: last-axis reductions of an (R.., C) domain and their maps, one row
at a time. Each reduction over the row is an `omp simd` loop; per-row values are scalars;
a whole-row value several loops read is computed once into a per-thread row tile."""
from __future__ import annotations

from graphc import shapes
from graphc.printing import describe

from .kernels import (
    NEUTRAL,
    CKernel,
    comment,
    fold,
    loop,
    nest,
    parallel,
    reduction_clause,
    small,
    team,
)
from .layout import broadcast, contiguous, storage_strides


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
        pragma = f"#pragma omp parallel num_threads({team(work)})"
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
