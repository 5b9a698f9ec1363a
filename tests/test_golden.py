"""The generated code of the example model files, byte for byte against tests/golden/: a
change to any printer shows here, and in review as a diff of the golden files. After an
intended change: `python -m tests.golden_code` rewrites them (tests/golden_code.py)."""
from __future__ import annotations

import difflib

import pytest

from tests.golden_code import EXAMPLES, GOLDEN, sources


@pytest.mark.parametrize("example", EXAMPLES)
def test_generated_code_matches_the_golden_files(example):
    for name, text in sources(example).items():
        path = GOLDEN / example / name
        assert path.is_file(), f"{path} is missing: run python -m tests.golden_code"
        golden = path.read_text()
        if text != golden:
            diff = "".join(list(difflib.unified_diff(
                golden.splitlines(keepends=True), text.splitlines(keepends=True),
                f"golden/{example}/{name}", "generated now"))[:80])
            pytest.fail(f"generated {example}/{name} differs from the golden file; if the "
                        f"change is intended, run python -m tests.golden_code\n{diff}")


def test_every_golden_file_is_generated():
    """No stale golden file for an example or a file the printers no longer write."""
    expected = {GOLDEN / e / n for e in EXAMPLES for n in ("numpy.py", "c.c", "c_host.py",
                                                             "triton.py")}
    assert set(p for p in GOLDEN.rglob("*") if p.is_file()) == expected
