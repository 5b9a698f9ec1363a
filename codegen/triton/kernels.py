"""One template per kernel kind, printing a `@triton.jit` function and its launch.

- elementwise: a flat index over the output shape, BLOCK elements per program;
- rows: one program per row of a (R, C) domain, the whole row in one block of
  BLOCK_C = next_power_of_2(C) lanes (Triton's fused-softmax pattern), reductions over the
  row in sequence, per-row (R,)/(R, 1) and whole-row (R, C) results; a wider or symbolic C
  loops over the row in tiles of BLOCK_C columns instead, one loop per reduction phase;
- reduce (reduce.py): any other reduction.
Offsets are int64 everywhere (a tensor may pass 2**31 elements; the cost is one 64-bit
multiply-add per element, noise in memory-bound kernels).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphc import shapes, triton_host
from graphc.printing import describe
from graphc.shapes import same_shape

from ..common import comment
from .addressing import Arg, KernelWriter, fold_step, neutral, reduce_call
from .printer import TL_DTYPE

ELEMENTWISE_BLOCK = 1024  # the tutorials' choice: enough bytes in flight per program
# The most lanes a one-block rows kernel gives a whole-row value of 4 bytes (half as many
# of 8): wider blocks spill. ptxas for sm_90 at 16 warps, softmax and cross-entropy with
# their backward: 16384 float32 lanes take 128 registers a thread and 0-24 bytes of stack,
# 32768 spill 344-728 bytes; 16384 float64 lanes spill 800-1352. Wider rows, and a symbolic
# width (anything at run time), loop over tiles of at most this many columns.
ROWS_MAX_BLOCK = 16384


@dataclass
class Launch:
    """Host side of one launch: `name[grid](*args, **constexprs)`; for a split reduction
    also host lines before it, a second launch when `then_if` holds, and scratch buffers
    (name, shape source, dtype) that allocate() makes."""
    name: str
    grid: str
    args: list
    constexprs: dict = field(default_factory=dict)
    prelude: list = field(default_factory=list)
    then: Launch | None = None
    then_if: str = ""
    scratch: list = field(default_factory=list)


def _decompose(var: str, dims: list, j: int, scalar) -> str:
    """Index along dims[j] of a flat row-major index `var` over `dims`."""
    div = scalar(shapes.size(dims[j + 1:]))
    q = var if div == "1" else f"{var} // {div}"
    if j == 0:
        return q
    return f"{q} % {scalar(dims[j])}" if q == var else f"({q}) % {scalar(dims[j])}"


def rows_max_block(dtypes) -> int:
    """ROWS_MAX_BLOCK, halved when a kernel's values in registers include 8-byte ones."""
    return ROWS_MAX_BLOCK // 2 if {"float64", "int64"} & set(dtypes) else ROWS_MAX_BLOCK


def loops_over(cols, most: int) -> bool:
    """Whether a rows kernel over `cols` columns loops over column tiles: a symbolic width,
    or one whose block would pass `most` lanes."""
    return not isinstance(cols, int) or triton_host.next_pow2(cols) > most


def pow2_text(n, lo, hi, host: str, ctx) -> str:
    """A block size: the power of two >= n clamped to [lo, hi]; a literal when n and hi
    are known now, else a call of triton_host.pow2_block at launch."""
    if isinstance(n, int) and str(hi).isdigit():
        return str(triton_host.pow2_block(n, lo, int(hi)))
    return ctx.host("pow2_block", host, lo, hi)


class Elementwise(KernelWriter):
    """Maps of one shape over a flat index: BLOCK elements per program."""

    kind = "elementwise"

    def write(self) -> tuple:
        k = self.kernel
        self.domain = tuple(self.shape(k.outputs[0] if k.outputs else k.nodes[-1]))
        self.rank = len(self.domain)
        body = []
        for n in k.nodes:
            if self.graph.attrs(n)["op"] != "map" or not same_shape(self.shape(n), self.domain):
                raise NotImplementedError(f"triton backend: elementwise kernel {k.name} holds "
                                          f"{n!r}, not a map of shape {self.domain}")
            body += self.statement(n, self.domain)
        for o in k.outputs:
            body.append(f"tl.store({self.pointer(o)} + offsets, {self.values[o]}, mask=mask)")
        n_elements = shapes.size(self.domain)
        self.sizes.append(Arg("n_elements", self.host_scalar(n_elements)))
        head = ["pid = tl.program_id(0)",
                "offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)",
                "mask = offsets < n_elements"]
        head += [f"idx{a} = {_decompose('offsets', list(self.domain), a, self.scalar)}"
                 for a in sorted(self.index_needed)]
        launch = Launch(k.name, self.ctx.host("grid_1d", self.host_scalar(n_elements),
                                              ELEMENTWISE_BLOCK),
                        self.host_args(), {"BLOCK": str(ELEMENTWISE_BLOCK)})
        return self.function(["BLOCK"], head + body, f"over {shapes.fmt(self.domain)}, "
                             "BLOCK elements per program"), launch

    def address(self, node, target, space="", label=""):
        if self.ctx.contiguous(node) and same_shape(self.shape(node), self.domain):
            return "offsets", "mask"   # same layout as the output: the flat index itself
        return super().address(node, target, space, label)

    def axis_index(self, axis, target):
        self.index_needed.add(axis)
        return f"idx{axis}", "flat"

    def combine(self, parts):
        terms = parts.get("flat", [])
        return (" + ".join(terms), "mask") if terms else (None, None)


class Rows(KernelWriter):
    """Last-axis reductions and their maps: one program per row, the row in registers
    (one block), or streamed through in column tiles when it is too wide for that."""

    kind = "rows"

    def write(self) -> tuple:
        k = self.kernel
        reductions = [n for n in k.nodes if self.graph.attrs(n)["op"] == "reduce"]
        self.domain = tuple(self.shape(self.graph.args(reductions[0])[0]) if reductions
                            else max((self.shape(n) for n in k.nodes), key=len))
        self.rank = len(self.domain)
        for r in reductions:
            a = self.graph.attrs(r)
            if tuple(a["axes"]) != (self.rank - 1,) or \
                    not same_shape(self.shape(self.graph.args(r)[0]), self.domain):
                raise NotImplementedError(f"triton backend: rows kernel {k.name}: {r!r} is not "
                                          f"a last-axis reduction of {shapes.fmt(self.domain)}")
        most = rows_max_block(self.dtype(n) for n in k.nodes)
        if loops_over(self.domain[-1], most):
            return self.assemble(self.looped_body(), [], most, "in tiles of BLOCK_C columns")
        body = []
        for n in k.nodes:
            body += self.member(n)
        for o in k.outputs:
            body.append(self.store(o))
        # int64 columns: a transposed input's cols * stride may pass 2**31
        head = ["cols = tl.arange(0, BLOCK_C).to(tl.int64)", "mask = cols < n_cols"]
        return self.assemble(body, head, 1 << 20, "")

    def assemble(self, body: list, head: list, most: int, how: str) -> tuple:
        """The kernel around `body` (after the row's index and `head`), and its launch with
        BLOCK_C the power of two >= n_cols, at most `most`."""
        cols = self.domain[-1]
        self.sizes.append(Arg("n_cols", self.host_scalar(cols)))
        lead = list(self.domain[:-1])
        head = ["row = tl.program_id(0).to(tl.int64)  # int64: row * n_cols may pass 2**31"] \
            + head + [f"idx{a} = {_decompose('row', lead, a, self.scalar)}"
                      for a in sorted(self.index_needed)]
        block = pow2_text(cols, 1, most, self.host_scalar(cols), self.ctx)
        warps = str(triton_host.row_warps(int(block))) if block.isdigit() else \
            self.ctx.host("row_warps", block)
        launch = Launch(self.kernel.name, f"({self.host_scalar(shapes.size(lead))},)",
                        self.host_args(), {"BLOCK_C": block, "num_warps": warps})
        return self.function(["BLOCK_C"], head + body, f"over {shapes.fmt(self.domain)}, "
                             f"one program per row{', ' + how if how else ''}"), launch

    # ---- the looped variant -------------------------------------------------------------
    def stages(self) -> dict:
        """Member -> how many column loops must end before its value exists. A reduction
        is folded in loop `stage of its argument` and exists after it; a map's stage is
        its arguments' latest; loads are there from the start."""
        stage: dict = {}
        for n in self.kernel.nodes:
            s = max((stage.get(self.base(x), 0) for x in self.graph.args(n)), default=0)
            stage[n] = s + 1 if self.graph.attrs(n)["op"] == "reduce" else s
        return stage

    def looped_body(self) -> list:
        """The body of the looped variant: per-row values at the top level, computed once
        the reductions they read are complete; loop j folds the reductions whose inputs
        need j completed loops (so a max and a sum of one loaded tile share a loop) and
        stores the whole-row outputs that become computable there (safe: a kernel never
        writes storage it reads); a last loop stores those that need every reduction.
        Row outputs are stored at the end."""
        stage, k = self.stages(), self.kernel
        vec = {n for n in k.nodes if self.graph.attrs(n)["op"] == "map"
               and self.space_of(n) == "vec"}
        last = max(stage.values(), default=0)
        body = []
        for j in range(last + 1):
            for n in k.nodes:
                if stage[n] == j and n not in vec and self.graph.attrs(n)["op"] == "map":
                    body += self.member(n)
            folded = [n for n in k.nodes if self.graph.attrs(n)["op"] == "reduce"
                      and stage[n] == j + 1]
            stores = [o for o in k.outputs if o in vec and stage[o] == j]
            if folded or stores:
                body += self.column_loop(folded, stores, vec)
        return body + [self.store(o) for o in k.outputs if o not in vec]

    def column_loop(self, folded: list, stores: list, vec: set) -> list:
        """One pass over the row in tiles: the whole-row members that `folded` and `stores`
        read, recomputed from loads (a tile's values end with its loop), each tile folded
        into the reductions' running values; per-row loads hoisted above the loop."""
        grow = set(folded) | set(stores)
        for n in reversed(self.kernel.nodes):
            if n in grow:
                grow |= {self.base(x) for x in self.graph.args(n)} & vec
        members = [n for n in self.kernel.nodes if n in grow and n in vec] + folded
        lines = []
        for x in dict.fromkeys(x for n in members for x in self.graph.args(n)):
            lines += self.per_row_load(x)
        lines += [self.accumulator(r) for r in folded]
        loaded, values = dict(self.loaded), dict(self.values)
        body = []
        for n in members:
            body += self.member(n) if n in vec else self.accumulate(n)
        body += [self.store(o) for o in stores]
        self.loaded, self.values = loaded, values  # the next loop loads and computes again
        return lines + ["for start in range(0, n_cols, BLOCK_C):",
                        "    cols = start + tl.arange(0, BLOCK_C).to(tl.int64)",
                        "    mask = cols < n_cols  # the last tile is ragged"] + \
            ["    " + line for line in body]

    def per_row_load(self, x) -> list:
        """The load of an input with one value per row ((R, 1), a scalar, a rand's step
        counter), before a loop rather than in every tile; [] for any other argument."""
        if self.base(x) in self.kernel.nodes:
            return []
        if not self.shape(x) or self.shape(x)[-1] == 1:  # no column index in its address
            return self.load(x, self.domain, "vec")[0]
        if self.graph.attrs(x)["op"] == "rand":
            return self.per_row_load(self.graph.args(x)[0])
        return []

    def accumulator(self, n) -> str:
        """A reduction's running value before its loop: the neutral element."""
        a = self.graph.attrs(n)
        self.values[n] = self.ident(n)
        dtype = TL_DTYPE.get(a["dtype"], "tl.float32")
        return f"{self.ident(n)} = tl.full((), {neutral(a['fn'], a['dtype'])}, {dtype})  " \
               f"# {comment(n)}: folded over the tiles"

    def accumulate(self, n) -> list:
        """One tile folded into a reduction's running value (NaN kept by max and min)."""
        fn = self.graph.attrs(n)["fn"]
        lines, part = self.fold(n, neutral(fn, self.dtype(n)))
        me = self.ident(n)
        step = fold_step(fn, me, part, self.ctx)
        return lines + [f"{me} = {step}  # {comment(n)} = "
                        f"{comment(describe(self.graph, n), 100)}"]

    def space_of(self, node) -> str:
        """"vec" for a (.., C) value, "row" for one value per row ((R,), (R, 1), ())."""
        s, d = tuple(self.shape(node)), self.domain
        if same_shape(s, d):
            return "vec"
        if same_shape(s, d[:-1]) or same_shape(s, d[:-1] + (1,)) or all(x == 1 for x in s):
            return "row"
        raise NotImplementedError(f"triton backend: rows kernel {self.kernel.name}: {node!r} "
                                  f"of shape {shapes.fmt(s)} is neither a row nor a value per row")

    def member(self, n) -> list:
        """The lines computing one member: a map statement or a row reduction."""
        a = self.graph.attrs(n)
        if a["op"] == "map":
            space = self.space_of(n)
            if space == "vec" and any(self.member_value(x) is not None and
                                      len(self.shape(x)) < self.rank
                                      for x in self.graph.args(n)):
                raise NotImplementedError(f"triton backend: {n!r} broadcasts a (R,) value "
                                          "along its columns")
            return self.statement(n, tuple(self.shape(n)), space)
        if a["op"] != "reduce":
            raise NotImplementedError(f"triton backend: rows kernel holds {a['op']} {n!r}")
        lines, call = self.fold(n, neutral(a["fn"], a["dtype"]))
        self.values[n] = self.ident(n)
        return lines + [f"{self.ident(n)} = {call}"
                        f"  # {comment(n)} = {comment(describe(self.graph, n), 100)}"]

    def fold(self, n, fill: str) -> tuple:
        """(load lines, the reduction of a block of `n`'s argument, masked lanes `fill`)."""
        x = self.graph.args(n)[0]
        value = self.member_value(x)
        lines, value = ([], value) if value is not None else self.load(x, self.domain, "vec")
        return lines, reduce_call(self.graph.attrs(n)["fn"], f"tl.where(mask, {value}, {fill})",
                                  0, self.ctx)

    def alias_ok(self, base, view) -> bool:
        """A value per row is the same value seen as (R,), (R, 1) or broadcast to (R, C)."""
        if self.space_of(base) == "row":
            self.space_of(view)  # raises unless the view is a row or value-per-row shape
            return True
        return super().alias_ok(base, view)

    def store(self, o) -> str:
        if self.space_of(o) == "vec":
            return f"tl.store({self.pointer(o)} + row * n_cols + cols, {self.values[o]}, " \
                   "mask=mask)"
        if all(d == 1 for d in self.shape(o)):  # one element for all rows: row 0 writes it
            return f"tl.store({self.pointer(o)}, {self.values[o]}, mask=row == 0)"
        return f"tl.store({self.pointer(o)} + row, {self.values[o]})"

    def address(self, node, target, space="", label=""):
        if self.ctx.contiguous(node) and same_shape(self.shape(node), self.domain):
            return "row * n_cols + cols", "mask"
        return super().address(node, target, space, label)

    def axis_index(self, axis, target):
        if axis == self.rank - 1:
            return "cols", "col"
        if self.rank == 2:
            return "row", "row"
        self.index_needed.add(axis)
        return f"idx{axis}", "row"

    def combine(self, parts):
        terms = parts.get("row", []) + parts.get("col", [])
        if not terms:
            return None, None
        return " + ".join(terms), ("mask" if "col" in parts else None)
