"""Queries with several relevant windows (QVHighlights: about a third of its queries).

FIAN grounds one moment per query, so a query with several relevant windows needs an explicit
choice, counted in the split's :class:`~fian_fast.data.records.CleaningReport`:

``first`` (default)
    the first window is the ground truth, for training and evaluation alike; the others are
    ignored (and counted).
``each``
    training: one training query per window (``query_id`` gains ``#k``); evaluation: the query is
    scored once, against every window, and counts as a hit at ``(n, m)`` when any window is hit
    there; its mIoU term is that of the window its top-1 segment matches best
    (:func:`evaluate_windows`; the ``moment_detr`` protocol grades the windows by its own rule).

Batches carry the windows of such queries (``Batch.gt_windows``, seconds).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .records import CleaningReport, Record

__all__ = ["WINDOW_POLICIES", "apply_windows", "evaluate_windows"]

WINDOW_POLICIES = ("first", "each")


def apply_windows(records: Sequence[Record], report: CleaningReport, policy: str = "first",
                  expand: bool = False) -> List[Record]:
    """Apply ``policy`` to cleaned ``records`` and count what it concerned in ``report``.

    Args:
        records: cleaned records; ``windows`` holds the windows of queries with several.
        report: the split's report (``several_windows``, ``extra_windows`` and ``windows`` set).
        policy: ``first`` or ``each``.
        expand: with ``each``, one record per window (training splits); otherwise the records keep
            their windows for :func:`evaluate_windows`.
    """
    if policy not in WINDOW_POLICIES:
        raise ValueError(f"apply_windows: policy should be one of {WINDOW_POLICIES}, got {policy!r}")
    report.windows = "first" if policy == "first" else ("each" if expand else "best")
    out: List[Record] = []
    for r in records:
        if len(r.windows) <= 1:
            out.append(r)
            continue
        tag = f"{r.video_id}/{r.query_id}" if r.query_id else r.video_id
        report.note("several_windows", tag)
        report.note("extra_windows", tag, len(r.windows) - 1)
        if policy == "first":
            out.append(dataclasses.replace(r, windows=()))
        elif expand:
            out.extend(Record(r.video_id, r.duration, r.sentence, s, e, f"{r.query_id}#{k}")
                       for k, (s, e) in enumerate(r.windows))
        else:
            out.append(r)
    return out


@torch.no_grad()
def evaluate_windows(model, dataset, loader, protocols: Sequence[str], thresholds: Sequence[float],
                     device="cpu", autocast: bool = False, nms_threshold: Optional[float] = None,
                     dataset_name: Optional[str] = None) -> Dict[str, object]:
    """:func:`~fian_fast.evaluate.evaluate_model`, with queries of several windows scored against
    the best-matching one.

    ``loader`` must yield ``dataset`` in order (no shuffling). Under every recall protocol but
    ``moment_detr``, a query whose record has ``windows`` is scored once per window; it counts as
    a hit at ``(n, m)`` when any window is hit there, and its mIoU term is the largest over its
    windows. ``moment_detr`` grades every window by its own rule (the batch's ``gt_windows``). A
    query with one window is scored exactly as :func:`~fian_fast.evaluate.evaluate_model` scores
    it; ``nms_threshold`` and ``dataset_name`` are passed on as its ``nms_threshold`` and
    ``dataset``.

    Returns ``{protocol: EvalResult}``.
    """
    from ..evaluate import (RECALLS, SUPPRESSING, EvalResult, default_nms_threshold, evaluate_model, ranked_segments,
                            score_queries)

    records = dataset.records
    if not any(len(r.windows) > 1 for r in records):
        return evaluate_model(model, loader, protocols, thresholds, device, autocast, nms_threshold=nms_threshold,
                              dataset=dataset_name)
    was_training = model.training
    model.eval()
    rankings = []
    try:
        for batch in loader:
            batch = batch.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = model(*batch.model_inputs(), validate=False)  # values checked by collate
            out = out._replace(logits=out.logits.float(), offsets=out.offsets.float())
            rankings.extend(ranked_segments(out, batch.durations.float(), batch.gt, batch.gt_windows))
    finally:
        model.train(was_training)
    if len(rankings) != len(records):
        raise ValueError(f"evaluate_windows: loader yielded {len(rankings)} queries, dataset has {len(records)}")
    results = {}
    for protocol in protocols:
        nms = None
        if protocol in SUPPRESSING:
            nms = nms_threshold if nms_threshold is not None else default_nms_threshold(protocol, dataset_name)
        if protocol == "moment_detr":
            results[protocol] = score_queries(rankings, protocol, thresholds, nms_threshold=nms)
            continue
        total = EvalResult(protocol, 0, {(r, m): 0 for m in thresholds for r in RECALLS}, nms_threshold=nms)
        for q, rec in zip(rankings, records):
            # windows become float32 fractions of the duration, as the batch's gt does
            gts = [(float(np.float32(s / rec.duration)) * q.duration, float(np.float32(e / rec.duration)) * q.duration)
                   for s, e in rec.windows] if len(rec.windows) > 1 else [q.gt]
            per = [score_queries([dataclasses.replace(q, gt=g)], protocol, thresholds, nms_threshold=nms) for g in gts]
            total.num_queries += 1
            for key in total.hits:
                total.hits[key] += max(r.hits[key] for r in per)
            total.miou_sum += max(r.miou_sum for r in per)
        results[protocol] = total
    return results
