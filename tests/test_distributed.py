"""Two CPU processes (gloo) under DistributedDataParallel end with identical weights."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

SIZES = (8, 3, 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from fian_fast import FIANConfig
    from fian_fast.data import load_split
    from fian_fast.distributed import cleanup, init_distributed
    from fian_fast.train import TrainOptions, train

    info = init_distributed("cpu")
    cfg = FIANConfig.preset("synthetic", hidden_size=16, num_heads=2, ffn_size=32)
    tr, _ = load_split("synthetic", "train", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       synthetic_sizes=SIZES)
    # each rank reads its own half of every batch (global batch 8 -> 4 per process)
    opts = TrainOptions(out_dir=out, epochs=1, batch_size=8, max_steps=3, progress=False)
    summary = train(cfg, tr, None, opts, dist_info=info)
    torch.save({"model": summary["model"].state_dict(), "steps": summary["steps"]}, os.path.join(out, f"rank{rank}.pt"))
    cleanup(info)


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a["steps"] == b["steps"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (tmp_path / "last.pt").exists()  # rank 0 wrote the checkpoint
