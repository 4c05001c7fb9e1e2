"""What the Python wrappers cost: each localization op's public wrapper against the raw
``torch.ops.fian_fast`` op on the same inputs (CPU, TACoS shapes: B = 128, 347 candidates), with
the trusted path (``validate=False``: metadata checks only; target < 10 % over the raw op) and with
the value checks (``validate=True``, one host read); and labels + NMS through the public ops
against a per-sample NumPy loop (IoU labels + greedy NMS; target >= 50x), torch's default threads.

Times are the best of many calls (the minimum is the figure a loaded machine disturbs least).
"""
import time

import numpy as np
import pytest
import torch

from fian_fast import FIANConfig, ops, reference
from fian_fast._extension import has_ops

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")

B = 128


def best_of(fn, repeat=200, warmup=10):
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _inputs():
    torch.manual_seed(0)
    cfg = FIANConfig.preset("tacos")
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides)
    N = cand.shape[0]
    lengths = torch.randint(cfg.num_frames // 2, cfg.num_frames + 1, (B,))
    gt = torch.sort(torch.rand(B, 2), dim=1).values * lengths[:, None].float()
    clipped = torch.minimum(cand[None].expand(B, -1, -1), lengths[:, None, None].float())
    logits, offsets = torch.randn(B, N) * 2, torch.randn(B, N, 2) * 3
    refined = torch.sort(clipped + offsets, dim=-1).values
    valid = cand[None, :, 0] < lengths[:, None].float()
    features = torch.randn(B, cfg.num_frames, 64)
    weights = [torch.randn(3, 64, k) * 0.05 for k in cfg.window_sizes]
    biases = [torch.randn(3) for _ in cfg.window_sizes]
    return cfg, dict(cand=cand, clipped=clipped, gt=gt, lengths=lengths, logits=logits, offsets=offsets,
                     refined=refined, valid=valid, durations=torch.rand(B) * 100 + 20, features=features,
                     weights=weights, biases=biases)


def _calls(cfg, t):
    """op -> (raw call, wrapper call taking ``validate``)."""
    raw = torch.ops.fian_fast
    return {
        "iou_label": (lambda: raw.iou_label(t["clipped"], t["gt"], cfg.tau),
                      lambda v: ops.iou_label(t["clipped"], t["gt"], cfg.tau, validate=v)),
        "temporal_nms": (lambda: raw.temporal_nms(t["refined"], t["logits"], 0.5, 5, t["valid"]),
                         lambda v: ops.temporal_nms(t["refined"], t["logits"], 0.5, 5, t["valid"], validate=v)),
        "decode": (lambda: raw.decode(t["cand"], t["logits"], t["offsets"], t["lengths"], t["durations"], 0.5, 5,
                                      t["valid"]),
                   lambda v: ops.decode(t["cand"], t["logits"], t["offsets"], t["lengths"], t["durations"], 0.5, 5,
                                        t["valid"], validate=v)),
        "window_score": (lambda: raw.window_score(t["features"], t["weights"], t["biases"], list(cfg.window_sizes),
                                                  list(cfg.strides)),
                         lambda v: ops.window_score(t["features"], t["weights"], t["biases"], cfg.window_sizes,
                                                    cfg.strides)),
    }


@pytest.mark.parametrize("op", ["iou_label", "temporal_nms", "decode", "window_score"])
def test_bench_wrapper_overhead_cpu(benchmark, run_info, op):
    cfg, t = _inputs()
    raw, wrapper = _calls(cfg, t)[op]
    raw_s = best_of(raw)
    trusted_s = best_of(lambda: wrapper(False))
    checked_s = best_of(lambda: wrapper(True))
    overhead = trusted_s / raw_s - 1
    benchmark.extra_info.update(run_info)
    benchmark.extra_info.update({"device": "cpu", "threads": torch.get_num_threads(), "raw_ms": raw_s * 1e3,
                                 "trusted_ms": trusted_s * 1e3, "validated_ms": checked_s * 1e3,
                                 "trusted_overhead": round(overhead, 4), "target_overhead": 0.10})
    print(f"\n{op}: raw {raw_s * 1e3:.4f} ms, wrapper (validate=False) {trusted_s * 1e3:.4f} ms "
          f"({overhead * 100:+.1f} %), wrapper (validate=True) {checked_s * 1e3:.4f} ms "
          f"({(checked_s / raw_s - 1) * 100:+.1f} %)")
    benchmark.pedantic(lambda: wrapper(False), rounds=50, iterations=1, warmup_rounds=5)


def _np_iou(s, e, gs, ge):
    inter = np.clip(np.minimum(e, ge) - np.maximum(s, gs), 0, None)
    union = (e - s) + (ge - gs) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def numpy_loop(cfg, t, top_k=5, threshold=0.5):
    """IoU labels and greedy NMS sample by sample, as published grounding code writes them."""
    clipped, gt = t["clipped"].numpy(), t["gt"].numpy()
    refined, logits, valid = t["refined"].numpy(), t["logits"].numpy(), t["valid"].numpy()
    labels, keeps = [], []
    for b in range(len(gt)):
        iou = _np_iou(clipped[b, :, 0], clipped[b, :, 1], gt[b, 0], gt[b, 1])
        labels.append((iou, iou > cfg.tau, gt[b] - clipped[b]))
        order = np.argsort(-logits[b], kind="stable")
        order = order[valid[b, order]]
        keep = []
        while order.size and len(keep) < top_k:
            i = order[0]
            keep.append(i)
            rest = order[1:]
            order = rest[_np_iou(refined[b, rest, 0], refined[b, rest, 1], refined[b, i, 0], refined[b, i, 1])
                         <= threshold]
        keeps.append(keep)
    return labels, keeps


def public_ops(cfg, t, validate):
    labels = ops.iou_label(t["clipped"], t["gt"], cfg.tau, validate=validate)
    keep = ops.temporal_nms(t["refined"], t["logits"], 0.5, 5, t["valid"], validate=validate)
    return labels, keep


def test_bench_labels_nms_vs_numpy_loop_cpu(benchmark, report_ratio):
    cfg, t = _inputs()
    (iou, pos, _), keep = public_ops(cfg, t, True)
    labels, keeps = numpy_loop(cfg, t)
    for b in (0, 63, B - 1):
        np.testing.assert_allclose(iou[b].numpy(), labels[b][0], rtol=1e-6, atol=1e-6)
        assert keep[b, :len(keeps[b])].tolist() == [int(i) for i in keeps[b]]
    loop_s = best_of(lambda: numpy_loop(cfg, t), repeat=7, warmup=1)
    checked_s = best_of(lambda: public_ops(cfg, t, True), repeat=100)
    trusted_s = best_of(lambda: public_ops(cfg, t, False), repeat=100)
    ratio = report_ratio("labels+NMS TACoS B=128 public ops (validate=True) vs numpy loop", "cpu", loop_s, checked_s,
                         benchmark)
    ratio_trusted = report_ratio("labels+NMS TACoS B=128 public ops (validate=False) vs numpy loop", "cpu", loop_s,
                                 trusted_s)
    benchmark.extra_info.update({"numpy_loop_ms": loop_s * 1e3, "validated_ms": checked_s * 1e3,
                                 "trusted_ms": trusted_s * 1e3, "speedup_trusted": round(ratio_trusted, 2),
                                 "target_speedup": 50, "threads": torch.get_num_threads()})
    print(f"\nlabels+NMS: numpy loop {loop_s * 1e3:.3f} ms, public ops {checked_s * 1e3:.3f} ms (x{ratio:.1f}) "
          f"validated, {trusted_s * 1e3:.3f} ms (x{ratio_trusted:.1f}) trusted")
    benchmark.pedantic(lambda: public_ops(cfg, t, True), rounds=50, iterations=1, warmup_rounds=5)
