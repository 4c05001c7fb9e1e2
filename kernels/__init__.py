"""Triton kernels of fian_fast (installed as ``fian_fast.kernels``). Importing a module here
imports Triton, so only CUDA code paths and the interpreter tests import them, lazily."""
