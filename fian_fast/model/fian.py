"""FIAN: Fine-grained Iterative Attention Network (Qu et al., ACM MM 2020), section 3."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import (check_all_finite, check_durations, check_fraction, check_gt, check_length_range,
                           check_lengths, check_same_device, check_tensor, check_top)
from ..config import FIANConfig
from .decode import Prediction, clipped_offsets, decode
from .encoders import QueryEncoder, VideoEncoder, zero_padding
from .integration import Fusion, fusion_width
from .iterative_attention import IterativeAttention
from .localization import build_localization
from .loss import FIANLoss, fian_loss

__all__ = ["FIAN", "FIANOutput"]

BACKENDS = ("reference", "fast")


class FIANOutput(NamedTuple):
    """logits float [B, N] (cs_j = σ(logit)); offsets float [B, N, 2] (δ̂s, δ̂e) in frames;
    candidates float32 [N, 2] frames [start, end); valid bool [B, N] (the candidate's anchor frame <
    video_lengths[b]: its start for the content head, its scoring frame for ``tgn`` / ``cmin``);
    video_lengths int64 [B]."""
    logits: torch.Tensor
    offsets: torch.Tensor
    candidates: torch.Tensor
    valid: torch.Tensor
    video_lengths: torch.Tensor


class FIAN(nn.Module):
    """The full model: representations (eq. 1-3) -> symmetrical iterative attention with CGA
    (eq. 4-10) -> video-enhanced integration (eq. 11-14) -> content-oriented localization
    (section 3.4); :meth:`loss` is eq. 15-18 and :meth:`predict` the inference of section 3.5.

    ``cfg.variant`` selects the Table 4 ablations, ``cfg.gate`` the eq. 6 weight sharing,
    ``cfg.localization`` the Table 5 heads (``content``, ``tgn``, ``cmin``), the window sizes and
    ``cfg.strides`` the Table 6 settings. ``backend="fast"`` runs the fused ops
    where they exist (``fian_fast.ops.cga`` on CUDA, the localization ops on any device) with the
    same parameters; ``"reference"`` runs pure PyTorch.
    """

    def __init__(self, cfg: FIANConfig, backend: str = "reference") -> None:
        super().__init__()
        if not isinstance(cfg, FIANConfig):
            raise ValueError(f"FIAN: cfg should be a FIANConfig, got {type(cfg).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"FIAN: backend should be one of {BACKENDS}, got {backend!r}")
        cfg.validate()
        self.cfg, self.backend = cfg, backend
        d = cfg.hidden_size
        self.query_encoder = QueryEncoder(cfg.word_dim, d, cfg.dropout)
        self.video_encoder = VideoEncoder(cfg.video_dim, d, cfg.num_heads, cfg.dropout)
        self.iterative_attention = IterativeAttention(cfg.variant, d, cfg.num_heads, cfg.ffn_size, cfg.dropout,
                                                      cfg.gate, backend)
        self.fusion = Fusion(cfg.variant, d, cfg.max_query_length, cfg.num_frames)
        self.localization = build_localization(cfg.localization, fusion_width(cfg.variant, d), d, cfg.num_frames,
                                               cfg.window_sizes, cfg.strides, cfg.dropout, backend)

    @property
    def candidates(self) -> torch.Tensor:
        """float32 [N, 2] candidate windows in frames."""
        return self.localization.candidates

    # ---------------------------------------------------------------- checks
    def _check_inputs(self, fn, video, video_lengths, query, query_lengths, validate) -> None:
        cfg = self.cfg
        check_tensor(fn, "video", video, dim=3, floating=True, shape=(None, cfg.num_frames, cfg.video_dim))
        B = video.shape[0]
        if B < 1:
            raise ValueError(f"{fn}: video should hold at least one sample, got shape {tuple(video.shape)}")
        check_tensor(fn, "query", query, dim=3, floating=True, shape=(B, None, cfg.word_dim))
        if not 1 <= query.shape[1] <= cfg.max_query_length:
            raise ValueError(f"{fn}: query should have 1 to max_query_length={cfg.max_query_length} words, "
                             f"got shape {tuple(query.shape)}")
        check_lengths(fn, "video_lengths", video_lengths, B, cfg.num_frames, validate=False)
        check_lengths(fn, "query_lengths", query_lengths, B, query.shape[1], validate=False)
        if validate:   # both ranges with one host read
            check_length_range(fn, (("video_lengths", video_lengths, 1, cfg.num_frames),
                                    ("query_lengths", query_lengths, 1, query.shape[1])))
        check_same_device(fn, video=video, video_lengths=video_lengths, query=query, query_lengths=query_lengths)

    # --------------------------------------------------------------- forward
    def forward(self, video: torch.Tensor, video_lengths: torch.Tensor, query: torch.Tensor,
                query_lengths: torch.Tensor, validate: bool = True) -> FIANOutput:
        """Score every candidate window.

        Args:
            video: float [B, num_frames, video_dim], frames ``>= video_lengths[b]`` are padding.
            video_lengths: int64 [B] in [1, num_frames].
            query: float [B, Lq, word_dim] word vectors, Lq <= max_query_length (padded to it here).
            query_lengths: int64 [B] in [1, Lq].
            validate: check the values (lengths in range, finite frames and words; two host
                reads). ``False`` when they were checked where they entered (the data loader's
                :func:`~fian_fast._validation.check_batch`): the forward then never reads the device.
                Shapes, dtypes and devices are checked either way.
        Returns:
            :class:`FIANOutput`.
        """
        return self._forward("FIAN.forward", video, video_lengths, query, query_lengths, validate)

    def _forward(self, fn, video, video_lengths, query, query_lengths, validate=True) -> FIANOutput:
        self._check_inputs(fn, video, video_lengths, query, query_lengths, validate)
        video, query = zero_padding(video, video_lengths), zero_padding(query, query_lengths)
        # padding may hold anything (it is zero now); the frames and words in use must be finite
        if validate:
            check_all_finite(fn, (("video", video), ("query", query)))
        if query.shape[1] < self.cfg.max_query_length:
            query = F.pad(query, (0, 0, 0, self.cfg.max_query_length - query.shape[1]))
        h_q = self.query_encoder(query, query_lengths)                                     # eq. 1-3
        h_v = self.video_encoder(video, video_lengths)
        reps = self.iterative_attention(h_q, h_v, query_lengths, video_lengths)             # eq. 4-10
        fused = self.fusion(reps, query_lengths, video_lengths)                            # eq. 11-14
        logits, offsets = self.localization(fused, video_lengths)                  # sec. 3.4
        candidates, anchors = self.candidates, self.localization.anchors
        valid = anchors[None, :] < video_lengths[:, None].to(anchors.dtype)
        return FIANOutput(logits, offsets, candidates, valid, video_lengths)

    # ------------------------------------------------------------------ loss
    def loss(self, out: FIANOutput, gt: torch.Tensor, validate: bool = True,
             sample_mask: Optional[torch.Tensor] = None) -> FIANLoss:
        """Eq. 15-18 for a forward's output and the ground truth ``gt`` float [B, 2] =
        (start, end) as fractions of each video's duration in [0, 1]. Returns scalars.

        ``validate=False`` skips the value checks of ``gt`` (finite, in [0, 1], start <= end; one
        host read) for a ``gt`` checked where it entered. ``sample_mask`` (bool [B], optional)
        leaves out the samples where it is False, as if they were not in the batch (the padding
        samples of a fixed-shape batch)."""
        fn = "FIAN.loss"
        if not isinstance(out, FIANOutput):
            raise ValueError(f"{fn}: out should be a FIANOutput, got {type(out).__name__}")
        B = out.logits.shape[0]
        check_tensor(fn, "gt", gt, dim=2, floating=True, shape=(B, 2))
        check_same_device(fn, gt=gt, logits=out.logits)
        valid = out.valid
        if sample_mask is not None:
            check_tensor(fn, "sample_mask", sample_mask, dim=1, shape=(B,))
            if sample_mask.dtype != torch.bool:
                raise ValueError(f"{fn}: sample_mask should be a bool tensor, got {sample_mask.dtype}")
            check_same_device(fn, sample_mask=sample_mask, logits=out.logits)
            valid = valid & sample_mask[:, None]
        if validate:
            check_gt(fn, gt)
        # a head without offsets (TGN) leaves eq. 17 out: its zero offsets have nothing to learn
        alpha = self.cfg.alpha if self.localization.regresses else 0.0
        return fian_loss(out.logits, out.offsets, out.candidates, valid, out.video_lengths, gt,
                         self.cfg.tau, alpha, self.backend)

    # ------------------------------------------------------------- inference
    def decode(self, out: FIANOutput, durations: torch.Tensor, top_n: Optional[int] = None,
               nms_threshold: Optional[float] = None, validate: bool = True) -> Prediction:
        """Top-n segments in seconds from a forward's output (section 3.5): rank by σ(logit),
        temporal NMS (IoU > ``nms_threshold`` suppressed) on the refined segments, top-n, frames
        to seconds (``frames / video_lengths[b] * durations[b]``).

        durations: float [B] seconds (> 0); ``top_n`` / ``nms_threshold`` default to the config's;
        ``validate=False`` skips the value check of ``durations`` (one host read).
        Returns :class:`Prediction` (segments [B, n, 2] s, scores [B, n], indices [B, n])."""
        return self._decode("FIAN.decode", out, durations, top_n, nms_threshold, validate)

    def _decode(self, fn, out, durations, top_n, nms_threshold, validate=True) -> Prediction:
        if not isinstance(out, FIANOutput):
            raise ValueError(f"{fn}: out should be a FIANOutput, got {type(out).__name__}")
        top_n = check_top(fn, "top_n", self.cfg.top_n if top_n is None else top_n)
        nms_threshold = self.cfg.nms_threshold if nms_threshold is None else nms_threshold
        check_fraction(fn, "nms_threshold", nms_threshold)
        check_same_device(fn, durations=durations, logits=out.logits)
        check_durations(fn, durations, out.logits.shape[0], validate)
        with torch.no_grad():
            cand, offsets = clipped_offsets(out.candidates, out.offsets, out.video_lengths)
            return decode(cand, out.logits, offsets, out.video_lengths, durations, float(nms_threshold), top_n,
                          out.valid, self.backend)

    def predict(self, video: torch.Tensor, video_lengths: torch.Tensor, query: torch.Tensor,
                query_lengths: torch.Tensor, durations: torch.Tensor, top_n: Optional[int] = None,
                nms_threshold: Optional[float] = None, validate: bool = True) -> Prediction:
        """forward + :meth:`decode` without gradients. The module's mode is left as it is: call
        ``model.eval()`` first to switch dropout off. ``validate`` as in :meth:`forward`."""
        with torch.no_grad():
            out = self._forward("FIAN.predict", video, video_lengths, query, query_lengths, validate)
        return self._decode("FIAN.predict", out, durations, top_n, nms_threshold, validate)
