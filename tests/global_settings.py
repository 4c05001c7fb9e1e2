"""Process-wide torch settings that a test may change (cuDNN flags, float32 precision, determinism,
default dtype, threads, grad mode, anomaly detection, autocast, CUDA sync debug mode): read them
all, and put them back. ``tests/conftest.py`` snapshots them when the session starts and restores
them after every test, so no test leaks a setting into the ones after it."""
import torch

# Per-backend float32 precision (torch >= 2.9): always readable, and what the legacy flags
# (``allow_tf32``, ``get_float32_matmul_precision``) follow; once one is written, reading a
# legacy flag may raise, so the legacy flags are read and restored only where they read.
_PRECISION_ATTRS = ("", "cuda.matmul", "cudnn", "cudnn.conv", "cudnn.rnn", "mkldnn", "mkldnn.matmul", "mkldnn.conv",
                    "mkldnn.rnn")


def _backend(path: str):
    obj = torch.backends
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _attribute(path: str, attr: str):
    def get():
        return getattr(_backend(path), attr)

    def put(value):
        setattr(_backend(path), attr, value)

    return get, put


def _settings():
    """[(name, getter, setter)]."""
    rows = []
    for flag in ("deterministic", "benchmark", "enabled", "allow_tf32"):
        rows.append((f"torch.backends.cudnn.{flag}", *_attribute("cudnn", flag)))
    for flag in ("allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
        if hasattr(torch.backends.cuda.matmul, flag):
            rows.append((f"torch.backends.cuda.matmul.{flag}", *_attribute("cuda.matmul", flag)))
    rows.append(("torch.get_float32_matmul_precision", torch.get_float32_matmul_precision,
                 torch.set_float32_matmul_precision))
    for path in _PRECISION_ATTRS:
        backend = _backend(path)
        if backend is not None and hasattr(backend, "fp32_precision"):
            rows.append((f"torch.backends.{path + '.' if path else ''}fp32_precision",
                         *_attribute(path, "fp32_precision")))
    rows += [
        ("torch.are_deterministic_algorithms_enabled",
         lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
         lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1])),
        ("torch.get_default_dtype", torch.get_default_dtype, torch.set_default_dtype),
        ("torch.get_num_threads", torch.get_num_threads, torch.set_num_threads),
        ("torch.is_grad_enabled", torch.is_grad_enabled, torch.set_grad_enabled),
        ("torch.is_anomaly_enabled", lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
         lambda v: torch.autograd.set_detect_anomaly(v[0], check_nan=v[1])),
    ]
    for device in ("cpu", "cuda"):
        rows.append((f"torch.is_autocast_enabled({device!r})",
                     lambda device=device: (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)),
                     lambda v, device=device: (torch.set_autocast_enabled(device, v[0]),
                                               torch.set_autocast_dtype(device, v[1]))))
    if torch.cuda.is_available():
        rows.append(("torch.cuda.get_sync_debug_mode", torch.cuda.get_sync_debug_mode,
                     torch.cuda.set_sync_debug_mode))
    return rows


_SETTINGS = _settings()

#: The settings when the test session started (set by ``tests/conftest.py``).
SESSION_START: dict = {}


def snapshot() -> dict:
    """{name: value} of every setting that reads without raising."""
    values = {}
    for name, get, _ in _SETTINGS:
        try:
            values[name] = get()
        except RuntimeError:        # a legacy flag after its per-backend successor was written
            pass
    return values


def restore(values: dict) -> list:
    """Put back ``values`` (from :func:`snapshot`): the legacy flags first, the per-backend
    precisions last, since they decide. Returns the names that had changed."""
    changed = [name for name, value in snapshot().items() if values.get(name, value) != value]
    changed += [name for name in values if name not in snapshot()]
    rows = sorted(_SETTINGS, key=lambda row: row[0].endswith("fp32_precision"))
    for name, _, put in rows:
        if name in values:
            try:
                put(values[name])
            except RuntimeError:
                pass
    return sorted(set(changed))
