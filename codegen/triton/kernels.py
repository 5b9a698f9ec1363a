"""One template per kernel kind, printing a `@triton.jit` function and its launch.

- elementwise: a flat index over the output shape, BLOCK elements per program;
- rows: one program per row of a (R, C) domain, the whole row in one block of
  BLOCK_C = next_power_of_2(C) lanes (Triton's fused-softmax pattern), reductions over the
  row in sequence, per-row (R,)/(R, 1) and whole-row (R, C) results;
- reduce (reduce.py): any other reduction.
Offsets are int64 everywhere (a tensor may pass 2**31 elements; the cost is one 64-bit
multiply-add per element, noise in memory-bound kernels).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphc import shapes
from graphc.printing import describe

from ..common import comment
from .addressing import Arg, KernelWriter, neutral, reduce_call

ELEMENTWISE_BLOCK = 1024  # the tutorials' choice: enough bytes in flight per program


@dataclass
class Launch:
    """Host side of one launch: `name[grid](*args, **constexprs)`."""
    name: str
    grid: str
    args: list
    constexprs: dict = field(default_factory=dict)


def same_shape(a, b) -> bool:
    """Equal shapes, symbolic dims compared by value."""
    return len(a) == len(b) and all(shapes.same_dim(x, y) for x, y in zip(a, b))


def _decompose(var: str, dims: list, j: int, scalar) -> str:
    """Index along dims[j] of a flat row-major index `var` over `dims`."""
    div = scalar(shapes.size(dims[j + 1:]))
    q = var if div == "1" else f"{var} // {div}"
    if j == 0:
        return q
    return f"{q} % {scalar(dims[j])}" if q == var else f"({q}) % {scalar(dims[j])}"


def pow2_text(n, lo, hi, host: str) -> str:
    """A block size: the power of two >= n clamped to [lo, hi]; a literal when n and hi
    are known now, else a call of the module's _pow2 at launch."""
    if isinstance(n, int) and str(hi).isdigit():
        return str(max(lo, min(int(hi), 1 << max(0, n - 1).bit_length())))
    return f"_pow2({host}, {lo}, {hi})"


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
        launch = Launch(k.name, f"_cdiv({self.host_scalar(n_elements)}, {ELEMENTWISE_BLOCK})",
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
    """Last-axis reductions and their maps: one program per row, the row in registers."""

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
        body = []
        for n in k.nodes:
            body += self.member(n)
        for o in k.outputs:
            body.append(self.store(o))
        cols = self.domain[-1]
        self.sizes.append(Arg("n_cols", self.host_scalar(cols)))
        head = ["row = tl.program_id(0).to(tl.int64)  # int64: row * n_cols may pass 2**31",
                "cols = tl.arange(0, BLOCK_C)",
                "mask = cols < n_cols"]
        lead = list(self.domain[:-1])
        head += [f"idx{a} = {_decompose('row', lead, a, self.scalar)}"
                 for a in sorted(self.index_needed)]
        block = pow2_text(cols, 1, 1 << 20, self.host_scalar(cols))
        warps = (str(4 if int(block) < 2048 else 8 if int(block) < 4096 else 16)
                 if block.isdigit() else f"_warps({block})")  # the tutorial's rule
        launch = Launch(k.name, f"({self.host_scalar(shapes.size(lead))},)", self.host_args(),
                        {"BLOCK_C": block, "num_warps": warps})
        return self.function(["BLOCK_C"], head + body,
                             f"over {shapes.fmt(self.domain)}, one program per row"), launch

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
        x = self.graph.args(n)[0]
        value = self.member_value(x)
        lines, value = ([], value) if value is not None else self.load(x, self.domain, "vec")
        self.values[n] = self.ident(n)
        masked = f"tl.where(mask, {value}, {neutral(a['fn'], a['dtype'])})"
        return lines + [f"{self.ident(n)} = {reduce_call(a['fn'], masked, 0, self.ctx)}"
                        f"  # {comment(n)} = {comment(describe(self.graph, n), 100)}"]

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


def _group(terms: list) -> str:
    """Terms of an offset as one operand of [:, None]: bracketed when a sum or product."""
    text = " + ".join(terms)
    return text if text.isidentifier() else f"({text})"

