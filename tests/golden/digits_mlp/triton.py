"""graphc: generated Triton code for digits_mlp: training step.

Inputs:  x (N, 64) float32, y (N,) int64
Outputs: loss () float32
Updates: l1_W_velocity (in place), l1_W (in place), l1_b_velocity (in place), l1_b (in place), l2_W_velocity (in place), l2_W (in place), l2_b_velocity (in place), l2_b (in place)
13 kernels (5 matmul, 4 elementwise, 1 rows, 3 reduce), launched in this order by run().
Target:  CUDA (compiled Triton kernels, cuBLAS matmuls through torch).
Regenerate from the graph rather than editing this file.
"""
import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from graphc.triton_host import grid_1d, pow2_block, split_sizes

DEVICE = 'cuda'
DIMS = ('N',)
INPUTS = ('x', 'y')
OUTPUTS = ('loss',)
KERNELS = (  # name, kind, member nodes: in launch order
    ('matmul_0', 'matmul', ('l1_mm',)),
    ('fused_add_tanh_1', 'elementwise', ('tanh_0',)),
    ('matmul_2', 'matmul', ('l2_mm',)),
    ('rows_max_exp_sum_where_3', 'rows', ('l2', 'max_1', 'exp_3', 'sum_4', 'pick_7', 'sum_8', 'nll_9', 'd_sum_4', 'd_sub_2')),
    ('matmul_4', 'matmul', ('d_tanh_0',)),
    ('matmul_5', 'matmul', ('d_l2_W',)),
    ('fused_pow_mul_add_6', 'elementwise', ('d_l1',)),
    ('matmul_7', 'matmul', ('d_l1_W',)),
    ('reduce_sum_div_mul_8', 'reduce', ('sum_10', 'loss')),
    ('reduce_sum_mul_add_9', 'reduce', ('d_l2_b', 'l2_b_velocity_new', 'l2_b_new')),
    ('reduce_sum_mul_add_10', 'reduce', ('d_l1_b', 'l1_b_velocity_new', 'l1_b_new')),
    ('fused_mul_add_11', 'elementwise', ('l1_W_velocity_new', 'l1_W_new')),
    ('fused_mul_add_12', 'elementwise', ('l2_W_velocity_new', 'l2_W_new')),
)


@triton.jit
def maximum_nan(a, b):
    """max that keeps NaN, as torch.amax (tl.maximum's default drops it)."""
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


# ---- fused_add_tanh_1: elementwise over (N, 128), BLOCK elements per program
# nodes: tanh_0
# merged into tanh_0: l1 = l1_b + l1_mm
# stores: tanh_0
#   tanh_0 = tanh(l1_b + l1_mm)
@triton.jit
def fused_add_tanh_1(l1_mm_ptr, l1_b_ptr, tanh_0_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    idx1 = offsets % 128
    l1_mm = tl.load(l1_mm_ptr + offsets, mask=mask)  # l1_mm
    l1_b = tl.load(l1_b_ptr + idx1, mask=mask)  # l1_b
    tanh_0 = libdevice.tanh(l1_mm + l1_b)  # tanh_0 = tanh(l1_b + l1_mm)
    tl.store(tanh_0_ptr + offsets, tanh_0, mask=mask)


# ---- rows_max_exp_sum_where_3: rows over (N, 10), one program per row
# nodes: l2, max_1, exp_3, sum_4, pick_7, sum_8, nll_9, d_sum_4, d_sub_2
# merged into exp_3: sub_2 = l2 - max_1
# merged into pick_7: sub_2 = l2 - max_1
# merged into d_sub_2: d_sum_10 = 1/N
# merged into d_sub_2: d_sum_8 = -1/N
# merged into d_sub_2: d_pick_7_x2 = Piecewise((-1/N, Eq(iota_6, reshape_5)), (0, True))
# merged into d_sub_2: d_exp_3_x0 = d_sum_4*exp_3
# stores: nll_9, d_sub_2
#   nll_9 = -sum(Piecewise(((l2_b + l2_mm) - max((l2_b + l2_mm)), Eq(iota_6, reshape_5)), (0, True))) + log(sum(exp((l2_b + l2_mm...
#   d_sub_2 = (1/(N*sum(exp((l2_b + l2_mm) - max((l2_b + l2_mm))))))*exp((l2_b + l2_mm) - max((l2_b + l2_mm))) + Piecewise((-1/N, E...
@triton.jit
def rows_max_exp_sum_where_3(l2_mm_ptr, l2_b_ptr, reshape_5_ptr, nll_9_ptr, d_sub_2_ptr, n_cols, N, BLOCK_C: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # int64: row * n_cols may pass 2**31
    cols = tl.arange(0, BLOCK_C).to(tl.int64)
    mask = cols < n_cols
    l2_mm = tl.load(l2_mm_ptr + row * n_cols + cols, mask=mask)  # l2_mm
    l2_b = tl.load(l2_b_ptr + cols, mask=mask)  # l2_b
    l2 = l2_mm + l2_b  # l2 = l2_b + l2_mm
    max_1 = tl.reduce(tl.where(mask, l2, float("-inf")), 0, maximum_nan)  # max_1 = max(l2, axes=(1,), keepdims)
    exp_3 = tl.exp(l2 - max_1)  # exp_3 = exp(l2 - max_1)
    sum_4 = tl.sum(tl.where(mask, exp_3, 0.0), axis=0)  # sum_4 = sum(exp_3, axes=(1,), keepdims)
    reshape_5 = tl.load(reshape_5_ptr + row)  # reshape_5
    iota_6 = cols.to(tl.int64)  # iota_6
    pick_7 = tl.where((reshape_5 == iota_6), l2 - max_1, 0)  # pick_7 = Piecewise((l2 - max_1, Eq(iota_6, reshape_5)), (0, True))
    sum_8 = tl.sum(tl.where(mask, pick_7, 0.0), axis=0)  # sum_8 = sum(pick_7, axes=(1,), keepdims)
    nll_9 = -sum_8 + tl.log(sum_4)  # nll_9 = -sum_8 + log(sum_4)
    d_sum_4 = 1/(N*sum_4)  # d_sum_4 = 1/(N*sum_4)
    d_sub_2 = d_sum_4*exp_3 + tl.where((reshape_5 == iota_6), -1/N, 0)  # d_sub_2 = d_sum_4*exp_3 + Piecewise((-1/N, Eq(iota_6, reshape_5)), (0, True))
    tl.store(nll_9_ptr + row, nll_9)
    tl.store(d_sub_2_ptr + row * n_cols + cols, d_sub_2, mask=mask)


# ---- fused_pow_mul_add_6: elementwise over (N, 128), BLOCK elements per program
# nodes: d_l1
# stores: d_l1
#   d_l1 = d_tanh_0*(1 - tanh_0**2)
@triton.jit
def fused_pow_mul_add_6(d_tanh_0_ptr, tanh_0_ptr, d_l1_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    d_tanh_0 = tl.load(d_tanh_0_ptr + offsets, mask=mask)  # d_tanh_0
    tanh_0 = tl.load(tanh_0_ptr + offsets, mask=mask)  # tanh_0
    d_l1 = d_tanh_0*(1 - (tanh_0 * tanh_0))  # d_l1 = d_tanh_0*(1 - tanh_0**2)
    tl.store(d_l1_ptr + offsets, d_l1, mask=mask)


# ---- reduce_sum_div_mul_8: reduce (N, 1) over axes (0, 1), BLOCK_K results per program, in chunks
# nodes: sum_10, loss
# stores: loss
#   loss = sum(nll_9)/N
@triton.jit
def reduce_sum_div_mul_8(nll_9_ptr, loss_ptr, sum_10_part_ptr, n_kept, n_reduced, n_splits, chunk, N, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    split = tl.program_id(1).to(tl.int64)  # chunk of the reduced elements
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    sum_10 = tl.full((BLOCK_K,), 0.0, tl.float32)
    stop = tl.minimum(split * chunk + chunk, n_reduced)
    for start in range(split * chunk, stop, BLOCK_M):
        m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements
        m_mask = m < stop
        mask = m_mask[:, None] & k_mask[None, :]
        idx0 = m
        nll_9 = tl.load(nll_9_ptr + idx0[:, None], mask=m_mask[:, None])  # nll_9
        sum_10 = sum_10 + tl.sum(tl.where(mask, nll_9, 0.0), axis=0)  # sum_10 = sum(nll_9, axes=(0, 1))
    if n_splits == 1:  # the whole reduction in this program: epilogue and results
        loss = sum_10/N  # loss = sum_10/N
        tl.store(loss_ptr + k, loss, mask=k_mask)
    else:  # partial results, one row per chunk: reduce_sum_div_mul_8_finish combines them
        tl.store(sum_10_part_ptr + split * n_kept + k, sum_10, mask=k_mask)


# ---- reduce_sum_div_mul_8_finish: reduce of reduce_sum_div_mul_8's chunks: partial results combined, then the epilogue
# nodes: sum_10, loss
# stores: loss
#   loss = sum(nll_9)/N
@triton.jit
def reduce_sum_div_mul_8_finish(nll_9_ptr, loss_ptr, sum_10_part_ptr, n_kept, n_reduced, n_splits, chunk, N, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    sum_10 = tl.full((BLOCK_K,), 0.0, tl.float32)
    for split in range(0, n_splits):  # in chunk order: deterministic
        sum_10 = sum_10 + tl.load(sum_10_part_ptr + split * n_kept + k, mask=k_mask, other=0.0)  # sum_10: its chunks' partial results
    loss = sum_10/N  # loss = sum_10/N
    tl.store(loss_ptr + k, loss, mask=k_mask)


# ---- reduce_sum_mul_add_9: reduce (N, 10) over axes (0,), BLOCK_K results per program, in chunks
# nodes: d_l2_b, l2_b_velocity_new, l2_b_new
# stores: l2_b_velocity_new, l2_b_new
#   l2_b_velocity_new = 0.9*l2_b_velocity + sum(d_sub_2)
#   l2_b_new = -(0.9*l2_b_velocity + sum(d_sub_2))*lr + l2_b
@triton.jit
def reduce_sum_mul_add_9(d_sub_2_ptr, l2_b_velocity_ptr, l2_b_ptr, lr_ptr, l2_b_velocity_new_ptr, l2_b_new_ptr, d_l2_b_part_ptr, n_kept, n_reduced, n_splits, chunk, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    split = tl.program_id(1).to(tl.int64)  # chunk of the reduced elements
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    idx1 = k
    d_l2_b = tl.full((BLOCK_K,), 0.0, tl.float32)
    stop = tl.minimum(split * chunk + chunk, n_reduced)
    for start in range(split * chunk, stop, BLOCK_M):
        m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements
        m_mask = m < stop
        mask = m_mask[:, None] & k_mask[None, :]
        idx0 = m
        d_sub_2 = tl.load(d_sub_2_ptr + (idx0 * 10)[:, None] + idx1[None, :], mask=mask)  # d_sub_2
        d_l2_b = d_l2_b + tl.sum(tl.where(mask, d_sub_2, 0.0), axis=0)  # d_l2_b = sum(d_sub_2, axes=(0,))
    if n_splits == 1:  # the whole reduction in this program: epilogue and results
        l2_b_velocity = tl.load(l2_b_velocity_ptr + idx1, mask=k_mask)  # l2_b_velocity
        l2_b_velocity_new = 0.9*l2_b_velocity + d_l2_b  # l2_b_velocity_new = d_l2_b + 0.9*l2_b_velocity
        l2_b = tl.load(l2_b_ptr + idx1, mask=k_mask)  # l2_b
        lr = tl.load(lr_ptr)  # lr
        l2_b_new = l2_b - l2_b_velocity_new*lr  # l2_b_new = l2_b - l2_b_velocity_new*lr
        tl.store(l2_b_velocity_new_ptr + k, l2_b_velocity_new, mask=k_mask)
        tl.store(l2_b_new_ptr + k, l2_b_new, mask=k_mask)
    else:  # partial results, one row per chunk: reduce_sum_mul_add_9_finish combines them
        tl.store(d_l2_b_part_ptr + split * n_kept + k, d_l2_b, mask=k_mask)


# ---- reduce_sum_mul_add_9_finish: reduce of reduce_sum_mul_add_9's chunks: partial results combined, then the epilogue
# nodes: d_l2_b, l2_b_velocity_new, l2_b_new
# stores: l2_b_velocity_new, l2_b_new
#   l2_b_velocity_new = 0.9*l2_b_velocity + sum(d_sub_2)
#   l2_b_new = -(0.9*l2_b_velocity + sum(d_sub_2))*lr + l2_b
@triton.jit
def reduce_sum_mul_add_9_finish(d_sub_2_ptr, l2_b_velocity_ptr, l2_b_ptr, lr_ptr, l2_b_velocity_new_ptr, l2_b_new_ptr, d_l2_b_part_ptr, n_kept, n_reduced, n_splits, chunk, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    idx1 = k
    d_l2_b = tl.full((BLOCK_K,), 0.0, tl.float32)
    for split in range(0, n_splits):  # in chunk order: deterministic
        d_l2_b = d_l2_b + tl.load(d_l2_b_part_ptr + split * n_kept + k, mask=k_mask, other=0.0)  # d_l2_b: its chunks' partial results
    l2_b_velocity = tl.load(l2_b_velocity_ptr + idx1, mask=k_mask)  # l2_b_velocity
    l2_b_velocity_new = 0.9*l2_b_velocity + d_l2_b  # l2_b_velocity_new = d_l2_b + 0.9*l2_b_velocity
    l2_b = tl.load(l2_b_ptr + idx1, mask=k_mask)  # l2_b
    lr = tl.load(lr_ptr)  # lr
    l2_b_new = l2_b - l2_b_velocity_new*lr  # l2_b_new = l2_b - l2_b_velocity_new*lr
    tl.store(l2_b_velocity_new_ptr + k, l2_b_velocity_new, mask=k_mask)
    tl.store(l2_b_new_ptr + k, l2_b_new, mask=k_mask)


# ---- reduce_sum_mul_add_10: reduce (N, 128) over axes (0,), BLOCK_K results per program, in chunks
# nodes: d_l1_b, l1_b_velocity_new, l1_b_new
# stores: l1_b_velocity_new, l1_b_new
#   l1_b_velocity_new = 0.9*l1_b_velocity + sum(d_l1)
#   l1_b_new = -(0.9*l1_b_velocity + sum(d_l1))*lr + l1_b
@triton.jit
def reduce_sum_mul_add_10(d_l1_ptr, l1_b_velocity_ptr, l1_b_ptr, lr_ptr, l1_b_velocity_new_ptr, l1_b_new_ptr, d_l1_b_part_ptr, n_kept, n_reduced, n_splits, chunk, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    split = tl.program_id(1).to(tl.int64)  # chunk of the reduced elements
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    idx1 = k
    d_l1_b = tl.full((BLOCK_K,), 0.0, tl.float32)
    stop = tl.minimum(split * chunk + chunk, n_reduced)
    for start in range(split * chunk, stop, BLOCK_M):
        m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements
        m_mask = m < stop
        mask = m_mask[:, None] & k_mask[None, :]
        idx0 = m
        d_l1 = tl.load(d_l1_ptr + (idx0 * 128)[:, None] + idx1[None, :], mask=mask)  # d_l1
        d_l1_b = d_l1_b + tl.sum(tl.where(mask, d_l1, 0.0), axis=0)  # d_l1_b = sum(d_l1, axes=(0,))
    if n_splits == 1:  # the whole reduction in this program: epilogue and results
        l1_b_velocity = tl.load(l1_b_velocity_ptr + idx1, mask=k_mask)  # l1_b_velocity
        l1_b_velocity_new = 0.9*l1_b_velocity + d_l1_b  # l1_b_velocity_new = d_l1_b + 0.9*l1_b_velocity
        l1_b = tl.load(l1_b_ptr + idx1, mask=k_mask)  # l1_b
        lr = tl.load(lr_ptr)  # lr
        l1_b_new = l1_b - l1_b_velocity_new*lr  # l1_b_new = l1_b - l1_b_velocity_new*lr
        tl.store(l1_b_velocity_new_ptr + k, l1_b_velocity_new, mask=k_mask)
        tl.store(l1_b_new_ptr + k, l1_b_new, mask=k_mask)
    else:  # partial results, one row per chunk: reduce_sum_mul_add_10_finish combines them
        tl.store(d_l1_b_part_ptr + split * n_kept + k, d_l1_b, mask=k_mask)


# ---- reduce_sum_mul_add_10_finish: reduce of reduce_sum_mul_add_10's chunks: partial results combined, then the epilogue
# nodes: d_l1_b, l1_b_velocity_new, l1_b_new
# stores: l1_b_velocity_new, l1_b_new
#   l1_b_velocity_new = 0.9*l1_b_velocity + sum(d_l1)
#   l1_b_new = -(0.9*l1_b_velocity + sum(d_l1))*lr + l1_b
@triton.jit
def reduce_sum_mul_add_10_finish(d_l1_ptr, l1_b_velocity_ptr, l1_b_ptr, lr_ptr, l1_b_velocity_new_ptr, l1_b_new_ptr, d_l1_b_part_ptr, n_kept, n_reduced, n_splits, chunk, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    idx1 = k
    d_l1_b = tl.full((BLOCK_K,), 0.0, tl.float32)
    for split in range(0, n_splits):  # in chunk order: deterministic
        d_l1_b = d_l1_b + tl.load(d_l1_b_part_ptr + split * n_kept + k, mask=k_mask, other=0.0)  # d_l1_b: its chunks' partial results
    l1_b_velocity = tl.load(l1_b_velocity_ptr + idx1, mask=k_mask)  # l1_b_velocity
    l1_b_velocity_new = 0.9*l1_b_velocity + d_l1_b  # l1_b_velocity_new = d_l1_b + 0.9*l1_b_velocity
    l1_b = tl.load(l1_b_ptr + idx1, mask=k_mask)  # l1_b
    lr = tl.load(lr_ptr)  # lr
    l1_b_new = l1_b - l1_b_velocity_new*lr  # l1_b_new = l1_b - l1_b_velocity_new*lr
    tl.store(l1_b_velocity_new_ptr + k, l1_b_velocity_new, mask=k_mask)
    tl.store(l1_b_new_ptr + k, l1_b_new, mask=k_mask)


# ---- fused_mul_add_11: elementwise over (64, 128), BLOCK elements per program
# nodes: l1_W_velocity_new, l1_W_new
# stores: l1_W_velocity_new, l1_W_new
#   l1_W_velocity_new = d_l1_W + 0.9*l1_W_velocity
#   l1_W_new = -(d_l1_W + 0.9*l1_W_velocity)*lr + l1_W
@triton.jit
def fused_mul_add_11(l1_W_velocity_ptr, d_l1_W_ptr, l1_W_ptr, lr_ptr, l1_W_velocity_new_ptr, l1_W_new_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    l1_W_velocity = tl.load(l1_W_velocity_ptr + offsets, mask=mask)  # l1_W_velocity
    d_l1_W = tl.load(d_l1_W_ptr + offsets, mask=mask)  # d_l1_W
    l1_W_velocity_new = 0.9*l1_W_velocity + d_l1_W  # l1_W_velocity_new = d_l1_W + 0.9*l1_W_velocity
    l1_W = tl.load(l1_W_ptr + offsets, mask=mask)  # l1_W
    lr = tl.load(lr_ptr)  # lr
    l1_W_new = l1_W - l1_W_velocity_new*lr  # l1_W_new = l1_W - l1_W_velocity_new*lr
    tl.store(l1_W_velocity_new_ptr + offsets, l1_W_velocity_new, mask=mask)
    tl.store(l1_W_new_ptr + offsets, l1_W_new, mask=mask)


# ---- fused_mul_add_12: elementwise over (128, 10), BLOCK elements per program
# nodes: l2_W_velocity_new, l2_W_new
# stores: l2_W_velocity_new, l2_W_new
#   l2_W_velocity_new = d_l2_W + 0.9*l2_W_velocity
#   l2_W_new = -(d_l2_W + 0.9*l2_W_velocity)*lr + l2_W
@triton.jit
def fused_mul_add_12(l2_W_velocity_ptr, d_l2_W_ptr, l2_W_ptr, lr_ptr, l2_W_velocity_new_ptr, l2_W_new_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    l2_W_velocity = tl.load(l2_W_velocity_ptr + offsets, mask=mask)  # l2_W_velocity
    d_l2_W = tl.load(d_l2_W_ptr + offsets, mask=mask)  # d_l2_W
    l2_W_velocity_new = 0.9*l2_W_velocity + d_l2_W  # l2_W_velocity_new = d_l2_W + 0.9*l2_W_velocity
    l2_W = tl.load(l2_W_ptr + offsets, mask=mask)  # l2_W
    lr = tl.load(lr_ptr)  # lr
    l2_W_new = l2_W - l2_W_velocity_new*lr  # l2_W_new = l2_W - l2_W_velocity_new*lr
    tl.store(l2_W_velocity_new_ptr + offsets, l2_W_velocity_new, mask=mask)
    tl.store(l2_W_new_ptr + offsets, l2_W_new, mask=mask)


def allocate(N):
    """Every buffer of `run` for one set of dimensions (made once, reused)."""
    return [
        torch.empty((N, 128), dtype=torch.float32, device=DEVICE),  # 0: l1_mm, d_tanh_0
        torch.empty((N, 128), dtype=torch.float32, device=DEVICE),  # 1: tanh_0
        torch.empty((N, 10), dtype=torch.float32, device=DEVICE),  # 2: l2_mm
        torch.empty((N, 1), dtype=torch.float32, device=DEVICE),  # 3: nll_9
        torch.empty((N, 10), dtype=torch.float32, device=DEVICE),  # 4: d_sub_2
        torch.empty((128, 10), dtype=torch.float32, device=DEVICE),  # 5: d_l2_W
        torch.empty((N, 128), dtype=torch.float32, device=DEVICE),  # 6: d_l1
        torch.empty((64, 128), dtype=torch.float32, device=DEVICE),  # 7: d_l1_W
        torch.empty((), dtype=torch.float32, device=DEVICE),  # 8: loss
        torch.empty((256, 1), dtype=torch.float32, device=DEVICE),  # 9: sum_10_part, scratch
        torch.empty((256, 10), dtype=torch.float32, device=DEVICE),  # 10: d_l2_b_part, scratch
        torch.empty((256, 128), dtype=torch.float32, device=DEVICE),  # 11: d_l1_b_part, scratch
    ]


def run(x, y, p, c, buf):
    """One evaluation: torch tensors in (contiguous, on DEVICE), torch tensors out."""
    N = x.shape[0]
    l1_W = p['l1_W']
    l1_b = p['l1_b']
    l2_W = p['l2_W']
    l2_b = p['l2_b']
    lr = p['lr']
    l1_W_velocity = p['l1_W_velocity']
    l1_b_velocity = p['l1_b_velocity']
    l2_W_velocity = p['l2_W_velocity']
    l2_b_velocity = p['l2_b_velocity']
    sum_10_part = buf[9]
    d_l2_b_part = buf[10]
    d_l1_b_part = buf[11]
    l1_mm = buf[0]
    tanh_0 = buf[1]
    l2_mm = buf[2]
    nll_9 = buf[3]
    d_sub_2 = buf[4]
    d_tanh_0 = buf[0]
    d_l2_W = buf[5]
    d_l1 = buf[6]
    d_l1_W = buf[7]
    loss = buf[8]
    l2_b_velocity_new = l2_b_velocity  # new l2_b_velocity, written in place
    l2_b_new = l2_b  # new l2_b, written in place
    l1_b_velocity_new = l1_b_velocity  # new l1_b_velocity, written in place
    l1_b_new = l1_b  # new l1_b, written in place
    l1_W_velocity_new = l1_W_velocity  # new l1_W_velocity, written in place
    l1_W_new = l1_W  # new l1_W, written in place
    l2_W_velocity_new = l2_W_velocity  # new l2_W_velocity, written in place
    l2_W_new = l2_W  # new l2_W, written in place
    # matmul_0 (matmul): l1_mm = x @ l1_W
    torch.matmul(x, l1_W, out=l1_mm)
    # fused_add_tanh_1 (elementwise): tanh_0
    fused_add_tanh_1[grid_1d(128*N, 1024)](l1_mm, l1_b, tanh_0, 128*N, BLOCK=1024)
    # matmul_2 (matmul): l2_mm = tanh_0 @ l2_W
    torch.matmul(tanh_0, l2_W, out=l2_mm)
    reshape_5 = y.reshape((N, 1))  # reshape_5
    # rows_max_exp_sum_where_3 (rows): l2, max_1, exp_3, sum_4, pick_7, sum_8, nll_9, d_sum_4, d_sub_2
    rows_max_exp_sum_where_3[(N,)](
        l2_mm, l2_b, reshape_5, nll_9, d_sub_2, 10, N, BLOCK_C=16, num_warps=4)
    l2_W_T = l2_W.permute((1, 0))  # l2_W_T
    # matmul_4 (matmul): d_tanh_0 = d_sub_2 @ l2_W_T
    torch.matmul(d_sub_2, l2_W_T, out=d_tanh_0)
    tanh_0_T = tanh_0.permute((1, 0))  # tanh_0_T
    # matmul_5 (matmul): d_l2_W = tanh_0_T @ d_sub_2
    torch.matmul(tanh_0_T, d_sub_2, out=d_l2_W)
    # fused_pow_mul_add_6 (elementwise): d_l1
    fused_pow_mul_add_6[grid_1d(128*N, 1024)](d_tanh_0, tanh_0, d_l1, 128*N, BLOCK=1024)
    x_T = x.permute((1, 0))  # x_T
    # matmul_7 (matmul): d_l1_W = x_T @ d_l1
    torch.matmul(x_T, d_l1, out=d_l1_W)
    # reduce_sum_div_mul_8 (reduce): sum_10, loss
    n_splits, chunk = split_sizes(N, pow2_block(N, 16, 4096), 32768, 256)  # chunks of >= 32768 reduced elements, <= 256 of them
    reduce_sum_div_mul_8[(triton.cdiv(1, 1), n_splits)](
        nll_9, loss, sum_10_part, 1, N, n_splits, chunk, N, BLOCK_K=1,
        BLOCK_M=pow2_block(N, 16, 4096))
    if n_splits > 1:
        reduce_sum_div_mul_8_finish[(triton.cdiv(1, 1),)](
            nll_9, loss, sum_10_part, 1, N, n_splits, chunk, N, BLOCK_K=1,
            BLOCK_M=pow2_block(N, 16, 4096))
    # reduce_sum_mul_add_9 (reduce): d_l2_b, l2_b_velocity_new, l2_b_new
    n_splits, chunk = split_sizes(N, pow2_block(N, 16, 256), 32768, 256)  # chunks of >= 32768 reduced elements, <= 256 of them
    reduce_sum_mul_add_9[(triton.cdiv(10, 16), n_splits)](
        d_sub_2, l2_b_velocity, l2_b, lr, l2_b_velocity_new, l2_b_new, d_l2_b_part, 10, N,
        n_splits, chunk, BLOCK_K=16, BLOCK_M=pow2_block(N, 16, 256))
    if n_splits > 1:
        reduce_sum_mul_add_9_finish[(triton.cdiv(10, 16),)](
            d_sub_2, l2_b_velocity, l2_b, lr, l2_b_velocity_new, l2_b_new, d_l2_b_part, 10, N,
            n_splits, chunk, BLOCK_K=16, BLOCK_M=pow2_block(N, 16, 256))
    # reduce_sum_mul_add_10 (reduce): d_l1_b, l1_b_velocity_new, l1_b_new
    n_splits, chunk = split_sizes(N, pow2_block(N, 16, 128), 32768, 256)  # chunks of >= 32768 reduced elements, <= 256 of them
    reduce_sum_mul_add_10[(triton.cdiv(128, 32), n_splits)](
        d_l1, l1_b_velocity, l1_b, lr, l1_b_velocity_new, l1_b_new, d_l1_b_part, 128, N, n_splits,
        chunk, BLOCK_K=32, BLOCK_M=pow2_block(N, 16, 128))
    if n_splits > 1:
        reduce_sum_mul_add_10_finish[(triton.cdiv(128, 32),)](
            d_l1, l1_b_velocity, l1_b, lr, l1_b_velocity_new, l1_b_new, d_l1_b_part, 128, N, n_splits,
            chunk, BLOCK_K=32, BLOCK_M=pow2_block(N, 16, 128))
    # fused_mul_add_11 (elementwise): l1_W_velocity_new, l1_W_new
    fused_mul_add_11[grid_1d(8192, 1024)](
        l1_W_velocity, d_l1_W, l1_W, lr, l1_W_velocity_new, l1_W_new, 8192, BLOCK=1024)
    # fused_mul_add_12 (elementwise): l2_W_velocity_new, l2_W_new
    fused_mul_add_12[grid_1d(1280, 1024)](
        l2_W_velocity, d_l2_W, l2_W, lr, l2_W_velocity_new, l2_W_new, 1280, BLOCK=1024)
    return (loss,)
