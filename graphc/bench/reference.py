"""Reference training steps for the digits MLP (x -> tanh(x W1 + b1) W2 + b2 -> softmax
cross-entropy, SGD with momentum), written by hand in NumPy and in PyTorch, so graphc's
generated step can be checked against them and timed beside them.

Every step takes the same initial parameters (a dict named as graphc names them: `l1_W`
(in, hidden), `l1_b`, `l2_W` (hidden, classes), `l2_b`), is called as `step(x, y)` with
float32 features and int64 labels, updates its own copy of the parameters and returns the
loss before the update. SGD follows torch.optim.SGD: v <- momentum*v + g; w <- w - lr*v.
"""
from __future__ import annotations

import numpy as np

PARAMS = ("l1_W", "l1_b", "l2_W", "l2_b")


def initial_params(params) -> dict:
    """Copies of the four MLP parameters from a dict or a compiled graphc step."""
    return {k: np.array(params[k], copy=True) for k in PARAMS}


class NumpyMLPStep:
    """The training step as a person writes it in NumPy: forward, hand-derived backward,
    in-place momentum update."""

    def __init__(self, params, lr: float, momentum: float = 0.0):
        self.p = initial_params(params)
        self.v = {k: np.zeros_like(w) for k, w in self.p.items()}
        self.lr, self.momentum = lr, momentum

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        p, n = self.p, x.shape[0]
        h = np.tanh(x @ p["l1_W"] + p["l1_b"])
        z = h @ p["l2_W"] + p["l2_b"]
        z -= z.max(axis=1, keepdims=True)          # stable softmax: shift by the row max
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = float(np.mean(np.log(s[:, 0]) - z[rows, y]))
        dz = e / s                                 # d loss / d logits = (softmax - onehot)/n
        dz[rows, y] -= 1.0
        dz /= n
        dh = (dz @ p["l2_W"].T) * (1.0 - h * h)     # tanh' = 1 - tanh^2
        grads = {"l2_W": h.T @ dz, "l2_b": dz.sum(axis=0),
                 "l1_W": x.T @ dh, "l1_b": dh.sum(axis=0)}
        for k, g in grads.items():
            v = self.v[k]
            v *= self.momentum
            v += g
            p[k] -= self.lr * v
        return loss

    def params(self) -> dict:
        return self.p


class TorchMLPStep:
    """The same step in PyTorch, for any depth (params l1_W, l1_b, l2_W, ...): addmm and
    tanh per layer (what nn.Linear does), F.cross_entropy, autograd, torch.optim.SGD. With
    `compile=True` the loss goes through torch.compile (fullgraph), so the forward and its
    backward run as generated code; the optimizer step stays eager. Called on NumPy arrays
    it returns the loss as a float; on device tensors it returns the loss tensor without
    waiting for the device (so batches of calls queue as graphc's do)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, compile: bool = False,
                 device: str = "cpu", compile_kw: dict | None = None):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        names = getattr(params, "params", params)   # a compiled step, or a dict
        depth = sum(1 for k in names if k.startswith("l") and k.endswith("_W"))
        self.layers = [tuple(torch.tensor(np.array(params[f"l{i}_{k}"]), device=device,
                                          requires_grad=True) for k in "Wb")
                       for i in range(1, depth + 1)]
        self.p = {f"l{i}_{k}": t for i, pair in enumerate(self.layers, 1)
                  for k, t in zip("Wb", pair)}
        self.opt = torch.optim.SGD(list(self.p.values()), lr=lr, momentum=momentum)
        self.loss_fn = self._loss if not (compile or compile_kw) else \
            torch.compile(self._loss, fullgraph=True, **(compile_kw or {}))

    def _loss(self, x, y):
        h = x
        for i, (W, b) in enumerate(self.layers):
            h = self.torch.addmm(b, h, W)
            if i < len(self.layers) - 1:
                h = self.torch.tanh(h)
        return self.F.cross_entropy(h, y)

    def __call__(self, x, y):
        host = isinstance(x, np.ndarray)
        if host:
            x, y = self.torch.from_numpy(x), self.torch.from_numpy(y)  # zero-copy views
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(x, y)
        loss.backward()
        self.opt.step()
        return loss.item() if host else loss.detach()

    def params(self) -> dict:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.p.items()}


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, count: int, seed: int = 0):
    """`count` random minibatches (features, labels) drawn without replacement per batch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        idx = rng.choice(len(x), size=batch_size, replace=False)
        out.append((np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx])))
    return out


def parity(steps: dict, data: list) -> dict:
    """Run each step over the same batches; the largest |loss - first step's loss| per step.
    Steps are called as fn(x, y) and must start from the same parameters."""
    losses = {name: np.array([fn(x, y) for x, y in data]) for name, fn in steps.items()}
    first = next(iter(losses.values()))
    return {name: float(np.max(np.abs(v - first))) for name, v in losses.items()}
