"""Pure-PyTorch oracle of :func:`fian_fast.ops.pairwise_iou`."""
import torch


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1-D interval IoU of every ``a[b, i]`` with every ``b[b, j]``.

    Args:
        a: Tensor[B, N, 2], floating, intervals ``[start, end)`` in any one unit.
        b: Tensor[B, M, 2], same dtype and unit.
    Returns:
        Tensor[B, N, M], dtype of ``a``; 0 where both intervals are empty (union 0).
    """
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    s1, e1 = a[..., 0, None].to(acc), a[..., 1, None].to(acc)          # [B, N, 1]
    s2, e2 = b[..., None, :, 0].to(acc), b[..., None, :, 1].to(acc)    # [B, 1, M]
    inter = (torch.minimum(e1, e2) - torch.maximum(s1, s2)).clamp(min=0)
    union = (e1 - s1) + (e2 - s2) - inter
    iou = torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union))
    return iou.to(a.dtype)
