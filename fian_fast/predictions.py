"""Prediction files in the QVHighlights / Moment-DETR submission format, and query files to predict.

A prediction file is JSON lines, one query a line, as Moment-DETR's ``standalone_eval/eval.py``
(and lighthouse) reads a submission::

    {"qid": 2579, "query": "a girl cooks", "vid": "NUsG9BgSes0_210.0_360.0",
     "pred_relevant_windows": [[0.0, 70.0, 0.9986], [78.0, 146.0, 0.4138], ...],
     "relevant_windows": [[0.0, 68.0]], "duration": 150.0}

``pred_relevant_windows`` holds ``[start, end, score]`` in seconds, best first. Where the split
has a ground truth the line also carries ``relevant_windows`` (seconds) and ``duration``, the keys
of the annotation files, so one file serves an evaluator as submission and ground truth alike.
``qid`` is written as an int when the query id is a decimal number (QVHighlights' are), else as
the string. Numbers are written in full (``repr``), so a file read back grades exactly as it was
written. Files are written atomically (a temporary file in the same folder, then ``os.replace``).

A query file (``fian-fast predict --queries``) is JSON lines too, the annotation format without
the ground truth: ``{"query", "vid", "duration"}`` a line, ``qid`` optional (default: the line
number), ``relevant_windows`` optional (copied to the predictions).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .data.features import check_features
from .metrics import MOMENT_DETR_MAX_WINDOWS

__all__ = ["QueryLine", "qid_value", "prediction_row", "ranking_rows", "predict_rows", "write_jsonl", "read_queries"]


@dataclass(frozen=True)
class QueryLine:
    """One line of a query file: ``qid``, the ``query`` sentence, the video ``vid``, its
    ``duration`` in seconds and, when given, its ``relevant_windows`` (seconds)."""

    qid: Union[int, str]
    query: str
    vid: str
    duration: float
    relevant_windows: Optional[Tuple[Tuple[float, float], ...]] = None


def qid_value(query_id) -> Union[int, str]:
    """A query id as the submission format writes it: an int for a decimal number, else the string."""
    if isinstance(query_id, (int, np.integer)) and not isinstance(query_id, bool):
        return int(query_id)
    text = str(query_id)
    return int(text) if text.isdecimal() else text


def prediction_row(qid, query: str, vid: str, windows: Iterable[Sequence[float]],
                   relevant_windows: Optional[Iterable[Sequence[float]]] = None,
                   duration: Optional[float] = None) -> dict:
    """One line of a prediction file: ``windows`` are ``(start, end, score)`` in seconds, best
    first; ``relevant_windows`` and ``duration`` (the ground truth) are written when given."""
    row = {"qid": qid_value(qid), "query": query, "vid": vid,
           "pred_relevant_windows": [[float(s), float(e), float(c)] for s, e, c in windows]}
    if relevant_windows is not None:
        row["relevant_windows"] = [[float(s), float(e)] for s, e in relevant_windows]
    if duration is not None:
        row["duration"] = float(duration)
    return row


def ranking_rows(rankings, records, max_windows: int = MOMENT_DETR_MAX_WINDOWS) -> List[dict]:
    """Prediction lines of evaluated queries: ``rankings`` (:class:`fian_fast.evaluate.QueryRanking`,
    from a loader that kept the order of the split's ``records``, each checked against its record
    before the record's ``query_id`` is written), their first ``max_windows`` ranked windows with
    their scores (by default the 10 Moment-DETR's evaluator reads), the ground-truth windows the evaluator
    graded (``QueryRanking.windows``) and the duration."""
    if len(rankings) != len(records):
        raise ValueError(f"ranking_rows: {len(rankings)} evaluated queries, the split has {len(records)}")
    rows = []
    for q, r in zip(rankings, records):
        if (q.video_id, q.query) != (r.video_id, r.sentence):
            raise ValueError(f"ranking_rows: query {r.video_id}/{r.query_id} was evaluated out of order "
                             f"(got {q.video_id}/{q.query!r})")
        k = min(max_windows, len(q.segments))
        windows = [(s, e, c) for (s, e), c in zip(q.segments[:k].tolist(), np.asarray(q.scores[:k]).tolist())]
        rows.append(prediction_row(r.query_id, q.query, q.video_id, windows, q.windows.tolist(), q.duration))
    return rows


def write_jsonl(path: str, rows: Iterable[dict]) -> int:
    """Write ``rows`` as JSON lines to ``path`` atomically (a temporary file in its folder, then
    ``os.replace``: a reader never sees half a file). Returns the number of lines."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        n = 0
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, allow_nan=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {name} should be a finite number, got {value!r}")
    return float(value)


def read_queries(path: str) -> List[QueryLine]:
    """The queries of a query file (see the module docstring).

    Raises:
        ValueError: a missing file, a line that is not a JSON object, a missing or empty
            ``query`` / ``vid``, a ``duration`` that is not a number > 0, malformed
            ``relevant_windows``, or a file without any query; the message names the line.
    """
    if not os.path.isfile(path):
        raise ValueError(f"query file not found: {path}")
    out: List[QueryLine] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"queries {path}: line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where} is not valid JSON: {e}") from None
            if not isinstance(obj, dict) or not {"query", "vid", "duration"} <= set(obj):
                raise ValueError(f"{where}: expected an object with query, vid and duration (qid and "
                                 f"relevant_windows optional), got {sorted(obj) if isinstance(obj, dict) else obj!r}")
            query, vid = obj["query"], obj["vid"]
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"{where}: query should be a non-empty string, got {query!r}")
            if not isinstance(vid, (str, int)) or isinstance(vid, bool) or not str(vid):
                raise ValueError(f"{where}: vid should be a non-empty string, got {vid!r}")
            duration = _number(obj["duration"], where, "duration")
            if duration <= 0:
                raise ValueError(f"{where}: duration should be > 0 seconds, got {obj['duration']!r}")
            windows = obj.get("relevant_windows")
            if windows is not None:
                if not isinstance(windows, list) or not all(isinstance(w, list) and len(w) == 2 for w in windows):
                    raise ValueError(f"{where}: relevant_windows should be [[start, end], ...], got {windows!r}")
                windows = tuple((_number(s, where, "relevant_windows start"), _number(e, where, "relevant_windows end"))
                                for s, e in windows)
            out.append(QueryLine(qid_value(obj.get("qid", line_no)), query, str(vid), duration, windows))
    if not out:
        raise ValueError(f"queries {path}: no query in the file")
    return out


def predict_rows(predictor, lines: Sequence[QueryLine], store, top_n: Optional[int] = None) -> List[dict]:
    """Prediction lines of ``lines`` grounded by ``predictor`` (a :class:`fian_fast.Predictor`) in
    the videos of the feature ``store`` (:func:`fian_fast.data.open_features`), one batch of
    ``predictor.batch_size`` queries at a time (only that batch's videos in memory). Each line
    keeps its ``duration`` and, when given, its ``relevant_windows``."""
    check_features(store, (q.vid for q in lines), expected_dim=predictor.cfg.video_dim)
    rows = []
    for lo in range(0, len(lines), predictor.batch_size):
        chunk = lines[lo:lo + predictor.batch_size]
        videos = {vid: store.get(vid) for vid in {q.vid for q in chunk}}
        moments = predictor.predict([q.query for q in chunk], [videos[q.vid] for q in chunk],
                                    [q.duration for q in chunk], top_n=top_n)
        rows.extend(prediction_row(q.qid, q.query, q.vid, m, q.relevant_windows, q.duration)
                    for q, m in zip(chunk, moments))
    return rows
