"""Seeded parameter initialisers: each is `(shape, rng) -> array`, called once by Graph.param."""
from __future__ import annotations

import numpy as np


def _fans(shape):
    if len(shape) < 2:
        return (shape[0] if shape else 1), (shape[0] if shape else 1)
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive  # (in, out) for x @ W


def zeros():
    return lambda shape, rng: np.zeros(shape)


def constant(value: float):
    return lambda shape, rng: np.full(shape, float(value))


def normal(std: float = 0.01, mean: float = 0.0):
    return lambda shape, rng: rng.normal(mean, std, size=shape)


def uniform(low: float = -0.05, high: float = 0.05):
    return lambda shape, rng: rng.uniform(low, high, size=shape)


def xavier_uniform(gain: float = 1.0):
    """Glorot & Bengio: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    def init(shape, rng):
        fan_in, fan_out = _fans(shape)
        a = gain * np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, size=shape)
    return init


def xavier_normal(gain: float = 1.0):
    def init(shape, rng):
        fan_in, fan_out = _fans(shape)
        return rng.normal(0.0, gain * np.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    return init


def he_normal():
    """He et al. for ReLU layers: N(0, 2 / fan_in)."""
    def init(shape, rng):
        fan_in, _ = _fans(shape)
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    return init


def he_uniform():
    def init(shape, rng):
        fan_in, _ = _fans(shape)
        a = np.sqrt(6.0 / fan_in)
        return rng.uniform(-a, a, size=shape)
    return init


def orthogonal(gain: float = 1.0):
    """Saxe et al.: a (semi-)orthogonal matrix times `gain`, as torch.nn.init.orthogonal_:
    QR of a normal matrix (rows = shape[0], the rest flattened into columns; transposed so
    it is tall), signs of Q's columns fixed by R's diagonal so Q is uniformly distributed.
    Rows are orthonormal if there are fewer rows than columns, else columns are."""
    def init(shape, rng):
        if len(shape) < 2:
            raise ValueError(f"orthogonal init needs at least 2 dimensions, got shape {shape}")
        rows = shape[0]
        cols = int(np.prod(shape[1:]))
        flat = rng.normal(0.0, 1.0, size=(rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))  # without this, numpy's QR is biased towards some signs
        if rows < cols:
            q = q.T
        return gain * q.reshape(shape)
    return init
