"""Readers and writers of the public annotation formats (docs/protocols.md, "Annotation files").

Readers return raw :class:`~fian_fast.data.records.Record` lists (uncleaned; see
:func:`~fian_fast.data.records.clean_records`); every malformed file raises ``ValueError`` naming
the file, the place and what was expected. Text is read as UTF-8 with or without a byte-order
mark, with LF or CRLF line ends. Writers produce exactly the public layouts, so that the
built-in synthetic data can exercise every reader end to end.

=====================  ==========================================================================
format                 layout
=====================  ==========================================================================
``charades_txt``       ``VID START END##sentence`` a line + ``Charades_v1_*.csv`` (``id``, ``length``)
``charades_json``      ``{vid: {"duration", "timestamps": [[s, e]], "sentences": [...]}}``
``activitynet``        same layout as ``charades_json`` (``train.json``, ``val_1.json``, ``val_2.json``)
``tacos``              ``{vid: {"timestamps": [[f0, f1]] (frames), "sentences", "fps", "num_frames"}}``
``lighthouse``         jsonl: ``{"qid", "query", "duration", "vid", "relevant_windows": [[s, e], ...]}``
=====================  ==========================================================================
"""
from __future__ import annotations

import csv
import json
import os
from typing import Dict, Iterable, List

from .records import Record

__all__ = [
    "FORMATS", "read_charades_txt", "read_charades_durations", "read_grounding_json", "read_tacos",
    "read_lighthouse", "write_charades_txt", "write_grounding_json", "write_tacos", "write_lighthouse",
    "read_annotations",
]

FORMATS = ("charades_txt", "charades_json", "activitynet", "tacos", "lighthouse")


def _open_text(path: str, what: str, newline=None):
    if not os.path.isfile(path):
        raise ValueError(f"{what} file not found: {path}")
    # utf-8-sig: spreadsheet programs and some editors save a byte-order mark first
    return open(path, "r", encoding="utf-8-sig", newline=newline)


def _load_json(path: str, what: str):
    with _open_text(path, what) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what} file {path} is not valid JSON: {e}") from None


def _number(value, path: str, where: str, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {where}: {name} should be a number, got {value!r}") from None


# --------------------------------------------------------------------------- Charades-STA txt
def read_charades_durations(csv_paths: Iterable[str]) -> Dict[str, float]:
    """Video durations (seconds) from Charades' ``Charades_v1_{train,test}.csv`` (columns ``id``, ``length``)."""
    durations: Dict[str, float] = {}
    for path in csv_paths:
        with _open_text(path, "Charades csv", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
            if not reader.fieldnames or "id" not in reader.fieldnames or "length" not in reader.fieldnames:
                raise ValueError(f"Charades csv {path}: expected columns 'id' and 'length', got {reader.fieldnames}")
            for row_no, row in enumerate(reader, start=2):
                durations[row["id"]] = _number(row["length"], path, f"line {row_no}", "length")
    return durations


def read_charades_txt(txt_path: str, durations: Dict[str, float]) -> List[Record]:
    """Charades-STA ``charades_sta_{train,test}.txt``: ``VID START END##sentence`` per line.

    Args:
        txt_path: the annotation file.
        durations: ``{video_id: seconds}`` (from :func:`read_charades_durations`).

    Raises:
        ValueError: a malformed line, or videos absent from ``durations`` (count and first id).
    """
    records: List[Record] = []
    missing: List[str] = []
    with _open_text(txt_path, "Charades-STA annotation") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            head, sep, sentence = line.partition("##")
            fields = head.split()
            if not sep or len(fields) != 3:
                raise ValueError(f"{txt_path}: line {line_no}: expected 'VID START END##sentence', got {line[:80]!r}")
            vid = fields[0]
            start = _number(fields[1], txt_path, f"line {line_no}", "start")
            end = _number(fields[2], txt_path, f"line {line_no}", "end")
            if vid not in durations:
                missing.append(vid)
                continue
            records.append(Record(vid, durations[vid], sentence.strip(), start, end, str(line_no)))
    if missing:
        raise ValueError(f"{txt_path}: {len(missing)} queries name videos absent from the Charades csv "
                         f"durations (first: {missing[0]!r})")
    return records


def write_charades_txt(records: Iterable[Record], txt_path: str, csv_path: str) -> None:
    """Write ``records`` as Charades-STA txt plus a Charades-style csv with ``id`` and ``length``."""
    records = list(records)
    with open(txt_path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(f"{r.video_id} {r.start:.2f} {r.end:.2f}##{r.sentence}\n")
    durations = {}
    for r in records:
        durations.setdefault(r.video_id, r.duration)
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "subject", "scene", "length"])
        for vid, d in durations.items():
            writer.writerow([vid, "S", "Room", f"{d:.2f}"])


# ------------------------------------------------------ Charades json / ActivityNet Captions json
def _entries(data, path: str, what: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a JSON object {{video_id: {{...}}}}, got {type(data).__name__}")
    return data


def read_grounding_json(path: str, what: str = "ActivityNet Captions") -> List[Record]:
    """``{vid: {"duration": s, "timestamps": [[start, end], ...], "sentences": [...]}}`` in seconds
    (ActivityNet Captions ``train.json``/``val_1.json``/``val_2.json`` and Charades-STA json)."""
    data = _entries(_load_json(path, what), path, what)
    records: List[Record] = []
    for vid, entry in data.items():
        where = f"video {vid!r}"
        if not isinstance(entry, dict) or not {"duration", "timestamps", "sentences"} <= set(entry):
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{what} {path}: {where}: expected keys duration, timestamps, sentences, got {keys}")
        stamps, sentences = entry["timestamps"], entry["sentences"]
        if len(stamps) != len(sentences):
            raise ValueError(f"{what} {path}: {where}: {len(stamps)} timestamps but {len(sentences)} sentences")
        duration = _number(entry["duration"], path, where, "duration")
        for i, (ts, sentence) in enumerate(zip(stamps, sentences)):
            if not isinstance(ts, (list, tuple)) or len(ts) != 2:
                raise ValueError(f"{what} {path}: {where}: timestamp {i} should be [start, end], got {ts!r}")
            records.append(Record(vid, duration, str(sentence), _number(ts[0], path, where, "start"),
                                  _number(ts[1], path, where, "end"), str(i)))
    return records


def write_grounding_json(records: Iterable[Record], path: str) -> None:
    """Write ``records`` in the ActivityNet Captions / Charades-STA json layout (seconds)."""
    data: Dict[str, dict] = {}
    for r in records:
        entry = data.setdefault(r.video_id, {"duration": round(r.duration, 3), "timestamps": [], "sentences": []})
        entry["timestamps"].append([round(r.start, 3), round(r.end, 3)])
        entry["sentences"].append(r.sentence)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


# ----------------------------------------------------------------------------------- TACoS
def read_tacos(path: str) -> List[Record]:
    """TACoS ``{vid: {"timestamps": [[f0, f1]], "sentences", "fps", "num_frames"}}``: timestamps in
    frames, seconds = frame / fps, duration = num_frames / fps."""
    data = _entries(_load_json(path, "TACoS"), path, "TACoS")
    records: List[Record] = []
    for vid, entry in data.items():
        where = f"video {vid!r}"
        need = {"timestamps", "sentences", "fps", "num_frames"}
        if not isinstance(entry, dict) or not need <= set(entry):
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"TACoS {path}: {where}: expected keys fps, num_frames, sentences, timestamps, got {keys}")
        fps = _number(entry["fps"], path, where, "fps")
        if fps <= 0:
            raise ValueError(f"TACoS {path}: {where}: fps should be > 0, got {fps}")
        duration = _number(entry["num_frames"], path, where, "num_frames") / fps
        if len(entry["timestamps"]) != len(entry["sentences"]):
            raise ValueError(f"TACoS {path}: {where}: {len(entry['timestamps'])} timestamps but "
                             f"{len(entry['sentences'])} sentences")
        for i, (ts, sentence) in enumerate(zip(entry["timestamps"], entry["sentences"])):
            if not isinstance(ts, (list, tuple)) or len(ts) != 2:
                raise ValueError(f"TACoS {path}: {where}: timestamp {i} should be [start_frame, end_frame], got {ts!r}")
            records.append(Record(vid, duration, str(sentence), _number(ts[0], path, where, "start") / fps,
                                  _number(ts[1], path, where, "end") / fps, str(i)))
    return records


def write_tacos(records: Iterable[Record], path: str, fps: float = 29.4) -> None:
    """Write ``records`` in the TACoS layout (frames at ``fps``)."""
    data: Dict[str, dict] = {}
    for r in records:
        entry = data.setdefault(r.video_id, {"timestamps": [], "sentences": [], "fps": fps,
                                             "num_frames": int(round(r.duration * fps))})
        entry["timestamps"].append([int(round(r.start * fps)), int(round(r.end * fps))])
        entry["sentences"].append(r.sentence)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


# ------------------------------------------------------------------------------- lighthouse
def read_lighthouse(path: str) -> List[Record]:
    """lighthouse / Moment-DETR jsonl (QVHighlights ``highlight_{train,val}_release.jsonl``):
    ``{"qid", "query", "duration", "vid", "relevant_windows": [[s, e], ...]}`` a line (other keys,
    such as ``saliency_scores``, are ignored). The first window is the record's moment; a query
    with several keeps them all in ``windows`` (see :mod:`fian_fast.data.windows`).

    Raises:
        ValueError: a line that is not JSON or lacks a key, a window that is not ``[start, end]``;
            a file whose lines have no ``relevant_windows`` at all (QVHighlights' test split is
            distributed without them) says so.
    """
    records: List[Record] = []
    with _open_text(path, "lighthouse jsonl") as f:
        lines = [(no, line) for no, line in enumerate(f, start=1) if line.strip()]
    objs = []
    for line_no, line in lines:
        try:
            objs.append((line_no, json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"lighthouse {path}: line {line_no} is not valid JSON: {e}") from None
    if objs and all(isinstance(o, dict) and "relevant_windows" not in o for _, o in objs):
        raise ValueError(f"lighthouse {path}: no line has relevant_windows, so it cannot be evaluated or trained on "
                         f"(QVHighlights distributes its test split without them: use --split val)")
    for line_no, obj in objs:
        where = f"line {line_no}"
        if not isinstance(obj, dict) or not {"query", "duration", "vid", "relevant_windows"} <= set(obj):
            raise ValueError(f"lighthouse {path}: {where}: expected keys qid, query, duration, vid, "
                             f"relevant_windows, got {sorted(obj) if isinstance(obj, dict) else obj!r}")
        windows = obj["relevant_windows"]
        if not isinstance(windows, list) or not windows or \
                not all(isinstance(w, (list, tuple)) and len(w) == 2 for w in windows):
            raise ValueError(f"lighthouse {path}: {where}: relevant_windows should be [[start, end], ...], "
                             f"got {windows!r}")
        pairs = tuple((_number(s, path, where, "start"), _number(e, path, where, "end")) for s, e in windows)
        records.append(Record(str(obj["vid"]), _number(obj["duration"], path, where, "duration"), str(obj["query"]),
                              pairs[0][0], pairs[0][1], str(obj.get("qid", line_no)),
                              pairs if len(pairs) > 1 else ()))
    return records


def write_lighthouse(records: Iterable[Record], path: str, windows: bool = True) -> None:
    """Write ``records`` as lighthouse jsonl (one query a line, every window of a record with
    several); ``windows=False`` leaves ``relevant_windows`` out, as QVHighlights' test file does."""
    with open(path, "w", encoding="utf-8") as f:
        for i, r in enumerate(records):
            obj = {"qid": i, "query": r.sentence, "duration": round(r.duration, 3), "vid": r.video_id}
            if windows:
                obj["relevant_windows"] = [[round(s, 3), round(e, 3)] for s, e in (r.windows or ((r.start, r.end),))]
            f.write(json.dumps(obj) + "\n")


# ------------------------------------------------------------------------- public layouts
#: File names per dataset and split, in order of preference (first existing wins); docs/cli.md
#: names the distribution each comes from.
LAYOUTS = {
    "charades": {  # 2D-TAN / the Charades-STA release: txt + Charades csv; or json
        "train": [("charades_txt", "charades_sta_train.txt"), ("charades_json", "charades_sta_train.json"),
                  ("charades_json", "train.json")],
        "test": [("charades_txt", "charades_sta_test.txt"), ("charades_json", "charades_sta_test.json"),
                 ("charades_json", "test.json")],
    },
    "activitynet": {  # ActivityNet Captions release names, then 2D-TAN's names of the same files
        "train": [("activitynet", "train.json")],
        "val": [("activitynet", "val_1.json"), ("activitynet", "val.json")],
        "test": [("activitynet", "val_2.json"), ("activitynet", "test.json")],
    },
    "tacos": {  # 2D-TAN
        "train": [("tacos", "train.json")], "val": [("tacos", "val.json")], "test": [("tacos", "test.json")],
    },
    "lighthouse": {  # QVHighlights as distributed with Moment-DETR, then shorter names
        split: [("lighthouse", f"highlight_{split}_release.jsonl"), ("lighthouse", f"{split}.jsonl"),
                ("lighthouse", f"{split}_release.jsonl")]
        for split in ("train", "val", "test")
    },
}
# Charades-STA has no validation split; the field validates on its test split.
LAYOUTS["charades"]["val"] = LAYOUTS["charades"]["test"]


def resolve_annotation_file(dataset: str, data_dir: str, split: str):
    """``(format, path)`` of ``split`` of ``dataset`` under ``data_dir`` (public file names)."""
    if dataset not in LAYOUTS:
        raise ValueError(f"dataset should be one of {sorted(LAYOUTS)}, got {dataset!r}")
    if split not in LAYOUTS[dataset]:
        raise ValueError(f"split should be one of {sorted(LAYOUTS[dataset])} for {dataset}, got {split!r}")
    if not os.path.isdir(data_dir):
        raise ValueError(f"data directory not found: {data_dir}")
    options = LAYOUTS[dataset][split]
    for fmt, name in options:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return fmt, path
    names = " or ".join(name for _, name in options)
    raise ValueError(f"{dataset} {split} annotations not found in {data_dir}: expected {names}")


def read_annotations(dataset: str, data_dir: str, split: str) -> tuple:
    """Raw records of ``split`` of ``dataset`` stored under its public file names in ``data_dir``.

    Returns ``(records, path)``. Charades txt durations come from ``Charades_v1_train.csv`` and
    ``Charades_v1_test.csv`` in the same folder (whichever exist).
    """
    fmt, path = resolve_annotation_file(dataset, data_dir, split)
    if fmt == "charades_txt":
        csvs = [os.path.join(data_dir, n) for n in ("Charades_v1_train.csv", "Charades_v1_test.csv")]
        csvs = [p for p in csvs if os.path.isfile(p)]
        if not csvs:
            raise ValueError(f"Charades-STA durations not found in {data_dir}: expected Charades_v1_train.csv "
                             f"and/or Charades_v1_test.csv (column 'length')")
        return read_charades_txt(path, read_charades_durations(csvs)), path
    if fmt in ("charades_json", "activitynet"):
        return read_grounding_json(path, "Charades-STA" if fmt == "charades_json" else "ActivityNet Captions"), path
    if fmt == "tacos":
        return read_tacos(path), path
    return read_lighthouse(path), path
