"""Pure-PyTorch oracles: one function per op of :mod:`fian_fast.ops`, same name and signature,
written to read like the paper and computing in float32 (float64 where given float64)."""
from .cga import cga, cross_modal_attention, information_gate
from .pairwise_iou import pairwise_iou

__all__ = ["pairwise_iou", "cga", "cross_modal_attention", "information_gate"]
