"""Reference training steps for the digits MLP, written by hand in NumPy and in PyTorch.
They live in graphc.bench.reference (installed with the package, for `graphc bench`);
this module re-exports them for the scripts and examples here."""
from graphc.bench.reference import (  # noqa: F401
    NumpyMLPStep,
    TorchMLPStep,
    batches,
    initial_params,
    parity,
)
