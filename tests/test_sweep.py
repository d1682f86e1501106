"""The sweep (lossatlas sweep / predict): config checks, resumable network-by-network runs, the
same results on a Dask cluster, and the Table 1 prediction on a stored sweep."""

import numpy as np
import pytest

from lossatlas._errors import InputError, StoreMismatchError
from lossatlas.store import DONE, RunDir
from lossatlas.sweep import driver, read_sweep_config, run_sweep
from lossatlas.sweep.driver import _layout, _row
from lossatlas.sweep.table import predict_sweep, table_text

# Fast classifiers for the tests (all 11 run in tests/test_prediction.py).
FAST = ("logistic_regression", "knn", "lda", "gaussian_nb")

TINY = {
    "depths": [1], "widths": [6], "batch_sizes": [64], "weight_decays": [0.0, 1e-3], "augment": [False],
    "epochs": 2, "subset": 200, "test_subset": 100,
    "jump": {"seeds": [0, 1], "step_sizes": [0.5, 1.0], "epochs": 2, "topology_k": 3},
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """TINY swept in this process without interruption (the reference of the other runs)."""
    return run_sweep(TINY, tmp_path_factory.mktemp("sweep") / "u").load()


@pytest.mark.parametrize("bad, message", [
    ({"depths": "3"}, "depths must be list"),
    ({"widths": []}, "widths must be a non-empty list"),
    ({"batch_sizes": [0]}, "batch_sizes must hold positive integers"),
    ({"model": "vgg9"}, "model must be one of"),
    ({"jump": {"lrate": 0.1}}, "jump: unknown settings \\['lrate'\\]"),
    ({"jump": {"naive_step_sizes": [0.5, 1.0, 2.0]}}, "do not divide by 3"),
    ({"lr": -1.0}, "lr must be a positive number"),
])
def test_config_errors_name_the_field(bad, message):
    with pytest.raises(InputError, match=message):
        read_sweep_config({**TINY, **bad})


def test_sweep_resumes_network_by_network_and_refuses_other_settings(tmp_path, monkeypatch, uninterrupted):
    calls = []
    real = driver.sample_network

    def counted(config, index):
        calls.append(index)
        if len(calls) == 2 and not getattr(counted, "resumed", False):
            raise KeyboardInterrupt  # the driver killed after its first network
        return real(config, index)

    monkeypatch.setattr(driver, "sample_network", counted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(TINY, tmp_path / "s")
    run = RunDir(tmp_path / "s")
    assert run.done_mask("sweep").tolist() == [True, False]
    counted.resumed = True
    said = []
    ds = run_sweep(TINY, tmp_path / "s", report=said.append).load()
    assert calls == [0, 1, 1]  # the rerun trained only the missing network
    assert said == ["resumed: 1 of 2 networks done"]
    for v in ("jr_features", "grid_features", "naive_features", "test_loss", "tp_d0"):
        np.testing.assert_allclose(ds[v].values, uninterrupted[v].values, rtol=1e-5, atol=1e-7, err_msg=v)
    # each network: 2 x 8 retrained points, as many grid and naive points, and its axes
    assert ds["jr_features"].shape == (2, 16)
    assert ds["weight_decay"].values.tolist() == [0.0, 1e-3]
    assert np.isfinite(ds["test_loss"].values).all() and (ds["embedded"].values == 12).all()
    # weight decay changes the minimum: the two networks differ
    assert not np.allclose(ds["jr_features"].values[0], ds["jr_features"].values[1])
    # finished: compacted to one chunk per variable, and still the same sweep for a rerun
    assert sum(p.is_file() for p in (tmp_path / "s" / "sweep.zarr" / "jr_features" / "c").rglob("*")) == 1
    assert run_sweep(TINY, tmp_path / "s", report=said.append)["done"].values.all()
    assert said[-1] == "resumed: 2 of 2 networks done" and calls == [0, 1, 1]
    with pytest.raises(StoreMismatchError, match="epochs"):
        run_sweep({**TINY, "epochs": 3}, tmp_path / "s")


def test_sweep_on_two_dask_workers_equals_in_process(tmp_path, uninterrupted):
    from lossatlas.execute import DaskExecutor

    plain = uninterrupted
    with DaskExecutor(workers=2, threads=1) as ex:
        remote = run_sweep(TINY, tmp_path / "b", executor=ex).load()
        assert ex.stats["tasks"] == 2 and ex.stats["payload_bytes_mean"] < 4096  # the config, not closures
    for v in ("jr_features", "grid_features", "naive_features", "test_loss", "tp_d0"):
        np.testing.assert_allclose(remote[v].values, plain[v].values, rtol=1e-4, atol=1e-6, err_msg=v)


def _synthetic_sweep(path, n=40, m=6, seed=0):
    """A stored sweep whose J&R features carry the test loss and grid/naive features are noise."""
    cfg = read_sweep_config({**TINY, "depths": [1, 2], "widths": [4], "batch_sizes": [32, 64, 128, 256, 512],
                             "weight_decays": [0.0, 1e-3], "augment": [False, True], "jump": {**TINY["jump"], "epochs": 1}})
    rng = np.random.default_rng(seed)
    run = RunDir(path)
    nets = cfg.networks()
    assert len(nets) == n
    layout = _layout(cfg, {"kind": "sweep", "synthetic": True})
    run.create_grid("sweep", layout, chunks={"network": 1})
    for a in ("depth", "width", "batch_size", "weight_decay", "augment"):
        run.write_variable("sweep", a, layout[a].values)
    test_loss = rng.uniform(0.5, 1.5, n)
    for i in range(n):
        jr = np.concatenate([test_loss[i] + 0.02 * rng.normal(size=4), 1 - test_loss[i] / 2 + 0.01 * rng.normal(size=4)])
        out = {"jr_features": jr, "grid_features": rng.normal(size=8), "naive_features": rng.normal(size=8),
               "n_params": 10, "train_loss": 0.1, "train_accuracy": 0.9, "test_loss": test_loss[i],
               "test_accuracy": 0.5, "tp_d0": test_loss[i] * 2, "tp_d1": 0.0, "tp_d0_capped": test_loss[i] * 3,
               "knn_components": 1, "embedded": 12, "phate_components": 1,
               "jr_nonfinite": 0, "grid_nonfinite": 0, "naive_nonfinite": 0,
               "seconds": {"train": 0, "jump_retrain": 0, "grid_naive": 0, "topology": 0}}
        if i == 3:
            out["grid_features"][0] = np.nan  # a diverged point: replaced, counted, not fatal
        run.write_cells("sweep", _row(out), (slice(i, i + 1),))
    return run


def test_predict_table_ranks_informative_features_above_noise_and_resumes(tmp_path, monkeypatch):
    from lossatlas.sweep import table

    run = _synthetic_sweep(tmp_path / "s")
    res = predict_sweep(run, folds=4, permutations=4, names=FAST)
    t = res["table"]
    assert t["jr"]["generalization"]["mean"] > 0.6  # chance is 0.2
    assert t["scrambled_jr"]["generalization"]["mean"] < 0.4
    assert t["grid"]["generalization"]["mean"] < 0.4
    assert res["chance"]["generalization"] == pytest.approx(0.2)
    assert res["permutation"]["generalization"]["pvalue"] <= 1 / 5 + 1e-12
    assert res["replaced"]["grid"] == 1
    assert res["spearman"]["d0_vs_test_loss"] == pytest.approx(1.0)
    text = table_text(res)
    assert "J&R sampling" in text and "39.2" in text and "Spearman" in text
    # how J&R retrained, and whether the minima fit, head the table
    assert res["retraining_protocol"] == "final_lr" and res["train_accuracy"] == {"median": 0.9, "min": 0.9}
    assert text.splitlines()[0].startswith("J&R at each network's own optimizer") and "median 0.900" in text
    assert res["spearman"]["d0_capped_vs_test_loss"] == pytest.approx(1.0)
    assert (run.figures / "persistence_capped_vs_test_loss.png").exists()
    assert (run.figures / "persistence_vs_test_loss.png").exists()
    # every cell stored: a rerun fits no classifier
    monkeypatch.setattr(table, "predict", lambda *a, **k: pytest.fail("refit a stored cell"))
    monkeypatch.setattr(table, "permutation_test", lambda *a, **k: pytest.fail("reran the permutation test"))
    again = predict_sweep(run, folds=4, permutations=4, names=FAST)
    assert again["table"] == res["table"]
    assert set(res["table"]["jr"]["generalization"]["classifiers"]) == set(FAST)
    with pytest.raises(StoreMismatchError, match="folds"):
        predict_sweep(run, folds=5, permutations=4, names=FAST)


def test_predict_refuses_an_unfinished_sweep(tmp_path):
    run = _synthetic_sweep(tmp_path / "s")
    run.write_variable("sweep", DONE, np.zeros(1, bool), region=(slice(0, 1),))
    with pytest.raises(InputError, match="1 of 40 networks still to train"):
        predict_sweep(run, folds=4, permutations=0, names=FAST)
    assert predict_sweep(run, folds=4, permutations=0, partial=True, names=FAST)["networks"] == 39


def _twin_sweep(path, seed=0):
    """A stored sweep of 40 networks in 10 sibling groups (depth x batch size): the siblings
    (weight decay x augmentation) share their test loss and have features that only name their
    group, so nothing generalizes from one group to another."""
    cfg = read_sweep_config({**TINY, "depths": [1, 2], "widths": [4], "batch_sizes": [32, 64, 128, 256, 512],
                             "weight_decays": [0.0, 1e-3], "augment": [False, True], "jump": {**TINY["jump"], "epochs": 1}})
    rng = np.random.default_rng(seed)
    run = RunDir(path)
    nets = cfg.networks()
    layout = _layout(cfg, {"kind": "sweep", "synthetic": True})
    run.create_grid("sweep", layout, chunks={"network": 1})
    for a in ("depth", "width", "batch_size", "weight_decay", "augment"):
        run.write_variable("sweep", a, layout[a].values)
    sibling = {}
    for net in nets:
        sibling.setdefault((net.depth, net.width, net.batch_size), (rng.uniform(0.5, 1.5), rng.normal(size=8)))
    for i, net in enumerate(nets):
        loss, centre = sibling[(net.depth, net.width, net.batch_size)]
        f = centre + 0.01 * rng.normal(size=8)
        out = {"jr_features": f, "grid_features": f, "naive_features": f, "n_params": 10, "train_loss": 0.1,
               "train_accuracy": 0.9, "test_loss": loss + 1e-3 * rng.normal(), "test_accuracy": 0.5, "tp_d0": loss,
               "tp_d1": 0.0, "tp_d0_capped": loss, "knn_components": 1, "embedded": 12, "phate_components": 1,
               "jr_nonfinite": 0, "grid_nonfinite": 0,
               "naive_nonfinite": 0, "seconds": {"train": 0, "jump_retrain": 0, "grid_naive": 0, "topology": 0}}
        run.write_cells("sweep", _row(out), (slice(i, i + 1),))
    return run


def test_predict_reports_the_papers_protocol_and_a_grouped_one_that_keeps_siblings_apart(tmp_path):
    from lossatlas.sweep.table import GROUP_AXES, PROTOCOLS, _layout as prediction_layout, groups_of

    run = _twin_sweep(tmp_path / "s")
    res = predict_sweep(run, folds=4, permutations=0, names=("logistic_regression", "linear_svm", "decision_tree"))
    paper, grouped = (res["protocols"][p]["table"]["jr"]["generalization"]["mean"] for p in PROTOCOLS)
    # Before: one protocol only (stratified folds; no "protocols" in the result, no protocol
    # dimension in prediction.zarr), which scores these siblings 1.00 against chance 0.2 (grouped: 0.17).
    assert paper > 0.6 and res["table"]["jr"]["generalization"]["mean"] == paper
    assert grouped < 0.35  # no sibling in the training folds: chance (0.2), give or take
    assert res["groups"] == {"generalization": 10, "weight_decay": 20, "augmentation": 20}
    groups = groups_of(run.open("sweep"))["generalization"]
    assert np.bincount(groups).tolist() == [4] * 10
    from lossatlas.store import read_attr

    ds = run.open("prediction")
    assert ds["mean"].dims == ("protocol", "features", "task") and ds["protocol"].values.tolist() == ["paper", "grouped"]
    settings = read_attr(ds, "settings")
    assert settings["protocols"] == ["paper", "grouped"]
    assert settings["group_axes"]["generalization"] == list(GROUP_AXES["generalization"])
    assert "grouped folds" in table_text(res) and "depth, width, batch_size (10 groups)" in table_text(res)
    # a store of the old single-protocol layout is refused, not mixed
    old = {k: v for k, v in settings.items() if k not in ("protocols", "group_axes", "groups_fingerprint")}
    run.remove("prediction")
    run.create_grid("prediction", prediction_layout(old), chunks={"protocol": 1, "features": 1, "task": 1})
    with pytest.raises(StoreMismatchError, match="protocols"):
        predict_sweep(run, folds=4, permutations=0, names=("logistic_regression", "linear_svm", "decision_tree"))


def test_the_predict_command_prints_both_protocols(tmp_path):
    from typer.testing import CliRunner

    from lossatlas.cli import app

    _twin_sweep(tmp_path / "s")
    args = ["predict", str(tmp_path / "s"), "--folds", "4", "--permutations", "0",
            "--classifier", "logistic_regression", "--classifier", "linear_svm"]
    r = CliRunner().invoke(app, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "paper's protocol: stratified folds" in r.output and "grouped folds" in r.output
    assert "(10 groups)" in r.output


# -- the papers' protocol (issue 21): J&R with the original optimizer at its final learning rate --

BN_TINY = {**TINY, "model": "smallcnn", "batch_norm": True, "widths": [4], "weight_decays": [1e-3], "epochs": 8,
           "jump": {"seeds": [0, 1], "step_sizes": [0.5, 1.0], "topology_k": 3}}


def test_retraining_defaults_to_each_networks_final_lr_batch_size_and_a_quarter_of_its_epochs():
    cfg = read_sweep_config({**TINY, "epochs": 40, "lr": 0.1, "batch_sizes": [32, 128], "weight_decays": [1e-3],
                             "jump": {"seeds": [0], "step_sizes": [0.5, 1.0, 1.5, 2.0]}})
    # lr 0.1, x0.1 at epochs 20 and 30: 1e-3 at the end
    assert [cfg.retraining(n) for n in cfg.networks()][1] == {
        "final_lr": pytest.approx(1e-3), "jr_lr": pytest.approx(1e-3), "jr_momentum": 0.9, "jr_epochs": 10,
        "jr_batch_size": 128, "jr_weight_decay": 1e-3, "jr_augment": False, "batch_norm": False}
    assert cfg.protocol() == "final_lr" and cfg.n_points() == 4 * 10
    # 41 epochs: a quarter rounded up
    assert read_sweep_config({**TINY, "epochs": 41, "jump": {"seeds": [0]}}).jr_epochs() == 11
    # the earlier study's config still sets one rate and length for all: its protocol, unchanged
    import yaml
    from pathlib import Path

    old = read_sweep_config(yaml.safe_load(Path("examples/sweep/mnist1d-mlp.yaml").read_text()))
    r = old.retraining(old.networks()[0])
    assert old.protocol() == "fixed_lr" and (r["jr_lr"], r["jr_epochs"]) == (0.0125, 40)
    assert r["final_lr"] == pytest.approx(5e-4) and old.n_points() == 640
    # the study at the papers' protocol: 108 batch-norm CNNs, J&R at 5e-4 for 10 of 40 epochs
    new = read_sweep_config(yaml.safe_load(Path("examples/sweep/mnist1d-cnn-bn.yaml").read_text()))
    r = new.retraining(new.networks()[-1])
    assert len(new.networks()) == 108 and new.protocol() == "final_lr" and new.n_points() == 80
    assert (r["jr_lr"], r["jr_epochs"], r["jr_batch_size"], r["batch_norm"]) == (pytest.approx(5e-4), 10, 128, True)


@pytest.mark.parametrize("bad, message", [
    ({"model": "wrn", "batch_norm": False}, "wrn always has batch normalization"),
    ({"batch_norm": "yes"}, "batch_norm must be"),
    ({"jump": {"lr": 0.0}}, "jump.lr must be a positive number or null"),
    ({"jump": {"epochs": 0}}, "jump.epochs must be a positive integer or null"),
    ({"jump": {"momentum": 1.0}}, "jump.momentum must be in"),
])
def test_retraining_and_batch_norm_settings_are_checked(bad, message):
    with pytest.raises(InputError, match=message):
        read_sweep_config({**TINY, **bad})


def test_the_sweeps_batch_norm_networks_see_no_filter_scale():
    """What the papers' batch norm buys: scaling a convolution's filters leaves the loss unchanged
    (with batch statistics), where the same network without batch norm changes."""
    import torch

    from lossatlas.landscape import Landscape

    losses = {}
    for bn in (True, False):
        cfg = read_sweep_config({**BN_TINY, "batch_norm": bn, "depths": [2]})
        src = cfg.source(cfg.networks()[0])
        assert src.model_args == ({"channels": [4, 8], "batch_norm": True} if bn else {"channels": [4, 8]})
        data = src.build_data()
        model = src.build_model(data)
        assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == bn == cfg.has_batch_norm()
        f = Landscape(model, data.train, bn="recompute" if bn else "eval")
        theta = f.origin.clone()
        first = f.space.names.index("features.0.weight")
        scaled = theta.clone()
        scaled[f.space.entries[first].slice] *= 10.0
        losses[bn] = f.evaluate(torch.stack([theta, scaled]))["loss"]
    bn_change, plain_change = (abs(float(losses[b][1] - losses[b][0])) for b in (True, False))
    assert bn_change < 1e-5 and plain_change > 1e-3  # (at initialization, near log 10 either way)


def test_a_batch_norm_sweep_records_and_uses_its_retraining_settings(tmp_path, monkeypatch):
    from lossatlas.store import read_attr
    from lossatlas.sweep import network
    from lossatlas.sweep.driver import retraining_protocol

    seen = []
    real = network.jump_retrain

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(network, "jump_retrain", spy)
    ds = run_sweep(BN_TINY, tmp_path / "s").load()
    # 8 epochs of SGD from 0.05, x0.1 at epochs 4 and 6: J&R retrains 2 epochs at 5e-4, batch 64
    kw = seen[0]
    assert (kw["lr"], kw["epochs"], kw["batch_size"], kw["momentum"]) == (pytest.approx(5e-4), 2, 64, 0.9)
    assert (kw["weight_decay"], kw["augment"], kw["optimizer"]) == (1e-3, False, "sgd")
    for v, want in (("final_lr", 5e-4), ("jr_lr", 5e-4), ("jr_epochs", 2), ("jr_batch_size", 64),
                    ("batch_size", 64), ("jr_momentum", 0.9), ("jr_weight_decay", 1e-3)):
        np.testing.assert_allclose(ds[v].values, [want], err_msg=v)
    assert ds["batch_norm"].values.tolist() == [True] and ds["jr_augment"].values.tolist() == [False]
    assert ds["done"].values.tolist() == [True] and 0.0 < float(ds["train_accuracy"][0]) <= 1.0
    assert ds["jr_features"].shape == (1, 2 * 4 * 2)  # 4 runs x 2 epochs, loss then accuracy
    assert retraining_protocol(ds) == "final_lr" and read_attr(ds, "retraining_protocol") == "final_lr"
    assert int(ds["knn_components"][0]) >= 1 and float(ds["tp_d0_capped"][0]) >= float(ds["tp_d0"][0])
    # another retraining rate, or no batch norm, is another sweep: refused, naming the setting
    with pytest.raises(StoreMismatchError, match="lr"):
        run_sweep({**BN_TINY, "jump": {**BN_TINY["jump"], "lr": 0.01}}, tmp_path / "s")
    with pytest.raises(StoreMismatchError, match="batch_norm"):
        run_sweep({**BN_TINY, "batch_norm": False}, tmp_path / "s")


def test_the_committed_earlier_sweep_stays_readable_and_is_labelled_earlier():
    from pathlib import Path

    from lossatlas.sweep import load_sweep
    from lossatlas.sweep.driver import PROTOCOL_TITLES, retraining_protocol

    ds = load_sweep(Path("results/sweep-mnist1d-mlp"), complete=True)
    assert ds.sizes["network"] == 108 and "jr_lr" not in ds
    assert retraining_protocol(ds) == "earlier" and PROTOCOL_TITLES["earlier"].startswith("earlier protocol")
    # its MLPs underfit: the reason for the new protocol's sweep of networks that fit
    assert float(np.median(ds["train_accuracy"].values)) < 0.7
