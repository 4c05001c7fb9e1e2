"""Readers of the public annotation formats, on synthetic data written in each format, and the
cleaning step."""
import json

import pytest

from fian_fast.data import (Record, apply_windows, clean_records, make_synthetic, read_annotations,
                            read_charades_durations,
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


# ------------------------------------------------------------- files as they are distributed
def _qvh_line(qid, vid, query, windows=None, duration=150):
    obj = {"qid": qid, "query": query, "duration": duration, "vid": vid}
    if windows is not None:
        obj.update(relevant_windows=windows, relevant_clip_ids=[0, 1], saliency_scores=[[1, 2, 3], [2, 2, 2]])
    return json.dumps(obj) + "\n"


@pytest.fixture
def qvhighlights(tmp_path):
    """QVHighlights under its own names: train and val with windows (some several), test without."""
    (tmp_path / "highlight_train_release.jsonl").write_text(
        _qvh_line(1, "NUsG9BgSes0_210.0_360.0", "a man\u2019s dog runs", [[2, 10], [40, 58], [100, 104]])
        + _qvh_line(2, "j7rJstUseKg_360.0_510.0", "chef cooks", [[0, 20]]))
    (tmp_path / "highlight_val_release.jsonl").write_text(
        _qvh_line(3, "RoripwjYFp8_60.0_210.0", "kids play", [[60, 70], [140, 160]]))
    (tmp_path / "highlight_test_release.jsonl").write_text(_qvh_line(4, "x_0.0_150.0", "a query"))
    return tmp_path


def test_qvhighlights_release_names_and_several_windows(qvhighlights):
    fmt, path = resolve_annotation_file("lighthouse", str(qvhighlights), "train")
    assert (fmt, path.rsplit("/", 1)[1]) == ("lighthouse", "highlight_train_release.jsonl")
    recs, _ = read_annotations("lighthouse", str(qvhighlights), "train")
    assert recs[0].windows == ((2.0, 10.0), (40.0, 58.0), (100.0, 104.0)) and (recs[0].start, recs[0].end) == (2, 10)
    assert recs[1].windows == () and recs[1].query_id == "2"
    kept, rep = clean_records(recs, "t")
    assert kept[0].windows == recs[0].windows
    first = apply_windows(kept, rep, "first")
    assert [r.windows for r in first] == [(), ()] and rep.counts["several_windows"] == 1
    assert rep.counts["extra_windows"] == 2 and "first window kept, the others ignored" in rep.summary()


def test_several_windows_each_expands_training_and_keeps_evaluation(qvhighlights):
    recs, _ = read_annotations("lighthouse", str(qvhighlights), "train")
    kept, rep = clean_records(recs, "t")
    train = apply_windows(kept, rep, "each", expand=True)
    assert [(r.query_id, r.start, r.end) for r in train] == [("1#0", 2, 10), ("1#1", 40, 58), ("1#2", 100, 104),
                                                             ("2", 0, 20)]
    assert "one training query per window (+2 queries)" in rep.summary()
    kept, rep = clean_records(recs, "v")
    ev = apply_windows(kept, rep, "each", expand=False)
    assert len(ev) == 2 and len(ev[0].windows) == 3 and "best-matching window" in rep.summary()
    with pytest.raises(ValueError, match=r"apply_windows: policy should be one of \('first', 'each'\), got 'all'"):
        apply_windows(kept, rep, "all")


def test_qvhighlights_test_split_has_no_windows(qvhighlights):
    with pytest.raises(ValueError, match=r"no line has relevant_windows.* use --split val"):
        read_annotations("lighthouse", str(qvhighlights), "test")


def test_extra_windows_are_cleaned(tmp_path):
    p = tmp_path / "val.jsonl"
    p.write_text(_qvh_line(1, "v", "q", [[10, 20], [140, 170], [160, 170], [30, float("nan")]]))
    kept, rep = clean_records(read_lighthouse(str(p)), "f")
    assert kept[0].windows == ((10, 20), (140, 150)) and rep.counts["dropped_windows"] == 2


def test_activitynet_2dtan_names(tmp_path):
    for name in ("train.json", "val.json", "test.json"):
        (tmp_path / name).write_text(json.dumps({"v_" + name[:2]: {"duration": 9, "timestamps": [[1, 2]],
                                                                    "sentences": ["x"]}}))
    assert read_annotations("activitynet", str(tmp_path), "val")[0][0].video_id == "v_va"
    assert read_annotations("activitynet", str(tmp_path), "test")[0][0].video_id == "v_te"
    (tmp_path / "val_1.json").write_text(json.dumps({"v_one": {"duration": 9, "timestamps": [[1, 2]],
                                                               "sentences": ["x"]}}))
    recs, path = read_annotations("activitynet", str(tmp_path), "val")  # the release's own name first
    assert recs[0].video_id == "v_one" and path.endswith("val_1.json")


def test_byte_order_mark_and_crlf(tmp_path):
    (tmp_path / "Charades_v1_test.csv").write_bytes("\ufeffid,subject,scene,length\r\nAO8RW,S,R,33.67\r\n"
                                                    .encode("utf-8"))
    (tmp_path / "charades_sta_test.txt").write_bytes("\ufeffAO8RW 0.0 6.9##a person sits.\r\nAO8RW 1 2##he eats.\r\n"
                                                     .encode("utf-8"))
    recs, _ = read_annotations("charades", str(tmp_path), "test")
    assert [(r.video_id, r.duration, r.sentence) for r in recs] == [("AO8RW", 33.67, "a person sits."),
                                                                     ("AO8RW", 33.67, "he eats.")]
    (tmp_path / "test.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"s1.avi": {"timestamps": [[0, 30]], "sentences": ["x"], "fps": 30, "num_frames": 300}}).encode())
    assert read_tacos(str(tmp_path / "test.json"))[0].end == 1.0
    (tmp_path / "val.jsonl").write_bytes(b"\xef\xbb\xbf" + _qvh_line(1, "v", "q", [[1, 2]]).replace("\n", "\r\n")
                                         .encode() * 2)
    assert len(read_lighthouse(str(tmp_path / "val.jsonl"))) == 2


def test_broken_inputs_are_refused_or_counted(tmp_path):
    whole = json.dumps({"v1": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["a"]}})
    (tmp_path / "train.json").write_text(whole[:-7])  # truncated, as an interrupted download leaves it
    with pytest.raises(ValueError, match=r"train.json is not valid JSON"):
        read_grounding_json(str(tmp_path / "train.json"))
    (tmp_path / "t.txt").write_text("AO8RW 0.0 6.9##ok\nAO8RW 0.0 6.9 no separator\n")
    with pytest.raises(ValueError, match=r"t.txt: line 2: expected 'VID START END##sentence'"):
        read_charades_txt(str(tmp_path / "t.txt"), {"AO8RW": 30.0})
    (tmp_path / "c.csv").write_text("id,length\nA,nan\nB,30\n")
    (tmp_path / "n.txt").write_text("A 0 1##nan duration\nB 5 2##start after end\nB 1 2##\nB 1 2##...\nB 1 3##ok\n")
    kept, rep = clean_records(read_charades_txt(str(tmp_path / "n.txt"),
                                                read_charades_durations([str(tmp_path / "c.csv")])), "n.txt")
    assert [r.sentence for r in kept] == ["ok"]
    assert rep.counts == {"bad_duration": 1, "empty_moment": 1, "empty_sentence": 1, "no_words": 1}
    assert "no_words: 1 (e.g. B/4)" in rep.summary()
    (tmp_path / "nan.json").write_text('{"v": {"duration": NaN, "timestamps": [[0, 1]], "sentences": ["a b"]}}')
    with pytest.raises(ValueError, match=r"no valid query left .*bad_duration: 1"):
        clean_records(read_grounding_json(str(tmp_path / "nan.json")), "nan.json")
