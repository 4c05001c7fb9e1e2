"""Data loader throughput beside the model's training step at the same batch size.

The reported ratio is ``train step seconds / loader seconds per batch``: above 1 the loader
produces batches faster than the model consumes them, so it is not the bottleneck.

* synthetic preset (in-memory features), batch 32, CPU;
* Charades-like HDF5 features (1024-d, 60-200 clips per video, resampled to 64 frames), batch 64,
  the loader in the main process and with 2 workers, against the charades-preset step on the CPU
  (reference) and, with a GPU, the fused step on CUDA with bf16 autocast.
"""
import itertools
import time

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fian_fast import FIAN, FIANConfig
from fian_fast.data import GroundingDataset, Record, Vocabulary, collate, load_split, open_features
from fian_fast.data.text import GloveText


def _loader_seconds_per_batch(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # worker start-up and first-touch costs are not throughput
    t0 = time.perf_counter()
    n = sum(1 for _ in itertools.islice(it, batches))
    return (time.perf_counter() - t0) / max(n, 1)


def _endless(loader):
    """Batches of ``loader`` epoch after epoch, each one loaded anew (``itertools.cycle`` would
    replay cached batches after the first epoch and time nothing)."""
    while True:
        yield from loader


def _step_fn(cfg, batch, device, backend, amp=False):
    model = FIAN(cfg, backend=backend).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    b = batch.to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(*b.model_inputs())
        model.loss(out._replace(logits=out.logits.float(), offsets=out.offsets.float()), b.gt).total.backward()
        opt.step()

    return step


def test_synthetic_loader_vs_train_step_cpu(benchmark, timeit, report_ratio):
    cfg = FIANConfig.preset("synthetic")
    ds, _ = load_split("synthetic", "train", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate)
    loader_s = _loader_seconds_per_batch(loader, 50)
    step_s = timeit(_step_fn(cfg, next(iter(loader)), "cpu", "reference"), "cpu")
    ratio = report_ratio("train step / loader batch (synthetic, B=32)", "cpu", step_s, loader_s, benchmark)
    benchmark.extra_info.update({"loader_batches_per_s": round(1 / loader_s, 1), "steps_per_s": round(1 / step_s, 2)})
    it = _endless(loader)
    benchmark(lambda: next(it))
    assert ratio > 1.0


@pytest.fixture(scope="module")
def charades_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    path = str(root / "i3d.h5")
    records = []
    with h5py.File(path, "w") as f:
        for i in range(256):
            t = int(rng.integers(60, 201))
            f.create_dataset(f"V{i:04d}", data=rng.standard_normal((t, 1024)).astype(np.float32))
            d = t / 4.0
            records.append(Record(f"V{i:04d}", d, "a person opens the door then sits on the chair.", 0.2 * d, 0.6 * d))
    glove = root / "glove.txt"
    words = sorted({w for w in "a person opens the door then sits on the chair .".split()})
    glove.write_text("".join(f"{w} " + " ".join(f"{x:.3f}" for x in rng.standard_normal(300)) + "\n" for w in words))
    vocab = Vocabulary.build([r.sentence for r in records], GloveText(str(glove)))
    return path, records, vocab


@pytest.mark.parametrize("workers", [0, 2])
def test_charades_hdf5_loader_vs_train_step_cpu(benchmark, timeit, report_ratio, charades_like, workers):
    path, records, vocab = charades_like
    cfg = FIANConfig.preset("charades")
    ds = GroundingDataset(records, open_features(path), vocab, cfg.num_frames, cfg.max_query_length)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, num_workers=workers,
                        persistent_workers=workers > 0)
    loader_s = _loader_seconds_per_batch(loader, 3)
    step_s = timeit(_step_fn(cfg, next(iter(loader)), "cpu", "reference"), "cpu", warmup=1, repeat=3)
    ratio = report_ratio(f"train step / loader batch (charades HDF5, B=64, workers={workers})", "cpu", step_s,
                         loader_s, benchmark)
    benchmark.extra_info.update({"loader_batches_per_s": round(1 / loader_s, 2), "steps_per_s": round(1 / step_s, 3)})
    it = _endless(loader)
    benchmark.pedantic(lambda: next(it), rounds=3, iterations=1)
    assert ratio > 1.0


@pytest.mark.cuda
def test_charades_hdf5_loader_vs_fast_train_step_cuda(benchmark, timeit, report_ratio, charades_like):
    path, records, vocab = charades_like
    cfg = FIANConfig.preset("charades")
    ds = GroundingDataset(records, open_features(path), vocab, cfg.num_frames, cfg.max_query_length)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, num_workers=4,
                        pin_memory=True, persistent_workers=True)
    loader_s = _loader_seconds_per_batch(loader, 3)
    step_s = timeit(_step_fn(cfg, next(iter(loader)), "cuda", "fast", amp=True), "cuda")
    report_ratio("train step / loader batch (charades HDF5, B=64, 4 workers, CUDA fast bf16)", "cuda", step_s,
                 loader_s, benchmark)
    benchmark.extra_info.update({"loader_batches_per_s": round(1 / loader_s, 2), "steps_per_s": round(1 / step_s, 2)})
    it = _endless(loader)
    benchmark.pedantic(lambda: next(it), rounds=3, iterations=1)
