"""graphc: generated C host code for encoder_838: training step.

Inputs:  x (8, 8) float32
Outputs: loss () float32
Updates: enc_W_velocity (in place), enc_W (in place), enc_b_velocity (in place), enc_b (in place), dec_W_velocity (in place), dec_W (in place), dec_b_velocity (in place), dec_b (in place)
Kernels: 13, called in this order by run(); their C source is encoder_838.c beside this file.
Regenerate from the graph rather than editing this file.
"""
import ctypes
from operator import is_
from pathlib import Path

import numpy as np

DIMS = ()
INPUTS = ('x',)
OUTPUTS = ('loss',)
KERNELS = (  # name, kind, member nodes: in call order
    ('matmul_0', 'matmul', ('enc_mm',)),
    ('fused_add_sigmoid_1', 'elementwise', ('code',)),
    ('matmul_2', 'matmul', ('dec_mm',)),
    ('fused_add_sigmoid_mul_pow_3', 'elementwise', ('out', 'sqerr_0', 'd_dec')),
    ('matmul_4', 'matmul', ('d_code',)),
    ('matmul_5', 'matmul', ('d_dec_W',)),
    ('fused_mul_add_6', 'elementwise', ('d_enc',)),
    ('matmul_7', 'matmul', ('d_enc_W',)),
    ('reduce_sum_mul_8', 'reduce', ('sum_1', 'loss')),
    ('reduce_sum_mul_add_9', 'reduce', ('d_dec_b', 'dec_b_velocity_new', 'dec_b_new')),
    ('reduce_sum_mul_add_10', 'reduce', ('d_enc_b', 'enc_b_velocity_new', 'enc_b_new')),
    ('fused_mul_add_11', 'elementwise', ('enc_W_velocity_new', 'enc_W_new')),
    ('fused_mul_add_12', 'elementwise', ('dec_W_velocity_new', 'dec_W_new')),
)
SIGNATURES = {  # kernel -> its parameters: p pointer, i int64
    'fused_add_sigmoid_1': 'ppp',
    'fused_add_sigmoid_mul_pow_3': 'ppppp',
    'fused_mul_add_6': 'ppp',
    'reduce_sum_mul_8': 'pp',
    'reduce_sum_mul_add_9': 'pppp',
    'reduce_sum_mul_add_10': 'pppp',
    'fused_mul_add_11': 'pppp',
    'fused_mul_add_12': 'pppp',
}
LIBRARY = 'encoder_838.so'  # beside this file


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


def allocate():
    """Every buffer of `run` for one set of dimensions, and their addresses (last)."""
    arrays = [
        np.empty((8, 3), np.float32),  # 0: enc_mm, d_code, d_enc_W
        np.empty((8, 3), np.float32),  # 1: code
        np.empty((8, 8), np.float32),  # 2: dec_mm
        np.empty((8, 8), np.float32),  # 3: sqerr_0
        np.empty((8, 8), np.float32),  # 4: d_dec
        np.empty((3, 8), np.float32),  # 5: d_dec_W
        np.empty((8, 3), np.float32),  # 6: d_enc
        np.empty((), np.float32),  # 7: loss
    ]
    # then: params' and consts' addresses as last seen, the buffers' addresses, the dims
    return arrays + [[], [a.ctypes.data for a in arrays], ()]


def run(x, p, c, buf):
    """One evaluation: NumPy arrays in, NumPy arrays (buffers of `buf`) out."""
    x = np.asarray(x, order="C")
    x_addr = x.ctypes.data
    enc_W = p['enc_W']
    enc_b = p['enc_b']
    dec_W = p['dec_W']
    dec_b = p['dec_b']
    lr = p['lr']
    enc_W_velocity = p['enc_W_velocity']
    enc_b_velocity = p['enc_b_velocity']
    dec_W_velocity = p['dec_W_velocity']
    dec_b_velocity = p['dec_b_velocity']
    held = buf[-3]
    leaves = (enc_W, enc_b, dec_W, dec_b, lr, enc_W_velocity, enc_b_velocity, dec_W_velocity, dec_b_velocity)
    if not held or not all(map(is_, leaves, held[0])):
        held[:] = [leaves, [a.ctypes.data for a in leaves]]
    enc_W_addr, enc_b_addr, dec_W_addr, dec_b_addr, lr_addr, enc_W_velocity_addr, enc_b_velocity_addr, dec_W_velocity_addr, dec_b_velocity_addr = held[1]
    addr = buf[-2]
    enc_mm = buf[0]
    enc_mm_addr = addr[0]
    code = buf[1]
    code_addr = addr[1]
    dec_mm = buf[2]
    dec_mm_addr = addr[2]
    sqerr_0 = buf[3]
    sqerr_0_addr = addr[3]
    d_dec = buf[4]
    d_dec_addr = addr[4]
    d_code = buf[0]
    d_code_addr = addr[0]
    d_dec_W = buf[5]
    d_dec_W_addr = addr[5]
    d_enc = buf[6]
    d_enc_addr = addr[6]
    d_enc_W = buf[0]
    d_enc_W_addr = addr[0]
    loss = buf[7]
    loss_addr = addr[7]
    dec_b_velocity_new = dec_b_velocity  # new dec_b_velocity, written in place
    dec_b_new = dec_b  # new dec_b, written in place
    enc_b_velocity_new = enc_b_velocity  # new enc_b_velocity, written in place
    enc_b_new = enc_b  # new enc_b, written in place
    enc_W_velocity_new = enc_W_velocity  # new enc_W_velocity, written in place
    enc_W_new = enc_W  # new enc_W, written in place
    dec_W_velocity_new = dec_W_velocity  # new dec_W_velocity, written in place
    dec_W_new = dec_W  # new dec_W, written in place
    # enc_mm = x @ enc_W  (matmul_0, a library matmul)
    np.matmul(x, enc_W, out=enc_mm)
    # fused_add_sigmoid_1 (elementwise): code
    fused_add_sigmoid_1(enc_mm_addr, enc_b_addr, code_addr)
    # dec_mm = code @ dec_W  (matmul_2, a library matmul)
    np.matmul(code, dec_W, out=dec_mm)
    # fused_add_sigmoid_mul_pow_3 (elementwise): out, sqerr_0, d_dec
    fused_add_sigmoid_mul_pow_3(dec_mm_addr, dec_b_addr, x_addr, sqerr_0_addr, d_dec_addr)
    dec_W_T = dec_W.transpose((1, 0))  # dec_W_T
    # d_code = d_dec @ dec_W_T  (matmul_4, a library matmul)
    np.matmul(d_dec, dec_W_T, out=d_code)
    code_T = code.transpose((1, 0))  # code_T
    # d_dec_W = code_T @ d_dec  (matmul_5, a library matmul)
    np.matmul(code_T, d_dec, out=d_dec_W)
    # fused_mul_add_6 (elementwise): d_enc
    fused_mul_add_6(d_code_addr, code_addr, d_enc_addr)
    x_T = x.transpose((1, 0))  # x_T
    # d_enc_W = x_T @ d_enc  (matmul_7, a library matmul)
    np.matmul(x_T, d_enc, out=d_enc_W)
    # reduce_sum_mul_8 (reduce): sum_1, loss
    reduce_sum_mul_8(sqerr_0_addr, loss_addr)
    # reduce_sum_mul_add_9 (reduce): d_dec_b, dec_b_velocity_new, dec_b_new
    reduce_sum_mul_add_9(d_dec_addr, dec_b_velocity_addr, dec_b_addr, lr_addr)
    # reduce_sum_mul_add_10 (reduce): d_enc_b, enc_b_velocity_new, enc_b_new
    reduce_sum_mul_add_10(d_enc_addr, enc_b_velocity_addr, enc_b_addr, lr_addr)
    # fused_mul_add_11 (elementwise): enc_W_velocity_new, enc_W_new
    fused_mul_add_11(enc_W_velocity_addr, d_enc_W_addr, enc_W_addr, lr_addr)
    # fused_mul_add_12 (elementwise): dec_W_velocity_new, dec_W_new
    fused_mul_add_12(dec_W_velocity_addr, d_dec_W_addr, dec_W_addr, lr_addr)
    return (loss,)


bind(ctypes.CDLL(str(Path(__file__).resolve().with_name(LIBRARY))))
