"""The reduce template: a reduction over leading or several axes (a column sum, a full
sum), with map prologues evaluated tile by tile and epilogues of the result's shape
(a batch mean's division, a bias update). Each program owns BLOCK_K kept (result)
elements and loops over the reduced ones in steps of BLOCK_M: a [BLOCK_M, BLOCK_K] tile
per step, summed (or maxed) down its first axis into BLOCK_K accumulators.

A kernel with few programs (a full sum: one) over many reduced elements would be one
program's loop on a GPU; such a kernel is split: a second grid axis gives each program
a chunk of the reduced elements, the chunks' partial results go to a scratch buffer, and
a `<kernel>_finish` kernel combines them in chunk order (deterministic) and runs the
epilogue. At run time a short reduction takes one chunk, and so one launch, as before.
"""
from __future__ import annotations

from graphc import shapes, triton_host
from graphc.printing import describe
from graphc.shapes import same_shape

from ..common import comment
from ..schedule import epilogue_of
from .addressing import Arg, KernelWriter, fold_step, neutral, reduce_call, tile_offset
from .kernels import Launch, _decompose, pow2_text
from .printer import TL_DTYPE

SPLIT_BELOW = 64          # programs: a kernel with fewer may split its reduced elements
SPLIT_CHUNK = 32768       # reduced elements per chunk at least (a short sum stays whole)
MAX_SPLITS = 256          # chunks at most: the partial results' scratch rows


def squeezed(shape) -> list:
    """The dims of a shape other than 1."""
    return [d for d in shape if d != 1]


class Reduce(KernelWriter):
    """Reductions over leading or several axes; prologues per tile, epilogues per result."""

    kind = "reduce"

    def write(self) -> tuple:
        k, g = self.kernel, self.graph
        reductions = [n for n in k.nodes if g.attrs(n)["op"] == "reduce"]
        self.domain = tuple(self.shape(g.args(reductions[0])[0]))
        self.rank = len(self.domain)
        self.axes = tuple(g.attrs(reductions[0])["axes"])
        self.kept = [a for a in range(self.rank) if a not in self.axes]
        self.mode = "tile"
        for r in reductions:
            if tuple(g.attrs(r)["axes"]) != self.axes or \
                    not same_shape(self.shape(g.args(r)[0]), self.domain):
                raise NotImplementedError(f"triton backend: reduce kernel {k.name}: "
                                          "reductions differ in domain or axes")
        after = epilogue_of(g, k)
        init, loop, tail, stores = [], [], [], []
        for n in k.nodes:
            self.mode = "out" if n in after else "tile"
            if n in reductions:
                init.append(self.accumulator(n))
                loop += self.accumulate(n)
            elif n in after:
                tail += self.statement(n, tuple(self.shape(n)), "out")
            else:
                loop += self.statement(n, self.domain)
        for o in k.outputs:  # a prologue value is stored tile by tile, in the loop
            (stores if o in after or o in reductions else loop).append(self.store(o, after))
        self.reductions = reductions
        return self.assemble(init, loop, tail + stores)

    def assemble(self, init, loop, after) -> tuple:
        """The kernel body around the loop over reduced elements, and its launch (split
        in chunks when the kernel has few programs and its reduced size may be large)."""
        dims = list(self.domain)
        kept_dims = [dims[a] for a in self.kept]
        red_dims = [dims[a] for a in self.axes]

        def index(a):
            part, var = (self.kept, "k") if a in self.kept else (list(self.axes), "m")
            at = part.index(a)
            return f"idx{a} = {_decompose(var, [dims[x] for x in part], at, self.scalar)}"
        kidx = [index(a) for a in sorted(self.index_needed) if a in self.kept]
        midx = [index(a) for a in sorted(self.index_needed) if a not in self.kept]
        n_kept = self.host_scalar(shapes.size(kept_dims))
        n_reduced = self.host_scalar(shapes.size(red_dims))
        self.sizes += [Arg("n_kept", n_kept), Arg("n_reduced", n_reduced)]
        head = ["pid = tl.program_id(0)",
                "k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements",
                "k_mask = k < n_kept"] + kidx + init + [
                "for start in range(0, n_reduced, BLOCK_M):",
                "    m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements",
                "    m_mask = m < n_reduced",
                "    mask = m_mask[:, None] & k_mask[None, :]"]
        body = head + ["    " + line for line in midx + loop] + after
        # BLOCK_K <= 32: a (4096, 4096) column sum still gets 128 programs; a full sum
        # (one kept value) gets BLOCK_K = 1 and so tiles of 4096 reduced elements
        block_k = pow2_text(shapes.size(kept_dims), 1, 32, n_kept, self.ctx)
        hi = str(4096 // int(block_k)) if block_k.isdigit() else f"4096 // {block_k}"
        block_m = pow2_text(shapes.size(red_dims), 16, hi, n_reduced, self.ctx)
        summary = f"{shapes.fmt(self.domain)} over axes {self.axes}, BLOCK_K results per program"
        size_kept, size_reduced = shapes.size(kept_dims), shapes.size(red_dims)
        if isinstance(size_kept, int) and \
                triton_host.cdiv(size_kept, int(block_k)) < SPLIT_BELOW and \
                not (isinstance(size_reduced, int) and size_reduced < 2 * SPLIT_CHUNK):
            # a tile no longer than a chunk (chunks are far longer, but for tests' small ones)
            block_m = pow2_text(size_reduced, 16, str(min(int(hi), SPLIT_CHUNK)), n_reduced,
                                self.ctx)
            return self.split(head[:3] + kidx + init, midx + loop, after,
                              (n_kept, n_reduced, block_k, block_m), summary)
        launch = Launch(self.kernel.name, self.ctx.host("grid_1d", n_kept, block_k),
                        self.host_args(), {"BLOCK_K": block_k, "BLOCK_M": block_m})
        return self.function(["BLOCK_K", "BLOCK_M"], body, summary), launch

    def split(self, head, loop, after, sizes, summary) -> tuple:
        """The chunked kernel (grid: kept blocks x chunks) and its finish kernel, which
        reads the same arguments; both launched by the host lines in the Launch. `sizes`:
        host sources of n_kept and n_reduced, and the two block sizes."""
        n_kept, n_reduced, block_k, block_m = sizes
        self.sizes += [Arg("n_splits", "n_splits"), Arg("chunk", "chunk")]
        parts, scratch = [], []
        for r in self.reductions:
            me = self.ident(r)
            self.ptrs.append(Arg(f"{me}_part_ptr", f"{me}_part"))
            parts.append((r, me, f"{me}_part_ptr + split * n_kept + k"))
            scratch.append((f"{me}_part", self.host_shape((MAX_SPLITS, n_kept)),
                            self.dtype(r)))
        chunked = head[:1] + ["split = tl.program_id(1).to(tl.int64)  # chunk of the reduced "
                              "elements"] + head[1:] + [
            "stop = tl.minimum(split * chunk + chunk, n_reduced)",
            "for start in range(split * chunk, stop, BLOCK_M):",
            "    m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements",
            "    m_mask = m < stop",
            "    mask = m_mask[:, None] & k_mask[None, :]"] + ["    " + x for x in loop] + [
            "if n_splits == 1:  # the whole reduction in this program: epilogue and results"
        ] + ["    " + x for x in after] + [
            f"else:  # partial results, one row per chunk: {self.kernel.name}_finish "
            "combines them"] + [f"    tl.store({at}, {me}, mask=k_mask)" for _, me, at in parts]
        finish = head + ["for split in range(0, n_splits):  # in chunk order: deterministic"]
        for r, me, at in parts:
            fn = self.graph.attrs(r)["fn"]
            part = f"tl.load({at}, mask=k_mask, other={neutral(fn, self.dtype(r))})"
            step = fold_step(fn, me, part, self.ctx)
            finish.append(f"    {me} = {step}  # {comment(r)}: its chunks' partial results")
        constexprs = {"BLOCK_K": block_k, "BLOCK_M": block_m}
        programs = f"triton.cdiv({n_kept}, {block_k})"
        then = Launch(f"{self.kernel.name}_finish", f"({programs},)", self.host_args(),
                      constexprs)
        sizes = self.ctx.host("split_sizes", n_reduced, block_m, SPLIT_CHUNK, MAX_SPLITS)
        chunks = (f"n_splits, chunk = {sizes}"
                  f"  # chunks of >= {SPLIT_CHUNK} reduced elements, <= {MAX_SPLITS} of them")
        launch = Launch(self.kernel.name, f"({programs}, n_splits)", self.host_args(),
                        constexprs, prelude=[chunks], then=then, then_if="n_splits > 1",
                        scratch=scratch)
        first = self.function(["BLOCK_K", "BLOCK_M"], chunked, summary + ", in chunks")
        second = self.function(["BLOCK_K", "BLOCK_M"], finish + after,
                               f"of {self.kernel.name}'s chunks: partial results combined, "
                               "then the epilogue", name=f"{self.kernel.name}_finish")
        return first + "\n\n" + second, launch

    def accumulator(self, n) -> str:
        """A reduction's BLOCK_K partial results, starting at the neutral value."""
        a = self.graph.attrs(n)
        me = self.ident(n)
        self.values[n] = me
        tl_dtype = TL_DTYPE.get(a["dtype"], "tl.float32")
        return f"{me} = tl.full((BLOCK_K,), {neutral(a['fn'], a['dtype'])}, {tl_dtype})"

    def accumulate(self, n) -> list:
        """One tile folded into a reduction's accumulators (masked lanes neutral)."""
        a = self.graph.attrs(n)
        x = self.graph.args(n)[0]
        value = self.member_value(x)
        lines, value = ([], value) if value is not None else self.load(x, self.domain)
        me = self.ident(n)
        masked = f"tl.where(mask, {value}, {neutral(a['fn'], a['dtype'])})"
        part = reduce_call(a["fn"], masked, 0, self.ctx)
        step = fold_step(a["fn"], me, part, self.ctx)
        return lines + [f"{me} = {step}  # {comment(n)} = "
                        f"{comment(describe(self.graph, n), 100)}"]

    def store(self, o, after) -> str:
        """Results and epilogues at k; a stored prologue value tile by tile."""
        if o in after or self.graph.attrs(o)["op"] == "reduce":
            return f"tl.store({self.pointer(o)} + k, {self.values[o]}, mask=k_mask)"
        self.mode = "tile"
        offset, mask = self.address(o, self.domain)
        return f"tl.store({self.pointer(o)} + {offset}, {self.values[o]}, mask={mask})"

    def alias_ok(self, base, view) -> bool:
        """After the loop, values are indexed by k alone: a reshape that only adds or drops
        1-sized axes of a result is the same value."""
        if self.graph.attrs(base)["op"] == "reduce" or self.mode == "out":
            return squeezed(self.shape(base)) == squeezed(self.shape(view))
        return super().alias_ok(base, view)

    def out_axes(self, target) -> dict:
        """Axes of an epilogue shape (the result's, maybe with other 1s) -> kept axes."""
        outer = [j for j, d in enumerate(target) if d != 1]
        kept = [a for a in self.kept if self.domain[a] != 1]
        if len(outer) != len(kept) or not all(
                shapes.same_dim(target[j], self.domain[a]) for j, a in zip(outer, kept)):
            raise NotImplementedError(f"triton backend: reduce kernel {self.kernel.name}: "
                                      f"epilogue shape {shapes.fmt(target)} is not the "
                                      "result's")
        return dict(zip(outer, kept))

    def axis_index(self, axis, target):
        if self.mode == "out":
            axis = self.out_axes(target)[axis]
        self.index_needed.add(axis)
        return f"idx{axis}", ("k" if axis in self.kept else "m")

    def combine(self, parts):
        m, k = parts.get("m"), parts.get("k")
        if self.mode == "out":   # 1-D over the kept elements
            return (" + ".join(k), "k_mask") if k else (None, None)
        return tile_offset(m, k, "m_mask", "k_mask")
