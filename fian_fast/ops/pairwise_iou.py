"""``fian_fast.ops.pairwise_iou``: 1-D interval IoU, C++ (CPU) and CUDA kernels.

The model does not call it (its labels are :func:`iou_label`, its NMS :func:`temporal_nms`). It is
public for evaluation code: the IoU of every predicted moment against every ground-truth window
of a sample, batched on the tensors' device, which the multi-window protocols (QVHighlights,
Moment-DETR mAP) need and per-query NumPy loops compute slowly."""
import torch

from .._extension import load_ops, register_fake
from .._validation import check_data, check_same_device, check_tensor

__all__ = ["pairwise_iou"]


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """IoU of every interval of ``a`` with every interval of ``b``, sample by sample.

    Args:
        a: Tensor[B, N, 2], float16/bfloat16/float32/float64, intervals ``[start, end)``.
        b: Tensor[B, M, 2], same dtype, device and unit as ``a``.
        validate: check that no value is NaN (one host read); ``False`` skips it.
    Returns:
        Tensor[B, N, M] of IoU in [0, 1], dtype of ``a`` (computed in float32 for half types).
    """
    fn = "pairwise_iou"
    check_tensor(fn, "a", a, dim=3, last=2, floating=True)
    check_tensor(fn, "b", b, dim=3, last=2, floating=True, shape=(a.shape[0],))
    if a.dtype != b.dtype:
        raise ValueError(f"{fn}: a and b should have one dtype, got {a.dtype} and {b.dtype}")
    check_same_device(fn, a=a, b=b)
    if validate:
        check_data(fn, no_nan=(("a", a), ("b", b)))
    load_ops()
    return torch.ops.fian_fast.pairwise_iou(a, b)


@register_fake("fian_fast::pairwise_iou")
def _pairwise_iou_fake(a, b):
    return a.new_empty((a.shape[0], a.shape[1], b.shape[1]))
