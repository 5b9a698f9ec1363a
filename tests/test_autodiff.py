"""Gradients of every primitive and composite, through gc.grad + gc.function, against
PyTorch autograd and central differences; adjoint accumulation, stop_gradient, zero
gradients, and the worked examples of the course (the 2-2-1 sigmoid network, J(x)).

Tolerances (float64): vs PyTorch rtol 1e-10, atol 1e-12; vs central differences of the
compiled forward h = 1e-6, rtol 1e-6, atol 1e-8 (truncation ~h^2, rounding ~eps*|L|/h).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.passes.autodiff import GradientWarning

RTOL_T, ATOL_T = 1e-10, 1e-12
H, RTOL_FD, ATOL_FD = 1e-6, 1e-6, 1e-8
N = gc.sym("N")


def weights(shape) -> np.ndarray:
    """Fixed weights that turn a tensor into a scalar loss with a non-uniform gradient."""
    return np.random.default_rng([7, *shape]).normal(size=shape)


def wsum(y):
    """sum(y * R): graphc node or torch tensor alike (R from the concrete shape)."""
    if isinstance(y, torch.Tensor):
        return (y * torch.from_numpy(weights(tuple(y.shape)))).sum()
    return gc.sum(y * y.graph.const(weights(y.shape)))


def check(build, reference, inputs: dict, params: dict | None = None, other: dict | None = None,
          shapes: dict | None = None, fd: bool = True, seed: int = 0):
    """Compile build(**nodes) -> scalar loss with its gradient w.r.t. every input and param;
    compare with reference(**tensors) under torch autograd and with central differences.
    inputs/params: name -> shape (random normal values); other: fixed non-differentiated
    feeds; shapes: symbolic shapes to declare for some inputs."""
    rng = np.random.default_rng(seed)
    values = {n: rng.normal(size=s) for n, s in {**inputs, **(params or {})}.items()}
    other = other or {}
    g = gc.Graph("check", dtype="float64")
    nodes = {n: g.input(n, (shapes or {}).get(n, inputs[n])) for n in inputs}
    nodes.update({n: g.param(n, s, init=values[n]) for n, s in (params or {}).items()})
    nodes.update({n: g.input(n, (shapes or {}).get(n, np.shape(v)),
                             dtype=np.asarray(v).dtype.name) for n, v in other.items()})
    wrt = [*inputs, *(params or {})]
    loss = build(**nodes)
    f = gc.function(g, [loss, *gc.grad(loss, [nodes[n] for n in wrt])])
    feeds = {**{n: values[n] for n in inputs}, **other}
    got = f(**feeds)

    ts = {n: torch.tensor(values[n], requires_grad=True) for n in wrt}
    tl = reference(**ts, **{n: torch.from_numpy(np.asarray(v)) for n, v in other.items()})
    tl.backward()
    np.testing.assert_allclose(got[0], tl.item(), rtol=RTOL_T, atol=ATOL_T)
    for n, gv in zip(wrt, got[1:]):
        np.testing.assert_allclose(gv, ts[n].grad.numpy(), rtol=RTOL_T, atol=ATOL_T,
                                   err_msg=f"d loss / d {n} vs torch")
    if fd:
        for n, gv in zip(wrt, got[1:]):
            np.testing.assert_allclose(gv, central_differences(f, feeds, n, values[n], n in
                                       inputs), rtol=RTOL_FD, atol=ATOL_FD,
                                       err_msg=f"d loss / d {n} vs central differences")
    return got


def central_differences(f, feeds: dict, name: str, value: np.ndarray, is_input: bool):
    """d loss / d value by (L(v + h e_i) - L(v - h e_i)) / 2h, element by element."""
    out = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        ls = []
        for step in (H, -H):
            v = value.copy()
            v[i] += step
            if is_input:
                ls.append(f(**{**feeds, name: v})[0])
            else:
                f[name] = v
                ls.append(f(**feeds)[0])
        out[i] = (ls[0] - ls[1]) / (2 * H)
    if not is_input:
        f[name] = value
    return out


# ---- map with broadcasting ---------------------------------------------------------------

MAPS = {
    "add_row": ({"a": (4, 3), "b": (3,)}, lambda a, b: a + b),
    "mul_outer": ({"a": (4, 1), "b": (1, 4)}, lambda a, b: a * b),
    "python_scalar": ({"a": (2, 3)}, lambda a: 2.5 * a - 1.5),
    "scalar_input": ({"a": (2, 3), "s": ()}, lambda a, s: a * s + s),
    "sub_div": ({"a": (3, 4), "b": (4,)}, lambda a, b: (a - b) / (b * b + 1.0)),
    "pow_rpow_neg": ({"a": (5,)}, lambda a: -(a ** 3) + 2.0 ** a),
    "rank_bcast": ({"a": (2, 3, 4), "b": (3, 1), "c": (4,)}, lambda a, b, c: a * b + c),
}


@pytest.mark.parametrize("case", MAPS)
def test_map_broadcasting(case):
    inputs, fn = MAPS[case]
    check(lambda **n: wsum(fn(**n)), lambda **t: wsum(fn(**t)), inputs)


# ---- reductions --------------------------------------------------------------------------

TORCH_REDUCE = {"sum": torch.sum, "max": torch.amax, "min": torch.amin}


@pytest.mark.parametrize("fn", ["sum", "max", "min"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduce(fn, axis, keepdims):
    gc_fn = getattr(gc, fn)

    def reference(x):
        dim = tuple(range(3)) if axis is None else axis
        return wsum(TORCH_REDUCE[fn](torch.sin(x), dim=dim, keepdim=keepdims))

    check(lambda x: wsum(gc_fn(gc.sin(x), axis=axis, keepdims=keepdims)), reference,
          {"x": (2, 3, 4)})


@pytest.mark.parametrize("fn", ["max", "min"])
def test_reduce_ties_split_gradient_evenly_like_amax(fn):
    """Tied maxima share the gradient evenly (torch.amax's rule), stated and vs torch."""
    sign = 1.0 if fn == "max" else -1.0
    x0 = sign * np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]])
    g = gc.Graph("ties", dtype="float64")
    x = g.input("x", (3, 3))
    gx, = gc.grad(gc.sum(getattr(gc, fn)(x, axis=1)), [x])
    want = [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 0, 1]]
    np.testing.assert_allclose(gc.function(g, [gx])(x=x0)[0], want, rtol=1e-15)
    tx = torch.tensor(x0, requires_grad=True)
    TORCH_REDUCE[fn](tx, dim=1).sum().backward()
    np.testing.assert_allclose(tx.grad.numpy(), want, rtol=1e-15)  # the rule is torch's


def test_reduce_all_with_ties_keepdims():
    x0 = np.array([[4.0, 1.0], [4.0, 4.0]])
    g = gc.Graph("ties_all", dtype="float64")
    x = g.input("x", (2, 2))
    gx, = gc.grad(gc.sum(gc.max(x, keepdims=True) * 3.0), [x])
    tx = torch.tensor(x0, requires_grad=True)
    (torch.amax(tx, dim=(0, 1), keepdim=True) * 3.0).sum().backward()
    np.testing.assert_allclose(gc.function(g, [gx])(x=x0)[0], tx.grad.numpy(), rtol=1e-15)


# ---- matmul and layout --------------------------------------------------------------------

MATMULS = {
    "2d": ((4, 3), (3, 5)),
    "batched": ((2, 4, 3), (2, 3, 5)),
    "bcast_right": ((2, 4, 3), (3, 5)),
    "bcast_left": ((4, 3), (2, 3, 5)),
    "bcast_one": ((1, 4, 3), (2, 3, 5)),
    "bcast_middle": ((2, 1, 4, 3), (3, 3, 2)),
}


@pytest.mark.parametrize("case", MATMULS)
def test_matmul(case):
    sa, sb = MATMULS[case]
    check(lambda a, b: wsum(a @ b), lambda a, b: wsum(a @ b), {"a": sa, "b": sb})


LAYOUTS = {
    "transpose_2d": ((3, 4), lambda x: gc.transpose(x), lambda x: x.T),
    "permute_3d": ((2, 3, 4), lambda x: gc.transpose(x, (2, 0, 1)),
                   lambda x: x.permute(2, 0, 1)),
    "reshape": ((2, 6), lambda x: gc.reshape(x, (3, 4)), lambda x: x.reshape(3, 4)),
    "reshape_minus_one": ((2, 3, 4), lambda x: gc.reshape(x, (6, -1)),
                          lambda x: x.reshape(6, -1)),
    "broadcast_to": ((3, 1), lambda x: gc.broadcast_to(x, (2, 3, 4)),
                     lambda x: x.expand(2, 3, 4)),
    "broadcast_vector": ((4,), lambda x: gc.broadcast_to(x, (3, 4)), lambda x: x.expand(3, 4)),
}


@pytest.mark.parametrize("case", LAYOUTS)
def test_layout(case):
    shape, gc_fn, torch_fn = LAYOUTS[case]
    check(lambda x: wsum(gc.tanh(gc_fn(x))), lambda x: wsum(torch.tanh(torch_fn(x))),
          {"x": shape})


# ---- composites ---------------------------------------------------------------------------

def test_linear():
    W0 = np.random.default_rng(5).normal(size=(3, 4))

    def build(x):
        y = gc.linear(x, 4, name="l", init=lambda shape, rng: W0)
        return wsum(gc.sigmoid(y))

    g = gc.Graph("linear", dtype="float64")
    x = g.input("x", (5, 3))
    loss = build(x)
    W, b = g["l_W"], g["l_b"]
    f = gc.function(g, [loss, *gc.grad(loss, [x, W, b])])
    X = np.random.default_rng(6).normal(size=(5, 3))
    tx, tW, tb = (torch.tensor(v, requires_grad=True) for v in (X, W0, np.zeros(4)))
    tl = wsum(torch.sigmoid(F.linear(tx, tW.T, tb)))
    tl.backward()
    got = f(x=X)
    np.testing.assert_allclose(got[0], tl.item(), rtol=RTOL_T)
    for gv, t in zip(got[1:], (tx, tW, tb)):
        np.testing.assert_allclose(gv, t.grad.numpy(), rtol=RTOL_T, atol=ATOL_T)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("fn,ref", [(gc.softmax, torch.softmax),
                                    (gc.log_softmax, torch.log_softmax)])
def test_softmax_family(fn, ref, axis):
    check(lambda x: wsum(fn(x * 3.0, axis=axis)), lambda x: wsum(ref(x * 3.0, dim=axis)),
          {"x": (4, 5)})


def test_softmax_cross_entropy_int_labels():
    labels = np.array([0, 2, 1, 2, 4], dtype=np.int64)
    check(lambda z, y: gc.softmax_cross_entropy(z * 2.0, y),
          lambda z, y: F.cross_entropy(z * 2.0, y), {"z": (5, 5)}, other={"y": labels},
          shapes={"z": (N, 5), "y": (N,)})


def test_softmax_cross_entropy_probabilities():
    p = np.random.default_rng(3).dirichlet(np.ones(4), size=3)
    check(lambda z, p: gc.softmax_cross_entropy(z, p), lambda z, p: F.cross_entropy(z, p),
          {"z": (3, 4)}, other={"p": p})


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse(half, reduction):
    scale = 0.5 if half else 1.0
    check(lambda p, t: gc.mse(gc.tanh(p), t, half=half, reduction=reduction),
          lambda p, t: scale * F.mse_loss(torch.tanh(p), t, reduction=reduction),
          {"p": (6, 2), "t": (6, 2)}, shapes={"p": (N, 2), "t": (N, 2)})


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 1), True)])
def test_mean_with_symbolic_batch(axis, keepdims):
    dim = (0, 1) if axis is None else axis
    check(lambda x: gc.sum(gc.square(gc.mean(gc.exp(x), axis=axis, keepdims=keepdims))),
          lambda x: torch.square(torch.exp(x).mean(dim=dim, keepdim=keepdims)).sum(),
          {"x": (5, 3)}, shapes={"x": (N, 3)})


# ---- accumulation, stop_gradient, zero gradients -------------------------------------------

def _sin(h):
    return h.sin() if isinstance(h, torch.Tensor) else gc.sin(h)


FANOUT = {  # the same code builds the graphc graph and the torch reference
    "x_times_x": lambda x, w: wsum(x * x) + wsum(x @ w),
    "shared_hidden": lambda x, w: wsum((lambda h: h * h + _sin(h) * h + h)(x @ w)),
    "reused_input": lambda x, w: wsum((x * x) @ w + x @ (w * w) - x),
}


@pytest.mark.parametrize("case", FANOUT)
def test_fan_out_accumulates_adjoints(case):
    check(FANOUT[case], FANOUT[case], {"x": (3, 4)}, params={"w": (4, 4)})


def test_fan_out_diamond():
    check(lambda x, w: wsum((lambda a: gc.relu(a) * gc.sigmoid(a) + a)(x @ w)),
          lambda x, w: wsum((lambda a: F.relu(a) * torch.sigmoid(a) + a)(x @ w)),
          {"x": (3, 4)}, params={"w": (4, 2)})


def test_gradient_with_respect_to_an_intermediate_node():
    X, W0 = np.random.default_rng(1).normal(size=(2, 3)), np.eye(3)[:, :2] + 0.1
    g = gc.Graph("inner", dtype="float64")
    h = gc.tanh(g.input("x", (2, 3)) @ g.param("W", (3, 2), init=W0))
    gh, = gc.grad(wsum(h * h), [h])
    th = torch.tanh(torch.from_numpy(X) @ torch.from_numpy(W0)).requires_grad_()
    wsum(th * th).backward()
    np.testing.assert_allclose(gc.function(g, [gh])(x=X)[0], th.grad.numpy(), rtol=RTOL_T)


def test_grad_grows_the_users_graph_through_its_own_api():
    """gc.grad appends the gradient nodes: old handles stay valid, a compile after it sees
    them, and a second grad adds fresh names rather than clashing."""
    g = gc.Graph("grown", dtype="float64")
    w = g.param("w", (2,), init=np.array([1.0, -2.0]))
    loss = gc.sum(w * w)
    before = len(g)
    dw, = gc.grad(loss, [w])
    dw2, = gc.grad(loss, [w])
    assert len(g) > before and dw.name != dw2.name and w.graph is g
    got = gc.function(g, [loss, dw, dw2], backend="numpy")()
    np.testing.assert_allclose(got[1], [2.0, -4.0])
    np.testing.assert_allclose(got[2], got[1])


def test_gradient_that_is_a_broadcast_has_the_full_shape():
    """Regression (found by test_property): an output that is a `broadcast` node was
    returned un-broadcast, d_x of shape (1, 1) for x of shape (2, 1)."""
    g = gc.Graph("bcast_out", dtype="float64")
    x = g.input("x", (2, 1))
    gx, = gc.grad(gc.sum(gc.abs(gc.mean(x, axis=0))), [x])
    got, = gc.function(g, [gx])(x=np.array([[0.125], [-0.25]]))
    np.testing.assert_array_equal(got, [[-0.5], [-0.5]])


def test_unrelated_node_gets_zero_gradient_and_a_warning():
    g = gc.Graph("unrelated", dtype="float64")
    x, z = g.input("x", (3,)), g.input("z", (2, 2))
    loss = gc.sum(gc.sin(x))
    with pytest.warns(GradientWarning, match="does not depend on 'z'"):
        gx, gz = gc.grad(loss, [x, z])
    vx, vz = gc.function(g, [gx, gz])(x=np.arange(3.0))  # z is not read: no feed for it
    np.testing.assert_allclose(vx, np.cos(np.arange(3.0)), rtol=1e-15)
    np.testing.assert_array_equal(vz, np.zeros((2, 2)))


def test_feeding_an_input_the_outputs_do_not_read_is_accepted():
    g = gc.Graph("unread", dtype="float64")
    x = g.input("x", (3,))
    g.input("z", (2,))  # declared, not read by the output
    gc.function(g, [gc.sin(x)])(x=np.zeros(3), z=np.zeros(2))


def test_constant_gradient_of_symbolic_shape():
    g = gc.Graph("const_grad", dtype="float64")
    x = g.input("x", (N,))
    g1, = gc.grad(gc.sum(gc.square(x)), [x])
    g2, = gc.grad(gc.sum(g1), [x])
    f = gc.function(g, [g2])
    np.testing.assert_array_equal(f(x=np.ones(3))[0], [2.0, 2.0, 2.0])
    with pytest.raises(gc.FeedError, match="N cannot be bound: feed 'x'"):
        f()


def test_stop_gradient_blocks_the_gradient():
    check(lambda x: wsum(gc.stop_gradient(x) * x + gc.stop_gradient(gc.exp(x))),
          lambda x: wsum(x.detach() * x + torch.exp(x).detach()), {"x": (2, 3)}, fd=False)
    g = gc.Graph("stop", dtype="float64")
    x = g.input("x", (3,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientWarning)
        gx, = gc.grad(gc.sum(gc.stop_gradient(x) * 2.0), [x])
    np.testing.assert_array_equal(gc.function(g, [gx])()[0], np.zeros(3))


# ---- the course's worked examples ---------------------------------------------------------

def test_course_221_sigmoid_network():
    """net_i = sum_j W1[i,j] x_j, so with row vectors h = sigmoid(x @ W1.T); y = sigmoid(h @
    W2.T); L = 1/2 (t - y)^2. The slides round, so they are matched to 3%."""
    W1_0, W2_0 = np.array([[0.1, 0.8], [0.4, 0.6]]), np.array([[0.3, 0.9]])
    X, T = np.array([[0.35, 0.9]]), np.array([[0.5]])
    g = gc.Graph("course221", dtype="float64")
    x, t = g.input("x", (1, 2)), g.input("t", (1, 1))
    W1, W2 = g.param("W1", (2, 2), init=W1_0), g.param("W2", (1, 2), init=W2_0)
    h = gc.sigmoid(x @ gc.transpose(W1))
    y = gc.sigmoid(h @ gc.transpose(W2))
    loss = gc.mse(y, t, half=True, reduction="sum")
    h_v, y_v, loss_v, gW1, gW2 = gc.function(g, [h, y, loss, *gc.grad(loss, [W1, W2])])(x=X, t=T)
    np.testing.assert_allclose(h_v, [[0.68, 0.6637]], atol=5e-4)
    np.testing.assert_allclose(y_v, [[0.69]], atol=5e-3)
    np.testing.assert_allclose(gW1, [[0.000945, 0.00243], [0.00287, 0.00738]], rtol=0.03)
    np.testing.assert_allclose(gW2, [[0.0276, 0.0269]], rtol=0.03)

    tW1, tW2 = (torch.tensor(v, requires_grad=True) for v in (W1_0, W2_0))
    ty = torch.sigmoid(torch.sigmoid(torch.from_numpy(X) @ tW1.T) @ tW2.T)
    tl = 0.5 * ((torch.from_numpy(T) - ty) ** 2).sum()
    tl.backward()
    np.testing.assert_allclose(loss_v, tl.item(), rtol=RTOL_T)
    np.testing.assert_allclose(gW1, tW1.grad.numpy(), rtol=RTOL_T)
    np.testing.assert_allclose(gW2, tW2.grad.numpy(), rtol=RTOL_T)


def test_course_J_cos_sin_square():
    """J = cos(sin(x^2) + 3x^2); dJ/dx = -sin(sin(x^2) + 3x^2) (2x cos(x^2) + 6x)."""
    g = gc.Graph("J", dtype="float64")
    x = g.input("x", (N,))
    J = gc.cos(gc.sin(gc.square(x)) + 3.0 * gc.square(x))
    dx, = gc.grad(gc.sum(J), [x])
    xs = np.linspace(-2.0, 2.0, 17)
    J_v, dx_v = gc.function(g, [J, dx])(x=xs)
    u = np.sin(xs ** 2) + 3 * xs ** 2
    np.testing.assert_allclose(J_v, np.cos(u), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx_v, -np.sin(u) * (2 * xs * np.cos(xs ** 2) + 6 * xs),
                               rtol=1e-12, atol=1e-13)
