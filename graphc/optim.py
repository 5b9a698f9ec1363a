"""Optimizers as graph rewrites: each adds its update as `map` nodes (and its state as
untrained params), so updates fuse, show up in the generated code and run in place.
Gradient clipping and learning-rate schedules are graph expressions too."""
from __future__ import annotations

import math
import numbers

import sympy

from . import exprs, shapes
from .graph import Graph, Node

# The optimizer's scalars (lr, step counter, bias corrections, scheduled lr) take the params'
# dtype, so update kernels never mix dtypes. float64 models match torch to rounding; in
# float32, 1 - 0.999**t loses ~1e-5 relative to cancellation in the first steps (torch
# computes it in Python floats) and the counter stops at 2**24 steps.
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


def _number(owner: str, arg: str, value, ok, want: str) -> float:
    """`value` as a float when it is a finite real number with ok(value); else a ValueError
    naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{owner}: {arg} must be {want}, got {value!r}")
    return float(value)


def _count(owner: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{owner}: {arg} must be a positive int, got {value!r}")
    return int(value)


# ---- learning-rate schedules ---------------------------------------------------------------

class Schedule:
    """The lr of update number t+1 (t = updates done before it) as a SymPy expression of
    the base lr and t; t counts like torch's `scheduler.last_epoch` in the loop
    `optimizer.step(); scheduler.step()`, so update 1 uses t = 0."""

    def expr(self, base: sympy.Expr, t: sympy.Expr) -> sympy.Expr:
        raise NotImplementedError


class StepLR(Schedule):
    """lr * gamma**floor(t / step_size), as torch.optim.lr_scheduler.StepLR."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = _count("StepLR", "step_size", step_size)
        self.gamma = _number("StepLR", "gamma", gamma, lambda v: v > 0, "positive")

    def __repr__(self):
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma})"

    def expr(self, base, t):
        return base * sympy.Float(self.gamma) ** sympy.floor(t / self.step_size)


class CosineAnnealingLR(Schedule):
    """eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2, the closed form of
    torch.optim.lr_scheduler.CosineAnnealingLR (periodic past T_max, as torch's is)."""

    def __init__(self, T_max: int, eta_min: float = 0.0):  # noqa: N803 (torch's name)
        self.T_max = _count("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = _number("CosineAnnealingLR", "eta_min", eta_min, lambda v: v >= 0, ">= 0")

    def __repr__(self):
        return f"CosineAnnealingLR(T_max={self.T_max}, eta_min={self.eta_min})"

    def expr(self, base, t):
        low = sympy.Float(self.eta_min)
        # pi/T_max as one float literal, so the generated code needs no `pi`
        phase = sympy.Float(math.pi / self.T_max) * t
        return low + (base - low) * (1 + sympy.cos(phase)) / 2


# ---- shared parts of every optimizer -------------------------------------------------------

class Optimizer:
    """What SGD and Adam share: the settable `lr` param, an optional schedule (driven by a
    step counter param), coupled or decoupled weight decay and global-norm clipping."""

    uses_count = False  # whether the update itself reads the step counter (Adam: yes)

    def __init__(self, lr: float, weight_decay: float, clip_norm: float | None,
                 schedule: Schedule | None):
        owner = type(self).__name__
        self.lr = _number(owner, "lr", lr, lambda v: v > 0, "positive")
        self.weight_decay = _number(owner, "weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
        self.clip_norm = None if clip_norm is None else \
            _number(owner, "clip_norm", clip_norm, lambda v: v > 0, "positive or None")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise ValueError(f"{owner}: schedule must be a Schedule (StepLR, "
                             f"CosineAnnealingLR) or None, got {schedule!r}")
        self.schedule = schedule

    def _extras(self) -> str:
        """The options shown in repr only when set."""
        parts = [f"clip_norm={self.clip_norm}" if self.clip_norm is not None else "",
                 f"schedule={self.schedule!r}" if self.schedule is not None else ""]
        return "".join(f", {p}" for p in parts if p)

    def build(self, graph: Graph, params: list, grads: list) -> tuple[Graph, dict]:
        """(a copy of `graph` with the update nodes added, {param or state name: node
        holding its new value}); `graph` itself is left as it was."""
        g = graph.copy()
        params = [g.node(p if isinstance(p, str) else p.name) for p in params]
        grads = [g.node(d if isinstance(d, str) else d.name) for d in grads]
        if self.clip_norm is not None:
            grads = clip_by_global_norm(g, params, grads, self.clip_norm)
        dtype = shapes.promote(p.dtype for p in params)
        lr = g.param(g.fresh("lr"), (), init=self.lr, dtype=dtype, trainable=False)
        updates: dict = {}
        count = None
        if self.schedule is not None or self.uses_count:
            # updates done so far: torch's `step` state before this update
            count = g.param(g.fresh("step_count"), (), dtype=dtype, trainable=False)
            updates[count.name] = g.map(exprs.arg(0) + 1, [count],
                                        name=g.fresh("step_count_new")).name
        if self.schedule is not None:
            base, t = exprs.args(2)
            lr = g.map(self.schedule.expr(base, t), [lr, count], name=g.fresh("lr_scheduled"))
        scalars = self.scalars(g, lr, count)
        for p, dp in zip(params, grads):
            updates.update(self.update(g, p, dp, scalars))
        return g, updates

    def scalars(self, g: Graph, lr: Node, count: Node | None) -> dict:
        """The scalar factors every param's update reads, computed once per step."""
        return {"lr": lr}

    def update(self, g: Graph, p: Node, dp: Node, scalars: dict) -> dict:
        """{name: new value node} for one param and its state."""
        raise NotImplementedError

    def state(self, g: Graph, p: Node, what: str) -> Node:
        """A zero-initialised state tensor shaped like p, named after it."""
        return g.param(g.fresh(f"{p.name}_{what}"), p.shape, dtype=p.dtype, trainable=False)


def clip_by_global_norm(g: Graph, params: list, grads: list, max_norm: float) -> list:
    """grads * min(1, max_norm / (||all grads||_2 + 1e-6)), as torch.nn.utils.clip_grad_norm_:
    one norm over every gradient together, computed in the graph."""
    x, s = exprs.args(2)
    sums = [g.reduce(g.map(x ** 2, [dp], name=g.fresh(f"{p.name}_grad_sq")), "sum",
                     name=g.fresh(f"{p.name}_grad_sqsum"))
            for p, dp in zip(params, grads)]
    norm = g.map(sympy.sqrt(sympy.Add(*exprs.args(len(sums)))), sums,
                 name=g.fresh("grad_norm"))
    scale = g.map(sympy.Min(1, sympy.Float(max_norm) / (x + CLIP_EPS)), [norm],
                  name=g.fresh("clip_scale"))
    return [g.map(x * s, [dp, scale], name=g.fresh(f"{p.name}_grad_clipped"), dtype=p.dtype)
            for p, dp in zip(params, grads)]


# ---- SGD -----------------------------------------------------------------------------------

class SGD(Optimizer):
    """Stochastic gradient descent as torch.optim.SGD (dampening 0):
    d = g + weight_decay*w;  v <- momentum*v + d;
    w <- w - lr*v, or w - lr*(d + momentum*v) with nesterov, or w - lr*d without momentum."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None,
                 schedule: Schedule | None = None):
        self.momentum = _number("SGD", "momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
        if nesterov and not momentum:
            raise ValueError("SGD: momentum must be positive with nesterov=True, got 0")
        self.nesterov = bool(nesterov)
        super().__init__(lr, weight_decay, clip_norm, schedule)

    def __repr__(self):
        opts = f"lr={self.lr}, momentum={self.momentum}"
        if self.nesterov:
            opts += ", nesterov=True"
        if self.weight_decay:
            opts += f", weight_decay={self.weight_decay}"
        return f"SGD({opts}{self._extras()})"

    def update(self, g, p, dp, scalars):
        lr, wd, mu = scalars["lr"], sympy.Float(self.weight_decay), sympy.Float(self.momentum)
        if self.weight_decay:  # coupled L2: the decay joins the gradient, momentum carries it
            dp = g.apply(lambda w, d: d + wd * w, [p, dp], name=g.fresh(f"{p.name}_decayed"),
                         dtype=p.dtype)
        if not self.momentum:
            new = g.apply(lambda w, d, rate: w - rate * d, [p, dp, lr],
                          name=g.fresh(f"{p.name}_new"), dtype=p.dtype)
            return {p.name: new.name}
        vel = self.state(g, p, "velocity")
        v_new = g.apply(lambda v, d: mu * v + d, [vel, dp],
                        name=g.fresh(f"{p.name}_velocity_new"), dtype=p.dtype)
        if self.nesterov:
            new = g.apply(lambda w, d, v, rate: w - rate * (d + mu * v), [p, dp, v_new, lr],
                          name=g.fresh(f"{p.name}_new"), dtype=p.dtype)
        else:
            new = g.apply(lambda w, v, rate: w - rate * v, [p, v_new, lr],
                          name=g.fresh(f"{p.name}_new"), dtype=p.dtype)
        return {vel.name: v_new.name, p.name: new.name}


# ---- Adam and AdamW ------------------------------------------------------------------------

class Adam(Optimizer):
    """Adam as torch.optim.Adam (amsgrad off); t = this update's number, 1 for the first:
    d = g + weight_decay*w;  m <- b1*m + (1-b1)*d;  v <- b2*v + (1-b2)*d**2;
    w <- w - lr/(1 - b1**t) * m / (sqrt(v)/sqrt(1 - b2**t) + eps)."""

    uses_count = True
    decoupled = False  # AdamW: the decay scales w directly instead of joining g

    def __init__(self, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float | None = None,
                 schedule: Schedule | None = None):
        owner = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(_number(owner, f"betas[{k}]", b, lambda v: 0 <= v < 1, "in [0, 1)")
                           for k, b in enumerate(betas))
        self.eps = _number(owner, "eps", eps, lambda v: v >= 0, ">= 0")
        super().__init__(lr, weight_decay, clip_norm, schedule)

    def __repr__(self):
        return (f"{type(self).__name__}(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}{self._extras()})")

    def scalars(self, g, lr, count):
        b1, b2 = (sympy.Float(b) for b in self.betas)
        # t + 1 is this update's number, read from the counter's old value: a node reading
        # the counter's update would be scheduled before the update it reads
        out = {"step_size": g.apply(lambda rate, t: rate / (1 - b1 ** (t + 1)), [lr, count],
                                    name=g.fresh("adam_step_size")),
               "bias_correction2_sqrt": g.apply(lambda t: sympy.sqrt(1 - b2 ** (t + 1)),
                                                [count],
                                                name=g.fresh("adam_bias_correction2_sqrt"))}
        if self.decoupled and self.weight_decay:
            wd = sympy.Float(self.weight_decay)
            out["decay"] = g.apply(lambda rate: 1 - rate * wd, [lr], name=g.fresh("adamw_decay"))
        return out

    def update(self, g, p, dp, scalars):
        b1, b2, eps = (sympy.Float(c) for c in (*self.betas, self.eps))
        if self.weight_decay and not self.decoupled:  # coupled L2, as Adam's weight_decay
            wd = sympy.Float(self.weight_decay)
            dp = g.apply(lambda w, d: d + wd * w, [p, dp], name=g.fresh(f"{p.name}_decayed"),
                         dtype=p.dtype)
        m_state, v_state = self.state(g, p, "exp_avg"), self.state(g, p, "exp_avg_sq")
        m_new = g.apply(lambda m, d: b1 * m + (1 - b1) * d, [m_state, dp],
                        name=g.fresh(f"{p.name}_exp_avg_new"), dtype=p.dtype)
        v_new = g.apply(lambda v, d: b2 * v + (1 - b2) * d ** 2, [v_state, dp],
                        name=g.fresh(f"{p.name}_exp_avg_sq_new"), dtype=p.dtype)
        w = p
        if "decay" in scalars:  # decoupled: w*(1 - lr*wd), before the Adam step (as torch)
            w = g.apply(lambda w, k: w * k, [p, scalars["decay"]],
                        name=g.fresh(f"{p.name}_decayed"), dtype=p.dtype)
        new = g.apply(lambda w, m, v, size, bc2: w - size * m / (sympy.sqrt(v) / bc2 + eps),
                      [w, m_new, v_new, scalars["step_size"], scalars["bias_correction2_sqrt"]],
                      name=g.fresh(f"{p.name}_new"), dtype=p.dtype)
        return {m_state.name: m_new.name, v_state.name: v_new.name, p.name: new.name}


class AdamW(Adam):
    """Adam with decoupled weight decay, as torch.optim.AdamW:
    w <- w*(1 - lr*weight_decay) - lr/(1 - b1**t) * m / (sqrt(v)/sqrt(1 - b2**t) + eps)."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, clip_norm: float | None = None,
                 schedule: Schedule | None = None):
        super().__init__(lr, betas, eps, weight_decay, clip_norm, schedule)
