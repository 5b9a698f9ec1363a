"""The rand primitive and dropout: draws in [0, 1) that change every step and repeat for
a seed (per backend), inverted scaling, identity in evaluation, gradients through the
mask, on the NumPy backend and the Triton interpreter."""
import numpy as np
import pytest
import torch

import graphc as gc
from tests.backends import BACKENDS

N = gc.sym("N")


def dropout_model(p=0.5, seed=7, width=32):
    g = gc.Graph("drop")
    x = g.input("x", (N, width))
    y = gc.dropout(x, p, seed=seed, name="y")
    w = g.input("w", (N, width))
    loss = gc.sum(y * w, name="loss")
    return g, x, y, loss


def feeds(n=64, width=32, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, width)).astype(np.float32),
            "w": rng.normal(size=(n, width)).astype(np.float32)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rand_is_uniform_new_each_call_and_repeats_for_a_seed(backend):
    def draws(seed, calls=3):
        g = gc.Graph("r")
        u = g.rand((64, 64), seed=seed, name="u")
        f = gc.function(g, [g.map("1.0 * x0", [u], name="v")], backend=backend)
        return [f()[0] for _ in range(calls)]

    first, again, other = draws(1), draws(1), draws(2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)          # same seed, same sequence
    assert not np.array_equal(first[0], first[1])    # a new draw each call
    assert not np.array_equal(first[0], other[0])    # another seed, other numbers
    u = np.concatenate([a.ravel() for a in first])
    assert u.min() >= 0 and u.max() < 1
    # 12288 draws: mean 1/2 with sd 0.0026, variance 1/12; 5 sd bounds
    assert abs(u.mean() - 0.5) < 0.013
    assert abs(u.var() - 1 / 12) < 0.004


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_one_minus_p_and_scales_the_kept(backend, p):
    g, x, y, loss = dropout_model(p)
    f = gc.function(g, [y], backend=backend, training=True)
    data = feeds(256)
    out, = f(data)
    kept = out != 0
    # 8192 Bernoulli(1 - p) draws: 5 standard deviations
    sd = np.sqrt(p * (1 - p) / kept.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sd
    np.testing.assert_allclose(out[kept], data["x"][kept] / (1 - p), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_the_identity_in_evaluation(backend):
    g, x, y, loss = dropout_model(0.5)
    data = feeds()
    out, value = gc.function(g, [y, loss], backend=backend)(data)
    np.testing.assert_array_equal(out, data["x"])
    assert value == pytest.approx(float(np.sum(data["x"] * data["w"])), rel=1e-5)
    assert "rand" not in gc.function(g, [loss], backend="numpy").source


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_flows_through_the_forward_mask(backend):
    """d loss / dx against torch autograd on the mask the forward drew (both kernels of
    the Triton path draw it again from the same key: they must agree)."""
    g, x, y, loss = dropout_model(0.3)
    dx, = gc.grad(loss, [x])
    data = feeds()
    out, got = gc.function(g, [y, dx], backend=backend, training=True)(data)
    mask = torch.tensor(out != 0, dtype=torch.float64)
    tx = torch.tensor(data["x"], dtype=torch.float64, requires_grad=True)
    (tx * mask / 0.7 * torch.tensor(data["w"], dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_each_dropout_draws_its_own_mask():
    g = gc.Graph("two")
    x = g.input("x", (16, 16))
    a, b = gc.dropout(x, 0.5, name="a"), gc.dropout(x, 0.5, name="b")
    out_a, out_b = gc.function(g, [a, b], backend="numpy", training=True)(
        x=np.ones((16, 16), np.float32))
    assert not np.array_equal(out_a != 0, out_b != 0)


def test_training_step_counts_steps_and_saved_state_replays_masks(tmp_path):
    def model():
        g = gc.Graph("mlp", seed=3)
        x = g.input("x", (N, 8))
        h = gc.dropout(gc.tanh(gc.linear(x, 16, name="l1")), 0.5, name="drop")
        return g, gc.mse(gc.linear(h, 1, name="l2"), g.input("t", (N, 1)), name="loss")

    data = {"x": np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32),
            "t": np.ones((10, 1), np.float32)}
    g, loss = model()
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend="numpy")
    step(data)
    step.save(tmp_path / "s.npz")
    assert float(step["rng_step"]) == 1.0
    later = [step(data) for _ in range(3)]
    g2, loss2 = model()
    again = gc.compile(g2, loss2, optimizer=gc.SGD(lr=0.1), backend="numpy")
    again.load(tmp_path / "s.npz")
    assert [again(data) for _ in range(3)] == later   # same params, same masks
    # evaluation draws nothing and leaves the counter alone
    value = step.evaluate(data)
    assert float(step["rng_step"]) == 4.0 and value == step.evaluate(data)


def test_graph_prints_the_mask_and_counter():
    g, x, y, loss = dropout_model()
    text = str(g)
    assert "rand(seed=7, step=rng_step)" in text and "step counter" in text


def test_bad_dropout_arguments():
    g, x, y, loss = dropout_model()
    with pytest.raises(ValueError, match="p must be in"):
        gc.dropout(x, 1.0)
    with pytest.raises(gc.DtypeError, match="float"):
        gc.dropout(g.input("labels", (3,), dtype="int64"), 0.5)
    with pytest.raises(gc.GraphError, match="seed"):
        g.rand((2, 2), seed=-1)


def test_triton_refuses_a_returned_rand():
    g = gc.Graph("r")
    u = g.rand((4,), name="u")
    with pytest.raises(NotImplementedError, match="rand node 'u'"), \
            pytest.warns(UserWarning, match="Triton"):
        gc.function(g, [u], backend="triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_noise_has_its_std_in_training_and_none_in_evaluation(backend):
    g = gc.Graph("n")
    x = g.input("x", (128, 64))
    y = gc.noise(x, 0.3, seed=5, name="y")
    zeros = np.zeros((128, 64), np.float32)
    drawn, = gc.function(g, [y], backend=backend, training=True)(x=zeros)
    # 8192 draws: mean within 5 sd (0.3 / sqrt(8192)), std within 3%
    assert abs(drawn.mean()) < 5 * 0.3 / np.sqrt(drawn.size)
    assert drawn.std() == pytest.approx(0.3, rel=0.03)
    assert np.abs(drawn).max() <= 0.3 * np.sqrt(3) + 1e-6
    np.testing.assert_array_equal(gc.function(g, [y], backend=backend)(x=zeros)[0], zeros)
