"""Basin volume and radius measured from the minimum's own loss (issue 19, item 3)."""

import numpy as np
import pytest
import torch

from lossatlas._errors import InputError
from lossatlas.basin import basin_radius, basin_settings, basin_volume
from lossatlas.space import make_directions
from test_sharpness import quadratic

torch.set_num_threads(1)

KW = dict(directions=20, norm="none", ignore=None, seed=3)


def _pair():
    """A memorization-like minimum (own loss 0, curvature 2) and a flatter one of higher own loss
    (0.08, curvature 1): f = offset + 0.5 h |w - c|^2."""
    sharp, _, _ = quadratic([2.0, 2.0, 2.0], [1.0, -1.0, 2.0], offset=0.0)
    flat, _, _ = quadratic([1.0, 1.0, 1.0], [1.0, -1.0, 2.0], offset=0.08)
    return sharp, flat


def test_a_lower_own_loss_no_longer_wins_the_basin_volume():
    sharp, flat = _pair()
    # before (an absolute level 0.1): memorization 0.55, flat 0.10 -- the sharper minimum had the
    # "wider basin" only because its own loss was 0.08 lower
    assert basin_volume(sharp, level=0.1, radius=0.2, **KW) == pytest.approx(0.55)
    assert basin_volume(flat, level=0.1, radius=0.2, **KW) == pytest.approx(0.10)
    # now: a rise of 0.1 above each minimum's own loss, the flatter basin is the wider one
    v_sharp = basin_volume(sharp, threshold=0.1, radius=0.2, **KW)
    v_flat = basin_volume(flat, threshold=0.1, radius=0.2, **KW)
    assert v_flat == 1.0 and v_sharp == pytest.approx(0.55) and v_flat > v_sharp
    # the exact count: 0.5 h r^2 |d|^2 <= 0.1 per direction
    d = torch.stack(make_directions(flat.space, flat.origin, 20, norm="none", ignore=None, seed=3)).cpu()
    assert v_sharp == pytest.approx(float(((0.5 * 2.0 * 0.04 * (d**2).sum(1)) <= 0.1).double().mean()))


def test_basin_radius_of_a_quadratic_is_known_per_direction():
    sharp, flat = _pair()
    d = torch.stack(make_directions(sharp.space, sharp.origin, 20, norm="none", ignore=None, seed=3)).cpu()
    norm2 = (d**2).sum(1).double().numpy()
    for f, h in ((sharp, 2.0), (flat, 1.0)):
        got = basin_radius(f, threshold=0.1, tol=1e-6, **KW)
        want = np.sqrt(2 * 0.1 / (h * norm2))  # 0.5 h r^2 |d|^2 = 0.1
        np.testing.assert_allclose(got["radii"], want, atol=2e-6)
        assert got["mean"] == pytest.approx(want.mean(), abs=2e-6)
        assert got["std"] == pytest.approx(want.std(ddof=1), abs=1e-5)
        assert got["censored"] == 0 and got["settings"]["basin_measure"] == "rise"
    # the flatter basin is sqrt(2) times as wide along every ray
    ratio = basin_radius(flat, threshold=0.1, tol=1e-6, **KW)["mean"] / basin_radius(sharp, threshold=0.1, tol=1e-6,
                                                                                         **KW)["mean"]
    assert ratio == pytest.approx(np.sqrt(2), rel=1e-4)


def test_an_absolute_level_is_used_only_when_asked_and_recorded():
    sharp, flat = _pair()
    got = basin_radius(flat, level=0.1, tol=1e-6, **KW)
    d = torch.stack(make_directions(flat.space, flat.origin, 20, norm="none", ignore=None, seed=3)).cpu()
    want = np.sqrt(2 * (0.1 - 0.08) / (d**2).sum(1).double().numpy())
    np.testing.assert_allclose(got["radii"], want, atol=2e-6)
    assert got["settings"]["basin_measure"] == "absolute" and got["settings"]["level"] == 0.1
    # a minimum already above the level has no basin under it
    assert basin_radius(flat, level=0.05, **KW)["mean"] == 0.0
    assert basin_settings(0.1) == {"basin_measure": "rise", "threshold": 0.1, "level": None}


def test_rays_that_never_leave_are_censored_at_the_largest_radius():
    sharp, _ = _pair()
    got = basin_radius(sharp, threshold=100.0, max_radius=0.5, **KW)
    assert got["censored"] == 20 and np.all(got["radii"] == 0.5)


def test_bad_basin_settings_are_refused():
    sharp, _ = _pair()
    for bad in ({"threshold": -1.0}, {"threshold": 0.0}, {"max_radius": 0.0}, {"tol": -1.0}):
        with pytest.raises(InputError):
            basin_radius(sharp, **{**KW, **bad})
    with pytest.raises(InputError, match="threshold"):
        basin_volume(sharp, threshold=float("nan"))


def test_compare_minima_and_the_sharpness_command_record_the_basin_measure(tmp_path):
    from lossatlas.sharpness import compare_minima

    sharp, flat = _pair()
    table = compare_minima({"memorization": sharp, "flat": flat}, {"memorization": sharp.origin, "flat": flat.origin},
                           subspace=None, directions=20, radius=0.2, maxiter=1, eigenvalues=0, norm="none",
                           ignore=None, seed=3)
    assert table.attrs["settings"]["basin_measure"] == "rise" and table.attrs["settings"]["level"] is None
    vol, rad = table["basin_volume"].values, table["basin_radius"].values
    assert vol[1] > vol[0] and rad[1] > rad[0]  # the flat minimum, by rise
    assert table["basin_radius_std"].dims == ("minimum",) and (table["basin_censored"].values == 0).all()
    absolute = compare_minima({"memorization": sharp, "flat": flat}, {"memorization": sharp.origin, "flat": flat.origin},
                              subspace=None, directions=20, radius=0.2, maxiter=1, eigenvalues=0, norm="none",
                              ignore=None, seed=3, level=0.1)
    assert absolute.attrs["settings"]["basin_measure"] == "absolute"
    assert absolute["basin_volume"].values[0] > absolute["basin_volume"].values[1]
