"""Golden generated code: the training step of each example model file, printed by each
backend, kept under tests/golden/<example>/ and compared byte for byte by
tests/test_golden.py, so that every change to generated code shows in review.

    python -m tests.golden_code            # rewrite tests/golden/ from the printers now

Per example: numpy.py (the NumPy module), c.c and c_host.py (the C translation unit and
the host module that calls it) and triton.py (the Triton module as compiled for a GPU,
libdevice math; the interpreter's flavour differs only in its math calls). The files are
lowered, not loaded: nothing is compiled or imported, so the same files come out on any
machine. The C host names its library <example>.c here (a loaded one names it by a hash
of the source and the compiler).
"""
from __future__ import annotations

import sys
from pathlib import Path

from graphc import lowering, modelfile

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
# the examples that are model files (build() with no arguments, as `graphc code` reads them)
EXAMPLES = ("digits_mlp", "encoder_838")


def sources(example: str) -> dict:
    """{file name: generated text} of one example's training step."""
    spec = modelfile.load(ROOT / "examples" / f"{example}.py")

    def lowered(backend: str, **kw):
        return lowering.lower(spec.graph, (), backend, loss=spec.loss,
                              optimizer=spec.optimizer, **kw).generated
    c_source, host = lowered("c")
    return {"numpy.py": lowered("numpy"), "c.c": c_source, "c_host.py": host(f"{example}.c"),
            "triton.py": lowered("triton", triton_interpret=False)}


def main() -> None:
    for example in EXAMPLES:
        folder = GOLDEN / example
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in sources(example).items():
            (folder / name).write_text(text)
        print(f"written: {folder.relative_to(ROOT)}/ ({', '.join(sources(example))})")
    if len(sys.argv) > 1:
        raise SystemExit(f"{sys.argv[0]} takes no arguments")


if __name__ == "__main__":
    main()
