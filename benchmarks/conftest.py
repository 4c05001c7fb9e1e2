"""Benchmark harness. ``pytest benchmarks/ --benchmark`` runs the suites; without the option
every benchmark is skipped, so a plain ``pytest benchmarks/`` is quick.

Each benchmark times the fast path and the reference on the same inputs in the same run and
records the device, torch version and commit in ``benchmark.extra_info``.
"""
import os
import subprocess

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--benchmark", action="store_true", default=False,
                     help="run the fian_fast benchmarks (slow)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    skip_all = not config.getoption("--benchmark")
    skip_cuda = not torch.cuda.is_available()
    for item in items:
        if skip_all:
            item.add_marker(pytest.mark.skip(reason="benchmarks run with --benchmark"))
        elif skip_cuda and "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=os.path.dirname(__file__),
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@pytest.fixture
def run_info():
    """Facts recorded beside every timing."""
    return {"torch": torch.__version__, "commit": _commit()}


_RATIOS = []


def _append_row(row) -> None:
    """With ``FIAN_FAST_SPEEDUPS=path`` set, append one tab-separated row (name, device, reference
    ms, fast ms, ratio) to that file at once, flushed: a run killed later keeps every figure
    measured before. With ``FIAN_FAST_INTERRUPT_AFTER_FIGURE=1`` (device_check.sh's rehearsal of a
    cut step) the process then interrupts itself with SIGINT."""
    path = os.environ.get("FIAN_FAST_SPEEDUPS")
    if not path:
        return
    name, device, ref, fast, ratio = row
    with open(path, "a") as f:
        f.write(f"{name}\t{device}\t{ref * 1e3:.4f}\t{fast * 1e3:.4f}\t{ratio:.3f}\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("FIAN_FAST_INTERRUPT_AFTER_FIGURE") == "1":
        # device_check.sh's rehearsal of a cut step: stop here as a time limit's SIGINT would
        import signal
        os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def report_ratio(run_info):
    """Record ``reference_seconds / fast_seconds`` for a named comparison: printed at once (run
    pytest with ``-s`` to see it live), appended to ``$FIAN_FAST_SPEEDUPS`` at once, and listed again
    in the terminal summary."""

    def record(name: str, device: str, reference_s: float, fast_s: float, benchmark=None) -> float:
        ratio = reference_s / fast_s if fast_s > 0 else float("inf")
        row = (name, device_name(device), reference_s, fast_s, ratio)
        _RATIOS.append(row)
        _append_row(row)
        print(f"\nspeedup: {name} | {row[1]} | ref {reference_s * 1e3:.3f} ms | fast {fast_s * 1e3:.3f} ms | "
              f"x{ratio:.2f}", flush=True)
        if benchmark is not None:
            benchmark.extra_info.update(run_info)
            benchmark.extra_info.update({"device": row[1], "speedup_vs_reference": round(ratio, 3)})
        return ratio

    return record


def pytest_terminal_summary(terminalreporter):
    """Lists every recorded ratio again."""
    if not _RATIOS:
        return
    terminalreporter.write_sep("-", "fian_fast speedups (reference time / fast time, same run)")
    for name, device, ref, fast, ratio in _RATIOS:
        terminalreporter.write_line(f"{name} | {device} | ref {ref*1e3:.3f} ms | fast {fast*1e3:.3f} ms | x{ratio:.2f}")


def _timeit(fn, device: str, warmup: int = 3, repeat: int = 10) -> float:
    """Median seconds per call of ``fn``; synchronizes CUDA around each call."""
    import statistics
    import time

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.fixture
def timeit():
    """``timeit(fn, device, warmup=3, repeat=10)`` -> median seconds per call (CUDA synchronized).
    Used for the side-by-side ratio; the ``benchmark`` fixture gives the full timing table."""
    return _timeit
