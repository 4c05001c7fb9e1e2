"""Builds and runs the torch-free C++ tests of csrc/ops/common/ through CMake and ctest
(skipped when cmake or a C++ compiler is missing)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ctest") is None, reason="needs cmake and ctest")
def test_ctest(tmp_path):
    build = tmp_path / "build"
    run = dict(capture_output=True, text=True, timeout=300)
    configure = subprocess.run(["cmake", "-S", ROOT, "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], **run)
    if configure.returncode != 0 and "No CMAKE_CXX_COMPILER could be found" in configure.stderr:
        pytest.skip("no C++ compiler for CMake")
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build)], **run)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    tested = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], **run)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "100% tests passed" in tested.stdout
