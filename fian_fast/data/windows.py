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
    (:func:`fian_fast.evaluate.evaluate_model` with ``windows="each"``; the ``moment_detr``
    protocol grades the windows by its own rule).

Batches carry the windows of such queries (``Batch.gt_windows``, seconds), and the evaluator reads
them there.
"""
from __future__ import annotations

import dataclasses
from typing import List, Sequence

from .records import CleaningReport, Record

__all__ = ["WINDOW_POLICIES", "apply_windows"]

WINDOW_POLICIES = ("first", "each")


def apply_windows(records: Sequence[Record], report: CleaningReport, policy: str = "first",
                  expand: bool = False) -> List[Record]:
    """Apply ``policy`` to cleaned ``records`` and count what it concerned in ``report``.

    Args:
        records: cleaned records; ``windows`` holds the windows of queries with several.
        report: the split's report (``several_windows``, ``extra_windows`` and ``windows`` set).
        policy: ``first`` or ``each``.
        expand: with ``each``, one record per window (training splits); otherwise the records keep
            their windows for the evaluator (``windows="each"``).
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
