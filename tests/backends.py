"""The backends that tests run on, as pytest parameters: NumPy; C where a C compiler
works (skipped elsewhere, with the reason); Triton through its interpreter."""
import pytest

from graphc.codegen.c import build

C_OK, C_WHY = build.available()
C = pytest.param("c", marks=pytest.mark.skipif(not C_OK, reason=f"no C backend: {C_WHY}"))
TRITON = pytest.param("triton", marks=pytest.mark.filterwarnings("ignore:Triton"))
BACKENDS = ["numpy", C, TRITON]
