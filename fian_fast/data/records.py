"""The common annotation record of every dataset format, and the field's cleaning step.

A :class:`Record` is one query: a video id, the video's duration in seconds, the sentence and the
ground-truth moment ``(start, end)`` in seconds. Every reader in :mod:`fian_fast.data.formats`
returns records, then :func:`clean_records` applies the cleaning the field uses (PROTOCOLS.md):
clip ``end`` to the duration and ``start`` to 0, drop queries whose moment is empty
(``start >= end``) and queries with an empty sentence or a non-positive duration. What was changed
or dropped is counted, with an example of each, in a :class:`CleaningReport`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

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
    """

    video_id: str
    duration: float
    sentence: str
    start: float
    end: float
    query_id: str = ""

    @property
    def fraction(self) -> Tuple[float, float]:
        """``(start, end) / duration``: the moment as fractions of the video, in [0, 1] once cleaned."""
        return (self.start / self.duration, self.end / self.duration)


@dataclass
class CleaningReport:
    """What :func:`clean_records` did to one file's records.

    ``counts`` maps a reason to how many queries it concerned; ``examples`` keeps the first query
    id of each reason. Reasons ``clipped_end`` and ``clipped_start`` change a query; every other
    reason drops it.
    """

    source: str
    total: int = 0
    kept: int = 0
    counts: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, str] = field(default_factory=dict)

    DROP_REASONS = ("empty_sentence", "bad_duration", "bad_timestamps", "empty_moment")

    def note(self, reason: str, example: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.examples.setdefault(reason, example)

    @property
    def dropped(self) -> int:
        return sum(self.counts.get(r, 0) for r in self.DROP_REASONS)

    def summary(self) -> str:
        """One line: ``source: kept K of N queries; dropped D (reason: n, e.g. id; ...); clipped ...``."""
        parts = [f"{self.source}: kept {self.kept} of {self.total} queries"]
        drops = [f"{r}: {self.counts[r]} (e.g. {self.examples[r]})" for r in self.DROP_REASONS if r in self.counts]
        if drops:
            parts.append(f"dropped {self.dropped} ({'; '.join(drops)})")
        clips = [f"{r}: {self.counts[r]}" for r in ("clipped_end", "clipped_start") if r in self.counts]
        if clips:
            parts.append(f"clipped ({', '.join(clips)})")
        return "; ".join(parts)


def clean_records(records: Iterable[Record], source: str, strict: bool = False) -> Tuple[List[Record], CleaningReport]:
    """Clean ``records`` the way the field does and report it.

    * an empty (whitespace-only) sentence: dropped (``empty_sentence``);
    * a duration that is not a finite positive number: dropped (``bad_duration``);
    * a start or end that is not finite: dropped (``bad_timestamps``);
    * ``end > duration`` -> ``end = duration`` (``clipped_end``); ``start < 0`` -> ``start = 0``
      (``clipped_start``);
    * then ``start >= end`` (an empty or reversed moment, or one wholly outside the video):
      dropped (``empty_moment``).

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
        kept.append(Record(rec.video_id, float(rec.duration), rec.sentence.strip(), float(start), float(end), rec.query_id))
    report.kept = len(kept)
    if not kept:
        raise ValueError(f"{source}: no valid query left after cleaning ({report.summary()})")
    return kept, report
