"""Loss of section 3.5 (eq. 15-18) against hand-computed values."""
import math

import pytest
import torch

from fian_fast.config import FIANConfig
from fian_fast.model import FIAN
from fian_fast.model.loss import alignment_loss, boundary_loss, clip_candidates, fian_loss

CANDIDATES = torch.tensor([[0.0, 4.0], [2.0, 6.0], [4.0, 8.0], [8.0, 12.0]])
LENGTHS = torch.tensor([10, 6])
VALID = torch.tensor([[True, True, True, True], [True, True, True, False]])
GT = torch.tensor([[0.2, 0.6], [0.0, 0.5]])        # frames: (2, 6) of 10 and (0, 3) of 6
LOGITS = torch.tensor([[0.5, 2.0, -1.0, -3.0], [1.5, 0.0, -2.0, 10.0]])
OFFSETS = torch.tensor([[[9.0, 9.0], [0.5, -2.0], [7.0, 7.0], [5.0, 5.0]],
                        [[0.2, -0.4], [3.0, 3.0], [4.0, 4.0], [100.0, 100.0]]])


def bce(x, o):
    """-L_j of eq. 15 written out: -(o log σ(x) + (1 - o) log(1 - σ(x)))."""
    cs = 1.0 / (1.0 + math.exp(-x))
    return -(o * math.log(cs) + (1.0 - o) * math.log(1.0 - cs))


def smooth_l1(x):
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


# By hand: sample 0, gt (2, 6), windows (0,4) (2,6) (4,8) (8,10 clipped): IoU 1/3, 1, 1/3, 0.
#          sample 1, gt (0, 3), windows (0,4) (2,6) (4,6 clipped), (8,12) invalid: IoU 3/4, 1/6, 0.
# τ = 0.55 -> positives: (0, 1) and (1, 0).
POS = [(2.0, 1.0), (1.5, 0.75)]
NEG = [(0.5, 1 / 3), (-1.0, 1 / 3), (-3.0, 0.0), (0.0, 1 / 6), (-2.0, 0.0)]
ALIGN = sum(bce(x, o) for x, o in POS) / 2 + sum(bce(x, o) for x, o in NEG) / 5
# offsets targets: (2,6)-(2,6) = (0, 0); (0,3)-(0,4) = (0, -1)
BOUNDARY = (smooth_l1(0.5 - 0) + smooth_l1(-2.0 - 0) + smooth_l1(0.2 - 0) + smooth_l1(-0.4 + 1.0)) / 2


def test_hand_computed_terms():
    loss = fian_loss(LOGITS, OFFSETS, CANDIDATES, VALID, LENGTHS, GT, tau=0.55, alpha=0.1)
    assert loss.alignment.item() == pytest.approx(ALIGN, abs=1e-6)
    assert loss.boundary.item() == pytest.approx(BOUNDARY, abs=1e-6)
    assert BOUNDARY == pytest.approx(0.9125)
    assert loss.total.item() == pytest.approx(ALIGN + 0.1 * BOUNDARY, abs=1e-6)


def test_clip_candidates():
    clipped = clip_candidates(CANDIDATES, LENGTHS)
    assert torch.equal(clipped[0], torch.tensor([[0.0, 4.0], [2.0, 6.0], [4.0, 8.0], [8.0, 10.0]]))
    assert torch.equal(clipped[1], torch.tensor([[0.0, 4.0], [2.0, 6.0], [4.0, 6.0], [6.0, 6.0]]))


def test_invalid_candidates_do_not_count():
    other = LOGITS.clone()
    other[1, 3] = -50.0                      # an invalid candidate: its logit must not matter
    a = fian_loss(LOGITS, OFFSETS, CANDIDATES, VALID, LENGTHS, GT, 0.55, 0.1)
    b = fian_loss(other, OFFSETS, CANDIDATES, VALID, LENGTHS, GT, 0.55, 0.1)
    assert torch.equal(a.total, b.total)


def test_empty_sets_contribute_zero():
    # no positive: a gt so short that no window passes τ
    gt = torch.tensor([[0.0, 0.05], [0.0, 0.05]])
    loss = fian_loss(LOGITS, OFFSETS, CANDIDATES, VALID, LENGTHS, gt, 0.55, 0.1)
    assert loss.boundary.item() == 0.0
    iou0 = [0.5 / 4, 0.0, 0.0, 0.0]          # gt (0, 0.5) in frames of sample 0
    iou1 = [0.3 / 4, 0.0, 0.0]               # gt (0, 0.3) of sample 1
    neg = [bce(LOGITS[0, j].item(), iou0[j]) for j in range(4)] + [bce(LOGITS[1, j].item(), iou1[j]) for j in range(3)]
    assert loss.alignment.item() == pytest.approx(sum(neg) / 7, abs=1e-6)
    # no negative: one window equal to the gt
    one = fian_loss(torch.tensor([[0.3]]), torch.tensor([[[0.5, 0.5]]]), torch.tensor([[0.0, 4.0]]),
                    torch.tensor([[True]]), torch.tensor([4]), torch.tensor([[0.0, 1.0]]), 0.55, 1.0)
    assert one.alignment.item() == pytest.approx(bce(0.3, 1.0), abs=1e-6)
    assert one.boundary.item() == pytest.approx(2 * 0.125, abs=1e-6)


def test_alignment_is_stable_for_large_logits():
    logits = torch.tensor([[200.0, -200.0, 90.0, -90.0]], requires_grad=True)
    iou = torch.tensor([[0.0, 1.0, 0.6, 0.2]])
    loss = alignment_loss(logits, iou, iou > 0.55, torch.ones(1, 4, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # BCE(x, o) = max(x, 0) - x o + log(1 + e^{-|x|}); the last term vanishes at |x| >= 90
    pos = (200.0 + (90.0 - 0.6 * 90.0)) / 2                  # o=1 at x=-200; o=0.6 at x=90
    neg = (200.0 + 0.2 * 90.0) / 2                           # o=0 at x=200; o=0.2 at x=-90
    assert loss.item() == pytest.approx(pos + neg, rel=1e-5)


def test_boundary_is_mean_over_positives():
    offsets = torch.tensor([[[3.0, 0.0], [0.0, 0.0], [0.0, -0.5]]])
    targets = torch.zeros(1, 3, 2)
    positive = torch.tensor([[True, False, True]])
    assert boundary_loss(offsets, targets, positive).item() == pytest.approx((2.5 + 0.125) / 2)


def test_gradient_matches_float64_formula():
    logits = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    iou = torch.rand(3, 7, dtype=torch.float64)
    positive, valid = iou > 0.55, torch.rand(3, 7) > 0.2
    torch.autograd.gradcheck(lambda x: alignment_loss(x, iou, positive, valid).double(), (logits,))


def test_model_loss_matches_the_function():
    cfg = FIANConfig.preset("synthetic", hidden_size=32, num_heads=4, ffn_size=64, num_frames=24,
                            window_sizes=(4, 8), max_query_length=6)
    model = FIAN(cfg)
    B = 2
    out = model(torch.randn(B, 24, cfg.video_dim), torch.tensor([24, 13]), torch.randn(B, 5, cfg.word_dim),
                torch.tensor([5, 2]))
    gt = torch.tensor([[0.1, 0.4], [0.5, 1.0]])
    a = model.loss(out, gt)
    b = fian_loss(out.logits, out.offsets, out.candidates, out.valid, out.video_lengths, gt, cfg.tau, cfg.alpha)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("gt, match", [
    (torch.tensor([[0.1, 1.2], [0.0, 0.5]]), r"gt should lie in \[0, 1\]"),
    (torch.tensor([[0.6, 0.4], [0.0, 0.5]]), "gt should have start <= end"),
    (torch.tensor([[0.1, float("nan")], [0.0, 0.5]]), "gt should be finite"),
    (torch.tensor([0.1, 0.4]), "gt should be a 2-D"),
    (torch.tensor([[0.1, 0.4]]), "gt should have size 2 at dim 0"),
], ids=["above-1", "crossed", "nan", "rank", "batch"])
def test_bad_gt(gt, match):
    cfg = FIANConfig.preset("synthetic", hidden_size=32, num_heads=4, ffn_size=64, num_frames=24,
                            window_sizes=(4, 8), max_query_length=6)
    model = FIAN(cfg)
    out = model(torch.randn(2, 24, cfg.video_dim), torch.tensor([24, 13]), torch.randn(2, 5, cfg.word_dim),
                torch.tensor([5, 2]))
    with pytest.raises(ValueError, match=match):
        model.loss(out, gt)
