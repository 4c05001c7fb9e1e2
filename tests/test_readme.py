"""The README's Python example runs as written and its comments hold (shapes, ranking)."""
import os
import re

import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_python_example_runs():
    with open(README, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "README has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    cfg, out, pred = namespace["cfg"], namespace["out"], namespace["pred"]
    assert out.logits.shape == (2, cfg.num_candidates) == (2, 347)
    assert out.offsets.shape == (2, 347, 2)
    assert pred.segments.shape == (2, 5, 2) and pred.scores.shape == (2, 5) and pred.indices.shape == (2, 5)
    assert bool((pred.scores[:, :-1] >= pred.scores[:, 1:]).all())
    durations = torch.tensor([120.0, 95.5])
    assert bool((pred.segments >= 0).all()) and bool((pred.segments <= durations[:, None, None]).all())


def test_readme_predictor_example_runs(tmp_path, monkeypatch):
    """The second example, over an untrained checkpoint and random features at the paths it names."""
    import numpy as np

    from untrained_checkpoint import write_checkpoint

    with open(README, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) >= 2 and "Predictor.from_checkpoint" in blocks[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "syn").mkdir(parents=True)
    cfg = write_checkpoint("runs/syn/best.pt", ["the person opens the door", "the person sits down"])
    rng = np.random.default_rng(0)
    np.save("video.npy", rng.standard_normal((50, cfg.video_dim)).astype(np.float32))
    np.save("other.npy", rng.standard_normal((20, cfg.video_dim)).astype(np.float32))
    namespace = {}
    exec(compile(blocks[1], "README.md", "exec"), namespace)
    moments = namespace["moments"]
    assert len(moments) == 2 and all(1 <= len(m) <= 3 for m in moments)
    for m, duration in zip(moments, (31.5, 12.0)):
        assert all(0 <= s <= e <= duration + 1e-4 for s, e, _ in m)
        assert [c for _, _, c in m] == sorted((c for _, _, c in m), reverse=True)
