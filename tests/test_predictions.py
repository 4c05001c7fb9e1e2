"""Prediction files in the QVHighlights / Moment-DETR submission format (``evaluate --predictions``,
``predict --queries``), re-scored by an evaluator written here from the format's public definition,
and the Python predictor behind them."""
import json
import os

import numpy as np
import pytest
import torch

from fian_fast import Predictor
from fian_fast.cli import main
from fian_fast.data import make_synthetic, write_synthetic
from fian_fast.predictions import read_queries, write_jsonl
from untrained_checkpoint import write_checkpoint


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """QVHighlights-layout files of the synthetic data, two val queries with a second window, and
    an untrained checkpoint that knows their words."""
    root = tmp_path_factory.mktemp("qvh")
    data = make_synthetic(seed=7, num_videos=(4, 6, 3), video_dim=12)
    paths = write_synthetic(data, str(root))
    val = os.path.join(paths["lighthouse"], "highlight_val_release.jsonl")
    lines = [json.loads(line) for line in open(val)]
    for k in (0, 3):
        s, e = lines[k]["relevant_windows"][0]
        lines[k]["relevant_windows"].append([max(0.0, s - 6.0), max(0.5, s - 2.0)])
    with open(val, "w") as f:
        f.writelines(json.dumps(o) + "\n" for o in lines)
    paths["lines"] = lines
    paths["checkpoint"] = str(root / "ckpt.pt")
    write_checkpoint(paths["checkpoint"], [o["query"] for o in lines], video_dim=12, dataset="lighthouse")
    return paths


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------- an evaluator from the format's public definition
def _iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def rescore(rows, thresholds, strict=False):
    """R1@m (the top window's IoU with its best-matching relevant window, a hit at ``>= m``, or
    ``> m`` with ``strict``) and mIoU (the mean of that IoU), in percent, rounded to 2 decimals."""
    ious = [max(_iou(row["pred_relevant_windows"][0][:2], g) for g in row["relevant_windows"]) for row in rows]
    out = {f"R1@{m:g}": round(100.0 * sum((i > m) if strict else (i >= m) for i in ious) / len(ious), 2)
           for m in thresholds}
    out["mIoU"] = round(100.0 * sum(ious) / len(ious), 2)
    return out


@pytest.mark.parametrize("protocol,windows", [("moment_detr", "each"), ("2dtan", "first")])
def test_evaluate_predictions_rescore_to_the_same_figures(split, tmp_path, capsys, protocol, windows):
    out_file = tmp_path / "preds.jsonl"
    data = ["--dataset", "lighthouse", "--data-dir", split["lighthouse"], "--features", split["features_npy"]]
    code, out, err = run(["evaluate", "--checkpoint", split["checkpoint"], *data, "--windows", windows, "--protocol",
                          protocol, "--json", "--predictions", str(out_file)], capsys)
    assert code == 0, err
    assert f"wrote {len(split['lines'])} predictions to {out_file}" in err
    metrics = json.loads(out)["metrics"]
    rows = [json.loads(line) for line in open(out_file)]
    assert [(r["qid"], r["query"], r["vid"], r["duration"]) for r in rows] == \
        [(o["qid"], o["query"], o["vid"], o["duration"]) for o in split["lines"]]
    for row, line in zip(rows, split["lines"]):
        windows_given = row["pred_relevant_windows"]
        assert 1 <= len(windows_given) <= 10 and all(len(w) == 3 for w in windows_given)
        assert all(0 <= s <= e <= row["duration"] + 1e-4 for s, e, _ in windows_given)
        scores = [c for _, _, c in windows_given]
        assert scores == sorted(scores, reverse=True)
        assert len(row["relevant_windows"]) == (len(line["relevant_windows"]) if windows == "each" else 1)
        np.testing.assert_allclose(row["relevant_windows"][0], line["relevant_windows"][0], atol=1e-5)
    want = rescore(rows, (0.3, 0.5, 0.7), strict=protocol == "2dtan")
    assert {k: metrics[k] for k in want} == want
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_predict_queries_file(split, tmp_path, capsys):
    queries = tmp_path / "queries.jsonl"
    lines = [dict(o) for o in split["lines"]]
    for o in lines[1:]:
        del o["relevant_windows"]          # a test split: no ground truth
    del lines[2]["qid"]
    with open(queries, "w") as f:
        f.writelines(json.dumps(o) + "\n" for o in lines)
    out_file = tmp_path / "preds.jsonl"
    argv = ["predict", "--checkpoint", split["checkpoint"], "--features", split["features_npy"], "--queries",
            str(queries), "--top-n", "3", "--batch-size", "4"]
    code, out, err = run([*argv, "--predictions", str(out_file)], capsys)
    assert code == 0, err
    assert f"wrote {len(lines)} predictions" in err
    rows = [json.loads(line) for line in open(out_file)]
    assert [r["qid"] for r in rows] == [o.get("qid", 3) for o in lines]          # line 3 has no qid
    assert rows[0]["relevant_windows"] == lines[0]["relevant_windows"] and "relevant_windows" not in rows[1]
    for row, line in zip(rows, lines):
        assert (row["query"], row["vid"], row["duration"]) == (line["query"], line["vid"], line["duration"])
        assert 1 <= len(row["pred_relevant_windows"]) <= 3
        assert all(0 <= s <= e <= row["duration"] + 1e-4 for s, e, _ in row["pred_relevant_windows"])
    # without --predictions the same lines go to stdout; batching does not change them
    code, out, err = run([*argv[:-2], "--batch-size", "1"], capsys)
    assert code == 0, err
    again = [json.loads(line) for line in out.splitlines()]
    for a, b in zip(rows, again):
        np.testing.assert_allclose(a["pred_relevant_windows"], b["pred_relevant_windows"], atol=1e-4)
    # the single-query form gives the first line's moments
    feats = str(tmp_path / "v.npy")
    np.save(feats, np.load(os.path.join(split["features_npy"], lines[0]["vid"] + ".npy")))
    code, out, err = run(["predict", "--checkpoint", split["checkpoint"], "--features", feats, "--duration",
                          str(lines[0]["duration"]), "--query", lines[0]["query"], "--top-n", "3", "--json"], capsys)
    assert code == 0, err
    single = [[s["start"], s["end"], s["score"]] for s in json.loads(out)["segments"]]
    np.testing.assert_allclose(single, rows[0]["pred_relevant_windows"], atol=2e-3)


@pytest.mark.parametrize("case", ["no_duration", "predictions_with_query", "duration_with_queries", "missing_vid",
                                  "bad_line", "no_query_file"])
def test_predict_errors_are_one_line(split, tmp_path, capsys, case):
    base = ["predict", "--checkpoint", split["checkpoint"], "--features", split["features_npy"]]
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query": "a door", "vid": "syn_val_00000", "duration": 31.5}) + "\n")
    argv, msg = {
        "no_duration": (base + ["--query", "a door"], "--duration (seconds) is needed with --query"),
        "predictions_with_query": (base + ["--query", "a door", "--duration", "5", "--predictions", "x.jsonl"],
                                   "--predictions goes with --queries"),
        "duration_with_queries": (base + ["--queries", str(queries), "--duration", "5"],
                                  "--duration goes with --query"),
        "missing_vid": (base + ["--queries", str(tmp_path / "m.jsonl")], "annotation ids missing (first: 'nope')"),
        "bad_line": (base + ["--queries", str(tmp_path / "b.jsonl")], "line 2: duration should be > 0 seconds"),
        "no_query_file": (base + ["--queries", str(tmp_path / "none.jsonl")], "query file not found"),
    }[case]
    (tmp_path / "m.jsonl").write_text(json.dumps({"query": "a door", "vid": "nope", "duration": 3}) + "\n")
    (tmp_path / "b.jsonl").write_text(queries.read_text() + json.dumps({"query": "a", "vid": "v", "duration": 0}))
    code, out, err = run(argv, capsys)
    assert code == 1 and err.startswith("fian-fast: error:") and msg in err, err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ the predictor
@pytest.fixture(scope="module")
def predictor(split):
    return Predictor.from_checkpoint(split["checkpoint"])


def test_predictor_one_video_and_many(predictor):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 12)).astype(np.float32), rng.standard_normal((9, 12)).astype(np.float32)
    sentences = ["the person opens the door", "the person drinks a cup of coffee.", "someone zzyzx laughs"]
    shared = predictor.predict(sentences, a, 31.5, top_n=4)
    assert len(shared) == 3 and all(1 <= len(m) <= 4 for m in shared)
    for moments in shared:
        assert [c for _, _, c in moments] == sorted((c for _, _, c in moments), reverse=True)
        assert all(0 <= s <= e <= 31.5 + 1e-4 and 0 < c < 1 for s, e, c in moments)
    # one video per sentence (a tensor works too), batched or not: the same moments
    per = predictor.predict(sentences, [a, torch.from_numpy(b), a], [31.5, 12.0, 31.5], top_n=4)
    np.testing.assert_allclose(per[0], shared[0], atol=1e-5)
    np.testing.assert_allclose(per[2], shared[2], atol=1e-5)
    alone = predictor.predict(sentences[1], b, 12.0, top_n=4)
    np.testing.assert_allclose(alone[0], per[1], atol=1e-5)
    # the model's own predict on the same inputs
    from fian_fast.data.features import resample

    video, length = resample(b, predictor.cfg.num_frames)
    words = predictor.vocab.encode(sentences[1], predictor.cfg.max_query_length)
    pred = predictor.model.predict(torch.from_numpy(video)[None], torch.tensor([length]), words[None],
                                   torch.tensor([words.shape[0]]), torch.tensor([12.0]), top_n=4)
    keep = pred.indices[0] >= 0
    np.testing.assert_allclose(alone[0], torch.cat([pred.segments[0][keep], pred.scores[0][keep, None]], 1),
                               atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(queries=[]), "queries should be a sentence or a non-empty sequence"),
    (dict(queries=["a door", 3]), r"queries\[1\] should be a str, got int"),
    (dict(queries=["a door", "  "]), r"queries\[1\] has no words"),
    (dict(features=np.zeros((5, 7))), r"features should be \[T, video_dim=12\] with T >= 1, got shape \(5, 7\)"),
    (dict(features=np.zeros((0, 12))), r"got shape \(0, 12\)"),
    (dict(features=np.full((5, 12), np.nan)), "features should be finite, got 60 non-finite values of 60"),
    (dict(features=[np.zeros((5, 12))]), r"one \[T, D\] array or one per query \(2\), got 1 arrays"),
    (dict(features="v.npy"), "one per query"),
    (dict(duration=0.0), "duration should be finite and > 0 seconds, got 0.0"),
    (dict(duration=float("inf")), "duration should be finite and > 0 seconds, got inf"),
    (dict(duration=[3.0, 4.0]), "duration should be one number"),
    (dict(features=[np.zeros((5, 12))] * 2, duration=3.0), "a sequence of 2 numbers, one per features array"),
    (dict(features=[np.zeros((5, 12))] * 2, duration=[3.0, -1.0]), "got -1.0 at index 1"),
    (dict(top_n=0), "Predictor.predict: top_n should be a positive int, got 0"),
    (dict(nms_threshold=1.5), r"Predictor.predict: nms_threshold should be in \[0, 1\], got 1.5"),
])
def test_predictor_bad_inputs(predictor, kwargs, match):
    args = dict(queries=["a door", "the person"], features=np.zeros((5, 12), np.float32), duration=10.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        predictor.predict(args.pop("queries"), args.pop("features"), args.pop("duration"), **args)


def test_predictor_checks_what_it_is_given(predictor):
    with pytest.raises(ValueError, match="Predictor: model should be a FIAN, got str"):
        Predictor("model", predictor.vocab)
    with pytest.raises(ValueError, match="Predictor: batch_size should be a positive int, got 0"):
        Predictor(predictor.model, predictor.vocab, batch_size=0)
    with pytest.raises(ValueError, match="checkpoint not found"):
        Predictor.from_checkpoint("/nonexistent/best.pt")


# ------------------------------------------------------------------------------ the file helpers
def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "p.jsonl"
    assert write_jsonl(str(path), [{"qid": 1}, {"qid": 2}]) == 2
    assert path.read_text() == '{"qid": 1}\n{"qid": 2}\n'
    with pytest.raises(ValueError):                         # NaN is not JSON: nothing is replaced
        write_jsonl(str(path), [{"qid": 3}, {"qid": float("nan")}])
    assert path.read_text() == '{"qid": 1}\n{"qid": 2}\n' and os.listdir(tmp_path) == ["p.jsonl"]
    with pytest.raises(ValueError, match="does not exist"):
        write_jsonl(str(tmp_path / "no" / "p.jsonl"), [])


@pytest.mark.parametrize("text,match", [
    ("{oops\n", "line 1 is not valid JSON"),
    ('{"query": "a", "vid": "v"}\n', "line 1: expected an object with query, vid and duration"),
    ('{"query": " ", "vid": "v", "duration": 3}\n', "query should be a non-empty string"),
    ('{"query": "a", "vid": "v", "duration": "3"}\n', "duration should be a finite number"),
    ('{"query": "a", "vid": "v", "duration": 3, "relevant_windows": [1, 2]}\n', r"relevant_windows should be \[\["),
    ("\n", "no query in the file"),
])
def test_read_queries_errors(tmp_path, text, match):
    (tmp_path / "q.jsonl").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_queries(str(tmp_path / "q.jsonl"))


def test_read_queries_ids(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"query": "a", "vid": 7, "duration": 3}\n\n'
                                      '{"qid": "x1", "query": "b", "vid": "v", "duration": 2.5, '
                                      '"relevant_windows": [[0, 1]]}\n')
    a, b = read_queries(str(tmp_path / "q.jsonl"))
    assert (a.qid, a.vid, a.relevant_windows) == (1, "7", None)
    assert (b.qid, b.duration, b.relevant_windows) == ("x1", 2.5, ((0.0, 1.0),))
