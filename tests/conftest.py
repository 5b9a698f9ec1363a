"""Shared test set-up: generated code goes to a temporary cache folder, never the user's;
without a GPU, Triton runs in interpreter mode from the start (torch imports triton for
torch.compile and some optimizers, and triton reads TRITON_INTERPRET when it is imported)."""
import os

import pytest

from graphc import config

if not config.nvidia_driver_present():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("graphc-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_lowering_memo():
    """Each test lowers its graphs afresh: some patch a printer's constants (tile limits,
    chunk sizes), which the in-process lowering memo does not key on."""
    from graphc import lowering_memo
    lowering_memo.clear()
    yield
