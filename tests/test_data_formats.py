"""Readers of the public annotation formats, on synthetic data written in each format, and the
cleaning step."""
import json

import pytest

from fian_fast.data import (Record, clean_records, make_synthetic, read_annotations, read_charades_durations,
                            read_charades_txt, read_grounding_json, read_lighthouse, read_tacos, write_synthetic)
from fian_fast.data.formats import resolve_annotation_file


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    data = make_synthetic(seed=3, num_videos=(12, 4, 5), video_dim=8)
    root = tmp_path_factory.mktemp("syn")
    return data, write_synthetic(data, str(root))


def _same(a, b, tol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.video_id == y.video_id and x.sentence == y.sentence
        assert abs(x.duration - y.duration) <= tol
        assert abs(x.start - y.start) <= tol and abs(x.end - y.end) <= tol


@pytest.mark.parametrize("dataset,folder,split,source", [
    ("charades", "charades_txt", "test", "test"),
    ("charades", "charades_json", "test", "test"),
    ("charades", "charades_txt", "train", "train+val"),
    ("activitynet", "activitynet", "train", "train"),
    ("activitynet", "activitynet", "val", "val"),
    ("activitynet", "activitynet", "test", "test"),
    ("tacos", "tacos", "val", "val"),
    ("tacos", "tacos", "test", "test"),
    ("lighthouse", "lighthouse", "train", "train"),
], ids=lambda v: str(v))
def test_round_trip_every_format(written, dataset, folder, split, source):
    data, paths = written
    want = data.splits["train"] + data.splits["val"] if source == "train+val" else data.splits[source]
    got, _ = read_annotations(dataset, paths[folder], split)
    # synthetic times are multiples of 0.5 s: every format stores them exactly
    _same(got, want, tol=1e-6)


def test_charades_txt_line_and_csv(tmp_path):
    (tmp_path / "a.txt").write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\n\nXYZ01 1.5 3##he sits.\n")
    (tmp_path / "c.csv").write_text("id,subject,scene,length\nAO8RW,S,R,33.67\nXYZ01,S,R,10\n")
    recs = read_charades_txt(str(tmp_path / "a.txt"), read_charades_durations([str(tmp_path / "c.csv")]))
    assert recs[0] == Record("AO8RW", 33.67, "a person is putting a book on a shelf.", 0.0, 6.9, "1")
    assert recs[1].video_id == "XYZ01" and recs[1].duration == 10.0 and recs[1].query_id == "3"


def test_charades_errors(tmp_path):
    (tmp_path / "a.txt").write_text("AO8RW 0.0##no end\n")
    with pytest.raises(ValueError, match=r"line 1: expected 'VID START END##sentence'"):
        read_charades_txt(str(tmp_path / "a.txt"), {"AO8RW": 3.0})
    (tmp_path / "b.txt").write_text("AO8RW 0.0 1.0##x\nNOPE1 0 1##y\nNOPE2 0 1##z\n")
    with pytest.raises(ValueError, match=r"2 queries name videos absent .* \(first: 'NOPE1'\)"):
        read_charades_txt(str(tmp_path / "b.txt"), {"AO8RW": 3.0})
    (tmp_path / "c.csv").write_text("id,duration\nAO8RW,3\n")
    with pytest.raises(ValueError, match=r"expected columns 'id' and 'length'"):
        read_charades_durations([str(tmp_path / "c.csv")])


def test_json_errors(tmp_path):
    p = tmp_path / "train.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_grounding_json(str(p))
    p.write_text(json.dumps({"v1": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["a", "b"]}}))
    with pytest.raises(ValueError, match="1 timestamps but 2 sentences"):
        read_grounding_json(str(p))
    p.write_text(json.dumps({"v1": {"timestamps": [[0, 1]], "sentences": ["a"]}}))
    with pytest.raises(ValueError, match="expected keys duration, timestamps, sentences"):
        read_grounding_json(str(p))
    with pytest.raises(ValueError, match="file not found"):
        read_grounding_json(str(tmp_path / "missing.json"))


def test_tacos_frames_to_seconds(tmp_path):
    p = tmp_path / "test.json"
    p.write_text(json.dumps({"s17-d69.avi": {"timestamps": [[224, 358]], "sentences": ["x"], "fps": 29.4,
                                             "num_frames": 12438}}))
    (r,) = read_tacos(str(p))
    assert r.start == pytest.approx(224 / 29.4) and r.end == pytest.approx(358 / 29.4)
    assert r.duration == pytest.approx(12438 / 29.4)


def test_lighthouse_first_window(tmp_path):
    p = tmp_path / "val.jsonl"
    p.write_text(json.dumps({"qid": 7, "query": "q", "duration": 150, "vid": "abc",
                             "relevant_windows": [[10, 20], [30, 40]]}) + "\n")
    (r,) = read_lighthouse(str(p))
    assert (r.video_id, r.start, r.end, r.query_id) == ("abc", 10.0, 20.0, "7")


def test_layout_messages(tmp_path):
    with pytest.raises(ValueError, match=r"tacos test annotations not found .* expected test.json"):
        resolve_annotation_file("tacos", str(tmp_path), "test")
    with pytest.raises(ValueError, match=r"expected val_1.json or val.json"):
        resolve_annotation_file("activitynet", str(tmp_path), "val")
    (tmp_path / "charades_sta_test.txt").write_text("A 0 1##x\n")
    with pytest.raises(ValueError, match=r"Charades_v1_train.csv"):
        read_annotations("charades", str(tmp_path), "test")


def test_cleaning_counts_and_reasons():
    recs = [
        Record("a", 10.0, "ok", 1.0, 2.0, "0"),
        Record("a", 10.0, "end past the video", 8.0, 12.5, "1"),      # clipped_end
        Record("a", 10.0, "start before zero", -1.0, 3.0, "2"),       # clipped_start
        Record("a", 10.0, "outside", 11.0, 12.0, "3"),                # clipped then empty -> dropped
        Record("a", 10.0, "reversed", 5.0, 4.0, "4"),                 # empty_moment
        Record("a", 10.0, "   ", 1.0, 2.0, "5"),                      # empty_sentence
        Record("b", 0.0, "zero duration", 0.0, 1.0, "6"),             # bad_duration
        Record("a", 10.0, "nan", float("nan"), 1.0, "7"),             # bad_timestamps
        Record("a", 10.0, "point", 3.0, 3.0, "8"),                    # empty_moment
    ]
    kept, rep = clean_records(recs, "f.json")
    assert [r.query_id for r in kept] == ["0", "1", "2"]
    assert kept[1].end == 10.0 and kept[2].start == 0.0
    assert rep.total == 9 and rep.kept == 3 and rep.dropped == 6
    assert rep.counts == {"clipped_end": 2, "clipped_start": 1, "empty_moment": 3, "empty_sentence": 1,
                          "bad_duration": 1, "bad_timestamps": 1}
    assert rep.examples["empty_moment"] == "a/3"
    assert "kept 3 of 9" in rep.summary() and "dropped 6" in rep.summary()


def test_cleaning_strict_and_empty():
    with pytest.raises(ValueError, match=r"query a/1 is invalid \(empty_moment"):
        clean_records([Record("a", 5.0, "x", 1, 2, "0"), Record("a", 5.0, "y", 3, 3, "1")], "f", strict=True)
    with pytest.raises(ValueError, match="no valid query left"):
        clean_records([Record("a", 5.0, "", 1, 2, "0")], "f")
