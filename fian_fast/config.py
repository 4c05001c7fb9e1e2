"""Model and training configuration, with the paper's presets (section 4.3).

``FIANConfig.preset(name)`` returns the settings of section 4.3 for ``charades``, ``tacos`` and
``activitynet``, and a small ``synthetic`` preset for CPU work and tests. Ablation variants of
Table 4, the localization strategies of Table 5 and the stride choices of Table 6 are fields of
the same config.

Choices the paper leaves open, made here and documented:

* ``hidden_size`` is the width ``d_h`` shared by every module. "Hidden dimension of all
  bi-directional GRUs is set as 512" is read as the *concatenated* output of each BiGRU being 512
  (256 per direction), so that ``d_h = 512`` matches the 512-d video projection and
  ``d_k = d_h / n`` (eq. 4) is 64 with 8 heads.
* ``ffn_size`` (eq. 7) and ``max_query_length`` (``n_q`` of eq. 11) are not given in the paper.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["FIANConfig", "VARIANTS", "GATES", "LOCALIZATIONS", "PRESETS", "CMIN_WIDTHS", "TGN_DENSE_LENGTHS"]

#: Table 4 ablations; ``full`` is the paper's model.
VARIANTS = ("full", "soft", "cma", "vq", "vqma", "qvma", "concat", "matrix")
#: Eq. 6: ``shared`` keeps W_q^g = W_q^i and W_v^g = W_v^i (the paper's setting),
#: ``separate`` learns the gate and information projections apart.
GATES = ("shared", "separate")
#: Table 5: ``content`` is the paper's content-oriented localization (section 3.4, FIAN-Full);
#: ``tgn`` and ``cmin`` put the point-feature anchor heads of TGN and CMIN in its place
#: (FIAN-TGN, FIAN-CMIN; :mod:`fian_fast.model.anchor_localization`).
LOCALIZATIONS = ("content", "tgn", "cmin")
#: CMIN's anchor widths (frames) in its public code, per dataset. :meth:`FIANConfig.preset` gives
#: them to ``localization="cmin"`` when no ``window_sizes`` is given (other presets keep theirs).
CMIN_WIDTHS = {"tacos": (6, 18, 32), "activitynet": (16, 32, 64, 96, 128, 160, 192)}
#: TGN's dense anchor lengths: every length from 1 to 32 (TGN's K = 32 anchors on TACoS, lengths
#: 1..32 feature steps), here in frames of the fixed-length sequence; ``window_sizes="dense"``.
TGN_DENSE_LENGTHS = tuple(range(1, 33))


@dataclass
class FIANConfig:
    """Every setting of a FIAN model and its training.

    Lengths are in feature frames of the fixed-length sequence (``num_frames``) unless a name
    says otherwise.
    """

    name: str = "custom"
    # inputs
    video_dim: int = 4096
    word_dim: int = 300
    num_frames: int = 200
    max_query_length: int = 30
    # widths
    hidden_size: int = 512
    num_heads: int = 8
    ffn_size: int = 1024
    dropout: float = 0.1
    # model switches
    variant: str = "full"
    gate: str = "shared"
    # localization (section 3.4; Tables 5 and 6). For ``tgn`` and ``cmin`` the window sizes are the
    # K anchor lengths (TGN) or widths (CMIN) placed at every frame; the strides do not apply.
    # ``window_sizes="dense"`` stands for TGN_DENSE_LENGTHS.
    localization: str = "content"
    window_sizes: tuple = (8, 16, 32, 64)
    stride_ratio: float = 0.125
    fixed_stride: Optional[int] = None
    # loss (eq. 15-18)
    tau: float = 0.55
    alpha: float = 0.005
    # inference
    nms_threshold: float = 0.5
    top_n: int = 5
    # optimisation (section 4.3)
    lr: float = 4e-4
    batch_size: int = 64
    epochs: int = 30
    grad_clip: float = 5.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.window_sizes, str):
            if self.window_sizes != "dense":
                raise ValueError(f"FIANConfig.window_sizes: expected frame counts or 'dense', "
                                 f"got {self.window_sizes!r}")
            self.window_sizes = TGN_DENSE_LENGTHS
        self.window_sizes = tuple(int(w) for w in self.window_sizes)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def bad(name: str, value: Any, expected: str) -> None:
            raise ValueError(f"FIANConfig.{name}: expected {expected}, got {value!r}")

        for name in ("video_dim", "word_dim", "num_frames", "max_query_length", "hidden_size",
                     "num_heads", "ffn_size", "batch_size", "epochs", "top_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, value, "a positive int")
        if self.hidden_size % self.num_heads:
            bad("num_heads", self.num_heads, f"a divisor of hidden_size={self.hidden_size}")
        if self.hidden_size % 2:
            bad("hidden_size", self.hidden_size, "an even number (two GRU directions)")
        if self.variant not in VARIANTS:
            bad("variant", self.variant, f"one of {VARIANTS}")
        if self.gate not in GATES:
            bad("gate", self.gate, f"one of {GATES}")
        if self.localization not in LOCALIZATIONS:
            bad("localization", self.localization, f"one of {LOCALIZATIONS}")
        if not self.window_sizes:
            bad("window_sizes", self.window_sizes, "at least one window size")
        for w in self.window_sizes:
            if w < 1 or w > self.num_frames:
                bad("window_sizes", self.window_sizes,
                    f"sizes in [1, num_frames={self.num_frames}]")
        if self.fixed_stride is None:
            if not (0.0 < self.stride_ratio <= 1.0):
                bad("stride_ratio", self.stride_ratio, "a fraction in (0, 1]")
        elif not isinstance(self.fixed_stride, int) or self.fixed_stride < 1:
            bad("fixed_stride", self.fixed_stride, "None or a positive int")
        for name in ("tau", "nms_threshold", "dropout"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0) or math.isnan(value):
                bad(name, value, "a value in [0, 1]")
        for name in ("alpha", "lr", "grad_clip", "weight_decay"):
            value = getattr(self, name)
            if not (value >= 0.0) or math.isinf(value):
                bad(name, value, "a finite value >= 0")

    # ------------------------------------------------------------ derived values
    @property
    def strides(self) -> tuple:
        """Per-scale stride θs in frames: ``fixed_stride`` if set (Table 6's "1"), else
        ``max(1, round(stride_ratio * θk))`` (section 4.3: 0.25 / 0.125 / 0.125 of θk)."""
        if self.fixed_stride is not None:
            return tuple(self.fixed_stride for _ in self.window_sizes)
        return tuple(max(1, int(round(self.stride_ratio * w))) for w in self.window_sizes)

    @property
    def num_candidates(self) -> int:
        """Number of candidate windows over the full ``num_frames``: all scales' sliding windows for
        ``content``; ``num_frames * len(window_sizes)`` anchors for ``tgn`` and ``cmin``."""
        if self.localization != "content":
            return self.num_frames * len(self.window_sizes)
        return sum((self.num_frames - k) // s + 1 for k, s in zip(self.window_sizes, self.strides))

    @property
    def head_dim(self) -> int:
        """d_k = d_h / n (eq. 4)."""
        return self.hidden_size // self.num_heads

    # ---------------------------------------------------------------- factories
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "FIANConfig":
        """The paper's settings for ``charades``, ``tacos`` or ``activitynet`` (section 4.3),
        or the small ``synthetic`` preset; keyword arguments override single fields. With
        ``localization="cmin"`` and no ``window_sizes``, CMIN's own widths for the dataset
        (:data:`CMIN_WIDTHS`) replace the preset's where CMIN has them."""
        if name not in PRESETS:
            raise ValueError(f"FIANConfig.preset: name must be one of {sorted(PRESETS)}, got {name!r}")
        values = dict(PRESETS[name])
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"FIANConfig.preset: unknown fields {sorted(unknown)}")
        values.update(overrides)
        if values.get("localization") == "cmin" and "window_sizes" not in overrides and name in CMIN_WIDTHS:
            values["window_sizes"] = CMIN_WIDTHS[name]
        return cls(name=name, **values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["window_sizes"] = list(self.window_sizes)
        return d

    @classmethod
    def from_dict(cls, values: dict) -> "FIANConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"FIANConfig.from_dict: unknown fields {sorted(unknown)}")
        return cls(**values)


PRESETS: dict = {
    # Charades-STA: I3D features (1024-d), 64 frames, windows [16,24,32,40], stride θk/8,
    # α = 0.005, 4 heads, Adam 4e-4, batch 64.
    "charades": dict(video_dim=1024, num_frames=64, max_query_length=20, num_heads=4,
                     window_sizes=(16, 24, 32, 40), stride_ratio=0.125, alpha=0.005,
                     lr=4e-4, batch_size=64),
    # TACoS: C3D features (4096-d), 200 frames, windows [8,16,32,64], stride θk/8, α = 0.005,
    # 8 heads, Adam 4e-4, batch 64.
    "tacos": dict(video_dim=4096, num_frames=200, max_query_length=30, num_heads=8,
                  window_sizes=(8, 16, 32, 64), stride_ratio=0.125, alpha=0.005,
                  lr=4e-4, batch_size=64),
    # ActivityNet Captions: C3D-PCA features (500-d), 200 frames, windows
    # [16,32,64,96,128,160,192], stride θk/4, α = 0.001, 8 heads, Adam 8e-4, batch 128.
    "activitynet": dict(video_dim=500, num_frames=200, max_query_length=30, num_heads=8,
                        window_sizes=(16, 32, 64, 96, 128, 160, 192), stride_ratio=0.25,
                        alpha=0.001, lr=8e-4, batch_size=128),
    # Small CPU-sized model for the built-in synthetic dataset and the tests.
    "synthetic": dict(video_dim=32, word_dim=50, num_frames=32, max_query_length=12,
                      hidden_size=64, num_heads=4, ffn_size=128, dropout=0.0,
                      window_sizes=(4, 8, 12, 16), stride_ratio=0.25, alpha=0.005,
                      lr=1e-3, batch_size=32, epochs=3),
}
