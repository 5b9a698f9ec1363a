"""The one place graphc reads the environment."""
from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path


def cache_dir() -> Path:
    """GRAPHC_CACHE_DIR, else $XDG_CACHE_HOME/graphc, else ~/.cache/graphc."""
    explicit = os.environ.get("GRAPHC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


def c_compiler_env() -> str | None:
    """CC: the C compiler the user chose for backend='c' (None: look for cc, then gcc)."""
    return os.environ.get("CC")


def fallback_cache_dir() -> Path:
    """Where generated code goes when the cache folder cannot be written: a per-user folder
    in the system's temporary folder ($TMPDIR)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"graphc-cache-{user}"


def triton_interpret(warn: bool = True) -> bool:
    """Whether generated Triton kernels run under Triton's interpreter: yes when there is
    no CUDA GPU (or the user set TRITON_INTERPRET=1). Sets TRITON_INTERPRET=1 before the
    generated module is imported (its @triton.jit reads it) and warns: the interpreter runs
    kernels on CPU tensors, one NumPy call per block, for testing only."""
    try:
        import torch
    except ImportError:  # the message names the extra that brings torch and triton
        raise ImportError("backend='triton' needs torch and triton: "
                          "pip install 'graphc[gpu]'") from None
    if os.environ.get("TRITON_INTERPRET") != "1" and torch.cuda.is_available():
        return False
    if os.environ.get("TRITON_INTERPRET") != "1" and "triton" in sys.modules:
        # triton.language's own jit helpers were built for a GPU: kernels would fail later
        raise RuntimeError("backend='triton' without a GPU runs Triton's interpreter, but "
                           "triton was imported before TRITON_INTERPRET=1 was set (torch "
                           "imports it for torch.compile and some optimizers); set "
                           "TRITON_INTERPRET=1 in the environment, or compile the graphc "
                           "function before that import")
    os.environ["TRITON_INTERPRET"] = "1"
    if warn:
        warnings.warn("Triton interpreter: for testing only, slow", UserWarning, stacklevel=2)
    return True


def nvidia_driver_present() -> bool:
    """A cheap hint that CUDA may work: the NVIDIA driver's files exist (no torch import)."""
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl") or \
        bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def c_threads(library_matmuls: bool = False) -> int:
    """Threads of the C backend's parallel loops: GRAPHC_NUM_THREADS, else every core this
    process may run on, but one in a module that calls library matmuls (BLAS): there the
    matmuls own the cores. OpenBLAS's threads are a second pool beside OpenMP's, and
    OpenMP's idle threads spin for milliseconds after each parallel kernel, taking the
    cores the next matmul needs (graphc/bench/c_threads.py: a 784-512-512 step at 48 ms
    with both on two threads, 6.7 ms with the kernels on one)."""
    value = os.environ.get("GRAPHC_NUM_THREADS", "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"GRAPHC_NUM_THREADS={value!r} is not a whole number") from None
        if n < 1:
            raise ValueError(f"GRAPHC_NUM_THREADS={value!r} must be at least 1")
        return n
    if library_matmuls:
        return 1
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)
