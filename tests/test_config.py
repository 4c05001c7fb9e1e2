"""FIANConfig: the paper's presets (section 4.3), Table 6 strides, validation, serialisation."""
import json

import pytest

from fian_fast.config import CMIN_WIDTHS, LOCALIZATIONS, PRESETS, TGN_DENSE_LENGTHS, VARIANTS, FIANConfig
from fian_fast.reference import window_candidates

# section 4.3, per dataset
PAPER = {
    "charades": dict(video_dim=1024, num_frames=64, window_sizes=(16, 24, 32, 40), strides=(2, 3, 4, 5),
                     alpha=0.005, num_heads=4, lr=4e-4, batch_size=64),
    "tacos": dict(video_dim=4096, num_frames=200, window_sizes=(8, 16, 32, 64), strides=(1, 2, 4, 8),
                  alpha=0.005, num_heads=8, lr=4e-4, batch_size=64),
    "activitynet": dict(video_dim=500, num_frames=200, window_sizes=(16, 32, 64, 96, 128, 160, 192),
                        strides=(4, 8, 16, 24, 32, 40, 48), alpha=0.001, num_heads=8, lr=8e-4, batch_size=128),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_have_the_paper_settings(name):
    cfg = FIANConfig.preset(name)
    for key, want in PAPER[name].items():
        assert getattr(cfg, key) == want, key
    assert cfg.tau == 0.55
    assert cfg.hidden_size == 512                      # BiGRU hidden 512, video projected to 512
    assert cfg.head_dim == 512 // cfg.num_heads
    assert cfg.variant == "full" and cfg.gate == "shared" and cfg.localization == "content"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_num_candidates_matches_the_windows(name):
    cfg = FIANConfig.preset(name)
    assert cfg.num_candidates == window_candidates(cfg.num_frames, list(cfg.window_sizes), list(cfg.strides)).shape[0]


@pytest.mark.parametrize("overrides, strides", [
    (dict(fixed_stride=1), (1, 1, 1, 1)),
    (dict(stride_ratio=0.125), (1, 2, 4, 8)),
    (dict(stride_ratio=0.25), (2, 4, 8, 16)),
    (dict(stride_ratio=0.5), (4, 8, 16, 32)),
], ids=["stride1", "ratio0.125", "ratio0.25", "ratio0.5"])
def test_table6_strides(overrides, strides):
    assert FIANConfig.preset("tacos", **overrides).strides == strides


@pytest.mark.parametrize("overrides, field", [
    (dict(variant="nope"), "variant"),
    (dict(gate="tied"), "gate"),
    (dict(localization="2dtan"), "localization"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(num_heads=3), "num_heads"),
    (dict(window_sizes=()), "window_sizes"),
    (dict(window_sizes=(0, 4)), "window_sizes"),
    (dict(window_sizes=(4, 33)), "window_sizes"),
    (dict(stride_ratio=0.0), "stride_ratio"),
    (dict(fixed_stride=0), "fixed_stride"),
    (dict(tau=1.5), "tau"),
    (dict(dropout=-0.1), "dropout"),
    (dict(nms_threshold=float("nan")), "nms_threshold"),
    (dict(alpha=-1.0), "alpha"),
    (dict(lr=float("inf")), "lr"),
    (dict(batch_size=True), "batch_size"),
])
def test_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"FIANConfig.{field}"):
        FIANConfig.preset("synthetic", **overrides)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="name"):
        FIANConfig.preset("kinetics")
    with pytest.raises(ValueError, match="unknown fields"):
        FIANConfig.preset("tacos", hiden_size=3)
    with pytest.raises(ValueError, match="unknown fields"):
        FIANConfig.from_dict({**FIANConfig().to_dict(), "extra": 1})


@pytest.mark.parametrize("name", sorted(PRESETS) + ["custom"])
def test_dict_round_trip(name):
    cfg = FIANConfig.preset(name, fixed_stride=2) if name != "custom" else FIANConfig(variant="matrix", gate="separate")
    d = json.loads(json.dumps(cfg.to_dict()))
    back = FIANConfig.from_dict(d)
    assert back == cfg
    assert back.strides == cfg.strides and back.num_candidates == cfg.num_candidates


def test_every_variant_is_a_valid_config():
    for v in VARIANTS:
        assert FIANConfig.preset("synthetic", variant=v).variant == v


def test_table5_localizations():
    assert LOCALIZATIONS == ("content", "tgn", "cmin")
    assert all(FIANConfig.preset(name).localization == "content" for name in PRESETS)
    assert FIANConfig().localization == "content"
    # point-feature anchors: K per frame, whatever the strides
    for loc in ("tgn", "cmin"):
        cfg = FIANConfig.preset("tacos", localization=loc, window_sizes=(6, 18, 32))
        assert cfg.num_candidates == 200 * 3
        assert FIANConfig.preset("tacos", localization=loc, window_sizes=(6, 18, 32, 64),
                                 fixed_stride=1).num_candidates == 200 * 4
        back = FIANConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg and back.localization == loc


def test_cmin_takes_its_own_widths_unless_window_sizes_are_given():
    assert FIANConfig.preset("tacos", localization="cmin").window_sizes == CMIN_WIDTHS["tacos"] == (6, 18, 32)
    assert FIANConfig.preset("activitynet", localization="cmin").window_sizes == (16, 32, 64, 96, 128, 160, 192)
    # CMIN has no widths for Charades-STA or the synthetic data: the preset's stay
    for name in ("charades", "synthetic"):
        assert FIANConfig.preset(name, localization="cmin").window_sizes == FIANConfig.preset(name).window_sizes
    assert FIANConfig.preset("tacos", localization="cmin", window_sizes=(8, 16)).window_sizes == (8, 16)
    for loc in ("content", "tgn"):
        assert FIANConfig.preset("tacos", localization=loc).window_sizes == (8, 16, 32, 64)


def test_dense_window_sizes_are_tgn_lengths():
    cfg = FIANConfig.preset("tacos", localization="tgn", window_sizes="dense")
    assert cfg.window_sizes == TGN_DENSE_LENGTHS == tuple(range(1, 33))
    assert cfg.num_candidates == 200 * 32
    back = FIANConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.to_dict()["window_sizes"] == list(range(1, 33))
    with pytest.raises(ValueError, match=r"FIANConfig.window_sizes: expected frame counts or 'dense', got 'wide'"):
        FIANConfig(window_sizes="wide")
    with pytest.raises(ValueError, match=r"window_sizes: expected sizes in \[1, num_frames=24\]"):
        FIANConfig(num_frames=24, window_sizes="dense")
