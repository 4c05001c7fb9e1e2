"""Every Python argument check of fian_fast: the one home of validation.

Each check raises ``ValueError`` naming the function, the argument, what was expected and what
was received.

Two kinds of checks:

* **metadata** (type, rank, shape, dtype, device, Python scalars): free, made at every entry point;
* **values** (NaN, ranges, start <= end): they read the data, which on a GPU waits for it. They are
  made once, where data enters: the data loader (:func:`check_batch`, on the host before the
  transfer) and the public API. Internal callers that already checked their inputs (the model,
  the trainer, the evaluator) pass ``validate=False`` and skip them; a training step then never
  reads the device. Value checks are also skipped while ``torch.compile`` traces (no data then).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch

from ._cga import FUSED_DTYPES, INPUT_PRECISIONS, KERNEL_DTYPES, MAX_HEAD_DIM, CGAWeights, triton_runs_on

__all__ = ["check_tensor", "check_lengths", "check_finite", "check_same_device", "check_fraction",
           "check_intervals", "check_no_nan", "check_data", "check_top", "durations_rule", "check_durations",
           "check_valid", "check_windows",
           "check_length_range", "check_batch", "check_all_finite", "check_gt", "check_like",
           "check_cga_args", "check_cga_attention_args", "check_cga_gate_args", "check_cga_triton_args",
           "check_triton_device"]


def check_tensor(fn: str, name: str, t, dim: Optional[int] = None, last: Optional[int] = None,
                 floating: Optional[bool] = None, shape: Optional[Sequence[Optional[int]]] = None) -> torch.Tensor:
    """Check that ``t`` is a tensor of rank ``dim`` whose last size is ``last`` and whose sizes
    match ``shape`` (``None`` entries are free)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{fn}: {name} should be a torch.Tensor, got {type(t).__name__}")
    size = t.shape  # read once: each read builds a torch.Size
    if dim is not None and len(size) != dim:
        raise ValueError(f"{fn}: {name} should be a {dim}-D tensor, got {len(size)}-D with shape {tuple(size)}")
    if last is not None and (len(size) == 0 or size[-1] != last):
        raise ValueError(f"{fn}: {name} should have last dimension {last}, got shape {tuple(size)}")
    if shape is not None:
        for axis, want in enumerate(shape):
            if want is not None and size[axis] != want:
                raise ValueError(f"{fn}: {name} should have size {want} at dim {axis}, got shape {tuple(size)}")
    if floating is True and not t.is_floating_point():
        raise ValueError(f"{fn}: {name} should be a floating tensor, got {t.dtype}")
    if floating is False and (t.is_floating_point() or t.is_complex()):
        raise ValueError(f"{fn}: {name} should be an integer tensor, got {t.dtype}")
    return t


def check_lengths(fn: str, name: str, lengths, batch: int, max_len: int, min_len: int = 1,
                  validate: bool = True) -> torch.Tensor:
    """``lengths`` is an integer tensor [batch] (metadata, always) with values in
    [min_len, max_len] (a value check: only with ``validate``)."""
    check_tensor(fn, name, lengths, dim=1, floating=False, shape=(batch,))
    if lengths.dtype == torch.bool:
        raise ValueError(f"{fn}: {name} should be an integer tensor, got {lengths.dtype}")
    if validate:
        check_length_range(fn, ((name, lengths, min_len, max_len),))
    return lengths


def check_length_range(fn: str, entries) -> None:
    """Value check of integer tensors: ``entries`` are ``(name, lengths, lo, hi)``; every value
    must lie in [lo, hi]. One host read for all of them."""
    if _compiling():
        return
    entries = [e for e in entries if e[1].numel()]
    if not entries:
        return
    stats = torch.stack([f(t).to(torch.int64) for _, t, _, _ in entries for f in (torch.min, torch.max)]).tolist()
    for i, (name, _, lo, hi) in enumerate(entries):
        got_lo, got_hi = stats[2 * i], stats[2 * i + 1]
        if got_lo < lo or got_hi > hi:
            raise ValueError(f"{fn}: {name} should lie in [{lo}, {hi}], got values in [{got_lo}, {got_hi}]")


def check_finite(fn: str, name: str, t: torch.Tensor) -> torch.Tensor:
    """No NaN or infinity in ``t`` (a sync on CUDA: call it once at an entry point)."""
    if _compiling():
        return t
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{fn}: {name} should be finite, got {bad} NaN or infinite values")
    return t


def check_all_finite(fn: str, named: Sequence[Tuple[str, torch.Tensor]]) -> None:
    """No NaN or infinity in any of the (name, tensor) pairs, with one host read when they pass:
    a sum is finite when every term is (and far cheaper than ``isfinite().all()``); a sum that
    overflowed without a bad value passes the exact check made only then."""
    if _compiling():
        return
    named = [(n, t) for n, t in named if t.is_floating_point() and t.numel()]
    if not named:
        return
    flags = torch.stack([~torch.isfinite(t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32))
                         for _, t in named])
    if bool(flags.any()):
        for name, t in named:
            check_finite(fn, name, t)


def check_same_device(fn: str, **tensors: torch.Tensor) -> None:
    first = None
    for t in tensors.values():
        if isinstance(t, torch.Tensor):
            if first is None:
                first = t.device
            elif t.device != first:
                listing = ", ".join(f"{n} on {v.device}" for n, v in tensors.items() if isinstance(v, torch.Tensor))
                raise ValueError(f"{fn}: tensors should be on one device, got {listing}")


def check_fraction(fn: str, name: str, value: float) -> float:
    """``value`` is a float in [0, 1]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{fn}: {name} should be in [0, 1], got {value!r}")
    return float(value)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def check_intervals(fn: str, name: str, t: torch.Tensor) -> None:
    """Exact data checks of a [..., 2] tensor of intervals: no NaN and no start > end."""
    if _compiling() or t.numel() == 0:
        return
    check_no_nan(fn, name, t)
    start, end = t[..., 0], t[..., 1]
    if bool((start > end).any()):
        first = tuple(int(i) for i in torch.nonzero(start > end)[0])
        raise ValueError(f"{fn}: {name} should have start <= end, got start > end at index {first}: "
                         f"{t[first].tolist()}")


def check_no_nan(fn: str, name: str, t: torch.Tensor) -> None:
    """Exact check that ``t`` holds no NaN (infinities are allowed: they still order)."""
    if _compiling() or t.numel() == 0:
        return
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{fn}: {name} should hold no NaN, got {int(torch.isnan(t).sum())} NaN values")


def check_data(fn: str, intervals: Sequence[Tuple[str, torch.Tensor]] = (),
               no_nan: Sequence[Tuple[str, torch.Tensor]] = (),
               extra: Sequence[Tuple[torch.Tensor, Callable[[], str]]] = ()) -> None:
    """Value checks of an entry point with a single host synchronization when they pass.

    ``intervals``: (name, [..., 2] tensor) pairs, no NaN and start <= end; ``no_nan``: (name,
    tensor) pairs; ``extra``: (0-d bool "bad" flag, message) pairs. Every flag is reduced on the
    tensors' device and read once; only when one is raised do the exact checks run to name the
    culprit. A NaN makes a sum NaN, and a sum is far cheaper than ``isnan().any()``; a NaN sum
    without a NaN (+inf and -inf together) passes the exact check. Skipped while torch.compile
    traces (there is no data then).
    """
    if _compiling():
        return
    flags = []
    for _, t in (*intervals, *no_nan):
        if t.numel():
            flags.append(torch.isnan(t.sum()).reshape(1))
    for _, t in intervals:
        if t.numel():
            flags.append((t[..., 0] > t[..., 1]).any().reshape(1))
    flags += [flag.reshape(1) for flag, _ in extra]
    if not flags or not bool(torch.cat(flags).any()):
        return
    for name, t in intervals:
        check_intervals(fn, name, t)
    for name, t in no_nan:
        check_no_nan(fn, name, t)
    for flag, message in extra:
        if bool(flag):
            raise ValueError(f"{fn}: {message()}")


def check_top(fn: str, name: str, value) -> int:
    """``value`` is a Python int >= 1 (a top-k width: ``top_n``, ``top_k``), the one rule of every
    entry point."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{fn}: {name} should be a positive int, got {value!r}")
    return value


def durations_rule(durations: torch.Tensor) -> Tuple[torch.Tensor, Callable[[], str]]:
    """The one rule of video durations, finite and > 0 seconds, as a ``(bad flag, message)`` pair
    for :func:`check_data`'s ``extra`` (read with an entry point's other value checks)."""
    return ((~(torch.isfinite(durations) & (durations > 0))).any(),
            lambda: f"durations should be finite and > 0 seconds, got {durations.tolist()}")


def check_durations(fn: str, durations, batch: int, validate: bool = True) -> torch.Tensor:
    """``durations`` is a floating Tensor[batch] (metadata, always) of finite values > 0 seconds (a
    value check, :func:`durations_rule`: only with ``validate``; one host read)."""
    check_tensor(fn, "durations", durations, dim=1, floating=True, shape=(batch,))
    if validate and durations.numel():
        check_data(fn, extra=(durations_rule(durations),))
    return durations


def check_valid(fn: str, valid: Optional[torch.Tensor], B: int, N: int) -> None:
    """``valid`` is None or a bool Tensor[B, N]."""
    if valid is None:
        return
    check_tensor(fn, "valid", valid, dim=2, shape=(B, N))
    if valid.dtype != torch.bool:
        raise ValueError(f"{fn}: valid should be a bool tensor, got {valid.dtype}")


def check_windows(fn: str, num_frames, window_sizes, strides) -> tuple:
    """The multi-scale window configuration; returns ``(num_frames, sizes, strides)`` as ints.

    Raises ValueError naming the argument when ``num_frames < 1``, a window size is outside
    ``[1, num_frames]``, a stride is below 1, or the two lists differ in length.
    """
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"{fn}: num_frames should be a positive int, got {num_frames!r}")
    sizes, steps = list(window_sizes), list(strides)
    if not sizes:
        raise ValueError(f"{fn}: window_sizes should hold at least one size, got {window_sizes!r}")
    if len(sizes) != len(steps):
        raise ValueError(f"{fn}: window_sizes and strides should have one length, got "
                         f"{len(sizes)} sizes {sizes} and {len(steps)} strides {steps}")
    for k in sizes:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= num_frames:
            raise ValueError(f"{fn}: window_sizes should be ints in [1, num_frames={num_frames}], got {sizes}")
    for s in steps:
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise ValueError(f"{fn}: strides should be ints >= 1, got {steps}")
    return num_frames, sizes, steps


def check_gt(fn: str, gt: torch.Tensor) -> None:
    """Value check of ground truth fractions ``gt`` [B, 2]: finite, in [0, 1], start <= end; one
    host read when they hold."""
    if _compiling() or not gt.numel():
        return
    finite = torch.isfinite(gt)
    outside = finite & ((gt < 0) | (gt > 1))
    crossed = gt[:, 0] > gt[:, 1]

    def first(mask: torch.Tensor) -> int:
        return int(torch.nonzero(mask.reshape(mask.shape[0], -1).any(1))[0, 0])

    check_data(fn, extra=(((~finite).any(),
                           lambda: f"gt should be finite, got {int((~finite).sum())} NaN or infinite values "
                                   f"(first at row {first(~finite)})"),
                          (outside.any(),
                           lambda: f"gt should lie in [0, 1], got {gt[first(outside)].tolist()} at row {first(outside)}"),
                          (crossed.any(),
                           lambda: f"gt should have start <= end, got {gt[first(crossed)].tolist()} at row "
                                   f"{first(crossed)}")))


def check_batch(fn: str, video: torch.Tensor, video_lengths: torch.Tensor, query: torch.Tensor,
                query_lengths: torch.Tensor, gt: Optional[torch.Tensor] = None,
                durations: Optional[torch.Tensor] = None, finite: Sequence[str] = ("video", "query")) -> None:
    """Value checks of a batch where it enters (the loader, on the host): lengths within the
    padded sizes, finite frames and words in use (of the inputs named in ``finite``: a loader
    whose feature store checked the frames when it read them leaves "video" out), ground truth in [0, 1] with
    start <= end, finite positive durations. Metadata is checked as well."""
    check_tensor(fn, "video", video, dim=3, floating=True)
    B, Lv = video.shape[0], video.shape[1]
    check_tensor(fn, "query", query, dim=3, floating=True, shape=(B,))
    check_lengths(fn, "video_lengths", video_lengths, B, Lv, validate=False)
    check_lengths(fn, "query_lengths", query_lengths, B, query.shape[1], validate=False)
    check_length_range(fn, (("video_lengths", video_lengths, 1, Lv), ("query_lengths", query_lengths, 1, query.shape[1])))
    for name, x, lengths in (("video", video, video_lengths), ("query", query, query_lengths)):
        if name not in finite:
            continue
        used = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        bad = ~torch.isfinite(x) & used[..., None]
        if x.numel() and bool(bad.any()):
            b, t = (int(i) for i in torch.nonzero(bad)[0, :2])
            raise ValueError(f"{fn}: {name} should be finite at its {_unit(name)} in use, got "
                             f"{int(bad.sum())} NaN or infinite values (first at sample {b}, {_unit(name)[:-1]} {t})")
    if gt is not None:
        check_tensor(fn, "gt", gt, dim=2, floating=True, shape=(B, 2))
        check_gt(fn, gt)
    if durations is not None:
        check_durations(fn, durations, B)


def _unit(name: str) -> str:
    return "frames" if name == "video" else "words"


def check_like(fn: str, ref_name: str, ref: torch.Tensor, **tensors) -> None:
    """Each tensor in ``tensors`` has the shape, dtype and device of ``ref``."""
    for name, t in tensors.items():
        check_tensor(fn, name, t)
        if t.shape != ref.shape:
            raise ValueError(f"{fn}: {name} should have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
        if t.dtype != ref.dtype or t.device != ref.device:
            raise ValueError(f"{fn}: {name} should be {ref.dtype} on {ref.device} like {ref_name}, got {t.dtype} "
                             f"on {t.device}")


def _dtype_list(dtypes) -> str:
    names = [str(d).replace("torch.", "") for d in dtypes]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _check_lengths_meta(fn: str, B: int, device, **lengths) -> None:
    for name, t in lengths.items():
        check_lengths(fn, name, t, B, 0, validate=False)
        if t.device != device:
            raise ValueError(f"{fn}: {name} should be on {device}, got {t.device}")


def check_triton_device(fn: str, name: str, t: torch.Tensor) -> None:
    """``t`` lies where Triton can run kernels: CUDA, or the CPU under ``TRITON_INTERPRET=1``."""
    if not triton_runs_on(t.device.type):
        raise ValueError(f"{fn}: {name} should be on a device Triton runs on (CUDA, or the CPU with "
                         f"TRITON_INTERPRET=1 set before import), got {t.device}")


def _check_heads(fn: str, d: int, num_heads) -> None:
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 or d % num_heads:
        raise ValueError(f"{fn}: num_heads should be a positive int dividing d = {d}, got {num_heads!r}")
    if d // num_heads > MAX_HEAD_DIM:
        raise ValueError(f"{fn}: num_heads should leave heads of at most {MAX_HEAD_DIM} features, got "
                         f"num_heads = {num_heads} for d = {d} ({d // num_heads} features)")


def _check_precision(fn: str, input_precision, allow_none: bool = False) -> None:
    if input_precision is None and allow_none:
        return
    if input_precision not in INPUT_PRECISIONS:
        choices = ", ".join(repr(p) for p in INPUT_PRECISIONS) + (" or None" if allow_none else "")
        raise ValueError(f"{fn}: input_precision should be one of {choices}, got {input_precision!r}")


def check_cga_attention_args(fn: str, q, k, v, query_lengths, key_lengths, num_heads, input_precision) -> None:
    """Metadata of the ``fian_fast::cga_attention`` (and backward) op: q [B, Lq, d], k and v
    [B, Lk, d], one of :data:`~fian_fast._cga.KERNEL_DTYPES`, one device; int lengths [B];
    num_heads dividing d into heads of at most :data:`~fian_fast._cga.MAX_HEAD_DIM`;
    input_precision one of :data:`~fian_fast._cga.INPUT_PRECISIONS`."""
    check_tensor(fn, "q", q, dim=3, floating=True)
    if q.dtype not in KERNEL_DTYPES:
        raise ValueError(f"{fn}: q should be {_dtype_list(KERNEL_DTYPES)}, got {q.dtype}")
    B, _, d = q.shape
    check_tensor(fn, "k", k, dim=3, shape=(B, None, d))
    check_like(fn, "k", k, v=v)
    if k.dtype != q.dtype or k.device != q.device:
        raise ValueError(f"{fn}: k should be {q.dtype} on {q.device} like q, got {k.dtype} on {k.device}")
    _check_lengths_meta(fn, B, q.device, query_lengths=query_lengths, key_lengths=key_lengths)
    _check_heads(fn, d, num_heads)
    _check_precision(fn, input_precision)


def check_cga_gate_args(fn: str, x, info, b_gate, b_info, query_lengths) -> None:
    """Metadata of the ``fian_fast::cga_gate`` (and backward) op: x [B, Lq, d] of one of
    :data:`~fian_fast._cga.KERNEL_DTYPES`; info None or like x; b_gate, b_info [d] of x's dtype
    and device; int query_lengths [B]."""
    check_tensor(fn, "x", x, dim=3, floating=True)
    if x.dtype not in KERNEL_DTYPES:
        raise ValueError(f"{fn}: x should be {_dtype_list(KERNEL_DTYPES)}, got {x.dtype}")
    if info is not None:
        check_like(fn, "x", x, info=info)
    d = x.shape[2]
    for name, b in (("b_gate", b_gate), ("b_info", b_info)):
        check_tensor(fn, name, b, dim=1, shape=(d,))
        if b.dtype != x.dtype or b.device != x.device:
            raise ValueError(f"{fn}: {name} should be {x.dtype} on {x.device} like x, got {b.dtype} on {b.device}")
    _check_lengths_meta(fn, x.shape[0], x.device, query_lengths=query_lengths)


def check_cga_triton_args(fn: str, query, num_heads, input_precision) -> None:
    """What the fused Triton path adds to :func:`check_cga_args` (call it first): ``query`` of
    one of :data:`~fian_fast._cga.FUSED_DTYPES` on a device Triton runs on, heads of at most
    :data:`~fian_fast._cga.MAX_HEAD_DIM` features, ``input_precision`` one of
    :data:`~fian_fast._cga.INPUT_PRECISIONS` or None."""
    if query.dtype not in FUSED_DTYPES:
        raise ValueError(f"{fn}: query should be {_dtype_list(FUSED_DTYPES)}, got {query.dtype}")
    _check_heads(fn, query.shape[2], num_heads)
    _check_precision(fn, input_precision, allow_none=True)
    check_triton_device(fn, "query", query)


def check_cga_args(fn: str, query, key_value, query_lengths, key_lengths, weights, num_heads, validate: bool) -> None:
    """Arguments of :func:`fian_fast.ops.cga`: the metadata of every one (free) and, with
    ``validate``, the length ranges (one host read)."""
    check_tensor(fn, "query", query, dim=3, floating=True)
    B, Lq, d = query.shape
    check_tensor(fn, "key_value", key_value, dim=3, floating=True, shape=(B, None, d))
    Lk = key_value.shape[1]
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{fn}: num_heads should be a positive int, got {num_heads!r}")
    if d % num_heads:
        raise ValueError(f"{fn}: num_heads should divide the feature size d = {d}, got num_heads = {num_heads}")
    if not isinstance(weights, CGAWeights):
        raise ValueError(f"{fn}: weights should be a CGAWeights, got {type(weights).__name__}")
    if (weights.w_info_q is None) != (weights.w_info_v is None):
        raise ValueError(f"{fn}: weights.w_info_q and weights.w_info_v should be given together or not at all, got "
                         f"w_info_q {'None' if weights.w_info_q is None else 'a tensor'} and "
                         f"w_info_v {'None' if weights.w_info_v is None else 'a tensor'}")
    named = {name: w for name, w in weights._asdict().items() if w is not None}
    for name, w in named.items():
        if name.startswith("b_"):
            check_tensor(fn, f"weights.{name}", w, dim=1, floating=True, shape=(d,))
        else:
            check_tensor(fn, f"weights.{name}", w, dim=2, floating=True, shape=(d, d))
    for name, lengths in (("query_lengths", query_lengths), ("key_lengths", key_lengths)):
        check_tensor(fn, name, lengths, dim=1, floating=False, shape=(B,))
        if lengths.dtype == torch.bool:
            raise ValueError(f"{fn}: {name} should be an integer tensor, got {lengths.dtype}")
    floats = {"query": query, "key_value": key_value, **{f"weights.{n}": w for n, w in named.items()}}
    for name, t in floats.items():
        if t.dtype != query.dtype:
            raise ValueError(f"{fn}: {name} should have the dtype of query ({query.dtype}), got {t.dtype}")
    check_same_device(fn, **floats, query_lengths=query_lengths, key_lengths=key_lengths)
    if validate:
        check_length_range(fn, (("query_lengths", query_lengths, 0, Lq), ("key_lengths", key_lengths, 0, Lk)))
