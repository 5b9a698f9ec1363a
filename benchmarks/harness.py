"""Timing helpers shared by every benchmark. They live in graphc.bench.harness (installed
with the package, for `graphc bench`); this module re-exports them for the scripts here."""
from graphc.bench.harness import (  # noqa: F401
    FirstCall,
    blas_threads,
    cpu_label,
    cpu_model,
    env_var,
    environment,
    interleaved,
    rotated,
    summary,
    table,
    timed,
    write_json,
)
