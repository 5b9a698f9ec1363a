"""What recomputing a map costs on each backend: the rule fusion reads to choose between
recomputing a producer in each of its users and storing it once (passes/fuse.py).

A cost is sympy.count_ops(expr, visual=True) (ADD + 2*TANH + ...) weighed per backend:
  - numpy: every ufunc call is a pass over memory, so a map costs its ufunc passes (a
    function its NumPy steps in graphc/functions.py: sigmoid 4). Storing the producer
    costs no pass (its users read the buffer as an operand), so every recompute is a pass
    more: nothing is recomputed but what costs nothing;
  - c, triton: arithmetic in registers costs about one op against a round trip to memory;
    a call of a transcendental (exp, log, tanh, erf: the functions with a libm spelling)
    costs TRANSCENDENTAL_OPS. Arithmetic is recomputed, transcendentals are stored;
  - count_ops: the backend-blind rule fusion had before (count_ops <= 2 with several
    users, <= 1 broadcast), kept as fuse's default and as the benchmark's baseline.
graphc/bench/recompute.py measures the rules against each other on every backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from graphc import functions

# a libm call (libmvec's exp, log, tanh, erf; libdevice's on a GPU), in arithmetic ops
TRANSCENDENTAL_OPS = 16


@dataclass(frozen=True)
class RecomputeRule:
    """A backend's price of recomputing: `weights` per count_ops name (others `default`),
    in `unit`; a producer with several users is recomputed when its cost (times the extra
    recomputes, with per_recompute) is at most shared_max; a smaller producer broadcast
    into a user when its cost is at most broadcast_max."""
    name: str
    unit: str
    shared_max: int
    broadcast_max: int
    per_recompute: bool = True
    weights: dict = field(default_factory=dict)
    default: int = 1

    def cost(self, expr: sympy.Expr) -> int:
        """What computing `expr` once per element costs, in self.unit."""
        if not self.weights:
            return int(sympy.count_ops(expr))
        ops = sympy.count_ops(expr, visual=True)
        total = 0
        for term in sympy.Add.make_args(ops):
            count, op = term.as_coeff_Mul()
            if op == 1 or not isinstance(op, sympy.Symbol):
                continue   # count_ops of a number or a lone symbol: 0
            total += int(count) * self.weights.get(op.name, self.default)
        return total

    def shared(self, cost: int, users: int) -> tuple[bool, str]:
        """(recompute, the measure compared) for a producer of `cost` read by `users` maps."""
        spent = cost * (users - 1) if self.per_recompute else cost
        measure = f"{self.unit} {cost}" + (f" x {users - 1} recomputes" if self.per_recompute
                                           else "")
        return spent <= self.shared_max, measure


def _numpy_weights() -> dict:
    """ufunc passes per op: a function its NumPy steps; a Piecewise a condition and a copy."""
    weights = {fn.__name__.upper(): len(s.numpy_steps()) for fn, s in functions.FUNCTIONS.items()}
    return {**weights, "PIECEWISE": 2}


def _register_weights() -> dict:
    """Ops in registers: a function that calls libm/libdevice TRANSCENDENTAL_OPS per call."""
    return {fn.__name__.upper(): TRANSCENDENTAL_OPS * max(1, len(s.simd))
            for fn, s in functions.FUNCTIONS.items() if s.simd}


RULES = {
    "count_ops": RecomputeRule("count_ops", "count_ops", 2, 1, per_recompute=False),
    "numpy": RecomputeRule("numpy", "ufunc passes", 0, 0, weights=_numpy_weights()),
    "c": RecomputeRule("c", "ops", 8, 1, weights=_register_weights()),
    "triton": RecomputeRule("triton", "ops", 8, 1, weights=_register_weights()),
}


def rule_for(backend: str | None) -> RecomputeRule:
    """The rule of `backend` ("numpy", "c", "triton"; a rule name; None: count_ops)."""
    name = backend or "count_ops"
    if name not in RULES:
        raise ValueError(f"no recompute rule for {name!r}; choose one of {tuple(RULES)}")
    return RULES[name]
