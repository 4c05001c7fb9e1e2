"""Pure-PyTorch oracles: one function per op of :mod:`fian_fast.ops`, same name and signature,
written to read like the paper and computing in float32 (float64 where given float64)."""
from .cga import CGAWeights, cga, cross_modal_attention, information_gate
from .pairwise_iou import pairwise_iou
from .window_candidates import window_candidates
from .window_score import window_score
from .iou_label import iou_label
from .temporal_nms import temporal_nms
from .decode import decode
from .bigru import BiGRUWeights, bigru
from .relu_dropout import relu_dropout

__all__ = ["pairwise_iou", "window_candidates", "window_score", "iou_label", "temporal_nms", "decode", "cga", "CGAWeights", "cross_modal_attention", "information_gate", "bigru", "BiGRUWeights", "relu_dropout"]
