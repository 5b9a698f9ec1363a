"""Timing helpers shared by every benchmark: interleaved rounds after warm-up, median and
interquartile range, the machine and library versions, a printed table and a JSON record."""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

T = TypeVar("T")


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 30, reps: int = 20,
                warmup: int = 10, before: dict | None = None) -> dict[str, np.ndarray]:
    """Seconds per call of each function, timed call by call.

    Every function is warmed up first (`warmup` calls). Then, in each of `rounds` rounds,
    each function runs `reps` times back to back; the order of the functions rotates from
    round to round, so slow drifts of the machine (clock, cache, other load) are shared
    evenly instead of landing on whichever ran last. before[name](), where given, runs
    untimed before each function's warm-up and each of its batches (a thread setting).
    """
    names = list(fns)
    setup = setups(names, before)
    for name in names:
        setup[name]()
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        for name in rotated(names, r):
            fn, out = fns[name], times[name]
            setup[name]()
            for _ in range(reps):
                t0 = clock()
                fn()
                out.append(clock() - t0)
    return {name: np.asarray(t, dtype=np.float64) * 1e-9 for name, t in times.items()}


def setups(names: list, before: dict | None) -> dict:
    """before's function for each name, a no-op where it has none."""
    before = before or {}
    return {name: before.get(name) or _nothing for name in names}


def _nothing() -> None:
    pass


def rotated(names: list, r: int) -> list:
    """The order of round `r`: `names` rotated left by r places."""
    shift = r % len(names)
    return names[shift:] + names[:shift]


def summary(seconds: np.ndarray) -> dict:
    """Median, quartiles and IQR of per-call times, in microseconds, and the sample count."""
    q1, med, q3 = np.percentile(seconds * 1e6, [25, 50, 75])
    return {"median_us": float(med), "q1_us": float(q1), "q3_us": float(q3),
            "iqr_us": float(q3 - q1), "n": int(seconds.size)}


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@contextmanager
def env_var(name: str, value: str):
    """Set an environment variable inside a `with` block, restore it after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class FirstCall:
    """Wraps a function; remembers how long its first call took (a compile, usually)."""

    def __init__(self, fn: Callable):
        self.fn, self.seconds = fn, None

    def __call__(self, *args, **kw):
        if self.seconds is not None:
            return self.fn(*args, **kw)
        self.seconds, out = timed(lambda: self.fn(*args, **kw))
        return out


def table(rows: list[list], header: list[str], text: tuple = (0,)) -> str:
    """A plain text table: the `text` columns (indices, -1 the last) left-aligned, the
    others (numbers) right-aligned."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    left = {i % len(header) for i in text}

    def line(r):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_isa() -> str:
    """The widest x86 vector extension /proc/cpuinfo lists ("AVX-512", "AVX2", "AVX"), or
    "" (another architecture, or no /proc/cpuinfo). Machines of one model name differ
    here (an "AMD EPYC" VM may be Zen 3 or Zen 4), and graphc's C kernels with them."""
    try:
        m = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return ""
    flags = set(m.group(1).split()) if m else set()
    return next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                         ("avx", "AVX")) if flag in flags), "")


def cpu_label() -> str:
    """A file-name label for this machine without its hostname: `amd-epyc-avx2-2cores`."""
    words = re.sub(r"\(.*?\)|cpu|processor|@.*", " ", cpu_model(), flags=re.I).lower()
    slug = "-".join(re.findall(r"[a-z0-9]+", words))[:40].strip("-") or "unknown"
    isa = vector_isa().lower().replace("-", "")
    return f"{slug}{'-' + isa if isa else ''}-{os.cpu_count()}cores"


def blas_threads() -> list:
    """Thread pools NumPy's BLAS and OpenMP libraries use (via threadpoolctl, if present)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "prefix", "num_threads", "version")
    return [{k: info.get(k) for k in keys}
            for info in threadpool_info()]


def environment() -> dict:
    """Versions, CPU and thread settings for the record (no hostname, no user names)."""
    import sympy

    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "python": sys.version.split()[0], "numpy": np.__version__,
           "sympy": sympy.__version__, "platform": platform.platform(terse=True),
           "cpu": cpu_model(), "cpu_isa": vector_isa(), "cpu_count": os.cpu_count(),
           "blas": blas_threads(),
           "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                     "MKL_NUM_THREADS", "GRAPHC_NUM_THREADS")
                          if k in os.environ}}
    try:
        import torch
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    return env


def results_dir() -> Path:
    """Where the records go unless told: docs/bench-results in a source checkout (data kept
    beside the code, not installed with it), else ./bench-results."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / "docs" / "bench-results"
    return Path.cwd() / "bench-results"


def write_json(path: Path, record: dict) -> Path:
    """Write the record (indented, keys in insertion order); make the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
