"""C backend: fused kernels as C loops, compiled with the system C compiler, loaded with ctypes."""
