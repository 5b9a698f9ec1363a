"""PyTorch's reference for each elementwise op, the one table the tests and the fuzzer read:
keyed by builder op (gc.ELEMENTWISE) and, for a function of graphc/functions.py with no
builder op (expm1, erf), by its name. tests/test_functions.py checks that it covers both.

Each entry is the call as text ("{}" where the tensor and any parameters go), so that the
fuzzer's reproducer can print it; the parameters are gc's, in gc's order (leaky_relu's
slope, elu's alpha), which torch takes in the same order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import graphc as gc

TORCH_TEXT = {
    "exp": "torch.exp({})", "log": "torch.log({})", "tanh": "torch.tanh({})",
    "sin": "torch.sin({})", "cos": "torch.cos({})", "abs": "torch.abs({})",
    "sigmoid": "torch.sigmoid({})", "softplus": "F.softplus({})", "relu": "F.relu({})",
    "leaky_relu": "F.leaky_relu({})", "elu": "F.elu({})", "softsign": "F.softsign({})",
    "hard_tanh": "F.hardtanh({})", "sqrt": "torch.sqrt({})", "square": "torch.square({})",
    "gelu": "F.gelu({})", "gelu_tanh": "F.gelu({}, approximate='tanh')", "silu": "F.silu({})",
    # functions of graphc/functions.py that no builder op is
    "sign": "torch.sign({})", "floor": "torch.floor({})", "expm1": "torch.expm1({})",
    "erf": "torch.erf({})",
}
# builder ops not called as gc.<op>(x): gc.gelu's approximate="tanh" form
GRAPHC_TEXT = {"gelu_tanh": "gc.gelu({}, approximate='tanh')"}


def _callable(text: str):
    """The call text as a function of the tensor (and parameters)."""
    return eval(f"lambda *a: {text.format('*a')}", {"torch": torch, "F": F, "gc": gc})


TORCH = {op: _callable(text) for op, text in TORCH_TEXT.items()}


def graphc_text(op: str) -> str:
    return GRAPHC_TEXT.get(op, f"gc.{op}({{}})")


def graphc_op(op: str):
    """gc's builder of a builder op, as a function of the node (and parameters)."""
    return _callable(graphc_text(op))


def call_text(text: str, x: str, params=()) -> str:
    """A call of TORCH_TEXT or graphc_text with argument text x and parameters filled in."""
    return text.format(", ".join([x, *map(repr, params)]))


def pair(op: str, *params) -> tuple:
    """(graphc builder, torch reference) of a builder op, both with these parameters."""
    g, t = graphc_op(op), TORCH[op]
    return (lambda x: g(x, *params)), (lambda x: t(x, *params))
