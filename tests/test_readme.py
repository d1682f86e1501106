"""The README's examples run as printed (they are the first thing users copy)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_api_example_runs_verbatim():
    blocks = _blocks(README.read_text(), "python")
    assert blocks, "the README has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    surface, ratio, samples, emb = (namespace[k] for k in ("surface", "ratio", "samples", "emb"))
    assert surface.loss.dims == ("x", "y") and surface.loss.shape == (31, 31)
    assert np.isfinite(surface.loss.values).all()
    assert len(ratio) == 2 and 0 < float(sum(ratio)) <= 1
    assert emb.embedding_.shape == (samples.sizes["point"], 2)
    assert emb.potential_.shape[0] == samples.sizes["point"]


def _run_bash(block: str, cwd: Path, cuda_to_cpu: bool = False) -> list:
    from lossatlas.cli import app

    results = []
    for line in block.strip().splitlines():
        args = shlex.split(line)
        if args[0] == "python":
            subprocess.run([sys.executable, *args[1:]], cwd=cwd, check=True, env={**os.environ, "PYTHONPATH": str(cwd)})
            continue
        assert args[0] == "lossatlas", line
        if cuda_to_cpu:
            refused = CliRunner().invoke(app, args[1:])
            assert refused.exit_code == 2 and "CUDA is not available" in " ".join(refused.output.split()), refused.output
            args = [("cpu" if a == "cuda" else a) for a in args]
        r = CliRunner().invoke(app, args[1:])
        assert r.exit_code == 0, (line, r.output)
        results.append(r)
    return results


def test_readme_own_model_and_gpu_sections_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        sys.modules.pop(m)
    own = _section("Your own model and checkpoint")
    for block in _blocks(own, "python"):
        first, _, body = block.partition("\n")
        path = tmp_path / first.removeprefix("# file: ").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch() if path.parent != tmp_path else None
        path.write_text(body)
    (bash,) = _blocks(own, "bash")
    _run_bash(bash, tmp_path)
    assert (tmp_path / "runs/mine/surface.zarr").is_dir() and (tmp_path / "runs/mine/jump.zarr").is_dir()
    assert (tmp_path / "runs/mine/embedding.zarr").is_dir() and (tmp_path / "runs/mine-ab/interpolation.zarr").is_dir()
    (gpu,) = _blocks(_section("On a GPU"), "bash")
    _run_bash(gpu, tmp_path, cuda_to_cpu=not torch.cuda.is_available())
    assert (tmp_path / "runs/mine-gpu/surface.zarr").is_dir()


def test_readme_hugging_face_example_runs_and_its_centre_is_the_models_own_loss():
    pytest.importorskip("transformers")
    (block,) = _blocks(_section("Hugging Face models"), "python")
    ns: dict = {}
    exec(compile(block, str(README), "exec"), ns)  # noqa: S102 - our own README
    bert, batches, plane = ns["bert"], ns["batches"], ns["hf_plane"]
    with torch.no_grad():
        own = float(np.mean([float(bert(**b).loss) for b in batches]))  # equal batch sizes
    assert float(plane.loss.sel(x=0.0, y=0.0)) == pytest.approx(own, rel=1e-5)
    assert plane.loss.shape == (5, 5) and np.isfinite(plane.loss.values).all()


def test_readme_recording_section_runs_and_names_real_callbacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain, lightning, hf = _blocks(_section("Recording your own training"), "python")
    namespace: dict = {}
    exec(compile(plain, str(README), "exec"), namespace)  # noqa: S102 - our own README
    traj = namespace["rec"].trajectory
    spe = -(-namespace["X"].shape[0] // 64)
    steps = {0, *range(10, 10 * spe + 1, 10), *range(spe, 10 * spe + 1, spe)}  # start, every 10 steps, epoch ends
    assert traj.step.values.tolist() == sorted(steps)
    assert len(namespace["dirs"]) == 2 and la_source(tmp_path / "runs" / "mine")["model"] == "smallcnn"
    for block, module in ((lightning, "lossatlas.integrations.lightning"), (hf, "lossatlas.integrations.huggingface")):
        compile(block, str(README), "exec")
        assert f"from {module} import LossAtlasCallback" in block


def la_source(path):
    import lossatlas as la

    return la.RunDir(path).read_source()


def test_readme_sweep_section_names_real_commands_options_and_files():
    from lossatlas.cli import app
    from lossatlas.studies import STUDIES

    (bash,) = _blocks(_section("Sweeps, generalization prediction and studies"), "bash")
    root = README.parent
    for line in bash.strip().splitlines():
        words = shlex.split(line.split("#")[0])
        assert words[0] == "lossatlas"
        usage = CliRunner().invoke(app, [words[1], "--help"], terminal_width=200).output
        for flag in (w for w in words[2:] if w.startswith("--")):
            assert flag in usage, (line, flag)
        if words[1] == "sweep":
            assert (root / words[2]).is_file()  # the config the section points to exists
        if words[1] == "study":
            assert words[2] in STUDIES
