"""Minibatch training loops over a compiled TrainStep, with a tqdm progress bar."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from .errors import CheckpointError, FeedError


@dataclass
class History:
    loss: list = field(default_factory=list)        # mean training loss per epoch
    val_loss: list = field(default_factory=list)    # loss on the validation data per epoch
    metric: list = field(default_factory=list)      # metric(step, validation data) per epoch
    step_loss: list = field(default_factory=list)   # every step's loss


def _length(data: dict) -> int:
    sizes = {k: len(v) for k, v in data.items()}
    if len(set(sizes.values())) != 1:
        raise FeedError(f"all arrays of the data must have the same length, got {sizes}")
    return next(iter(sizes.values()))


@dataclass
class TrainerState:
    """Where a fit stands, enough to continue it bitwise: the epoch and batch to run next, the
    shuffling generator's state at the start of that epoch (its order is drawn again on
    resume), the epoch's losses so far, and what the order depends on (n, batch_size)."""
    epoch: int = 0
    batch: int = 0
    steps: int = 0                                   # steps done, all epochs
    rng: dict = field(default_factory=dict)          # np.random.PCG64 state, JSON-able
    epoch_losses: list = field(default_factory=list)
    n: int = 0
    batch_size: int = 0
    shuffle: bool = True


class Trainer:
    """Runs a TrainStep over a dataset in minibatches: `Trainer(step).fit(data, epochs=...)`.
    Stop early with `max_steps`, save with `trainer.save(path)` (parameters, optimizer state,
    the rand counter and the data order's position) and continue, in any process, with
    `Trainer(step).fit(data, ..., resume_from=path)`: bitwise the same as one longer fit."""

    def __init__(self, step):
        self.step = step
        self.state: TrainerState | None = None   # set by fit; saved by save

    def state_dict(self) -> dict:
        """The fit's position as JSON-able data (what a checkpoint stores)."""
        if self.state is None:
            raise ValueError("nothing to save: this Trainer has not run fit yet")
        return asdict(self.state)

    def save(self, path) -> Path:
        """A checkpoint to resume this fit from (step.save(path, trainer=self))."""
        return self.step.save(path, trainer=self)

    def fit(self, data: dict, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            seed: int = 0, validation: dict | None = None,
            metric: Callable | None = None, progress: bool = True,
            max_steps: int | None = None, resume_from=None,
            checkpoint=None, checkpoint_every: int | None = None) -> History:
        """Train; `metric(step, validation)` (e.g. accuracy) is recorded after each epoch.
        max_steps: stop once this many steps are done in all (those before a resume count).
        resume_from: a checkpoint saved with trainer state; loads the parameters and continues
        the data order where it stopped (same data, batch_size and shuffle; seed is unused).
        checkpoint, checkpoint_every: save a resumable checkpoint there every k steps.
        The History holds this call's steps and the epochs it completed."""
        n = _length(data)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = np.random.default_rng(seed)
        state = TrainerState(rng=dict(rng.bit_generator.state), n=n, batch_size=batch_size,
                             shuffle=shuffle)
        if resume_from is not None:
            state = self._resumed(resume_from, state)
            rng.bit_generator.state = state.rng
        self.state = state
        batches = (n + batch_size - 1) // batch_size
        total = epochs * batches if max_steps is None else min(max_steps, epochs * batches)
        history = History()
        bar = tqdm(total=total, initial=min(state.steps, total), disable=not progress,
                   unit="step", desc=f"training {self.step.graph.name}")
        order = None
        while state.steps < total:
            if order is None:  # the order of an epoch is drawn from the state at its start
                state.rng = dict(rng.bit_generator.state)
                order = rng.permutation(n) if shuffle else np.arange(n)
            idx = order[state.batch * batch_size:(state.batch + 1) * batch_size]
            loss = self.step({k: v[idx] for k, v in data.items()})
            state.batch, state.steps = state.batch + 1, state.steps + 1
            state.epoch_losses.append(loss)
            history.step_loss.append(loss)
            bar.update(1)
            if state.batch == batches:
                self._end_epoch(history, validation, metric, bar)
                state.epoch, state.batch, state.epoch_losses = state.epoch + 1, 0, []
                state.rng, order = dict(rng.bit_generator.state), None
            if checkpoint is not None and checkpoint_every and \
                    state.steps % checkpoint_every == 0:
                self.save(checkpoint)
        bar.close()
        return history

    def _end_epoch(self, history: History, validation, metric, bar) -> None:
        assert self.state is not None
        history.loss.append(float(np.mean(self.state.epoch_losses)))
        shown = {"epoch": self.state.epoch + 1, "loss": f"{history.loss[-1]:.4f}"}
        if validation is not None:
            history.val_loss.append(self.step.evaluate(validation))
            shown["val_loss"] = f"{history.val_loss[-1]:.4f}"
            if metric is not None:
                history.metric.append(float(metric(self.step, validation)))
                shown["metric"] = f"{history.metric[-1]:.4f}"
        bar.set_postfix(shown)

    def _resumed(self, path, fresh: TrainerState) -> TrainerState:
        """Load the checkpoint's parameters and its trainer state, which must fit this data."""
        ckpt = self.step.load(path)
        if ckpt.trainer is None:
            raise CheckpointError(f"{path}: no trainer state (saved by step.save without "
                                  "trainer=); step.load it and fit without resume_from")
        state = TrainerState(**ckpt.trainer)
        for what in ("n", "batch_size", "shuffle"):
            if getattr(state, what) != getattr(fresh, what):
                raise CheckpointError(f"{path}: the fit was saved with {what} = "
                                      f"{getattr(state, what)}, this one has "
                                      f"{getattr(fresh, what)}; the data order cannot continue")
        return state
