"""Recurrent layers from the course's equations (vanilla RNN, LSTM, GRU), unrolled in time.

A sequence is a list of T nodes (the IR has no slicing). A layer creates its params once
(`<name>_U_<gate>` input weights, `<name>_W_<gate>` recurrent weights, `<name>_b_<gate>`)
and a Python loop calls the cell T times with them, so the params are tied across steps
and autodiff sums their gradients over the steps: backpropagation through time, with no
special case. Node `<name>_h<t>` is the hidden state after reading input t (and, for an
LSTM, `<name>_cell<t>` the cell state); the initial state is an input or zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy

from . import exprs, init as initializers, shapes
from .builder import tanh
from .errors import FeedError, ShapeError
from .graph import Graph, Node

x0, x1, x2, x3, x4 = exprs.args(5)
sigmoid = exprs.sigmoid


# ---- sequences ----------------------------------------------------------------------------

def sequence_inputs(g: Graph, name: str, length: int, shape, dtype: str | None = None) -> list:
    """T inputs `<name>0 .. <name>{T-1}`, each of `shape` (e.g. (N, D)): one per time step."""
    if length < 1:
        raise ValueError(f"sequence {name!r}: length must be at least 1, got {length}")
    return [g.input(f"{name}{t}", shape, dtype) for t in range(length)]


def sequence_feeds(name: str, values) -> dict:
    """{`<name>0`: values[0], ...}: a (T, ...) array (or list of T arrays) split into the
    feeds of sequence_inputs(name)."""
    return {f"{name}{t}": np.asarray(v) for t, v in enumerate(values)}


# ---- params -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gate:
    """The params of one gate: x @ U + h @ W + b (U: (D, H), W: (H, H), b: (H,))."""
    U: Node
    W: Node
    b: Node

    def terms(self, x: Node, h: Node | None, tag: str) -> list:
        """[x@U, h@W, b]; h is None for a zero initial state (the h@W term vanishes)."""
        g = x.graph
        parts = [g.matmul(x, self.U, name=g.fresh(f"{tag}_xU"))]
        if h is not None:
            parts.append(g.matmul(h, self.W, name=g.fresh(f"{tag}_hW")))
        return parts + [self.b]


def _gate(g: Graph, name: str, gate: str, d_in, hidden: int, bias: float = 0.0) -> Gate:
    """Params U (Xavier-uniform), W (orthogonal), b (zeros or a constant) of one gate."""
    suffix = f"_{gate}" if gate else ""
    U = g.param(f"{name}_U{suffix}", (d_in, hidden), initializers.xavier_uniform())
    W = g.param(f"{name}_W{suffix}", (hidden, hidden), initializers.orthogonal())
    b = g.param(f"{name}_b{suffix}", (hidden,), initializers.constant(bias) if bias else None)
    return Gate(U, W, b)


def _apply(fn: Callable, terms: list, name: str) -> Node:
    """One map node fn(sum of terms): the pre-activation sum and the activation together."""
    g = terms[0].graph
    return g.map(fn(sympy.Add(*exprs.args(len(terms)))), terms, name=g.fresh(name))


def _check_sequence(xs: Sequence, where: str) -> tuple[Graph, object]:
    if not xs:
        raise ValueError(f"{where}: the input sequence is empty")
    g, feature = xs[0].graph, (xs[0].shape or (None,))[-1]
    for t, x in enumerate(xs):
        if len(x.shape) != 2 or not shapes.same_dim(x.shape[-1], feature):
            raise ShapeError(f"{where}: step {t} input {x.name!r} has shape "
                             f"{shapes.fmt(x.shape)}; every step must be (N, {feature})")
    return g, feature


def _check_state(state: Node | None, hidden: int, what: str, where: str) -> None:
    if state is not None and (len(state.shape) != 2 or state.shape[-1] != hidden):
        raise ShapeError(f"{where}: {what} {state.name!r} has shape {shapes.fmt(state.shape)}, "
                         f"expected (N, {hidden})")


# ---- vanilla RNN --------------------------------------------------------------------------

def rnn_cell(x: Node, h: Node | None, p: Gate, name: str, activation=tanh) -> Node:
    """h_t = activation(x_t U + h_{t-1} W + b); h None is a zero state."""
    pre = _apply(lambda s: s, p.terms(x, h, name), f"{name}_pre")
    return activation(pre, name=x.graph.fresh(name))


def rnn(xs: Sequence[Node], hidden: int, name: str = "rnn", h0: Node | None = None,
        activation=tanh) -> list:
    """Vanilla RNN over xs: the hidden states [h_0 .. h_{T-1}], params `<name>_U`,
    `<name>_W`, `<name>_b`. h0 None starts from zeros; pass an input to carry state."""
    where = f"rnn {name!r}"
    g, d_in = _check_sequence(xs, where)
    _check_state(h0, hidden, "h0", where)
    p = _gate(g, name, "", d_in, hidden)
    hs, h = [], h0
    for t, x in enumerate(xs):
        if activation is tanh:  # the common case as one map node: tanh(xU + hW + b)
            h = _apply(sympy.tanh, p.terms(x, h, f"{name}_h{t}"), f"{name}_h{t}")
        else:
            h = rnn_cell(x, h, p, f"{name}_h{t}", activation)
        hs.append(h)
    return hs


# ---- LSTM ---------------------------------------------------------------------------------

LSTM_GATES = ("i", "f", "o", "c")  # input, forget, output gates; candidate cell c~


def lstm_params(g: Graph, name: str, d_in, hidden: int, forget_bias: float = 1.0) -> dict:
    """{gate: Gate} for i, f, o and the candidate c; the forget gate's bias starts at
    `forget_bias` (1.0: remember by default early in training, Jozefowicz et al. 2015)."""
    return {k: _gate(g, name, k, d_in, hidden, forget_bias if k == "f" else 0.0)
            for k in LSTM_GATES}


def lstm_cell(x: Node, h: Node | None, c: Node | None, p: dict, name: str,
              t: int | str = "") -> tuple[Node, Node]:
    """One LSTM step, the slide's equations:
        i = σ(x U_i + h W_i + b_i)   f = σ(x U_f + h W_f + b_f)   o = σ(x U_o + h W_o + b_o)
        c~ = tanh(x U_c + h W_c + b_c)   c_t = f ∘ c_{t-1} + i ∘ c~   h_t = o ∘ tanh(c_t)
    h, c None are zero states (then f has no effect on this step and is not computed)."""
    g = x.graph
    gates = {}
    for k in LSTM_GATES:
        if k == "f" and c is None:
            continue
        node = f"{name}_cand{t}" if k == "c" else f"{name}_{k}{t}"
        gates[k] = _apply(sympy.tanh if k == "c" else sigmoid, p[k].terms(x, h, node), node)
    if c is None:
        c_new = g.map(x0 * x1, [gates["i"], gates["c"]], name=g.fresh(f"{name}_cell{t}"))
    else:
        c_new = g.map(x0 * x1 + x2 * x3, [gates["f"], c, gates["i"], gates["c"]],
                      name=g.fresh(f"{name}_cell{t}"))
    h_new = g.map(x0 * sympy.tanh(x1), [gates["o"], c_new], name=g.fresh(f"{name}_h{t}"))
    return h_new, c_new


def lstm(xs: Sequence[Node], hidden: int, name: str = "lstm", h0: Node | None = None,
         c0: Node | None = None, forget_bias: float = 1.0) -> tuple[list, tuple[Node, Node]]:
    """LSTM over xs: (hidden states [h_0 .. h_{T-1}], (final h, final cell c)). Params
    `<name>_{U,W,b}_{i,f,o,c}`. h0/c0 None start from zeros."""
    where = f"lstm {name!r}"
    g, d_in = _check_sequence(xs, where)
    _check_state(h0, hidden, "h0", where)
    _check_state(c0, hidden, "c0", where)
    p = lstm_params(g, name, d_in, hidden, forget_bias)
    hs: list[Node] = []
    cs: list[Node] = []
    for t, x in enumerate(xs):
        h, c = lstm_cell(x, hs[-1] if hs else h0, cs[-1] if cs else c0, p, name, t)
        hs.append(h)
        cs.append(c)
    return hs, (hs[-1], cs[-1])


# ---- GRU ----------------------------------------------------------------------------------

GRU_GATES = ("z", "r", "h")  # update gate, reset gate, candidate state h~


def gru_params(g: Graph, name: str, d_in, hidden: int, reset_after: bool = False) -> dict:
    """{gate: Gate} for z, r and the candidate h; reset_after adds `<name>_bW_h`, the bias
    of the candidate's recurrent product (inside the reset gate, as cuDNN and PyTorch)."""
    p: dict = {k: _gate(g, name, k, d_in, hidden) for k in GRU_GATES}
    if reset_after:
        p["bW_h"] = g.param(f"{name}_bW_h", (hidden,))
    return p


def gru_cell(x: Node, h: Node | None, p: dict, name: str, t: int | str = "") -> Node:
    """One GRU step, the slide's equations:
        z = σ(x U_z + h W_z + b_z)   r = σ(x U_r + h W_r + b_r)
        h~ = tanh(x U_h + (r ∘ h) W_h + b_h)          (reset before the product: the course)
        h~ = tanh(x U_h + b_h + r ∘ (h W_h + bW_h))   (reset after it: p has "bW_h")
        h_t = (1 - z) ∘ h_{t-1} + z ∘ h~
    h None is a zero state."""
    g = x.graph
    z = _apply(sigmoid, p["z"].terms(x, h, f"{name}_z{t}"), f"{name}_z{t}")
    cand = p["h"]
    if h is None:  # h = 0: (r∘h) W_h = 0 and h W_h = 0, so r matters only through bW_h
        h_tilde = _candidate_from_zero(x, p, name, t)
        return g.map(x0 * x1, [z, h_tilde], name=g.fresh(f"{name}_h{t}"))
    r = _apply(sigmoid, p["r"].terms(x, h, f"{name}_r{t}"), f"{name}_r{t}")
    xU = g.matmul(x, cand.U, name=g.fresh(f"{name}_cand{t}_xU"))
    if "bW_h" in p:
        hW = g.matmul(h, cand.W, name=g.fresh(f"{name}_cand{t}_hW"))
        h_tilde = g.map(sympy.tanh(x0 + x1 + x2 * (x3 + x4)), [xU, cand.b, r, hW, p["bW_h"]],
                        name=g.fresh(f"{name}_cand{t}"))
    else:
        rh = g.map(x0 * x1, [r, h], name=g.fresh(f"{name}_rh{t}"))
        rhW = g.matmul(rh, cand.W, name=g.fresh(f"{name}_cand{t}_hW"))
        h_tilde = g.map(sympy.tanh(x0 + x1 + x2), [xU, rhW, cand.b],
                        name=g.fresh(f"{name}_cand{t}"))
    return g.map((1 - x0) * x1 + x0 * x2, [z, h, h_tilde], name=g.fresh(f"{name}_h{t}"))


def _candidate_from_zero(x: Node, p: dict, name: str, t) -> Node:
    g, cand = x.graph, p["h"]
    xU = g.matmul(x, cand.U, name=g.fresh(f"{name}_cand{t}_xU"))
    if "bW_h" not in p:
        return g.map(sympy.tanh(x0 + x1), [xU, cand.b], name=g.fresh(f"{name}_cand{t}"))
    r = _apply(sigmoid, p["r"].terms(x, None, f"{name}_r{t}"), f"{name}_r{t}")
    return g.map(sympy.tanh(x0 + x1 + x2 * x3), [xU, cand.b, r, p["bW_h"]],
                 name=g.fresh(f"{name}_cand{t}"))


def gru(xs: Sequence[Node], hidden: int, name: str = "gru", h0: Node | None = None,
        reset_after: bool = False) -> list:
    """GRU over xs: the hidden states [h_0 .. h_{T-1}]. Params `<name>_{U,W,b}_{z,r,h}`
    (and `<name>_bW_h` with reset_after=True, PyTorch's variant). h0 None starts at zero."""
    where = f"gru {name!r}"
    g, d_in = _check_sequence(xs, where)
    _check_state(h0, hidden, "h0", where)
    p = gru_params(g, name, d_in, hidden, reset_after)
    hs, h = [], h0
    for t, x in enumerate(xs):
        h = gru_cell(x, h, p, name, t)
        hs.append(h)
    return hs


# ---- outputs over time --------------------------------------------------------------------

def dense(hs: Sequence[Node], features: int, name: str = "out") -> list:
    """The course's y_t = V h_t + c at every step, with one V `<name>_V` (H, features),
    Xavier-uniform, and one c `<name>_c` (zeros) shared by all steps."""
    g = hs[0].graph
    V = g.param(f"{name}_V", (hs[0].shape[-1], features), initializers.xavier_uniform())
    c = g.param(f"{name}_c", (features,))
    return [g.map(x0 + x1, [g.matmul(h, V, name=g.fresh(f"{name}{t}_hV")), c],
                  name=g.fresh(f"{name}{t}")) for t, h in enumerate(hs)]


def time_mean(values: Sequence[Node], name: str | None = None) -> Node:
    """The mean of T scalars (per-step losses). Summed as a balanced tree of binary adds:
    one T-ary map would cost O(T^2) in SymPy (a derivative per argument, each over all
    T terms; a substitution per producer, each rebuilding all T), the tree O(T log T)."""
    g = values[0].graph
    level = list(values)
    while len(level) > 1:
        level = [g.map(x0 + x1, level[k:k + 2], hint="time_sum") if k + 1 < len(level)
                 else level[k] for k in range(0, len(level), 2)]
    return g.map(x0 / len(values), level, name=name, hint="time_mean")


# ---- PyTorch weights ----------------------------------------------------------------------

TORCH_GATE_ORDER = {"rnn": ("",), "lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h")}


def from_torch_state(kind: str, state: dict, name: str) -> dict:
    """Params of our layer `name` equal to a one-layer torch.nn.RNN/LSTM/GRU's state_dict
    (arrays): torch stacks the gates' rows in weight_ih (gates*H, D) in the order i,f,g,o
    (LSTM) or r,z,n (GRU) and computes x W_ih^T, so U = W_ih[gate]^T, W = W_hh[gate]^T; it
    has two biases, b = b_ih + b_hh. GRU: torch's z is our 1 - z (h = (1-z) n + z h), so
    our z params are the negated torch ones; torch resets after the product, so the layer
    must have reset_after=True, with b_h = b_in and bW_h = b_hn."""
    if kind not in TORCH_GATE_ORDER:
        raise ValueError(f"kind must be one of {tuple(TORCH_GATE_ORDER)}, got {kind!r}")
    gates = TORCH_GATE_ORDER[kind]
    split = {k: np.split(np.asarray(state[f"{k}_l0"], dtype=np.float64), len(gates))
             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    out = {}
    for k, gate in enumerate(gates):
        sign = -1.0 if (kind, gate) == ("gru", "z") else 1.0
        suffix = f"_{gate}" if gate else ""
        out[f"{name}_U{suffix}"] = sign * split["weight_ih"][k].T
        out[f"{name}_W{suffix}"] = sign * split["weight_hh"][k].T
        if (kind, gate) == ("gru", "h"):
            out[f"{name}_b_h"], out[f"{name}_bW_h"] = split["bias_ih"][k], split["bias_hh"][k]
        else:
            out[f"{name}_b{suffix}"] = sign * (split["bias_ih"][k] + split["bias_hh"][k])
    return out


# ---- truncated BPTT -----------------------------------------------------------------------

class CarriedState:
    """Truncated BPTT: runs a compiled step window by window, feeding each window's final
    state (the step's `outputs`) as the next window's initial-state inputs. The state is
    fed as data, so no gradient flows across windows. carry: {initial-state input name:
    final-state node}, e.g. {"h0": hs[-1]}; every final-state node must be among the
    step's outputs. The first window (and the one after reset()) starts from zeros."""

    def __init__(self, step, carry: dict):
        self.step = step
        self.carry = {k: (v.name if isinstance(v, Node) else v) for k, v in carry.items()}
        not_inputs = [k for k in self.carry if k not in step.model.nodes_of("input")]
        if not_inputs:
            raise ValueError(f"{not_inputs} are not inputs of graph {step.model.name!r}; "
                             "carry maps initial-state inputs to final-state nodes")
        missing = [v for v in self.carry.values() if v not in step.fetch]
        if missing:
            raise ValueError(f"final state(s) {missing} are not outputs of the step; compile "
                             f"with outputs=[...] naming them")
        self.state: dict = {}

    def reset(self) -> None:
        """Start the next window from zeros (a new sequence)."""
        self.state = {}

    def __call__(self, feeds: dict | None = None, **kw) -> float:
        feeds = {**(feeds or {}), **kw}
        state = self.state or self._zeros(feeds)
        loss = self.step({**feeds, **state})
        self.state = {k: self.step.outputs[v] for k, v in self.carry.items()}
        return loss

    def _zeros(self, feeds: dict) -> dict:
        """Zero initial states, their symbolic dims (the batch) read off the other feeds."""
        graph = self.step.model
        dims: dict = {}
        for n, v in feeds.items():
            if n in graph:
                for d, size in zip(graph.attrs(n)["shape"], np.shape(v)):
                    dims.setdefault(d, size)
        zeros = {}
        for n in self.carry:
            a = graph.attrs(n)
            try:
                shape = tuple(d if isinstance(d, int) else dims[d] for d in a["shape"])
            except KeyError:
                raise FeedError(f"initial state {n!r} {shapes.fmt(a['shape'])}: no feed binds "
                                f"its dimensions") from None
            zeros[n] = np.zeros(shape, dtype=a["dtype"])
        return zeros
