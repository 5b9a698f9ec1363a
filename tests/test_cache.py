"""The generated-code cache: entries carry their source hash and a damaged one is rewritten,
never run; processes compiling one graph at once leave one valid entry; a cache folder that
cannot be written falls back to a temporary one with a warning."""
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import graphc as gc
from graphc import cache, checkpoint, config

N = gc.sym("N")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Each test its own cache folder (conftest's is shared by the session)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(folder))
    return folder


def model(name="cached"):
    g = gc.Graph(name)
    x = g.input("x", (N, 3))
    return g, gc.tanh(gc.linear(x, 2, name="l"), name="out")


X = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)


def compiled(name="cached"):
    g, out = model(name)
    f = gc.function(g, [out], backend="numpy")
    return f, f(x=X)[0]


def test_entry_starts_with_its_source_hash_and_writes_no_pycache(cache_dir):
    f, _ = compiled()
    text = f.path.read_text()
    head, source = text.split("\n", 1)
    assert head.startswith("# graphc-source-sha256: ") and cache.verified(text) == source
    assert f.path.parent == cache_dir
    assert sorted(p.name for p in cache_dir.iterdir()) == [f.path.name]   # no __pycache__


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "empty", "replace the code"])
def test_a_damaged_entry_is_detected_and_rewritten(cache_dir, damage):
    f, want = compiled()
    good = f.path.read_text()
    head, source = good.split("\n", 1)
    damaged = {"truncate": good[:len(good) // 2],
               "flip a byte": good[:200] + chr(ord(good[200]) ^ 1) + good[201:],
               "empty": "",
               # a self-consistent-looking entry whose code would fail: the hash catches it
               "replace the code": f"{head}\nraise SystemExit('ran a damaged entry')\n"}
    f.path.write_text(damaged[damage])
    with pytest.raises(ImportError, match="does not match its source hash"):
        cache.load_module(f.path, "damaged")
    again, got = compiled()
    assert again.path == f.path and again.path.read_text() == good
    np.testing.assert_array_equal(got, want)


def test_processes_compiling_one_graph_at_once_leave_one_valid_entry(cache_dir, tmp_path):
    """Four processes, released together once each has imported graphc and built the graph."""
    script = textwrap.dedent(f"""
        import os, sys, time
        import numpy as np
        import graphc as gc
        g = gc.Graph("raced")
        x = g.input("x", (gc.sym("N"), 3))
        out = gc.tanh(gc.linear(x, 2, name="l"), name="out")
        open(os.path.join({str(tmp_path)!r}, "ready" + sys.argv[1]), "w").close()
        while not os.path.exists(os.path.join({str(tmp_path)!r}, "go")):
            time.sleep(0.001)
        f = gc.function(g, [out], backend="numpy")
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
        print(f.path, repr(f(x=x)[0].tolist()))
    """)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert len({out for out, _ in outs}) == 1          # one path, one result
    entries = sorted(cache_dir.iterdir())
    assert [p.name for p in entries if p.name.startswith("raced-")] == [entries[0].name]
    assert len(entries) == 1 and cache.verified(entries[0].read_text()) is not None
    assert checkpoint.temp_files(entries[0]) == []


def test_unwritable_cache_folder_falls_back_with_a_warning(tmp_path, monkeypatch):
    """Tests run as root, where chmod does not stop writes: the folder's parent is a file."""
    (tmp_path / "a_file").write_text("not a folder")
    blocked = tmp_path / "a_file" / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(blocked))
    monkeypatch.setattr(config, "fallback_cache_dir", lambda: tmp_path / "fallback")
    with pytest.warns(RuntimeWarning, match=rf"cannot write its cache folder {blocked} "
                                            r"\(Not a directory\).*fallback"):
        f, got = compiled()
    assert f.path.parent == tmp_path / "fallback"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "ok"))
    np.testing.assert_array_equal(got, compiled()[1])


def test_fallback_made_by_another_user_is_not_used(tmp_path, monkeypatch):
    """A shared /tmp: someone else's graphc-cache-<uid> folder could hold their code."""
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "a_file" / "cache"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, os.getuid() + 4242, -1)
    monkeypatch.setattr(config, "fallback_cache_dir", lambda: theirs)
    with pytest.warns(RuntimeWarning):
        f, _ = compiled()
    try:
        assert f.path.parent != theirs and f.path.parent.name.startswith("graphc-cache-")
    finally:
        shutil.rmtree(f.path.parent)


def test_temp_files_of_killed_compiles_are_cleaned_when_old(cache_dir):
    f, _ = compiled()
    dead = 2 ** 22 + 12345   # above the default pid_max: no such process
    old = cache_dir / f".{f.path.name}.{dead}.abc.tmp"
    young = cache_dir / f".{f.path.name}.{dead}.def.tmp"
    for p in (old, young):
        p.write_text("half an entry")
    os.utime(old, (time.time() - 2 * cache.STALE_TEMP_S,) * 2)
    f.path.write_text("")    # damaged: the next compile writes, and cleans first
    compiled()
    assert checkpoint.temp_files(f.path) == [young]
