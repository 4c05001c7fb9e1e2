"""fian_fast.reference.window_candidates (section 3.4: the multi-scale sliding windows), the one
implementation of the candidates: counts of the paper's presets, order, edge shapes, bad inputs."""
import pytest
import torch

from fian_fast.config import PRESETS, FIANConfig
from fian_fast.reference import window_candidates


def by_hand(T, sizes, strides):
    return torch.tensor([[start, start + k] for k, s in zip(sizes, strides) for start in range(0, T - k + 1, s)],
                        dtype=torch.float32).reshape(-1, 2)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets(preset):
    cfg = FIANConfig.preset(preset)
    out = window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.shape == (cfg.num_candidates, 2)
    assert torch.equal(out, by_hand(cfg.num_frames, cfg.window_sizes, cfg.strides))


def test_tacos_has_347_candidates():
    cfg = FIANConfig.preset("tacos")
    assert window_candidates(200, cfg.window_sizes, cfg.strides).shape[0] == 347


def test_order_scale_then_start():
    out = window_candidates(10, [4, 3], [3, 5])
    expected = torch.tensor([[0, 4], [3, 7], [6, 10], [0, 3], [5, 8]], dtype=torch.float32)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("T,sizes,strides", [(1, [1], [1]), (17, [17], [5]), (113, [7, 113, 2], [3, 1, 50])],
                         ids=["T1", "T17-full", "T113-mixed"])
def test_edge_shapes(T, sizes, strides):
    assert torch.equal(window_candidates(T, sizes, strides), by_hand(T, sizes, strides))


@pytest.mark.parametrize("args,match", [
    ((10, [11], [1]), r"window_candidates: window_sizes should be ints in \[1, num_frames=10\], got \[11\]"),
    ((10, [0], [1]), "window_sizes"),
    ((10, [4], [0]), r"window_candidates: strides should be ints >= 1, got \[0\]"),
    ((10, [4, 5], [1]), "one length"),
    ((10, [], []), "at least one"),
    ((0, [1], [1]), "num_frames should be a positive int, got 0"),
    ((10.0, [4], [1]), "num_frames"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        window_candidates(*args)
