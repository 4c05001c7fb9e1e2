"""Test harness: a ``cuda`` marker that skips without a GPU, the Triton interpreter for kernel
tests on the CPU, and process-wide torch settings restored after every test
(:mod:`global_settings`).

``TRITON_INTERPRET=1`` must be set before Triton compiles (imports) a kernel module, so it is
set here, at collection time, when no GPU is visible: Triton kernels then run on CPU tensors.
"""
import os

import pytest
import torch

import global_settings

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running test")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


global_settings.SESSION_START = global_settings.snapshot()


@pytest.fixture(autouse=True)
def _restore_global_settings():
    """After every test, torch's process-wide settings (cuDNN flags, float32 precision,
    determinism, default dtype, threads, ...) are put back as the session started: what a test,
    or a module-scoped fixture set up before it (``fian-fast train`` called in-process sets the
    threads), changed does not reach the tests after it."""
    yield
    global_settings.restore(global_settings.SESSION_START)
