"""Differential fuzzer: random graphs built by construction from a small op grammar, run
through graphc (NumPy, C or Triton, fused or not) and through an independent PyTorch
interpreter; every intermediate value and every leaf gradient is compared."""
