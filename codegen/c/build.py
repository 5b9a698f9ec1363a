"""A generated C source -> a shared library in the cache folder, compiled once per (source,
compiler, flags, CPU) and renamed into place atomically -> a ctypes.CDLL."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from graphc import cache, config
from graphc.checkpoint import remove_stale_temps
from graphc.errors import CCompileError, CCompilerMissing

# no -ffast-math: it lets gcc assume there is no NaN or inf, and graphc's outputs must carry them
# -std=c11 (ISO C) keeps a*b + c two roundings, as NumPy computes it (GNU C fuses them into
# an FMA); -fwrapv makes int64 overflow wrap, as NumPy's does
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fwrapv", "-fopenmp",
         "-fPIC", "-shared", "-std=c11"]
# libmvec is glibc's vector math (_ZGVeN16v_expf, ...): the generated `#pragma omp declare simd
# notinbranch` declarations make gcc call it from vectorized loops
LINK_FLAGS = ["-lmvec", "-lm"]
# where -lmvec does not link, this macro tells the source to leave out its `declare simd`
# pragmas: the vector variants would be undefined symbols, and the library would not load
NO_LIBMVEC = "-DGRAPHC_NO_LIBMVEC"
HEADER = "// graphc-source-sha256: "   # cache.HEADER, in C's comment syntax
COMPILE_TIMEOUT_S = 120
MISSING = "backend='c' needs a C compiler (cc or gcc, or set CC); none found on PATH"

_ERROR = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): (?:fatal )?error: "
                    r"(?P<msg>.*)$", re.MULTILINE)
_KERNEL = re.compile(r"\s*// ---- ([^:]+):")
_NODES = re.compile(r"\s*// nodes: (.*)")
_STATEMENT = re.compile(r"(?!\s*//).*?// (.+?) = ")   # code, then `// <node> = <expression>`
_PROBE = """#include <omp.h>
int graphc_probe_threads(void) { return omp_get_max_threads(); }
void graphc_probe_scale(float *y_ptr, long n_elements) {
#pragma omp parallel for simd
    for (long i = 0; i < n_elements; i++) y_ptr[i] = 2.0f * y_ptr[i];
}
"""


# ---- the compiler ----------------------------------------------------------------------------

def find_compiler() -> str | None:
    """The C compiler's path: $CC if set (None when it names no program), else cc, else gcc."""
    chosen = config.c_compiler_env()
    if chosen:
        return shutil.which(chosen)
    return shutil.which("cc") or shutil.which("gcc")


@functools.lru_cache(maxsize=None)
def compiler_version(cc: str) -> str:
    """The first line of `cc --version` (in the cache key: a compiler upgrade rebuilds)."""
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


@functools.lru_cache(maxsize=None)
def links_libmvec(cc: str) -> bool:
    """Whether cc links -lmvec (glibc has it; musl and macOS do not); asked once per process."""
    with tempfile.TemporaryDirectory(prefix="graphc-mvec-") as tmp:
        cmd = [cc, "-x", "c", "-", "-o", os.path.join(tmp, "a.out"), "-lmvec", "-lm"]
        try:
            done = subprocess.run(cmd, input="int main(void) { return 0; }\n",
                                  capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def flags(cc: str) -> tuple[list[str], list[str]]:
    """(compile flags, link flags) for cc: FLAGS and LINK_FLAGS, less libmvec where it is
    missing (the kernels then call scalar expf and friends)."""
    if links_libmvec(cc):
        return list(FLAGS), list(LINK_FLAGS)
    return [*FLAGS, NO_LIBMVEC], [f for f in LINK_FLAGS if f != "-lmvec"]


def _compiler() -> str:
    cc = find_compiler()
    if cc is None:
        raise CCompilerMissing(_missing())
    return cc


def _missing() -> str:
    chosen = config.c_compiler_env()
    return MISSING + (f" (CC={chosen!r} names no program)" if chosen else "")


# ---- the cache key ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def cpu_features() -> str:
    """A short digest of what -march=native sees: /proc/cpuinfo's flags and model name, or
    platform.machine() and processor() where there is no /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()}-{platform.processor()}"
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        # "features": Arm's name for the flags line; the first CPU's lines stand for all
        if sep and name in ("flags", "features", "model name") and name not in found:
            found[name] = value.strip()
    return hashlib.sha256(repr(sorted(found.items())).encode()).hexdigest()[:16]


def library_key(source: str, cc: str | None = None) -> str:
    """The library's cache key (20 hex digits of a SHA-256) over the source, the compiler's
    path and version, the flags and the CPU's features."""
    cc = cc or _compiler()
    compile_flags, link_flags = flags(cc)
    return cache.graph_key(source, cc, compiler_version(cc), " ".join(compile_flags),
                           " ".join(link_flags), cpu_features())


# ---- building --------------------------------------------------------------------------------

def build(source: str, stem: str) -> Path:
    """The shared library of a C source: <cache>/<stem>-<key>.so, beside the <stem>-<key>.c it
    is compiled from; compiled on first use only (a damaged library is rebuilt)."""
    cc = _compiler()
    c_path = cache.store(stem, library_key(source, cc), source, suffix=".c", header=HEADER)
    so_path = c_path.with_suffix(".so")
    if _load_error(so_path) is None:
        return so_path
    _compile(cc, c_path, so_path)
    error = _load_error(so_path)
    if error is not None:
        raise CCompileError(f"{cc} built {so_path}, but it does not load: {error} (a cache "
                            "folder on a noexec mount? set GRAPHC_CACHE_DIR)")
    return so_path


def load(path) -> ctypes.CDLL:
    """The library at path, loaded (dlopen hands back the same handle on later calls)."""
    # ctypes: in the standard library, and needs neither Python's headers nor an extension
    # module build; a call costs ~1 µs; cffi's ABI mode adds nothing for plain pointer and
    # integer signatures
    return ctypes.CDLL(str(path))


def _compile(cc: str, c_path: Path, so_path: Path) -> None:
    """Compile into a temp file beside so_path, then rename it over so_path: processes racing
    to build one library each rename a whole one, and one that has the old file mapped keeps
    it intact (writing so_path in place would pull pages from under it)."""
    remove_stale_temps(so_path, cache.STALE_TEMP_S)
    # the pid in the name tells remove_stale_temps whether its compiler may still be running
    fd, tmp = tempfile.mkstemp(dir=so_path.parent, prefix=f".{so_path.name}.{os.getpid()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        _run(cc, c_path, Path(tmp))
        os.replace(tmp, so_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _run(cc: str, c_path: Path, out: Path) -> None:
    """Run cc on c_path into out; CCompileError on an error or a timeout."""
    compile_flags, link_flags = flags(cc)
    cmd = [cc, *compile_flags, "-o", str(out), str(c_path), *link_flags]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CCompileError(f"C compile of {c_path} did not finish in {COMPILE_TIMEOUT_S} s "
                            f"(compiler: {cc})") from None
    except OSError as e:
        raise CCompilerMissing(f"cannot run the C compiler {cc}: {e}") from None
    if done.returncode != 0:
        raise CCompileError(compile_error(done.stderr, c_path, cmd))


def _load_error(path: Path) -> str | None:
    """Why the library at path cannot be used, or None when it loads."""
    if not _complete(path):
        return "missing or truncated"
    try:
        load(path)
    except OSError as e:
        return str(e)
    return None


def _complete(path: Path) -> bool:
    """Whether path holds a whole library. An ELF file's section headers come last: a file
    that ends before them is truncated, and dlopen of one dies of SIGBUS instead of failing."""
    try:
        with open(path, "rb") as f:
            head, size = f.read(64), os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if head[:4] != b"\x7fELF":
        return sys.platform == "darwin" and size > 0   # Mach-O: left to dlopen
    order = "<" if head[5:6] == b"\x01" else ">"
    # e_shoff, then e_shentsize and e_shnum, at their ELF64 or ELF32 offsets
    offset, at, sizes_at = ("Q", 0x28, 0x3A) if head[4:5] == b"\x02" else ("I", 0x20, 0x2E)
    if len(head) < sizes_at + 4:
        return False
    (shoff,) = struct.unpack_from(order + offset, head, at)
    entry_size, count = struct.unpack_from(order + "HH", head, sizes_at)
    return shoff + entry_size * count <= size


# ---- compile errors --------------------------------------------------------------------------

def compile_error(stderr: str, c_path: Path, cmd: list[str]) -> str:
    """The message of a failed compile: the compiler's first error, the C line it names, and
    the kernel and graph node that line belongs to."""
    command = f"compiler command: {' '.join(cmd)}"
    first = _ERROR.search(stderr)
    if first is None:   # a link error, or a compiler that words its errors otherwise
        return f"C compile of {c_path} failed:\n{_head(stderr)}\n{command}"
    number = int(first["line"])
    lines = _lines(c_path) if Path(first["file"]).name == c_path.name else []
    code = lines[number - 1].strip() if 0 < number <= len(lines) else "(not in the source)"
    where = origin(lines, number - 1) if lines else f"in {first['file']}"
    return (f"C compile failed {where}, at {c_path}:{number}:{first['col']}:\n"
            f"  error: {first['msg']}\n  {number:5} | {code}\n"
            f"compiler output:\n{_head(stderr)}\n{command}")


def origin(lines: list[str], index: int) -> str:
    """'in kernel <k>, node <n>' for the C line at index: the nearest `// ---- <k>: ...`
    header above it, and the `// <n> = ...` statement comment on it or nearest above it."""
    node = None
    for i in range(min(index, len(lines) - 1), -1, -1):
        kernel = _KERNEL.match(lines[i])
        if kernel:
            if node is not None:
                return f"in kernel {kernel[1]}, node {node}"
            nodes = _NODES.match(lines[i + 1]) if i + 1 < len(lines) else None
            return f"in kernel {kernel[1]}" + (f" (nodes: {nodes[1]})" if nodes else "")
        statement = _STATEMENT.match(lines[i]) if node is None else None
        if statement:
            node = statement[1]
    return "before the first kernel (in the declarations)"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _head(text: str, count: int = 20) -> str:
    lines = text.rstrip().splitlines()
    more = f"\n  ... ({len(lines) - count} more lines)" if len(lines) > count else ""
    return "\n".join(f"  {line}" for line in lines[:count]) + more


# ---- availability ----------------------------------------------------------------------------

def available() -> tuple[bool, str]:
    """Whether backend='c' can be used here, and if not why (backend='auto' asks this)."""
    cc = find_compiler()
    if cc is None:
        return False, _missing()
    return _probe(cc)


@functools.lru_cache(maxsize=None)
def _probe(cc: str) -> tuple[bool, str]:
    """Build, load and call a trivial OpenMP library the way build does; once per compiler
    and process (in the cache folder: a noexec one fails here, as it would for kernels)."""
    try:
        threads = load(build(_PROBE, "graphc_probe")).graphc_probe_threads()
    except (CCompileError, CCompilerMissing, OSError) as e:
        return False, f"{cc} cannot build or load a trivial OpenMP library: {e}"
    return True, f"{cc} ({compiler_version(cc)}), OpenMP with up to {threads} threads"
