"""fian_fast.ops.window_candidates against its reference and the paper's presets."""
import pytest
import torch

from fian_fast import reference
from fian_fast._extension import has_ops
from fian_fast.config import PRESETS, FIANConfig
from fian_fast.ops import window_candidates

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_match_reference(preset):
    cfg = FIANConfig.preset(preset)
    out = window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.shape == (cfg.num_candidates, 2)
    torch.testing.assert_close(out, reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides),
                               rtol=0, atol=0)


def test_tacos_has_347_candidates():
    cfg = FIANConfig.preset("tacos")
    assert window_candidates(200, cfg.window_sizes, cfg.strides).shape[0] == 347


def test_order_scale_then_start():
    out = window_candidates(10, [4, 3], [3, 5])
    expected = torch.tensor([[0, 4], [3, 7], [6, 10], [0, 3], [5, 8]], dtype=torch.float32)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("T,sizes,strides", [(1, [1], [1]), (17, [17], [5]), (113, [7, 113, 2], [3, 1, 50])],
                         ids=["T1", "T17-full", "T113-mixed"])
def test_edge_shapes(T, sizes, strides):
    torch.testing.assert_close(window_candidates(T, sizes, strides), reference.window_candidates(T, sizes, strides),
                               rtol=0, atol=0)


@pytest.mark.parametrize("args,match", [
    ((10, [11], [1]), "window_sizes"),
    ((10, [0], [1]), "window_sizes"),
    ((10, [4], [0]), "strides"),
    ((10, [4, 5], [1]), "one length"),
    ((10, [], []), "at least one"),
    ((0, [1], [1]), "num_frames"),
    ((10.0, [4], [1]), "num_frames"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        window_candidates(*args)


def test_opcheck():
    torch.library.opcheck(torch.ops.fian_fast.window_candidates.default, (200, [8, 16], [1, 2]))
