"""Point-feature anchor localization of the paper's Table 5: FIAN-TGN and FIAN-CMIN.

Section 3.4 argues against *anchor-based* localization, where "the confidence scores of different
window scales are predicted based on the same point feature", and Table 5 measures it by putting
the localization components of TGN (Chen et al., EMNLP 2018) and CMIN (Zhang et al., SIGIR 2019)
in place of FIAN's content-oriented module (TACoS, R@1 IoU 0.1/0.3/0.5: FIAN-Full 39.55 / 33.87 /
28.58, FIAN-TGN 34.82 / 23.37 / 20.05, FIAN-CMIN 35.56 / 27.46 / 22.39). Both heads here anchor K
candidates at every frame ``t`` of the fixed-length sequence and score all K from the one feature
``f_t`` of ``M̂ = BiGRU(M)``; they never look at the frames a candidate covers.

Shared by both heads (and where they depart from the originals in the same way):

* Candidate order is anchor-major: candidate ``n = t * K + k`` is anchor ``k`` of frame ``t``
  (CMIN's flattening of its ``[T, K]`` score map). ``candidates`` is float32 [T*K, 2] in frames
  ``[start, end)``; ``anchors`` float32 [T*K] holds ``t``, and a candidate is valid for a sample
  of ``L`` frames iff ``t < L`` (its score then comes from a real frame, never from padding).
* Candidates reaching outside ``[0, L]`` are clipped to it, as FIAN's own windows are, by the
  same :func:`~fian_fast.model.loss.clip_candidates` in the loss and in decoding. CMIN instead
  masks every anchor that leaves its sequence (and needs no clipping, its videos always fill
  the sequence); clipping keeps a video shorter than the widest anchor covered.
* The feature at ``t`` comes from the BiGRU that opens FIAN's localization module (section 3.4),
  so the comparison changes the scoring strategy only.
* Training uses FIAN's loss (eq. 15-18: soft IoU targets, positives and negatives averaged
  apart, smooth-L1 on the positives with ``IoU > τ``), computed by the same fused ``iou_label``;
  inference is FIAN's (rank, temporal NMS, top-n) through the same fused ``decode``.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from ..config import CMIN_WIDTHS, TGN_DENSE_LENGTHS
from .encoders import BiGRU

__all__ = ["CMIN_WIDTHS", "TGN_DENSE_LENGTHS", "tgn_candidates", "cmin_candidates", "TGNHead", "CMINHead"]


def _check_widths(fn: str, num_frames: int, widths: Sequence[int]) -> Tuple[int, ...]:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"{fn}: num_frames should be a positive int, got {num_frames!r}")
    widths = tuple(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= num_frames for w in widths):
        raise ValueError(f"{fn}: widths should be one or more ints in [1, num_frames={num_frames}], got {widths!r}")
    return widths


def _layout(num_frames: int, widths: Sequence[int], start_of) -> Tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(num_frames, dtype=torch.float64)[:, None]             # [T, 1]
    w = torch.tensor(widths, dtype=torch.float64)[None, :]                  # [1, K]
    start = start_of(t, w)
    cand = torch.stack([start, start + w], dim=-1).reshape(-1, 2)           # [T*K, 2], anchor-major
    anchors = t.expand(-1, w.shape[1]).reshape(-1)
    return cand.to(torch.float32), anchors.to(torch.float32)


def tgn_candidates(num_frames: int, lengths: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """TGN's candidates: at every frame ``t``, the K segments of ``lengths[k]`` frames that
    **end** with frame ``t``: ``[t + 1 - lengths[k], t + 1)``.

    Returns ``(candidates float32 [T*K, 2] frames, anchors float32 [T*K] = t)``, anchor-major.
    Starts below 0 are kept (clipped to the video by the loss and decoding).
    """
    lengths = _check_widths("tgn_candidates", num_frames, lengths)
    return _layout(num_frames, lengths, lambda t, w: t + 1 - w)


def cmin_candidates(num_frames: int, widths: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """CMIN's candidates: at every frame ``t``, the K segments of ``widths[k]`` frames
    **centred** on frame ``t``: ``[t + 1/2 - w/2, t + 1/2 + w/2)``.

    CMIN writes them on inclusive frame indices, ``[t - (w - 1)/2, t + (w - 1)/2]``; frame ``i``
    is ``[i, i + 1)`` here, so that is the same segment (half-frame ends for even widths too).
    Returns ``(candidates float32 [T*K, 2] frames, anchors float32 [T*K] = t)``, anchor-major.
    """
    widths = _check_widths("cmin_candidates", num_frames, widths)
    return _layout(num_frames, widths, lambda t, w: t + 0.5 - w / 2)


class _PointAnchorHead(nn.Module):
    """``M̂ = BiGRU(M)`` then K candidates per frame scored from ``f_t`` alone."""

    #: whether the head predicts boundary offsets (eq. 17 is trained only then)
    regresses = True

    def __init__(self, input_size: int, hidden_size: int, num_frames: int, widths: Sequence[int],
                 dropout: float, backend: str = "reference") -> None:
        super().__init__()
        self.backend = backend
        self.widths = tuple(widths)
        self.dropout = nn.Dropout(dropout)
        self.gru = BiGRU(input_size, hidden_size)
        candidates, anchors = self._candidates(num_frames, self.widths)
        self.register_buffer("candidates", candidates, persistent=False)
        self.register_buffer("anchors", anchors, persistent=False)

    @staticmethod
    def _candidates(num_frames, widths):
        raise NotImplementedError

    def _features(self, fused: torch.Tensor, video_lengths: torch.Tensor) -> torch.Tensor:
        return self.gru(self.dropout(fused), video_lengths)


class TGNHead(_PointAnchorHead):
    """FIAN-TGN: TGN's grounder on FIAN's fused features.

    TGN's grounder reads the interactor's state ``h_t`` at every step ``t`` and gives the K
    candidates ending at ``t`` (lengths ``window_sizes``, :func:`tgn_candidates`) their
    confidences ``σ(W h_t + b)``: one linear layer, K outputs, a sigmoid. Here ``h_t`` is the
    BiGRU feature ``f_t`` of M̂ and the layer is ``Linear(hidden_size, K)``; ``offsets`` are
    exactly zero (TGN does not regress boundaries, so a prediction is a candidate clipped to the
    video), and the model leaves eq. 17 out of its loss for this head (the trainer's step records
    then carry no ``boundary``).

    What it can predict: without regression a prediction is one of the K anchors, so its length
    is one of ``window_sizes`` (or shorter where the video's edge clips it). The presets' window
    sizes are FIAN's few scales — TACoS's (8, 16, 32, 64) give four lengths — where TGN's
    reference scores dense lengths, every one from 1 to 32 feature steps on TACoS (K = 32).
    ``window_sizes="dense"`` (``--window-sizes dense``) takes that set,
    :data:`~fian_fast.config.TGN_DENSE_LENGTHS`, in frames of the fixed-length sequence: every
    length up to 32 frames and none longer. The default keeps the preset's sizes.

    Departures from TGN: TGN trains its scores with a binary cross-entropy whose positive and
    negative terms are weighted per anchor length (by how rare positives and negatives of that
    length are), against binary labels (1 when a candidate's temporal IoU with the ground truth
    passes a threshold); here FIAN's eq. 15-16 replaces it (soft IoU targets ``o_j``, positives
    ``o_j > τ`` and negatives each averaged over the whole batch). TGN's
    ``h_t`` comes from a forward i-LSTM and sees frames up to ``t`` only; ``f_t`` here comes from
    a BiGRU and sees the whole video.

    forward: fused M [B, T, C_M], video_lengths int64 [B] -> (logits [B, T*K], offsets
    [B, T*K, 2] zeros), candidate ``t * K + k``.
    """

    regresses = False

    def __init__(self, input_size: int, hidden_size: int, num_frames: int, widths: Sequence[int],
                 dropout: float, backend: str = "reference") -> None:
        super().__init__(input_size, hidden_size, num_frames, widths, dropout, backend)
        self.score = nn.Linear(hidden_size, len(self.widths))

    _candidates = staticmethod(tgn_candidates)

    def forward(self, fused: torch.Tensor, video_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = self.score(self._features(fused, video_lengths)).flatten(1)   # [B, T*K]
        return logits, logits.new_zeros(logits.shape + (2,))


class CMINHead(_PointAnchorHead):
    """FIAN-CMIN: CMIN's localization on FIAN's fused features.

    CMIN runs a BiGRU over its fused sequence and applies, at every frame ``t``, a 1×1
    convolution with K outputs (the confidences, through a sigmoid) and another with 2K outputs
    (the start and end offsets of each anchor), for K candidates centred on ``t`` with widths
    ``window_sizes`` (:func:`cmin_candidates`; its public code uses (6, 18, 32) for TACoS and
    (16, 32, 64, 96, 128, 160, 192) for ActivityNet, :data:`~fian_fast.config.CMIN_WIDTHS`, which
    ``FIANConfig.preset`` takes for ``cmin`` when no ``window_sizes`` is given). Here both
    convolutions are one ``Linear(hidden_size, 3K)`` applied per frame (a 1×1 convolution is a
    per-frame linear map): outputs ``[0, K)`` are the logits, ``[K, 3K)`` the offsets
    ``(δs_k, δe_k)`` of anchor k in frames, as CMIN lays out its ``2K`` regression channels.

    Departures from CMIN: CMIN's scores are trained with binary cross-entropy against IoU labels
    divided by the sample's best IoU (those below 0.3 of it set to 0), and its regression is a
    smooth-L1 loss (weight 1e-3) on the single best-labelled anchor's refined segment
    ``anchor + offsets`` against the ground truth; here FIAN's eq. 15-18 replaces both (soft IoU
    targets, positives and negatives averaged apart, smooth-L1 on the offsets of every positive
    ``o_j > τ``, weight α). CMIN masks anchors that leave its sequence; here they are clipped to
    the video (module docstring).

    forward: fused M [B, T, C_M], video_lengths int64 [B] -> (logits [B, T*K], offsets
    [B, T*K, 2] frames), candidate ``t * K + k``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_frames: int, widths: Sequence[int],
                 dropout: float, backend: str = "reference") -> None:
        super().__init__(input_size, hidden_size, num_frames, widths, dropout, backend)
        self.conv = nn.Linear(hidden_size, 3 * len(self.widths))

    _candidates = staticmethod(cmin_candidates)

    def forward(self, fused: torch.Tensor, video_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(self._features(fused, video_lengths))                  # [B, T, 3K]
        B, T, K = out.shape[0], out.shape[1], len(self.widths)
        return out[..., :K].reshape(B, T * K), out[..., K:].reshape(B, T * K, 2)
