"""The generated-code cache: one file per compiled graph, named by a hash of the graph, so a
user can open the code that runs; modules are imported from there, checked against the
source hash in their first line (a truncated or corrupted entry is rewritten, never run)."""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import stat
import tempfile
import warnings
from pathlib import Path

from . import config
from .checkpoint import atomic_write

HEADER = "# graphc-source-sha256: "
# a temp file younger than this is another writer's, even if its pid looks dead here (a
# cache folder shared between containers); older ones are debris of killed compiles
STALE_TEMP_S = 600.0


def graph_key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def entry(source: str, header: str = HEADER) -> str:
    """The text of a cache entry: a header line with the source's SHA-256, then the source."""
    return f"{header}{hashlib.sha256(source.encode()).hexdigest()}\n{source}"


def verified(text: str, header: str = HEADER) -> str | None:
    """The source held by an entry's text, or None when its hash does not match."""
    head, sep, source = text.partition("\n")
    if not sep or not head.startswith(header):
        return None
    ok = head[len(header):] == hashlib.sha256(source.encode()).hexdigest()
    return source if ok else None


def store(stem: str, key: str, source: str, suffix: str = ".py", header: str = HEADER) -> Path:
    """Write source to <cache>/<stem>-<key><suffix> atomically (temp file + rename), unless an
    identical entry is there already (a missing, truncated or corrupted one is rewritten).
    header: the hash line's comment prefix in the entry's language (C: "// graphc-...").
    A cache folder that cannot be written falls back to a temporary one, with a warning."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:40] or "graph"
    name, text = f"{safe}-{key}{suffix}", entry(source, header)
    folder = config.cache_dir()
    try:
        return _store_in(folder, name, text)
    except OSError as e:
        fallback = _fallback()
        warnings.warn(f"graphc cannot write its cache folder {folder} ({e.strerror or e}); "
                      f"generated code goes to {fallback} instead (set GRAPHC_CACHE_DIR to a "
                      "writable folder)", RuntimeWarning, stacklevel=2)
        return _store_in(fallback, name, text)


def _store_in(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    try:
        if path.read_text() == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: write it anew
    # concurrent compiles of one graph each rename a complete file: the last one wins, and
    # all are identical. No fsync: an entry damaged by a power cut fails its hash, is rebuilt
    atomic_write(path, lambda f: f.write(text.encode()), durable=False,
                 keep_young=STALE_TEMP_S)
    return path


def _fallback() -> Path:
    """The per-user temporary cache folder, unless someone else made it (a shared /tmp):
    then a fresh private one."""
    folder = config.fallback_cache_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.lstat()
    if stat.S_ISLNK(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return Path(tempfile.mkdtemp(prefix="graphc-cache-"))
    return folder


class _VerifiedLoader(importlib.machinery.SourceFileLoader):
    """Compiles the entry's text after checking its hash, and neither reads nor writes
    __pycache__ (a stale or damaged .pyc would run code the hash never saw)."""

    def get_code(self, fullname):
        data = self.get_data(self.path)
        if verified(data.decode("utf-8", errors="replace")) is None:
            raise ImportError(f"cache entry {self.path} does not match its source hash "
                              "(truncated or edited); compile again to rewrite it")
        return compile(data, self.path, "exec", dont_inherit=True)


def load_module(path: Path, key: str):
    """Import a generated module from its (hash-checked) file."""
    name = f"graphc_generated_{key}"
    loader = _VerifiedLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot import generated module {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
