"""Checkpoint files: safetensors and .npz round trips, validation against the graph, pickles
refused, and crash safety: a saving process SIGKILLed at every step of a save leaves the
previous checkpoint or the new one, never a mix."""
import io
import os
import pickle
import signal
import time

import numpy as np
import pytest

import graphc as gc
from graphc import checkpoint

N = gc.sym("N")
FORMATS = ["safetensors", "npz"]
CHUNK = 1024  # the kill test writes in pieces this size, so a kill can leave a partial file


def mlp():
    g = gc.Graph("ckpt_mlp", seed=0)
    x = g.input("x", (N, 6))
    h = gc.dropout(gc.tanh(gc.linear(x, 5, name="l1")), 0.25, name="drop")
    loss = gc.mse(gc.linear(h, 2, name="l2"), g.input("t", (N, 2)), name="loss")
    return g, loss


def step_and_feeds():
    g, loss = mlp()
    step = gc.compile(g, loss, optimizer=gc.Adam(lr=0.01), backend="numpy")
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(7, 6)).astype(np.float32),
             "t": rng.normal(size=(7, 2)).astype(np.float32)}
    return step, feeds


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_restores_params_optimizer_state_and_rand_counter(tmp_path, fmt):
    step, feeds = step_and_feeds()
    step(feeds)
    saved = {k: step[k].copy() for k in step.params}
    state = {"rng_step", "step_count", "l1_W_exp_avg", "l1_W_exp_avg_sq"}  # rand, Adam
    assert state <= set(saved), sorted(saved)
    path = step.save(tmp_path / f"s.{fmt}")
    assert path == tmp_path / f"s.{fmt}" and checkpoint.temp_files(path) == []
    later = [step(feeds) for _ in range(3)]
    again, _ = step_and_feeds()
    ckpt = again.load(path)
    assert ckpt.graph == "ckpt_mlp" and ckpt.trainer is None
    for k, v in saved.items():
        np.testing.assert_array_equal(again[k], v)
        assert again[k].dtype == v.dtype
    assert [again(feeds) for _ in range(3)] == later   # same Adam moments, same masks


def test_safetensors_file_is_plain_safetensors_with_metadata(tmp_path):
    from safetensors import safe_open
    step, _ = step_and_feeds()
    step.save(tmp_path / "s.safetensors")
    with safe_open(str(tmp_path / "s.safetensors"), framework="np") as f:
        assert sorted(f.keys()) == sorted(step.params)
        meta = f.metadata()
        np.testing.assert_array_equal(f.get_tensor("l1_W"), step["l1_W"])
    assert meta["graph"] == "ckpt_mlp" and meta["version"] == "1"
    step.save(tmp_path / "noext")   # any other name: safetensors too
    assert checkpoint.load(tmp_path / "noext").graph == "ckpt_mlp"


def test_plain_npz_of_earlier_versions_still_loads(tmp_path):
    step, _ = step_and_feeds()
    np.savez(tmp_path / "old.npz", **step.params)
    again, _ = step_and_feeds()
    assert again.load(tmp_path / "old.npz").graph is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_validates_names_shapes_dtypes_and_changes_nothing_on_error(tmp_path, fmt):
    step, _ = step_and_feeds()
    good = {k: step[k].copy() for k in step.params}
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "l2_W"},
                    r"missing parameters \['l2_W'\]"),
        "unexpected": ({**good, "l3_W": np.zeros(2)}, r"unexpected parameters \['l3_W'\]"),
        "shape": ({**good, "l1_b": np.zeros(4, np.float32)},
                  r"parameter 'l1_b' is \(4,\) float32 in the file, \(5,\) float32 in the graph"),
        "dtype": ({**good, "l1_b": good["l1_b"].astype(np.float64)},
                  r"'l1_b' is \(5,\) float64 in the file, \(5,\) float32 in the graph"),
    }
    step["l1_b"] = np.full(5, 7.0)
    for name, (arrays, message) in cases.items():
        path = checkpoint.save(tmp_path / f"{name}.{fmt}", arrays)
        with pytest.raises(gc.CheckpointError, match=message) as e:
            step.load(path)
        assert str(path) in str(e.value)
        np.testing.assert_array_equal(step["l1_b"], np.full(5, 7.0))   # all or nothing
    assert issubclass(gc.CheckpointError, gc.FeedError)


class _Payload:
    """Unpickling this would create the file `marker`: proof of code run by a load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pt"])
def test_pickles_are_refused_and_nothing_runs(tmp_path, suffix):
    import torch
    step, _ = step_and_feeds()
    marker = tmp_path / "marker"
    files = {}
    files["pickle"] = pickle.dumps({"l1_W": _Payload(marker)})
    buf = io.BytesIO()
    torch.save({"l1_W": torch.zeros(6, 5), "x": _Payload(marker)}, buf)
    files["torch.save"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, l1_W=np.array([_Payload(marker)], dtype=object))
    files["object array"] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    files[".npy"] = buf.getvalue()
    messages = {"pickle": "a pickle", "torch.save": "torch.save file",
                "object array": "needs pickle", ".npy": "single .npy array"}
    for what, data in files.items():
        path = tmp_path / f"{what.replace(' ', '_')}{suffix}"
        path.write_bytes(data)
        with pytest.raises(gc.CheckpointError, match=messages[what]):
            step.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_or_garbage_files_give_a_checkpoint_error(tmp_path, fmt):
    step, _ = step_and_feeds()
    path = step.save(tmp_path / f"s.{fmt}")
    data = path.read_bytes()
    for cut in (0, 5, 40, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(gc.CheckpointError, match=str(path)):
            step.load(path)


# ---- crash safety ------------------------------------------------------------------------------

def contents(i: int) -> dict:
    """Save number i: every array says i, so a mix of two saves is visible."""
    return {"w": np.full((64, 64), i, np.float32), "b": np.arange(10, dtype=np.int64) + i,
            "step": np.array(float(i))}


EXPECTED = {n: (a.shape, a.dtype) for n, a in contents(0).items()}


def which(path) -> int:
    """The number of the complete save that path holds (loading validates it)."""
    arrays = checkpoint.load(path, EXPECTED).arrays
    i = int(arrays["step"])
    for n, a in contents(i).items():
        np.testing.assert_array_equal(arrays[n], a)
    return i


def _instrument(kill_at: int, log: list) -> None:
    """In a forked child: every OS-level step of a save (each CHUNK-byte write, flush, fsync,
    open, close, rename, unlink) first calls tick; tick number kill_at SIGKILLs the process."""
    def tick(what):
        log.append(what)
        if len(log) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    class Chunked(io.FileIO):
        def write(self, b):
            view = memoryview(b).cast("B")
            for i in range(0, len(view), CHUNK):
                tick("write")
                super().write(view[i:i + CHUNK])
            return len(view)

        def flush(self):
            tick("flush")
            super().flush()

        def close(self):
            if not self.closed:
                tick("close")
            super().close()

    def wrap(name, f):
        return lambda *a, **k: (tick(name), f(*a, **k))[1]

    os.fdopen = lambda fd, mode="r", *a, **k: Chunked(fd, "wb")
    for name in ("open", "close", "fsync", "replace", "unlink"):
        setattr(os, name, wrap(name, getattr(os, name)))


def _save_in_child(path, i: int, kill_at: int, log_path=None) -> int:
    """Fork; the child saves contents(i) to path, dying at tick kill_at (0: never). Returns
    the signal that ended it (0: it finished)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            log: list = []
            _instrument(kill_at, log)
            checkpoint.save(path, contents(i))
            if log_path is not None:
                with open(log_path, "w") as f:
                    f.write("\n".join(log))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status)
    assert os.WEXITSTATUS(status) == 0, "the child failed"
    return 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_kill_at_every_step_of_a_save_leaves_a_complete_checkpoint(tmp_path, fmt):
    """Save 1 is on disk; a child saving 2 is killed before each of its steps in turn: the
    file is save 1 until the rename, save 2 from then on; the next save removes the temp
    file the dead child left, and no temp file is left behind."""
    path = tmp_path / f"c.{fmt}"
    checkpoint.save(path, contents(1))
    assert _save_in_child(path, 2, 0, tmp_path / "log") == 0
    log = (tmp_path / "log").read_text().split("\n")
    renamed_at = log.index("replace") + 1   # ticks are 1-based: kill before the rename
    assert log.count("write") > 10, log     # kills land inside the data, too
    survived = 0
    for kill_at in range(1, len(log) + 2):  # len + 1: after the last step
        checkpoint.save(path, contents(1))
        sig = _save_in_child(path, 2, kill_at)
        assert sig == (signal.SIGKILL if kill_at <= len(log) else 0)
        assert which(path) == (1 if kill_at <= renamed_at else 2), (kill_at, log)
        checkpoint.save(path, contents(3))   # cleans up after the dead child
        assert checkpoint.temp_files(path) == [] and which(path) == 3
        survived += 1
    print(f"{fmt}: survived {survived} kill points ({len(log)} steps per save)")
    assert survived >= 25


def test_kill_at_random_times_while_saving_in_a_loop(tmp_path):
    """A child saves 1, 2, 3, ... as fast as it can (real fsyncs); SIGKILL at seeded random
    times: the file always holds one complete save, never older than the one before."""
    path = tmp_path / "loop.safetensors"
    rng = np.random.default_rng(0)
    last, seen = 0, set()
    for trial in range(20):
        start = last + 1
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(start, start + 10_000):
                    checkpoint.save(path, contents(i))
            finally:
                os._exit(0)
        time.sleep(float(rng.uniform(0.002, 0.03)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if path.exists():
            now = which(path)
            assert now >= last
            last = now
            seen.add(now)
    checkpoint.save(path, contents(0))
    assert checkpoint.temp_files(path) == []
    print(f"random kills: 20, the file held {len(seen)} different complete saves")
    assert len(seen) >= 10, seen  # most kills landed after some saves, at different points
