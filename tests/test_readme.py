"""The README's Python example runs as printed (it is the first thing users copy)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs_verbatim():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    surface, ratio, samples, emb = (namespace[k] for k in ("surface", "ratio", "samples", "emb"))
    assert surface.loss.dims == ("x", "y") and surface.loss.shape == (31, 31)
    assert np.isfinite(surface.loss.values).all()
    assert len(ratio) == 2 and 0 < float(sum(ratio)) <= 1
    assert emb.embedding_.shape == (samples.sizes["point"], 2)
    assert emb.potential_.shape[0] == samples.sizes["point"]
