"""Fused operators of fian_fast, one module per op.

Each op validates its arguments, dispatches to the compiled kernels of ``fian_fast._C`` (CPU and
CUDA), to Triton (``cga`` on CUDA) or to torch's own RNN kernels behind one opaque op (``bigru``),
and has a pure-PyTorch twin of the same name and signature
in :mod:`fian_fast.reference`.
"""
from .cga import CGAWeights, cga
from .pairwise_iou import pairwise_iou
from .window_score import window_score
from .iou_label import iou_label
from .temporal_nms import temporal_nms
from .decode import decode
from .bigru import BiGRUWeights, bigru
from .relu_dropout import relu_dropout

__all__ = ["CGAWeights", "cga", "pairwise_iou", "window_score", "iou_label", "temporal_nms", "decode", "BiGRUWeights", "bigru", "relu_dropout"]
