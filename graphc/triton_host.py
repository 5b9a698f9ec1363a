"""Host-side helpers of generated Triton modules: launch grids, block sizes, warps, autotune
pruning and split-reduction sizes. One definition, read by the Triton printer for sizes known
when it prints and imported by the generated modules for sizes known only at launch.
Plain Python: it imports neither torch nor triton (it runs without a GPU)."""
from __future__ import annotations

# what generated modules may import from here: no node's identifier may take these names
HELPERS = ("grid_1d", "tile_grid", "pow2_block", "row_warps", "prune_tiles", "split_sizes",
           "broadcast_strides")


def cdiv(n: int, d: int) -> int:
    """ceil(n / d) for n >= 0, d > 0, as triton.cdiv."""
    return -(-n // d)


def next_pow2(n: int) -> int:
    """The least power of two >= n (1 for n <= 1)."""
    return 1 << max(0, n - 1).bit_length()


def grid_1d(n: int, block: int) -> tuple:
    """A 1-D grid of ceil(n / block) programs."""
    return (cdiv(n, block),)


def tile_grid(n_rows: int, n_cols: int):
    """A matmul's grid: one program per (BLOCK_M, BLOCK_N) tile, sizes from its config."""
    return lambda meta: (cdiv(n_rows, meta["BLOCK_M"]) * cdiv(n_cols, meta["BLOCK_N"]),)


def pow2_block(n: int, lo: int, hi: int) -> int:
    """A block size: the power of two >= n, clamped to [lo, hi]."""
    return max(lo, min(hi, next_pow2(n)))


def row_warps(block: int) -> int:
    """Warps per row program, as in Triton's fused-softmax tutorial."""
    return 4 if block < 2048 else 8 if block < 4096 else 16


def prune_tiles(configs, named_args, **kwargs) -> list:
    """Autotune only tiles that fit the result: none over twice its padded size along an
    axis (they compute padding), the smallest tile if every config is that large."""
    rows, cols = next_pow2(named_args["n_rows"]), next_pow2(named_args["n_cols"])
    fit = [c for c in configs
           if c.kwargs["BLOCK_M"] <= 2 * rows and c.kwargs["BLOCK_N"] <= 2 * cols]
    return fit or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]


def broadcast_strides(t, shape) -> tuple:
    """Element strides of tensor `t` broadcast to `shape` (0 along broadcast axes)."""
    return t.expand(shape).stride()


def split_sizes(n_reduced: int, block_m: int, least: int, most: int) -> tuple:
    """(chunks, elements per chunk) for a long reduction of few programs: chunks of at
    least `least` elements (whole BLOCK_M tiles when that is more), at most `most` chunks;
    (1, n_reduced) when it is short."""
    if n_reduced < 2 * least:
        return 1, n_reduced
    chunk = cdiv(n_reduced, min(most, n_reduced // least))
    if chunk >= block_m:   # no half-masked tile inside a chunk, only at the end
        chunk = cdiv(chunk, block_m) * block_m
    return cdiv(n_reduced, chunk), chunk
