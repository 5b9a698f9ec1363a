"""Running generated modules: feeds checked and bound to dimensions, buffers made once per
set of dimensions, parameters held (and updated in place) by the runtime."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import sympy

from . import checkpoint, shapes
from .errors import FeedError


class Compiled:
    """What Function and TrainStep share: a generated module, its graph and its storage."""

    backend = "numpy"     # the backend that runs: "numpy", "c" or "triton" (set by compile)
    threads = None        # the C backend's threads as asked for (None: GRAPHC_NUM_THREADS)
    c_path = None         # the C backend's translation unit, beside its library

    def __init__(self, module, graph, path: Path, params: dict, consts: dict,
                 check_finite: bool = False, kernels: list | None = None,
                 declared: list | None = None):
        self.module, self.graph, self.path = module, graph, Path(path)
        self.params, self.consts = params, consts
        self.check_finite = check_finite
        self.kernels = kernels or []
        # symbolic dims as their names: str keys are cheap to hash on every call
        def spec(n, a):
            return n, tuple(d if isinstance(d, int) else str(d) for d in a["shape"]), a["dtype"]
        self._inputs = [spec(n, graph.attrs(n)) for n in module.INPUTS]
        self._checks = [(n, shape, np.dtype(dtype)) for n, shape, dtype in self._inputs]
        # inputs of the model that these outputs do not read: accepted (and checked, and
        # used to bind dimensions) but not required
        self._optional = [spec(n, a) for n, a in (declared or []) if n not in module.INPUTS]
        self._buffers: dict = {}
        self.timings: dict = {}  # compile time per stage, seconds
        self.lowering: Any = None  # graphc.lowering.Lowering: every stage of the compile
        # exp overflowing to inf is intended (sigmoid(-1000) = 1/(1+inf) = 0)
        self._kernel = np.errstate(over="ignore", under="ignore")(module.run)
        # the C backend's threads, set on its library before each call: functions compiled
        # from one graph share one loaded library, and its thread count with it
        self._c_threads = getattr(module, "THREADS", None)

    def set_threads(self, n: int) -> None:
        """Threads of the C backend's parallel loops from now on (a no-op elsewhere)."""
        if int(n) < 1:
            raise ValueError(f"threads must be at least 1, got {n}")
        self.threads = int(n)
        if self._c_threads is not None:
            self._c_threads = self.threads

    @property
    def arena_bytes(self) -> int:
        """Bytes of the buffers the memory plan allocated (once per set of dimensions met so
        far), held between calls."""
        return sum(int(b.nbytes) for buffers in self._buffers.values() for b in buffers
                   if hasattr(b, "nbytes"))

    @property
    def kernel_threads(self) -> int | None:
        """Threads the C backend's parallel loops run on now (None off the C backend): as
        asked for, else GRAPHC_NUM_THREADS, else every core, or one where the module calls
        library matmuls (config.c_threads says why)."""
        return self._c_threads

    @property
    def source(self) -> str:
        """The generated module, as it sits in the cache folder (for the C backend, the
        Python host module that calls the kernels of `c_source`)."""
        return self.path.read_text()

    @property
    def c_source(self) -> str | None:
        """The C backend's translation unit, one function per kernel (None elsewhere)."""
        return None if self.c_path is None else self.c_path.read_text()

    def _feeds(self, feeds: dict) -> tuple[list, dict]:
        """Check feeds against the graph's inputs; bind symbolic dims. Raises FeedError.
        The loop is the fast path (it runs every step); messages are built only on error."""
        dims: dict = {}
        values = []
        for name, shape, dtype in self._checks:
            v = feeds.get(name)
            if v.__class__ is not np.ndarray:
                if v is None:
                    self._explain(feeds)
                v = np.asarray(v)
            if v.dtype != dtype or v.ndim != len(shape):  # np.dtype compare: no .name (slow)
                self._explain(feeds)
            for want, have in zip(shape, v.shape):
                if want.__class__ is int:
                    if want != have:
                        self._explain(feeds)
                elif dims.setdefault(want, have) != have:
                    self._explain(feeds)
            if self.check_finite and v.dtype.kind == "f" and not np.isfinite(v).all():
                bad = int(np.size(v) - np.isfinite(v).sum())
                raise FeedError(f"feed {name!r} holds {bad} NaN/Inf value(s) (check_finite=True)")
            values.append(v)
        if len(feeds) != len(values) or len(dims) < len(self.module.DIMS):
            self._unread_feeds(feeds, dims)
        return values, dims

    def _unread_feeds(self, feeds: dict, dims: dict):
        """Feeds of inputs the outputs do not read: check them, bind their dims."""
        optional = {n: (shape, dtype) for n, shape, dtype in self._optional}
        for name in feeds:
            if name in optional:
                v = np.asarray(feeds[name])
                shape, dtype = optional[name]
                if v.dtype.name != dtype:
                    raise FeedError(f"feed {name!r} has dtype {v.dtype}, input is {dtype}")
                self._bind(name, shape, v.shape, dims, {})
            elif name not in (n for n, _, _ in self._inputs):
                self._explain(feeds)
        unbound = [d for d in self.module.DIMS if d not in dims]
        if unbound:
            carriers = [n for n, shape, _ in self._optional if set(unbound) & set(shape)]
            raise FeedError(f"dimension(s) {', '.join(unbound)} cannot be bound: feed "
                            f"{' or '.join(map(repr, carriers)) or 'an input that has them'}")

    def _explain(self, feeds: dict):
        """Raise the FeedError that says what is wrong with these feeds."""
        expected = [n for n, _, _ in self._inputs + self._optional]
        unknown = sorted(set(feeds) - set(expected))
        if unknown:
            raise FeedError(f"unexpected feed(s) {unknown}; this graph's inputs are {expected}")
        dims: dict = {}
        seen_from: dict = {}
        for name, shape, dtype in self._inputs:
            if name not in feeds or feeds[name] is None:
                raise FeedError(f"missing feed {name!r} of shape {shapes.fmt(shape)} {dtype}; "
                                f"inputs are {expected}")
            v = np.asarray(feeds[name])
            if v.dtype.name != dtype:
                raise FeedError(f"feed {name!r} has dtype {v.dtype}, input is {dtype} "
                                f"(convert with .astype(np.{dtype}))")
            self._bind(name, shape, v.shape, dims, seen_from)
        raise FeedError("feeds do not match the inputs")  # not reached: one check above fails

    @staticmethod
    def _bind(name: str, shape: tuple, have: tuple, dims: dict, seen_from: dict) -> None:
        """Check one feed's shape against its input's; bind symbolic dims (name -> size),
        raising a FeedError that names the feed, both shapes and any conflicting dim."""
        if len(have) != len(shape):
            raise FeedError(f"feed {name!r} has shape {shapes.fmt(have)} (rank {len(have)}), "
                            f"input is {shapes.fmt(shape)} (rank {len(shape)})")
        for axis, (want, got) in enumerate(zip(shape, have)):
            if isinstance(want, int):
                if want != got:
                    raise FeedError(f"feed {name!r} has shape {shapes.fmt(have)}, input is "
                                    f"{shapes.fmt(shape)} (axis {axis}: {got} vs {want})")
            elif dims.setdefault(want, got) != got:
                raise FeedError(f"feed {name!r} has shape {shapes.fmt(have)}, input is "
                                f"{shapes.fmt(shape)}: {want} = {got} here but {want} = "
                                f"{dims[want]} from feed {seen_from[want]!r}")
            else:
                seen_from.setdefault(want, name)

    def _run(self, feeds: dict) -> tuple:
        values, dims = self._feeds(feeds)
        key = tuple(map(dims.get, self.module.DIMS))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self.module.allocate(*key)
        if self._c_threads is not None:
            self.module.set_threads(self._c_threads)
        return self._kernel(*values, self.params, self.consts, buf)

    # ---- parameters -------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.params:
            raise KeyError(f"no parameter {name!r}; parameters are {sorted(self.params)}")
        return self.params[name]

    def __setitem__(self, name: str, value):
        """Set a parameter's value in place (the compiled code holds its storage)."""
        current = self[name]
        value = np.asarray(value)
        if value.shape != current.shape:
            raise FeedError(f"parameter {name!r} has shape {current.shape}, got {value.shape}")
        current[...] = value

    def save(self, path, trainer=None) -> Path:
        """Parameters and optimizer state (and a Trainer's position, to resume its fit) to a
        checkpoint, atomically: safetensors, or .npz (no pickle) when path ends in .npz."""
        arrays: dict[str, Any] = {n: self[n] for n in self.params}  # NumPy from either runtime
        state = None if trainer is None else trainer.state_dict()
        return checkpoint.save(path, arrays, graph=self.graph.name, trainer=state)

    def load(self, path) -> checkpoint.Checkpoint:
        """Parameters from a checkpoint (safetensors or .npz; never a pickle). Names, shapes
        and dtypes must match this graph's exactly (else CheckpointError, nothing changed).
        Returns the checkpoint: its arrays, graph name and trainer state."""
        expected = {n: (self[n].shape, self[n].dtype) for n in self.params}
        ckpt = checkpoint.load(path, expected)
        for name, value in ckpt.arrays.items():
            self[name] = value
        return ckpt


class Function(Compiled):
    """A compiled graph evaluation: call with feeds by input name, get NumPy arrays."""

    def __call__(self, feeds: dict | None = None, **kw) -> list:
        outs = self._run({**(feeds or {}), **kw})
        return [np.array(o, copy=True) for o in outs]


class TrainStep(Compiled):
    """A compiled training step: forward, backward and the optimizer update in one module.
    Call it with feeds; it returns the loss (before the update) and updates parameters."""

    # (step, outputs) -> Function reading the step's live params: set by gc.compile, so the
    # runtime runs modules without importing the compiler
    compile_function: Callable | None = None

    def __init__(self, *a, loss: str, model, fetch: Sequence = (), **kw):
        super().__init__(*a, **kw)
        self.loss, self.model = loss, model   # model: the forward graph it was built from
        self.fetch = list(fetch)              # other outputs the step computes
        self.outputs: dict = {}               # their values from the last call
        self._eval: Function | None = None

    def __call__(self, feeds: dict | None = None, **kw) -> float:
        loss, *rest = self._run({**(feeds or {}), **kw})
        if self.fetch:  # copies: the step's buffers are overwritten by the next call
            self.outputs = {n: np.array(v, copy=True) for n, v in zip(self.fetch, rest)}
        return float(loss)

    def evaluate(self, feeds: dict | None = None, **kw) -> float:
        """The loss on these feeds, parameters untouched."""
        if self._eval is None:
            self._eval = self.function([self.loss])
        return float(self._eval({**(feeds or {}), **kw})[0])

    def function(self, outputs) -> "Function":
        """Evaluate other nodes of the model (logits, hidden layers) with the current,
        trained parameters; compiled once, it keeps reading the live values."""
        if self.compile_function is None:
            raise RuntimeError("this step has no compiler to make functions with: make it "
                               "with gc.compile (or set its compile_function)")
        return self.compile_function(self, outputs)

    def __repr__(self):
        n = sum(v.size for k, v in self.params.items()
                if self.graph.attrs(k).get("trainable", True))
        return (f"<TrainStep {self.graph.name!r}: loss {self.loss!r}, {n} trained values, "
                f"code {self.path}>")


def dims_of(shape) -> set:
    return {s for d in shape for s in sympy.sympify(d).free_symbols}
