"""One program through graphc under one configuration (backend, fusion, dtype, inputs),
compared with the PyTorch reference: every value, the loss, every leaf gradient."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import graphc as gc
from graphc import lowering_memo

from . import grammar, oracle
from .build import build, leaf_names

# NotImplementedError messages a backend is known to give for a valid program: a gap, not a
# wrong result. Such a config's run is a "refusal", listed apart in the summary (never
# shrunk); tests/test_fuzz.py pins each with a strict xfail, so the entry goes with its fix.
KNOWN_REFUSALS: dict[str, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Config:
    backend: str = "numpy"
    fused: bool = True
    dtype: str = "float64"
    inputs: str = "normal"
    matmul: str = "library"   # or "fused": float32 2-D matmuls take their epilogues

    def __str__(self) -> str:
        return (f"{self.backend} {'fused' if self.fused else 'unfused'} {self.dtype} "
                f"{self.inputs}" + (f" matmul={self.matmul}" if self.matmul != "library"
                                    else ""))


@dataclass
class Failure:
    prog: list
    seed: int
    config: Config
    what: str     # 'v<k>', 'loss', 'd v<k>', 'crash', 'died' (jobs > 1) or 'refused'
    message: str

    def __str__(self) -> str:
        return f"[{self.config}] seed {self.seed}: {self.what}: {self.message}"


def inputs_for(prog: list, seed: int, config: Config) -> dict:
    """The program's feeds and parameter values for this seed, in the config's dtype."""
    values = grammar.leaf_values(prog, np.random.default_rng(seed), config.inputs,
                                 grammar.HUGE[config.dtype])
    return {n: v.astype(config.dtype) if v.dtype.kind == "f" else v for n, v in values.items()}


def run_graphc(prog: list, values: dict, config: Config) -> list:
    """Compile and run the program: every value, the loss, then the leaf gradients."""
    g, outputs, _ = build(prog, values, config.dtype)
    f = gc.function(g, outputs, backend=config.backend, fuse=config.fused,
                    matmul=config.matmul)
    with np.errstate(all="ignore"):  # special inputs: inf - inf and the like are intended
        return f(**{n: values[n] for n in f.module.INPUTS})


def labels_of(prog: list) -> list:
    """What each array of run_graphc's result is, for messages and the comparison rule."""
    vals = [f"v{k}" for k, r in enumerate(prog) if r[0] not in ("leaf", "labels")]
    return vals + ["loss"] + [f"d {n}" for n in leaf_names(prog)]


def reference(prog: list, values: dict, dtype: str) -> tuple[list, list | None]:
    """(float64 reference arrays, eager float32 arrays or None) in run_graphc's order."""
    v64, g64 = oracle.run_torch(prog, values, torch.float64)
    if dtype == "float64":
        return v64 + g64, None
    v32, g32 = oracle.run_torch(prog, values, torch.float32)
    return v64 + g64, v32 + g32


def compare(prog: list, got: list, ref: list, eager32: list | None) -> tuple | None:
    """(what, message) for the first array that differs, else None."""
    for k, (label, a, r) in enumerate(zip(labels_of(prog), got, ref)):
        rule = "grad" if label.startswith("d ") else "value"
        bad = oracle.mismatch64(a, r, rule) if eager32 is None else \
            oracle.mismatch32(a, eager32[k], r, rule)
        if bad:
            return label, bad
    return None


def known_refusal(config: Config, error: Exception) -> bool:
    """Whether `error` is one of the gaps KNOWN_REFUSALS lists for the config's backend."""
    return isinstance(error, NotImplementedError) and \
        any(gap in str(error) for gap in KNOWN_REFUSALS.get(config.backend, ()))


def check(prog: list, seed: int, configs: list) -> Failure | None:
    """The first failure of the program under any of configs, else the first known refusal
    (the other configs still run), else None. Configs sharing a dtype and input mode share
    one reference run."""
    with lowering_memo.off():   # a planted bug patches printers the memo cannot see
        return _check(prog, seed, configs)


def _check(prog: list, seed: int, configs: list) -> Failure | None:
    refs: dict = {}
    refused = None
    for config in configs:
        values = inputs_for(prog, seed, config)
        key = (config.dtype, config.inputs)
        if key not in refs:
            refs[key] = reference(prog, values, config.dtype)
        try:
            got = run_graphc(prog, values, config)
        except Exception as e:  # noqa: BLE001 - a crash is a finding, reported like a mismatch
            if known_refusal(config, e):
                refused = refused or Failure(prog, seed, config, "refused", str(e))
                continue
            return Failure(prog, seed, config, "crash", f"{type(e).__name__}: {e}")
        bad = compare(prog, got, *refs[key])
        if bad:
            return Failure(prog, seed, config, *bad)
    return refused
