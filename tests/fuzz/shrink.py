"""Delta debugging over a failing program's records: drop a record nobody reads, or
send its readers to one of its same-shaped arguments first, while the failure remains."""
from __future__ import annotations

from typing import Callable

from .grammar import args_of, shapes_of

# where each kind keeps the indices of the records it reads
_ARG_SLOTS = {"binary": (2, 3), "matmul": (1, 2), "xent": (1, 2), "mse": (1, 2),
              "unary": (2,), "reduce": (2,), "leaf": (), "labels": ()}


def _map_args(rec: tuple, f: Callable[[int], int]) -> tuple:
    slots = _ARG_SLOTS.get(rec[0], (1,))
    return tuple(f(v) if p in slots else v for p, v in enumerate(rec))


def _users(prog: list, k: int) -> list:
    return [m for m, rec in enumerate(prog) if k in args_of(rec)]


def _delete(prog: list, k: int) -> list:
    """The program without record k, which nothing reads; later indices move down."""
    return [_map_args(rec, lambda v: v - 1 if v > k else v) for rec in prog[:k] + prog[k + 1:]]


def _redirect(prog: list, k: int, j: int) -> list:
    return [_map_args(rec, lambda v: j if v == k else v) if m > k else rec
            for m, rec in enumerate(prog)]


def _candidates(prog: list):
    """Smaller programs, the most aggressive first."""
    shapes = shapes_of(prog)
    for k in reversed(range(len(prog))):
        users = _users(prog, k)
        if not users:
            yield _delete(prog, k)
            continue
        for j in args_of(prog[k]):
            if shapes[j] == shapes[k] and prog[j][0] != "labels":
                yield _delete(_redirect(prog, k, j), k)


def _valid(prog: list) -> bool:
    """At least one op, and every labels record still read by a cross-entropy."""
    if all(r[0] in ("leaf", "labels") for r in prog):
        return False
    return all(_users(prog, k) for k, r in enumerate(prog) if r[0] == "labels")


def shrink(prog: list, fails: Callable[[list], bool], budget: int = 200) -> list:
    """The smallest program found (by record count) for which fails(prog) still holds."""
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in _candidates(prog):
            if not _valid(cand):
                continue
            tries += 1
            if fails(cand):
                prog, improved = cand, True
                break
            if tries >= budget:
                break
    return prog
