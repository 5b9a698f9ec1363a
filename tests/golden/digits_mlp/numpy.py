"""graphc: generated NumPy code for digits_mlp: training step.

Inputs:  x (N, 64) float32, y (N,) int64
Outputs: loss () float32
Updates: l1_W_velocity, l1_W, l1_b_velocity, l1_b, l2_W_velocity, l2_W, l2_b_velocity, l2_b (in place)
Regenerate from the graph rather than editing this file.
"""
import numpy as np

DIMS = ('N',)
INPUTS = ('x', 'y')
OUTPUTS = ('loss',)


def allocate(N):
    """Every buffer of `run` for one set of dimensions (made once, reused)."""
    return [
        np.empty((N, 128), np.float32),  # 0: l1_mm, d_tanh_0
        np.empty((N, 128), np.float32),  # 1: tanh_0
        np.empty((N, 10), np.float32),  # 2: l2_mm, sub_2
        np.empty((N, 10), np.float32),  # 3: l2, exp_3
        np.empty((N, 1), np.float32),  # 4: max_1, sum_4
        np.empty((N, 10), np.float32),  # 5: pick_7, d_sub_2
        np.empty((N, 1), np.float32),  # 6: sum_8, d_sum_4
        np.empty((N, 1), np.float32),  # 7: nll_9
        np.empty((128, 10), np.float32),  # 8: d_l2_W
        np.empty((N, 128), np.float32),  # 9: d_l1
        np.empty((64, 128), np.float32),  # 10: d_l1_W
        np.empty((), np.float32),  # 11: sum_10
        np.empty((), np.float32),  # 12: loss
        np.empty((10,), np.float32),  # 13: d_l2_b
        np.empty((128,), np.float32),  # 14: d_l1_b
        np.broadcast_to(np.arange(10, dtype=np.int64).reshape((10,)), (10,)),  # 15: iota_6
        np.ones((10, 1), np.float32),  # 16: ones0
        np.empty((N, 10), np.bool),  # 17: tmp0
        np.empty((N, 10), np.float32),  # 18: tmp1
        np.empty((N, 10), np.bool),  # 19: tmp2
        np.empty((N, 128), np.float32),  # 20: tmp3
        np.ones((N,), np.float32),  # 21: ones1
        np.empty((10,), np.float32),  # 22: tmp4
        np.empty((128,), np.float32),  # 23: tmp5
        np.empty((64, 128), np.float32),  # 24: tmp6
        np.empty((128, 10), np.float32),  # 25: tmp7
    ]


def run(x, y, p, c, buf):
    """One evaluation; every array written is a buffer of `buf`."""
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
    iota_6 = buf[15]
    l1_mm = buf[0]
    tanh_0 = buf[1]
    l2_mm = buf[2]
    l2 = buf[3]
    max_1 = buf[4]
    sub_2 = buf[2]
    exp_3 = buf[3]
    sum_4 = buf[4]
    pick_7 = buf[5]
    sum_8 = buf[6]
    nll_9 = buf[7]
    d_sum_4 = buf[6]
    d_sub_2 = buf[5]
    d_tanh_0 = buf[0]
    d_l2_W = buf[8]
    d_l1 = buf[9]
    d_l1_W = buf[10]
    sum_10 = buf[11]
    loss = buf[12]
    d_l2_b = buf[13]
    d_l1_b = buf[14]
    ones0 = buf[16]
    tmp0 = buf[17]
    tmp1 = buf[18]
    tmp2 = buf[19]
    tmp3 = buf[20]
    ones1 = buf[21]
    tmp4 = buf[22]
    tmp5 = buf[23]
    tmp6 = buf[24]
    tmp7 = buf[25]
    # ---- kernel matmul_0 (matmul): l1_mm
    # l1_mm = x @ l1_W
    np.matmul(x, l1_W, out=l1_mm)
    # ---- kernel fused_add_tanh_1 (elementwise): tanh_0
    # merged into tanh_0: l1 = l1_b + l1_mm
    # tanh_0 = tanh(l1_b + l1_mm)
    np.add(l1_mm, l1_b, out=tanh_0)
    np.tanh(tanh_0, out=tanh_0)
    # ---- kernel matmul_2 (matmul): l2_mm
    # l2_mm = tanh_0 @ l2_W
    np.matmul(tanh_0, l2_W, out=l2_mm)
    reshape_5 = y.reshape((N, 1))  # reshape_5
    # ---- kernel rows_max_exp_sum_where_3 (rows): l2, max_1, sub_2, exp_3, sum_4, pick_7, sum_8, nll_9, d_sum_4, d_sub_2
    # merged into d_sub_2: d_sum_10 = 1/N
    # merged into d_sub_2: d_sum_8 = -1/N
    # merged into d_sub_2: d_pick_7_x2 = Piecewise((-1/N, Eq(iota_6, reshape_5)), (0, True))
    # merged into d_sub_2: d_exp_3_x0 = d_sum_4*exp_3
    # l2 = l2_b + l2_mm
    np.add(l2_mm, l2_b, out=l2)
    # max_1 = max(l2, axes=(1,), keepdims)
    np.maximum.reduce(l2, axis=(1,), keepdims=True, out=max_1)
    # sub_2 = l2 - max_1
    np.subtract(l2, max_1, out=sub_2)
    # exp_3 = exp(sub_2)
    np.exp(sub_2, out=exp_3)
    # sum_4 = sum(exp_3, axes=(1,), keepdims)
    np.matmul(exp_3, ones0, out=sum_4)
    # pick_7 = Piecewise((sub_2, Eq(iota_6, reshape_5)), (0, True))
    np.copyto(pick_7, 0)
    np.equal(reshape_5, iota_6, out=tmp0)
    np.copyto(pick_7, sub_2, where=tmp0)
    # sum_8 = sum(pick_7, axes=(1,), keepdims)
    np.matmul(pick_7, ones0, out=sum_8)
    # nll_9 = -sum_8 + log(sum_4)
    np.log(sum_4, out=nll_9)
    np.subtract(nll_9, sum_8, out=nll_9)
    # d_sum_4 = 1/(N*sum_4)
    np.divide(float(1/np.float64(N)), sum_4, out=d_sum_4)
    # d_sub_2 = d_sum_4*exp_3 + Piecewise((-1/N, Eq(iota_6, reshape_5)), (0, True))
    np.multiply(d_sum_4, exp_3, out=d_sub_2)
    np.copyto(tmp1, 0)
    np.equal(reshape_5, iota_6, out=tmp2)
    np.copyto(tmp1, float(-1/np.float64(N)), where=tmp2)
    np.add(d_sub_2, tmp1, out=d_sub_2)
    l2_W_T = l2_W.transpose((1, 0))  # l2_W_T
    # ---- kernel matmul_4 (matmul): d_tanh_0
    # d_tanh_0 = d_sub_2 @ l2_W_T
    np.matmul(d_sub_2, l2_W_T, out=d_tanh_0)
    tanh_0_T = tanh_0.transpose((1, 0))  # tanh_0_T
    # ---- kernel matmul_5 (matmul): d_l2_W
    # d_l2_W = tanh_0_T @ d_sub_2
    np.matmul(tanh_0_T, d_sub_2, out=d_l2_W)
    # ---- kernel fused_pow_mul_add_6 (elementwise): d_l1
    # d_l1 = d_tanh_0*(1 - tanh_0**2)
    np.square(tanh_0, out=tmp3)
    np.subtract(1, tmp3, out=d_l1)
    np.multiply(d_l1, d_tanh_0, out=d_l1)
    x_T = x.transpose((1, 0))  # x_T
    # ---- kernel matmul_7 (matmul): d_l1_W
    # d_l1_W = x_T @ d_l1
    np.matmul(x_T, d_l1, out=d_l1_W)
    # ---- kernel reduce_sum_div_mul_8 (reduce): sum_10, loss
    # sum_10 = sum(nll_9, axes=(0, 1))
    np.add.reduce(nll_9, axis=(0, 1), out=sum_10)
    # loss = sum_10/N
    np.multiply(sum_10, float(1/np.float64(N)), out=loss)
    # ---- kernel reduce_sum_mul_add_9 (reduce): d_l2_b, l2_b_velocity_new, l2_b_new
    # d_l2_b = sum(d_sub_2, axes=(0,))
    np.matmul(ones1, d_sub_2, out=d_l2_b)
    # ---- kernel reduce_sum_mul_add_10 (reduce): d_l1_b, l1_b_velocity_new, l1_b_new
    # d_l1_b = sum(d_l1, axes=(0,))
    np.matmul(ones1, d_l1, out=d_l1_b)
    # l2_b_velocity_new = d_l2_b + 0.9*l2_b_velocity
    # update l2_b_velocity in place
    np.multiply(l2_b_velocity, 0.9, out=l2_b_velocity)
    np.add(l2_b_velocity, d_l2_b, out=l2_b_velocity)
    l2_b_velocity_new = l2_b_velocity  # new value, held in place
    # l2_b_new = l2_b - l2_b_velocity_new*lr
    # update l2_b in place
    np.multiply(l2_b_velocity_new, lr, out=tmp4)
    np.subtract(l2_b, tmp4, out=l2_b)
    l2_b_new = l2_b  # new value, held in place
    # l1_b_velocity_new = d_l1_b + 0.9*l1_b_velocity
    # update l1_b_velocity in place
    np.multiply(l1_b_velocity, 0.9, out=l1_b_velocity)
    np.add(l1_b_velocity, d_l1_b, out=l1_b_velocity)
    l1_b_velocity_new = l1_b_velocity  # new value, held in place
    # l1_b_new = l1_b - l1_b_velocity_new*lr
    # update l1_b in place
    np.multiply(l1_b_velocity_new, lr, out=tmp5)
    np.subtract(l1_b, tmp5, out=l1_b)
    l1_b_new = l1_b  # new value, held in place
    # ---- kernel fused_mul_add_11 (elementwise): l1_W_velocity_new, l1_W_new
    # l1_W_velocity_new = d_l1_W + 0.9*l1_W_velocity
    # update l1_W_velocity in place
    np.multiply(l1_W_velocity, 0.9, out=l1_W_velocity)
    np.add(l1_W_velocity, d_l1_W, out=l1_W_velocity)
    l1_W_velocity_new = l1_W_velocity  # new value, held in place
    # l1_W_new = l1_W - l1_W_velocity_new*lr
    # update l1_W in place
    np.multiply(l1_W_velocity_new, lr, out=tmp6)
    np.subtract(l1_W, tmp6, out=l1_W)
    l1_W_new = l1_W  # new value, held in place
    # ---- kernel fused_mul_add_12 (elementwise): l2_W_velocity_new, l2_W_new
    # l2_W_velocity_new = d_l2_W + 0.9*l2_W_velocity
    # update l2_W_velocity in place
    np.multiply(l2_W_velocity, 0.9, out=l2_W_velocity)
    np.add(l2_W_velocity, d_l2_W, out=l2_W_velocity)
    l2_W_velocity_new = l2_W_velocity  # new value, held in place
    # l2_W_new = l2_W - l2_W_velocity_new*lr
    # update l2_W in place
    np.multiply(l2_W_velocity_new, lr, out=tmp7)
    np.subtract(l2_W, tmp7, out=l2_W)
    l2_W_new = l2_W  # new value, held in place
    return (loss,)
