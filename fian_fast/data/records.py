"""The common annotation record of every dataset format, and the field's cleaning step.

A :class:`Record` is one query: a video id, the video's duration in seconds, the sentence and the
ground-truth moment ``(start, end)`` in seconds (plus every relevant window where a format has
several). Every reader in :mod:`fian_fast.data.formats` returns records, then
:func:`clean_records` applies the cleaning the field uses (docs/protocols.md, "Cleaning"): clip
``end`` to the duration and ``start`` to 0, drop queries whose moment is empty (``start >= end``)
and queries with an empty sentence, a sentence without a word or a non-positive duration. What was
changed or dropped is counted, with an example of each, in a :class:`CleaningReport`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from .text import has_words

__all__ = ["Record", "CleaningReport", "clean_records"]


@dataclass(frozen=True)
class Record:
    """One query of a grounding dataset.

    Attributes:
        video_id: id of the video, the key of its features.
        duration: length of the video in seconds (> 0).
        sentence: the query sentence as written in the annotation file.
        start, end: the ground-truth moment in seconds.
        query_id: an id unique within its file (the line or list position where the format has none).
        windows: every relevant window ``((s, e), ...)`` in seconds, first = ``(start, end)``, for a
            query with several (lighthouse / QVHighlights); ``()`` for a query with one.
    """

    video_id: str
    duration: float
    sentence: str
    start: float
    end: float
    query_id: str = ""
    windows: Tuple[Tuple[float, float], ...] = ()

    @property
    def fraction(self) -> Tuple[float, float]:
        """``(start, end) / duration``: the moment as fractions of the video, in [0, 1] once cleaned."""
        return (self.start / self.duration, self.end / self.duration)


@dataclass
class CleaningReport:
    """What loading did to one file's records.

    ``counts`` maps a reason to how many queries it concerned; ``examples`` keeps the first query
    id of each reason. Reasons in :attr:`DROP_REASONS` drop a query; ``clipped_end``,
    ``clipped_start`` and ``truncated_query`` change one; ``several_windows`` counts queries with
    more than one relevant window and ``extra_windows`` their windows beyond the first (what
    happens to them is ``windows``, see :mod:`fian_fast.data.windows`); ``dropped_windows`` counts
    empty windows other than the first, removed; ``limited`` counts queries left out by a limit.
    """

    source: str
    total: int = 0
    kept: int = 0
    counts: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, str] = field(default_factory=dict)
    max_query_length: Optional[int] = None
    windows: str = "first"

    DROP_REASONS = ("empty_sentence", "no_words", "bad_duration", "bad_timestamps", "empty_moment",
                    "missing_features")

    def note(self, reason: str, example: str, count: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + count
        self.examples.setdefault(reason, example)

    @property
    def dropped(self) -> int:
        return sum(self.counts.get(r, 0) for r in self.DROP_REASONS)

    def summary(self) -> str:
        """One line: ``source: kept K of N queries; dropped D (reason: n (e.g. id); ...); clipped (...); ...``."""
        c = self.counts
        parts = [f"{self.source}: kept {self.kept} of {self.total} queries"]
        drops = [f"{r}: {c[r]} (e.g. {self.examples[r]})" for r in self.DROP_REASONS if r in c]
        if drops:
            parts.append(f"dropped {self.dropped} ({'; '.join(drops)})")
        clips = [f"{r}: {c[r]}" for r in ("clipped_end", "clipped_start") if r in c]
        if clips:
            parts.append(f"clipped ({', '.join(clips)})")
        if "truncated_query" in c:
            parts.append(f"truncated {c['truncated_query']} queries longer than {self.max_query_length} tokens "
                         f"to their first {self.max_query_length} (e.g. {self.examples['truncated_query']})")
        if "several_windows" in c:
            what = {"first": "first window kept, the others ignored",
                    "each": f"one training query per window (+{c.get('extra_windows', 0)} queries)",
                    "best": "scored against the best-matching window"}[self.windows]
            parts.append(f"{c['several_windows']} queries with several windows, {c.get('extra_windows', 0)} beyond "
                         f"the first ({what})")
        if "dropped_windows" in c:
            parts.append(f"empty extra windows removed: {c['dropped_windows']}")
        if "limited" in c:
            parts.append(f"limit: {c['limited']} more queries left out")
        return "; ".join(parts)


def _clean_window(start: float, end: float, duration: float) -> Optional[Tuple[float, float]]:
    if not (math.isfinite(start) and math.isfinite(end)):
        return None
    start, end = max(float(start), 0.0), min(float(end), float(duration))
    return (start, end) if start < end else None


def clean_records(records: Iterable[Record], source: str, strict: bool = False) -> Tuple[List[Record], CleaningReport]:
    """Clean ``records`` the way the field does and report it.

    * an empty (whitespace-only) sentence: dropped (``empty_sentence``); one without a word
      (punctuation only, e.g. ``...``): dropped (``no_words``);
    * a duration that is not a finite positive number: dropped (``bad_duration``);
    * a start or end that is not finite: dropped (``bad_timestamps``);
    * ``end > duration`` -> ``end = duration`` (``clipped_end``); ``start < 0`` -> ``start = 0``
      (``clipped_start``);
    * then ``start >= end`` (an empty or reversed moment, or one wholly outside the video):
      dropped (``empty_moment``);
    * relevant windows beyond the first are clipped the same way; an empty one is removed
      (``dropped_windows``), the query kept.

    Args:
        records: the records of one file.
        source: name used in the report and in errors (usually the file path).
        strict: raise ``ValueError`` on the first query that would be dropped instead of dropping.

    Returns:
        (kept records in input order, :class:`CleaningReport`).

    Raises:
        ValueError: when ``strict`` and a query would be dropped, or when no query is left.
    """
    report = CleaningReport(source=source)
    kept: List[Record] = []
    for rec in records:
        report.total += 1
        tag = f"{rec.video_id}/{rec.query_id}" if rec.query_id else rec.video_id
        reason: Optional[str] = None
        start, end = rec.start, rec.end
        if not rec.sentence or not rec.sentence.strip():
            reason = "empty_sentence"
        elif not has_words(rec.sentence):
            reason = "no_words"
        elif not (isinstance(rec.duration, (int, float)) and math.isfinite(rec.duration) and rec.duration > 0):
            reason = "bad_duration"
        elif not (math.isfinite(start) and math.isfinite(end)):
            reason = "bad_timestamps"
        else:
            if end > rec.duration:
                report.note("clipped_end", tag)
                end = float(rec.duration)
            if start < 0:
                report.note("clipped_start", tag)
                start = 0.0
            if start >= end:
                reason = "empty_moment"
        if reason is not None:
            if strict:
                raise ValueError(f"{source}: query {tag} is invalid ({reason}: sentence={rec.sentence!r}, "
                                 f"duration={rec.duration}, moment=({rec.start}, {rec.end}))")
            report.note(reason, tag)
            continue
        windows: Tuple[Tuple[float, float], ...] = ()
        if len(rec.windows) > 1:
            others = [_clean_window(s, e, rec.duration) for s, e in rec.windows[1:]]
            if any(w is None for w in others):
                report.note("dropped_windows", tag, sum(w is None for w in others))
            others = [w for w in others if w is not None]
            if others:
                windows = ((float(start), float(end)), *others)
        kept.append(Record(rec.video_id, float(rec.duration), rec.sentence.strip(), float(start), float(end),
                           rec.query_id, windows))
    report.kept = len(kept)
    if not kept:
        raise ValueError(f"{source}: no valid query left after cleaning ({report.summary()})")
    return kept, report
