"""An untrained FIAN saved as ``fian-fast train`` saves its checkpoints (tests/ is on sys.path under
pytest): the predictor, prediction files and the README example need a checkpoint, not a good one."""
import numpy as np
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast.data import Vocabulary, tokenize
from fian_fast.train import save_checkpoint


def write_checkpoint(path: str, sentences=(), video_dim: int = 32, dataset: str = "synthetic",
                     windows: str = "first", seed: int = 0) -> FIANConfig:
    """Save an untrained small FIAN whose vocabulary holds the words of ``sentences`` (random
    8-d vectors; the vocabulary's source, ``"none"``, gives zeros for any other word)."""
    cfg = FIANConfig.preset("synthetic", video_dim=video_dim, word_dim=8, hidden_size=16, num_heads=2, ffn_size=32)
    torch.manual_seed(seed)
    model = FIAN(cfg)
    words = sorted({t for s in sentences for t in tokenize(s)}) or ["the"]
    vectors = np.random.default_rng(seed).standard_normal((len(words), cfg.word_dim)).astype(np.float32)
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(),
                           "vocab": Vocabulary(words, vectors, "none").state_dict(), "epoch": 0, "step": 0,
                           "dataset": dataset, "windows": windows, "backend": "reference"})
    return cfg
