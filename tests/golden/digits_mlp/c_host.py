"""graphc: generated C host code for digits_mlp: training step.

Inputs:  x (N, 64) float32, y (N,) int64
Outputs: loss () float32
Updates: l1_W_velocity (in place), l1_W (in place), l1_b_velocity (in place), l1_b (in place), l2_W_velocity (in place), l2_W (in place), l2_b_velocity (in place), l2_b (in place)
Kernels: 13, called in this order by run(); their C source is digits_mlp.c beside this file.
Regenerate from the graph rather than editing this file.
"""
import ctypes
from operator import is_
from pathlib import Path

import numpy as np

DIMS = ('N',)
INPUTS = ('x', 'y')
OUTPUTS = ('loss',)
KERNELS = (  # name, kind, member nodes: in call order
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
SIGNATURES = {  # kernel -> its parameters: p pointer, i int64
    'fused_add_tanh_1': 'pppi',
    'rows_max_exp_sum_where_3': 'ppppppi',
    'fused_pow_mul_add_6': 'pppi',
    'reduce_sum_div_mul_8': 'ppi',
    'reduce_sum_mul_add_9': 'ppppi',
    'reduce_sum_mul_add_10': 'ppppi',
    'fused_mul_add_11': 'pppp',
    'fused_mul_add_12': 'pppp',
}
LIBRARY = 'digits_mlp.so'  # beside this file


def bind(lib):
    """The compiled kernels of `lib` (a ctypes.CDLL) as this module's functions."""
    kinds = {'p': ctypes.c_void_p, 'i': ctypes.c_int64}
    for name, letters in SIGNATURES.items():
        kernel = getattr(lib, name)
        kernel.argtypes = [kinds[t] for t in letters]
        kernel.restype = None
        globals()[name] = kernel
    lib.graphc_set_threads.argtypes = [ctypes.c_int]
    globals()['set_threads'] = lib.graphc_set_threads
    globals()['get_threads'] = lib.graphc_get_threads


def allocate(N):
    """Every buffer of `run` for one set of dimensions, and their addresses (last)."""
    arrays = [
        np.empty((N, 128), np.float32),  # 0: l1_mm, d_tanh_0
        np.empty((N, 128), np.float32),  # 1: tanh_0
        np.empty((N, 10), np.float32),  # 2: l2_mm
        np.empty((N, 1), np.float32),  # 3: nll_9
        np.empty((N, 10), np.float32),  # 4: d_sub_2
        np.empty((128, 10), np.float32),  # 5: d_l2_W
        np.empty((N, 128), np.float32),  # 6: d_l1
        np.empty((64, 128), np.float32),  # 7: d_l1_W
        np.empty((), np.float32),  # 8: loss
        np.arange(10, dtype=np.int64),  # 9: iota_6
    ]
    # then: params' and consts' addresses as last seen, the buffers' addresses, the dims
    return arrays + [[], [a.ctypes.data for a in arrays], (N,)]


def run(x, y, p, c, buf):
    """One evaluation: NumPy arrays in, NumPy arrays (buffers of `buf`) out."""
    N, = buf[-1]
    y = np.asarray(y, order="C")
    y_addr = y.ctypes.data
    l1_W = p['l1_W']
    l1_b = p['l1_b']
    l2_W = p['l2_W']
    l2_b = p['l2_b']
    lr = p['lr']
    l1_W_velocity = p['l1_W_velocity']
    l1_b_velocity = p['l1_b_velocity']
    l2_W_velocity = p['l2_W_velocity']
    l2_b_velocity = p['l2_b_velocity']
    held = buf[-3]
    leaves = (l1_W, l1_b, l2_W, l2_b, lr, l1_W_velocity, l1_b_velocity, l2_W_velocity, l2_b_velocity)
    if not held or not all(map(is_, leaves, held[0])):
        held[:] = [leaves, [a.ctypes.data for a in leaves]]
    l1_W_addr, l1_b_addr, l2_W_addr, l2_b_addr, lr_addr, l1_W_velocity_addr, l1_b_velocity_addr, l2_W_velocity_addr, l2_b_velocity_addr = held[1]
    addr = buf[-2]
    iota_6 = buf[9]
    iota_6_addr = addr[9]
    l1_mm = buf[0]
    l1_mm_addr = addr[0]
    tanh_0 = buf[1]
    tanh_0_addr = addr[1]
    l2_mm = buf[2]
    l2_mm_addr = addr[2]
    nll_9 = buf[3]
    nll_9_addr = addr[3]
    d_sub_2 = buf[4]
    d_sub_2_addr = addr[4]
    d_tanh_0 = buf[0]
    d_tanh_0_addr = addr[0]
    d_l2_W = buf[5]
    d_l2_W_addr = addr[5]
    d_l1 = buf[6]
    d_l1_addr = addr[6]
    d_l1_W = buf[7]
    d_l1_W_addr = addr[7]
    loss = buf[8]
    loss_addr = addr[8]
    l2_b_velocity_new = l2_b_velocity  # new l2_b_velocity, written in place
    l2_b_new = l2_b  # new l2_b, written in place
    l1_b_velocity_new = l1_b_velocity  # new l1_b_velocity, written in place
    l1_b_new = l1_b  # new l1_b, written in place
    l1_W_velocity_new = l1_W_velocity  # new l1_W_velocity, written in place
    l1_W_new = l1_W  # new l1_W, written in place
    l2_W_velocity_new = l2_W_velocity  # new l2_W_velocity, written in place
    l2_W_new = l2_W  # new l2_W, written in place
    # l1_mm = x @ l1_W  (matmul_0, a library matmul)
    np.matmul(x, l1_W, out=l1_mm)
    # fused_add_tanh_1 (elementwise): tanh_0
    fused_add_tanh_1(l1_mm_addr, l1_b_addr, tanh_0_addr, N)
    # l2_mm = tanh_0 @ l2_W  (matmul_2, a library matmul)
    np.matmul(tanh_0, l2_W, out=l2_mm)
    # rows_max_exp_sum_where_3 (rows): l2, max_1, exp_3, sum_4, pick_7, sum_8, nll_9, d_sum_4, d_sub_2
    rows_max_exp_sum_where_3(
        l2_mm_addr, l2_b_addr, y_addr, iota_6_addr, d_sub_2_addr, nll_9_addr, N)
    l2_W_T = l2_W.transpose((1, 0))  # l2_W_T
    # d_tanh_0 = d_sub_2 @ l2_W_T  (matmul_4, a library matmul)
    np.matmul(d_sub_2, l2_W_T, out=d_tanh_0)
    tanh_0_T = tanh_0.transpose((1, 0))  # tanh_0_T
    # d_l2_W = tanh_0_T @ d_sub_2  (matmul_5, a library matmul)
    np.matmul(tanh_0_T, d_sub_2, out=d_l2_W)
    # fused_pow_mul_add_6 (elementwise): d_l1
    fused_pow_mul_add_6(d_tanh_0_addr, tanh_0_addr, d_l1_addr, N)
    x_T = x.transpose((1, 0))  # x_T
    # d_l1_W = x_T @ d_l1  (matmul_7, a library matmul)
    np.matmul(x_T, d_l1, out=d_l1_W)
    # reduce_sum_div_mul_8 (reduce): sum_10, loss
    reduce_sum_div_mul_8(nll_9_addr, loss_addr, N)
    # reduce_sum_mul_add_9 (reduce): d_l2_b, l2_b_velocity_new, l2_b_new
    reduce_sum_mul_add_9(d_sub_2_addr, l2_b_velocity_addr, l2_b_addr, lr_addr, N)
    # reduce_sum_mul_add_10 (reduce): d_l1_b, l1_b_velocity_new, l1_b_new
    reduce_sum_mul_add_10(d_l1_addr, l1_b_velocity_addr, l1_b_addr, lr_addr, N)
    # fused_mul_add_11 (elementwise): l1_W_velocity_new, l1_W_new
    fused_mul_add_11(l1_W_velocity_addr, d_l1_W_addr, l1_W_addr, lr_addr)
    # fused_mul_add_12 (elementwise): l2_W_velocity_new, l2_W_new
    fused_mul_add_12(l2_W_velocity_addr, d_l2_W_addr, l2_W_addr, lr_addr)
    return (loss,)


bind(ctypes.CDLL(str(Path(__file__).resolve().with_name(LIBRARY))))
