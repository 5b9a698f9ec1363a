"""The README's Python snippets run as written (with data made up for the tour)."""
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_commands_first():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/demo.sh") and block[1].startswith("bash scripts/test")
    assert "scripts/test.sh" in (README.parent / ".ci" / "run").read_text()


def test_readme_snippets_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the tour saves mlp.npz
    rng = np.random.default_rng(0)
    scope = {"X": rng.normal(size=(96, 64)).astype(np.float32),
             "Y": rng.integers(0, 10, 96), "Xv": rng.normal(size=(32, 64)).astype(np.float32),
             "Yv": rng.integers(0, 10, 32)}
    code = snippets()
    assert len(code) >= 3
    for block in code:
        if block.lstrip().startswith("#"):   # a fragment of generated code, not a program
            continue
        exec(compile(block, str(README), "exec"), scope)
    assert np.isfinite(scope["loss_v"]) and scope["gW_v"].shape == (2, 2)
    assert "def run(" in capsys.readouterr().out
    g = scope["g"]
    f = scope["gc"].function(g, ["loss"])
    assert f(x=np.ones((4, 3), np.float32))[0].shape == ()
