"""The generated-code cache: one file per compiled graph, named by a hash of the graph, so a
user can open the code that runs; modules are imported from there."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from . import config


def graph_key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def store(stem: str, key: str, source: str, suffix: str = ".py") -> Path:
    """Write source to <cache>/<stem>-<key><suffix> atomically (temp file + rename), unless an
    identical file is there already."""
    folder = config.cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:40] or "graph"
    path = folder / f"{safe}-{key}{suffix}"
    try:
        if path.read_text() == source:
            return path
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: write it anew
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{safe}-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    os.replace(tmp, path)
    return path


def load_module(path: Path, key: str):
    """Import a generated module from its file."""
    spec = importlib.util.spec_from_file_location(f"graphc_generated_{key}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import generated module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
