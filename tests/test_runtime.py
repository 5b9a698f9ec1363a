"""The runtime: compiled functions and training steps, parameters, save/load, the Trainer,
the no-allocation property, and the generated module as a file a person can open."""
import ast
import json
import re
import subprocess
import sys
import textwrap
import time
import tracemalloc

import networkx as nx
import numpy as np
import pytest

import graphc as gc
from graphc import config
from tests import reference

N = gc.sym("N")


def mlp(name="mlp", n_in=64, hidden=128, classes=10):
    """The digits-size MLP of the design notes: x (N, 64) -> tanh(linear 128) -> linear 10."""
    g = gc.Graph(name)
    x = g.input("x", (N, n_in))
    y = g.input("y", (N,), dtype="int64")
    h = gc.tanh(gc.linear(x, hidden, name="l1"))
    loss = gc.softmax_cross_entropy(gc.linear(h, classes, name="l2"), y, name="loss")
    return g, loss


def data(n, n_in=64, classes=10, seed=0):
    """Inputs with labels from a fixed linear teacher, so there is something to learn."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in)).astype(np.float32)
    teacher = np.random.default_rng(99).normal(size=(n_in, classes))
    return {"x": X, "y": np.argmax(X @ teacher, axis=1).astype(np.int64)}


def logits(step, X):
    """The MLP forward in plain NumPy, reading the step's parameters."""
    return np.tanh(X @ step["l1_W"] + step["l1_b"]) @ step["l2_W"] + step["l2_b"]


def cross_entropy(z, y):
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


# ---- functions and training steps -------------------------------------------------------

def test_function_outputs_by_handle_and_by_name():
    g, loss = mlp()
    feeds = data(9)
    by_handle = gc.function(g, [g["l2"], loss])(**feeds)
    by_name = gc.function(g, ["l2", "loss"])(feeds)
    want = reference.evaluate(g, feeds, ["l2", "loss"])
    for a, b, w in zip(by_handle, by_name, want):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-5)
    assert by_handle[0].shape == (9, 10) and by_handle[1].shape == ()


def test_training_step_decreases_loss():
    g, loss = mlp()
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.5))
    feeds = data(128)
    losses = [step(**feeds) for _ in range(30)]
    assert isinstance(losses[0], float)
    assert losses[0] == pytest.approx(np.log(10), rel=0.3)
    assert losses[-1] < 0.5 * losses[0], losses


def test_step_returns_other_outputs_computed_before_the_update():
    g, loss = mlp()
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.5), outputs=[g["l2"]])
    feeds = data(7)
    want = logits(step, feeds["x"])     # parameters before the step updates them
    step(**feeds)
    np.testing.assert_allclose(step.outputs["l2"], want, rtol=1e-4, atol=1e-5)
    kept = step.outputs["l2"]
    step(**feeds)
    assert not np.shares_memory(kept, step.outputs["l2"])  # a copy, not the step's buffer


def test_parameters_by_name():
    g, loss = mlp()
    step = gc.compile(g, loss)
    assert step["l1_W"].shape == (64, 128) and step["l2_b"].shape == (10,)
    step["l2_b"] = np.arange(10)
    np.testing.assert_array_equal(step["l2_b"], np.arange(10, dtype=np.float32))
    assert step["l2_b"].dtype == np.float32
    with pytest.raises(gc.GraphError, match=r"'l2_b'.*\(10,\).*\(9,\)"):
        step["l2_b"] = np.zeros(9)
    with pytest.raises(KeyError, match="l3_W"):
        step["l3_W"]


def test_save_load_round_trip_without_pickle(tmp_path):
    g, loss = mlp()
    step = gc.compile(g, loss)
    step(**data(16))
    saved = {k: v.copy() for k, v in step.params.items()}
    path = tmp_path / "p.npz"
    step.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert {"l1_W", "l1_b", "l2_W", "l2_b"} <= set(f.files)
        np.testing.assert_array_equal(f["l1_W"], saved["l1_W"])
    step(**data(16))
    step.load(path)
    for k, v in saved.items():
        np.testing.assert_array_equal(step[k], v)

    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in saved.items() if k != "l2_W"})
    with pytest.raises(gc.GraphError, match="l2_W"):
        step.load(missing)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**saved, "l1_b": saved["l1_b"].astype(np.float64)})
    with pytest.raises(gc.GraphError, match="'l1_b'.*float64"):
        step.load(wrong)


# ---- the Trainer ------------------------------------------------------------------------

def accuracy(step, feeds):
    return float(np.mean(np.argmax(logits(step, feeds["x"]), axis=1) == feeds["y"]))


def test_trainer_history_and_progress_bar(capsys):
    g, loss = mlp()
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.3))
    train, val = data(100), data(40, seed=1)
    hist = gc.Trainer(step).fit(train, epochs=3, batch_size=32, shuffle=True, seed=0,
                                validation=val, metric=accuracy)
    assert len(hist.loss) == len(hist.val_loss) == len(hist.metric) == 3
    assert len(hist.step_loss) == 3 * 4  # ceil(100 / 32) steps per epoch
    assert hist.loss[0] == pytest.approx(np.mean(hist.step_loss[:4]))
    assert hist.loss[-1] < hist.loss[0] and hist.val_loss[-1] < hist.val_loss[0]
    assert hist.val_loss[-1] == pytest.approx(cross_entropy(logits(step, val["x"]), val["y"]),
                                              rel=1e-4)
    assert all(0.0 <= m <= 1.0 for m in hist.metric)
    err = capsys.readouterr().err
    assert "training mlp" in err and "12/12" in err, err

    gc.Trainer(step).fit(train, epochs=1, batch_size=50, progress=False)
    assert capsys.readouterr().err == ""


def test_shuffle_with_a_seed_is_reproducible():
    def trained(seed):
        g, loss = mlp()
        step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.2))
        gc.Trainer(step).fit(data(64), epochs=2, batch_size=16, seed=seed, progress=False)
        return step.params

    a, b, c = trained(3), trained(3), trained(4)
    for k in ("l1_W", "l1_b", "l2_W", "l2_b"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["l1_W"], c["l1_W"])


# ---- memory: no allocation after the first call, in-place updates ------------------------

def traced_peak(fn) -> int:
    """Peak bytes allocated (NumPy reports its data allocations to tracemalloc) by fn()."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_warm_step_allocates_no_arrays():
    """Batch 256 x hidden 128: each hidden buffer is 128 KB; a warm step's peak stays under
    16 KB. NumPy's ufunc machinery keeps a scratch buffer of `bufsize` elements per operand
    when it broadcasts or casts (a fixed size, not an array of the step's); it is shrunk here
    so that what remains visible is any allocation the generated code makes."""
    g, loss = mlp()
    step = gc.compile(g, loss)
    feeds = data(256)
    step(**feeds), step(**feeds)
    threshold = 16 * 1024
    old = np.getbufsize()
    np.setbufsize(512)
    try:
        peak = traced_peak(lambda: step(**feeds))
        W1, b1, W2, b2 = (step[k] for k in ("l1_W", "l1_b", "l2_W", "l2_b"))
        naive = traced_peak(lambda: np.tanh(feeds["x"] @ W1 + b1) @ W2 + b2)
    finally:
        np.setbufsize(old)
    print(f"warm step peak {peak} B, naive forward peak {naive} B")
    assert peak < threshold < 256 * 128 * 4
    assert naive > threshold  # the measurement does see arrays made without out=


def test_warm_step_memory_does_not_grow_with_the_batch():
    """At NumPy's default bufsize the transient peak is its fixed scratch: the same for a
    batch of 1024 as of 4096, and far below one (4096, 128) buffer."""
    g, loss = mlp()
    step = gc.compile(g, loss)
    peaks = {}
    for n in (1024, 4096):
        feeds = data(n)
        step(**feeds), step(**feeds)
        peaks[n] = traced_peak(lambda: step(**feeds))
    print(f"warm step peaks by batch: {peaks}")
    assert peaks[4096] <= peaks[1024] + 1024
    assert peaks[4096] < 4096 * 128 * 4 // 8


def test_parameters_are_updated_in_place():
    g, loss = mlp()
    step = gc.compile(g, loss)
    W = step["l1_W"]
    before = W.copy()
    step(**data(32))
    assert step["l1_W"] is W and step.params["l1_W"] is W
    assert not np.array_equal(W, before)


# ---- the generated module ---------------------------------------------------------------

def test_source_is_written_to_the_cache_folder():
    g, loss = mlp()
    step = gc.compile(g, loss)
    assert step.path.exists() and step.path.parent == config.cache_dir()
    assert step.path.read_text() == step.source


@pytest.mark.skipif(config.nvidia_driver_present(), reason="a GPU machine may import torch")
def test_numpy_compile_on_a_machine_without_gpu_never_imports_torch():
    # backend="auto" asks whether CUDA works; the answer must not cost a 1.5 s torch import.
    script = textwrap.dedent("""
        import sys
        import graphc as gc
        g = gc.Graph("m")
        x = g.input("x", (3, 4))
        gc.compile(g, gc.sum(gc.tanh(gc.linear(x, 2, name="l"))), optimizer=gc.SGD(lr=0.1))
        print("torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_generated_module_is_self_contained(tmp_path):
    g, loss = mlp()
    step = gc.compile(g, loss)
    feeds = data(20)
    step.save(tmp_path / "params.npz")
    np.savez(tmp_path / "consts.npz", **step.consts)
    np.savez(tmp_path / "feeds.npz", **feeds)
    want_loss = step(**feeds)  # the loss before the update; the update happens in place
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location("step", {str(step.path)!r})
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        assert not any(k.startswith("graphc") for k in sys.modules), "imported graphc"
        load = lambda f: dict(np.load({str(tmp_path)!r} + f, allow_pickle=False))
        p, c, feeds = load("/params.npz"), load("/consts.npz"), load("/feeds.npz")
        out = m.run(*(feeds[n] for n in m.INPUTS), p, c, m.allocate(20))
        np.savez({str(tmp_path)!r} + "/after.npz", **p)
        print(json.dumps([float(out[0]), list(m.OUTPUTS)]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    got_loss, outputs = json.loads(done.stdout)
    assert outputs == ["loss"]
    assert got_loss == pytest.approx(want_loss, rel=1e-6)
    with np.load(tmp_path / "after.npz") as after:
        np.testing.assert_allclose(after["l1_W"], step["l1_W"], rtol=1e-6, atol=1e-7)


def test_identical_graphs_give_byte_identical_source():
    (g1, l1), (g2, l2) = mlp("twice"), mlp("twice")
    s1, s2 = gc.compile(g1, l1), gc.compile(g2, l2)
    assert s1.source.encode() == s2.source.encode()
    assert s1.path == s2.path
    assert gc.function(g1, ["l2"]).source == gc.function(g2, ["l2"]).source


def test_source_carries_node_names_and_expressions():
    g, loss = mlp()
    step = gc.compile(g, loss)
    src = step.source + (step.c_source or "")   # C: the kernels, then the host module
    # the bias add is fused into the activation: one map, its expression in node names
    assert "# tanh_" in src and "tanh(l1_b + l1_mm)" in src
    assert "# l1_mm = x @ l1_W" in src
    for name in ("l1_W", "l1_b", "l2_W", "l2_b", "loss", "d_l1_W"):
        assert name in src


EVIL = {"input": "my input", "param": "x=__import__('os')",
        "hidden": 'h"""\nimport os\n#', "graph": "evil\"\"\" ')\n"}


def test_user_names_never_become_code():
    g = gc.Graph(EVIL["graph"])
    x = g.input(EVIL["input"], (N, 3))
    W = g.param(EVIL["param"], (3, 2), init=np.full((3, 2), 0.25))
    h = gc.tanh(x @ W, name=EVIL["hidden"])
    loss = gc.mean(h, name="lambda")
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1))
    f = gc.function(g, [h, "lambda"])
    X = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(f({EVIL["input"]: X})[1], np.tanh(0.75), rtol=1e-6)
    assert step({EVIL["input"]: X}) == pytest.approx(np.tanh(0.75), rel=1e-6)
    for src in (step.source, f.source):
        tree = ast.parse(src)  # it imported and ran; check what it is made of
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "__import__" not in names and "os" not in names
        # numpy; the C host module also ctypes, operator.is_ and pathlib.Path
        allowed = {"numpy", "ctypes", "is_", "Path"}
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                       any(a.name not in allowed for a in n.names) for n in ast.walk(tree))
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        assert EVIL["param"] in strings  # user text reaches code only as string data
    for c_src in (step.c_source, f.c_source):   # C: user text only in comments
        if c_src is not None:
            code = re.sub(r"/\*.*?\*/|//[^\n]*", "", c_src, flags=re.S)
            # identifiers are generated (h_import_os); no text is a C string or a macro
            assert "__" not in code and '"' not in code
            assert all(line.lstrip().startswith(("#include", "#pragma", "#define", "#ifndef",
                                                 "#endif")) or "#" not in line
                       for line in code.splitlines())


@pytest.mark.parametrize("name", ["tmp0", "np", "buf", "N", "run"])
def test_node_names_that_are_generated_vocabulary(name):
    """A node named like a scratch buffer, a module or a dim keeps its own storage."""
    X = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    got = []
    for n in (name, "plain"):
        g = gc.Graph("vocab")
        t = gc.tanh(g.input("x", (N, 3)), name=n)
        g.map("exp(x0)*sin(x0) + cos(x0)**2", [t], name="o")  # lowered with scratch buffers
        got.append(gc.function(g, [n, "o"])(x=X))
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got[0][0], np.tanh(X), rtol=1e-6)


# ---- shapes, other front ends, views ----------------------------------------------------

def test_one_step_serves_every_batch_size():
    g, loss = mlp()
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.01))
    for n in (1, 7, 64):
        feeds = data(n, seed=n)
        want = cross_entropy(logits(step, feeds["x"]), feeds["y"])
        assert step(**feeds) == pytest.approx(want, rel=1e-4), n
    assert len(step._buffers) == 3  # one set of buffers per batch size


def test_from_networkx_matches_the_builder():
    W0 = np.random.default_rng(0).normal(size=(3, 2))
    bias = np.array([0.5, -0.5], np.float32)
    G = nx.MultiDiGraph(name="hand")
    G.add_node("x", op="input", shape=(N, 3), dtype="float32")
    G.add_node("W", op="param", shape=(3, 2), value=W0)
    G.add_node("b", op="const", value=bias, dtype="float32")
    G.add_node("mm", op="matmul")
    G.add_node("z", op="map", expr="tanh(x0 + x1)")
    G.add_node("sq", op="map", expr="x0 * x1")
    G.add_node("s", op="reduce", fn="sum", axes=(1,), keepdims=False)
    G.add_edges_from([("x", "mm", {"arg": 0}), ("W", "mm", {"arg": 1}),
                      ("mm", "z", {"arg": 0}), ("b", "z", {"arg": 1}),
                      ("z", "sq", {"arg": 0}), ("z", "sq", {"arg": 1}),  # z * z: two edges
                      ("sq", "s", {"arg": 0})])
    hand = gc.Graph.from_networkx(G)

    g = gc.Graph("built")
    x = g.input("x", (N, 3))
    z = gc.tanh(x @ g.param("W", (3, 2), init=W0) + g.const(bias))
    gc.sum(z * z, axis=1, name="s")

    X = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    got, = gc.function(hand, ["s"])(x=X)
    want, = gc.function(g, ["s"])(x=X)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got, (np.tanh(X @ W0 + bias) ** 2).sum(1), rtol=1e-5)


def test_print_graph_lists_one_node_per_line():
    g, loss = mlp()
    lines = str(g).splitlines()
    assert lines[0] == f"graph 'mlp': {len(g)} nodes"
    rows = {line.split()[0]: line for line in lines[1:]}
    assert len(lines) == 1 + len(g) and set(rows) == set(g.topo())
    for name, op, shape, expr in [("x", "input", "(N, 64)", "input"),
                                  ("l1_mm", "matmul", "(N, 128)", "x @ l1_W"),
                                  ("l1", "map", "(N, 128)", "l1_b + l1_mm"),
                                  ("loss", "map", "()", "/N")]:
        assert rows[name].split()[1] == op and shape in rows[name] and expr in rows[name]
    tanh_row = next(r for n, r in rows.items() if n.startswith("tanh_"))
    assert "tanh(l1)" in tanh_row


def test_show_grad_names_backward_nodes():
    g, loss = mlp()
    text = str(gc.show_grad(g, loss))
    for param in ("l1_W", "l1_b", "l2_W", "l2_b"):
        assert f"dloss/d{param}" in text
    # the logits' adjoint is that of logits - max (the max is a stop_gradient): dsub_<k>
    assert "dloss/dsub_" in text and "dloss/dtanh_" in text and "dloss/dloss" in text
    assert "dloss/dl2_W = tanh_0_T @ dloss/dsub_" in text


def test_cold_compile_of_the_digits_mlp_is_fast():
    g, loss = mlp("warmup", n_in=3, hidden=4, classes=2)  # imports and SymPy's first calls
    gc.compile(g, loss)
    g, loss = mlp(f"digits_cold_{time.time_ns()}")  # a name no cached file has
    t0 = time.perf_counter()
    gc.compile(g, loss, optimizer=gc.SGD(lr=0.1))
    seconds = time.perf_counter() - t0
    print(f"cold compile of the 64-128-10 MLP: {seconds:.3f} s")
    assert seconds < 1.0


def test_repeated_subexpressions_are_computed_once_in_numpy():
    """The chain's derivative repeats sigmoid(x) and sigmoid(tanh(..)**2 + x): NumPy's
    recompute rule stores sigmoid(x), tanh and the softplus argument once, and sympy.cse puts
    the backward's repeats in scratch buffers, so each transcendental runs once: one exp for
    sigmoid(x), one for softplus, one for its derivative's sigmoid."""
    torch = pytest.importorskip("torch")
    g = gc.Graph("cse")
    x, w = g.input("x", (64,)), g.input("w", (64,))
    y = gc.softplus(gc.square(gc.tanh(x * gc.sigmoid(x))) + x, name="y")
    dx, = gc.grad(gc.sum(y * w), [x])
    f = gc.function(g, [y, dx], backend="numpy")
    assert f.source.count("np.exp(") == 3 and "(used more than once)" in f.source
    X = np.linspace(-4, 4, 64)
    W = np.cos(X)
    got_y, got_dx = f(x=X.astype(np.float32), w=W.astype(np.float32))
    t = torch.tensor(X, requires_grad=True)
    ref = torch.nn.functional.softplus(torch.tanh(t * torch.sigmoid(t)) ** 2 + t)
    (ref * torch.tensor(W)).sum().backward()
    np.testing.assert_allclose(got_y, ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_dx, t.grad.numpy(), rtol=1e-5, atol=1e-5)
