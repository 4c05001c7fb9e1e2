"""The package imports cleanly, finds its compiled extension, and explains a missing one."""
import os
import subprocess
import sys

import pytest
import torch

import fian_fast
from fian_fast import _extension


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_does_not_import_triton():
    proc = _run("import sys, fian_fast; print('triton' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_kernels_package_resolves_to_top_level_folder():
    import os

    import fian_fast.kernels as k

    root = os.path.dirname(os.path.dirname(os.path.abspath(fian_fast.__file__)))
    assert os.path.abspath(k.__file__).startswith(os.path.join(root, "kernels"))


def test_extension_is_built_for_running_torch():
    assert fian_fast.has_ops(), fian_fast.extension_error()
    module = _extension.load_ops()
    assert module.torch_version == torch.__version__
    assert hasattr(torch.ops.fian_fast, "pairwise_iou")


def _build_flag(name: str) -> bool:
    """A build knob as setup.py reads it."""
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def test_cuda_kernels_built_when_toolkit_present():
    import shutil

    knobs = [k for k in ("FIAN_FAST_SKIP_CUDA", "FIAN_FAST_SKIP_EXT") if _build_flag(k)]
    if knobs:
        assert not fian_fast.has_cuda_ops(), (f"{knobs[0]}=1 asks for a build without CUDA kernels, but the loaded "
                                              f"extension has them: rebuild with the knob set, or unset it")
        return
    if not torch.version.cuda or shutil.which("nvcc") is None:
        pytest.skip("no CUDA toolkit: the CPU-only build is expected")
    assert fian_fast.has_cuda_ops()


def test_missing_extension_explains_how_to_build(monkeypatch):
    monkeypatch.setattr(_extension, "_state", {"tried": True, "module": None,
                                              "error": "fian_fast._C is not built (x); " + _extension.BUILD_HINT})
    assert not fian_fast.has_ops()
    with pytest.raises(_extension.ExtensionMissingError, match="pip install --no-build-isolation -e ."):
        fian_fast.ops.pairwise_iou(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))


def test_import_survives_missing_extension():
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'fian_fast._C': raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch, fian_fast\n"
        "assert not fian_fast.has_ops()\n"
        "try:\n"
        "    fian_fast.ops.pairwise_iou(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))\n"
        "except RuntimeError as e:\n"
        "    print('ERR', e)\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "pip install --no-build-isolation -e ." in proc.stdout


def test_public_api():
    from fian_fast import FIANConfig

    assert FIANConfig.preset("tacos").num_candidates == 347
    assert hasattr(fian_fast, "FIAN")
