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
