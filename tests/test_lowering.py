"""graphc.lowering: one pipeline whose stages, timings and memory figures every view of a
compile reads."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

import graphc as gc
from graphc import lowering, lowering_memo
from graphc.codegen.c import build as c_build


def mlp():
    g = gc.Graph("lowering_mlp")
    x, y = g.input("x", (gc.sym("N"), 6)), g.input("y", (gc.sym("N"),), dtype="int64")
    loss = gc.softmax_cross_entropy(gc.linear(gc.tanh(gc.linear(x, 8, name="l1")), 3,
                                              name="l2"), y)
    return g, loss


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_stage_timings_are_named_in_order_and_cover_the_compile(backend):
    if backend == "c" and not c_build.available()[0]:
        pytest.skip("no C compiler")
    with lowering_memo.off():
        t0 = time.perf_counter()
        step = gc.compile(*mlp(), optimizer=gc.SGD(lr=0.1), backend=backend)
        wall = time.perf_counter() - t0
    stages = ["autodiff", "updates", "optimize", "fuse", "plan", "generate",
              *(["cc"] if backend == "c" else []), "store", "import"]
    assert list(step.timings) == stages
    # honest: the stages account for most of the compile and for no more than all of it
    assert 0.5 * wall <= sum(step.timings.values()) <= wall
    assert set(step.lowering.pass_timings) >= {"simplify", "cse", "dce"}


def test_the_stages_are_the_compiled_ones():
    """The lowering's fused graph is the step's graph and its kernels are the ones the
    module runs; the backward graph holds the optimizer's updates."""
    g, loss = mlp()
    low = lowering.lower(g, (), "numpy", loss=loss, optimizer=gc.SGD(lr=0.1, momentum=0.9))
    assert set(low.updates) >= {"l1_W", "l1_W_velocity"}
    assert all(u in low.stage("backward") for u in low.updates.values())
    assert low.stage("forward") is g and "l1_W_new" not in g   # the model is left as it was
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=0.1, momentum=0.9), backend="numpy")
    assert [k.name for k in step.lowering.kernels] == \
        re.findall(r"# ---- kernel (\S+) ", step.source)
    with pytest.raises(ValueError, match="not lowered as far as the fused stage"):
        lowering.lower(g, (), "numpy", loss=loss, until="optimized").stage("fused")


def test_arena_counts_every_set_of_buffers():
    """arena_bytes: the buffers held, one set per batch size met; for tanh(x @ W) with
    x (N, 3), W (3, 4) float32 every buffer is (N, 4), so N=16 holds twice N=8's."""
    g = gc.Graph("arena")
    x = g.input("x", (gc.sym("N"), 3))
    y = gc.tanh(x @ g.param("W", (3, 4)))
    f = gc.function(g, [y], backend="numpy")
    assert f.arena_bytes == 0
    f(x=np.ones((8, 3), np.float32))
    at8 = f.arena_bytes
    assert at8 > 0 and at8 % (8 * 4 * 4) == 0
    f(x=np.ones((16, 3), np.float32))
    assert f.arena_bytes == 3 * at8
