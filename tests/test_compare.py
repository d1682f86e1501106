"""``lossatlas compare``: minima side by side on directions drawn alike and shared levels, through
the command line on tiny models; and the figure options of ``surface`` and ``compare``."""

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

import lossatlas as la
from lossatlas.cli import app
from lossatlas.sources import Source
from lossatlas.store import RunDir

runner = CliRunner()
DATA = {"data": "digits", "subset": 120}
FLAGS = ("--model", "mlp", "--model-arg", "hidden=[8]", "--data", "digits", "--subset", 120)


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, " ".join(r.output.split())


def _model(seed: int, hidden=(8,)):
    src = Source(model="mlp", model_args={"hidden": list(hidden)}, init_seed=seed, device="cpu", **DATA)
    data = src.build_data()
    return src, data, src.build_model(data)


@pytest.fixture(scope="module")
def minima(tmp_path_factory):
    """Two checkpoints of one architecture, and a run directory holding a third minimum."""
    root = tmp_path_factory.mktemp("compare")
    for seed in (0, 1):
        _, _, net = _model(seed)
        with torch.no_grad():  # weights of different scales: filter normalization must undo it
            for p in net.parameters():
                p.mul_(1.0 + 2 * seed)
        torch.save(net.state_dict(), root / f"m{seed}.pt")
    src, _, net = _model(2, hidden=(6,))
    run = RunDir(root / "narrow")
    run.write_source({k: v for k, v in src.as_dict().items() if k != "device"})
    torch.save(net.state_dict(), run.path / "model.pt")
    return root


def test_compare_two_checkpoints_per_model_directions(minima, tmp_path):
    out = tmp_path / "cmp"
    code, output = invoke("compare", minima / "m0.pt", minima / "m1.pt", *FLAGS, "--steps", 5, "--span", 0.5,
                          "--device", "cpu", "--fig-size", "6,3", "--font-size", 8, "--out", out)
    assert code == 0, output
    assert "filter-normalized to each minimum" in output
    summary = RunDir(out).summary()["compare"]
    assert summary["directions"] == "per-model" and summary["same_space"] is True
    assert (out / "figures" / "compare.png").stat().st_size > 0 and (out / "figures" / "compare_test_loss.png").is_file()
    assert (out / "report.html").is_file()
    for name, seed in (("m0", 0), ("m1", 1)):
        ds = RunDir(out / name).open("compare")
        assert ds.attrs["direction_mode"] == "per-model" and ds.attrs["seed"] == 0
        # Oracle: the plane's corner is the minimum moved along its OWN filter-normalized directions
        # drawn from seed 0, evaluated on the same data.
        src, data, net = _model(seed)
        net.load_state_dict(torch.load(minima / f"{name}.pt"))
        f = la.Landscape(net, data.train, device="cpu")
        d = la.random_directions(net, n=2, norm="filter", ignore="biasbn", seed=0)
        want = f.evaluate((f.origin + 0.5 * d[0] - 0.5 * d[1])[None])["loss"].item()
        assert float(ds.loss.sel(x=0.5, y=-0.5)) == pytest.approx(want, rel=1e-5)
        assert float(ds.loss.sel(x=0.0, y=0.0)) == pytest.approx(f.evaluate(f.origin[None])["loss"].item(), rel=1e-5)
    # The report holds the side-by-side figure and a summary row per minimum.
    page = (out / "report.html").read_text()
    assert 'alt="compare"' in page and "<th>m0</th><th>m1</th>" in page


def test_compare_run_directory_and_checkpoint_with_other_architectures(minima, tmp_path):
    out = tmp_path / "cmp"
    code, output = invoke("compare", minima / "narrow", minima / "m0.pt", *FLAGS, "--steps", 3, "--device", "cpu",
                          "--out", out)
    assert code == 0, output
    assert "the architectures differ" in output
    assert RunDir(out).summary()["compare"]["same_space"] is False
    # A rerun with another seed does not overwrite the stored planes.
    code, output = invoke("compare", minima / "narrow", minima / "m0.pt", *FLAGS, "--steps", 3, "--device", "cpu",
                          "--seed", 4, "--out", out)
    assert code == 2 and "seed: 0 stored, 4 asked" in output and "--replace" in output, output
    assert xr.open_zarr(out / "narrow" / "compare.zarr").attrs["seed"] == 0


@pytest.mark.parametrize("extra, words", [
    (("--directions", "shared"), "one architecture"),
    (("--fig-size", "3"), "--fig-size"),
    (("--levels", "0.1,x"), "--levels"),
    (("--color-range", "2,1"), "--color-range"),
    (("--steps", 4), "odd"),
    (("--directions", "sideways"), "sideways"),
])
def test_refused_comparisons_leave_out_untouched(minima, tmp_path, extra, words):
    out = tmp_path / "cmp"
    code, output = invoke("compare", minima / "narrow", minima / "m0.pt", *FLAGS, "--device", "cpu", *extra, "--out", out)
    assert code == 2 and words in output, output
    assert not out.exists()


def test_compare_refuses_minima_on_other_data(minima, tmp_path):
    out = tmp_path / "cmp"
    code, output = invoke("compare", minima / "narrow", minima / "m0.pt", "--model", "mlp", "--model-arg", "hidden=[8]",
                          "--data", "digits", "--subset", 100, "--device", "cpu", "--out", out)
    assert code == 2 and "same data" in output and "subset: 120 for narrow, 100 for m0" in output, output
    assert not out.exists()
    code, output = invoke("compare", minima / "m0.pt", *FLAGS, "--out", out)
    assert code == 2 and "at least two minima" in output


def test_surface_figure_options(tmp_path):
    out = tmp_path / "s"
    code, output = invoke("surface", *FLAGS, "--steps", 5, "--train-epochs", 1, "--device", "cpu",
                          "--fig-size", "3,2.5", "--font-size", 11, "--levels", "0.5,1,2", "--color-range", "0,3",
                          "--out", out)
    assert code == 0, output
    from PIL import Image

    with Image.open(out / "figures" / "surface_contour.png") as img:
        width, height = img.size
    # 3 x 2.5 inches at 200 dpi, give or take the tight bounding box (the default is 4.8 x 3.9).
    assert 480 <= width <= 640 and 400 <= height <= 540, (width, height)
    code, output = invoke("surface", *FLAGS, "--levels", "", "--out", tmp_path / "t")
    assert code == 2 and "--levels" in output
    assert not (tmp_path / "t").exists()
    assert np.isfinite(RunDir(out).open("surface").loss.values).all()
