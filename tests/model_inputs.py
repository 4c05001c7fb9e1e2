"""Small FIAN configs and random inputs shared by the model tests (tests/ is on sys.path under
pytest, so test modules import this one by name)."""
import torch

from fian_fast import FIANConfig


def tiny(**overrides) -> FIANConfig:
    """A FIAN small enough for CPU tests (24 frames, hidden size 32, 4 heads)."""
    values = dict(video_dim=16, word_dim=12, num_frames=24, max_query_length=8, hidden_size=32, num_heads=4,
                  ffn_size=64, dropout=0.0, window_sizes=(4, 8, 12), stride_ratio=0.25)
    values.update(overrides)
    return FIANConfig.preset("synthetic", **values)


def inputs(cfg, video_lengths, query_lengths, lq=None, dtype=torch.float32):
    """Random ``(video, video_lengths, query, query_lengths)`` for ``cfg``; queries padded to ``lq``."""
    B = len(video_lengths)
    lq = lq or max(query_lengths)
    video = torch.randn(B, cfg.num_frames, cfg.video_dim, dtype=dtype)
    query = torch.randn(B, lq, cfg.word_dim, dtype=dtype)
    return video, torch.tensor(video_lengths), query, torch.tensor(query_lengths)


def alone_and_batched(model, cfg):
    """``model``'s outputs for one sample (17 frames, 5 words) alone, and for the same sample as
    row 1 of a batch of 3 with longer query padding and poisoned padding (1e3 frames, NaN words)."""
    video, vl, query, ql = inputs(cfg, [17], [5], lq=5)
    big_v, big_vl, big_q, big_ql = inputs(cfg, [24, 17, 3], [8, 5, 1], lq=8)
    big_v[1, :17], big_q[1, :5] = video[0, :17], query[0]
    big_v[1, 17:] = 1e3
    big_q[1, 5:] = float("nan")
    return model(video, vl, query, ql), model(big_v, big_vl, big_q, big_ql)


def each_window_alone(model, ds, protocol, thresholds, keys):
    """What ``windows="each"`` should give on ``ds``: every window of every query graded as a
    one-window query of its own (batches of one), then per query the best window's hits at each of
    ``keys`` and its best mIoU term. Returns ``(hits, miou_sum)``."""
    import dataclasses

    from torch.utils.data import DataLoader

    from fian_fast.data import GroundingDataset, collate
    from fian_fast.evaluate import evaluate_model

    hits, miou = {k: 0 for k in keys}, 0.0
    for rec in ds.records:
        per = []
        for s, e in rec.windows or ((rec.start, rec.end),):
            one = GroundingDataset([dataclasses.replace(rec, start=s, end=e, windows=())], ds.features, ds.vocab,
                                   ds.num_frames, ds.max_query_length)
            per.append(evaluate_model(model, DataLoader(one, collate_fn=collate), (protocol,), thresholds)[protocol])
        for k in hits:
            hits[k] += max(r.hits[k] for r in per)
        miou += max(r.miou_sum for r in per)
    return hits, miou
