"""Table 5 localization variants (``FIANConfig.localization``): FIAN-TGN and FIAN-CMIN beside the
content-oriented head: candidates, layout, padding, gradients, backends, short-video edges, CLI."""
import json

import pytest
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast.cli import main
from fian_fast.config import LOCALIZATIONS
from fian_fast.model.anchor_localization import (CMIN_WIDTHS, TGN_DENSE_LENGTHS, CMINHead, TGNHead, cmin_candidates,
                                                 tgn_candidates)
from fian_fast.model.localization import LocalizationHead, build_localization
from fian_fast.model.loss import clip_candidates
from fian_fast.reference import iou_label as reference_iou_label
from model_inputs import alone_and_batched, inputs
from model_inputs import tiny as tiny_config


def tiny(localization, **overrides) -> FIANConfig:
    return tiny_config(localization=localization, **overrides)


# ------------------------------------------------------------------------------- candidates
def test_tgn_candidates_end_at_each_frame():
    cand, anchors = tgn_candidates(3, [1, 2])
    assert cand.dtype == torch.float32 and anchors.dtype == torch.float32
    assert cand.tolist() == [[0, 1], [-1, 1], [1, 2], [0, 2], [2, 3], [1, 3]]     # candidate t * K + k
    assert anchors.tolist() == [0, 0, 1, 1, 2, 2]


def test_cmin_candidates_are_centred_on_each_frame():
    cand, anchors = cmin_candidates(3, [1, 2, 3])
    assert cand.tolist() == [[0, 1], [-0.5, 1.5], [-1, 2], [1, 2], [0.5, 2.5], [0, 3], [2, 3], [1.5, 3.5], [1, 4]]
    assert anchors.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # CMIN's inclusive frame indices [t - (w-1)/2, t + (w-1)/2] are the same segments (end + 1 here)
    for w in CMIN_WIDTHS["tacos"]:
        c, _ = cmin_candidates(40, [w])
        t = torch.arange(40, dtype=torch.float32)
        assert torch.equal(c[:, 0], t - (w - 1) / 2) and torch.equal(c[:, 1] - 1, t + (w - 1) / 2)


@pytest.mark.parametrize("fn", [tgn_candidates, cmin_candidates])
@pytest.mark.parametrize("args", [(0, [2]), (4, []), (4, [5]), (4, [0]), (4, [2.0])])
def test_candidate_arguments_are_checked(fn, args):
    with pytest.raises(ValueError, match=fn.__name__):
        fn(*args)


def test_build_localization_picks_the_head():
    for name, cls in (("content", LocalizationHead), ("tgn", TGNHead), ("cmin", CMINHead)):
        head = build_localization(name, 8, 8, 16, (2, 4), (1, 1), 0.0)
        assert type(head) is cls and head.candidates.shape[0] == head.anchors.shape[0]
    with pytest.raises(ValueError, match="build_localization: localization should be one of"):
        build_localization("2dtan", 8, 8, 16, (2, 4), (1, 1), 0.0)


def test_config_counts_the_anchors():
    for name in LOCALIZATIONS:
        cfg = tiny(name)
        assert FIAN(cfg).candidates.shape[0] == cfg.num_candidates
    assert tiny("tgn").num_candidates == 24 * 3 and tiny("cmin", window_sizes=(6, 18)).num_candidates == 48


# ------------------------------------------------------------------------------- the heads
def test_cmin_output_layout():
    head = CMINHead(4, 8, 5, (2, 4), 0.0)
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.copy_(torch.arange(6.0))
    logits, offsets = head(torch.randn(2, 5, 4), torch.tensor([5, 3]))
    assert logits.shape == (2, 10) and offsets.shape == (2, 10, 2)
    assert torch.equal(logits[0], torch.tensor([0.0, 1.0]).repeat(5))              # channels [0, K)
    assert torch.equal(offsets[1], torch.tensor([[2.0, 3.0], [4.0, 5.0]]).repeat(5, 1))  # (δs, δe) of anchor k


def test_tgn_scores_each_frame_with_one_linear_layer_and_no_offsets():
    head = TGNHead(4, 8, 5, (2, 4), 0.0)
    fused = torch.randn(2, 5, 4)
    lengths = torch.tensor([5, 3])
    logits, offsets = head(fused, lengths)
    feats = head.gru(fused, lengths)
    torch.testing.assert_close(logits.view(2, 5, 2), feats @ head.score.weight.t() + head.score.bias)
    assert torch.equal(offsets, torch.zeros(2, 10, 2)) and not offsets.requires_grad


@pytest.mark.parametrize("localization", ["tgn", "cmin"])
def test_forward_backward_every_parameter_learns(localization):
    cfg = tiny(localization)
    model = FIAN(cfg)
    out = model(*inputs(cfg, (24, 11, 5), (8, 3, 1)))
    N = cfg.num_candidates
    assert out.logits.shape == (3, N) and out.offsets.shape == (3, N, 2) and out.candidates.shape == (N, 2)
    loss = model.loss(out, torch.tensor([[0.1, 0.5], [0.3, 0.9], [0.0, 1.0]]))
    loss.total.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    if localization == "tgn":            # no offsets: eq. 17 is left out of the total
        assert torch.equal(loss.total, loss.alignment)
    else:
        torch.testing.assert_close(loss.total, loss.alignment + cfg.alpha * loss.boundary)


@pytest.mark.parametrize("localization", LOCALIZATIONS)
def test_padding_invariance(localization):
    cfg = tiny(localization, dropout=0.3)
    model = FIAN(cfg).eval()
    alone, batched = alone_and_batched(model, cfg)
    assert torch.equal(batched.valid[1], alone.valid[0])
    v = alone.valid[0]
    torch.testing.assert_close(batched.logits[1][v], alone.logits[0][v], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.offsets[1][v], alone.offsets[0][v], atol=1e-5, rtol=0)
    d = torch.tensor([8.5])
    one = model.decode(alone, d)
    many = model.decode(batched, torch.tensor([3.0, 8.5, 1.0]))
    assert torch.equal(many.indices[1], one.indices[0])
    torch.testing.assert_close(many.segments[1], one.segments[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("localization", ["tgn", "cmin"])
def test_padded_inputs_get_zero_gradient(localization):
    cfg = tiny(localization, dropout=0.2)
    model = FIAN(cfg).train()
    video, vl, query, ql = inputs(cfg, [24, 9, 2], [8, 3, 1])
    video.requires_grad_(True)
    query.requires_grad_(True)
    out = model(video, vl, query, ql)
    (out.logits * torch.randn_like(out.logits)).sum().add(out.offsets.sum()).backward()
    for x, lengths in ((video, vl), (query, ql)):
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        assert torch.equal(x.grad[pad], torch.zeros_like(x.grad[pad]))
        assert (x.grad[~pad].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("head_cls", [TGNHead, CMINHead])
def test_float64_gradcheck_of_the_head(head_cls):
    torch.manual_seed(0)
    head = head_cls(3, 4, 6, (2, 3), 0.0).double()
    fused = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 4])

    def fn(x):
        logits, offsets = head(x, lengths)
        return logits, offsets

    assert torch.autograd.gradcheck(fn, (fused,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("localization", LOCALIZATIONS)
def test_fast_and_reference_backends_agree(localization):
    cfg = tiny(localization)
    torch.manual_seed(1)
    ref = FIAN(cfg, backend="reference").eval()
    fast = FIAN(cfg, backend="fast").eval()
    fast.load_state_dict(ref.state_dict())
    args = inputs(cfg, [24, 13, 4], [8, 4, 2])
    gt = torch.tensor([[0.2, 0.6], [0.0, 0.4], [0.5, 1.0]])
    a, b = ref(*args), fast(*args)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.offsets, a.offsets, atol=1e-5, rtol=1e-5)
    la, lb = ref.loss(a, gt), fast.loss(b, gt)
    for x, y in zip(la, lb):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)
    durations = torch.tensor([12.0, 6.5, 2.0])
    pa, pb = ref.decode(a, durations), fast.decode(b, durations)
    assert torch.equal(pb.indices, pa.indices)
    torch.testing.assert_close(pb.segments, pa.segments, atol=1e-5, rtol=0)


# --------------------------------------------------------------------- edges of a short video
@pytest.mark.parametrize("backend", ["reference", "fast"])
@pytest.mark.parametrize("localization", LOCALIZATIONS)
def test_candidates_at_the_edges_of_a_short_video(localization, backend):
    """A 3-frame video in a 24-frame sequence, windows (4, 8) all longer than the video."""
    cfg = tiny(localization, window_sizes=(4, 8))
    model = FIAN(cfg, backend=backend).eval()
    L = 3
    out = model(*inputs(cfg, [L, 24], [2, 3]))
    cand, anchors = out.candidates, model.localization.anchors
    if localization == "content":
        assert torch.equal(out.valid[0], cand[:, 0] < L)                  # windows starting inside the video
        assert int(out.valid[0].sum()) == 5                                # starts 0, 1, 2 (stride 1) and 0, 2 (stride 2)
    else:
        # scored from a real frame: t < L. TGN's [0, 4) anchored at frame 3 starts inside the video but
        # is scored from a padded frame, so it is not valid
        assert torch.equal(out.valid[0], anchors < L) and int(out.valid[0].sum()) == L * 2
        if localization == "tgn":
            n = 3 * 2                                                      # frame 3, length 4
            assert cand[n].tolist() == [0.0, 4.0] and not out.valid[0, n]
    clipped = clip_candidates(cand, out.video_lengths)[0][out.valid[0]]
    assert clipped.min() >= 0 and clipped.max() <= L and (clipped[:, 1] > clipped[:, 0]).all()
    # the whole video as ground truth: the clipped candidates covering it are exact positives
    iou, positive, _ = reference_iou_label(clip_candidates(cand, out.video_lengths), torch.tensor([[0.0, L], [0, 24.0]]),
                                           cfg.tau)
    assert (iou[0][out.valid[0]] == 1).any() and positive[0][out.valid[0]].any()
    loss = model.loss(out, torch.tensor([[0.0, 1.0], [0.25, 0.5]]))
    assert all(torch.isfinite(x) for x in loss)
    pred = model.decode(out, torch.tensor([1.5, 12.0]), top_n=4, nms_threshold=0.5)
    kept = pred.indices[0][pred.indices[0] >= 0]
    assert len(kept) >= 1 and out.valid[0, kept].all()
    segs = pred.segments[0][: len(kept)]
    assert segs.min() >= 0 and segs.max() <= 1.5 + 1e-6
    if localization == "tgn":            # no regression: a prediction is its candidate clipped to the video
        want = clip_candidates(cand, out.video_lengths)[0][kept] / L * 1.5
        torch.testing.assert_close(segs, want)


# ------------------------------------------------------------------ what FIAN-TGN can predict
@pytest.mark.parametrize("sizes", [(4, 8, 12), "dense"], ids=["scales-4-8-12", "dense"])
def test_tgn_predicts_only_its_anchor_lengths(sizes):
    """No regression: every FIAN-TGN prediction away from the video's edges is an anchor, so its
    length is one of the window sizes: three lengths for FIAN-like scales, 1..32 for the dense set."""
    cfg = tiny("tgn", num_frames=40, window_sizes=sizes)
    model = FIAN(cfg).eval()
    L = 40
    out = model(*inputs(cfg, [L], [4]))
    pred = model.decode(out, torch.tensor([float(L)]), top_n=cfg.num_candidates, nms_threshold=1.0)
    segs = pred.segments[0][pred.indices[0] >= 0]                     # seconds = frames (duration L)
    assert len(segs) == cfg.num_candidates                             # IoU > 1 never: nothing suppressed
    inside = (segs[:, 0] > 0) & (segs[:, 1] < L)
    lengths = torch.round(segs[inside, 1] - segs[inside, 0]).long().unique().tolist()
    assert lengths == sorted(cfg.window_sizes)
    assert (sizes == "dense") == (lengths == list(range(1, 33)))
    assert ((segs[:, 1] - segs[:, 0]) <= max(cfg.window_sizes) + 1e-4).all()   # nothing longer than an anchor


@pytest.mark.parametrize("localization", LOCALIZATIONS)
def test_step_log_has_a_boundary_loss_only_where_the_total_has_one(localization, tmp_path):
    from fian_fast.data import load_split
    from fian_fast.train import TrainOptions, train

    cfg = tiny(localization, word_dim=50)
    tr, _ = load_split("synthetic", "train", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       synthetic_sizes=(3, 1, 1))
    train(cfg, tr, None, TrainOptions(out_dir=str(tmp_path), epochs=1, batch_size=8, progress=False, log_every=1))
    steps = [e for e in map(json.loads, open(tmp_path / "log.jsonl")) if e["event"] == "step"]
    assert steps and all({"loss", "alignment"} <= set(e) for e in steps)
    assert all(("boundary" in e) == (localization != "tgn") for e in steps)


# ------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("localization, window_args, want", [
    ("cmin", [], CMIN_WIDTHS["tacos"]),
    ("cmin", ["--window-sizes", "4,8"], (4, 8)),
    ("tgn", [], (8, 16, 32, 64)),
    ("tgn", ["--window-sizes", "dense"], TGN_DENSE_LENGTHS),
    ("content", [], (8, 16, 32, 64)),
], ids=["cmin-own", "cmin-given", "tgn-preset", "tgn-dense", "content"])
def test_cli_anchor_sizes_on_the_tacos_preset(localization, window_args, want, monkeypatch, tmp_path):
    import fian_fast.train as train_module

    seen = {}

    def fake_train(cfg, train_ds, val_ds, opts, dist_info=None):
        seen["cfg"] = cfg
        return {"steps": 0, "epochs": 0, "seconds": 0.0, "best": None, "last": None, "checkpoint": ""}

    monkeypatch.setattr(train_module, "train", fake_train)
    assert main(["train", "--dataset", "synthetic", "--preset", "tacos", "--synthetic-size", "2,1,1",
                 "--localization", localization, *window_args, "--out", str(tmp_path), "--quiet"]) == 0
    assert seen["cfg"].localization == localization and seen["cfg"].window_sizes == want


@pytest.mark.parametrize("localization", LOCALIZATIONS)
def test_cli_trains_and_evaluates_each_variant(localization, tmp_path, capsys):
    run = str(tmp_path / localization)
    code = main(["train", "--dataset", "synthetic", "--synthetic-size", "8,3,3", "--epochs", "1", "--batch-size", "16",
                 "--localization", localization, "--window-sizes", "4,8", "--out", run, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    state = torch.load(f"{run}/best.pt", map_location="cpu", weights_only=False)
    assert state["config"]["localization"] == localization and state["config"]["window_sizes"] == [4, 8]
    code = main(["evaluate", "--checkpoint", f"{run}/best.pt", "--protocol", "all", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    results = json.loads(out)
    assert [r["protocol"] for r in results] == ["2dtan", "csmgan", "mmn", "moment_detr"]
    assert all(r["num_queries"] > 0 and all(0 <= v <= 100 for v in r["metrics"].values()) for r in results)


def test_cli_rejects_a_bad_window_list(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "synthetic", "--window-sizes", "4,x", "--out", str(tmp_path)])
    assert "--window-sizes" in capsys.readouterr().err
    code = main(["train", "--dataset", "synthetic", "--localization", "cmin", "--window-sizes", "4,99",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 1 and "FIANConfig.window_sizes" in capsys.readouterr().err


def test_cli_nms_threshold(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", "synthetic", "--synthetic-size", "8,3,3", "--epochs", "1", "--batch-size", "16",
                 "--localization", "cmin", "--window-sizes", "4,8", "--out", run, "--quiet"]) == 0
    capsys.readouterr()
    ckpt = f"{run}/best.pt"
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "mmn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nms_threshold"] == 0.5          # MMN's default off TACoS
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "all", "--nms-threshold", "0.4", "--json"]) == 0
    results = {r["protocol"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["2dtan"]["nms_threshold"] == 0.4 and results["mmn"]["nms_threshold"] == 0.4
    assert "nms_threshold" not in results["csmgan"] and "nms_threshold" not in results["moment_detr"]
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "csmgan", "--nms-threshold", "0.4"]) == 1
    assert "--nms-threshold applies to the protocols 2dtan, mmn, not csmgan" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "mmn", "--nms-threshold", "1.5"]) == 1
    assert "--nms-threshold should be in [0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("localization", ["tgn", "cmin"])
def test_trusted_forward_and_loss_read_nothing_from_the_device(localization):
    from fian_fast._host_reads import count_host_reads

    cfg = tiny(localization)
    model = FIAN(cfg, backend="fast")
    video, vl, query, ql = inputs(cfg, [24, 9], [8, 3])
    gt = torch.tensor([[0.1, 0.5], [0.2, 0.9]])
    with count_host_reads() as reads:
        out = model(video, vl, query, ql, validate=False)
        model.loss(out, gt, validate=False).total.backward()
    assert reads.total == 0
