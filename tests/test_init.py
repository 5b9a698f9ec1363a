"""Initialisers (graphc.init): seeded by (graph seed, param name), and the statistics each
promises, checked on large matrices against the formulas (not against the code's output).

Sampling tolerances: on n values, a sample std is within about 3/sqrt(2n) of the true one
(relative) and a sample mean within 4 std/sqrt(n); we allow a little more than that.
The orthogonal init is checked to 1e-12 (QR in float64)."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import init

SHAPE = (400, 300)   # 120,000 values: sample std within ~1% of the true std
FAN_IN, FAN_OUT = SHAPE
ALL = {
    "zeros": init.zeros(), "constant": init.constant(0.5), "normal": init.normal(0.1),
    "uniform": init.uniform(-0.2, 0.2), "xavier_uniform": init.xavier_uniform(),
    "xavier_normal": init.xavier_normal(), "he_normal": init.he_normal(),
    "he_uniform": init.he_uniform(), "orthogonal": init.orthogonal(),
}
RANDOM = [k for k in ALL if k not in ("zeros", "constant")]


def value(initializer, shape=SHAPE, seed=0, name="W") -> np.ndarray:
    g = gc.Graph("init", dtype="float64", seed=seed)
    return g.param(name, shape, init=initializer).graph.attrs(name)["value"]


@pytest.mark.parametrize("kind", RANDOM)
def test_seeded_by_graph_seed_and_name(kind):
    """Same graph seed and name: same values; another seed or another name: different."""
    a = value(ALL[kind], (20, 30))
    np.testing.assert_array_equal(a, value(ALL[kind], (20, 30)))
    assert not np.allclose(a, value(ALL[kind], (20, 30), seed=1))
    assert not np.allclose(a, value(ALL[kind], (20, 30), name="V"))


def check_std(v: np.ndarray, std: float):
    rel = 4 / np.sqrt(2 * v.size)
    assert abs(v.mean()) < 5 * std / np.sqrt(v.size)
    assert v.std() == pytest.approx(std, rel=rel)


def test_constant_and_zeros():
    assert np.all(value(ALL["zeros"]) == 0) and np.all(value(ALL["constant"]) == 0.5)


def test_normal_and_uniform():
    check_std(value(ALL["normal"]), 0.1)
    u = value(ALL["uniform"])
    assert -0.2 <= u.min() and u.max() <= 0.2 and u.max() > 0.199 and u.min() < -0.199
    check_std(u, 0.4 / np.sqrt(12))


def test_xavier_bound_and_std():
    """Glorot & Bengio 2010: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), and
    N(0, 2 / (fan_in + fan_out)); gain multiplies both."""
    a = np.sqrt(6 / (FAN_IN + FAN_OUT))
    u = value(ALL["xavier_uniform"])
    assert np.abs(u).max() <= a and np.abs(u).max() > 0.999 * a
    check_std(u, a / np.sqrt(3))
    check_std(value(ALL["xavier_normal"]), np.sqrt(2 / (FAN_IN + FAN_OUT)))
    check_std(value(init.xavier_uniform(gain=2.0)), 2 * a / np.sqrt(3))


def test_he_std():
    """He et al. 2015: std sqrt(2 / fan_in), for both the normal and the uniform form."""
    std = np.sqrt(2 / FAN_IN)
    check_std(value(ALL["he_normal"]), std)
    u = value(ALL["he_uniform"])
    assert np.abs(u).max() <= np.sqrt(3) * std
    check_std(u, std)


@pytest.mark.parametrize("shape", [(64, 64), (50, 20), (20, 50), (6, 4, 5)])
def test_orthogonal(shape):
    """Columns orthonormal when the matrix is tall (W^T W = I), rows when it is wide
    (W W^T = I); more dims flatten into columns, as torch.nn.init.orthogonal_."""
    gain = 1.5
    w = value(init.orthogonal(gain=gain), shape)
    assert w.shape == shape
    flat = w.reshape(shape[0], -1) / gain
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-12)


def test_orthogonal_is_not_biased_in_sign():
    """With the sign correction the diagonal of a square orthogonal draw has mean ~0 over
    many draws (uncorrected numpy QR makes it mostly negative); the entries of one large
    draw have std 1/sqrt(n), as for a uniformly random orthogonal matrix."""
    diag = np.concatenate([np.diag(value(ALL["orthogonal"], (8, 8), name=f"W{k}"))
                           for k in range(200)])
    assert abs(diag.mean()) < 4 * diag.std() / np.sqrt(diag.size)
    check_std(value(ALL["orthogonal"], (300, 300)), 1 / np.sqrt(300))


def test_orthogonal_needs_a_matrix():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        value(init.orthogonal(), (5,))
