"""Checkpoint files: named arrays (parameters, optimizer state) plus text metadata, written
atomically as safetensors (or .npz without pickle) and read back validated against a graph."""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .errors import CheckpointError

VERSION = 1
_NPZ_META = "__graphc_metadata__"   # .npz has no header: the metadata is a uint8 array of JSON
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32",
              "U16": "uint16", "U8": "uint8", "BOOL": "bool"}


@dataclass
class Checkpoint:
    """What a checkpoint file holds: arrays by name, the graph it came from, trainer state."""
    arrays: dict
    graph: str | None = None
    trainer: dict | None = None


# ---- atomic writes ---------------------------------------------------------------------------

def atomic_write(path, write: Callable[[BinaryIO], object], durable: bool = True,
                 keep_young: float = 0.0) -> Path:
    """Write a file so that a kill at any moment leaves either the old file or the new one at
    `path`: write(f) fills a temp file in the same folder, which is flushed, fsynced (when
    durable) and renamed over path; then the folder is fsynced so the rename itself persists.
    Temp files of dead writers (killed mid-write) are removed first, unless younger than
    keep_young seconds."""
    path = Path(path)
    folder = path.parent
    remove_stale_temps(path, keep_young)
    # the pid in the name says whether its writer is still alive (see remove_stale_temps)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        _fsync_folder(folder)
    return path


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable enough
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_files(path) -> list[Path]:
    """The temp files atomic_write makes for `path` (finished writes leave none)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def remove_stale_temps(path, keep_young: float = 0.0) -> None:
    """Remove temp files for `path` whose writing process is gone; a live writer's are kept.
    keep_young: also keep those modified in the last seconds (a folder shared between
    machines or containers, where a pid names another process)."""
    now = time.time()
    for tmp in temp_files(path):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        try:
            if pid.isdigit() and not _alive(int(pid)) and now - tmp.stat().st_mtime >= keep_young:
                tmp.unlink()
        except OSError:
            pass  # another cleaner got there first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process, alive
        return True
    return True


# ---- saving ----------------------------------------------------------------------------------

def save(path, arrays: dict, graph: str | None = None, trainer: dict | None = None) -> Path:
    """Write arrays (and the graph name, trainer state) atomically: safetensors, or .npz
    (np.savez, no pickle) when the name ends in .npz."""
    path = Path(path)
    meta = {"format": "graphc-checkpoint", "version": str(VERSION)}
    if graph is not None:
        meta["graph"] = graph
    if trainer is not None:
        meta["trainer"] = json.dumps(trainer)
    arrays = {n: np.ascontiguousarray(v) if np.ndim(v) else np.asarray(v)
              for n, v in arrays.items()}
    if path.suffix == ".npz":
        if _NPZ_META in arrays:
            raise CheckpointError(f"{path}: {_NPZ_META!r} is reserved for graphc's metadata")
        text = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        return atomic_write(path, lambda f: np.savez(f, **{**arrays, _NPZ_META: text}))
    from safetensors.numpy import save as to_bytes  # imported on use: a ~0.1 s import
    data = to_bytes(arrays, metadata=meta)
    return atomic_write(path, lambda f: f.write(data))


# ---- loading ---------------------------------------------------------------------------------

def load(path, expected: dict | None = None) -> Checkpoint:
    """Read a checkpoint (safetensors or .npz, told apart by content, never a pickle). With
    `expected` ({name: (shape, dtype)}), names, shapes and dtypes must match it exactly;
    a CheckpointError names the file, the parameter and both sides."""
    path = Path(path)
    data = path.read_bytes()   # one snapshot: a concurrent save replaces, never edits, it
    if data[:4] == b"PK\x03\x04":
        arrays, meta = _read_npz(path, data)
    elif data[:6] == b"\x93NUMPY":
        raise CheckpointError(f"{path}: a single .npy array (np.save), not a checkpoint; "
                              "save with step.save")
    elif data[:1] == b"\x80":
        raise CheckpointError(f"{path}: a pickle (pickle.dump or torch.save); graphc never "
                              "loads pickles (they run code): save with step.save")
    else:
        arrays, meta = _read_safetensors(path, data, expected)
    version = int(meta.get("version", VERSION))
    if version > VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, this graphc "
                              f"reads up to {VERSION}; upgrade graphc")
    if expected is not None:
        check(path, {n: (a.shape, a.dtype) for n, a in arrays.items()}, expected)
    trainer = json.loads(meta["trainer"]) if "trainer" in meta else None
    return Checkpoint(arrays, meta.get("graph"), trainer)


def check(path, found: dict, expected: dict) -> None:
    """Raise a CheckpointError unless found and expected ({name: (shape, dtype)}) agree."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = [f"missing parameters {missing}" if missing else "",
                 f"unexpected parameters {unexpected}" if unexpected else ""]
        raise CheckpointError(f"{path}: {'; '.join(p for p in parts if p)} (the graph's "
                              f"parameters are {sorted(expected)})")
    for name, (shape, dtype) in expected.items():
        have_shape, have_dtype = found[name]
        if tuple(have_shape) != tuple(shape) or np.dtype(have_dtype) != np.dtype(dtype):
            raise CheckpointError(f"{path}: parameter {name!r} is {tuple(have_shape)} "
                                  f"{np.dtype(have_dtype)} in the file, {tuple(shape)} "
                                  f"{np.dtype(dtype)} in the graph")


def _read_safetensors(path: Path, data: bytes, expected: dict | None) -> tuple[dict, dict]:
    """Parse the header first (names, shapes, dtypes checked before any array is read)."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 10 or size > len(data) - 8 or data[8:9] != b"{":
        raise CheckpointError(f"{path}: not a checkpoint (neither safetensors nor .npz), "
                              f"or truncated ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + size])
    except ValueError as e:
        raise CheckpointError(f"{path}: corrupt safetensors header: {e}") from None
    meta = header.pop("__metadata__", None) or {}
    try:
        found = {n: (tuple(h["shape"]), _ST_DTYPES[h["dtype"]]) for n, h in header.items()}
    except (KeyError, TypeError) as e:  # bfloat16 and the like have no NumPy dtype
        raise CheckpointError(f"{path}: safetensors header with an entry graphc cannot "
                              f"read as NumPy ({e!r})") from None
    if expected is not None:
        check(path, found, expected)
    from safetensors import SafetensorError
    from safetensors.numpy import load as from_bytes
    try:
        return from_bytes(data), meta
    except SafetensorError as e:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file: {e}") from None


def _read_npz(path: Path, data: bytes) -> tuple[dict, dict]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: corrupt or truncated .npz file: {e}") from None
    if any(n.endswith(".pkl") for n in names):
        raise CheckpointError(f"{path}: a torch.save file (a zip holding a pickle); graphc "
                              "never loads pickles (they run code): save with step.save")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            arrays = {n: f[n] for n in f.files}
    except ValueError as e:  # object arrays need pickle, which allow_pickle=False refuses
        raise CheckpointError(f"{path}: holds an array that needs pickle ({e}); graphc "
                              "never loads pickles") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated .npz file: {e}") from None
    other = sorted(n for n, a in arrays.items() if not isinstance(a, np.ndarray))
    if other:  # np.load hands back members that are not .npy as raw bytes
        raise CheckpointError(f"{path}: a zip whose members {other} are not arrays; not a "
                              "checkpoint")
    text = arrays.pop(_NPZ_META, None)
    meta = json.loads(text.tobytes().decode()) if text is not None else {}
    return arrays, meta
