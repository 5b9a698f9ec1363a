"""graphc: generated Triton code for encoder_838: training step.

Inputs:  x (8, 8) float32
Outputs: loss () float32
Updates: enc_W_velocity (in place), enc_W (in place), enc_b_velocity (in place), enc_b (in place), dec_W_velocity (in place), dec_W (in place), dec_b_velocity (in place), dec_b (in place)
13 kernels (5 matmul, 5 elementwise, 3 reduce), launched in this order by run().
Target:  CUDA (compiled Triton kernels, cuBLAS matmuls through torch).
Regenerate from the graph rather than editing this file.
"""
import torch
import triton
import triton.language as tl

from graphc.triton_host import grid_1d

DEVICE = 'cuda'
DIMS = ()
INPUTS = ('x',)
OUTPUTS = ('loss',)
KERNELS = (  # name, kind, member nodes: in launch order
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

# ---- fused_add_sigmoid_1: elementwise over (8, 3), BLOCK elements per program
# nodes: code
# merged into code: enc = enc_b + enc_mm
# stores: code
#   code = sigmoid(enc_b + enc_mm)
@triton.jit
def fused_add_sigmoid_1(enc_mm_ptr, enc_b_ptr, code_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    idx1 = offsets % 3
    enc_mm = tl.load(enc_mm_ptr + offsets, mask=mask)  # enc_mm
    enc_b = tl.load(enc_b_ptr + idx1, mask=mask)  # enc_b
    code = tl.sigmoid(enc_mm + enc_b)  # code = sigmoid(enc_b + enc_mm)
    tl.store(code_ptr + offsets, code, mask=mask)


# ---- fused_add_sigmoid_mul_pow_3: elementwise over (8, 8), BLOCK elements per program
# nodes: out, sqerr_0, d_dec
# merged into out: dec = dec_b + dec_mm
# merged into d_dec: d_out = out - x
# stores: sqerr_0, d_dec
#   sqerr_0 = (sigmoid(dec_b + dec_mm) - x)**2
#   d_dec = sigmoid(dec_b + dec_mm)*(1 - sigmoid(dec_b + dec_mm))*(sigmoid(dec_b + dec_mm) - x)
@triton.jit
def fused_add_sigmoid_mul_pow_3(dec_mm_ptr, dec_b_ptr, x_ptr, sqerr_0_ptr, d_dec_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    idx1 = offsets % 8
    dec_mm = tl.load(dec_mm_ptr + offsets, mask=mask)  # dec_mm
    dec_b = tl.load(dec_b_ptr + idx1, mask=mask)  # dec_b
    out = tl.sigmoid(dec_mm + dec_b)  # out = sigmoid(dec_b + dec_mm)
    x = tl.load(x_ptr + offsets, mask=mask)  # x
    sqerr_0 = ((out - x) * (out - x))  # sqerr_0 = (out - x)**2
    d_dec = out*(1 - out)*(out - x)  # d_dec = out*(1 - out)*(out - x)
    tl.store(sqerr_0_ptr + offsets, sqerr_0, mask=mask)
    tl.store(d_dec_ptr + offsets, d_dec, mask=mask)


# ---- fused_mul_add_6: elementwise over (8, 3), BLOCK elements per program
# nodes: d_enc
# stores: d_enc
#   d_enc = code*d_code*(1 - code)
@triton.jit
def fused_mul_add_6(d_code_ptr, code_ptr, d_enc_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    d_code = tl.load(d_code_ptr + offsets, mask=mask)  # d_code
    code = tl.load(code_ptr + offsets, mask=mask)  # code
    d_enc = d_code*code*(1 - code)  # d_enc = code*d_code*(1 - code)
    tl.store(d_enc_ptr + offsets, d_enc, mask=mask)


# ---- reduce_sum_mul_8: reduce (8, 8) over axes (0, 1), BLOCK_K results per program
# nodes: sum_1, loss
# stores: loss
#   loss = sum(sqerr_0)/2
@triton.jit
def reduce_sum_mul_8(sqerr_0_ptr, loss_ptr, n_kept, n_reduced, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    sum_1 = tl.full((BLOCK_K,), 0.0, tl.float32)
    for start in range(0, n_reduced, BLOCK_M):
        m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements
        m_mask = m < n_reduced
        mask = m_mask[:, None] & k_mask[None, :]
        idx0 = m // 8
        idx1 = m % 8
        sqerr_0 = tl.load(sqerr_0_ptr + (idx0 * 8 + idx1)[:, None], mask=m_mask[:, None])  # sqerr_0
        sum_1 = sum_1 + tl.sum(tl.where(mask, sqerr_0, 0.0), axis=0)  # sum_1 = sum(sqerr_0, axes=(0, 1))
    loss = (0.5)*sum_1  # loss = sum_1/2
    tl.store(loss_ptr + k, loss, mask=k_mask)


# ---- reduce_sum_mul_add_9: reduce (8, 8) over axes (0,), BLOCK_K results per program
# nodes: d_dec_b, dec_b_velocity_new, dec_b_new
# stores: dec_b_velocity_new, dec_b_new
#   dec_b_velocity_new = 0.5*dec_b_velocity + sum(d_dec)
#   dec_b_new = -(0.5*dec_b_velocity + sum(d_dec))*lr + dec_b
@triton.jit
def reduce_sum_mul_add_9(d_dec_ptr, dec_b_velocity_ptr, dec_b_ptr, lr_ptr, dec_b_velocity_new_ptr, dec_b_new_ptr, n_kept, n_reduced, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    idx1 = k
    d_dec_b = tl.full((BLOCK_K,), 0.0, tl.float32)
    for start in range(0, n_reduced, BLOCK_M):
        m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements
        m_mask = m < n_reduced
        mask = m_mask[:, None] & k_mask[None, :]
        idx0 = m
        d_dec = tl.load(d_dec_ptr + (idx0 * 8)[:, None] + idx1[None, :], mask=mask)  # d_dec
        d_dec_b = d_dec_b + tl.sum(tl.where(mask, d_dec, 0.0), axis=0)  # d_dec_b = sum(d_dec, axes=(0,))
    dec_b_velocity = tl.load(dec_b_velocity_ptr + idx1, mask=k_mask)  # dec_b_velocity
    dec_b_velocity_new = 0.5*dec_b_velocity + d_dec_b  # dec_b_velocity_new = d_dec_b + 0.5*dec_b_velocity
    dec_b = tl.load(dec_b_ptr + idx1, mask=k_mask)  # dec_b
    lr = tl.load(lr_ptr)  # lr
    dec_b_new = dec_b - dec_b_velocity_new*lr  # dec_b_new = dec_b - dec_b_velocity_new*lr
    tl.store(dec_b_velocity_new_ptr + k, dec_b_velocity_new, mask=k_mask)
    tl.store(dec_b_new_ptr + k, dec_b_new, mask=k_mask)


# ---- reduce_sum_mul_add_10: reduce (8, 3) over axes (0,), BLOCK_K results per program
# nodes: d_enc_b, enc_b_velocity_new, enc_b_new
# stores: enc_b_velocity_new, enc_b_new
#   enc_b_velocity_new = 0.5*enc_b_velocity + sum(d_enc)
#   enc_b_new = -(0.5*enc_b_velocity + sum(d_enc))*lr + enc_b
@triton.jit
def reduce_sum_mul_add_10(d_enc_ptr, enc_b_velocity_ptr, enc_b_ptr, lr_ptr, enc_b_velocity_new_ptr, enc_b_new_ptr, n_kept, n_reduced, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)  # kept elements
    k_mask = k < n_kept
    idx1 = k
    d_enc_b = tl.full((BLOCK_K,), 0.0, tl.float32)
    for start in range(0, n_reduced, BLOCK_M):
        m = start + tl.arange(0, BLOCK_M).to(tl.int64)  # reduced elements
        m_mask = m < n_reduced
        mask = m_mask[:, None] & k_mask[None, :]
        idx0 = m
        d_enc = tl.load(d_enc_ptr + (idx0 * 3)[:, None] + idx1[None, :], mask=mask)  # d_enc
        d_enc_b = d_enc_b + tl.sum(tl.where(mask, d_enc, 0.0), axis=0)  # d_enc_b = sum(d_enc, axes=(0,))
    enc_b_velocity = tl.load(enc_b_velocity_ptr + idx1, mask=k_mask)  # enc_b_velocity
    enc_b_velocity_new = 0.5*enc_b_velocity + d_enc_b  # enc_b_velocity_new = d_enc_b + 0.5*enc_b_velocity
    enc_b = tl.load(enc_b_ptr + idx1, mask=k_mask)  # enc_b
    lr = tl.load(lr_ptr)  # lr
    enc_b_new = enc_b - enc_b_velocity_new*lr  # enc_b_new = enc_b - enc_b_velocity_new*lr
    tl.store(enc_b_velocity_new_ptr + k, enc_b_velocity_new, mask=k_mask)
    tl.store(enc_b_new_ptr + k, enc_b_new, mask=k_mask)


# ---- fused_mul_add_11: elementwise over (8, 3), BLOCK elements per program
# nodes: enc_W_velocity_new, enc_W_new
# stores: enc_W_velocity_new, enc_W_new
#   enc_W_velocity_new = d_enc_W + 0.5*enc_W_velocity
#   enc_W_new = -(d_enc_W + 0.5*enc_W_velocity)*lr + enc_W
@triton.jit
def fused_mul_add_11(enc_W_velocity_ptr, d_enc_W_ptr, enc_W_ptr, lr_ptr, enc_W_velocity_new_ptr, enc_W_new_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    enc_W_velocity = tl.load(enc_W_velocity_ptr + offsets, mask=mask)  # enc_W_velocity
    d_enc_W = tl.load(d_enc_W_ptr + offsets, mask=mask)  # d_enc_W
    enc_W_velocity_new = 0.5*enc_W_velocity + d_enc_W  # enc_W_velocity_new = d_enc_W + 0.5*enc_W_velocity
    enc_W = tl.load(enc_W_ptr + offsets, mask=mask)  # enc_W
    lr = tl.load(lr_ptr)  # lr
    enc_W_new = enc_W - enc_W_velocity_new*lr  # enc_W_new = enc_W - enc_W_velocity_new*lr
    tl.store(enc_W_velocity_new_ptr + offsets, enc_W_velocity_new, mask=mask)
    tl.store(enc_W_new_ptr + offsets, enc_W_new, mask=mask)


# ---- fused_mul_add_12: elementwise over (3, 8), BLOCK elements per program
# nodes: dec_W_velocity_new, dec_W_new
# stores: dec_W_velocity_new, dec_W_new
#   dec_W_velocity_new = d_dec_W + 0.5*dec_W_velocity
#   dec_W_new = -(d_dec_W + 0.5*dec_W_velocity)*lr + dec_W
@triton.jit
def fused_mul_add_12(dec_W_velocity_ptr, d_dec_W_ptr, dec_W_ptr, lr_ptr, dec_W_velocity_new_ptr, dec_W_new_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    dec_W_velocity = tl.load(dec_W_velocity_ptr + offsets, mask=mask)  # dec_W_velocity
    d_dec_W = tl.load(d_dec_W_ptr + offsets, mask=mask)  # d_dec_W
    dec_W_velocity_new = 0.5*dec_W_velocity + d_dec_W  # dec_W_velocity_new = d_dec_W + 0.5*dec_W_velocity
    dec_W = tl.load(dec_W_ptr + offsets, mask=mask)  # dec_W
    lr = tl.load(lr_ptr)  # lr
    dec_W_new = dec_W - dec_W_velocity_new*lr  # dec_W_new = dec_W - dec_W_velocity_new*lr
    tl.store(dec_W_velocity_new_ptr + offsets, dec_W_velocity_new, mask=mask)
    tl.store(dec_W_new_ptr + offsets, dec_W_new, mask=mask)


def allocate():
    """Every buffer of `run` for one set of dimensions (made once, reused)."""
    return [
        torch.empty((8, 3), dtype=torch.float32, device=DEVICE),  # 0: enc_mm, d_code, d_enc_W
        torch.empty((8, 3), dtype=torch.float32, device=DEVICE),  # 1: code
        torch.empty((8, 8), dtype=torch.float32, device=DEVICE),  # 2: dec_mm
        torch.empty((8, 8), dtype=torch.float32, device=DEVICE),  # 3: sqerr_0
        torch.empty((8, 8), dtype=torch.float32, device=DEVICE),  # 4: d_dec
        torch.empty((3, 8), dtype=torch.float32, device=DEVICE),  # 5: d_dec_W
        torch.empty((8, 3), dtype=torch.float32, device=DEVICE),  # 6: d_enc
        torch.empty((), dtype=torch.float32, device=DEVICE),  # 7: loss
    ]


def run(x, p, c, buf):
    """One evaluation: torch tensors in (contiguous, on DEVICE), torch tensors out."""
    enc_W = p['enc_W']
    enc_b = p['enc_b']
    dec_W = p['dec_W']
    dec_b = p['dec_b']
    lr = p['lr']
    enc_W_velocity = p['enc_W_velocity']
    enc_b_velocity = p['enc_b_velocity']
    dec_W_velocity = p['dec_W_velocity']
    dec_b_velocity = p['dec_b_velocity']
    enc_mm = buf[0]
    code = buf[1]
    dec_mm = buf[2]
    sqerr_0 = buf[3]
    d_dec = buf[4]
    d_code = buf[0]
    d_dec_W = buf[5]
    d_enc = buf[6]
    d_enc_W = buf[0]
    loss = buf[7]
    dec_b_velocity_new = dec_b_velocity  # new dec_b_velocity, written in place
    dec_b_new = dec_b  # new dec_b, written in place
    enc_b_velocity_new = enc_b_velocity  # new enc_b_velocity, written in place
    enc_b_new = enc_b  # new enc_b, written in place
    enc_W_velocity_new = enc_W_velocity  # new enc_W_velocity, written in place
    enc_W_new = enc_W  # new enc_W, written in place
    dec_W_velocity_new = dec_W_velocity  # new dec_W_velocity, written in place
    dec_W_new = dec_W  # new dec_W, written in place
    # matmul_0 (matmul): enc_mm = x @ enc_W
    torch.matmul(x, enc_W, out=enc_mm)
    # fused_add_sigmoid_1 (elementwise): code
    fused_add_sigmoid_1[grid_1d(24, 1024)](enc_mm, enc_b, code, 24, BLOCK=1024)
    # matmul_2 (matmul): dec_mm = code @ dec_W
    torch.matmul(code, dec_W, out=dec_mm)
    # fused_add_sigmoid_mul_pow_3 (elementwise): out, sqerr_0, d_dec
    fused_add_sigmoid_mul_pow_3[grid_1d(64, 1024)](dec_mm, dec_b, x, sqerr_0, d_dec, 64, BLOCK=1024)
    dec_W_T = dec_W.permute((1, 0))  # dec_W_T
    # matmul_4 (matmul): d_code = d_dec @ dec_W_T
    torch.matmul(d_dec, dec_W_T, out=d_code)
    code_T = code.permute((1, 0))  # code_T
    # matmul_5 (matmul): d_dec_W = code_T @ d_dec
    torch.matmul(code_T, d_dec, out=d_dec_W)
    # fused_mul_add_6 (elementwise): d_enc
    fused_mul_add_6[grid_1d(24, 1024)](d_code, code, d_enc, 24, BLOCK=1024)
    x_T = x.permute((1, 0))  # x_T
    # matmul_7 (matmul): d_enc_W = x_T @ d_enc
    torch.matmul(x_T, d_enc, out=d_enc_W)
    # reduce_sum_mul_8 (reduce): sum_1, loss
    reduce_sum_mul_8[grid_1d(1, 1)](sqerr_0, loss, 1, 64, BLOCK_K=1, BLOCK_M=64)
    # reduce_sum_mul_add_9 (reduce): d_dec_b, dec_b_velocity_new, dec_b_new
    reduce_sum_mul_add_9[grid_1d(8, 8)](
        d_dec, dec_b_velocity, dec_b, lr, dec_b_velocity_new, dec_b_new, 8, 8, BLOCK_K=8,
        BLOCK_M=16)
    # reduce_sum_mul_add_10 (reduce): d_enc_b, enc_b_velocity_new, enc_b_new
    reduce_sum_mul_add_10[grid_1d(3, 4)](
        d_enc, enc_b_velocity, enc_b, lr, enc_b_velocity_new, enc_b_new, 3, 8, BLOCK_K=4,
        BLOCK_M=16)
    # fused_mul_add_11 (elementwise): enc_W_velocity_new, enc_W_new
    fused_mul_add_11[grid_1d(24, 1024)](
        enc_W_velocity, d_enc_W, enc_W, lr, enc_W_velocity_new, enc_W_new, 24, BLOCK=1024)
    # fused_mul_add_12 (elementwise): dec_W_velocity_new, dec_W_new
    fused_mul_add_12[grid_1d(24, 1024)](
        dec_W_velocity, d_dec_W, dec_W, lr, dec_W_velocity_new, dec_W_new, 24, BLOCK=1024)
    return (loss,)
