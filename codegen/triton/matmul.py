"""The matmul template: C = A @ B over (BLOCK_M, BLOCK_N) tiles of C, looping over the
inner axis in steps of BLOCK_K (Triton's matmul tutorial, with its grouped program order
for L2 reuse), then the kernel's epilogue maps (bias add, activation, the derivative the
backward reads, an optimizer update) on the accumulator tile before one store: the
pre-activation touches memory only when another kernel reads it.
"""
from __future__ import annotations

from graphc.printing import describe

from ..common import comment
from .addressing import Arg, KernelWriter, tile_offset
from .kernels import Launch, pow2_text

GROUP_M = 8   # tile rows per group: their programs share B's column tiles in L2
# (BLOCK_M, BLOCK_N, BLOCK_K, num_stages, num_warps), autotuned per (n_rows, n_cols,
# n_inner) on a GPU: the tutorial's shapes with BLOCK_K = 32, so float32 tiles of every
# stage fit in an H100's shared memory (at most 150 KB); the interpreter takes one small tile
CONFIGS = [(128, 256, 32, 3, 8), (256, 128, 32, 3, 8), (128, 128, 32, 3, 8),
           (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (64, 32, 32, 5, 2)]


def autotune_decorator(restore: list, configs=CONFIGS) -> list:
    """`@triton.autotune(...)` over CONFIGS, keyed by the three matmul sizes; `restore`:
    pointers of parameters updated in place, put back after each timing run."""
    lines = ["@triton.autotune(configs=["]
    for bm, bn, bk, stages, warps in configs:
        lines.append(f"    triton.Config({{'BLOCK_M': {bm}, 'BLOCK_N': {bn}, 'BLOCK_K': {bk}}}, "
                     f"num_stages={stages}, num_warps={warps}),")
    tail = f", restore_value={restore!r}" if restore else ""
    return lines + [f"], key=['n_rows', 'n_cols', 'n_inner'], "
                    f"prune_configs_by={{'early_config_prune': prune_tiles}}{tail})"]


class Matmul(KernelWriter):
    """A 2-D matmul with its epilogue maps: one program per tile of the result."""

    kind = "matmul"

    def write(self) -> tuple:
        k, g = self.kernel, self.graph
        mm = next(n for n in k.nodes if g.attrs(n)["op"] == "matmul")
        self.domain, self.rank = tuple(self.shape(mm)), 2
        a, b = g.args(mm)
        rows, cols = self.domain
        inner = self.shape(a)[1]
        loop = self.main_loop(mm, a, b)
        body = []
        for n in k.nodes:
            if n != mm:
                body += self.statement(n, self.domain)
        for o in k.outputs:   # row-major (n_rows, n_cols) buffers, either size maybe 1
            body.append(f"tl.store({self.pointer(o)} + rm[:, None] * n_cols + rn[None, :], "
                        f"{self.values[o]}, mask=mask)")
        self.sizes += [Arg("n_rows", self.host_scalar(rows)), Arg("n_cols", self.host_scalar(cols)),
                       Arg("n_inner", self.host_scalar(inner))]
        consts = {"GROUP_M": str(GROUP_M)}
        if not self.ctx.libdevice:   # the interpreter: one tile size, no tuning runs
            consts = {f"BLOCK_{axis}": pow2_text(n, 16, 64, self.host_scalar(n), self.ctx)
                      for axis, n in (("M", rows), ("N", cols), ("K", inner))} | consts
        grid = self.ctx.host("tile_grid", self.host_scalar(rows), self.host_scalar(cols))
        launch = Launch(k.name, grid, self.host_args(), consts)
        tune = []
        if self.ctx.libdevice:   # compiled for a GPU: block sizes by autotuning
            tune = autotune_decorator([self.pointer(o) for o in k.outputs
                                       if o in self.ctx.in_place])
            self.ctx.host_helpers.add("prune_tiles")
        source = self.function(["BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"], loop + body,
                               f"{comment(mm)} = {comment(describe(g, mm), 60)}, "
                               "one program per (BLOCK_M, BLOCK_N) tile, epilogue inside",
                               decorators=tune)
        return source, launch

    def operand(self, node) -> tuple:
        """(pointer, stride names) of a matmul operand: strides from the host, so a
        transposed view (x.T in a weight gradient) is read in place."""
        ptr = self.pointer(node)
        names = [f"{self.ident(node)}_stride{i}" for i in range(2)]
        arg = Arg(", ".join(names), f"*{self.ident(node)}.stride()")
        if all(s.name != arg.name for s in self.strides):
            self.strides.append(arg)
        return ptr, names

    def main_loop(self, mm, a, b) -> list:
        """Program -> tile (grouped order), then acc += A tile @ B tile over the inner axis."""
        (a_ptr, (a0, a1)), (b_ptr, (b0, b1)) = self.operand(a), self.operand(b)
        a_tile, b_tile = "a_tile", "b_tile"   # fixed names: x @ x reads one node twice
        precision = self.ctx.matmul_precision
        me = self.ident(mm)
        self.values[mm] = me
        return [
            "pid = tl.program_id(0)",
            "# grouped order: GROUP_M tile rows in turn, so their programs share B tiles in L2",
            "n_tiles_m = tl.cdiv(n_rows, BLOCK_M)",
            "n_tiles_n = tl.cdiv(n_cols, BLOCK_N)",
            "first_m = (pid // (GROUP_M * n_tiles_n)) * GROUP_M",
            "group_rows = tl.minimum(n_tiles_m - first_m, GROUP_M)",
            "tile_m = first_m + (pid % (GROUP_M * n_tiles_n)) % group_rows",
            "tile_n = (pid % (GROUP_M * n_tiles_n)) // group_rows",
            "rm = tile_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # rows of the result",
            "rn = tile_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # its columns",
            "m_mask = rm < n_rows",
            "n_mask = rn < n_cols",
            "acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)",
            "for start in range(0, n_inner, BLOCK_K):",
            "    kk = start + tl.arange(0, BLOCK_K).to(tl.int64)  # the inner axis",
            "    k_mask = kk < n_inner",
            f"    {a_tile} = tl.load({a_ptr} + rm[:, None] * {a0} + kk[None, :] * {a1}, "
            f"mask=m_mask[:, None] & k_mask[None, :], other=0.0)  # {comment(a)}",
            f"    {b_tile} = tl.load({b_ptr} + kk[:, None] * {b0} + rn[None, :] * {b1}, "
            f"mask=k_mask[:, None] & n_mask[None, :], other=0.0)  # {comment(b)}",
            f"    acc = tl.dot({a_tile}, {b_tile}, acc, input_precision={precision!r})"
            f"  # acc += {comment(a)} tile @ {comment(b)} tile",
            "mask = m_mask[:, None] & n_mask[None, :]",
            f"{me} = acc  # {comment(mm)} = {comment(describe(self.graph, mm), 100)}"]

    def axis_index(self, axis, target):
        return ("rm", "m") if axis == 0 else ("rn", "n")

    def combine(self, parts):
        return tile_offset(parts.get("m"), parts.get("n"), "m_mask", "n_mask")
