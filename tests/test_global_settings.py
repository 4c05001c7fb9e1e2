"""The harness restores torch's process-wide settings after every test: the first test changes
each of them and leaves them changed; the second, which pytest runs after it, finds every one back
at the value the session started with."""
import torch

import global_settings


def test_a_test_that_changes_every_setting_and_leaves_them():
    torch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
    torch.backends.cudnn.allow_tf32 = not torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("medium")
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32"    # the legacy getters raise from here on
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(max(1, torch.get_num_threads() + 1))
    torch.set_grad_enabled(False)
    torch.autograd.set_detect_anomaly(True)
    torch.set_autocast_enabled("cpu", True)
    start = global_settings.SESSION_START
    changed = [name for name, value in global_settings.snapshot().items() if start.get(name) != value]
    missing = [name for name in start if name not in global_settings.snapshot()]
    assert len(changed) + len(missing) >= 10, (changed, missing)


def test_the_next_test_finds_every_setting_as_the_session_started():
    now, start = global_settings.snapshot(), global_settings.SESSION_START
    assert len(start) >= 20
    assert now == start, {name: (start.get(name), now.get(name)) for name in set(now) | set(start)
                          if start.get(name) != now.get(name)}
