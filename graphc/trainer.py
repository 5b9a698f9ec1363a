"""Minibatch training loops over a compiled TrainStep, with a tqdm progress bar."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from .errors import FeedError


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


class Trainer:
    """Runs a TrainStep over a dataset in minibatches: `Trainer(step).fit(data, epochs=...)`."""

    def __init__(self, step):
        self.step = step

    def fit(self, data: dict, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            seed: int = 0, validation: dict | None = None,
            metric: Callable | None = None, progress: bool = True) -> History:
        """Train; `metric(step, validation)` (e.g. accuracy) is recorded after each epoch."""
        n = _length(data)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = np.random.default_rng(seed)
        history = History()
        batches = (n + batch_size - 1) // batch_size
        bar = tqdm(total=epochs * batches, disable=not progress, unit="step",
                   desc=f"training {self.step.graph.name}")
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            losses = []
            for b in range(batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                losses.append(self.step({k: v[idx] for k, v in data.items()}))
                bar.update(1)
            history.step_loss += losses
            history.loss.append(float(np.mean(losses)))
            shown = {"epoch": epoch + 1, "loss": f"{history.loss[-1]:.4f}"}
            if validation is not None:
                history.val_loss.append(self.step.evaluate(validation))
                shown["val_loss"] = f"{history.val_loss[-1]:.4f}"
                if metric is not None:
                    history.metric.append(float(metric(self.step, validation)))
                    shown["metric"] = f"{history.metric[-1]:.4f}"
            bar.set_postfix(shown)
        bar.close()
        return history
