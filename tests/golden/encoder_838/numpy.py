"""graphc: generated NumPy code for encoder_838: training step.

Inputs:  x (8, 8) float32
Outputs: loss () float32
Updates: enc_W_velocity, enc_W, enc_b_velocity, enc_b, dec_W_velocity, dec_W, dec_b_velocity, dec_b (in place)
Regenerate from the graph rather than editing this file.
"""
import numpy as np

DIMS = ()
INPUTS = ('x',)
OUTPUTS = ('loss',)


def allocate():
    """Every buffer of `run` for one set of dimensions (made once, reused)."""
    return [
        np.empty((8, 3), np.float32),  # 0: enc_mm, d_code, d_enc_W
        np.empty((8, 3), np.float32),  # 1: code
        np.empty((8, 8), np.float32),  # 2: dec_mm, sqerr_0
        np.empty((8, 8), np.float32),  # 3: out
        np.empty((8, 8), np.float32),  # 4: d_dec
        np.empty((3, 8), np.float32),  # 5: d_dec_W
        np.empty((8, 3), np.float32),  # 6: d_enc
        np.empty((), np.float32),  # 7: sum_1
        np.empty((), np.float32),  # 8: loss
        np.empty((8,), np.float32),  # 9: d_dec_b
        np.empty((3,), np.float32),  # 10: d_enc_b
        np.empty((8, 8), np.float32),  # 11: tmp0
        np.ones((8,), np.float32),  # 12: ones0
        np.empty((8,), np.float32),  # 13: tmp1
        np.empty((3,), np.float32),  # 14: tmp2
        np.empty((8, 3), np.float32),  # 15: tmp3
        np.empty((3, 8), np.float32),  # 16: tmp4
    ]


def run(x, p, c, buf):
    """One evaluation; every array written is a buffer of `buf`."""
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
    out = buf[3]
    sqerr_0 = buf[2]
    d_dec = buf[4]
    d_code = buf[0]
    d_dec_W = buf[5]
    d_enc = buf[6]
    d_enc_W = buf[0]
    sum_1 = buf[7]
    loss = buf[8]
    d_dec_b = buf[9]
    d_enc_b = buf[10]
    tmp0 = buf[11]
    ones0 = buf[12]
    tmp1 = buf[13]
    tmp2 = buf[14]
    tmp3 = buf[15]
    tmp4 = buf[16]
    # ---- kernel matmul_0 (matmul): enc_mm
    # enc_mm = x @ enc_W
    np.matmul(x, enc_W, out=enc_mm)
    # ---- kernel fused_add_sigmoid_1 (elementwise): code
    # merged into code: enc = enc_b + enc_mm
    # code = sigmoid(enc_b + enc_mm)
    np.add(enc_mm, enc_b, out=code)
    np.negative(code, out=code)  # sigmoid = 1/(1+exp(-x))
    np.exp(code, out=code)
    np.add(code, 1.0, out=code)
    np.divide(1.0, code, out=code)
    # ---- kernel matmul_2 (matmul): dec_mm
    # dec_mm = code @ dec_W
    np.matmul(code, dec_W, out=dec_mm)
    # ---- kernel fused_add_sigmoid_mul_pow_3 (elementwise): out, sqerr_0, d_dec
    # merged into out: dec = dec_b + dec_mm
    # merged into d_dec: d_out = out - x
    # out = sigmoid(dec_b + dec_mm)
    np.add(dec_mm, dec_b, out=out)
    np.negative(out, out=out)  # sigmoid = 1/(1+exp(-x))
    np.exp(out, out=out)
    np.add(out, 1.0, out=out)
    np.divide(1.0, out, out=out)
    # sqerr_0 = (out - x)**2
    np.subtract(out, x, out=sqerr_0)
    np.square(sqerr_0, out=sqerr_0)
    # d_dec = out*(1 - out)*(out - x)
    np.subtract(1, out, out=d_dec)
    np.subtract(out, x, out=tmp0)
    np.multiply(d_dec, tmp0, out=d_dec)
    np.multiply(d_dec, out, out=d_dec)
    dec_W_T = dec_W.transpose((1, 0))  # dec_W_T
    # ---- kernel matmul_4 (matmul): d_code
    # d_code = d_dec @ dec_W_T
    np.matmul(d_dec, dec_W_T, out=d_code)
    code_T = code.transpose((1, 0))  # code_T
    # ---- kernel matmul_5 (matmul): d_dec_W
    # d_dec_W = code_T @ d_dec
    np.matmul(code_T, d_dec, out=d_dec_W)
    # ---- kernel fused_mul_add_6 (elementwise): d_enc
    # d_enc = code*d_code*(1 - code)
    np.subtract(1, code, out=d_enc)
    np.multiply(d_enc, d_code, out=d_enc)
    np.multiply(d_enc, code, out=d_enc)
    x_T = x.transpose((1, 0))  # x_T
    # ---- kernel matmul_7 (matmul): d_enc_W
    # d_enc_W = x_T @ d_enc
    np.matmul(x_T, d_enc, out=d_enc_W)
    # ---- kernel reduce_sum_mul_8 (reduce): sum_1, loss
    # sum_1 = sum(sqerr_0, axes=(0, 1))
    np.add.reduce(sqerr_0, axis=(0, 1), out=sum_1)
    # loss = sum_1/2
    np.multiply(sum_1, 0.5, out=loss)
    # ---- kernel reduce_sum_mul_add_9 (reduce): d_dec_b, dec_b_velocity_new, dec_b_new
    # d_dec_b = sum(d_dec, axes=(0,))
    np.matmul(ones0, d_dec, out=d_dec_b)
    # ---- kernel reduce_sum_mul_add_10 (reduce): d_enc_b, enc_b_velocity_new, enc_b_new
    # d_enc_b = sum(d_enc, axes=(0,))
    np.matmul(ones0, d_enc, out=d_enc_b)
    # dec_b_velocity_new = d_dec_b + 0.5*dec_b_velocity
    # update dec_b_velocity in place
    np.multiply(dec_b_velocity, 0.5, out=dec_b_velocity)
    np.add(dec_b_velocity, d_dec_b, out=dec_b_velocity)
    dec_b_velocity_new = dec_b_velocity  # new value, held in place
    # dec_b_new = dec_b - dec_b_velocity_new*lr
    # update dec_b in place
    np.multiply(dec_b_velocity_new, lr, out=tmp1)
    np.subtract(dec_b, tmp1, out=dec_b)
    dec_b_new = dec_b  # new value, held in place
    # enc_b_velocity_new = d_enc_b + 0.5*enc_b_velocity
    # update enc_b_velocity in place
    np.multiply(enc_b_velocity, 0.5, out=enc_b_velocity)
    np.add(enc_b_velocity, d_enc_b, out=enc_b_velocity)
    enc_b_velocity_new = enc_b_velocity  # new value, held in place
    # enc_b_new = enc_b - enc_b_velocity_new*lr
    # update enc_b in place
    np.multiply(enc_b_velocity_new, lr, out=tmp2)
    np.subtract(enc_b, tmp2, out=enc_b)
    enc_b_new = enc_b  # new value, held in place
    # ---- kernel fused_mul_add_11 (elementwise): enc_W_velocity_new, enc_W_new
    # enc_W_velocity_new = d_enc_W + 0.5*enc_W_velocity
    # update enc_W_velocity in place
    np.multiply(enc_W_velocity, 0.5, out=enc_W_velocity)
    np.add(enc_W_velocity, d_enc_W, out=enc_W_velocity)
    enc_W_velocity_new = enc_W_velocity  # new value, held in place
    # enc_W_new = enc_W - enc_W_velocity_new*lr
    # update enc_W in place
    np.multiply(enc_W_velocity_new, lr, out=tmp3)
    np.subtract(enc_W, tmp3, out=enc_W)
    enc_W_new = enc_W  # new value, held in place
    # ---- kernel fused_mul_add_12 (elementwise): dec_W_velocity_new, dec_W_new
    # dec_W_velocity_new = d_dec_W + 0.5*dec_W_velocity
    # update dec_W_velocity in place
    np.multiply(dec_W_velocity, 0.5, out=dec_W_velocity)
    np.add(dec_W_velocity, d_dec_W, out=dec_W_velocity)
    dec_W_velocity_new = dec_W_velocity  # new value, held in place
    # dec_W_new = dec_W - dec_W_velocity_new*lr
    # update dec_W in place
    np.multiply(dec_W_velocity_new, lr, out=tmp4)
    np.subtract(dec_W, tmp4, out=dec_W)
    dec_W_new = dec_W  # new value, held in place
    return (loss,)
