"""graphc: a symbolic-graph compiler for neural networks (graph IR, autodiff by the chain
rule, simplification and fusion, generated NumPy and Triton code, a training runtime)."""
from . import init, recurrent
from .api import compile, function, grad, show_grad  # noqa: E402  (needs the IR above)
from .builder import (
    ELEMENTWISE,
    abs,
    broadcast_to,
    cos,
    dropout,
    elu,
    exp,
    gelu,
    hard_tanh,
    leaky_relu,
    linear,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mse,
    noise,
    one_hot,
    relu,
    reshape,
    sigmoid,
    silu,
    sin,
    softmax,
    softmax_cross_entropy,
    softplus,
    softsign,
    sqrt,
    square,
    stop_gradient,
    sum,
    tanh,
    transpose,
)
from .errors import (
    CheckpointError,
    CycleError,
    DtypeError,
    DuplicateNameError,
    ExprError,
    FeedError,
    GradError,
    GraphError,
    OpError,
    ShapeError,
)
from .graph import Graph, Node
from .layers import maxout, prelu
from .losses import bce_with_logits, l1_penalty, l2_penalty
from .optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR
from .runtime import Function, TrainStep
from .shapes import sym
from .trainer import Trainer

__all__ = [n for n in dir() if not n.startswith("_")]
