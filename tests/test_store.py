"""The run directory: recorded settings refuse a mismatch, one hasher for every dtype, atomic
writes, per-command configs, consolidated zarr."""

import json
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from lossatlas._errors import StoreMismatchError
from lossatlas.store import RunDir, atomic_write, differences, fingerprint, json_safe


def _ds(settings, n=3):
    return xr.Dataset({"loss": (("x",), np.arange(float(n)))}, attrs={"settings": settings})


def test_check_refuses_other_settings_naming_each_with_both_values(tmp_path):
    run = RunDir(tmp_path)
    run.save("s", _ds({"seeds": [0, 1], "lr": 0.001, "train": {"epochs": 3}}))
    assert run.check("s", {"seeds": (0, 1), "lr": 0.001, "train": {"epochs": 3}}) is True  # tuples == lists
    with pytest.raises(StoreMismatchError) as err:
        run.check("s", {"seeds": [0, 1, 2], "lr": 0.01, "train": {"epochs": 3}})
    text = str(err.value)
    assert "seeds: [0, 1] stored, [0, 1, 2] asked" in text and "lr: 0.001 stored, 0.01 asked" in text
    assert "replace=True" in text and "epochs" not in text
    assert {d[0] for d in err.value.diffs} == {"seeds", "lr"}
    # a nested setting is named with its path; a setting missing on one side is named too
    with pytest.raises(StoreMismatchError, match=r"train\.epochs: 3 stored, 4 asked"):
        run.check("s", {"seeds": [0, 1], "lr": 0.001, "train": {"epochs": 4}})
    with pytest.raises(StoreMismatchError, match=r"bn: \(not recorded\) stored, eval asked"):
        run.check("s", {"seeds": [0, 1], "lr": 0.001, "train": {"epochs": 3}, "bn": "eval"})
    assert run.check("s", {"lr": 1.0}, replace=True) is False and not run.exists("s")
    assert run.check("absent", {"lr": 1.0}) is False


def test_partial_check_compares_only_the_asked_settings(tmp_path):
    # A path between minima records its optimizer's defaults too; its caller asks for the ends
    # and its own options, and an asked setting that differs or is missing is still refused.
    run = RunDir(tmp_path)
    run.save("p", _ds({"points": 41, "steps": 600, "momentum": 0.9, "theta_a": "aa"}))
    assert run.check("p", {"points": 41, "steps": 600, "theta_a": "aa"}, partial=True) is True
    with pytest.raises(StoreMismatchError, match="steps: 600 stored, 601 asked"):
        run.check("p", {"points": 41, "steps": 601}, partial=True)
    with pytest.raises(StoreMismatchError, match=r"seed: \(not recorded\) stored, 0 asked"):
        run.check("p", {"points": 41, "seed": 0}, partial=True)
    with pytest.raises(StoreMismatchError, match="momentum"):
        run.check("p", {"points": 41, "steps": 600, "theta_a": "aa"})  # a whole check names the unasked
    # differs: the same comparison without refusing or deleting anything
    assert run.differs("p", {"points": 41}, partial=True) == []
    assert run.differs("p", {"points": 40}, partial=True) == [("points", 41, 40)]
    assert run.exists("p")


def test_one_hasher_covers_dtypes_shapes_and_devices():
    # half precision crashed the old hashers (NumPy has no bfloat16)
    for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.int64, torch.bool):
        assert len(fingerprint(torch.zeros(4, dtype=dtype))) == 16
    base = fingerprint(torch.zeros(4))
    assert base != fingerprint(torch.zeros(4, dtype=torch.float64))  # dtype counts
    assert base != fingerprint(torch.zeros(2, 2))  # shape counts
    assert base != fingerprint(torch.zeros(4, dtype=torch.bfloat16))
    assert fingerprint(torch.zeros(4)) == fingerprint(torch.zeros(4))
    assert fingerprint(np.arange(3)) != fingerprint(np.arange(3).astype(np.int32))
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint(torch.zeros(3).view(3)[::1]) == fingerprint(torch.zeros(6)[::2])  # views hash by value


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p, "w") as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_each_command_has_its_own_config_and_none_overwrites_another(tmp_path):
    run = RunDir(tmp_path)
    run.write_config("train", {"lr": 0.1})
    run.write_config("surface", {"steps": 5})
    run.write_source({"model": "mlp"})
    assert run.read_config("train") == {"lr": 0.1} and run.read_config("surface") == {"steps": 5}
    assert run.read_source() == {"model": "mlp"}
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == ["source.yaml", "surface.yaml", "train.yaml"]


def test_stores_are_consolidated_and_open_without_warnings(tmp_path):
    run = RunDir(tmp_path)
    run.save("a", _ds({"k": 1}))
    run.append("b", xr.Dataset({"w": (("point", "param"), np.ones((2, 3)))}, attrs={"m": {"x": 1}}))
    run.append("b", xr.Dataset({"w": (("point", "param"), 2 * np.ones((2, 3)))}, attrs={"m": {"x": 1}}))
    run.update_attrs("b", {"complete": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = xr.open_zarr(tmp_path / "a.zarr")
        b = xr.open_zarr(tmp_path / "b.zarr")
    assert json.loads(a.attrs["settings"]) == {"k": 1}
    assert b.w.shape == (4, 3) and b.attrs["complete"] is True and float(b.w[3, 0]) == 2.0
    run.truncate("b", 3)
    assert xr.open_zarr(tmp_path / "b.zarr").w.shape == (3, 3)


def test_json_safe_and_differences_treat_tuples_and_numpy_as_plain():
    assert json_safe({"a": (1, np.float32(0.5)), "t": torch.tensor([1.0, 2.0])}) == {"a": [1, 0.5], "t": [1.0, 2.0]}
    assert differences({"a": [1, 2]}, {"a": (1, 2)}) == []


def test_compact_rewrites_a_cell_by_cell_grid_as_one_chunk_and_survives_a_crash_between_renames(tmp_path):
    import numpy as np
    import xarray as xr

    from lossatlas.store import DONE, RunDir

    run = RunDir(tmp_path)
    template = xr.Dataset({"v": (("network", "feature"), np.zeros((4, 3))), DONE: (("network",), np.zeros(4, bool))},
                          attrs={"settings": {"kind": "t"}})
    run.create_grid("g", template, chunks={"network": 1})
    for i in range(4):
        run.write_cells("g", {"v": np.full((1, 3), float(i))}, (slice(i, i + 1),))
    before = run.open("g")
    run.compact("g")
    after = run.open("g", load=False)
    assert after["v"].chunks == ((4,), (3,))
    xr.testing.assert_identical(after.load(), before)
    assert run.check("g", {"kind": "t"})  # the recorded settings came along
    # a crash after the first rename leaves only the old copy: the next call restores and compacts it
    (tmp_path / "g.zarr").rename(tmp_path / "g.zarr.old")
    run.compact("g")
    xr.testing.assert_identical(run.open("g"), before)
    assert not (tmp_path / "g.zarr.old").exists() and not (tmp_path / "g.zarr.new").exists()
