"""Triton backend: a scheduled (fused) Graph -> the source of one Python module of
@triton.jit kernels and a host `run` that launches them on torch tensors.

Same module interface as the NumPy backend (DIMS, INPUTS, OUTPUTS, allocate, run); torch
tensors in and out, on DEVICE ("cpu" under the Triton interpreter, else "cuda").
"""
from .module import generate

__all__ = ["generate"]
